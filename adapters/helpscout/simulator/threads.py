"""The thread endpoints of one conversation: its list (v2 and v3 shapes), replies and notes."""

from __future__ import annotations

from typing import Any

from adapters.helpscout.simulator.records import (
    MAX_REQUEST_BYTES,
    STATUSES,
    THREADS_PAGE_SIZE,
    _Conversation,
    _vnd_error,
)
from adapters.simulation import SimRequest, SimResponse


class HelpScoutThreadRoutes:
    """Reading a conversation's threads and creating replies and notes, with Help Scout's
    validation."""

    def handle_threads_v2(self, request: SimRequest, conversation_id: int) -> SimResponse:
        return self._threads_page(request, conversation_id, v3=False)

    def handle_threads_v3(self, request: SimRequest, conversation_id: int) -> SimResponse:
        return self._threads_page(request, conversation_id, v3=True)

    def handle_reply_create(self, request: SimRequest, conversation_id: int) -> SimResponse:
        return self._create_thread(request, conversation_id, "message")

    def handle_note_create(self, request: SimRequest, conversation_id: int) -> SimResponse:
        return self._create_thread(request, conversation_id, "note")

    def _threads_page(self, request: SimRequest, conversation_id: int, *, v3: bool
                      ) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            conversation = self._open_conversation(conversation_id)
            if isinstance(conversation, SimResponse):
                return conversation
            newest_first = sorted(conversation.threads, key=lambda t: (t.created_at, t.id),
                                  reverse=True)
            rows = [self._thread_json(t, v3=v3) for t in newest_first]
            if conversation.corrupt and rows:
                del rows[-1]["id"]
                rows[-1]["body"] = {"unexpected": ["object"]}
            prefix = "/v3" if v3 else "/v2"
            return self._page(request, f"{prefix}/conversations/{conversation_id}/threads",
                              "threads", rows, THREADS_PAGE_SIZE,
                              page_info=self.v3_page_info or not v3)

    def _create_thread(self, request: SimRequest, conversation_id: int, kind: str
                       ) -> SimResponse:
        """Create Reply (``message``) or Create Note, with Help Scout's validation."""
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            if len(request.body) > MAX_REQUEST_BYTES:
                return _vnd_error(413, "Request too large")
            conversation = self._open_conversation(conversation_id)
            if isinstance(conversation, SimResponse):
                return conversation
            payload = request.json()
            if not isinstance(payload, dict):
                return _vnd_error(400, "Could not parse the request body")
            invalid = self._invalid_thread(payload, kind)
            if invalid:
                return _vnd_error(400, "Validation error", invalid)
            author = self.people[payload.get("user") or user.id]
            status = payload.get("status")
            if kind == "message" and status is None:
                status = "active"  # Help Scout: a reply without a status reactivates
            thread = self._add_thread(
                conversation, kind, payload["text"], author,
                state="draft" if payload.get("draft") is True else "published", status=status,
                source_type="api", api_user=author.id,
            )
            return SimResponse(201, None, {"Resource-ID": str(thread.id)})

    def _open_conversation(self, conversation_id: int) -> _Conversation | SimResponse:
        """The conversation whose threads may be read or added to, or the 404 (gone or merged
        away) or 403 (restricted) Help Scout answers instead."""
        conversation = self.conversations.get(conversation_id)
        if conversation is None or conversation.deleted or conversation.merged_into is not None:
            return _vnd_error(404, "Not Found")
        if conversation.restricted:
            return _vnd_error(403, "Access denied")
        return conversation

    def _invalid_thread(self, payload: dict[str, Any], kind: str) -> tuple[str, str] | None:
        """Help Scout's 400 reason for a thread it refuses, or None."""
        text = payload.get("text")
        if not isinstance(text, str) or not text.strip():
            return "text", "may not be empty"
        if kind == "message":
            customer = payload.get("customer")
            customer_id = customer.get("id") if isinstance(customer, dict) else None
            person = self.people.get(customer_id) if isinstance(customer_id, int) else None
            if person is None or person.kind != "customer":
                return "customer", "must name an existing customer"
            if "draft" in payload and not isinstance(payload["draft"], bool):
                return "draft", "must be true or false"
        status = payload.get("status")
        if status is not None and status not in STATUSES:
            return "status", f"Invalid value {status}"
        user_id = payload.get("user")
        if user_id is not None and (
            not isinstance(user_id, int) or self.people.get(user_id) is None
            or self.people[user_id].kind == "customer"
        ):
            return "user", "must name an existing user"
        return None
