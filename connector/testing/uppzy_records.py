"""What the simulated Uppzy keeps: its chat sessions and chat requests, and how each is listed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def iso_now() -> str:
    """Now, as Uppzy writes times in its JSON."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class SimSession:
    site_id: str
    session_id: str
    email: str | None = None
    status: str = "open"
    created_at: str = field(default_factory=iso_now)
    last_activity_at: str = field(default_factory=iso_now)
    closed_at: str | None = None
    question_count: int = 0
    close_calls: int = 0
    restarts: int = 0

    def listing(self) -> dict[str, Any]:
        """The provisional session-list record (reference §3.5; not a documented schema)."""
        return {
            "session_id": self.session_id, "status": self.status, "email": self.email,
            "created_at": self.created_at, "last_activity_at": self.last_activity_at,
            "closed_at": self.closed_at, "question_count": self.question_count,
        }


@dataclass
class SimChatRequest:
    request_id: str
    site_id: str
    session_id: str
    message: str
    mode: str  # "sync" | "async"
    email: str | None
    response_language: str | None
    created_at: float  # monotonic
    ready_at: float  # monotonic; when the answer (or failure) exists server-side
    outcome: str  # "completed" | "failed"
    answer: str = ""
    confidence_level: str | None = None
    confidence_score: float | None = None
    error: str = ""
    delivered_at: float | None = None  # first response that carried the final state
    status_polls: int = 0
    feedback: str | None = None
    feedback_submitted_at: str | None = None
    feedback_calls: int = 0

    def status_at(self, now: float, progress: tuple[str, ...]) -> str:
        if now >= self.ready_at:
            return self.outcome
        share = (now - self.created_at) / (self.ready_at - self.created_at)
        return progress[min(len(progress) - 1, max(0, int(share * len(progress))))]

    def snapshot(self, now: float, progress: tuple[str, ...]) -> dict[str, Any]:
        status = self.status_at(now, progress)
        return {
            "request_id": self.request_id, "site_id": self.site_id,
            "session_id": self.session_id, "message": self.message, "mode": self.mode,
            "email": self.email, "response_language": self.response_language,
            "status": status, "created_at": self.created_at,
            "completed_at": self.ready_at if status == self.outcome else None,
            "delivered_at": self.delivered_at, "status_polls": self.status_polls,
            "answer": self.answer, "error": self.error, "feedback": self.feedback,
            "feedback_calls": self.feedback_calls,
        }
