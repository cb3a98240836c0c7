"""One table of what a remote error means, per step: the only place that decides it.

Each step that calls a remote system asks ``disposition(error, step)`` and carries out the
answer; no step decides on its own whether an error is worth a retry. The table is the one in
docs/reliability.md ("Errors: what ends an item and what only waits"):

- a transient error (5xx, 429, a transport failure, a malformed body) only ever waits;
- Uppzy refusing the key or the plan stops the daemon, and so does a 404 on a call that names
  nothing but the site (the site id, or the API's base path, is wrong);
- a helpdesk refusing the credentials pauses that adapter;
- a ticket that is gone (404, 301, 403 on that one ticket) ends its work;
- anything else is a definitive refusal of that one item.
"""

from __future__ import annotations

from enum import StrEnum

from connector.core.errors import (
    AuthenticationFailed,
    Conflict,
    Moved,
    NotFound,
    PermissionDenied,
    RemoteError,
    TransportError,
)


class Step(StrEnum):
    ASK = "ask"  # an async question to Uppzy: names only the site
    CHAT = "chat"  # a sync question: names only the site, and waits for the answer itself
    ANSWER = "answer"  # an async request's status
    CLOSE = "close"  # closing a session: names only the site
    FEEDBACK = "feedback"  # rating an answered request
    FEED = "feed"  # a helpdesk's change feed
    READ = "read"  # one ticket's conversation
    POST = "post"  # our draft or note on one ticket


class Action(StrEnum):
    WAIT = "wait"  # try the same step later (backoff, never sooner than Retry-After)
    STOP = "stop"  # stop the daemon: a setting is wrong (Uppzy key, plan or site)
    PAUSE = "pause"  # pause the adapter (its credentials were refused), then wait
    GONE = "gone"  # the ticket is gone: end its work
    ASK_AGAIN = "ask_again"  # Uppzy forgot the request: the question goes back to the queue
    NEXT_SESSION = "next_session"  # the session refuses the message: continue in the next id
    FAIL = "fail"  # a definitive refusal of this item (a question: the fallback note)


UPPZY_STEPS = frozenset({Step.ASK, Step.CHAT, Step.ANSWER, Step.CLOSE, Step.FEEDBACK})
SITE_ONLY = frozenset({Step.ASK, Step.CHAT, Step.CLOSE})


def disposition(error: RemoteError, step: Step) -> Action:
    """What ``error`` during ``step`` means for the item, the adapter or the daemon."""
    uppzy = step in UPPZY_STEPS
    if isinstance(error, TransportError) and error.timed_out and step is Step.CHAT:
        return Action.FAIL  # a sync chat took its whole answer_timeout: no answer will come
    if error.retryable:
        return Action.WAIT
    if isinstance(error, AuthenticationFailed):
        return Action.STOP if uppzy else Action.PAUSE
    if isinstance(error, PermissionDenied):
        if uppzy:
            return Action.STOP
        return Action.GONE if step is Step.READ else Action.PAUSE
    if isinstance(error, NotFound):
        if step in SITE_ONLY:
            return Action.STOP
        return {Step.ANSWER: Action.ASK_AGAIN, Step.FEEDBACK: Action.FAIL,
                Step.FEED: Action.WAIT}.get(step, Action.GONE)
    if isinstance(error, Moved) and step in (Step.READ, Step.POST):
        return Action.GONE
    if isinstance(error, Conflict):
        # 409 on a question: the session is closed elsewhere; on feedback: not completed yet.
        return {Step.ASK: Action.NEXT_SESSION, Step.CHAT: Action.NEXT_SESSION,
                Step.POST: Action.FAIL}.get(step, Action.WAIT)
    # A 400 and other 4xx: a read or the feed is tried again (giving a read up would lose its
    # messages), everything else is refused for good.
    return Action.WAIT if step in (Step.READ, Step.FEED) else Action.FAIL
