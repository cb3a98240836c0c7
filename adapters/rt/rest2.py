"""What RT's REST2 answers look like, and how TicketSQL is written: the vocabulary of the RT
adapter, apart from its calls.

RT sends ids as numbers in records and as strings in collections, a "not set" date as the
epoch, message bodies as attachment parts, and some refusals as a success whose messages say
otherwise; these helpers read all of that one way.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import quote

from adapters.base import as_dict
from adapters.payload import parse_time
from adapters.times import utc
from connector.core.errors import BadRequest, PermissionDenied
from connector.core.redact import redact

# English wording of RT's refusals inside a 2xx answer; RT gives no other signal for them.
_FAILURE = re.compile(
    r"(?i)permission denied|isn't a valid|is not a valid|\binvalid\b|\billegal\b|couldn't|"
    r"could not|\bcannot\b|can't|unable to|\bfailed\b|not allowed|internal error|no permission"
)
PERMISSION = re.compile(r"(?i)permission denied|no permission|not allowed")
_UNSET_DATE = "1970-01-01T00:00:00Z"
Parts = tuple[str | None, str | None]  # a transaction's text/plain and text/html content


def check_messages(data: Any, what: str) -> list[str]:
    """RT's result messages; raises when one of them is a refusal dressed as success."""
    messages = [str(m) for m in data] if isinstance(data, list) else []
    failures = [m for m in messages if _FAILURE.search(m)]
    if failures:
        detail = redact(" ".join("; ".join(failures).split())[:300])
        cls = PermissionDenied if any(PERMISSION.search(m) for m in failures) else BadRequest
        raise cls(f"{what}: RT refused", status=200, detail=detail, endpoint=what)
    return messages


def transaction_bodies(parts: list[Any]) -> dict[str, Parts]:
    """Per transaction, its text/plain parts and its HTML parts, each joined; the text wins
    when both are there (``body_text``).

    Parts with a file name are attachments, not the message.
    """
    plain: dict[str, list[str]] = {}
    html: dict[str, list[str]] = {}
    for part in parts:
        part = as_dict(part)
        txn_id = rt_id(part.get("TransactionId"))
        content = part.get("Content")
        if txn_id is None or not isinstance(content, str) or part.get("Filename"):
            continue
        kind = str(part.get("ContentType", "")).lower()
        (plain if kind == "text/plain" else html).setdefault(txn_id, []).append(content)
    return {
        txn: ("\n\n".join(c.strip() for c in plain[txn]) if txn in plain else None,
              "\n".join(html[txn]) if txn in html else None)
        for txn in {*plain, *html}
    }


def json_query(field: str, values: tuple[str, ...]) -> str:
    """REST2's JSON search; conditions on the same field are OR-ed."""
    return json.dumps([{"field": field, "value": v} for v in values])


def sql_literal(value: str) -> str:
    """A TicketSQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def path_segment(value: str) -> str:
    """A user or queue name as one URL path segment; ``@`` stays, as in RT's own links to
    users named by their address."""
    return quote(value, safe="@")


def rt_id(value: Any) -> str | None:
    """RT sends ids as numbers in records and as strings in collections; we use strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def sql_time(when: datetime) -> str:
    """A TicketSQL date in UTC, which RT reads them in when the user's (or server's) zone is
    UTC."""
    return f"'{utc(when).strftime('%Y-%m-%d %H:%M:%S')}'"


def rt_time(value: Any) -> datetime | None:
    """RT's time, or None for its "not set" date."""
    return None if value == _UNSET_DATE else parse_time(value)


def status_text(value: Any) -> str:
    """Server-provided text fit for a status line: one short line, secrets masked."""
    if not isinstance(value, str):
        return ""
    return redact(" ".join(value.split())[:80])
