"""An in-memory Zammad served over real HTTP, for tests and ``connector sandbox``.

It follows the documented paths and JSON shapes of the endpoints the adapter uses, and the
behaviours that break naive clients:

- ticket search runs on a search index that lags behind the database (``index_lag``): a change
  is found only once indexed, and a hit is matched and sorted on the *indexed* values while the
  answer shows the ticket as it is now;
- a search the index cannot parse (an unescaped ``:`` in a time, ``*`` which Zammad strips) and a
  page beyond the 10 000-hit window answer 200 with no tickets, as Zammad hides search errors;
- ``per_page`` is capped at 200 without a word, and there is no total count: clients page until
  a page comes back short;
- an article is public unless ``internal: true`` is sent, and a customer's token can only write
  public articles;
- a shared draft touches its ticket, so our own draft brings the ticket back into the search;
- no credentials get 403, wrong ones 401 (with ``X-Failure``), as Zammad answers; so do expired
  ones: an OAuth2 access token lives two hours (Doorkeeper's default, which Zammad's
  configuration keeps), a personal access token until its optional ``expires_at``.

Documents followed (addresses and what each says: docs/adapters/zammad.md): docs.zammad.org
(api/intro, api/ticket, api/ticket/articles, api/ticket/states, api/user-access-token, ...),
admin-docs.zammad.org, and Zammad's source where the documents are silent
(config/initializers/doorkeeper.rb, app/models/token.rb).

Zammad itself documents no API rate limit; ``rate_limit`` stands in for a proxy or the hosted
service throttling, with ``Retry-After`` and ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from adapters.signatures import post_webhook
from adapters.simulation import SimRequest, SimResponse, Simulator

STATE_TYPES = {
    1: "new", 2: "open", 3: "pending reminder", 4: "pending action", 5: "closed", 6: "merged",
    7: "removed",
}
DEFAULT_STATES = (  # (name, state type id, active), as Zammad seeds them
    ("new", 1, True), ("open", 2, True), ("pending reminder", 3, True), ("closed", 5, True),
    ("merged", 6, True), ("removed", 7, False), ("pending close", 4, True),
)
SENDERS = {"Agent": 1, "Customer": 2, "System": 3}
ARTICLE_TYPES = {"email": 1, "sms": 2, "chat": 3, "fax": 4, "phone": 5, "note": 10, "web": 11}
ROLES = ("customer", "agent", "admin")
SEARCH_MAX_PER_PAGE = 200
SEARCH_DEFAULT_PER_PAGE = 50
SEARCH_WINDOW = 10_000  # Elasticsearch's max result window (from + size)
SYSTEM_USER_ID = 1
_RANGE = re.compile(r"^([\[{])(\S+) TO (\S+)([\]}])$")
_UNESCAPED_COLON = re.compile(r"(?<!\\):")


@dataclass
class _User:
    id: int
    login: str
    firstname: str
    lastname: str
    email: str
    roles: list[str]
    created_at: str
    denied_groups: set[int] = field(default_factory=set)


@dataclass
class _Group:
    id: int
    name: str
    shared_drafts: bool
    created_at: str


@dataclass
class _State:
    id: int
    name: str
    state_type_id: int
    active: bool
    created_at: str


@dataclass
class _Article:
    id: int
    ticket_id: int
    sender: str
    type: str
    internal: bool
    body: str
    content_type: str
    from_: str
    subject: str
    created_by_id: int
    origin_by_id: int | None
    created_at: str


@dataclass
class _Draft:
    id: int
    new_article: dict[str, Any]
    ticket_attributes: dict[str, Any]
    created_by_id: int
    updated_by_id: int
    created_at: str
    updated_at: str


@dataclass
class _Ticket:
    id: int
    number: str
    title: str
    group_id: int
    state_id: int
    customer_id: int
    create_article_type: str
    created_by_id: int
    created_at: str
    updated_at: str = ""
    updated_by_id: int = SYSTEM_USER_ID
    tags: list[str] = field(default_factory=list)
    articles: list[_Article] = field(default_factory=list)
    draft: _Draft | None = None
    corrupt: bool = False


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{ms % 1000:03d}Z"


def _parse_time(value: str) -> datetime | None:
    """A time as Elasticsearch's default date format reads it (date, or date and time)."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _error(status: int, message: str) -> SimResponse:
    return SimResponse(status, {"error": message, "error_human": message})


class _QueryError(ValueError):
    """The search index refused the query; Zammad logs it and answers with no tickets."""


def _matcher(query: str) -> Any:
    """A predicate over indexed documents for the query_string subset the adapter needs.

    Clauses are joined by ``AND``; ``updated_at`` takes ``>=``, ``>``, ``<=``, ``<`` and
    ``[a TO b]`` ranges (colons in a time must be escaped outside brackets, as in Lucene);
    other ``field:value`` clauses match exactly; bare words match the title.
    """
    checks = [_clause(part) for part in re.split(r"\s+AND\s+", query.strip()) if part]
    if not checks:
        raise _QueryError("empty query")
    return lambda doc: all(check(doc) for check in checks)


def _clause(text: str) -> Any:
    field_name, sep, value = text.partition(":")
    if not sep:
        words = text.lower()
        return lambda doc: words in doc["title"].lower()
    if field_name == "updated_at":
        return _time_clause(value)
    if _UNESCAPED_COLON.search(value):
        raise _QueryError(f"cannot parse {text!r}")
    wanted = value.replace("\\:", ":").strip('"')
    return lambda doc: str(doc.get(field_name)) == wanted


def _time_clause(value: str) -> Any:
    ranged = _RANGE.match(value)
    if ranged:
        low, high = _parse_time(ranged.group(2)), _parse_time(ranged.group(3))
        if low is None or high is None:
            raise _QueryError(f"cannot parse range {value!r}")
        inclusive_low, inclusive_high = ranged.group(1) == "[", ranged.group(4) == "]"
        return lambda doc: (doc["updated"] >= low if inclusive_low else doc["updated"] > low) \
            and (doc["updated"] <= high if inclusive_high else doc["updated"] < high)
    operator = next((op for op in (">=", "<=", ">", "<") if value.startswith(op)), None)
    if operator is None or _UNESCAPED_COLON.search(value):
        raise _QueryError(f"cannot parse updated_at:{value}")
    bound = _parse_time(value[len(operator):].replace("\\:", ":"))
    if bound is None:
        raise _QueryError(f"cannot parse date {value!r}")
    compare = {
        ">=": lambda t: t >= bound, ">": lambda t: t > bound,
        "<=": lambda t: t <= bound, "<": lambda t: t < bound,
    }[operator]
    return lambda doc: compare(doc["updated"])


OAUTH_LIFETIME = 7200.0  # Doorkeeper's default access-token lifetime, kept by Zammad


class ZammadSimulator(Simulator):
    """Zammad's REST API v1, the subset the adapter uses, with the state tests inspect.

    ``index_lag``: seconds before a change is visible to ticket search (Zammad: ~1-2 s, more
    under load). ``search_index``: False answers field queries like Zammad without
    Elasticsearch (no hits). ``rate_limit``: requests per minute before 429 (None: unlimited).
    ``groups_need_admin``: True refuses ``/groups`` to agents, as Zammad before 2025 did.
    ``access_token_lifetime``: seconds an OAuth2 access token is accepted after it was added.
    A bot agent with the given API token and OAuth access token exists from the start, as do
    the default states and the group "Users" (shared drafts allowed).
    """

    service = "zammad"
    routes = [
        ("GET", "/api/v1/users/me", "users_me"),
        ("GET", "/api/v1/users/<int:user_id>", "user_show"),
        ("GET", "/api/v1/tickets/search", "tickets_search"),
        ("GET", "/api/v1/tickets/<int:ticket_id>", "ticket_show"),
        ("GET", "/api/v1/ticket_articles/by_ticket/<int:ticket_id>", "articles_by_ticket"),
        ("POST", "/api/v1/ticket_articles", "article_create"),
        ("GET", "/api/v1/ticket_states", "ticket_states"),
        ("GET", "/api/v1/groups/<int:group_id>", "group_show"),
        ("GET", "/api/v1/tags", "ticket_tags"),
        ("GET", "/api/v1/tickets/<int:ticket_id>/shared_draft", "shared_draft_show"),
        ("PUT", "/api/v1/tickets/<int:ticket_id>/shared_draft", "shared_draft_update"),
        ("PATCH", "/api/v1/tickets/<int:ticket_id>/shared_draft", "shared_draft_update"),
    ]

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        index_lag: float = 1.0,
        search_index: bool = True,
        rate_limit: int | None = None,
        groups_need_admin: bool = False,
        api_token: str = "zammad-token",
        access_token: str = "zammad-oauth",
        access_token_lifetime: float = OAUTH_LIFETIME,
    ) -> None:
        super().__init__(port, host)
        self.index_lag = index_lag
        self.search_index = search_index
        self.rate_limit = rate_limit
        self.groups_need_admin = groups_need_admin
        self.access_token_lifetime = access_token_lifetime
        self._ids = itertools.count(2)
        self._article_ids = itertools.count(1)
        self._numbers = itertools.count(31001)
        self._last_ms = 0
        self._window: deque[float] = deque()
        self.users: dict[int, _User] = {}
        self.groups: dict[int, _Group] = {}
        self.states: dict[int, _State] = {}
        self.tickets: dict[int, _Ticket] = {}
        self._index: dict[int, dict[str, Any]] = {}
        # (due, sequence, ticket id, document or None for a removal), applied in due order
        self._index_queue: list[tuple[float, int, int, dict[str, Any] | None]] = []
        self._index_seq = itertools.count()
        self._api_tokens: dict[str, tuple[int, datetime | None]] = {}
        self._access_tokens: dict[str, tuple[int, float]] = {}  # user id, monotonic expiry
        now = _iso(self._stamp())
        self.users[SYSTEM_USER_ID] = _User(SYSTEM_USER_ID, "-", "-", "", "", [], now)
        for number, (name, type_id, active) in enumerate(DEFAULT_STATES, start=1):
            self.states[number] = _State(number, name, type_id, active, now)
        self.default_group = self.add_group("Users", shared_drafts=True)
        self.api_token = api_token
        self.bot_user_id = self.add_user("Uppzy Bot", "agent", email="bot@example.com")
        self.add_api_token(self.bot_user_id, api_token)
        self.add_access_token(self.bot_user_id, access_token)

    # ----- Python API for tests and the sandbox ----------------------------------------------
    def add_user(self, name: str, role: str, email: str | None = None) -> int:
        """A user with Zammad's role of that name ("customer", "agent" or "admin")."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        first, _, last = name.partition(" ")
        roles = {"customer": ["Customer"], "agent": ["Agent"], "admin": ["Admin", "Agent"]}[role]
        with self.lock:
            user_id = next(self._ids)
            login = (email or f"user{user_id}").lower()
            self.users[user_id] = _User(
                user_id, login, first, last, email or "", roles, _iso(self._stamp())
            )
        return user_id

    def add_api_token(self, user_id: int, token: str, *,
                      expires_at: datetime | None = None) -> None:
        """A personal access token; it stops working at ``expires_at`` when one is set."""
        with self.lock:
            self._require_user(user_id)
            self._api_tokens[token] = (user_id, expires_at)

    def add_access_token(self, user_id: int, token: str) -> None:
        """An OAuth2 access token, accepted for ``access_token_lifetime`` seconds from now."""
        with self.lock:
            self._require_user(user_id)
            self._access_tokens[token] = (user_id, time.monotonic() + self.access_token_lifetime)

    def revoke_group(self, user_id: int, group_id: int) -> None:
        """Take ``user_id``'s access to a group: its tickets answer 403 and leave search."""
        with self.lock:
            self._require_user(user_id).denied_groups.add(group_id)

    def add_group(self, name: str, *, shared_drafts: bool = True) -> int:
        with self.lock:
            group_id = next(self._ids)
            self.groups[group_id] = _Group(group_id, name, shared_drafts, _iso(self._stamp()))
        return group_id

    def set_group_shared_drafts(self, group_id: int, allowed: bool) -> None:
        with self.lock:
            self.groups[group_id].shared_drafts = allowed

    def add_state(self, name: str, state_type: str) -> int:
        """A custom state of one of Zammad's state types (e.g. "closed")."""
        type_id = next((k for k, v in STATE_TYPES.items() if v == state_type), None)
        if type_id is None:
            raise ValueError(f"state_type must be one of {sorted(STATE_TYPES.values())}")
        with self.lock:
            state_id = max(self.states) + 1
            self.states[state_id] = _State(state_id, name, type_id, True, _iso(self._stamp()))
        return state_id

    def create_ticket(
        self,
        customer_id: int,
        body: str,
        *,
        title: str = "Help needed",
        group_id: int | None = None,
        channel: str = "email",
        html: bool = False,
    ) -> int:
        """A customer's new ticket; its first article is the customer's message."""
        if channel not in ARTICLE_TYPES:
            raise ValueError(f"channel must be one of {sorted(ARTICLE_TYPES)}")
        with self.lock:
            self._require_user(customer_id)
            ticket_id = next(self._ids)
            ticket = _Ticket(
                ticket_id, str(next(self._numbers)), title, group_id or self.default_group,
                self._state_id("new"), customer_id, channel, customer_id,
                _iso(self._stamp()),
            )
            self.tickets[ticket_id] = ticket
            self._new_article(
                ticket, customer_id, body, sender="Customer", type_=channel, internal=False,
                html=html,
            )
            self._touch(ticket, customer_id)
        return ticket_id

    def add_article(
        self,
        ticket_id: int,
        author_id: int,
        body: str,
        *,
        internal: bool = False,
        type_: str | None = None,
        html: bool = False,
    ) -> int:
        """An article as someone else writes it (agent UI, customer mail, phone note).

        The sender follows the author's role; a customer's follow-up reopens a closed ticket,
        as Zammad's default "follow-up possible" does.
        """
        with self.lock:
            ticket = self._live(ticket_id)
            author = self._require_user(author_id)
            sender = "Customer" if author.roles == ["Customer"] else "Agent"
            article = self._new_article(
                ticket, author_id, body, sender=sender,
                type_=type_ or ("note" if internal else "email"), internal=internal, html=html,
            )
            if sender == "Customer" and self._state_type(ticket) == "closed":
                ticket.state_id = self._state_id("open")
            self._touch(ticket, author_id)
        return article.id

    def add_system_article(self, ticket_id: int, body: str) -> int:
        """A trigger's message (auto-reply): sender System, written by the system user."""
        with self.lock:
            ticket = self._live(ticket_id)
            article = self._new_article(
                ticket, SYSTEM_USER_ID, body, sender="System", type_="email", internal=False,
                html=False,
            )
            self._touch(ticket, SYSTEM_USER_ID)
        return article.id

    def set_state(self, ticket_id: int, state: str | int) -> None:
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.state_id = state if isinstance(state, int) else self._state_id(state)
            if ticket.state_id not in self.states:
                raise KeyError(f"no state {state}")
            self._touch(ticket, SYSTEM_USER_ID)

    def set_group(self, ticket_id: int, group_id: int) -> None:
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.group_id = group_id
            self._touch(ticket, SYSTEM_USER_ID)

    def add_tags(self, ticket_id: int, *tags: str) -> None:
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.tags = list(dict.fromkeys([*ticket.tags, *tags]))
            self._touch(ticket, SYSTEM_USER_ID)

    def merge_ticket(self, source_id: int, target_id: int, agent_id: int) -> None:
        """Merge as Zammad does: the articles move to the target (same ids), the source keeps
        a public note "merged" by the agent and stays readable in state "merged"."""
        with self.lock:
            source, target = self._live(source_id), self._live(target_id)
            if self._state_type(target) == "merged":
                raise ValueError("It is not possible to merge into an already merged ticket.")
            for article in source.articles:
                article.ticket_id = target.id
            target.articles = sorted([*target.articles, *source.articles], key=lambda a: a.id)
            source.articles = []
            self._new_article(source, agent_id, "merged", sender="Agent", type_="note",
                              internal=False, html=False)
            source.state_id = self._state_id("merged")
            self._touch(source, agent_id)
            self._touch(target, agent_id)

    def delete_ticket(self, ticket_id: int) -> None:
        """An admin deletes the ticket: 404 from now on, gone from the index after the lag."""
        with self.lock:
            del self.tickets[ticket_id]
            self._queue_index(ticket_id, None)

    def corrupt_ticket(self, ticket_id: int) -> None:
        """Serve the ticket without ``state_id`` and its articles without ids from now on."""
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.corrupt = True
            self._touch(ticket, SYSTEM_USER_ID)

    def write_shared_draft(self, ticket_id: int, agent_id: int, body: str) -> int:
        """A human agent saves (or overwrites) the ticket's shared draft."""
        with self.lock:
            ticket = self._live(ticket_id)
            return self._save_draft(ticket, agent_id, {
                "body": escape(body), "content_type": "text/html", "type": "email",
                "internal": False,
            }, {}).id

    def send_shared_draft(self, ticket_id: int, agent_id: int) -> int:
        """An agent applies the shared draft and sends it: a public reply, the draft is gone."""
        with self.lock:
            ticket = self._live(ticket_id)
            draft = ticket.draft
            if draft is None:
                raise KeyError(f"ticket {ticket_id} has no shared draft")
            new = draft.new_article
            article = self._new_article(
                ticket, agent_id, str(new.get("body", "")), sender="Agent",
                type_=str(new.get("type") or "email"), internal=new.get("internal") is True,
                html=str(new.get("content_type", "text/html")) == "text/html",
            )
            ticket.draft = None
            self._touch(ticket, agent_id)
        return article.id

    def shared_draft(self, ticket_id: int) -> dict[str, Any] | None:
        """The ticket's shared draft as the API serves it, or None."""
        with self.lock:
            ticket = self.tickets[ticket_id]
            return self._draft_json(ticket, ticket.draft) if ticket.draft else None

    def articles(self, ticket_id: int) -> list[dict[str, Any]]:
        """The ticket's articles as the API serves them (to an agent), oldest first."""
        with self.lock:
            return [self._article_json(a) for a in self.tickets[ticket_id].articles]

    def posts_by(self, user_id: int, ticket_id: int | None = None) -> list[dict[str, Any]]:
        """Articles and shared drafts ``user_id`` wrote, oldest first, each with ``kind``
        "article" or "draft"."""
        with self.lock:
            posts: list[dict[str, Any]] = []
            for ticket in self.tickets.values():
                if ticket_id is not None and ticket.id != ticket_id:
                    continue
                posts.extend(
                    {**self._article_json(a), "kind": "article"}
                    for a in ticket.articles if a.created_by_id == user_id
                )
                draft = ticket.draft
                if draft is not None and draft.created_by_id == user_id:
                    posts.append({**self._draft_json(ticket, draft), "kind": "draft"})
            return sorted(posts, key=lambda post: post["created_at"])

    def flush_index(self) -> None:
        """Index every pending change now, as if the lag had passed."""
        with self.lock:
            self._apply_index(math.inf)

    def ticket_json(self, ticket_id: int) -> dict[str, Any]:
        """The ticket as ``expand=true`` serves it, e.g. to build a custom answer for a Fault."""
        with self.lock:
            return self._ticket_json(self.tickets[ticket_id], expand=True)

    def send_webhook(
        self, url: str, secret: str, ticket_id: int, *, delivery_id: str | None = None,
    ) -> int:
        """Deliver a trigger's default payload (the ticket and its newest article) to ``url``
        as Zammad does: ``X-Hub-Signature: sha1=<hex HMAC-SHA1>``, a random
        ``X-Zammad-Delivery`` unless ``delivery_id`` redelivers one. Returns the status."""
        with self.lock:
            ticket = self.tickets[ticket_id]
            payload = {"ticket": self._ticket_json(ticket, expand=True), "article":
                       self._article_json(ticket.articles[-1]) if ticket.articles else {}}
        body = json.dumps(payload).encode()
        digest = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
        return post_webhook(url, body, {
            "User-Agent": "Zammad User Agent",
            "X-Zammad-Trigger": "answer customers",
            "X-Zammad-Delivery": delivery_id or str(uuid.uuid4()),
            "X-Hub-Signature": f"sha1={digest}",
        })

    def adapter_config(self) -> dict[str, Any]:
        return {"url": self.url, "auth": {"token": self.api_token}}

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "tickets": [
                    {"id": t.id, "state": self.states[t.state_id].name,
                     "articles": len(t.articles), "shared_draft": t.draft is not None}
                    for t in self.tickets.values()
                ],
                "bot_posts": self.posts_by(self.bot_user_id),
            }

    # ----- HTTP handlers ---------------------------------------------------------------------
    def vendor_headers(
        self, endpoint: str, request: SimRequest, response: SimResponse
    ) -> dict[str, str]:
        if self.rate_limit is None:  # Zammad itself has no limiter; only a proxy adds these
            return {}
        return {"X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(max(0, self.rate_limit - len(self._window)))}

    def handle_users_me(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            return SimResponse(200, self._user_json(user, expand=_expand(request)))

    def handle_user_show(self, request: SimRequest, user_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request, agent=True)
            if isinstance(user, SimResponse):
                return user
            shown = self.users.get(user_id)
            if shown is None:
                return _error(404, f"Couldn't find User with 'id'={user_id}")
            return SimResponse(200, self._user_json(shown, expand=_expand(request)))

    def handle_tickets_search(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            per_page = _int_arg(request, ("per_page", "limit"), SEARCH_DEFAULT_PER_PAGE)
            per_page = min(max(per_page, 1), SEARCH_MAX_PER_PAGE)
            page = max(_int_arg(request, ("page",), 1), 1)
            hits = self._search(
                (request.arg("query") or "").replace("*", ""), user, page, per_page,
                request.arg("sort_by") or "updated_at", request.arg("order_by") or "desc",
            )
            tickets = [self.tickets[i] for i in hits if i in self.tickets]
            if _expand(request):
                return SimResponse(200, [self._ticket_json(t, expand=True) for t in tickets])
            return SimResponse(200, {
                "tickets": [t.id for t in tickets],
                "tickets_count": len(tickets),
                "assets": {"Ticket": {str(t.id): self._ticket_json(t) for t in tickets}},
            })

    def handle_ticket_show(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            found = self._readable_ticket(request, ticket_id)
            if isinstance(found, SimResponse):
                return found
            return SimResponse(200, self._ticket_json(found, expand=_expand(request)))

    def handle_articles_by_ticket(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            found = self._readable_ticket(request, ticket_id)
            if isinstance(found, SimResponse):
                return found
            user = self._user(request)
            agent = user is not None and user.roles != ["Customer"]
            return SimResponse(200, [
                self._article_json(a) for a in found.articles if agent or not a.internal
            ])

    def handle_article_create(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            payload = request.json()
            if not isinstance(payload, dict):
                return _error(422, "Need ticket_id!")
            raw_id = str(payload.get("ticket_id", ""))
            ticket = self.tickets.get(int(raw_id)) if raw_id.isdigit() else None
            if ticket is None:
                return _error(404, f"Couldn't find Ticket with 'id'={payload.get('ticket_id')}")
            body = payload.get("body")
            if not isinstance(body, str) or not body.strip():
                return _error(422, "Need at least article: body!")
            customer = user.roles == ["Customer"]
            if not self._may_access(user, ticket):
                return _error(403, "Not authorized")
            article_type = payload.get("type") or "note"
            if article_type not in ARTICLE_TYPES:
                return _error(422, f"Unknown article type {article_type!r}")
            content_type = payload.get("content_type") or "text/plain"
            article = self._new_article(
                ticket, user.id, body, sender="Customer" if customer else "Agent",
                type_=article_type,
                # Zammad's default is a public article; a customer cannot write internal ones.
                internal=payload.get("internal") is True and not customer,
                html=content_type == "text/html",
            )
            self._touch(ticket, user.id)
            return SimResponse(201, self._article_json(article))

    def handle_ticket_states(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            return SimResponse(200, [
                self._state_json(s, expand=_expand(request)) for s in self.states.values()
            ])

    def handle_group_show(self, request: SimRequest, group_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request, agent=True)
            if isinstance(user, SimResponse):
                return user
            if self.groups_need_admin and "Admin" not in user.roles:
                return _error(403, "Not authorized")
            group = self.groups.get(group_id)
            if group is None:
                return _error(404, f"Couldn't find Group with 'id'={group_id}")
            return SimResponse(200, {
                "id": group.id, "name": group.name, "shared_drafts": group.shared_drafts,
                "active": True, "follow_up_possible": "yes", "follow_up_assignment": True,
                "assignment_timeout": None, "email_address_id": 1, "signature_id": None,
                "note": "", "created_at": group.created_at, "updated_at": group.created_at,
            })

    def handle_ticket_tags(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request, agent=True)
            if isinstance(user, SimResponse):
                return user
            if request.arg("object") != "Ticket":
                return _error(422, "Need object and o_id!")
            ticket_id = request.arg("o_id") or ""
            ticket = self.tickets.get(int(ticket_id)) if ticket_id.isdigit() else None
            if ticket is None:
                return _error(404, f"Couldn't find Ticket with 'id'={ticket_id}")
            if not self._may_access(user, ticket):
                return _error(403, "Not authorized")
            return SimResponse(200, {"tags": list(ticket.tags)})

    def handle_shared_draft_show(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            found = self._writable_ticket(request, ticket_id)
            if isinstance(found, SimResponse):
                return found
            draft = found.draft
            return SimResponse(200, {
                "shared_draft_id": draft.id if draft else None,
                "assets": self._draft_assets(found, draft) if draft else None,
            })

    def handle_shared_draft_update(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            found = self._writable_ticket(request, ticket_id)
            if isinstance(found, SimResponse):
                return found
            payload = request.json()
            payload = payload if isinstance(payload, dict) else {}
            new_article, attributes = payload.get("new_article"), payload.get("ticket_attributes")
            user = self._user(request)
            assert user is not None  # _writable_ticket authenticated the request
            draft = self._save_draft(
                found, user.id, new_article if isinstance(new_article, dict) else {},
                attributes if isinstance(attributes, dict) else {},
            )
            return SimResponse(200, {
                "shared_draft_id": draft.id, "assets": self._draft_assets(found, draft),
            })

    # ----- internals (callers hold self.lock) ------------------------------------------------
    def _stamp(self) -> int:
        """Milliseconds now, strictly increasing, so every change sorts after earlier ones."""
        self._last_ms = max(time.time_ns() // 1_000_000, self._last_ms + 1)
        return self._last_ms

    def _touch(self, ticket: _Ticket, user_id: int) -> None:
        ticket.updated_at = _iso(self._stamp())
        ticket.updated_by_id = user_id
        self._queue_index(ticket.id, {
            "id": ticket.id, "number": ticket.number, "title": ticket.title,
            "group_id": ticket.group_id, "state_id": ticket.state_id,
            "customer_id": ticket.customer_id, "updated": _parse_time(ticket.updated_at),
        })

    def _queue_index(self, ticket_id: int, doc: dict[str, Any] | None) -> None:
        """Index the ticket's new state (None: remove it) once ``index_lag`` has passed."""
        due = time.monotonic() + self.index_lag
        self._index_queue.append((due, next(self._index_seq), ticket_id, doc))
        if self.index_lag <= 0:
            self._apply_index(time.monotonic())

    def _apply_index(self, now: float) -> None:
        due = sorted(entry for entry in self._index_queue if entry[0] <= now)
        self._index_queue = [entry for entry in self._index_queue if entry[0] > now]
        for _, _, ticket_id, doc in due:
            if doc is None:
                self._index.pop(ticket_id, None)
            else:
                self._index[ticket_id] = doc

    def _search(
        self, query: str, user: _User, page: int, per_page: int, sort_by: str, order_by: str
    ) -> list[int]:
        """Ticket ids of one page of hits, from the index as it is now."""
        self._apply_index(time.monotonic())
        if not query.strip():
            return []
        if not self.search_index or page * per_page > SEARCH_WINDOW:
            return []  # no Elasticsearch: SQL LIKE on title/body finds no field query
        try:
            matches = _matcher(query)
        except _QueryError:
            return []  # Zammad logs the Elasticsearch error and answers with no tickets
        docs = [
            doc for doc in self._index.values()
            if matches(doc) and doc["group_id"] not in user.denied_groups
            and (user.roles != ["Customer"] or doc["customer_id"] == user.id)
        ]
        key = "updated" if sort_by == "updated_at" else sort_by
        docs.sort(key=lambda d: (d.get(key) or 0, d["id"]), reverse=order_by == "desc")
        start = (page - 1) * per_page
        return [doc["id"] for doc in docs[start:start + per_page]]

    def _state_id(self, name: str) -> int:
        return next(s.id for s in self.states.values() if s.name == name)

    def _state_type(self, ticket: _Ticket) -> str:
        return STATE_TYPES[self.states[ticket.state_id].state_type_id]

    def _require_user(self, user_id: int) -> _User:
        user = self.users.get(user_id)
        if user is None:
            raise KeyError(f"no user {user_id}")
        return user

    def _live(self, ticket_id: int) -> _Ticket:
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            raise KeyError(f"no ticket {ticket_id}")
        return ticket

    def _new_article(
        self, ticket: _Ticket, author_id: int, body: str, *, sender: str, type_: str,
        internal: bool, html: bool,
    ) -> _Article:
        author = self.users.get(author_id)
        from_ = f"{author.firstname} {author.lastname}".strip() if author else ""
        article = _Article(
            next(self._article_ids), ticket.id, sender, type_, internal, body,
            "text/html" if html else "text/plain", from_, ticket.title, author_id, None,
            _iso(self._stamp()),
        )
        ticket.articles.append(article)
        return article

    def _save_draft(
        self, ticket: _Ticket, user_id: int, new_article: dict[str, Any],
        attributes: dict[str, Any],
    ) -> _Draft:
        """Create or overwrite the one shared draft; Zammad touches the ticket either way."""
        now = _iso(self._stamp())
        draft = ticket.draft
        if draft is None:
            draft = _Draft(next(self._ids), new_article, attributes, user_id, user_id, now, now)
            ticket.draft = draft
        else:
            draft.new_article, draft.ticket_attributes = new_article, attributes
            draft.updated_by_id, draft.updated_at = user_id, now
        self._touch(ticket, user_id)
        return draft

    def _admit(self) -> SimResponse | None:
        """Count the request against the per-minute window; 429 once it is full."""
        if self.rate_limit is None:
            return None
        now = time.monotonic()
        while self._window and now - self._window[0] >= 60:
            self._window.popleft()
        if len(self._window) >= self.rate_limit:
            wait = max(1, math.ceil(self._window[0] + 60 - now))
            response = _error(429, "Too Many Requests")
            response.headers.update({
                "Retry-After": str(wait), "X-RateLimit-Reset": str(int(time.time()) + wait),
            })
            return response
        self._window.append(now)
        return None

    def _user(self, request: SimRequest) -> _User | None:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "token":
            user_id = self._personal_token_user(credentials.removeprefix("token=").strip('"'))
        elif scheme.lower() == "bearer":
            user_id = self._personal_token_user(credentials)
            oauth = self._access_tokens.get(credentials)
            if user_id is None and oauth is not None and time.monotonic() < oauth[1]:
                user_id = oauth[0]
        else:
            return None
        return self.users.get(user_id) if user_id is not None else None

    def _personal_token_user(self, token: str) -> int | None:
        user_id, expires_at = self._api_tokens.get(token, (None, None))
        if expires_at is not None and datetime.now(UTC) >= expires_at:
            return None
        return user_id

    def _guard(self, request: SimRequest, *, agent: bool = False) -> _User | SimResponse:
        """The authenticated user, or the 429/403/401 answer that ends the request."""
        refused = self._admit()
        if refused is not None:
            return refused
        if not request.headers.get("authorization"):
            return _error(403, "Authentication required")
        user = self._user(request)
        if user is None:
            response = _error(401, "Can't find User for Token")
            response.headers["X-Failure"] = "Can't find User for Token"
            return response
        if agent and user.roles == ["Customer"]:
            return _error(403, "Not authorized")
        return user

    def _readable_ticket(self, request: SimRequest, ticket_id: int) -> _Ticket | SimResponse:
        user = self._guard(request)
        if isinstance(user, SimResponse):
            return user
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return _error(404, f"Couldn't find Ticket with 'id'={ticket_id}")
        if not self._may_access(user, ticket):
            return _error(403, "Not authorized")
        return ticket

    def _writable_ticket(self, request: SimRequest, ticket_id: int) -> _Ticket | SimResponse:
        """Shared drafts need ticket update access: agents only."""
        user = self._guard(request, agent=True)
        if isinstance(user, SimResponse):
            return user
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return _error(404, f"Couldn't find Ticket with 'id'={ticket_id}")
        if not self._may_access(user, ticket):
            return _error(403, "Not authorized")
        return ticket

    @staticmethod
    def _may_access(user: _User, ticket: _Ticket) -> bool:
        """Agents see their groups' tickets, customers their own."""
        if user.roles == ["Customer"]:
            return ticket.customer_id == user.id
        return ticket.group_id not in user.denied_groups

    def _user_json(self, user: _User, *, expand: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": user.id, "login": user.login, "firstname": user.firstname,
            "lastname": user.lastname, "email": user.email, "active": True, "vip": False,
            "organization_id": None, "role_ids": [
                {"Admin": 1, "Agent": 2, "Customer": 3}[r] for r in user.roles
            ],
            "created_at": user.created_at, "updated_at": user.created_at,
        }
        if expand:
            body["roles"] = list(user.roles)
        return body

    def _ticket_json(self, ticket: _Ticket, *, expand: bool = False) -> dict[str, Any]:
        state = self.states[ticket.state_id]
        body: dict[str, Any] = {
            "id": ticket.id, "group_id": ticket.group_id, "priority_id": 2,
            "state_id": ticket.state_id, "organization_id": None, "number": ticket.number,
            "title": ticket.title, "owner_id": SYSTEM_USER_ID, "customer_id": ticket.customer_id,
            "note": None, "first_response_at": None, "close_at": None, "pending_time": None,
            "type": None, "time_unit": None, "preferences": {},
            "create_article_type_id": ARTICLE_TYPES[ticket.create_article_type],
            "create_article_sender_id": SENDERS["Customer"],
            "article_count": len(ticket.articles), "last_contact_at": ticket.updated_at,
            "updated_by_id": ticket.updated_by_id, "created_by_id": ticket.created_by_id,
            "created_at": ticket.created_at, "updated_at": ticket.updated_at,
        }
        if expand:
            body.update({
                "group": self.groups[ticket.group_id].name if ticket.group_id in self.groups
                else None,
                "state": state.name, "priority": "2 normal", "owner": "-",
                "customer": self.users[ticket.customer_id].login,
                "created_by": self.users[ticket.created_by_id].login,
                "updated_by": self.users[ticket.updated_by_id].login,
                "create_article_type": ticket.create_article_type,
                "create_article_sender": "Customer",
                "article_ids": [a.id for a in ticket.articles],
            })
        if ticket.corrupt:
            body.pop("state_id")
            body.pop("state", None)
        return body

    def _article_json(self, article: _Article) -> dict[str, Any]:
        author = self.users.get(article.created_by_id)
        login = author.login if author else "-"
        body: dict[str, Any] = {
            "id": article.id, "ticket_id": article.ticket_id,
            "type_id": ARTICLE_TYPES[article.type], "sender_id": SENDERS[article.sender],
            "from": article.from_, "to": "", "cc": "", "subject": article.subject,
            "reply_to": None, "message_id": None, "in_reply_to": None,
            "content_type": article.content_type, "body": article.body,
            "internal": article.internal, "preferences": {}, "attachments": [],
            "origin_by_id": article.origin_by_id, "created_by_id": article.created_by_id,
            "updated_by_id": article.created_by_id, "created_at": article.created_at,
            "updated_at": article.created_at, "type": article.type, "sender": article.sender,
            "created_by": login, "updated_by": login,
        }
        ticket = self.tickets.get(article.ticket_id)
        if ticket is not None and ticket.corrupt:
            body.pop("id")
        return body

    def _state_json(self, state: _State, *, expand: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": state.id, "state_type_id": state.state_type_id, "name": state.name,
            "next_state_id": 4 if state.name == "pending close" else None,
            "ignore_escalation": state.state_type_id >= 3, "default_create": state.id == 1,
            "default_follow_up": state.name == "open", "note": None, "active": state.active,
            "created_at": state.created_at, "updated_at": state.created_at,
        }
        if expand:
            body["state_type"] = STATE_TYPES[state.state_type_id]
        return body

    def _draft_json(self, ticket: _Ticket, draft: _Draft) -> dict[str, Any]:
        return {
            "id": draft.id, "ticket_id": ticket.id, "new_article": dict(draft.new_article),
            "ticket_attributes": dict(draft.ticket_attributes),
            "created_by_id": draft.created_by_id, "updated_by_id": draft.updated_by_id,
            "created_at": draft.created_at, "updated_at": draft.updated_at,
        }

    def _draft_assets(self, ticket: _Ticket, draft: _Draft) -> dict[str, Any]:
        author = self.users[draft.created_by_id]
        return {
            "TicketSharedDraftZoom": {str(draft.id): self._draft_json(ticket, draft)},
            "User": {str(author.id): self._user_json(author, expand=False)},
        }

    # ----- the play API of ``connector sandbox`` (see Simulator.seed_ticket) -------------------
    def seed_ticket(self, customer: str, subject: str, body: str) -> int:
        person = self.add_user(customer, "customer", self.play_email(customer))
        return self.create_ticket(person, body, title=subject)

    def customer_reply(self, ticket_id: int, body: str) -> int:
        with self.lock:
            customer = self._live(ticket_id).customer_id
        return self.add_article(ticket_id, customer, body)

    def agent_reply(self, ticket_id: int, body: str) -> int:
        agent = self.play_agent(lambda name, email: self.add_user(name, "agent", email))
        return self.add_article(ticket_id, agent, body)

    def resolve(self, ticket_id: int) -> None:
        self.set_state(ticket_id, "closed")


def _expand(request: SimRequest) -> bool:
    return (request.arg("expand") or "").lower() == "true"


def _int_arg(request: SimRequest, names: tuple[str, ...], default: int) -> int:
    """The first of ``names`` given, read like Ruby's ``to_i`` (junk is 0)."""
    for name in names:
        value = request.arg(name)
        if value is not None:
            digits = re.match(r"\s*(-?\d+)", value)
            return int(digits.group(1)) if digits else 0
    return default

