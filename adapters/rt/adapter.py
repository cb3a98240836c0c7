"""Request Tracker 5 over REST2: transaction-id cursor for changes, Comments as notes.

RT has no drafts, so our answer goes in as a Comment, which RT never shows to requestors. Changes
come from the transaction search: transaction ids only grow, so ``id > N`` is an exact cursor
with no time window to overlap. Message bodies live in attachments, which one collection call per
ticket returns already decoded.

RT answers some refusals with HTTP 200/201 and the reason inside its list of messages (an invalid
status, for instance); ``check_messages`` turns those into typed errors.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterator
from datetime import datetime
from itertools import chain
from typing import Annotated, Any, Literal

from pydantic import Field

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
    as_dict,
)
from adapters.paging import follow_pages
from adapters.payload import text_or_none
from adapters.rt.rest2 import (
    PERMISSION,
    Parts,
    check_messages,
    json_query,
    path_segment,
    rt_id,
    rt_time,
    sql_literal,
    sql_time,
    status_text,
    transaction_bodies,
)
from adapters.text import body_text, clean_body
from connector.core.errors import (
    BadRequest,
    ConfigError,
    MalformedResponse,
    Moved,
    NotFound,
    PermissionDenied,
)
from connector.core.http import CallObserver

log = logging.getLogger(__name__)

API_PATH = "/REST/2.0"
# What a conversation shows; EmailRecord is RT's copy of outgoing mail (autoreplies included).
HISTORY_TYPES = ("Create", "Correspond", "Comment", "Status", "Set", "EmailRecord")
# What a poll reports: messages, notes, the status/field changes that can resolve or reopen, and
# links, because a merge is only an AddLink (MergedInto) on both tickets.
POLL_TYPES = ("Create", "Correspond", "Comment", "Status", "Set", "AddLink")
MESSAGE_TYPES = frozenset({"Create", "Correspond", "Comment"})
SYSTEM_USERS = frozenset({"RT_System", "Nobody"})
MAX_PAGE = 100  # RT's cap on per_page
MAX_BACKFILL_PAGES = 10_000  # a bound for the loop, far beyond any instance's ticket count
MAX_LIST_PAGES = 50  # 5000 transactions or parts: a ticket beyond that is not a conversation
USER_CACHE_SECONDS = 600.0
_TOKEN_USER = re.compile(r"^\d+-(\d+)-[0-9a-f]+$", re.IGNORECASE)
_TRANSACTION_LOCATION = re.compile(r"/transaction/(\d+)/?$")


class RTTokenAuth(TokenAuth):
    """An RT auth token (RT::Authen::Token, built into RT 5): ``Authorization: token …``."""

    form = "token {}"


RTAuth = union_by_key("token", RTTokenAuth, PasswordAuth)


class RTSettings(AdapterSettings):
    """One RT instance. ``url`` is RT's base address, e.g. ``https://rt.example.com``.

    The connector's RT user needs ShowTicket, ShowTicketComments and CommentOnTicket on the
    watched queues, and AdminUsers (or the author roles fall back to "requestor or not").
    """

    api_suffix = API_PATH
    type: Literal["rt"]
    auth: RTAuth
    queues: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None, min_length=1,
        description="Queue names (or ids) to watch; all queues the user can see when unset.",
    )
    inactive_statuses: list[str] = Field(
        default_factory=lambda: ["resolved", "rejected", "deleted"], min_length=1,
        description="Statuses that end the conversation (the lifecycle's inactive ones).",
    )
    page_size: int = Field(
        default=MAX_PAGE, ge=1, le=MAX_PAGE, description="Transactions per change page.",
    )


class RTAdapter(Adapter):
    """Request Tracker 5 through REST2."""

    type_name = "rt"
    capabilities = Capabilities(drafts=False, webhook=None)
    settings_model = RTSettings
    simulator = None

    settings: RTSettings

    def __init__(self, settings: AdapterSettings, *, observer: CallObserver | None = None) -> None:
        super().__init__(settings, observer=observer)
        self._inactive = frozenset(s.lower() for s in self.settings.inactive_statuses)
        self._users: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def api_base(self) -> str:
        return self.settings.url + API_PATH

    # ----- reads -----------------------------------------------------------------------------
    def check(self) -> str:
        """RT's version and our user; also that every configured queue exists for that user,
        because RT answers a search on an unknown queue with silence, not an error."""
        resp = self.http.request("GET", "/rt", endpoint="rt")
        version = status_text(as_dict(resp.data).get("Version")) or "?"
        who = self._own_user_name()
        for index, queue in enumerate(self.settings.queues or []):
            try:
                self.http.request("GET", f"/queue/{path_segment(queue)}", endpoint="queue")
            except (NotFound, PermissionDenied) as exc:
                raise ConfigError(
                    f"adapters.{self.name}.queues[{index}]: RT has no queue {queue!r} that "
                    f"{who} can see"
                ) from exc
        return f"RT {version} as {who}"

    def poll_changes(self, cursor: str | None, start_from: datetime) -> ChangePage:
        """One page of transactions after the cursor, as the tickets they belong to.

        The new cursor is the page's highest transaction id. A first poll that finds nothing
        returns the newest id that existed *before* its time-based search, so nothing committed
        between the two calls is skipped. Transaction ids follow commit order on SQLite; on
        MySQL and PostgreSQL a long transaction (a ticket Create running scrips) can commit after
        a higher id, a window RT itself gives no way to close.
        """
        if cursor is None:
            floor = self._newest_transaction_id()
            condition = f"Created > {sql_time(start_from)}"
        else:
            floor = _cursor_id(cursor)
            condition = f"id > {floor}"
        body = self._page("/transactions", "transactions", {
            "query": self._transaction_query(condition),
            "fields": "ObjectId", "orderby": "id", "order": "ASC",
            "per_page": self.settings.page_size,
        })
        items = body["items"]
        ticket_ids: list[str] = []
        for item in items:
            ticket_id = rt_id(as_dict(item).get("ObjectId"))
            if ticket_id is not None and ticket_id not in ticket_ids:
                ticket_ids.append(ticket_id)
        tickets: dict[str, Ticket] = {}
        for ticket_id in ticket_ids:
            try:
                ticket = self.get_ticket(ticket_id)
            except Moved:  # merged: finished under this id; reading it again ends its work
                ticket = Ticket(external_id=ticket_id, status="merged", resolved=True)
            except (NotFound, PermissionDenied) as exc:  # shredded, or moved out of our sight
                log.debug("%s: changed ticket %s skipped: %s", self.name, ticket_id, exc)
                continue
            tickets.setdefault(ticket.external_id, ticket)
        ids = [int(i) for item in items if (i := rt_id(as_dict(item).get("id"))) is not None]
        new_cursor = str(max(ids) if ids else floor)
        # RT leaves out rows the user may not see after counting, so a short page is not proof
        # of the end; stopping early only defers the rest to the next poll.
        more = bool(body.get("next_page")) or len(items) >= self.settings.page_size
        return ChangePage(list(tickets.values()), new_cursor, more and new_cursor != cursor)

    def get_ticket(self, ticket_id: str) -> Ticket:
        """The ticket; Moved when RT answers with the ticket it was merged into."""
        number = _ticket_number(ticket_id)
        resp = self.http.request("GET", f"/ticket/{number}", endpoint="ticket")
        ticket = self._ticket(as_dict(resp.data))
        if ticket.external_id != str(number):
            raise Moved(f"{self.name}: ticket {number} was merged into {ticket.external_id}",
                        status=resp.status, endpoint="ticket")
        return ticket

    def list_messages(self, ticket: Ticket) -> list[Message]:
        """History and bodies in two collection reads (plus a page check each); users cached."""
        number = _ticket_number(ticket.external_id)
        transactions = self._all_pages(f"/ticket/{number}/history", "history", {
            "query": json_query("Type", HISTORY_TYPES),
            "fields": "ObjectId,Type,Creator,Created,Field,OldValue,NewValue", "orderby": "id",
            "order": "ASC",
        })
        transactions = self._own_history(number, transactions)
        parts = self._all_pages(f"/ticket/{number}/attachments", "attachments", {
            "query": json_query("ContentType", ("text/plain", "text/html")),
            "fields": "TransactionId,ContentType,Content,Filename", "orderby": "id",
            "order": "ASC",
        })
        bodies = transaction_bodies(parts)
        messages = [
            message for item in transactions
            if (message := self._message(as_dict(item), ticket, bodies)) is not None
        ]
        return sorted(messages, key=lambda m: (m.created_at, int(m.external_id)))

    def _own_history(self, number: int, transactions: list[Any]) -> list[Any]:
        """The ticket's own transactions, after making sure the history is this ticket's.

        RT answers the history of a ticket the user may not see with an empty list (every
        ticket has a Create), and that of a merged ticket with the surviving ticket's history:
        then ``get_ticket`` raises what applies. A survivor's history also holds the merged
        tickets' transactions; they stay theirs, so a message belongs to one ticket only.
        """
        own = str(number)
        others = {
            object_id for item in transactions
            if (object_id := rt_id(as_dict(item).get("ObjectId"))) not in (None, own)
        }
        if not transactions or others:
            self.get_ticket(own)
        return [t for t in transactions if rt_id(as_dict(t).get("ObjectId")) not in others]

    # ----- writes ----------------------------------------------------------------------------
    def post_draft(self, ticket_id: str, text: str) -> Posted:
        """Add a Comment: RT keeps comments from requestors, so only staff ever see it."""
        number = _ticket_number(ticket_id)
        try:
            resp = self.http.request(
                "POST", f"/ticket/{number}/comment", endpoint="comment",
                json_body={"Content": text, "ContentType": "text/plain"}, idempotent=False,
            )
        except BadRequest as exc:
            # RT refuses a comment on a missing ticket as "Permission Denied" (400): tell apart.
            if not PERMISSION.search(exc.detail):
                raise
            self.get_ticket(ticket_id)  # raises NotFound when that is the real reason
            raise PermissionDenied(str(exc.args[0]), status=exc.status, detail=exc.detail,
                                   endpoint=exc.endpoint) from exc
        match = _TRANSACTION_LOCATION.search(resp.headers.get("Location", ""))
        if match is not None:  # the comment exists; nothing else in the answer can undo that
            return Posted(match.group(1), "note")
        check_messages(resp.data, f"{self.name} comment")
        # Something between us and RT dropped the Location header. The comment is there, so
        # raising would post it twice; the engine finds it again by its marker.
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        log.warning("%s: RT named no transaction for the comment on %s", self.name, number)
        return Posted(f"comment-{number}-{digest}", "note")

    # ----- helpers ---------------------------------------------------------------------------
    def _transaction_query(self, condition: str) -> str:
        type_list = " OR ".join(f"Type = {sql_literal(t)}" for t in POLL_TYPES)
        query = f"ObjectType = 'RT::Ticket' AND {condition} AND ( {type_list} )"
        if self.settings.queues:
            queues = " OR ".join(f"TicketQueue = {sql_literal(q)}" for q in self.settings.queues)
            query += f" AND ( {queues} )"
        return query

    def _newest_transaction_id(self) -> int:
        body = self._page("/transactions", "transactions", {
            "query": self._transaction_query("id > 0"), "fields": "Type",
            "orderby": "id", "order": "DESC", "per_page": 1,
        })
        ids = [int(i) for item in body["items"] if (i := rt_id(as_dict(item).get("id")))]
        return max(ids, default=0)

    def _page(self, path: str, endpoint: str, params: dict[str, Any]) -> dict[str, Any]:
        resp = self.http.request("GET", path, endpoint=endpoint, params=params)
        body = as_dict(resp.data)
        if not isinstance(body.get("items"), list):
            raise MalformedResponse(f"{self.name} {endpoint}: no items list", endpoint=endpoint)
        return body

    def _all_pages(self, path: str, endpoint: str, params: dict[str, Any]) -> list[Any]:
        """Every item, page by page until an empty page.

        Not until a short page: RT drops rows the user may not see (outgoing mail without
        ShowOutgoingEmail, for one) after paging, so a short page can sit in the middle.
        """
        def read(page: int) -> tuple[list[Any], int | None]:
            items = self._page(path, endpoint, {**params, "per_page": MAX_PAGE, "page": page})
            return items["items"], page + 1 if items["items"] else None

        return list(chain.from_iterable(follow_pages(
            read, 1, limit=MAX_LIST_PAGES, what=f"{self.name} {endpoint}: {path}", noun="items",
            endpoint=endpoint, strict=False,
        )))

    def _ticket(self, data: dict[str, Any]) -> Ticket:
        ticket_id = rt_id(data.get("id"))
        status = data.get("Status")
        if ticket_id is None or not isinstance(status, str):
            raise MalformedResponse(f"{self.name} ticket: no id or status", endpoint="ticket")
        requestors = data.get("Requestor")
        requester = rt_id(as_dict(requestors[0]).get("id")) if isinstance(requestors, list) \
            and requestors else None
        user = self._user(requester) if requester else None
        email = text_or_none(user.get("EmailAddress")) if user else None
        return Ticket(
            external_id=ticket_id,
            status=status,
            resolved=status.lower() in self._inactive,
            updated_at=rt_time(data.get("LastUpdated")),
            subject=text_or_none(data.get("Subject")),
            requester_id=requester,
            requester_email=email or None,
            url=f"{self.settings.url}/Ticket/Display.html?id={ticket_id}",
        )

    def _message(
        self, item: dict[str, Any], ticket: Ticket, bodies: dict[str, Parts]
    ) -> Message | None:
        txn_id = rt_id(item.get("id"))
        kind = item.get("Type")
        created = rt_time(item.get("Created"))
        if txn_id is None or not isinstance(kind, str) or created is None:
            log.warning("%s: skipped a transaction on ticket %s without id, type or time",
                        self.name, ticket.external_id)
            return None
        author = rt_id(as_dict(item.get("Creator")).get("id"))
        if kind in MESSAGE_TYPES and author not in SYSTEM_USERS:
            role = self._role(author, ticket)
            public = kind != "Comment"
            parts = bodies.get(txn_id, (None, None))
            body = clean_body(*parts) if role is Role.CUSTOMER else body_text(*parts)
        else:
            role = Role.SYSTEM
            # Customers see status changes; comments and copies of outgoing mail stay with staff.
            public = kind not in ("Comment", "EmailRecord")
            body = body_text(*bodies.get(txn_id, (None, None))) or _change_text(kind, item)
        return Message(
            external_id=txn_id, ticket_id=ticket.external_id, created_at=created, role=role,
            public=public, body=body, author_id=author,
        )

    def _role(self, author: str | None, ticket: Ticket) -> Role:
        """Staff are RT's privileged users; without the right to read that flag, the ticket's
        requestor is the customer and anyone else is taken for staff."""
        if author is None:
            return Role.SYSTEM
        privileged = (self._user(author) or {}).get("Privileged")
        if privileged is None:
            return Role.CUSTOMER if author == ticket.requester_id else Role.AGENT
        return Role.AGENT if str(privileged) == "1" else Role.CUSTOMER

    def _user(self, name: str) -> dict[str, Any] | None:
        """The user record, cached a while; None when RT will not show it to us."""
        now = time.monotonic()
        cached = self._users.get(name)
        if cached is not None and now - cached[0] < USER_CACHE_SECONDS:
            return cached[1]
        try:
            user: dict[str, Any] | None = as_dict(
                self.http.request("GET", f"/user/{path_segment(name)}", endpoint="user").data
            )
        except (NotFound, PermissionDenied):
            user = None
        self._users[name] = (now, user)
        return user

    def _own_user_name(self) -> str:
        auth = self.settings.auth
        if isinstance(auth, PasswordAuth):
            return auth.username
        match = _TOKEN_USER.match(auth.token.get_secret_value())
        user = self._user(match.group(1)) if match else None  # a token names its user's id
        name = user.get("Name") if user else None
        return status_text(name) or "the token's user"

    # ----- backfill --------------------------------------------------------------------------
    def list_tickets(self, since: datetime, until: datetime | None) -> Iterator[list[Ticket]]:
        """Tickets whose ``LastUpdated`` lies in the window, in id order, one page at a time.

        Paged by ``id > last`` rather than page numbers: the comments we post while the listing
        runs move tickets out of the window, and would shift numbered pages under us.
        """
        window = f"LastUpdated >= {sql_time(since)}"
        if until is not None:
            window += f" AND LastUpdated <= {sql_time(until)}"
        if self.settings.queues:
            window += " AND ( " + " OR ".join(
                f"Queue = {sql_literal(q)}" for q in self.settings.queues) + " )"

        def read(after: tuple[int, int]) -> tuple[list[int], tuple[int, int] | None]:
            """Ids after ``last`` on ``page``, and where the next page is: a page RT emptied
            of rows we may not see is followed by the next page number."""
            last, page = after
            body = self._page("/tickets", "tickets", {
                "query": f"{window} AND id > {last}", "fields": "id", "orderby": "id",
                "order": "ASC", "per_page": MAX_PAGE, "page": page,
            })
            ids = [int(i) for item in body["items"] if (i := rt_id(as_dict(item).get("id")))
                   and i.isdigit()]
            if ids:
                return ids, (max(ids), 1)
            return [], (last, page + 1) if body.get("next_page") else None

        pages = follow_pages(read, (0, 1), limit=MAX_BACKFILL_PAGES, noun="tickets",
                             what=f"{self.name} backfill listing", endpoint="tickets",
                             strict=False)
        yield from (self._listed(ids) for ids in pages if ids)

    def _listed(self, ids: list[int]) -> list[Ticket]:
        tickets: dict[str, Ticket] = {}
        for number in ids:
            try:
                ticket = self.get_ticket(str(number))
            except (NotFound, PermissionDenied, Moved) as exc:  # merged: listed as its target
                log.debug("%s: ticket %s skipped by backfill: %s", self.name, number, exc)
                continue
            tickets.setdefault(ticket.external_id, ticket)
        return list(tickets.values())


def _change_text(kind: str, item: dict[str, Any]) -> str:
    field = item.get("Field") or kind
    old, new = item.get("OldValue") or "", item.get("NewValue") or ""
    return f"{field}: {old} -> {new}" if old or new else kind


def _ticket_number(ticket_id: str) -> int:
    try:
        return int(ticket_id)
    except (TypeError, ValueError):
        raise NotFound(f"not an RT ticket id: {ticket_id!r}", endpoint="ticket") from None


def _cursor_id(cursor: str) -> int:
    try:
        return int(cursor)
    except ValueError:
        raise ConfigError(f"not an RT cursor (a transaction id): {cursor!r}") from None
