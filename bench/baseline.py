"""The plain sequential loop a quick script would be: for each new message, sync chat, then note.

No database, no crash safety, no parallelism, no session handling beyond one id per ticket: it
reads the change feed, reads each reported ticket's comments, asks Uppzy's blocking chat endpoint
for every new public customer comment and posts the answer as a private note. ``bench/run.py``
runs it against the same simulators and workload as the daemon, to put the daemon's numbers next
to the simplest thing that works.

    python bench/baseline.py --zendesk URL --uppzy URL --tickets 1000 --timeout 120

It stops after ``--tickets`` notes or ``--timeout`` seconds, then idles (so its CPU and memory can
still be read) until ``--linger`` runs out or it is terminated.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import requests

BOT_EMAIL = "bot@example.com"
ZD_TOKEN = "bench-zd-token"
API_KEY = "bench-key"
SITE = "site-1"
SESSION_PREFIX = "bench-"
IDLE_POLL = 0.1


def run(zendesk: str, uppzy: str, tickets: int, timeout: float) -> int:
    http = requests.Session()
    zd_auth = (f"{BOT_EMAIL}/token", ZD_TOKEN)
    deadline = time.monotonic() + timeout
    params: dict[str, Any] = {"start_time": int(time.time()) - 600, "per_page": 1000}
    handled: set[int] = set()
    posted = 0
    while posted < tickets and time.monotonic() < deadline:
        feed = http.get(f"{zendesk}/api/v2/incremental/tickets/cursor.json", params=params,
                        auth=zd_auth, timeout=30)
        feed.raise_for_status()
        page = feed.json()
        for ticket in page["tickets"]:
            posted += answer_ticket(http, zendesk, uppzy, zd_auth, ticket, handled)
            if posted >= tickets or time.monotonic() >= deadline:
                break
        params = {"cursor": page["after_cursor"], "per_page": 1000}
        if page["end_of_stream"] and not page["tickets"]:
            time.sleep(IDLE_POLL)
    return posted


def answer_ticket(http: requests.Session, zendesk: str, uppzy: str, zd_auth: tuple[str, str],
                  ticket: dict[str, Any], handled: set[int]) -> int:
    """Answer the ticket's unanswered customer comments, one blocking chat call each."""
    resp = http.get(f"{zendesk}/api/v2/tickets/{ticket['id']}/comments.json",
                    params={"page[size]": 100, "include": "users"}, auth=zd_auth, timeout=30)
    resp.raise_for_status()
    body = resp.json()
    customers = {u["id"] for u in body.get("users", []) if u["role"] == "end-user"}
    posted = 0
    for comment in body["comments"]:
        if comment["id"] in handled or not comment["public"] or \
                comment["author_id"] not in customers:
            continue
        handled.add(comment["id"])
        chat = http.post(f"{uppzy}/m2m/sites/{SITE}/chat", headers={"X-API-Key": API_KEY},
                         json={"session_id": f"{SESSION_PREFIX}{ticket['id']}",
                               "message": comment["body"]}, timeout=90)
        chat.raise_for_status()
        answer = chat.json()
        note = f"{answer['answer']}\n\n— AI draft, Uppzy ref {answer['request_id']}"
        put = http.put(f"{zendesk}/api/v2/tickets/{ticket['id']}.json", auth=zd_auth,
                       json={"ticket": {"comment": {"body": note, "public": False}}}, timeout=30)
        put.raise_for_status()
        posted += 1
    return posted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zendesk", required=True, help="Zendesk simulator URL")
    parser.add_argument("--uppzy", required=True, help="Uppzy API base URL (…/api/v1)")
    parser.add_argument("--tickets", type=int, required=True, help="stop after this many notes")
    parser.add_argument("--timeout", type=float, default=120.0, help="stop after this long")
    parser.add_argument("--linger", type=float, default=60.0,
                        help="seconds to stay alive after the work, for the measurements")
    args = parser.parse_args()
    run(args.zendesk, args.uppzy, args.tickets, args.timeout)
    time.sleep(args.linger)


if __name__ == "__main__":
    main()
