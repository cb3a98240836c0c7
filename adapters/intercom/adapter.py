"""Intercom (REST API 2.11): conversations by search on ``updated_at``, our answer as an admin note.

Intercom's API has no reply drafts: a reply is either sent to the customer (``comment``) or a
``note`` only teammates see, so the answer goes on the conversation as a note written by the
configured admin, and an agent turns it into a reply. Every request pins ``Intercom-Version``:
without it Intercom answers in whatever version the app's settings name, and the shapes read
here could change under the daemon from a click in the Developer Hub.

The facts this relies on, with their sources, are in docs/adapters/intercom.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from adapters import signatures
from adapters.base import (
    Capabilities,
    ChangePage,
    Message,
    Posted,
    Ticket,
    as_dict,
    carries_marker,
)
from adapters.intercom.conversation import (
    part_message,
    parts_of,
    read_ticket,
    source_message,
)
from adapters.intercom.feed import (
    INDEX_OVERLAP,
    Scan,
    changed_since,
    next_cursor,
    search_body,
)
from adapters.intercom.settings import IntercomSettings
from adapters.payload import json_object, numeric_id, path_number, unix_time
from adapters.replay import FeedOrder, ReplayAdapter
from adapters.text import text_to_html
from adapters.times import server_time, whole_second
from connector.core.errors import MalformedResponse, NotFound, PermissionDenied

log = logging.getLogger(__name__)

API_VERSION = "2.11"
RESET_HEADER = "X-RateLimit-Reset"  # a Unix time; Intercom's 429 carries no Retry-After


class IntercomAdapter(ReplayAdapter):
    """Intercom conversations, answered with admin notes.

    Backfill replays the search from the window's start; results are not ordered by change, so
    every page is read and cut to the window by each conversation's ``updated_at``.
    """

    type_name = "intercom"
    capabilities = Capabilities(drafts=False, webhook="intercom-hmac-sha1",
                                notes_because="Intercom's API has no reply drafts")
    settings_model = IntercomSettings
    simulator = "adapters.intercom.simulator:IntercomSimulator"
    feed_order = FeedOrder.UNORDERED

    settings: IntercomSettings

    def api_headers(self) -> dict[str, str]:
        return {"Intercom-Version": API_VERSION}

    def wait_hint(self) -> Callable[[Mapping[str, str]], float | None]:
        return reset_wait

    # ----- reads -----------------------------------------------------------------------------
    def check(self) -> str:
        """The admin the token acts as, and that the admin the notes are written as exists."""
        account = self.read_account("/me", "me")
        admin = self._admin(self.settings.admin_id)
        return (f"token of admin {account.id} ({account.record.get('name') or 'unnamed'}); "
                f"notes as admin {self.settings.admin_id} ({admin.get('name') or 'unnamed'})")

    def poll_changes(self, cursor: str | None, start_from: datetime) -> ChangePage:
        """One page of the current walk; the last page of a walk starts the next one."""
        scan = Scan.resume(cursor, Scan(whole_second(start_from)), self.name)
        resp = self.http.request(
            "POST", "/conversations/search", endpoint="conversation_search",
            json_body=search_body(scan.since, self.settings.page_size, scan.after),
            idempotent=True,
        )
        body = json_object(resp.data, "conversation_search")
        items = body.get("conversations")
        if not isinstance(items, list):
            raise MalformedResponse("conversation_search: conversations is not a list",
                                    endpoint="conversation_search")
        tickets = changed_since(
            [t for index, item in enumerate(items) if (t := self._list_item(index, item))],
            scan.since)
        started = scan.started or server_time(resp.headers)
        following = next_cursor(body)
        if following is not None:
            return ChangePage(tickets, Scan(scan.since, following, started).dump(), True)
        return ChangePage(tickets, Scan(whole_second(started) - INDEX_OVERLAP).dump(), False)

    def get_ticket(self, ticket_id: str) -> Ticket:
        return read_ticket(self._conversation(ticket_id), self.name)

    def list_messages(self, ticket: Ticket) -> list[Message]:
        number = path_number(ticket.external_id)
        raw = self._conversation(number)
        first = source_message(raw, number)
        parts = self.read_entries(
            parts_of(raw), f"a part of conversation {number}",
            lambda part, part_id, at: part_message(part, part_id, at, number),
            read_time=unix_time,
        )
        return ([first] if first is not None else []) + parts

    def find_posted(self, ticket: Ticket, marker: str) -> str | None:
        """Only a note by our own admin can be ours: a teammate quoting our marker in a note
        of theirs must not make the engine believe the answer was posted."""
        for message in self.list_messages(ticket):
            if message.author_id == self.settings.admin_id and not message.public and \
                    carries_marker(message, marker):
                return message.external_id
        return None

    # ----- writes ----------------------------------------------------------------------------
    def post_draft(self, ticket_id: str, text: str) -> Posted:
        """An admin note (Intercom has no drafts); the answer is the whole conversation, whose
        newest note by our admin is the one just written."""
        number = path_number(ticket_id)
        resp = self.http.request(
            "POST", f"/conversations/{number}/reply", endpoint="conversation_reply",
            json_body={"message_type": "note", "type": "admin",
                       "admin_id": self.settings.admin_id, "body": text_to_html(text)},
            idempotent=False, ok_statuses=(404,),
        )
        body = json_object(resp.data, "conversation_reply")
        if resp.status == 404:
            self._refuse_unknown_admin(body)
            raise NotFound(f"{self.name} conversation_reply: conversation {number} not found",
                           status=404, endpoint="conversation_reply")
        ours = [part for part in parts_of(body)
                if as_dict(as_dict(part).get("author")).get("id") == self.settings.admin_id
                and as_dict(part).get("part_type") == "note"]
        note_id = numeric_id(as_dict(ours[-1]).get("id")) if ours else None
        if note_id is None:
            raise MalformedResponse(
                f"{self.name} conversation_reply: note written on conversation {number} but "
                "the answer shows no note of ours with an id", status=resp.status,
                endpoint="conversation_reply")
        return Posted(note_id, "note")

    # ----- helpers ---------------------------------------------------------------------------
    def _conversation(self, ticket_id: str) -> dict[str, Any]:
        number = path_number(ticket_id)
        resp = self.http.request("GET", f"/conversations/{number}",
                                 endpoint="conversation_show")
        return json_object(resp.data, "conversation_show")

    def _admin(self, admin_id: str) -> dict[str, Any]:
        """The admin's record; one that does not exist is a setting to fix, named as such."""
        resp = self.http.request("GET", f"/admins/{path_number(admin_id)}",
                                 endpoint="admin_show", ok_statuses=(404,))
        body = json_object(resp.data, "admin_show")
        if resp.status == 404:
            self._refuse_unknown_admin(body, always=True)
        return body

    def _refuse_unknown_admin(self, body: dict[str, Any], *, always: bool = False) -> None:
        """A 404 about the admin (not the conversation) stops the adapter, naming the key."""
        codes = {as_dict(e).get("code") for e in body.get("errors") or [] if isinstance(e, dict)}
        if always or "admin_not_found" in codes:
            raise PermissionDenied(
                f"{self.name}: admin {self.settings.admin_id} does not exist in this workspace; "
                f"fix {self.settings.key_path}.admin_id", status=404, endpoint="admin_show")

    def _list_item(self, index: int, item: Any) -> Ticket | None:
        try:
            return read_ticket(as_dict(item), self.name)
        except MalformedResponse:
            log.warning("%s: skipped search result %d: no usable id", self.name, index)
            return None

    # ----- webhooks --------------------------------------------------------------------------
    def webhook_ticket_ids(self, headers: Mapping[str, str], body: bytes) -> list[str]:
        """``conversation.*`` topics carry the conversation in ``data.item``; the setup
        ``ping``, contact and ticket topics name none."""
        payload = signatures.json_object(body)
        topic = payload.get("topic")
        if not isinstance(topic, str) or not topic.startswith("conversation."):
            return []
        item = as_dict(as_dict(payload.get("data")).get("item"))
        return [signatures.ticket_id(item.get("id"), "data.item.id")]


def reset_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds until ``X-RateLimit-Reset``, measured on Intercom's clock (its ``Date``) so a
    skewed local clock neither shortens nor stretches the wait."""
    try:
        reset = float(headers.get(RESET_HEADER) or "")
    except ValueError:
        return None
    return max(0.0, reset - server_time(headers).timestamp())
