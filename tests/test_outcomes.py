"""The outcome table, without HTTP: what each error means at each step."""

from __future__ import annotations

import pytest

from connector.core.errors import (
    AuthenticationFailed,
    BadRequest,
    Conflict,
    MalformedResponse,
    Moved,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
)
from connector.engine.outcomes import Action, Step, disposition

A = Action
TRANSIENT = [RateLimited("x", status=429), ServerError("x", status=503),
             TransportError("x", sent=True), TransportError("x", sent=False),
             MalformedResponse("x", status=200)]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("step", list(Step))
def test_transient_errors_only_ever_wait(error, step):
    assert disposition(error, step) is A.WAIT


ROWS = {  # error: (ask, chat, answer, close, feedback, feed, read, post)
    AuthenticationFailed("x", status=401): (A.STOP, A.STOP, A.STOP, A.STOP, A.STOP, A.PAUSE,
                                            A.PAUSE, A.PAUSE),
    PermissionDenied("x", status=403): (A.STOP, A.STOP, A.STOP, A.STOP, A.STOP, A.PAUSE,
                                        A.GONE, A.PAUSE),
    NotFound("x", status=404): (A.STOP, A.STOP, A.ASK_AGAIN, A.STOP, A.FAIL, A.WAIT, A.GONE,
                                A.GONE),
    Moved("x", status=301): (A.FAIL, A.FAIL, A.FAIL, A.FAIL, A.FAIL, A.WAIT, A.GONE, A.GONE),
    Conflict("x", status=409): (A.NEXT_SESSION, A.NEXT_SESSION, A.WAIT, A.WAIT, A.WAIT,
                                A.WAIT, A.WAIT, A.FAIL),
    BadRequest("x", status=400): (A.FAIL, A.FAIL, A.FAIL, A.FAIL, A.FAIL, A.WAIT, A.WAIT,
                                  A.FAIL),
}
ORDER = [Step.ASK, Step.CHAT, Step.ANSWER, Step.CLOSE, Step.FEEDBACK, Step.FEED, Step.READ,
         Step.POST]


@pytest.mark.parametrize("error", list(ROWS), ids=lambda e: type(e).__name__)
def test_definitive_errors_by_step(error):
    assert [disposition(error, step) for step in ORDER] == list(ROWS[error])


def test_a_sync_chat_that_took_the_whole_answer_timeout_is_a_genuine_failure():
    timed_out = TransportError("read timeout", sent=True, timed_out=True)
    assert disposition(timed_out, Step.CHAT) is A.FAIL
    assert disposition(timed_out, Step.ASK) is A.WAIT  # an async submit: Uppzy may have it
