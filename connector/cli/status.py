"""What ``connector status`` reports: per adapter, where polling stands and how turns ended.

``state`` is the one word an operator reads first, and it is only ``ok`` when it is true right
now: an instance holds the adapter's poll lease, the last poll succeeded, and it did so within
``STALE_INTERVALS`` poll intervals. ``turns.posted`` counts real answers; fallback notes are
counted apart (``fallbacks``).
"""

from __future__ import annotations

import json
from typing import Any

from connector.cli.app import ConfigOpt, JsonOpt, LevelOpt, command, load, out, setup
from connector.config import Config
from connector.core.errors import SchemaBehind
from connector.core.redact import redact
from connector.engine.adoption import DECIDED, Adoption
from connector.store.db import Database
from connector.store.models import AdapterState, SessionState, TurnState, utcnow
from connector.store.status import adapter_snapshots

RECENT_FAILURES = 5
STALE_INTERVALS = 3


def collect(config: Config, db_engine: Database) -> dict[str, Any]:
    now = utcnow()
    report: dict[str, Any] = {"generated_at": now.isoformat(), "adapters": []}
    snapshots = adapter_snapshots(db_engine, [a.name for a in config.adapters], now,
                                  RECENT_FAILURES)
    for settings, snapshot in zip(config.adapters, snapshots, strict=True):
        name, state, trouble = settings.name, snapshot.state, snapshot.troubles
        turns, sessions = dict(snapshot.turns), snapshot.sessions
        compared, mean = snapshot.shadow_compared, snapshot.shadow_mean
        paused = bool(state and state.paused_until and state.paused_until > now)
        turns[TurnState.POSTED.value] = int(turns.get(TurnState.POSTED.value, 0)) - \
            trouble["fallbacks"]
        polled_by = state.lease_owner if state and state.lease_until and \
            state.lease_until > now else None
        report["adapters"].append({
            "name": name,
            "type": settings.type,
            "cursor_age_seconds": _age(now, state.cursor_moved_at if state else None),
            "last_poll_ok_seconds_ago": _age(now, state.last_poll_ok_at if state else None),
            "polled_by": polled_by,
            **_state(state, now, paused, polled_by, settings.poll_interval),
            "paused": paused,
            "pause_reason": redact(state.pause_reason or "") if paused and state else None,
            "tickets": snapshot.tickets,
            "turns": {s.value: int(turns.get(s.value, 0)) for s in TurnState},
            "sessions": {s.value: int(sessions.get(s.value, 0)) for s in SessionState},
            **trouble,
            "adoption": {o.value: snapshot.adoption.get(o.value, 0) for o in Adoption},
            "shadow": {
                "enabled": config.shadow(settings),
                "answers": int(turns.get(TurnState.SHADOWED.value, 0)),
                "compared_with_agent_reply": int(compared or 0),
                "mean_similarity": None if mean is None else round(float(mean), 3),
            },
            "recent_failures": [
                {"ticket": t, "reason": redact(r or ""), "at": at.isoformat()}
                for t, r, at in snapshot.recent_failures
            ],
        })
    return report


def adoption_rate(counts: dict[str, int]) -> float | None:
    """Drafts used or edited, of those an agent answered after; None before any verdict."""
    decided = sum(counts.get(o.value, 0) for o in DECIDED)
    if not decided:
        return None
    return (counts.get(Adoption.USED.value, 0) + counts.get(Adoption.EDITED.value, 0)) / decided


def _state(state: AdapterState | None, now, paused: bool, polled_by: str | None,  # type: ignore[no-untyped-def]
           interval: float) -> dict[str, str]:
    """The adapter's one-word state and the line that explains it."""
    if paused and state is not None:
        return {"state": "paused", "state_detail": redact(state.pause_reason or "paused")}
    if polled_by is None:
        return {"state": "not running",
                "state_detail": "no connector instance holds this adapter's poll lease"}
    assert state is not None
    if state.consecutive_failures:
        return {"state": "failing", "state_detail":
                f"the last {state.consecutive_failures} poll(s) failed (see the log)"}
    ok_age = _age(now, state.last_poll_ok_at)
    if ok_age is None or ok_age > STALE_INTERVALS * interval:
        return {"state": "stale", "state_detail": "no successful poll " + (
            "yet" if ok_age is None else f"for {ok_age:.0f}s")}
    return {"state": "ok", "state_detail": f"polled by {polled_by}"}


def _age(now, when) -> float | None:  # type: ignore[no-untyped-def]
    return None if when is None else round((now - when).total_seconds(), 1)


@command()
def status(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    log_level: LevelOpt = "warning",
) -> None:
    """Per adapter: its state, cursor age, turns by state, sessions, and what waits on errors.

    Read-only: it never creates or migrates a database.
    """
    setup(log_level)
    cfg = load(config)
    from connector.store.db import current_revision
    from connector.store.probe import head_revision, open_existing

    db = open_existing(cfg.database.url)
    revision = current_revision(db)
    if revision != head_revision():
        raise SchemaBehind(f"the schema is at revision {revision or 'none'}, this version "
                           f"needs {head_revision()}: start the daemon or run "
                           "`connector db upgrade`")
    report = collect(cfg, db)
    if as_json:
        out.print_json(json.dumps(report))
        return
    for a in report["adapters"]:
        for line in _status_block(a):
            out.print(line, markup=False, highlight=False)


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def _status_block(a: dict) -> list[str]:  # type: ignore[type-arg]
    """One adapter as a few short lines (fits 80 columns, unlike a wide table)."""
    from connector.core.durations import format_duration

    def ago(seconds: float | None) -> str:
        return "never" if seconds is None else f"{format_duration(seconds)} ago"

    t, s = a["turns"], a["sessions"]
    lines = [
        f"{a['name']} ({a['type']}): {a['state']}",
        f"  {_one_line(a['state_detail'], 78)}",
        f"  cursor moved {ago(a['cursor_age_seconds'])}, last good poll "
        f"{ago(a['last_poll_ok_seconds_ago'])}, {a['tickets']} tickets",
        f"  turns ended: {t['posted']} drafted, {a['fallbacks']} fallback notes, "
        f"{t['cancelled']} cancelled, {t['failed']} failed",
        f"  turns under way: {t['queued']} queued, "
        f"{t['submitted'] + t['answered'] + t['posting']} in flight",
        f"  sessions: {s['open']} open, {s['closing']} closing, {s['closed']} closed"
        + (f", {s['failed']} failed" if s["failed"] else ""),
    ]
    d = a["adoption"]
    rate = adoption_rate(d)
    lines.append(f"  drafts: {d['used']} used, {d['edited']} edited, {d['discarded']} discarded, "
                 f"{d['pending']} pending, {d['expired']} expired"
                 + ("" if rate is None else f" (adopted {rate:.0%})"))
    lines += [f"  ! {line}" for line in _troubles(a) if not line.startswith("fallback")]
    shadow = a["shadow"]
    if shadow["enabled"] or shadow["answers"]:
        mean = shadow["mean_similarity"]
        lines.append(f"  shadow mode: {shadow['answers']} answers kept, "
                     f"{shadow['compared_with_agent_reply']} compared with the agent's reply, "
                     f"mean similarity {'n/a' if mean is None else f'{mean:.0%}'}")
    lines += [f"  failed: ticket {f['ticket']}: {f['reason']}" for f in a["recent_failures"]]
    return lines


def _troubles(adapter: dict) -> list[str]:  # type: ignore[type-arg]
    """``status`` lines for work that waits on errors (nothing when all is well)."""
    lines = []
    if adapter["fallbacks"]:
        lines.append(f"fallback notes posted instead of an answer: {adapter['fallbacks']}")
    uppzy, reads = adapter["waiting_on_uppzy"], adapter["reads_failing"]
    if uppzy["turns"]:
        lines.append(f"questions waiting for Uppzy: {uppzy['turns']} ({uppzy['last_error']})")
    if reads["tickets"]:
        lines.append(f"ticket reads failing: {reads['tickets']} ({reads['last_error']})")
    if adapter["expired_claims"]:
        lines.append(f"turns whose instance stopped renewing its claim: "
                     f"{adapter['expired_claims']} (taken over after lease_ttl)")
    if adapter["sessions"]["failed"]:
        lines.append(f"sessions that could not be closed: {adapter['sessions']['failed']}")
    if adapter["feedback"]["failed"]:
        lines.append(f"feedback that could not be sent: {adapter['feedback']['failed']}")
    return lines
