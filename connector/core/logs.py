"""Logging set-up: text or JSON lines, every record passed through secret redaction.

Lines about a turn carry its identifiers (passed as ``extra=turn_fields(turn)``) as separate
fields, so an operator can follow one ticket or one Uppzy request through the log with a filter
instead of parsing prose.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from connector.core.redact import RedactingFilter

LEVELS = ("debug", "info", "warning", "error")

CONTEXT_FIELDS = ("adapter", "ticket_id", "session_id", "request_id", "turn_id", "instance")
"""Record attributes that identify the work a line is about, in the order they are shown."""


def context_of(record: logging.LogRecord) -> dict[str, object]:
    """The identifiers a record was given through ``extra=``; unset and None ones are left out."""
    found = {}
    for key in CONTEXT_FIELDS:
        value = getattr(record, key, None)
        if value is not None:
            found[key] = value
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **context_of(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic one-line format with ``key=value`` context after the message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                         "%Y-%m-%dT%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        pairs = [f"{key}={_text_value(value)}" for key, value in context_of(record).items()]
        return " ".join([line, *pairs])


def _text_value(value: object) -> str:
    """Quote a value only when it would otherwise break ``key=value`` splitting."""
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter below WARNING says nothing an operator needs, and urllib3 at DEBUG
    # would print full URLs with query strings.
    for noisy in ("urllib3", "apscheduler", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def tag_instance(instance_id: str) -> None:
    """Put the instance id on every line, so logs of several instances can be told apart."""

    def add(record: logging.LogRecord) -> bool:
        record.instance = instance_id
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(add)
