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

from connector.config import SessionMode
from connector.store.models import TicketRecord
from connector.store.sessions import Slot


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


def slot(adapter: str, ticket: TicketRecord, mode: SessionMode, site_id: str) -> Slot:
    """Where the ticket's next turn goes: the current session of its base id, or the next if
    that one is closed or closing. Per ticket, the ticket remembers how far it got."""
    per_thread = mode == "per_thread"
    return Slot(adapter, ticket.external_id, base_session_id(adapter, ticket, mode),
                max(ticket.session_seq, 1) if per_thread else 1, site_id, per_thread)
