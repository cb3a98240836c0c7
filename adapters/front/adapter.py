"""Front (Core API): the company's event feed, conversations' messages, our answer as a draft.

Front has real drafts: ``POST /conversations/{id}/drafts`` leaves a reply a teammate reviews and
sends, and ``mode: shared`` makes it visible to every teammate with access to the conversation
instead of only its author. Changes come from ``GET /events`` (``adapters/front/feed.py``), and a
conversation's entries from three lists: messages, comments and drafts
(``adapters/front/records.py``). Facts and their sources: docs/adapters/front.md.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime
from itertools import chain
from typing import Any

from adapters import signatures
from adapters.base import (
    Capabilities,
    ChangePage,
    Message,
    Posted,
    Role,
    Ticket,
    as_dict,
    contains_marker,
)
from adapters.front import feed
from adapters.front.feed import EventWalk
from adapters.front.records import Entry, conversation_ticket, entry_message, entry_time
from adapters.front.settings import FrontSettings
from adapters.paging import follow_pages, link_query
from adapters.payload import json_object, path_id, prefixed_id, unix_time
from adapters.replay import FeedOrder, ReplayAdapter
from adapters.text import text_to_html
from adapters.times import utc
from connector.core.errors import MalformedResponse, NotFound, PermissionDenied

log = logging.getLogger(__name__)

ENTRY_PAGE = 100  # Front's maximum ``limit`` on its paged lists
MAX_ENTRY_PAGES = 50  # 5000 entries: far beyond any conversation, a bound for the loop
ENTRY_LISTS = (("messages", Entry.MESSAGE), ("comments", Entry.COMMENT),
               ("drafts", Entry.DRAFT))


class FrontAdapter(ReplayAdapter):
    """Front over its Core API, with shared draft replies written as the configured teammate.

    Backfill replays the event feed from the window's start; a feed ticket's ``updated_at`` is
    the time of the event that reported it, so the listing ends at the first event after the
    window.
    """

    type_name = "front"
    capabilities = Capabilities(drafts=True, webhook="front-hmac-sha256")
    settings_model = FrontSettings
    simulator = "adapters.front.simulator:FrontSimulator"
    feed_order = FeedOrder.LATEST_CHANGE

    settings: FrontSettings

    # ----- reads -----------------------------------------------------------------------------
    def check(self) -> str:
        """The token's company, and that the configured teammate and channel exist for it: a
        wrong one would otherwise first show as a failed draft."""
        company = json_object(self.http.request("GET", "/me", endpoint="me").data, "me")
        teammate = self._configured("teammates", self.settings.teammate_id, "teammate_id")
        if teammate.get("is_blocked") is True:
            raise PermissionDenied(f"{self.name}: teammate {self.settings.teammate_id} is "
                                   f"blocked; fix {self.settings.key_path}.teammate_id",
                                   endpoint="teammate")
        channel = self._configured("channels", self.settings.channel_id, "channel_id")
        who = " ".join(part for part in (teammate.get("first_name"), teammate.get("last_name"))
                       if isinstance(part, str) and part) or "unnamed"
        return (f"company {company.get('name') or '?'} ({company.get('id') or '?'}); drafts by "
                f"{who} ({self.settings.teammate_id}) from channel "
                f"{channel.get('name') or channel.get('address') or '?'} "
                f"({self.settings.channel_id})")

    def poll_changes(self, cursor: str | None, start_from: datetime) -> ChangePage:
        """One page of events; the last page of a walk starts the next one."""
        walk = EventWalk.resume(cursor, EventWalk(utc(start_from)), self.name)
        resp = self.http.request(
            "GET", "/events", endpoint="events",
            params=feed.events_query(walk, self.settings.page_size, self.settings.inbox_ids),
        )
        body = json_object(resp.data, "events")
        events = _results(body, "events")
        tickets = feed.latest_per_conversation(
            [found for index, event in enumerate(walk.unseen(events))
             if (found := self._event_ticket(index, event)) is not None])
        token = _next_token(body, "/events", "events")
        if token is not None:
            return ChangePage(tickets, walk.next_page(events, token).dump(), True)
        return ChangePage(tickets, walk.finished(events).dump(), False)

    def get_ticket(self, ticket_id: str) -> Ticket:
        number = path_id(ticket_id, "cnv")
        resp = self.http.request("GET", f"/conversations/{number}", endpoint="conversation")
        return conversation_ticket(json_object(resp.data, "conversation"))

    def list_messages(self, ticket: Ticket) -> list[Message]:
        """Messages, comments and drafts of the conversation, merged by id, oldest first."""
        number = path_id(ticket.external_id, "cnv")
        found: dict[str, Message] = {}
        for path, kind in ENTRY_LISTS:
            entries = self._entries(number, path)
            for message in self.read_entries(
                entries, f"an entry of {path} of conversation {number}",
                lambda entry, entry_id, at, kind=kind: self._message(entry, entry_id, at,
                                                                     number, kind),
                time_key=entry_time(kind), read_id=prefixed_id, read_time=unix_time,
            ):
                found.setdefault(message.external_id, message)
        return sorted(found.values(), key=lambda m: (m.created_at, m.external_id))

    def find_posted(self, ticket: Ticket, marker: str) -> str | None:
        """Our draft (or the message it became) with ``marker``: only entries our teammate
        wrote count, so a customer or another teammate quoting the marker is never ours."""
        for message in self.list_messages(ticket):
            if message.author_id == self.settings.teammate_id and \
                    message.role is not Role.CUSTOMER and contains_marker(message.body, marker):
                return message.external_id
        return None

    # ----- writes ----------------------------------------------------------------------------
    def post_draft(self, ticket_id: str, text: str) -> Posted:
        """A shared draft reply by our teammate, to be sent from the configured channel."""
        number = path_id(ticket_id, "cnv")
        resp = self.http.request(
            "POST", f"/conversations/{number}/drafts", endpoint="draft_create",
            json_body={"body": text_to_html(text), "channel_id": self.settings.channel_id,
                       "author_id": self.settings.teammate_id, "mode": "shared"},
            idempotent=False,
        )
        draft_id = prefixed_id(json_object(resp.data, "draft_create").get("id"), "msg")
        if draft_id is None:
            raise MalformedResponse(
                f"{self.name} draft_create: no draft id in the answer on conversation {number}",
                status=resp.status, endpoint="draft_create",
            )
        return Posted(draft_id, "draft")

    # ----- webhooks --------------------------------------------------------------------------
    def webhook_challenge(self, headers: Mapping[str, str]) -> dict[str, str] | None:
        """Front saves an application webhook only once the URL has answered the signed setup
        request's ``X-Front-Challenge``; the JSON form of the echo is the one we send."""
        value = headers.get("x-front-challenge")
        return {"challenge": value} if value else None

    def webhook_ticket_ids(self, headers: Mapping[str, str], body: bytes) -> list[str]:
        """The conversation an application-webhook event names; the setup ``sync`` request
        names none. Only a ``cnv_`` id is taken: the rest is re-read from the API."""
        payload = signatures.json_object(body)
        if payload.get("type") == "sync":
            return []
        inner = as_dict(payload.get("payload"))
        for holder in (inner, payload):
            conversation = prefixed_id(as_dict(holder.get("conversation")).get("id"), "cnv")
            if conversation is not None:
                return [conversation]
        raise signatures.WebhookPayloadError("the event names no conversation (cnv_ id)")

    # ----- helpers ---------------------------------------------------------------------------
    def _configured(self, collection: str, object_id: str, key: str) -> dict[str, Any]:
        """The teammate or channel a setting names; a 404 says which setting to fix."""
        endpoint = collection.rstrip("s")
        try:
            resp = self.http.request("GET", f"/{collection}/{object_id}", endpoint=endpoint)
        except NotFound as exc:
            raise NotFound(f"{self.name}: Front knows no {endpoint} {object_id}; fix "
                           f"{self.settings.key_path}.{key}", status=exc.status,
                           endpoint=endpoint) from None
        return json_object(resp.data, endpoint)

    def _event_ticket(self, index: int, event: Any) -> tuple[datetime, Ticket] | None:
        """The conversation an event carries, stamped with the event's time; an event without
        a usable conversation or time is skipped with a warning (it names no one's words)."""
        raw = as_dict(event)
        when = unix_time(raw.get("emitted_at"))
        try:
            ticket = conversation_ticket(as_dict(raw.get("conversation")))
        except MalformedResponse:
            ticket = None
        if ticket is None or when is None:
            log.warning("%s: skipped event %s (#%d of its page): no conversation id or time",
                        self.name, prefixed_id(raw.get("id"), "evt") or "?", index)
            return None
        return when, dataclasses.replace(ticket, updated_at=when)

    def _entries(self, number: str, path: str) -> list[Any]:
        """Every entry of one of the conversation's lists, across its pages."""
        full = f"/conversations/{number}/{path}"

        def read(token: str | None) -> tuple[list[Any], str | None]:
            params: dict[str, Any] = {"limit": ENTRY_PAGE}
            if token:
                params["page_token"] = token
            resp = self.http.request("GET", full, endpoint=path, params=params)
            body = json_object(resp.data, path)
            return _results(body, path), _next_token(body, full, path)

        pages = follow_pages(read, None, limit=MAX_ENTRY_PAGES, noun=path, endpoint=path,
                             what=f"{self.name} {path}: conversation {number}")
        return list(chain.from_iterable(pages))

    def _message(self, entry: dict[str, Any], entry_id: str, created_at: datetime,
                 number: str, kind: Entry) -> Message | None:
        message = entry_message(entry, entry_id, created_at, number, kind)
        if message is None:
            log.warning("%s: skipped %s %s of conversation %s: its body is not text",
                        self.name, kind.value, entry_id, number)
        return message


def _results(body: dict[str, Any], endpoint: str) -> list[Any]:
    items = body.get("_results", [])
    if not isinstance(items, list):
        raise MalformedResponse(f"{endpoint}: _results is not a list", endpoint=endpoint)
    return items


def _next_token(body: dict[str, Any], path: str, endpoint: str) -> str | None:
    """The ``page_token`` of ``_pagination.next`` (None at the end). Only the token is taken:
    the link names Front's public host, which a proxy or the simulator is not."""
    href = as_dict(body.get("_pagination")).get("next")
    if not isinstance(href, str) or not href:
        return None
    token = link_query(href, path, endpoint).get("page_token")
    if not token:
        raise MalformedResponse(f"{endpoint}: next link without a page_token", endpoint=endpoint)
    return token

