"""Uppzy session ids and their lifecycle.

A session is chosen by us. Per ticket by default, so an answer only sees its own conversation;
per user or per channel on request, with the requester's identifiers keyed-hashed so that no raw
e-mail ends up in Uppzy's logs or ours, and no list of addresses can be hashed to find whose
session an id is (the key is this installation's own, kept in its database). A closed session
takes no new messages, so the next turn after a close continues under the next id (``-2``,
``-3`` ...).
"""

from __future__ import annotations

import hashlib
import hmac

from sqlmodel import Session, col, select

from connector.config import SessionMode
from connector.store.models import ChatSession, SessionState, TicketRecord, utcnow


def requester_key(
    secret: str, requester_email: str | None, requester_id: str | None
) -> str | None:
    """A stable opaque key for the requester: an HMAC of the address under ``secret``, so
    neither the address nor a dictionary of addresses leads back to it."""
    raw = (requester_email or "").strip().lower() or (requester_id or "").strip()
    if not raw:
        return None
    return hmac.new(secret.encode(), raw.encode(), hashlib.sha256).hexdigest()[:16]


def base_session_id(adapter: str, ticket: TicketRecord, mode: SessionMode) -> str:
    if mode == "per_user" and ticket.requester_key:
        return f"{adapter}-u-{ticket.requester_key}"
    if mode == "per_channel" and ticket.requester_key:
        channel = "".join(c for c in (ticket.channel or "any") if c.isalnum())[:16] or "any"
        return f"{adapter}-{channel}-{ticket.requester_key}"
    return f"{adapter}-{ticket.external_id}"


def _with_seq(base: str, seq: int) -> str:
    return base if seq <= 1 else f"{base}-{seq}"


def open_session_id(
    db: Session, adapter: str, ticket: TicketRecord, mode: SessionMode, site_id: str
) -> str:
    """The session a new turn goes to: the current one, or the next if it is closed/closing."""
    base = base_session_id(adapter, ticket, mode)
    seq = max(ticket.session_seq, 1) if mode == "per_thread" else 1
    while True:
        session_id = _with_seq(base, seq)
        existing = db.get(ChatSession, session_id)
        if existing is None:
            db.add(ChatSession(
                session_id=session_id, adapter=adapter, site_id=site_id,
                ticket_id=ticket.external_id if mode == "per_thread" else None,
            ))
            break
        if existing.state == SessionState.OPEN:
            break
        seq += 1
    if mode == "per_thread":
        ticket.session_seq = seq
        db.add(ticket)
    return session_id


def request_close(db: Session, session_id: str, reason: str) -> bool:
    """Mark a session to be closed by the housekeeping job; True if it was open."""
    session = db.get(ChatSession, session_id)
    if session is None or session.state != SessionState.OPEN:
        return False
    session.state = SessionState.CLOSING
    session.reason = reason
    session.next_attempt_at = utcnow()
    session.attempts = 0
    db.add(session)
    return True


def ticket_sessions(db: Session, adapter: str, ticket_id: str) -> list[ChatSession]:
    return list(db.exec(
        select(ChatSession).where(
            ChatSession.adapter == adapter, ChatSession.ticket_id == ticket_id
        ).order_by(col(ChatSession.created_at))
    ))
