"""SQL statements and transactions per message, counted in-process with ``run_once``.

CPU in the daemon is mostly the store (bench/README.md): this counts what each message costs
there, by the engine function that issued it, so a change to the steps can be judged in seconds
instead of a full ``bench/run.py``. The simulators run in this process over real HTTP on
127.0.0.1; their CPU is in the thread-time figure too, so read that one as relative only.

    python bench/statements.py --tickets 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.pool import Pool

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from adapters.zendesk.simulator import ZendeskSimulator  # noqa: E402
from connector.config import parse_config  # noqa: E402
from connector.engine.runtime import Runtime  # noqa: E402
from connector.store.db import READ_ONLY  # noqa: E402
from connector.testing.uppzy_sim import UppzySimulator  # noqa: E402

API_KEY = "bench-key"
ZD_TOKEN = "bench-zd-token"


def _caller() -> str:
    """The innermost engine or store function on the stack: where a statement comes from."""
    for frame in reversed(traceback.extract_stack(limit=40)):
        if frame.filename.endswith(("/connector/store/db.py", "/connector/store/plain.py")):
            continue  # the transaction and statement helpers: their caller is what counts
        if "/connector/engine/" in frame.filename or "/connector/store/" in frame.filename:
            return f"{Path(frame.filename).stem}.{frame.name}"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--by-caller", action="store_true", help="break statements down")
    args = parser.parse_args()

    statements: Counter[str] = Counter()
    counting = False

    def on_statement(sql: str) -> None:
        # SQLite's own trace of what it runs: the store's plain statements go to the driver's
        # cursor past SQLAlchemy's events. An executemany counts once per row here.
        if counting and not sql.startswith(("COMMIT", "ROLLBACK")):
            statements[_caller() if args.by_caller else "all"] += 1

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(on_statement)

    event.listen(Pool, "connect", on_connect)
    uppzy = UppzySimulator(api_keys={API_KEY: "ok"}, answer_time=(0.0, 0.0)).start()
    zendesk = ZendeskSimulator(exclude_newest=0, api_token=ZD_TOKEN).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = parse_config({
                "uppzy": {"base_url": uppzy.base_url, "api_key": API_KEY, "site_id": "site-1",
                          "poll_interval": "0.2s", "answer_timeout": "60s"},
                "database": {"url": f"sqlite:///{tmp}/bench.db"},
                "adapters": [{"name": "zd", "type": "zendesk", "url": zendesk.url,
                              "auth": {"email": "bot@example.com", "api_token": ZD_TOKEN},
                              "poll_interval": "1s", "start_from": "10m"}],
                "engine": {"tick": "0.02s"},
                "ops": {"listen": "127.0.0.1:0"},
            })
            engine = Runtime(config)
            engine.start()
            # Warm up: users/me, statuses, and two tickets answered and read again, which
            # calibrates the adapter's message counts (see conversation._count_read) as in a daemon
            # that has been running for a while.
            user = zendesk.add_user("Warm-up", "end-user", "warm@example.com")
            for n in (1, 2):
                zendesk.create_ticket(user, f"Warm-up question {n}")
            engine.run_once()
            engine.run_once()
            warm = len(zendesk.notes_by(zendesk.bot_user_id))
            for n in range(args.tickets):
                user = zendesk.add_user(f"Customer {n}", "end-user", f"c{n}@example.com")
                zendesk.create_ticket(user, f"Question {n}: how do I reset my password?")
            transactions: Counter[str] = Counter()

            def on_begin(connection: Any) -> None:
                kind = "read" if connection.get_execution_options().get(READ_ONLY) else "write"
                transactions[f"{kind} {_caller()}" if args.by_caller else kind] += 1

            counting = True
            event.listen(engine.db, "begin", on_begin)
            cpu, wall = time.process_time(), time.monotonic()
            engine.run_once(idle_sleep=0.01)
            engine.run_once(idle_sleep=0.01)  # the re-read our own notes cause
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            shared = engine.writer.writes / max(1, engine.writer.batches)
            counting = False
            event.remove(engine.db, "begin", on_begin)
            posted = len(zendesk.notes_by(zendesk.bot_user_id)) - warm
            reads = sum(1 for c in zendesk.calls if c.endpoint == "ticket_comments") - warm * 2
            engine.shutdown(grace=2)
            engine.db.dispose()
    finally:
        event.remove(Pool, "connect", on_connect)
        zendesk.stop()
        uppzy.stop()
    per = max(posted, 1)
    print(f"notes posted: {posted} of {args.tickets}")
    print(f"statements per message: {sum(statements.values()) / per:.1f}")
    writes = sum(n for k, n in transactions.items() if k.startswith("write"))
    print(f"transactions per message: {sum(transactions.values()) / per:.2f} "
          f"({writes / per:.2f} writing, the rest read-only snapshots)")
    print(f"writes per group commit (step outcomes, reads, claims): {shared:.2f} "
          "(since the start, warm-up included)")
    print(f"conversation reads per message: {reads / per:.2f}")
    print(f"process CPU per message (simulators included): {cpu / per * 1000:.2f} ms; "
          f"wall {wall:.1f} s")
    if args.by_caller:
        print("statements by caller:")
        for caller, count in statements.most_common():
            print(f"  {count / per:6.2f}  {caller}")
        print("transactions by caller:")
        for caller, count in transactions.most_common():
            print(f"  {count / per:6.2f}  {caller}")


if __name__ == "__main__":
    main()
