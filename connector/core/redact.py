"""Keeps secret values out of every log line, error text and printed status.

Secrets are registered once, when the config is loaded; anything that leaves the process as text
(log records, error details, ``status`` output) is passed through ``redact``. Matching the values
themselves, not header names, also catches a token echoed back inside a vendor's error body.
"""

from __future__ import annotations

import logging
import re
import threading

_MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

# Credentials that can appear in text without having been registered (e.g. a header echoed back).
_GENERIC = re.compile(
    r"(?i)(authorization\s*[:=]\s*)(bearer|basic|token)?\s*[^\s,;\"']+|(x-api-key\s*[:=]\s*)[^\s,;\"']+"
)


def register_secret(value: str | None) -> None:
    """Remember a secret so that it is masked wherever it would be printed.

    Very short values are ignored: masking "a" everywhere would destroy logs and protect nothing.
    """
    global _pattern
    if not value or len(value) < 4:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """Return ``text`` with every registered secret and credential-looking header masked."""
    if not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(_MASK, text)
    return _GENERIC.sub(lambda m: (m.group(1) or m.group(3) or "") + _MASK, text)


class RedactingFilter(logging.Filter):
    """Logging filter that masks secrets in the final message, arguments included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
