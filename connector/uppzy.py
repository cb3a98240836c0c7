"""Client for the Uppzy M2M chat API.

Only feedback and session close have reference pages; the chat, async and session-list contracts
are rebuilt from guides and SDK types. So this client is strict only about what the connector
cannot work without (an answer, a request id, a status) and tolerant of everything else: missing
optional fields, extra fields, status names it has never seen, and unknown list wrappers.

Retries, backoff, ``Retry-After`` and error typing live in ``HttpClient``; this module only says
which calls are safe to repeat. Asking a question twice can record it twice in the conversation,
so chat and async submit are repeated only when the server provably did not take them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from connector.core.errors import MalformedResponse
from connector.core.http import CallObserver, HttpClient, Response, RetryPolicy, Timeouts
from connector.core.redact import redact, register_secret

log = logging.getLogger(__name__)

_JSON = {"Content-Type": "application/json"}
_LIST_KEYS = ("sessions", "data", "items", "results", "records")
_META_KEYS = ("pagination", "meta", "links", "paging", "data")

MAX_SESSION_PAGES = 20
"""A listing longer than this is cut short: a server that keeps saying "next" must not hang us."""


@dataclass(frozen=True)
class ChatAnswer:
    request_id: str
    session_id: str
    answer: str
    confidence_level: str | None = None
    confidence_score: float | None = None


@dataclass(frozen=True)
class AsyncStatus:
    request_id: str
    status: str
    done: bool
    failed: bool
    answer: ChatAnswer | None = None
    error: str = ""


class UppzyClient:
    """One Uppzy account (base URL + API key); site and tenant ids are per call.

    Site ids are arguments rather than state so one client, and one connection pool, can serve
    every site the daemon is configured for.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        observer: CallObserver | None = None,
        sync_read_timeout: float = 90.0,
        pool_size: int = 16,
    ) -> None:
        register_secret(api_key)
        # Sync chat is documented at 5-60 s; the default read timeout is sized for quick calls.
        self.sync_read_timeout = sync_read_timeout
        self.http = HttpClient(
            base_url, name="uppzy", timeouts=timeouts, retry=retry,
            headers={"X-API-Key": api_key}, observer=observer, pool_size=pool_size,
        )

    def close(self) -> None:
        self.http.close()

    # ----- chat ------------------------------------------------------------------------------
    def chat(
        self,
        site_id: str,
        session_id: str,
        message: str,
        *,
        email: str | None = None,
        response_language: str | None = None,
    ) -> ChatAnswer:
        """Ask and wait for the answer in the same round trip.

        Not idempotent: a repeat after the server saw the question would ask it twice.
        """
        resp = self.http.request(
            "POST", _site_path(site_id, "chat"), endpoint="chat",
            json_body=_chat_body(session_id, message, email, response_language), headers=_JSON,
            idempotent=False, read_timeout=self.sync_read_timeout,
        )
        data = _object(resp, "chat")
        # The sync schema is undocumented: an answer without a request id is still worth
        # delivering (only feedback needs the id), so only the answer itself is required.
        request_id = data.get("request_id")
        return _answer(
            data, resp, "chat", request_id if isinstance(request_id, str) else "", session_id,
        )

    def submit(
        self,
        site_id: str,
        session_id: str,
        message: str,
        *,
        email: str | None = None,
        response_language: str | None = None,
    ) -> str:
        """Queue a question; the returned request id is the only handle on the answer."""
        resp = self.http.request(
            "POST", _site_path(site_id, "chat/async"), endpoint="chat_async",
            json_body=_chat_body(session_id, message, email, response_language), headers=_JSON,
            idempotent=False,
        )
        request_id = _object(resp, "chat_async").get("request_id")
        if not isinstance(request_id, str) or not request_id.strip():
            raise MalformedResponse(
                "uppzy chat_async: response has no request_id", status=resp.status,
                endpoint="chat_async",
            )
        return request_id

    def status(self, site_id: str, request_id: str) -> AsyncStatus:
        """Poll an async request. Only "completed" and "failed" are final.

        The non-final status names are undocumented, so anything else means "keep polling" rather
        than an error: a renamed intermediate state must not fail work that is about to finish.
        """
        resp = self.http.request(
            "GET", _site_path(site_id, f"chat/requests/{quote(request_id, safe='')}"),
            endpoint="chat_status", idempotent=True,
        )
        data = _object(resp, "chat_status")
        raw = data.get("status")
        if not isinstance(raw, str) or not raw.strip():
            raise MalformedResponse(
                "uppzy chat_status: response has no status", status=resp.status,
                endpoint="chat_status",
            )
        state = raw.strip().lower()
        if state == "completed":
            session_id = data.get("session_id")
            answer = _answer(
                data, resp, "chat_status", request_id,
                session_id if isinstance(session_id, str) else "",
            )
            return AsyncStatus(request_id, raw, done=True, failed=False, answer=answer)
        if state == "failed":
            return AsyncStatus(
                request_id, raw, done=False, failed=True,
                error=_error_text(data.get("error")) or "Async chat failed",
            )
        return AsyncStatus(request_id, raw, done=False, failed=False)

    # ----- feedback and sessions -------------------------------------------------------------
    def feedback(self, site_id: str, session_id: str, request_id: str, value: str) -> bool:
        """Rate an answer; False means the server already had a rating for it.

        Safe to repeat: the server keeps one rating per request, which is also how a retry
        after a lost response shows up (as False, not as an error).
        """
        resp = self.http.request(
            "POST", _site_path(site_id, "chat/feedback"), endpoint="feedback",
            json_body={"session_id": session_id, "request_id": request_id, "feedback": value},
            headers=_JSON, idempotent=True, fenced=True,
        )
        return bool(_object(resp, "feedback").get("feedback_submitted_at"))

    def close_session(self, site_id: str, session_id: str) -> None:
        """Close a conversation. Sent once per fence (see ``HttpClient.request``); documented as
        idempotent, so a repeat after a lost answer is harmless."""
        self.http.request(
            "POST", _site_path(site_id, "chat/session/close"), endpoint="session_close",
            json_body={"session_id": session_id}, headers=_JSON, idempotent=True,
            expect_json=False, fenced=True,
        )

    def probe_site(self, site_id: str) -> int:
        """One page of the site's session list: a read that proves the key, the plan and the
        site at once (401, 403, 404) without asking anything; returns the sessions listed."""
        resp = self.http.request("GET", _site_path(site_id, "sessions"), endpoint="sessions",
                                 idempotent=True)
        return len(_session_items(resp))

    def list_sessions(self, site_id: str, **params: Any) -> list[dict[str, Any]]:
        """All sessions of a site, across pages.

        Neither the wrapper key nor the pagination style is documented, so both are guessed from
        the common shapes; a next link pointing to another host is not followed, because every
        request carries the API key.
        """
        url = self.http.url(_site_path(site_id, "sessions"))
        query: dict[str, Any] = dict(params)
        sessions: list[dict[str, Any]] = []
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for _ in range(MAX_SESSION_PAGES):
            resp = self.http.request(
                "GET", url, endpoint="sessions", params=query or None, idempotent=True,
            )
            items = _session_items(resp)
            sessions.extend(items)
            following = _next_page(resp.data, url, query, self.http.base_url) if items else None
            if following is None:
                return sessions
            url, query = following
            marker = (url, tuple(sorted((k, str(v)) for k, v in query.items())))
            if marker in seen:
                return sessions
            seen.add(marker)
        log.warning("uppzy sessions: stopped after %d pages", MAX_SESSION_PAGES)
        return sessions

    def tenant_limits(self, tenant_id: str) -> dict[str, Any]:
        """The documented connectivity check: proves the key, the tenant and the network path."""
        resp = self.http.request(
            "GET", f"m2m/tenants/{quote(tenant_id, safe='')}/limits", endpoint="tenant_limits",
            idempotent=True,
        )
        return _object(resp, "tenant_limits")


# ----- parsing helpers -------------------------------------------------------------------------
def _site_path(site_id: str, tail: str) -> str:
    return f"m2m/sites/{quote(site_id, safe='')}/{tail}"


def _chat_body(
    session_id: str, message: str, email: str | None, response_language: str | None,
) -> dict[str, str]:
    body = {"session_id": session_id, "message": message}
    if email:
        body["email"] = email
    if response_language:
        body["response_language"] = response_language
    return body


def _object(resp: Response, label: str) -> dict[str, Any]:
    """The body as a JSON object; an empty body counts as an empty object."""
    if resp.data is None:
        return {}
    if not isinstance(resp.data, dict):
        raise MalformedResponse(
            f"uppzy {label}: expected a JSON object, got {type(resp.data).__name__}",
            status=resp.status, endpoint=label,
        )
    return resp.data


def _answer(
    data: dict[str, Any], resp: Response, label: str, request_id: str, session_id: str,
) -> ChatAnswer:
    answer = data.get("answer")
    if not isinstance(answer, str):
        raise MalformedResponse(
            f"uppzy {label}: response has no answer", status=resp.status, endpoint=label,
        )
    sid = data.get("session_id")
    level = data.get("confidence_level")
    # Lower-cased because "low" is the documented escalation signal; "Low" must count too.
    level = level.strip().lower() if isinstance(level, str) else ""
    return ChatAnswer(
        request_id=request_id,
        session_id=sid if isinstance(sid, str) and sid else session_id,
        answer=answer,
        confidence_level=level or None,
        confidence_score=_number(data.get("confidence_score")),
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _error_text(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("message") or value.get("error")
    if not isinstance(value, str):
        return ""
    return redact(" ".join(value.split())[:300])


def _session_items(resp: Response) -> list[dict[str, Any]]:
    body = resp.data
    found = _find_list(body, depth=2)
    if found is None:
        if body is None or isinstance(body, dict):
            return []
        raise MalformedResponse(
            "uppzy sessions: expected a list or an object", status=resp.status,
            endpoint="sessions",
        )
    return [item for item in found if isinstance(item, dict)]


def _find_list(body: Any, depth: int) -> list[Any] | None:
    """The session array: the body itself, a well-known key, or the only list in the object."""
    if isinstance(body, list):
        return body
    if not isinstance(body, dict) or depth == 0:
        return None
    for key in _LIST_KEYS:
        found = _find_list(body.get(key), depth - 1)
        if found is not None:
            return found
    lists = [v for v in body.values() if isinstance(v, list)]
    if not lists:
        lists = [f for v in body.values() if (f := _find_list(v, depth - 1)) is not None]
    return lists[0] if len(lists) == 1 else None


def _next_page(
    body: Any, url: str, query: dict[str, Any], base_url: str,
) -> tuple[str, dict[str, Any]] | None:
    """Where the next page is, from a next link, a cursor, or page numbers; None when done."""
    if not isinstance(body, dict):
        return None
    sources = [body] + [body[k] for k in _META_KEYS if isinstance(body.get(k), dict)]
    for src in sources:
        for key in ("next", "next_url", "next_page_url", "next_link"):
            link = src.get(key)
            if isinstance(link, str) and link.strip():
                if "/" not in link and not link.startswith("?"):
                    return url, {**query, "cursor": link}
                target = urljoin(url, link)
                if _origin(target) != _origin(base_url):
                    log.warning("uppzy sessions: not following a next link to another host")
                    return None
                return target, {}
            if isinstance(link, int) and not isinstance(link, bool):
                return url, {**query, "page": link}
        for key in ("next_cursor", "next_page_token"):
            token = src.get(key)
            if isinstance(token, str | int) and not isinstance(token, bool) and str(token):
                return url, {**query, "cursor": token}
    for src in sources:
        explicit = _int(src.get("next_page"))
        if explicit is not None:
            return url, {**query, "page": explicit}
        page = _int(src.get("page", src.get("current_page")))
        if page is None:
            continue
        total = _int(src.get("total_pages", src.get("last_page", src.get("pages"))))
        if (total is not None and page < total) or src.get("has_more") is True:
            return url, {**query, "page": page + 1}
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
