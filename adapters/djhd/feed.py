"""django-helpdesk's change feed, built from what its REST API offers: the follow-up list.

The API has no "changed since" filter. What it has (django-helpdesk 2.6.1, see
``docs/adapters/django_helpdesk.md``): ``/api/followups/`` lists every follow-up on the tickets
the user may see, ordered by ``date`` (the model's ``Meta.ordering``), with DRF's page-number
pagination (``page``, ``page_size`` without a cap, ``page=last``, ``count``). Every message,
note and status change made through django-helpdesk's ``update_ticket`` or its e-mail intake is a
new follow-up dated "now", so the list only grows at its end, and the position of the first
follow-up after a time can be found by probing single items (``page_size=1``): a gallop back
from the end, then a binary search, a handful of tiny requests however long the history is.

Dates are microseconds, but a follow-up is dated before it is committed (``update_ticket`` sends
its e-mails in between), so one can appear behind a newer one already read. Every pass of the
feed therefore starts again at the newest date seen minus ``overlap`` and skips the follow-ups it
already reported, whose ids the cursor keeps for that window.

Not everything that changes a ticket makes a follow-up: the kanban board and the API's ticket
``PATCH`` change the status alone, a merge marks tickets Duplicate, a deletion leaves nothing.
A *sweep* of the open tickets (``/api/tickets/?status=…``) every ``sweep_interval`` catches those:
a ticket that left (or joined) the open ones since the last sweep is reported.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.payload import numeric_id, parse_time

Probe = Callable[[int, int | str], dict[str, Any]]
"""``(page_size, page)`` -> the follow-up list's answer (``count``, ``next``, ``results``)."""

CURSOR_VERSION = 1


def micros(when: datetime) -> int:
    """A time as integer microseconds since the epoch: exact, and compact in the cursor."""
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return int(aware.timestamp()) * 1_000_000 + aware.microsecond


def followup_micros(item: Any) -> int | None:
    """The follow-up's ``date`` in microseconds; None when it has none we can read."""
    when = parse_time(item.get("date")) if isinstance(item, dict) else None
    return micros(when) if when is not None else None


@dataclass
class Cursor:
    """Where the feed stands. Serialised as compact JSON (zlib + base64 once it grows).

    ``horizon``: follow-ups dated at or before it count as reported. ``seen``: ids (with their
    dates) reported after the horizon. ``read_to``: set while a pass is under way (the newest
    date read in it), so the next page continues there. ``phase`` is ``feed`` or ``sweep``;
    ``open`` the open tickets of the last complete sweep (None before the first one),
    ``sweep_page``/``sweep_found``/``gone`` the sweep under way, ``sweep_due`` the wall-clock
    time (seconds) of the next sweep.
    """

    horizon: int
    newest: int
    seen: dict[int, int] = field(default_factory=dict)
    read_to: int | None = None
    phase: str = "feed"
    open: list[int] | None = None
    sweep_page: int = 1
    sweep_found: list[int] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    sweep_due: float = 0.0

    @classmethod
    def fresh(cls, start_from: datetime) -> Cursor:
        start = micros(start_from)
        return cls(horizon=start, newest=start)

    def advance(self, overlap_us: int) -> None:
        """Move the horizon up to ``overlap`` before the newest date seen; forget older ids."""
        self.horizon = max(self.horizon, self.newest - overlap_us)
        self.seen = {i: d for i, d in self.seen.items() if d > self.horizon}

    def dump(self) -> str:
        data = {
            "v": CURSOR_VERSION, "h": self.horizon, "n": self.newest,
            "s": [[i, d] for i, d in sorted(self.seen.items())], "r": self.read_to,
            "p": self.phase, "o": self.open, "sp": self.sweep_page, "sf": self.sweep_found,
            "g": self.gone, "sd": round(self.sweep_due, 3),
        }
        text = json.dumps(data, separators=(",", ":"))
        if len(text) < 2000:
            return text
        return "z:" + base64.b64encode(zlib.compress(text.encode(), 9)).decode()

    @classmethod
    def load(cls, text: str) -> Cursor | None:
        """The cursor, or None when it is not one of ours (the caller starts afresh)."""
        try:
            raw = zlib.decompress(base64.b64decode(text[2:])).decode() \
                if text.startswith("z:") else text
            data = json.loads(raw)
            if data.get("v") != CURSOR_VERSION:
                return None
            return cls(
                horizon=int(data["h"]), newest=int(data["n"]),
                seen={int(i): int(d) for i, d in data.get("s", [])},
                read_to=None if data.get("r") is None else int(data["r"]),
                phase=str(data.get("p", "feed")),
                open=None if data.get("o") is None else [int(i) for i in data["o"]],
                sweep_page=int(data.get("sp", 1)),
                sweep_found=[int(i) for i in data.get("sf", [])],
                gone=[int(i) for i in data.get("g", [])], sweep_due=float(data.get("sd", 0)),
            )
        except (ValueError, TypeError, KeyError, AttributeError, zlib.error):
            return None


@dataclass(frozen=True)
class FeedPage:
    """Follow-ups from one page of the list, and whether the list goes on after it."""

    items: list[dict[str, Any]]
    more: bool


def first_after(probe: Probe, floor: int, *, inclusive: bool) -> tuple[int, int]:
    """``(index, count)``: the index of the first follow-up dated after ``floor`` (at or after,
    when ``inclusive``), and the list's length; ``index == count`` when there is none.

    The list is ordered by date, so "dated after" is a suffix: probe the last item, gallop back
    by doubling steps while items are still after ``floor``, then bisect. An item without a
    readable date counts as "after", which can only make the read start earlier.
    """
    def after(index: int) -> bool:
        items = probe(1, index + 1).get("results") or []
        when = followup_micros(items[0]) if items else None
        return when is None or when > floor or (inclusive and when == floor)

    last = probe(1, "last")
    count = last.get("count")
    if not isinstance(count, int) or count <= 0:
        return 0, 0
    newest = followup_micros((last.get("results") or [None])[0])
    if newest is not None and (newest < floor or (newest == floor and not inclusive)):
        return count, count
    high, step = count - 1, 1  # ``high`` is after the floor
    low = high - step
    while low >= 0 and after(low):
        high, step = low, step * 2
        low = high - step
    low = max(low, -1)  # ``low`` is not after the floor (or before the start)
    while high - low > 1:
        middle = (low + high) // 2
        if after(middle):
            high = middle
        else:
            low = middle
    return high, count


def read_from(probe: Probe, index: int, page_size: int) -> FeedPage:
    """The page of ``page_size`` follow-ups that holds ``index`` (it may start a little before)."""
    body = probe(page_size, index // page_size + 1)
    items = [item for item in body.get("results") or [] if isinstance(item, dict)]
    return FeedPage(items, bool(body.get("next")))


def followup_id(item: dict[str, Any]) -> int | None:
    value = numeric_id(item.get("id"))
    return int(value) if value is not None else None
