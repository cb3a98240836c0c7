"""An in-memory Help Scout (Inbox API 2.0) over real HTTP, for tests and ``connector sandbox``.

It follows the documented paths, HAL shapes and field names of the endpoints the adapter uses,
and the behaviours that break naive clients:

- OAuth2 client credentials at ``/v2/oauth2/token``; tokens expire (``token_lifetime``) and can
  be revoked (``expire_tokens``), after which the API answers 401.
- The conversation list shows only ``active`` conversations unless ``status=all``; it pages by
  number with a fixed page size, leaves ``_embedded`` out of an empty page, and, like Help
  Scout's search index, may see a change only ``index_lag`` seconds after it happened.
- A reply created without ``status`` reactivates the conversation, draft or not.
- Threads come newest first; v2 reports AI (``system_user``) authors as ``user``, v3 as they are.
- A merged conversation answers 301 with ``Location``, its threads 404, and leaves the list; a
  deleted one answers 404 but stays in the list with ``state: deleted`` (it can be restored).
- Every API answer carries ``X-RateLimit-Limit-Minute``/``X-RateLimit-Remaining-Minute``; over
  the limit the answer is 429 with ``X-RateLimit-Retry-After`` (and no ``Retry-After``). Writes
  count twice. Writes also have a burst limit of 12 per 5 seconds (``write_burst``).
- List answers link their pages with absolute ``_links`` on Help Scout's own host
  (``link_base``); without a ``next`` link the list has ended. ``v3_page_info=False`` leaves the
  ``page`` block out of v3 thread lists, so only the links tell that more pages exist.

Documents followed (addresses and what each says: docs/adapters/helpscout.md):
developer.helpscout.com/mailbox-api/ (overview/authentication, overview/pagination,
overview/rate-limiting, endpoints/conversations/list, endpoints/conversations/threads/list-v3,
endpoints/conversations/threads/reply), developer.helpscout.com/webhooks/, and for the write
burst limit the deprecated developer.helpscout.com/help-desk-api/ (API 1.0).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import math
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode

from adapters.signatures import post_webhook
from adapters.simulation import SimRequest, SimResponse, Simulator
from adapters.text import html_to_text

NS = 1_000_000_000
STATUSES = ("active", "pending", "closed", "spam")
LIST_FILTERS: dict[str, frozenset[str]] = {
    "active": frozenset({"active"}), "pending": frozenset({"pending"}),
    "closed": frozenset({"closed"}), "spam": frozenset({"spam"}),
    "open": frozenset({"active", "pending"}), "all": frozenset(STATUSES),
}
ROLES = ("owner", "admin", "user")
NOMINAL_LIMIT = 400  # what X-RateLimit-Limit-Minute says when no limit is enforced
MAX_REQUEST_BYTES = 100_000  # Help Scout's default request size limit (413 above it)
THREADS_PAGE_SIZE = 50
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WRITE_BURST = (12, 5.0)  # writes per seconds, account-wide
_SINCE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@dataclass
class _Person:
    id: int
    first: str
    last: str
    email: str | None
    kind: str  # "user", "system_user" (Help Scout AI) or "customer"
    role: str = "user"


@dataclass
class _Thread:
    id: int
    type: str  # customer, message, note, lineitem, chat, phone...
    state: str  # published, draft, hidden, review
    status: str  # the conversation status it set, or "nochange"
    body: str | None  # HTML; line items have none
    author: _Person
    customer_id: int
    created_at: str
    source_type: str = "web"
    action: dict[str, Any] | None = None
    api_user: int | None = None  # set when created over the API, by that user


@dataclass
class _Conversation:
    id: int
    number: int
    mailbox_id: int
    subject: str
    status: str
    type: str
    customer_id: int
    created_by: _Person
    created_at: str
    source_type: str
    tags: list[str] = field(default_factory=list)
    threads: list[_Thread] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)  # every modification, nanoseconds
    user_updated_at: str | None = None
    waiting_since: str | None = None
    closed_at: str | None = None
    closed_by: int = 0
    merged_into: int | None = None
    deleted: bool = False
    restricted: bool = False  # in a mailbox the API user may not see: 403, not listed
    corrupt: bool = False  # its first thread is served malformed (no id, body not a string)


def _iso(stamp_ns: int) -> str:
    return datetime.fromtimestamp(stamp_ns / NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _paragraphs(text: str) -> str:
    """Plain text as the HTML Help Scout stores for a mail body."""
    return "".join(
        "<p>{}</p>".format(escape(p).replace("\n", "<br>"))
        for p in re.split(r"\n\s*\n", text.strip()) if p
    )


def _too_many(wait: float) -> SimResponse:
    """Help Scout's 429: the wait in its own header, never in ``Retry-After``."""
    response = _vnd_error(429, "Rate limit exceeded")
    response.headers["X-RateLimit-Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def _vnd_error(status: int, message: str, *errors: tuple[str, str]) -> SimResponse:
    """Help Scout's error body (Spring's VndError), with per-field errors when it has them."""
    body: dict[str, Any] = {"logRef": secrets.token_hex(8), "message": message}
    if errors:
        body["_embedded"] = {"errors": [
            {"path": path, "message": text, "source": "JSON"} for path, text in errors
        ]}
    return SimResponse(status, body)


class HelpScoutSimulator(Simulator):
    """Help Scout's Inbox API 2.0, the subset the adapter uses, with the state tests inspect.

    ``rate_limit``: weighted requests per minute before 429 (None: unlimited).
    ``page_size``: conversations per list page (Help Scout: 25).
    ``token_lifetime``: seconds an access token lives (Help Scout: 172800, two days).
    ``index_lag``: seconds before a change reaches the conversation list (0: at once).
    ``write_burst``: (writes, seconds) allowed before a write is refused with 429 (None: none).
    ``link_base``: the host in ``_links`` hrefs (default: this simulator's own address).
    ``v3_page_info``: False leaves the ``page`` block out of v3 thread lists.
    An app (``app_id``/``app_secret``) owned by the bot user exists from the start, as do a
    mailbox, the account owner and the bot.
    """

    service = "helpscout"
    routes: ClassVar[list[tuple[str, str, str]]] = [
        ("POST", "/v2/oauth2/token", "oauth_token"),
        ("GET", "/v2/users/me", "users_me"),
        ("GET", "/v2/mailboxes", "mailboxes"),
        ("GET", "/v2/conversations", "conversations_list"),
        ("GET", "/v2/conversations/<int:conversation_id>", "conversation_show"),
        ("GET", "/v2/conversations/<int:conversation_id>/threads", "threads_v2"),
        ("GET", "/v3/conversations/<int:conversation_id>/threads", "threads_v3"),
        ("POST", "/v2/conversations/<int:conversation_id>/reply", "reply_create"),
        ("POST", "/v2/conversations/<int:conversation_id>/notes", "note_create"),
    ]

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        rate_limit: int | None = None,
        page_size: int = 25,
        token_lifetime: float = 172_800.0,
        index_lag: float = 0.0,
        write_burst: tuple[int, float] | None = WRITE_BURST,
        link_base: str | None = None,
        v3_page_info: bool = True,
        app_id: str = "hs-app-id",
        app_secret: str = "hs-app-secret",
    ) -> None:
        super().__init__(port, host)
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.rate_limit = rate_limit
        self.page_size = page_size
        self.token_lifetime = token_lifetime
        self.index_lag = index_lag
        self.write_burst = write_burst
        self.link_base = link_base
        self.v3_page_info = v3_page_info
        self._writes: deque[float] = deque()
        self._ids = itertools.count(1001)
        self._numbers = itertools.count(101)
        self._last_stamp = 0
        self._window: deque[tuple[float, int]] = deque()
        self.people: dict[int, _Person] = {}
        self.mailboxes: dict[int, str] = {}
        self.conversations: dict[int, _Conversation] = {}
        self._tag_ids: dict[str, int] = {}
        self._apps: dict[str, tuple[str, int]] = {}
        self._tokens: dict[str, tuple[int, float]] = {}
        self.issued_tokens: list[str] = []  # every access token handed out, oldest first
        self.default_mailbox_id = self.add_mailbox("Support")
        self.owner_user_id = self.add_user("Olivia", "Owner", email="owner@example.com",
                                           role="owner")
        self.bot_user_id = self.add_user("Uppzy", "Bot", email="bot@example.com", role="admin")
        self.app_id, self.app_secret = app_id, app_secret
        self.add_app(app_id, app_secret, self.bot_user_id)

    # ----- Python API for tests and the sandbox ----------------------------------------------
    def add_mailbox(self, name: str) -> int:
        with self.lock:
            mailbox_id = next(self._ids)
            self.mailboxes[mailbox_id] = name
        return mailbox_id

    def add_user(self, first: str, last: str = "", *, email: str | None = None,
                 role: str = "user", system: bool = False) -> int:
        """A Help Scout user; ``system=True`` makes an AI agent (``system_user``)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        return self._add_person(first, last, email, "system_user" if system else "user", role)

    def add_customer(self, first: str, last: str = "", *, email: str | None = None) -> int:
        return self._add_person(first, last, email, "customer", "user")

    def add_app(self, app_id: str, app_secret: str, owner_id: int) -> None:
        """An OAuth app whose client-credentials tokens act as ``owner_id``."""
        with self.lock:
            self._person(owner_id, "user")
            self._apps[app_id] = (app_secret, owner_id)

    def expire_tokens(self) -> None:
        """Revoke every access token, as expiry or an app secret reset would."""
        with self.lock:
            self._tokens.clear()

    def create_conversation(
        self,
        customer_id: int,
        body: str,
        *,
        subject: str = "Help needed",
        mailbox_id: int | None = None,
        tags: tuple[str, ...] | list[str] = (),
        html: bool = False,
        kind: str = "email",
    ) -> int:
        """A customer writes in: a new active conversation whose first thread is theirs
        (``kind="chat"``: a chat conversation opened by a chat line)."""
        with self.lock:
            customer = self._person(customer_id, "customer")
            mailbox = mailbox_id if mailbox_id is not None else self.default_mailbox_id
            if mailbox not in self.mailboxes:
                raise KeyError(f"no mailbox {mailbox}")
            stamp = self._stamp()
            conversation = _Conversation(
                next(self._ids), next(self._numbers), mailbox, subject, "active", kind,
                customer_id, customer, _iso(stamp), kind, list(dict.fromkeys(tags)),
            )
            self.conversations[conversation.id] = conversation
            self._add_thread(conversation, "chat" if kind == "chat" else "customer",
                             body if html else _paragraphs(body), customer, source_type=kind)
        return conversation.id

    def add_customer_reply(self, conversation_id: int, body: str, *, html: bool = False) -> int:
        """The customer answers by mail; a pending or closed conversation becomes active."""
        with self.lock:
            conversation = self._live(conversation_id)
            customer = self.people[conversation.customer_id]
            reopen = "active" if conversation.status in ("pending", "closed") else None
            return self._add_thread(conversation, "customer", body if html else _paragraphs(body),
                                    customer, status=reopen, source_type="email").id

    def add_chat(self, conversation_id: int, body: str, *, user_id: int | None = None) -> int:
        """A chat line, by the customer or (with ``user_id``) by a user."""
        with self.lock:
            conversation = self._live(conversation_id)
            author = self.people[user_id if user_id is not None else conversation.customer_id]
            return self._add_thread(conversation, "chat", _paragraphs(body), author,
                                    source_type="chat").id

    def add_reply(
        self, conversation_id: int, user_id: int, body: str, *, draft: bool = False,
        status: str | None = None, via_workflow: bool = False,
    ) -> int:
        """A user's reply (or draft) from the web app; ``status`` as the agent picked it."""
        with self.lock:
            conversation = self._live(conversation_id)
            author = self._person(user_id, "user", "system_user")
            return self._add_thread(
                conversation, "message", _paragraphs(body), author,
                state="draft" if draft else "published", status=status,
                source_type="workflows" if via_workflow else "web",
            ).id

    def add_note(self, conversation_id: int, user_id: int, body: str) -> int:
        with self.lock:
            conversation = self._live(conversation_id)
            author = self._person(user_id, "user", "system_user")
            return self._add_thread(conversation, "note", _paragraphs(body), author).id

    def run_workflow(self, conversation_id: int, name: str, *, reply: str | None = None) -> int:
        """A workflow runs: a line item, and the reply it sends when it has one."""
        with self.lock:
            conversation = self._live(conversation_id)
            owner = self.people[self.owner_user_id]
            thread = self._add_thread(
                conversation, "lineitem", None, owner,
                action={"type": "automatic-workflow", "text": f"Workflow {name} ran",
                        "associatedEntities": {}},
            )
            if reply is not None:
                thread = self._add_thread(conversation, "message", _paragraphs(reply), owner,
                                          source_type="workflows")
            return thread.id

    def set_status(self, conversation_id: int, status: str, *, user_id: int | None = None) -> int:
        """A user changes the status; Help Scout records it as a line item."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        with self.lock:
            conversation = self._live(conversation_id)
            author = self.people[user_id if user_id is not None else self.owner_user_id]
            return self._add_thread(
                conversation, "lineitem", None, author, status=status,
                action={"type": "changed-ticket-status", "text": f"Marked as {status}",
                        "associatedEntities": {}},
            ).id

    def add_tags(self, conversation_id: int, *tags: str) -> None:
        with self.lock:
            conversation = self._live(conversation_id)
            conversation.tags = list(dict.fromkeys([*conversation.tags, *tags]))
            self._touch(conversation)

    def move(self, conversation_id: int, mailbox_id: int) -> None:
        with self.lock:
            conversation = self._live(conversation_id)
            if mailbox_id not in self.mailboxes:
                raise KeyError(f"no mailbox {mailbox_id}")
            conversation.mailbox_id = mailbox_id
            self._touch(conversation)

    def send_draft(self, thread_id: int) -> None:
        """An agent sends a draft: the same thread, now published."""
        with self.lock:
            for conversation in self.conversations.values():
                for thread in conversation.threads:
                    if thread.id == thread_id and thread.state == "draft":
                        thread.state = "published"
                        self._touch(conversation)
                        return
            raise KeyError(f"no draft {thread_id}")

    def delete(self, conversation_id: int) -> None:
        """Move it to the trash: 404 from the API, listed as ``state: deleted``."""
        with self.lock:
            conversation = self._live(conversation_id)
            conversation.deleted = True
            self._touch(conversation)

    def merge(self, conversation_id: int, into_id: int) -> None:
        """Merge one conversation into another: the old id answers 301 from now on."""
        with self.lock:
            source, target = self._live(conversation_id), self._live(into_id)
            target.threads.extend(source.threads)
            target.threads.sort(key=lambda t: (t.created_at, t.id))
            source.merged_into = into_id
            self._touch(target)

    def restrict(self, conversation_id: int) -> None:
        """Put the conversation out of the API user's reach: 403 from now on, gone from lists."""
        with self.lock:
            self._live(conversation_id).restricted = True

    def corrupt(self, conversation_id: int) -> None:
        """Serve the conversation's first thread malformed: no id, a body that is not text."""
        with self.lock:
            conversation = self._live(conversation_id)
            conversation.corrupt = True
            self._touch(conversation)

    def threads(self, conversation_id: int) -> list[dict[str, Any]]:
        """The conversation's threads as v3 serves them, oldest first."""
        with self.lock:
            return [self._thread_json(t, v3=True) for t in self.conversations[conversation_id]
                    .threads]

    def posts_by(self, user_id: int) -> list[dict[str, Any]]:
        """Threads ``user_id`` created over the API (drafts, notes, replies), oldest first."""
        with self.lock:
            return [
                {**self._thread_json(t, v3=True), "conversationId": c.id}
                for c in self.conversations.values() for t in c.threads if t.api_user == user_id
            ]

    def conversation_json(self, conversation_id: int) -> dict[str, Any]:
        """The conversation as the API serves it, e.g. to build a custom answer for a Fault."""
        with self.lock:
            return self._conversation_json(self.conversations[conversation_id])

    def send_webhook(
        self, url: str, secret: str, conversation_id: int, *,
        event: str = "convo.customer.reply.created",
    ) -> int:
        """Deliver ``event`` for a conversation to ``url`` as Help Scout does: the v2
        Conversation object, signed with base64 HMAC-SHA1 of the body. Returns the status."""
        body = json.dumps(self.conversation_json(conversation_id)).encode()
        digest = hmac.new(secret.encode(), body, hashlib.sha1).digest()
        return post_webhook(url, body, {
            "X-HelpScout-Event": event,
            "X-HelpScout-Signature": base64.b64encode(digest).decode(),
        })

    def adapter_config(self) -> dict[str, Any]:
        return {"url": self.url, "auth": {"app_id": self.app_id, "app_secret": self.app_secret}}

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "mailboxes": [{"id": k, "name": v} for k, v in self.mailboxes.items()],
                "conversations": [
                    {"id": c.id, "number": c.number, "status": c.status,
                     "threads": len(c.threads), "deleted": c.deleted,
                     "merged_into": c.merged_into}
                    for c in self.conversations.values()
                ],
                "bot_posts": self.posts_by(self.bot_user_id),
            }

    # ----- HTTP handlers ---------------------------------------------------------------------
    def vendor_headers(
        self, endpoint: str, request: SimRequest, response: SimResponse
    ) -> dict[str, str]:
        if response.status == 429 and "Retry-After" in response.headers:
            # An injected 429 speaks Help Scout: its wait goes in the vendor's own header.
            response.headers["X-RateLimit-Retry-After"] = response.headers.pop("Retry-After")
        if endpoint == "oauth_token":
            return {}
        limit = self.rate_limit or NOMINAL_LIMIT
        return {"X-RateLimit-Limit-Minute": str(limit),
                "X-RateLimit-Remaining-Minute": str(max(0, limit - self._used()))}

    def handle_oauth_token(self, request: SimRequest) -> SimResponse:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return SimResponse(400, {"error": "unsupported_grant_type",
                                     "error_description": "Unsupported grant type"})
        with self.lock:
            app = self._apps.get(form.get("client_id", ""))
            if app is None or not secrets.compare_digest(app[0], form.get("client_secret", "")):
                return SimResponse(401, {"error": "invalid_client",
                                         "error_description": "Bad client credentials"})
            token = secrets.token_hex(16)
            self._tokens[token] = (app[1], time.monotonic() + self.token_lifetime)
            self.issued_tokens.append(token)
        return SimResponse(200, {"token_type": "bearer", "access_token": token,
                                 "expires_in": int(self.token_lifetime)})

    def handle_users_me(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            return SimResponse(200, self._user_json(user))

    def handle_mailboxes(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            rows = [{"id": k, "name": v, "slug": f"mb{k}", "email": f"mb{k}@example.com"}
                    for k, v in sorted(self.mailboxes.items())]
            return self._page(request, "/v2/mailboxes", "mailboxes", rows, 50)

    def handle_conversations_list(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            selection = self._list_selection(request)
            if isinstance(selection, SimResponse):
                return selection
            rows = [self._conversation_json(c) for c in selection]
            return self._page(request, "/v2/conversations", "conversations", rows,
                              self.page_size)

    def handle_conversation_show(self, request: SimRequest, conversation_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            conversation = self.conversations.get(conversation_id)
            if conversation is None or conversation.deleted:
                return _vnd_error(404, "Not Found")
            if conversation.merged_into is not None:
                location = f"{self.url}/v2/conversations/{conversation.merged_into}"
                return SimResponse(301, None, {"Location": location})
            if conversation.restricted:
                return _vnd_error(403, "Access denied")
            return SimResponse(200, self._conversation_json(conversation))

    def handle_threads_v2(self, request: SimRequest, conversation_id: int) -> SimResponse:
        return self._threads_page(request, conversation_id, v3=False)

    def handle_threads_v3(self, request: SimRequest, conversation_id: int) -> SimResponse:
        return self._threads_page(request, conversation_id, v3=True)

    def handle_reply_create(self, request: SimRequest, conversation_id: int) -> SimResponse:
        return self._create_thread(request, conversation_id, "message")

    def handle_note_create(self, request: SimRequest, conversation_id: int) -> SimResponse:
        return self._create_thread(request, conversation_id, "note")

    # ----- internals (callers hold self.lock) ------------------------------------------------
    def _add_person(self, first: str, last: str, email: str | None, kind: str, role: str) -> int:
        with self.lock:
            person_id = next(self._ids)
            self.people[person_id] = _Person(person_id, first, last, email, kind, role)
        return person_id

    def _person(self, person_id: int, *kinds: str) -> _Person:
        person = self.people.get(person_id)
        if person is None or person.kind not in kinds:
            raise KeyError(f"no {' or '.join(kinds)} {person_id}")
        return person

    def _stamp(self) -> int:
        """Nanoseconds now, strictly increasing, so every change sorts after all earlier ones."""
        self._last_stamp = max(time.time_ns(), self._last_stamp + 1)
        return self._last_stamp

    def _touch(self, conversation: _Conversation) -> int:
        stamp = self._stamp()
        conversation.stamps.append(stamp)
        return stamp

    def _live(self, conversation_id: int) -> _Conversation:
        conversation = self.conversations[conversation_id]
        if conversation.deleted or conversation.merged_into is not None:
            raise KeyError(f"conversation {conversation_id} is gone")
        return conversation

    def _add_thread(
        self, conversation: _Conversation, kind: str, body: str | None, author: _Person, *,
        state: str = "published", status: str | None = None, source_type: str = "web",
        action: dict[str, Any] | None = None, api_user: int | None = None,
    ) -> _Thread:
        stamp = self._touch(conversation)
        changed = status is not None and status != conversation.status
        thread = _Thread(
            next(self._ids), kind, state, status if changed and status else "nochange", body,
            author, conversation.customer_id, _iso(stamp), source_type, action, api_user,
        )
        conversation.threads.append(thread)
        if changed and status:
            conversation.status = status
            closing = status == "closed"
            conversation.closed_at = _iso(stamp) if closing else None
            conversation.closed_by = author.id if closing and author.kind == "user" else 0
        if state == "published" and kind != "lineitem":
            if author.kind == "customer":
                conversation.waiting_since = _iso(stamp)
            else:
                conversation.user_updated_at = _iso(stamp)
        return thread

    def _used(self) -> int:
        now = time.monotonic()
        while self._window and now - self._window[0][0] >= 60:
            self._window.popleft()
        return sum(weight for _, weight in self._window)

    def _admit(self, request: SimRequest) -> SimResponse | None:
        """Count the request (writes twice) against the minute, and a write against the burst
        window; 429 once either is full."""
        now = time.monotonic()
        write = request.method in WRITE_METHODS
        weight = 2 if write else 1
        used = self._used()
        if self.rate_limit is not None and used + weight > self.rate_limit:
            return _too_many(self._window[0][0] + 60 - now)
        if write and self.write_burst is not None:
            limit, seconds = self.write_burst
            while self._writes and now - self._writes[0] >= seconds:
                self._writes.popleft()
            if len(self._writes) >= limit:
                return _too_many(self._writes[0] + seconds - now)
            self._writes.append(now)
        self._window.append((now, weight))
        return None

    def _guard(self, request: SimRequest) -> _Person | SimResponse:
        """The token's user, or the 429/401 answer that ends the request."""
        refused = self._admit(request)
        if refused is not None:
            return refused
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        entry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if entry is None or time.monotonic() >= entry[1]:
            return SimResponse(401, {"error": "invalid_token",
                                     "error_description": "Invalid or expired access token"})
        return self.people[entry[0]]

    def _list_selection(self, request: SimRequest) -> list[_Conversation] | SimResponse:
        """The conversations a list request matches, in its order (Help Scout's defaults:
        active only, newest first)."""
        status = request.arg("status", "active") or "active"
        if status not in LIST_FILTERS:
            return _vnd_error(400, "Validation error", ("status", f"Invalid value {status}"))
        since_arg = request.arg("modifiedSince")
        since = 0
        if since_arg:
            if not _SINCE.match(since_arg):
                return _vnd_error(400, "Validation error",
                                  ("modifiedSince", "Expected ISO 8601 UTC date"))
            since = int(datetime.fromisoformat(since_arg).timestamp() * NS)
        mailboxes: set[int] | None = None
        if request.arg("mailbox"):
            try:
                mailboxes = {int(m) for m in (request.arg("mailbox") or "").split(",")}
            except ValueError:
                return _vnd_error(400, "Validation error", ("mailbox", "Expected numbers"))
        tags = {t for t in (request.arg("tag") or "").split(",") if t}
        sort_field = request.arg("sortField", "createdAt") or "createdAt"
        sort_key = self._sort_keys().get(sort_field)
        if sort_key is None:
            return _vnd_error(400, "Validation error", ("sortField", f"Invalid {sort_field}"))
        order = request.arg("sortOrder", "desc")
        if order not in ("asc", "desc"):
            return _vnd_error(400, "Validation error", ("sortOrder", f"Invalid {order}"))
        visible = time.time_ns() - int(self.index_lag * NS)
        rows = []
        for conversation in self.conversations.values():
            modified = max((s for s in conversation.stamps if s <= visible), default=None)
            if modified is None or conversation.merged_into is not None or \
                    conversation.restricted:
                continue
            if conversation.status not in LIST_FILTERS[status] or modified < since:
                continue
            if mailboxes is not None and conversation.mailbox_id not in mailboxes:
                continue
            if tags and not tags & set(conversation.tags):
                continue
            rows.append((sort_key(conversation, modified), conversation.id, conversation))
        rows.sort(key=lambda row: (row[0], row[1]), reverse=order == "desc")
        return [row[2] for row in rows]

    def _sort_keys(self) -> dict[str, Any]:
        def customer(c: _Conversation) -> _Person:
            return self.people[c.customer_id]

        return {
            "createdAt": lambda c, m: c.created_at, "modifiedAt": lambda c, m: m,
            "number": lambda c, m: c.number, "status": lambda c, m: c.status,
            "subject": lambda c, m: c.subject, "mailboxid": lambda c, m: c.mailbox_id,
            "score": lambda c, m: c.created_at,
            "waitingSince": lambda c, m: c.waiting_since or "",
            "customerEmail": lambda c, m: customer(c).email or "",
            "customerName": lambda c, m: f"{customer(c).first} {customer(c).last}",
        }

    def _page(self, request: SimRequest, path: str, key: str, rows: list[dict[str, Any]],
              size: int, *, page_info: bool = True) -> SimResponse:
        """One numbered HAL page; the ``_embedded`` key is left out when the page is empty."""
        raw = request.arg("page", "1") or "1"
        if not raw.isdigit() or int(raw) < 1:
            return _vnd_error(400, "Validation error", ("page", "Must be a positive number"))
        number = int(raw)
        pages = math.ceil(len(rows) / size)
        chunk = rows[(number - 1) * size: number * size]
        query = {k: v[0] for k, v in request.query.items() if k != "page"}

        def link(page: int) -> dict[str, str]:
            return {"href": f"{base}{path}?{urlencode({**query, 'page': page})}"}

        base = self.link_base or self.url
        links: dict[str, Any] = {
            "self": link(number), "first": link(1), "last": link(max(pages, 1)),
            "page": {"href": f"{base}{path}{{?page}}", "templated": True},
        }
        if number < pages:
            links["next"] = link(number + 1)
        if number > 1:
            links["previous"] = link(number - 1)
        body: dict[str, Any] = {"_links": links}
        if page_info:
            body["page"] = {"size": size, "totalElements": len(rows), "totalPages": pages,
                            "number": number}
        if chunk:
            body["_embedded"] = {key: chunk}
        return SimResponse(200, body)

    def _threads_page(self, request: SimRequest, conversation_id: int, *, v3: bool
                      ) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            conversation = self.conversations.get(conversation_id)
            if conversation is None or conversation.deleted or \
                    conversation.merged_into is not None:
                return _vnd_error(404, "Not Found")
            if conversation.restricted:
                return _vnd_error(403, "Access denied")
            newest_first = sorted(conversation.threads, key=lambda t: (t.created_at, t.id),
                                  reverse=True)
            rows = [self._thread_json(t, v3=v3) for t in newest_first]
            if conversation.corrupt and rows:
                del rows[-1]["id"]
                rows[-1]["body"] = {"unexpected": ["object"]}
            prefix = "/v3" if v3 else "/v2"
            return self._page(request, f"{prefix}/conversations/{conversation_id}/threads",
                              "threads", rows, THREADS_PAGE_SIZE,
                              page_info=self.v3_page_info or not v3)

    def _create_thread(self, request: SimRequest, conversation_id: int, kind: str
                       ) -> SimResponse:
        """Create Reply (``message``) or Create Note, with Help Scout's validation."""
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            if len(request.body) > MAX_REQUEST_BYTES:
                return _vnd_error(413, "Request too large")
            conversation = self.conversations.get(conversation_id)
            if conversation is None or conversation.deleted or \
                    conversation.merged_into is not None:
                return _vnd_error(404, "Not Found")
            if conversation.restricted:
                return _vnd_error(403, "Access denied")
            payload = request.json()
            if not isinstance(payload, dict):
                return _vnd_error(400, "Could not parse the request body")
            invalid = self._invalid_thread(payload, kind)
            if invalid:
                return _vnd_error(400, "Validation error", invalid)
            author = self.people[payload.get("user") or user.id]
            status = payload.get("status")
            if kind == "message" and status is None:
                status = "active"  # Help Scout: a reply without a status reactivates
            thread = self._add_thread(
                conversation, kind, payload["text"], author,
                state="draft" if payload.get("draft") is True else "published", status=status,
                source_type="api", api_user=author.id,
            )
            return SimResponse(201, None, {"Resource-ID": str(thread.id)})

    def _invalid_thread(self, payload: dict[str, Any], kind: str) -> tuple[str, str] | None:
        """Help Scout's 400 reason for a thread it refuses, or None."""
        text = payload.get("text")
        if not isinstance(text, str) or not text.strip():
            return "text", "may not be empty"
        if kind == "message":
            customer = payload.get("customer")
            customer_id = customer.get("id") if isinstance(customer, dict) else None
            person = self.people.get(customer_id) if isinstance(customer_id, int) else None
            if person is None or person.kind != "customer":
                return "customer", "must name an existing customer"
            if "draft" in payload and not isinstance(payload["draft"], bool):
                return "draft", "must be true or false"
        status = payload.get("status")
        if status is not None and status not in STATUSES:
            return "status", f"Invalid value {status}"
        user_id = payload.get("user")
        if user_id is not None and (
            not isinstance(user_id, int) or self.people.get(user_id) is None
            or self.people[user_id].kind == "customer"
        ):
            return "user", "must name an existing user"
        return None

    def _person_json(self, person: _Person, *, v3: bool = True) -> dict[str, Any]:
        kind = person.kind if v3 or person.kind != "system_user" else "user"
        return {"id": person.id, "type": kind, "first": person.first, "last": person.last,
                "email": person.email}

    def _user_json(self, user: _Person) -> dict[str, Any]:
        return {
            "id": user.id, "firstName": user.first, "lastName": user.last, "email": user.email,
            "role": user.role, "timezone": "UTC", "type": "user",
            "createdAt": "2020-01-01T00:00:00Z", "updatedAt": "2020-01-01T00:00:00Z",
            "_links": {"self": {"href": f"{self.url}/v2/users/{user.id}"}},
        }

    def _conversation_json(self, c: _Conversation) -> dict[str, Any]:
        customer = self.people[c.customer_id]
        published = [t for t in c.threads if t.state == "published" and t.type != "lineitem"]
        latest = published[-1] if published else None
        return {
            "id": c.id, "number": c.number, "threads": len(published), "type": c.type,
            "folderId": c.mailbox_id * 10, "status": c.status,
            "state": "deleted" if c.deleted else "published",
            "subject": c.subject,
            "preview": html_to_text(latest.body or "")[:100] if latest else "",
            "mailboxId": c.mailbox_id,
            "createdBy": self._person_json(c.created_by),
            "createdAt": c.created_at,
            "closedBy": c.closed_by, "closedAt": c.closed_at,
            "userUpdatedAt": c.user_updated_at or c.waiting_since,
            "customerWaitingSince": {"time": c.waiting_since, "friendly": "just now"},
            "source": {"type": c.source_type, "via": "customer"},
            "tags": [{"id": self._tag_id(t), "color": "#929499", "tag": t} for t in c.tags],
            "cc": [], "bcc": [],
            "primaryCustomer": self._person_json(customer),
            "customFields": [],
            "_embedded": {"threads": []},
            "_links": {
                "self": {"href": f"{self.url}/v2/conversations/{c.id}"},
                "mailbox": {"href": f"{self.url}/v2/mailboxes/{c.mailbox_id}"},
                "primaryCustomer": {"href": f"{self.url}/v2/customers/{c.customer_id}"},
                "threads": {"href": f"{self.url}/v2/conversations/{c.id}/threads"},
                "web": {"href": f"https://secure.helpscout.net/conversation/{c.id}/{c.number}/"},
            },
        }

    def _thread_json(self, t: _Thread, *, v3: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": t.id, "type": t.type, "status": t.status, "state": t.state,
            "action": t.action or {"type": "default", "associatedEntities": {}},
            "source": {"type": t.source_type,
                       "via": "customer" if t.author.kind == "customer" else "user"},
            "customer": self._person_json(self.people[t.customer_id]),
            "createdBy": self._person_json(t.author, v3=v3),
            "to": [], "cc": [], "bcc": [],
            "createdAt": t.created_at,
            "_embedded": {"attachments": []},
            "_links": {},
        }
        if t.body is not None:
            data["body"] = t.body
        return data

    def _tag_id(self, tag: str) -> int:
        if tag not in self._tag_ids:
            self._tag_ids[tag] = next(self._ids)
        return self._tag_ids[tag]

    # ----- the play API of ``connector sandbox`` (see Simulator.seed_ticket) -------------------
    def seed_ticket(self, customer: str, subject: str, body: str) -> int:
        first, _, last = customer.partition(" ")
        person = self.add_customer(first, last, email=self.play_email(customer))
        return self.create_conversation(person, body, subject=subject)

    def customer_reply(self, ticket_id: int, body: str) -> int:
        return self.add_customer_reply(ticket_id, body)

    def agent_reply(self, ticket_id: int, body: str) -> int:
        return self.add_reply(ticket_id, self.owner_user_id, body)

    def resolve(self, ticket_id: int) -> None:
        self.set_status(ticket_id, "closed")
