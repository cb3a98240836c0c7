"""Our own poll positions, kept as text in the engine's database from one poll to the next.

Some helpdesks hand out a cursor of their own (Zendesk's export, RT's transaction ids) and the
adapter stores it as it came. Where the adapter has to keep its own place (a time, a page, what
it already reported), that place is a ``Cursor``: a frozen dataclass stored as one JSON object
``{"cursor": <kind>, "v": <version>, ...its fields}``. Users' databases hold cursors written by
every earlier release, so a kind that changes raises its version and its ``upgrade`` keeps
reading the older forms: a cursor that cannot be read costs a poll from ``start_from`` again.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from datetime import datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, PlainSerializer, TypeAdapter, ValidationError

from adapters.times import iso_millis, iso_seconds, utc

log = logging.getLogger(__name__)

Seconds = Annotated[datetime, AfterValidator(utc), PlainSerializer(iso_seconds, return_type=str)]
"""A time kept to the second: the vendor filters on whole seconds anyway."""
Millis = Annotated[datetime, AfterValidator(utc), PlainSerializer(iso_millis, return_type=str)]
"""A time kept to the millisecond, for vendors that compare times at that precision."""
_ENVELOPE = ("cursor", "v")


class Cursor:
    """Base of an adapter's own poll position; subclasses are frozen dataclasses.

    ``kind`` tells one adapter's cursors from another's (a database restored into the wrong
    adapter must not be misread), ``version`` what the fields mean. The fields' types say how
    they are checked on load, so a subclass writes no parsing of its own.
    """

    kind: ClassVar[str]
    version: ClassVar[int]

    def dump(self) -> str:
        fields = _fields(type(self)).dump_python(self, mode="json")
        return json.dumps({"cursor": self.kind, "v": self.version, **fields}, sort_keys=True,
                          separators=(",", ":"))

    @classmethod
    def load(cls, text: str) -> Self | None:
        """The position ``text`` holds, or None when it holds none this release can read."""
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        try:
            if isinstance(data, dict) and data.get("cursor") == cls.kind:
                return cls.from_fields(data) if data.get("v") == cls.version else None
            return cls.upgrade(text, data)
        except (ValidationError, ValueError, TypeError):
            return None

    @classmethod
    def from_fields(cls, data: dict[str, Any]) -> Self:
        """The position from its fields (envelope keys ignored); raises ValidationError."""
        fields = {key: value for key, value in data.items() if key not in _ENVELOPE}
        return _fields(cls).validate_python(fields)

    @classmethod
    def upgrade(cls, text: str, data: Any) -> Self | None:
        """The position a cursor of an earlier release holds (``data``: ``text`` parsed as
        JSON, None when it is not JSON); None when ``text`` is none of them."""
        return None

    @classmethod
    def resume(cls, text: str | None, start: Self, name: str) -> Self:
        """The position ``text`` holds, or ``start`` on a first poll (no cursor, or empty).

        An unreadable cursor is replaced by ``start`` too, and said so: polling again from
        ``start_from`` reports some tickets twice, which the engine shrugs off, where refusing
        would stop the adapter until someone edits its database.
        """
        if not text:
            return start
        position = cls.load(text)
        if position is None:
            log.warning("%s: unreadable cursor %r; polling again from start_from", name,
                        text[:80])
            return start
        return position


@functools.cache
def _fields(cls: type[Cursor]) -> TypeAdapter[Any]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass to be a cursor")
    return TypeAdapter(cls)
