"""Idle sessions: close a conversation the customer left, even while the ticket stays open.

An Uppzy session carries its whole history into every answer; a ticket that sleeps for days and
then gets a new, unrelated question is better answered fresh. With ``close_after_idle`` set on an
adapter, its sessions with no customer message for that long are marked ``closing`` (the
housekeeping job sends the close, as for resolved tickets), and the next message continues in
the next session id, like a reopened ticket.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from connector.core.durations import format_duration
from connector.store import sessions
from connector.store.models import utcnow

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 200  # sessions marked per adapter and call; the rest follow at the next housekeeping


def close_idle_sessions(engine: Runtime) -> int:
    """Mark idle open sessions as closing; returns how many were marked.

    Idle counts from the last question we asked in the session (or its creation). A session
    with a turn still in progress is never idle: closing it would refuse that turn's question.
    """
    now = utcnow()
    marked = 0
    for settings in engine.config.adapters:
        idle = settings.close_after_idle
        if not idle or settings.name not in engine.adapters:
            continue
        reason = f"no customer message for {format_duration(idle)}"
        for session_id in sessions.close_idle(engine.db, settings.name,
                                              now - timedelta(seconds=idle), reason, BATCH, now):
            marked += 1
            log.info("session %s: closing (%s)", session_id, reason)
    return marked
