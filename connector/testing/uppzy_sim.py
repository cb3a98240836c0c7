"""A simulated Uppzy M2M chat API, faithful to the docs and configurable where they are silent.

Where the vendor documents behaviour (error strings, feedback idempotency, close idempotency) the
simulator does exactly that. Where it does not (async status names, chat to a closed session,
closing an unknown session, feedback on an unfinished request, the session list shape) the
behaviour is a constructor option, so the connector is tested against each plausible answer
instead of one guess.

Time is real: async requests move pending -> processing -> completed|failed as the monotonic
clock passes their answer time, so benchmarks see realistic polling and timestamps line up
with ``Simulator.calls``.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from adapters.simulation import SimRequest, SimResponse, Simulator
from connector.testing.uppzy_records import SimChatRequest, SimSession, iso_now

PREFIX = "/api/v1"
_SITE = PREFIX + "/m2m/sites/<site_id>"

Seconds = float | tuple[float, float] | Callable[[str, str], float]
"""A duration: fixed, a (min, max) range drawn with the seeded RNG, or f(session_id, message)."""

Confidence = tuple[str | None, float | None] | Callable[[str, str], tuple[str | None, float | None]]


def _default_answer(session_id: str, message: str) -> str:
    return f"Simulated answer to: {message}"


def _error(status: int, text: str) -> SimResponse:
    return SimResponse(status, {"error": text})


class UppzySimulator(Simulator):
    """Uppzy's chat endpoints under ``/api/v1``; point a client at ``base_url``."""

    service = "uppzy"
    routes = [
        ("POST", _SITE + "/chat", "chat"),
        ("POST", _SITE + "/chat/async", "chat_async"),
        ("GET", _SITE + "/chat/requests/<request_id>", "chat_status"),
        ("POST", _SITE + "/chat/feedback", "feedback"),
        ("POST", _SITE + "/chat/session/close", "session_close"),
        ("GET", _SITE + "/sessions", "sessions"),
        ("GET", PREFIX + "/m2m/tenants/<tenant_id>/limits", "tenant_limits"),
    ]

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        api_keys: Mapping[str, str] | None = None,
        site_ids: Iterable[str] = ("site-1",),
        tenant_ids: Iterable[str] = ("tenant-1",),
        answer_time: Seconds = (0.05, 0.25),
        sync_latency: Seconds = 0.0,
        fail_ratio: float = 0.0,
        fail_error: str = "model backend unavailable",
        answer_fn: Callable[[str, str], str] = _default_answer,
        confidence: Confidence = ("high", 0.87),
        async_confidence: bool = True,
        progress_states: tuple[str, ...] = ("pending", "processing"),
        closed_session_policy: str = "reject",
        feedback_not_completed_status: int = 409,
        unknown_session_close: str = "ok",
        sessions_list: bool = True,
        sessions_page_size: int | None = None,
        limits: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(port, host)
        if closed_session_policy not in ("reject", "new"):
            raise ValueError("closed_session_policy must be 'reject' or 'new'")
        if unknown_session_close not in ("ok", "404"):
            raise ValueError("unknown_session_close must be 'ok' or '404'")
        if not progress_states:
            raise ValueError("progress_states needs at least one name")
        self.api_keys: dict[str, str] = dict(api_keys or {"test-key": "ok"})
        self.site_ids: set[str] = set(site_ids)
        self.tenant_ids: set[str] = set(tenant_ids)
        self.answer_time = answer_time
        self.sync_latency = sync_latency
        self.fail_ratio = fail_ratio
        self.fail_error = fail_error
        self.answer_fn = answer_fn
        self.confidence = confidence
        self.async_confidence = async_confidence
        self.progress_states = tuple(progress_states)
        self.closed_session_policy = closed_session_policy
        self.feedback_not_completed_status = feedback_not_completed_status
        self.unknown_session_close = unknown_session_close
        self.sessions_list = sessions_list
        self.sessions_page_size = sessions_page_size
        self.limits = dict(limits) if limits is not None else None
        self.clock: Callable[[], float] = time.monotonic
        self._rng = random.Random(seed)
        self._init_state()

    def _init_state(self) -> None:
        self.sessions: dict[tuple[str, str], SimSession] = {}
        self.requests: dict[str, SimChatRequest] = {}
        self._questions: dict[tuple[str, str], list[str]] = {}
        self._busy_until: dict[tuple[str, str], list[float]] = {}
        self._max_concurrent: dict[tuple[str, str], int] = {}

    def reset(self) -> None:
        """Forget sessions, requests, calls and faults; keep the configuration."""
        with self.lock:
            self._init_state()
            self.calls.clear()
            self.faults.clear()

    @property
    def base_url(self) -> str:
        return self.url + PREFIX

    # ----- inspection ------------------------------------------------------------------------
    def questions(self, session_id: str, site_id: str | None = None) -> list[str]:
        """Messages accepted for a session, in order (across close/reopen under policy "new")."""
        with self.lock:
            return [q for key in self._keys(session_id, site_id) for q in self._questions[key]]

    def request_info(self, request_id: str) -> dict[str, Any] | None:
        """One request: status now, monotonic ``created_at``/``completed_at``/``delivered_at``."""
        with self.lock:
            req = self.requests.get(request_id)
            return req.snapshot(self.clock(), self.progress_states) if req else None

    def requests_for(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """Snapshots of every request (or one session's), oldest first."""
        with self.lock:
            now = self.clock()
            return [r.snapshot(now, self.progress_states) for r in self.requests.values()
                    if session_id is None or r.session_id == session_id]

    def closed_sessions(self) -> dict[str, int]:
        """Currently closed session ids, each with how many close calls it received."""
        with self.lock:
            return {s.session_id: s.close_calls for s in self.sessions.values()
                    if s.status == "closed"}

    def close_calls(self, session_id: str, site_id: str | None = None) -> int:
        with self.lock:
            return sum(self.sessions[k].close_calls for k in self._keys(session_id, site_id))

    def feedback_recorded(self) -> dict[str, str]:
        """request_id -> the first feedback value accepted for it."""
        with self.lock:
            return {r.request_id: r.feedback for r in self.requests.values() if r.feedback}

    def in_flight(self, session_id: str, site_id: str | None = None) -> int:
        """Requests of the session whose answer does not exist yet, server-side."""
        with self.lock:
            now = self.clock()
            return sum(1 for key in self._keys(session_id, site_id, self._busy_until)
                       for t in self._busy_until[key] if t > now)

    @property
    def max_concurrent_per_session(self) -> int:
        """Most requests one session ever had in flight at once; above 1 means an overlap."""
        with self.lock:
            return max(self._max_concurrent.values(), default=0)

    def overlapping_sessions(self) -> list[str]:
        """Sessions that at some moment had two or more requests in flight."""
        with self.lock:
            return sorted({k[1] for k, n in self._max_concurrent.items() if n > 1})

    def state(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            statuses = Counter(r.status_at(now, self.progress_states)
                               for r in self.requests.values())
            open_count = sum(1 for s in self.sessions.values() if s.status == "open")
            return {
                "sessions": {"open": open_count, "closed": len(self.sessions) - open_count},
                "requests": dict(statuses),
                "questions": sum(len(q) for q in self._questions.values()),
                "feedback": sum(1 for r in self.requests.values() if r.feedback),
                "close_calls": sum(s.close_calls for s in self.sessions.values()),
                "max_concurrent_per_session": max(self._max_concurrent.values(), default=0),
                "overlapping_sessions": sorted(
                    {k[1] for k, n in self._max_concurrent.items() if n > 1}),
                "calls": self.calls_by_endpoint(),
            }

    def _keys(
        self, session_id: str, site_id: str | None,
        source: Mapping[tuple[str, str], Any] | None = None,
    ) -> list[tuple[str, str]]:
        """Internal keys are (site, session); inspection may leave the site out."""
        source = self._questions if source is None else source
        if site_id is not None:
            return [(site_id, session_id)] if (site_id, session_id) in source else []
        return [k for k in source if k[1] == session_id]

    # ----- handlers --------------------------------------------------------------------------
    def handle_chat(self, request: SimRequest, site_id: str) -> SimResponse:
        body = self._chat_request(request, site_id)
        if isinstance(body, SimResponse):
            return body
        with self.lock:
            taken = self._take_question(site_id, body, "sync")
            if isinstance(taken, SimResponse):
                return taken
            req = taken
            wait = req.ready_at - req.created_at
        if wait > 0:
            time.sleep(wait)
        with self.lock:
            req.delivered_at = self.clock()
        payload = {"session_id": req.session_id, "request_id": req.request_id,
                   "answer": req.answer}
        payload.update(self._confidence_fields(req))
        return SimResponse(200, payload)

    def handle_chat_async(self, request: SimRequest, site_id: str) -> SimResponse:
        body = self._chat_request(request, site_id)
        if isinstance(body, SimResponse):
            return body
        with self.lock:
            taken = self._take_question(site_id, body, "async")
            if isinstance(taken, SimResponse):
                return taken
            return SimResponse(200, {"session_id": taken.session_id,
                                     "request_id": taken.request_id,
                                     "status": self.progress_states[0]})

    def handle_chat_status(self, request: SimRequest, site_id: str, request_id: str) -> SimResponse:
        denied = self._guard(request, site_id=site_id)
        if denied:
            return denied
        with self.lock:
            req = self.requests.get(request_id)
            if req is None or req.site_id != site_id:
                return _error(404, "request not found")
            now = self.clock()
            req.status_polls += 1
            status = req.status_at(now, self.progress_states)
            payload: dict[str, Any] = {"session_id": req.session_id,
                                       "request_id": req.request_id, "status": status}
            if status == "completed":
                payload["answer"] = req.answer
                if self.async_confidence:
                    payload.update(self._confidence_fields(req))
            elif status == "failed":
                payload["error"] = req.error
            if status == req.outcome and req.delivered_at is None:
                req.delivered_at = now
            return SimResponse(200, payload)

    def handle_feedback(self, request: SimRequest, site_id: str) -> SimResponse:
        body = self._guarded_body(request, site_id)
        if isinstance(body, SimResponse):
            return body
        session_id, request_id, value = (
            body.get("session_id"), body.get("request_id"), body.get("feedback"))
        if not (_filled(session_id) and _filled(request_id)) or value not in ("good", "bad"):
            return _error(400, "feedback must be 'good' or 'bad'")
        with self.lock:
            req = self.requests.get(request_id)
            if req is None or req.site_id != site_id or req.session_id != session_id:
                return _error(404, "request not found")
            if req.status_at(self.clock(), self.progress_states) != "completed":
                return _error(self.feedback_not_completed_status, "request is not completed")
            req.feedback_calls += 1
            payload = {"status": "ok", "request_id": request_id, "feedback": value}
            if req.feedback is None:
                req.feedback = value
                req.feedback_submitted_at = iso_now()
                payload["feedback_submitted_at"] = req.feedback_submitted_at
            return SimResponse(200, payload)

    def handle_session_close(self, request: SimRequest, site_id: str) -> SimResponse:
        body = self._guarded_body(request, site_id)
        if isinstance(body, SimResponse):
            return body
        session_id = body.get("session_id")
        if not _filled(session_id):
            return _error(400, "session_id is required")
        with self.lock:
            key = (site_id, session_id)
            session = self.sessions.get(key)
            if session is None:
                if self.unknown_session_close == "404":
                    return _error(404, "session not found")
                session = self.sessions[key] = SimSession(site_id, session_id)
                self._questions[key] = []
            session.close_calls += 1
            if session.status != "closed":
                session.status = "closed"
                session.closed_at = iso_now()
            return SimResponse(200, {"status": "ok"})

    def handle_sessions(self, request: SimRequest, site_id: str) -> SimResponse:
        if not self.sessions_list:
            return _error(404, "Not Found")
        denied = self._guard(request, site_id=site_id)
        if denied:
            return denied
        status, email = request.arg("status"), request.arg("email")
        with self.lock:
            items = [s.listing() for (site, _), s in self.sessions.items() if site == site_id
                     and (not status or s.status == status) and (not email or s.email == email)]
        size = self.sessions_page_size
        if not size:
            return SimResponse(200, {"sessions": items})
        try:
            page = int(request.arg("page") or 1)
        except ValueError:
            return _error(400, "invalid payload")
        total_pages = max(1, -(-len(items) // size))
        return SimResponse(200, {
            "sessions": items[(page - 1) * size:page * size], "page": page, "per_page": size,
            "total": len(items), "total_pages": total_pages,
        })

    def handle_tenant_limits(self, request: SimRequest, tenant_id: str) -> SimResponse:
        denied = self._guard(request)
        if denied:
            return denied
        if tenant_id not in self.tenant_ids:
            return _error(404, "tenant not found")
        if self.limits is not None:
            return SimResponse(200, dict(self.limits))
        with self.lock:
            used = len(self.requests)
        return SimResponse(200, {
            "tenant_id": tenant_id, "plan": "level2",
            "limits": {"monthly_messages": 10000, "requests_per_minute": 120, "sites": 5},
            "usage": {"monthly_messages": used},
        })

    # ----- internals -------------------------------------------------------------------------
    def _guard(self, request: SimRequest, site_id: str | None = None) -> SimResponse | None:
        flag = self.api_keys.get(request.headers.get("x-api-key") or "")
        if flag is None:
            return _error(401, "invalid_api_key")
        if flag == "no_plan":
            return _error(403, "api_access_not_available_on_plan")
        if site_id is not None and site_id not in self.site_ids:
            return _error(404, "site not found")
        return None

    def _guarded_body(self, request: SimRequest, site_id: str) -> dict[str, Any] | SimResponse:
        """The JSON object a site's POST carries, or the answer that refuses it (key, plan,
        site first, then the body)."""
        return self._guard(request, site_id=site_id) or _json_object(request)

    def _chat_request(self, request: SimRequest, site_id: str) -> dict[str, Any] | SimResponse:
        body = self._guarded_body(request, site_id)
        if isinstance(body, SimResponse):
            return body
        if not _filled(body.get("session_id")):
            return _error(400, "session_id is required")
        if not _filled(body.get("message")):
            return _error(400, "message is required")
        for name in ("email", "response_language"):
            if body.get(name) is not None and not isinstance(body[name], str):
                return _error(400, "invalid payload")
        return body

    def _take_question(self, site_id: str, body: dict[str, Any], mode: str
                       ) -> SimChatRequest | SimResponse:
        """Accept one question into its session (caller holds the lock)."""
        session_id, message = body["session_id"], body["message"]
        email = body.get("email")
        key = (site_id, session_id)
        session = self.sessions.get(key)
        if session is not None and session.status == "closed":
            if self.closed_session_policy == "reject":
                return _error(409, "session is closed")
            session.status, session.closed_at = "open", None
            session.question_count = 0
            session.created_at = iso_now()
            session.restarts += 1
        if session is None:
            session = self.sessions[key] = SimSession(site_id, session_id, email=email)
            self._questions[key] = []
        session.email = email or session.email
        session.question_count += 1
        session.last_activity_at = iso_now()
        self._questions[key].append(message)

        now = self.clock()
        duration = self._seconds(self.sync_latency if mode == "sync" else self.answer_time,
                                 session_id, message)
        failed = mode == "async" and self.fail_ratio > 0 and self._rng.random() < self.fail_ratio
        level, score = (self.confidence(session_id, message) if callable(self.confidence)
                        else self.confidence)
        req = SimChatRequest(
            request_id=f"req_{self._rng.getrandbits(128):032x}", site_id=site_id,
            session_id=session_id, message=message, mode=mode, email=email,
            response_language=body.get("response_language"), created_at=now,
            ready_at=now + duration, outcome="failed" if failed else "completed",
            answer="" if failed else self.answer_fn(session_id, message),
            confidence_level=level, confidence_score=score,
            error=self.fail_error if failed else "",
        )
        self.requests[req.request_id] = req

        busy = [t for t in self._busy_until.get(key, []) if t > now]
        self._max_concurrent[key] = max(self._max_concurrent.get(key, 0), len(busy) + 1)
        if req.ready_at > now:
            busy.append(req.ready_at)
        self._busy_until[key] = busy
        return req

    def _seconds(self, spec: Seconds, session_id: str, message: str) -> float:
        if callable(spec):
            return max(0.0, float(spec(session_id, message)))
        if isinstance(spec, tuple):
            low, high = spec
            return max(0.0, self._rng.uniform(low, high))
        return max(0.0, float(spec))

    @staticmethod
    def _confidence_fields(req: SimChatRequest) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if req.confidence_level is not None:
            fields["confidence_level"] = req.confidence_level
        if req.confidence_score is not None:
            fields["confidence_score"] = req.confidence_score
        return fields


def _filled(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _json_object(request: SimRequest) -> dict[str, Any] | SimResponse:
    """The JSON body, as the docs require it: an object sent as application/json."""
    content_type = request.headers.get("content-type", "").lower()
    body = request.json()
    if not content_type.startswith("application/json") or not isinstance(body, dict):
        return _error(400, "invalid payload")
    return body
