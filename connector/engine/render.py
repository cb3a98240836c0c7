"""What we write on a ticket: the answer as the template says, with a visible marker.

The marker names the Uppzy request id. Agents see where the text came from, and after a crash
the engine finds its own post on the ticket by the marker instead of posting a second one.
"""

from __future__ import annotations

import re

from adapters.base import Message, Role
from connector.config import DraftSettings

_MARKER = re.compile(r"AI draft, Uppzy ref ([A-Za-z0-9_.:-]+)")
_LEVELS = {"low": 0, "medium": 1, "high": 2}


def marker(ref: str) -> str:
    return f"AI draft, Uppzy ref {ref}"


def find_marker(text: str) -> str | None:
    """The ref of our marker in a message body, or None for anybody else's message."""
    match = _MARKER.search(text or "")
    return match.group(1) if match else None


def own_post(message: Message, posted_ids: set[str]) -> bool:
    """Whether a message on the ticket is one of our posts: recorded by id, or (written before
    the id could be recorded) carrying our marker. Never a customer's message, whatever it
    quotes: a pasted marker must not silence the customer."""
    if message.external_id in posted_ids:
        return True
    return message.role != Role.CUSTOMER and find_marker(message.body) is not None


def render_answer(
    settings: DraftSettings,
    ref: str,
    answer: str,
    confidence_level: str | None,
    confidence_score: float | None,
) -> str:
    """The draft text; the answer goes in unchanged, whatever it contains."""
    return settings.template.format(
        answer=answer,
        marker=marker(ref),
        confidence_level=confidence_level or "unknown",
        confidence_score="" if confidence_score is None else f"{confidence_score:g}",
    )


def render_fallback(settings: DraftSettings, ref: str) -> str | None:
    """The fallback note, or None when the team chose to post nothing."""
    if not settings.fallback.strip():
        return None
    return f"{settings.fallback}\n\n— {marker(ref)}"


def below_threshold(
    settings: DraftSettings, confidence_level: str | None, confidence_score: float | None
) -> bool:
    """True when the answer is less confident than ``min_confidence`` allows.

    A numeric threshold compares the score (a score above 1 is read as a percentage); a named
    level compares the level. Missing confidence data never blocks an answer: the API documents
    the fields as optional.
    """
    threshold = settings.min_confidence
    if threshold is None:
        return False
    if isinstance(threshold, str):
        level = _LEVELS.get((confidence_level or "").lower())
        return level is not None and level < _LEVELS[threshold]
    if confidence_score is None:
        return (confidence_level or "").lower() == "low"
    score = confidence_score / 100 if confidence_score > 1 else confidence_score
    return score < threshold
