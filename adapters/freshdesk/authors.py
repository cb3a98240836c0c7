"""Who wrote a Freshdesk conversation entry: an agent or not, asked of Freshdesk and cached.

A conversation carries no author role, and a wrong guess either answers an agent or leaves a
customer unanswered, so the user is looked up; the answer is cached because every read of a
conversation would otherwise cost one request per author.
"""

from __future__ import annotations

import logging
import threading
import time

from adapters.payload import path_number
from connector.core.errors import NotFound, PermissionDenied
from connector.core.http import HttpClient

log = logging.getLogger(__name__)

AUTHOR_TTL = 3600.0  # seconds an author's agent-or-contact lookup is trusted (a contact can be
# made an agent, keeping its id)
MAX_AUTHORS = 10_000  # cached lookups kept before the cache starts over


class Authors:
    """Which users are agents, by Freshdesk's agent view (an agent's id is its user id).

    A conversation carries no author role: ``incoming`` only says the entry came from outside
    (an agent answering a notification by mail is incoming, a contact in CC writing in the
    portal is not), so the user is looked up, once per ``AUTHOR_TTL``. A key whose role may
    not view agents gets None for every user, and the caller falls back to a guess.
    """

    def __init__(self, http: HttpClient, name: str) -> None:
        self._http, self._name = http, name
        self._lock = threading.Lock()
        self._known: dict[str, tuple[bool, float]] = {}
        self._refused = False

    def is_agent(self, user_id: str) -> bool | None:
        now = time.monotonic()
        with self._lock:
            if self._refused:
                return None
            cached = self._known.get(user_id)
        if cached is not None and now - cached[1] < AUTHOR_TTL:
            return cached[0]
        try:
            self._http.request("GET", f"/api/v2/agents/{path_number(user_id)}",
                               endpoint="agent_view")
            agent = True
        except NotFound:
            agent = False
        except PermissionDenied:
            log.warning("%s: the API key's agent cannot view agents; authors are guessed from "
                        "'incoming' and the requester, which mistakes a contact in CC writing in "
                        "the portal for an agent", self._name)
            with self._lock:
                self._refused = True
            return None
        with self._lock:
            if len(self._known) >= MAX_AUTHORS:
                self._known.clear()
            self._known[user_id] = (agent, now)
        return agent
