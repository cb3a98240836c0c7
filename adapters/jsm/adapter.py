"""Jira Service Management Cloud: JQL search for changes, internal comments for our answers.

Jira has no drafts, so our answer is an internal comment (``public: false``) that agents see and
customers never do. Changes come from ``/rest/api/3/search/jql`` (see ``adapters.jsm.search``);
a request's conversation is its description followed by its comments from the JSM API, whose
authors' roles come from their account types (see ``adapters.jsm.people``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from itertools import chain
from typing import Any

from adapters import signatures
from adapters.auth import OAuthGrant
from adapters.base import (
    AdapterSettings,
    Capabilities,
    ChangePage,
    Message,
    Posted,
    Role,
    Ticket,
    as_dict,
    contains_marker,
)
from adapters.jsm.people import People
from adapters.jsm.requests import (
    REQUEST_PATH,
    comment_body,
    opening_message,
    request_ticket,
    search_ticket,
)
from adapters.jsm.search import (
    SEARCH_FIELDS,
    SEARCH_PATH,
    Hit,
    SearchPosition,
    hit_label,
    jql,
    read_hit,
)
from adapters.jsm.settings import JsmOAuth, JsmSettings
from adapters.paging import follow_pages
from adapters.payload import json_object, path_number, text_or_none
from adapters.replay import FeedOrder, ReplayAdapter
from adapters.times import utc
from connector.core.errors import BadRequest, MalformedResponse, NotFound, PermissionDenied
from connector.core.http import CallObserver

log = logging.getLogger(__name__)

COMMENT_PAGE = 50  # JSM's default page of comments
MAX_COMMENT_PAGES = 200
ACCESS_TOKEN_LIFETIME = 3600.0  # Atlassian's access tokens, when an answer names no expires_in


class JsmAdapter(ReplayAdapter):
    """JSM Cloud over the Jira platform REST API v3 and the JSM REST API.

    Backfill replays the search, whose order follows the index: pages are cut by each
    request's own ``updated``.
    """

    type_name = "jsm"
    capabilities = Capabilities(drafts=False, webhook="hub-hmac-sha256")
    settings_model = JsmSettings
    simulator = "adapters.jsm.simulator:JsmSimulator"
    feed_order = FeedOrder.INDEXED_CHANGE

    settings: JsmSettings

    def __init__(self, settings: AdapterSettings, *, observer: CallObserver | None = None) -> None:
        super().__init__(settings, observer=observer)
        auth = self.settings.auth
        if isinstance(auth, JsmOAuth):
            self.use_oauth(OAuthGrant(
                "/oauth/token", auth.client_id, auth.client_secret.get_secret_value(),
                refresh_token=auth.refresh_token.get_secret_value(),
                default_lifetime=ACCESS_TOKEN_LIFETIME,
            ), "Atlassian", token_url=auth.token_url)
        self.people = People(self.http, self.name)

    # ----- reads -----------------------------------------------------------------------------
    def check(self) -> str:
        """Who we are, and that we see the service desks we answer for. A customer account
        cannot write internal comments, so it fails here rather than on every post."""
        me = self.people.myself()
        kind = me.get("accountType")
        if kind == "customer":
            raise PermissionDenied(
                f"{self.name} myself: the account of {self.settings.key_path}.auth is a JSM "
                "customer; internal comments need an agent", endpoint="myself")
        desks = self._service_desks()
        missing = sorted(set(map(str, self.settings.service_desk_ids)) - desks)
        if not desks or missing:
            raise PermissionDenied(
                f"{self.name} servicedesks: the account sees "
                f"{'no service desk' if not desks else 'no service desk ' + ', '.join(missing)}"
                f"; make it an agent there", endpoint="servicedesks")
        return (f"{kind or 'account'} {me.get('accountId')} ({me.get('displayName') or 'unnamed'}),"
                f" {len(desks)} service desk(s)")

    def poll_changes(self, cursor: str | None, start_from: datetime) -> ChangePage:
        """One search page of the current pass: the requests changed since last reported."""
        position = SearchPosition.resume(cursor, SearchPosition(utc(start_from)), self.name)
        try:
            data = self._search(position)
        except BadRequest:
            if position.token is None:
                raise
            log.info("%s: Jira no longer knows the search page token; restarting the pass",
                     self.name)
            position = position.restarted()
            data = self._search(position)
        token = text_or_none(data.get("nextPageToken")) if data.get("isLast") is not True \
            else None
        fresh, following, more = position.after(self._hits(data.get("issues")), token,
                                                 self.settings.overlap)
        tickets = [ticket for hit in fresh if (ticket := self._report(hit)) is not None]
        return ChangePage(tickets, following.dump(), more)

    def get_ticket(self, ticket_id: str) -> Ticket:
        return request_ticket(self._request(path_number(ticket_id)))

    def list_messages(self, ticket: Ticket) -> list[Message]:
        """The description, then every comment, oldest first. The request is read first: JSM
        answers a comment listing out of the account's sight with no comments, not an error."""
        number = path_number(ticket.external_id)
        raw = self._request(number)
        reporter = text_or_none(as_dict(raw.get("reporter")).get("accountId"))
        opening = opening_message(raw, number)
        entries = ({**as_dict(item), "created_at": as_dict(as_dict(item).get("created"))
                    .get("iso8601")} for item in self._comments(number))
        comments = self.read_entries(
            entries, f"a comment on request {number}",
            lambda entry, entry_id, at: self._message(entry, entry_id, at, number, reporter),
        )
        messages = sorted(comments, key=lambda m: (m.created_at, int(m.external_id)))
        return [opening, *messages] if opening is not None else messages

    def find_posted(self, ticket: Ticket, marker: str) -> str | None:
        """Our comment with ``marker``: only one our own account wrote counts, whoever else
        quotes the marker."""
        own = self.people.own_id()
        for message in self.list_messages(ticket):
            if message.author_id == own and contains_marker(message.body, marker):
                return message.external_id
        return None

    # ----- writes ----------------------------------------------------------------------------
    def post_draft(self, ticket_id: str, text: str) -> Posted:
        """An internal comment; ``public`` is explicit because JSM's comments are public unless
        told otherwise."""
        number = path_number(ticket_id)
        resp = self.http.request(
            "POST", f"{REQUEST_PATH}/{number}/comment", endpoint="comment_create",
            idempotent=False, json_body={"body": text, "public": False},
        )
        return Posted(self.answered_id(resp, "comment_create", number, "comment"), "note")

    # ----- helpers ---------------------------------------------------------------------------
    def _search(self, position: SearchPosition) -> dict[str, Any]:
        params: dict[str, Any] = {
            "jql": jql(position.since, self.settings.projects), "fields": SEARCH_FIELDS,
            "maxResults": self.settings.page_size,
        }
        if position.token:
            params["nextPageToken"] = position.token
        resp = self.http.request("GET", SEARCH_PATH, endpoint="search", params=params)
        return json_object(resp.data, "search")

    def _hits(self, items: Any) -> list[Hit]:
        if not isinstance(items, list):
            raise MalformedResponse(f"{self.name} search: no list of issues", endpoint="search")
        hits = []
        for index, item in enumerate(items):
            hit = read_hit(item)
            if hit is None:
                log.warning("%s: skipped search %s: no id or updated", self.name,
                            hit_label(item, index))
            else:
                hits.append(hit)
        return hits

    def _report(self, hit: Hit) -> Ticket | None:
        """The ticket to report for a new hit; None when filtered out or unusable."""
        try:
            ticket = search_ticket(hit.issue_id, hit.fields, hit.when)
            if self.settings.filters_requests:
                raw = self._request(hit.issue_id)
                if not self.settings.wants_request(raw.get("serviceDeskId"),
                                                   raw.get("requestTypeId")):
                    return None
        except NotFound:
            return None  # not a service request (a plain Jira issue), or gone meanwhile
        except MalformedResponse as exc:
            log.warning("%s: skipped issue %s from search: %s", self.name, hit.issue_id, exc)
            return None
        return ticket

    def _request(self, number: str) -> dict[str, Any]:
        resp = self.http.request("GET", f"{REQUEST_PATH}/{number}", endpoint="request")
        return json_object(resp.data, "request")

    def _comments(self, number: str) -> list[Any]:
        def read(start: int) -> tuple[list[Any], int | None]:
            resp = self.http.request(
                "GET", f"{REQUEST_PATH}/{number}/comment", endpoint="comments",
                params={"public": "true", "internal": "true", "start": start,
                        "limit": COMMENT_PAGE},
            )
            page = json_object(resp.data, "comments")
            values = page.get("values")
            if not isinstance(values, list):
                raise MalformedResponse(f"{self.name} comments: request {number}: no values",
                                        endpoint="comments")
            last = page.get("isLastPage") is not False or not values
            return values, None if last else start + len(values)

        pages = follow_pages(read, 0, limit=MAX_COMMENT_PAGES, noun="comments",
                             what=f"{self.name} comments: request {number}", endpoint="comments")
        return list(chain.from_iterable(pages))

    def _message(self, entry: dict[str, Any], entry_id: str, created_at: datetime, number: str,
                 reporter: str | None) -> Message:
        author = text_or_none(as_dict(entry.get("author")).get("accountId"))
        public = entry.get("public") is not False
        role = self.people.role(author, reporter)
        if role is Role.CUSTOMER and not public:
            role = Role.AGENT  # customers write public comments only: a note is an agent's
        return Message(external_id=entry_id, ticket_id=number, created_at=created_at,
                       role=role, public=public, body=comment_body(entry, role),
                       author_id=author)

    def _service_desks(self) -> set[str]:
        def read(start: int) -> tuple[list[Any], int | None]:
            resp = self.http.request("GET", "/rest/servicedeskapi/servicedesk",
                                     endpoint="servicedesks", params={"start": start})
            page = json_object(resp.data, "servicedesks")
            values = page.get("values") if isinstance(page.get("values"), list) else []
            last = page.get("isLastPage") is not False or not values
            return values, None if last else start + len(values)

        pages = follow_pages(read, 0, limit=100, noun="service desks",
                             what=f"{self.name} servicedesks", endpoint="servicedesks")
        return {str(as_dict(d).get("id")) for d in chain.from_iterable(pages)}

    # ----- webhooks --------------------------------------------------------------------------
    def webhook_delivery_id(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("x-atlassian-webhook-identifier") or None

    def webhook_ticket_ids(self, headers: Mapping[str, str], body: bytes) -> list[str]:
        """Issue and comment events carry ``issue.id``; other events name no request."""
        data = signatures.json_object(body)
        issue = data.get("issue")
        if issue is None:
            return []
        return [signatures.ticket_id(as_dict(issue).get("id"), "issue.id")]
