"""An in-memory Jira Service Management Cloud site over real HTTP, for tests and the sandbox.
It serves the paths and JSON shapes the adapter uses and enforces the facts listed in
``docs/adapters/jsm.md``, so an adapter that misreads one fails its tests:

- Basic ``email:api_token`` or an OAuth Bearer token on every call, else 401; OAuth refresh
  tokens rotate (the one used dies) and access tokens expire (``access_token_ttl``);
- the removed ``/rest/api/3/search`` answers 410; ``/rest/api/3/search/jql`` returns only the
  issue ids unless ``fields`` names more, pages by ``nextPageToken`` (unknown or expired: 400),
  returns at most ``page_cap`` issues whatever ``maxResults`` says, compares ``updated`` to the
  minute and leaves out changes younger than ``index_lag`` seconds (eventual consistency);
- a comment without ``public`` is public; a customer account cannot write internal comments
  (403), nor an account that is no agent of the request's service desk;
- comment listings out of the account's sight are empty, not an error; the request is 404;
- reading another account's type needs *Browse users and groups* (``browse_users``), else 403;
- 429s (from ``Fault``) carry ``Retry-After``, ``X-RateLimit-Reset`` and ``RateLimit-Reason``.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.simulation import SimRequest, SimResponse, Simulator
from adapters.text import html_to_text

STATUS_CATEGORIES = {
    "Waiting for support": "indeterminate", "Waiting for customer": "indeterminate",
    "In progress": "indeterminate", "Open": "new", "Resolved": "done", "Closed": "done",
    "Canceled": "done",
}


@dataclass
class Account:
    account_id: str
    name: str
    email: str
    account_type: str  # atlassian, customer or app
    api_token: str | None = None
    agent_of: set[int] = field(default_factory=set)  # service desk ids it is a licensed agent of


@dataclass
class Comment:
    id: int
    author: str
    body: str
    public: bool
    created: int  # epoch milliseconds, as every time here


@dataclass
class Issue:
    id: int
    key: str
    desk_id: int
    request_type_id: int
    summary: str
    description: str
    reporter: str
    status: str
    created: int
    updated: int
    changed_at: float  # monotonic: when the search index catches up (see ``index_lag``)
    comments: list[Comment] = field(default_factory=list)
    hidden: bool = False
    corrupt: bool = False

    @property
    def category(self) -> str:
        return STATUS_CATEGORIES.get(self.status, "indeterminate")


def iso(millis: int) -> str:
    """A time as Jira writes it: ``2024-03-01T09:00:00.123+0000``."""
    when = datetime.fromtimestamp(millis / 1000, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}+0000"


def date_dto(millis: int) -> dict[str, Any]:
    return {"iso8601": iso(millis), "epochMillis": millis}  # JSM's DateDTO


class JsmState:
    """The simulated site's data and its JSON; every method expects the simulator's lock."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.issues: dict[int, Issue] = {}
        self.desks: dict[int, str] = {1: "SD"}  # service desk id -> project key
        self._ids = itertools.count(10001)
        self._comment_ids = itertools.count(20001)
        self._account_ids = itertools.count(1)
        self._last_stamp = 0

    # ----- changes ---------------------------------------------------------------------------
    def stamp(self) -> int:
        """Epoch milliseconds of a change, strictly increasing: two changes never share one."""
        now = max(int(time.time() * 1000), self._last_stamp + 1)
        self._last_stamp = now
        return now

    def add_account(self, name: str, account_type: str, email: str,
                    api_token: str | None = None) -> str:
        account_id = f"5b10a2844c20165700ede{next(self._account_ids):03d}"
        self.accounts[account_id] = Account(account_id, name, email, account_type, api_token)
        return account_id

    def create(self, reporter: str, summary: str, description: str, *, html: bool = False,
               request_type_id: int = 1) -> int:
        now, issue_id = self.stamp(), next(self._ids)
        text = html_to_text(description) if html else description
        self.issues[issue_id] = Issue(issue_id, f"SD-{issue_id - 10000}", 1, request_type_id,
                                      summary, text, reporter, "Waiting for support", now, now,
                                      time.monotonic())
        return issue_id

    def comment(self, issue_id: int, author: str, body: str, public: bool,
                html: bool = False) -> Comment:
        issue = self.issues[issue_id]
        made = Comment(next(self._comment_ids), author, html_to_text(body) if html else body,
                       public, self.touch(issue))
        issue.comments.append(made)
        return made

    def set_status(self, issue_id: int, status: str) -> None:
        self.issues[issue_id].status = status
        self.touch(self.issues[issue_id])

    def touch(self, issue: Issue) -> int:
        """Stamp a change of ``issue``; the search index learns of it ``index_lag`` later."""
        issue.updated, issue.changed_at = self.stamp(), time.monotonic()
        return issue.updated

    # ----- JSON ------------------------------------------------------------------------------
    def user_json(self, account: Account) -> dict[str, Any]:
        """The platform's ``User``, with its account type."""
        return {**self.person_json(account.account_id), "accountType": account.account_type}

    def person_json(self, account_id: str) -> dict[str, Any]:
        """A JSM ``UserDTO``: no account type in it."""
        account = self.accounts[account_id]
        return {"accountId": account.account_id, "emailAddress": account.email,
                "displayName": account.name, "active": True}

    def issue_json(self, issue: Issue, fields: set[str]) -> dict[str, Any]:
        """A search result with the fields asked for (Jira's default is the id alone)."""
        every = {
            "updated": iso(issue.updated), "created": iso(issue.created),
            "summary": issue.summary, "reporter": self.person_json(issue.reporter),
            "project": {"key": self.desks[issue.desk_id]},
            "status": {"name": issue.status,
                       "statusCategory": {"key": issue.category, "name": issue.category}},
        }
        if issue.corrupt:
            every.update(updated=None, status="broken")
        body: dict[str, Any] = {"id": str(issue.id), "key": issue.key}
        chosen = {name: value for name, value in every.items() if name in fields}
        if chosen:
            body["fields"] = chosen
        return body

    def request_json(self, issue: Issue, base: str) -> dict[str, Any]:
        status: dict[str, Any] = {
            "status": issue.status, "statusCategory": issue.category.upper(),
            "statusDate": date_dto(issue.updated),
        }
        return {
            "issueId": str(issue.id), "issueKey": issue.key,
            "serviceDeskId": str(issue.desk_id), "requestTypeId": str(issue.request_type_id),
            "createdDate": date_dto(issue.created), "reporter": self.person_json(issue.reporter),
            "requestFieldValues": [
                {"fieldId": "summary", "label": "Summary", "value": issue.summary},
                {"fieldId": "description", "label": "Description", "value": issue.description},
            ],
            "currentStatus": {} if issue.corrupt else status,
            "_links": {"web": f"{base}/servicedesk/customer/portal/{issue.desk_id}/{issue.key}",
                       "agent": f"{base}/browse/{issue.key}"},
        }

    def comment_json(self, comment: Comment) -> dict[str, Any]:
        return {"id": str(comment.id), "body": comment.body, "public": comment.public,
                "author": self.person_json(comment.author), "created": date_dto(comment.created)}


PAGE_CAP = 100
JQL = re.compile(
    r"^\s*updated\s*>=\s*(?P<since>\d+)"
    r"(?:\s+AND\s+project\s+in\s*\((?P<projects>[^)]*)\))?"
    r"\s+ORDER\s+BY\s+updated\s+ASC(?:\s*,\s*key\s+ASC)?\s*$", re.IGNORECASE)
ROUTES = [
    ("GET", "/rest/api/3/myself", "myself"),
    ("GET", "/rest/api/3/user", "user"),
    ("GET", "/rest/api/3/search", "search_removed"),
    ("GET", "/rest/api/3/search/jql", "search"),
    ("GET", "/rest/servicedeskapi/servicedesk", "servicedesks"),
    ("GET", "/rest/servicedeskapi/request/<int:issue_id>", "request"),
    ("GET", "/rest/servicedeskapi/request/<int:issue_id>/comment", "comments"),
    ("POST", "/rest/servicedeskapi/request/<int:issue_id>/comment", "comment_create"),
    ("POST", "/oauth/token", "oauth_token"),
]


def _errors(status: int, message: str) -> SimResponse:
    return SimResponse(status, {"errorMessages": [message], "errors": {}})


def _minute(millis: int) -> int:
    return millis - millis % 60_000


class JsmSimulator(Simulator):
    """One JSM site with one service desk (``SD``, id 1) and the connector's agent account."""

    routes = ROUTES
    service = "jsm"

    def __init__(self, port: int = 0, host: str = "127.0.0.1", *, index_lag: float = 0.0,
                 page_cap: int = PAGE_CAP, access_token_ttl: float = 3600.0) -> None:
        super().__init__(port, host)
        self.site = JsmState()
        self.index_lag = index_lag
        self.page_cap = page_cap
        self.access_token_ttl = access_token_ttl
        self.browse_users = True
        self.bot_email, self.bot_api_token = "bot@example.com", "jsm-api-token-4c1e"
        self.bot = self.site.add_account("Uppzy Bot", "atlassian", self.bot_email,
                                         self.bot_api_token)
        self.site.accounts[self.bot].agent_of.add(1)
        self._pages: dict[str, tuple[str, int]] = {}  # page token -> (jql, offset)
        self._access: dict[str, list[Any]] = {}  # access token -> [account, monotonic expiry]
        self._refresh: dict[str, str] = {}  # refresh token -> account
        self.oauth_client = ("jsm-client", "jsm-client-secret")
        self.refresh_tokens_used: list[str] = []
        self._sam: str | None = None

    # ----- setup and play, for tests and drivers ----------------------------------------------
    def add_account(self, name: str, account_type: str, email: str | None = None,
                    agent: bool = False) -> str:
        with self.lock:
            account = self.site.add_account(name, account_type, email or self.play_email(name))
            if agent:
                self.site.accounts[account].agent_of.add(1)
            return account

    def authorize(self, account: str | None = None) -> str:
        """A refresh token for ``account`` (default: the bot), as the consent flow gives."""
        with self.lock:
            token = secrets.token_urlsafe(24)
            self._refresh[token] = account or self.bot
            return token

    def expire_access_tokens(self) -> None:
        with self.lock:
            for token in self._access.values():
                token[1] = 0.0

    def expire_page_tokens(self) -> None:
        with self.lock:
            self._pages.clear()

    def create_request(self, reporter: str, body: str, summary: str = "Help",
                       html: bool = False, request_type_id: int = 1) -> int:
        with self.lock:
            return self.site.create(reporter, summary, body, html=html,
                                    request_type_id=request_type_id)

    def add_comment(self, issue_id: int, author: str, body: str, public: bool = True,
                    html: bool = False) -> int:
        with self.lock:
            return self.site.comment(issue_id, author, body, public, html).id

    def set_status(self, issue_id: int, status: str) -> None:
        with self.lock:
            self.site.set_status(issue_id, status)

    def hide(self, issue_id: int) -> None:
        """Our account loses sight of the request (moved to a desk it may not see)."""
        with self.lock:
            self.site.issues[issue_id].hidden = True

    def corrupt(self, issue_id: int) -> None:
        with self.lock:
            self.site.issues[issue_id].corrupt = True

    def comments(self, issue_id: int) -> list[dict[str, Any]]:
        with self.lock:
            return [vars(c).copy() for c in self.site.issues[issue_id].comments]

    def adapter_config(self) -> dict[str, Any]:
        return {"url": self.url, "auth": {"email": self.bot_email, "api_token": self.bot_api_token}}

    def seed_ticket(self, customer: str, subject: str, body: str) -> int:
        return self.create_request(self.add_account(customer, "customer"), body, subject)

    def customer_reply(self, ticket_id: int, body: str) -> int:
        with self.lock:
            return self.add_comment(ticket_id, self.site.issues[ticket_id].reporter, body)

    def agent_reply(self, ticket_id: int, body: str) -> int:
        with self.lock:
            if self._sam is None:
                self._sam = self.add_account("Sam Agent", "atlassian", "sam.agent@example.com",
                                             agent=True)
            agent = self._sam
        return self.add_comment(ticket_id, agent, body)

    def resolve(self, ticket_id: int) -> None:
        self.set_status(ticket_id, "Resolved")

    # ----- HTTP handlers ---------------------------------------------------------------------
    def vendor_headers(self, endpoint: str, request: SimRequest,
                       response: SimResponse) -> dict[str, str]:
        if response.status != 429:
            return {}
        wait = float(response.headers.get("Retry-After") or 1)
        reset = datetime.now(UTC) + timedelta(seconds=wait)
        return {"X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%MZ"),
                "RateLimit-Reason": "jira-burst-based", "X-RateLimit-Limit": "100",
                "X-RateLimit-Remaining": "0"}

    def handle_oauth_token(self, request: SimRequest) -> SimResponse:
        """A refresh-token grant: a new access token and a new refresh token; the used one
        dies."""
        payload = request.json()
        if not isinstance(payload, dict):
            return SimResponse(400, {"error": "invalid_request"})
        with self.lock:
            if (payload.get("client_id"), payload.get("client_secret")) != self.oauth_client:
                return SimResponse(401, {"error": "access_denied"})
            if payload.get("grant_type") != "refresh_token":
                return SimResponse(400, {"error": "unsupported_grant_type"})
            presented = str(payload.get("refresh_token"))
            self.refresh_tokens_used.append(presented)
            account = self._refresh.pop(presented, None)
            if account is None:
                return SimResponse(403, {"error": "invalid_grant",
                                         "error_description": "Unknown or invalid refresh token."})
            access, renewed = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            self._access[access] = [account, time.monotonic() + self.access_token_ttl]
            self._refresh[renewed] = account
        return SimResponse(200, {"access_token": access, "refresh_token": renewed,
                                 "expires_in": int(self.access_token_ttl),
                                 "token_type": "Bearer", "scope": "offline_access"})

    def handle_myself(self, request: SimRequest) -> SimResponse:
        with self.lock:
            caller = self._caller(request)
            if isinstance(caller, SimResponse):
                return caller
            return SimResponse(200, self.site.user_json(caller))

    def handle_user(self, request: SimRequest) -> SimResponse:
        with self.lock:
            caller = self._caller(request)
            if isinstance(caller, SimResponse):
                return caller
            if not self.browse_users:
                return _errors(403, "You do not have permission to browse users and groups.")
            account = self.site.accounts.get(request.arg("accountId") or "")
            if account is None:
                return _errors(404, "Specified user does not exist or you do not have access.")
            return SimResponse(200, self.site.user_json(account))

    def handle_search_removed(self, request: SimRequest) -> SimResponse:
        return _errors(410, "Removed: migrate to /rest/api/3/search/jql.")

    def handle_search(self, request: SimRequest) -> SimResponse:
        with self.lock:
            caller = self._caller(request)
            if isinstance(caller, SimResponse):
                return caller
            token = request.arg("nextPageToken")
            query, offset = request.arg("jql") or "", 0
            if token is not None:
                if token not in self._pages or self._pages[token][0] != query:
                    return _errors(400, "The provided next page token is invalid or expired.")
                offset = self._pages[token][1]
            found = self._matching(query, caller)
            if isinstance(found, SimResponse):
                return found
            size = min(int(request.arg("maxResults") or 50), self.page_cap)
            fields = set((request.arg("fields") or "id").split(","))
            page = found[offset:offset + size]
            body: dict[str, Any] = {"issues": [self.site.issue_json(i, fields) for i in page],
                                    "isLast": offset + size >= len(found)}
            if not body["isLast"]:
                following = secrets.token_urlsafe(12)
                self._pages[following] = (query, offset + size)
                body["nextPageToken"] = following
            return SimResponse(200, body)

    def handle_servicedesks(self, request: SimRequest) -> SimResponse:
        with self.lock:
            caller = self._caller(request)
            if isinstance(caller, SimResponse):
                return caller
            desks = [{"id": str(d), "projectKey": key, "projectName": f"{key} desk"}
                     for d, key in sorted(self.site.desks.items()) if d in caller.agent_of]
            return SimResponse(200, {"size": len(desks), "start": 0, "limit": 50,
                                     "isLastPage": True, "values": desks})

    def handle_request(self, request: SimRequest, issue_id: int) -> SimResponse:
        with self.lock:
            issue = self._visible(request, issue_id)
            if isinstance(issue, SimResponse):
                return issue
            return SimResponse(200, self.site.request_json(issue, self.url))

    def handle_comments(self, request: SimRequest, issue_id: int) -> SimResponse:
        """Comments the account can see; none at all (not an error) for a request it cannot."""
        with self.lock:
            caller = self._caller(request)
            if isinstance(caller, SimResponse):
                return caller
            issue = self.site.issues.get(issue_id)
            shown = [] if issue is None or not self._sees(caller, issue) else [
                c for c in issue.comments
                if (request.arg("public", "true") == "true" or not c.public)
                and (request.arg("internal", "true") == "true" or c.public)]
            start = int(request.arg("start") or 0)
            limit = min(int(request.arg("limit") or 50), PAGE_CAP)
            page = shown[start:start + limit]
            return SimResponse(200, {
                "size": len(page), "start": start, "limit": limit,
                "isLastPage": start + limit >= len(shown),
                "values": [self.site.comment_json(c) for c in page]})

    def handle_comment_create(self, request: SimRequest, issue_id: int) -> SimResponse:
        with self.lock:
            issue = self._visible(request, issue_id)
            if isinstance(issue, SimResponse):
                return issue
            caller = self._caller(request)
            assert isinstance(caller, Account)
            payload = request.json()
            if not isinstance(payload, dict) or not isinstance(payload.get("body"), str):
                return _errors(400, "The comment body is required.")
            public = payload.get("public", True) is not False  # public unless told otherwise
            if not public and (caller.account_type == "customer"
                               or issue.desk_id not in caller.agent_of):
                return _errors(403, "You do not have permission to add internal comments.")
            made = self.site.comment(issue_id, caller.account_id, payload["body"], public)
            return SimResponse(201, self.site.comment_json(made))

    # ----- helpers ---------------------------------------------------------------------------
    def _caller(self, request: SimRequest) -> Account | SimResponse:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        account: Account | None = None
        if scheme.lower() == "bearer":
            token = self._access.get(credentials.strip())
            if token is not None and token[1] > time.monotonic():
                account = self.site.accounts.get(token[0])
        elif scheme.lower() == "basic":
            try:
                email, _, secret = base64.b64decode(credentials.strip(), validate=True) \
                    .decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                email, secret = "", ""
            account = next((a for a in self.site.accounts.values() if a.email == email
                            and a.api_token is not None and a.api_token == secret), None)
        if account is None:
            return _errors(401, "Client must be authenticated to access this resource.")
        return account

    def _sees(self, caller: Account, issue: Issue) -> bool:
        return not issue.hidden and (
            issue.desk_id in caller.agent_of or issue.reporter == caller.account_id)

    def _visible(self, request: SimRequest, issue_id: int) -> Issue | SimResponse:
        caller = self._caller(request)
        if isinstance(caller, SimResponse):
            return caller
        issue = self.site.issues.get(issue_id)
        if issue is None or not self._sees(caller, issue):
            return _errors(404, "The request either does not exist or you do not have access.")
        return issue

    def _matching(self, query: str, caller: Account) -> list[Issue] | SimResponse:
        """The issues a query finds, as the index has them: to the minute, without changes
        younger than ``index_lag``."""
        parsed = JQL.match(query)
        if parsed is None:
            return _errors(400, f"Error in the JQL Query: the simulator cannot read {query!r}.")
        since = _minute(int(parsed["since"]))
        keys = {k.strip().strip('"') for k in (parsed["projects"] or "").split(",") if k.strip()}
        settled = time.monotonic() - self.index_lag
        found = [i for i in self.site.issues.values()
                 if self._sees(caller, i) and _minute(i.updated) >= since
                 and (not keys or self.site.desks[i.desk_id] in keys)
                 and (self.index_lag <= 0 or i.changed_at <= settled)]
        return sorted(found, key=lambda i: (i.updated, i.key))
