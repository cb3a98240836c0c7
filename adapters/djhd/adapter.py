"""django-helpdesk (2.x) over its REST API: follow-ups as messages, a private follow-up as our note.

django-helpdesk has no drafts; a follow-up with ``public: false`` is its internal note: "never
shown to or e-mailed to the submitter, although all staff can see them" (the ``FollowUp``
model's docstring). Changes come from the follow-up list plus a sweep of the open tickets
(``adapters/djhd/feed.py`` says why both). Facts and their sources:
docs/adapters/django_helpdesk.md.

Who wrote a follow-up is not in the API beyond a user id, and the API has no endpoint to read a
user. What the code records is enough: ``update_ticket`` stores the author only when it is staff,
e-mail from the submitter carries a ``message_id``, and the opening follow-up repeats the
ticket's ``description`` ("The content of the customers query").
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from adapters.auth import PasswordAuth, TokenAuth, union_by_key
from adapters.base import (
    Adapter,
    AdapterSettings,
    Capabilities,
    ChangePage,
    Message,
    Posted,
    Role,
    Ticket,
)
from adapters.djhd import feed
from adapters.djhd.feed import Cursor, first_after, followup_id, followup_micros, read_from
from adapters.djhd.followups import HTML, author_role, defuse, followups
from adapters.payload import json_object, numeric_id, parse_time, path_number
from adapters.text import body_text, clean_body
from connector.core.durations import Duration
from connector.core.errors import (
    AuthenticationFailed,
    BadRequest,
    MalformedResponse,
    NotFound,
    PermissionDenied,
)
from connector.core.http import CallObserver, Response

log = logging.getLogger(__name__)

API_PATH = "/api"
# django-helpdesk's default status numbers (helpdesk/settings.py, HELPDESK_TICKET_*_STATUS).
STATUS_NAMES = {1: "Open", 2: "Reopened", 3: "Resolved", 4: "Closed", 5: "Duplicate"}
MAX_PAGE = 1000  # ours: DRF's ``page_size`` has no cap in django-helpdesk's pagination
MAX_BACKFILL_PAGES = 10_000
# DRF's texts for refused credentials. With SessionAuthentication first (DRF's default order)
# DRF answers them with 403, not 401, so only the text tells them from "not staff".
_AUTH_REFUSED = re.compile(
    r"(?i)invalid username/password|invalid token|credentials were not provided|"
    r"user inactive or deleted|invalid basic header|invalid token header"
)


class DjhdTokenAuth(TokenAuth):
    """A DRF token (``Authorization: Token …``); needs ``rest_framework.authtoken`` and
    ``TokenAuthentication`` in the site's ``REST_FRAMEWORK`` settings."""

    form = "Token {}"


DjhdAuth = union_by_key("token", DjhdTokenAuth, PasswordAuth)


class DjhdSettings(AdapterSettings):
    """One django-helpdesk site. ``url`` is where its URLs are mounted (``/api/`` follows).

    The connector's user must be staff (``is_staff``): the API admits nobody else. With
    per-queue permissions on, it needs the watched queues' ``queue_access_<slug>`` permission.
    """

    api_suffix = API_PATH

    type: Literal["django_helpdesk"]
    auth: DjhdAuth
    queues: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, min_length=1,
        description="Queue ids to watch; every queue the user can see when unset.",
    )
    resolved_statuses: list[int] = Field(
        default_factory=lambda: [3, 4, 5], min_length=1,
        description="Status numbers that end the conversation (Resolved, Closed, Duplicate).",
    )
    open_statuses: list[int] = Field(
        default_factory=lambda: [1, 2], min_length=1,
        description="Status numbers of open tickets (Open, Reopened), which the sweep lists.",
    )
    page_size: int = Field(
        default=100, ge=1, le=MAX_PAGE, description="Follow-ups per page of the change feed.",
    )
    sweep_page_size: int = Field(
        default=100, ge=1, le=MAX_PAGE,
        description="Open tickets per page of the sweep (each comes with its follow-ups).",
    )
    overlap: Duration = Field(
        default=300.0, ge=0,
        description="How far behind the newest follow-up every pass re-reads, for follow-ups "
        "committed after newer ones (django-helpdesk sends mail before it saves).",
    )
    sweep_interval: Duration = Field(
        default=300.0, ge=0,
        description="How often the open tickets are listed, for status changes without a "
        "follow-up (kanban board, API PATCH, merge) and deletions.",
    )

    @model_validator(mode="after")
    def _statuses_apart(self) -> DjhdSettings:
        both = set(self.resolved_statuses) & set(self.open_statuses)
        if both:
            raise ValueError(f"statuses {sorted(both)} are both open and resolved")
        return self


class DjhdAdapter(Adapter):
    """django-helpdesk through ``/api/`` (Django REST framework)."""

    type_name = "django_helpdesk"
    capabilities = Capabilities(drafts=False, webhook=None)
    settings_model = DjhdSettings
    simulator = None

    settings: DjhdSettings

    def __init__(self, settings: AdapterSettings, *, observer: CallObserver | None = None) -> None:
        super().__init__(settings, observer=observer)
        self._resolved = frozenset(self.settings.resolved_statuses)
        self._open = frozenset(self.settings.open_statuses)
        self._queues = frozenset(self.settings.queues or [])

    def api_base(self) -> str:
        return self.settings.url + API_PATH

    # ----- reads -----------------------------------------------------------------------------
    def check(self) -> str:
        """One follow-up: the cheapest call that needs a staff user. The API answers a user
        who is not staff with 403, which becomes a message naming the key to fix."""
        resp = self._get("/followups/", "followups", {"page_size": 1})
        count = json_object(resp.data, "followups").get("count")
        who = self.settings.auth.username if isinstance(self.settings.auth, PasswordAuth) \
            else "the token's user"
        return f"django-helpdesk API as {who} ({count if isinstance(count, int) else '?'} " \
               f"follow-ups visible)"

    def poll_changes(self, cursor: str | None, start_from: datetime) -> ChangePage:
        """One page of the follow-up feed, or of the sweep when one is due (see ``feed``)."""
        state = Cursor.load(cursor) if cursor else None
        if state is None:
            if cursor:
                log.warning("%s: unreadable cursor; reading again from the start time",
                            self.name)
            state = Cursor.fresh(start_from)
        if state.phase == "sweep":
            return self._sweep_page(state)
        return self._feed_page(state)

    def get_ticket(self, ticket_id: str) -> Ticket:
        """The ticket with its follow-ups (the API always nests them): status and count."""
        return self._ticket(self._ticket_data(ticket_id))

    def list_messages(self, ticket: Ticket) -> list[Message]:
        """Every follow-up of the ticket, oldest first, each with its role (``_role``)."""
        data = self._ticket_data(ticket.external_id)
        ticket_id = str(data["id"])
        messages = []
        for position, item in enumerate(followups(data)):
            message = self._message(item, ticket_id, data, position == 0)
            if message is not None:
                messages.append(message)
        return sorted(messages, key=lambda m: (m.created_at, int(m.external_id)))

    # ----- writes ----------------------------------------------------------------------------
    def post_draft(self, ticket_id: str, text: str) -> Posted:
        """A private follow-up by our user. No ``title`` (one that differs from the ticket's
        renames the ticket) and no ``new_status``; ``user: null`` makes the API record us."""
        number = int(path_number(ticket_id))
        try:
            resp = self._request("POST", "/followups/", "followup", json_body={
                "ticket": number, "comment": defuse(text), "public": False, "user": None,
            }, idempotent=False)
        except BadRequest as exc:
            # A ticket we may not see is refused as an invalid primary key (400).
            if "ticket" in exc.detail.lower():
                self.get_ticket(ticket_id)  # raises NotFound when that is the reason
            raise
        posted = numeric_id(json_object(resp.data, "followup").get("id"))
        if posted is None:
            raise MalformedResponse(f"{self.name} followup: the answer names no follow-up",
                                    status=resp.status, endpoint="followup")
        return Posted(posted, "note")

    # ----- backfill --------------------------------------------------------------------------
    def list_tickets(self, since: datetime, until: datetime | None) -> Iterator[list[Ticket]]:
        """Tickets with a follow-up dated in the window, found by date in the follow-up list.

        The API lists tickets by id only, with no dates; the follow-up list is ordered by date,
        so the window's start is found by bisection and read forward until ``until``.
        """
        floor, ceiling = feed.micros(since), feed.micros(until) if until else None
        listed: set[str] = set()
        index, count = first_after(self._probe, floor, inclusive=True)
        for _ in range(MAX_BACKFILL_PAGES):
            if index >= count:
                return
            page = read_from(self._probe, index, self.settings.page_size)
            ids: list[str] = []
            past = False
            for item in page.items:
                when, ticket = followup_micros(item), numeric_id(item.get("ticket"))
                past = past or (when is not None and ceiling is not None and when > ceiling)
                if not past and when is not None and when >= floor and ticket \
                        and ticket not in listed:
                    listed.add(ticket)
                    ids.append(ticket)
            yield self._tickets(ids)
            if past or not page.more:
                return
            index = (index // self.settings.page_size + 1) * self.settings.page_size
        log.warning("%s: backfill listing stopped after %d pages", self.name, MAX_BACKFILL_PAGES)

    # ----- the feed --------------------------------------------------------------------------
    def _feed_page(self, state: Cursor) -> ChangePage:
        """The follow-ups after the horizon (or after where this pass stopped) not yet reported:
        their tickets. At the end of a pass, the horizon moves up and a due sweep starts."""
        floor = state.read_to if state.read_to is not None else state.horizon
        try:
            index, count = first_after(self._probe, floor, inclusive=False)
            page = read_from(self._probe, index, self.settings.page_size) if index < count \
                else feed.FeedPage([], False)
        except NotFound:  # the list shrank between two calls (deleted follow-ups): next poll
            log.info("%s: the follow-up list changed while it was read; reading it again",
                     self.name)
            return ChangePage([], state.dump(), False)
        changed: list[str] = []
        for item in page.items:
            number, when = followup_id(item), followup_micros(item)
            ticket = numeric_id(item.get("ticket"))
            if number is None or when is None or ticket is None:
                log.warning("%s: a follow-up without id, date or ticket (ticket %s) skipped",
                            self.name, ticket or "?")
                continue
            if when <= state.horizon or number in state.seen:
                continue
            state.seen[number] = when
            state.newest = max(state.newest, when)
            if ticket not in changed:
                changed.append(ticket)
        tickets = self._tickets(changed)
        state.advance(int(self.settings.overlap * 1_000_000))
        if page.more:
            # The next page starts after this one. A follow-up dated within this page but
            # committed after it was read is found by the next pass, which starts at the horizon.
            state.read_to = max([floor, *(followup_micros(i) or 0 for i in page.items)])
            return ChangePage(tickets, state.dump(), True)
        state.read_to = None
        if time.time() >= state.sweep_due:
            state.phase, state.sweep_page, state.sweep_found = "sweep", 1, []
            return ChangePage(tickets, state.dump(), True)
        return ChangePage(tickets, state.dump(), False)

    def _sweep_page(self, state: Cursor) -> ChangePage:
        """One page of the open tickets, then (in pages) the tickets no longer among them."""
        if state.gone:
            size = self.settings.sweep_page_size
            batch, state.gone = state.gone[:size], state.gone[size:]
            return ChangePage(self._gone([str(i) for i in batch]), self._end_sweep(state),
                              bool(state.gone))
        params = {"status": ",".join(str(s) for s in sorted(self._open)),
                  "page_size": self.settings.sweep_page_size, "page": state.sweep_page}
        try:
            body = json_object(self._get("/tickets/", "tickets", params).data, "tickets")
        except NotFound:  # the list shrank under us: what was read is the sweep
            body = {"results": [], "next": None}
        found: list[Ticket] = []
        for item in body.get("results") or []:
            try:
                ticket = self._ticket(json_object(item, "tickets"))
            except MalformedResponse as exc:
                log.warning("%s: a ticket of the open-ticket list skipped: %s", self.name, exc)
                continue
            # An unknown status number makes django-helpdesk ignore the filter: check again.
            if item.get("status") in self._open and not ticket.resolved and self._watched(item):
                found.append(ticket)
                state.sweep_found.append(int(ticket.external_id))
        previous = set(state.open) if state.open is not None else None
        newly = [t for t in found if previous is not None and int(t.external_id) not in previous]
        if body.get("next"):
            state.sweep_page += 1
            return ChangePage(newly, state.dump(), True)
        if previous is not None:
            state.gone = sorted(previous - set(state.sweep_found))
        state.open = sorted(set(state.sweep_found))
        state.sweep_found = []
        return ChangePage(newly, self._end_sweep(state), bool(state.gone))

    def _end_sweep(self, state: Cursor) -> str:
        if not state.gone:
            state.phase, state.sweep_page = "feed", 1
            state.sweep_due = time.time() + self.settings.sweep_interval
        return state.dump()

    def _gone(self, ids: list[str]) -> list[Ticket]:
        """Tickets that left the open ones: as they are now, or resolved when they are gone
        (deleted, or moved where we may not look): their conversation is over for us."""
        tickets = []
        for ticket_id in ids:
            try:
                tickets.append(self.get_ticket(ticket_id))
            except (NotFound, PermissionDenied) as exc:
                log.debug("%s: ticket %s is gone: %s", self.name, ticket_id, exc)
                tickets.append(Ticket(external_id=ticket_id, status="gone", resolved=True))
        return tickets

    def _tickets(self, ids: list[str]) -> list[Ticket]:
        """The tickets, read one by one; those we may not see or that are out of the watched
        queues are left out (their follow-ups are visible while the ticket is not only in a
        race with a move or deletion, which the sweep reports)."""
        tickets = []
        for ticket_id in ids:
            try:
                data = self._ticket_data(ticket_id)
            except (NotFound, PermissionDenied) as exc:
                log.debug("%s: changed ticket %s skipped: %s", self.name, ticket_id, exc)
                continue
            if self._watched(data):
                tickets.append(self._ticket(data))
        return tickets

    def _probe(self, page_size: int, page: int | str) -> dict[str, Any]:
        resp = self._get("/followups/", "followups", {"page_size": page_size, "page": page})
        return json_object(resp.data, "followups")

    # ----- mapping ---------------------------------------------------------------------------
    def _ticket_data(self, ticket_id: str) -> dict[str, Any]:
        resp = self._get(f"/tickets/{path_number(ticket_id)}/", "ticket", None)
        data = json_object(resp.data, "ticket")
        if numeric_id(data.get("id")) is None:
            raise MalformedResponse(f"{self.name} ticket {ticket_id}: no id", endpoint="ticket")
        return data

    def _ticket(self, data: dict[str, Any]) -> Ticket:
        ticket_id, status = numeric_id(data.get("id")), data.get("status")
        if ticket_id is None or not isinstance(status, int) or isinstance(status, bool):
            raise MalformedResponse(f"{self.name} ticket: no id or status", endpoint="ticket")
        items = followups(data)
        dates = [when for item in items if (when := parse_time(item.get("date"))) is not None]
        email = data.get("submitter_email")
        first = items[0] if items else {}
        return Ticket(
            external_id=ticket_id,
            status=STATUS_NAMES.get(status, str(status)),
            resolved=status in self._resolved or data.get("merged_to") is not None,
            updated_at=max(dates) if dates else None,
            subject=data["title"] if isinstance(data.get("title"), str) else None,
            requester_email=email if isinstance(email, str) and email else None,
            channel=("email" if first.get("message_id") else "web") if items else None,
            url=f"{self.settings.url}/tickets/{ticket_id}/",
            message_count=len(items),
        )

    def _message(self, item: dict[str, Any], ticket_id: str, ticket: dict[str, Any],
                 opening: bool) -> Message | None:
        number, created = numeric_id(item.get("id")), parse_time(item.get("date"))
        if number is None or created is None:
            log.warning("%s: skipped a follow-up on ticket %s without id or date",
                        self.name, ticket_id)
            return None
        comment = item.get("comment") if isinstance(item.get("comment"), str) else ""
        role = author_role(item, comment, ticket, opening)
        html = comment if HTML.search(comment) else None
        text = None if html else comment
        if role is Role.SYSTEM and not comment.strip():
            body = str(item.get("title") or "")
        else:
            body = clean_body(text, html) if role is Role.CUSTOMER else body_text(text, html)
        author = numeric_id(item.get("user"))
        return Message(
            external_id=number, ticket_id=ticket_id, created_at=created, role=role,
            public=item.get("public") is True, body=body, author_id=author,
        )

    def _watched(self, data: dict[str, Any]) -> bool:
        if not self._queues:
            return True
        queue = numeric_id(data.get("queue"))
        return queue is not None and int(queue) in self._queues

    # ----- HTTP ------------------------------------------------------------------------------
    def _get(self, path: str, endpoint: str, params: dict[str, Any] | None) -> Response:
        return self._request("GET", path, endpoint, params=params)

    def _request(self, method: str, path: str, endpoint: str, **kwargs: Any) -> Response:
        """A call whose refused credentials come out as AuthenticationFailed.

        DRF answers wrong credentials with 403 when SessionAuthentication comes first (its
        default), the same status as "not staff"; the text tells them apart (we ask for
        English). Either way the message names the key to fix.
        """
        try:
            return self.http.request(method, path, endpoint=endpoint,
                                     headers={"Accept-Language": "en"}, **kwargs)
        except PermissionDenied as exc:
            key = f"{self.settings.key_path}.auth"
            if _AUTH_REFUSED.search(exc.detail):
                raise AuthenticationFailed(
                    f"{self.name} {endpoint}: django-helpdesk refused the credentials of {key}",
                    status=exc.status, detail=exc.detail, endpoint=endpoint) from None
            raise PermissionDenied(
                f"{self.name} {endpoint}: django-helpdesk's API admits staff users only "
                f"(is_staff); the user of {key} is not staff, or lacks the queue's permission",
                status=exc.status, detail=exc.detail, endpoint=endpoint) from None
