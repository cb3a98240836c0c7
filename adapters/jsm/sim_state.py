"""What the JSM simulator holds: accounts, service desks, requests and their comments, and how
each looks in Jira's JSON. The HTTP side is ``adapters.jsm.simulator``; this module has no
routes, so the state's rules read in one place."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.text import html_to_text

STATUS_CATEGORIES = {
    "Waiting for support": "indeterminate", "Waiting for customer": "indeterminate",
    "In progress": "indeterminate", "Open": "new", "Resolved": "done", "Closed": "done",
    "Canceled": "done",
}
REQUEST_CATEGORIES = {"new": "NEW", "indeterminate": "INDETERMINATE", "done": "DONE"}


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
    created: int  # epoch milliseconds


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
    hidden: bool = False  # our account lost access (moved to a desk it may not see)
    deleted: bool = False
    corrupt: bool = False

    @property
    def category(self) -> str:
        return STATUS_CATEGORIES.get(self.status, "indeterminate")


def iso(millis: int) -> str:
    """A time as Jira writes it: ``2024-03-01T09:00:00.123+0000``."""
    when = datetime.fromtimestamp(millis / 1000, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}+0000"


def date_dto(millis: int) -> dict[str, Any]:
    return {"iso8601": iso(millis), "epochMillis": millis, "jira": iso(millis),
            "friendly": "Today"}


class JsmState:
    """The simulated site; every method expects the simulator's lock to be held."""

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
               desk_id: int = 1, request_type_id: int = 1) -> int:
        now = self.stamp()
        issue_id = next(self._ids)
        key = f"{self.desks[desk_id]}-{issue_id - 10000}"
        text = html_to_text(description) if html else description
        self.issues[issue_id] = Issue(issue_id, key, desk_id, request_type_id, summary, text,
                                      reporter, "Waiting for support", now, now,
                                      time.monotonic())
        return issue_id

    def comment(self, issue_id: int, author: str, body: str, public: bool,
                html: bool = False) -> Comment:
        issue = self.issues[issue_id]
        now = self.stamp()
        made = Comment(next(self._comment_ids), author, html_to_text(body) if html else body,
                       public, now)
        issue.comments.append(made)
        self.touch(issue, now)
        return made

    def set_status(self, issue_id: int, status: str) -> None:
        issue = self.issues[issue_id]
        issue.status = status
        self.touch(issue, self.stamp())

    def touch(self, issue: Issue, millis: int) -> None:
        issue.updated = millis
        issue.changed_at = time.monotonic()

    # ----- JSON ------------------------------------------------------------------------------
    def user_json(self, account: Account) -> dict[str, Any]:
        return {"accountId": account.account_id, "accountType": account.account_type,
                "emailAddress": account.email, "displayName": account.name, "active": True,
                "timeZone": "Europe/Berlin"}

    def person_json(self, account_id: str) -> dict[str, Any]:
        """A JSM ``UserDTO``: no account type in it."""
        account = self.accounts[account_id]
        return {"accountId": account.account_id, "emailAddress": account.email,
                "displayName": account.name, "active": True, "timeZone": "Europe/Berlin"}

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
            "status": issue.status, "statusCategory": REQUEST_CATEGORIES[issue.category],
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
