"""Who wrote a JSM comment. A comment names only its author's account id, so the account's
type (``customer``, ``atlassian``, ``app``) is read once per account and kept: authors are few
and their type does not change."""

from __future__ import annotations

import logging
import threading

from adapters.base import Role, as_dict
from adapters.payload import json_object
from connector.core.errors import MalformedResponse, NotFound, PermissionDenied
from connector.core.http import HttpClient

log = logging.getLogger(__name__)

ACCOUNT_ROLES = {"customer": Role.CUSTOMER, "app": Role.SYSTEM, "atlassian": Role.AGENT}


class People:
    """Our own account and the types of the accounts that write comments."""

    def __init__(self, http: HttpClient, name: str) -> None:
        self._http = http
        self._name = name
        self._types: dict[str, str | None] = {}
        self._own: str | None = None
        self._lock = threading.Lock()

    def myself(self) -> dict[str, object]:
        """The account the credentials act as (``/rest/api/3/myself``)."""
        resp = self._http.request("GET", "/rest/api/3/myself", endpoint="myself")
        record = json_object(resp.data, "myself")
        account = record.get("accountId")
        if not isinstance(account, str) or not account:
            raise MalformedResponse(f"{self._name} myself: no accountId", status=resp.status,
                                    endpoint="myself")
        with self._lock:
            self._own = account
        return record

    def own_id(self) -> str:
        """Our account id, read once: our posts are the comments it wrote."""
        with self._lock:
            known = self._own
        if known is None:
            self.myself()
            with self._lock:
                known = self._own
        assert known is not None
        return known

    def role(self, author: str | None, reporter: str | None) -> Role:
        """The role of a comment by ``author`` on a request raised by ``reporter``.

        The reporter comes first: company-internal service desks serve colleagues, whose
        accounts are ``atlassian`` like the agents'. An author whose type cannot be read is
        taken for an agent, since answering an agent would be worse than missing a comment.
        """
        if author is None:
            return Role.SYSTEM
        if author == self.own_id():
            return Role.AGENT
        if author == reporter:
            return Role.CUSTOMER
        return ACCOUNT_ROLES.get(self._type(author) or "", Role.AGENT)

    def _type(self, account: str) -> str | None:
        with self._lock:
            if account in self._types:
                return self._types[account]
        try:
            resp = self._http.request("GET", "/rest/api/3/user", endpoint="user",
                                      params={"accountId": account})
            found = as_dict(resp.data).get("accountType")
            kind = found if isinstance(found, str) else None
        except (NotFound, PermissionDenied) as exc:
            log.warning("%s: cannot read account %s (%s); its comments count as an agent's",
                        self._name, account, type(exc).__name__)
            kind = None
        with self._lock:
            self._types[account] = kind
        return kind
