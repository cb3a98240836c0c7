"""``connector sessions``: our sessions, each joined with what Uppzy lists for it.

Uppzy's session list has no documented schema. The client already finds the array and follows
the pages; here each record's id, status, last activity and size are looked up under the names
seen in the guides and SDK types, and whatever is missing stays empty instead of failing. When the
list cannot be read at all, our side is still reported, with the reason per site.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from connector.cli.app import ConfigOpt, JsonOpt, LevelOpt, command, load, out, say_error, setup
from connector.cli.checks import one_shot_client
from connector.config import Config
from connector.core.errors import RemoteError, SessionsError
from connector.core.redact import redact
from connector.store.db import open_migrated
from connector.store.models import ChatSession
from connector.store.reports import chat_sessions

STATES: dict[str, tuple[str, ...]] = {"open": ("open",), "closed": ("closing", "closed")}

_ID_KEYS = ("session_id", "sessionId", "id", "session")
_STATUS_KEYS = ("status", "state", "session_status")
_ACTIVITY_KEYS = ("last_activity_at", "last_message_at", "lastActivityAt", "updated_at",
                  "last_activity", "updatedAt")
_COUNT_KEYS = ("question_count", "message_count", "messages_count", "questionCount",
               "messageCount", "messages")


def collect(
    config: Config, *, adapter: str | None = None, status: str | None = None,
) -> dict[str, Any]:
    """Our sessions (filtered), each with ``uppzy``: what Uppzy's list says about it, or None."""
    if status is not None and status not in STATES:
        raise SessionsError(f"--status: must be {' or '.join(STATES)}, not {status!r}")
    names = [a.name for a in config.adapters]
    if adapter is not None and adapter not in names:
        raise SessionsError(
            f"--adapter: no adapter named {adapter!r} (configured: {', '.join(names) or 'none'})")
    ours = _our_sessions(config, adapter, status)
    listings: dict[str, dict[str, Any]] = {}
    sites: dict[str, dict[str, Any]] = {}
    client = one_shot_client(config)
    try:
        for site_id in sorted({s["site_id"] for s in ours}):
            try:
                listed = client.list_sessions(site_id)
            except RemoteError as exc:
                sites[site_id] = {"ok": False, "error": redact(str(exc)), "listed": 0,
                                  "matched": 0}
                continue
            listings[site_id] = {i: item for item in listed if (i := _text(item, _ID_KEYS))}
            sites[site_id] = {"ok": True, "error": None, "listed": len(listed), "matched": 0}
    finally:
        client.close()
    for session in ours:
        record = listings.get(session["site_id"], {}).get(session["session_id"])
        session["uppzy"] = None if record is None else _summary(record)
        if record is not None:
            sites[session["site_id"]]["matched"] += 1
    return {"sessions": ours, "sites": sites}


def _our_sessions(
    config: Config, adapter: str | None, status: str | None,
) -> list[dict[str, Any]]:
    adapters = [adapter] if adapter is not None else [a.name for a in config.adapters]
    db = open_migrated(config.database.url)
    try:
        rows = chat_sessions(db, adapters, None if status is None else STATES[status])
        return [_ours(row) for row in rows]
    finally:
        db.dispose()


def _ours(row: ChatSession) -> dict[str, Any]:
    return {
        "session_id": row.session_id, "adapter": row.adapter, "ticket_id": row.ticket_id,
        "site_id": row.site_id, "state": row.state, "created_at": _iso(row.created_at),
        "last_customer_at": _iso(row.last_customer_at), "closed_at": _iso(row.closed_at),
        "reason": redact(row.reason) if row.reason else None,
    }


def _summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """The few fields worth showing, under whichever names this Uppzy version uses."""
    status = _text(record, _STATUS_KEYS)
    if status is None and isinstance(record.get("closed"), bool):
        status = "closed" if record["closed"] else "open"
    return {"status": status, "last_activity": _text(record, _ACTIVITY_KEYS),
            "messages": _count(record)}


def _text(record: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def _count(record: Mapping[str, Any]) -> int | None:
    for key in _COUNT_KEYS:
        value = record.get(key)
        if isinstance(value, list):
            return len(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@command(name="sessions")
def sessions_command(
    config: ConfigOpt = None,
    adapter: Annotated[str | None, typer.Option(
        "--adapter", "-a", help="Only this adapter's sessions.", show_default=False)] = None,
    state: Annotated[str | None, typer.Option(
        "--status", help="open | closed (closing counts as closed)", show_default=False)] = None,
    as_json: JsonOpt = False,
    log_level: LevelOpt = "warning",
) -> None:
    """Our Uppzy sessions, each with what Uppzy's own session list says about it."""
    setup(log_level)
    cfg = load(config)
    report = collect(cfg, adapter=adapter, status=state)
    for site, info in report["sites"].items():
        if not info["ok"]:
            say_error(f"Uppzy's session list for site {site} is unavailable: {info['error']}")
    if as_json:
        out.print_json(json.dumps(report))
        return
    table = Table(title="sessions")
    for column in ("session", "adapter", "ticket", "state", "last question", "uppzy status",
                   "uppzy last activity", "uppzy messages"):
        table.add_column(column)
    for s in report["sessions"]:
        u = s["uppzy"] or {}
        table.add_row(*_cells(
            s["session_id"], s["adapter"], s["ticket_id"] or "-", s["state"],
            _when(s["last_customer_at"]), u.get("status") or (
                "not listed" if s["uppzy"] is None else "?"),
            _when(u.get("last_activity")),
            "-" if u.get("messages") is None else str(u["messages"]),
        ))
    out.print(table)


def _cells(*values: str) -> list[Text]:
    """Table cells as plain text: what a remote system sent must never be read as markup."""
    return [Text(str(v)) for v in values]


def _when(iso: str | None) -> str:
    """An ISO time to the second, for a table cell; anything else as it came."""
    if not iso:
        return "-"
    return iso[:19].replace("T", " ") if len(iso) >= 19 and iso[10] == "T" else iso
