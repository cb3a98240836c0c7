"""Response headers parsed without the e-mail parser, when that gives the very same message.

``http.client`` reads every response's header block and hands it to ``email.parser``, a general
RFC 5322 parser: about 40 µs a response here, a quarter of the CPU of an HTTP call and 7 % of
the daemon's (bench/README.md), to split a few ``Name: value`` lines. ``install`` puts a parser
in its place (``http.client.parse_headers`` is looked up at every call, by urllib3's
responses and ``http.server`` alike) that builds the same ``HTTPMessage`` directly when every
line is a plain header, and otherwise hands the lines, already read, to the e-mail parser as
before. "The same" is meant exactly: the message's headers, payload and defects are what the
e-mail parser makes of such a block (tests/test_http_headers.py compares them), so nothing
that reads headers can tell which parser ran.

Lines the fast path leaves to the e-mail parser: a continuation line (obsolete folding), a
line whose name is not a token (a space before the colon, no colon), a ``From `` line, and a
``Content-Type`` of a multipart or message type, whose (empty) body that parser would parse.
"""

from __future__ import annotations

import email.parser
import http.client
import re
from typing import IO, Any

_PLAIN = re.compile(r"[\041-\071\073-\176]+:")  # a header name as the e-mail parser takes one
_NESTED = ("multipart/", "message/")  # content types whose body the e-mail parser parses
_read_headers = getattr(http.client, "_read_headers", None)
STDLIB_PARSE_HEADERS = http.client.parse_headers  # what ``install`` replaces


def parse_headers(fp: IO[bytes], _class: type[http.client.HTTPMessage] = http.client.HTTPMessage
                  ) -> Any:
    """``http.client.parse_headers``, with the same limits (line length, header count)."""
    assert _read_headers is not None
    lines = [line.decode("iso-8859-1") for line in _read_headers(fp)]
    message = _class()
    for line in lines[:-1]:  # the last is the blank line that ends the block, or EOF's b""
        text = line[:-2] if line.endswith("\r\n") else line.rstrip("\n")
        if not _PLAIN.match(text) or "\r" in text:  # a lone CR ends a line for that parser
            return _slow(lines, _class)
        name, _, value = text.partition(":")
        value = value.lstrip(" \t")
        if name.lower() == "content-type" and value.lower().startswith(_NESTED):
            return _slow(lines, _class)
        message.set_raw(name, value)
    message.set_payload("")
    return message


def _slow(lines: list[str], _class: type[http.client.HTTPMessage]) -> Any:
    return email.parser.Parser(_class=_class).parsestr("".join(lines))


def install() -> None:
    """Use ``parse_headers`` for every response from now on (idempotent). Left alone where
    this Python's ``http.client`` lacks the line reader it relies on."""
    if _read_headers is not None:
        http.client.parse_headers = parse_headers  # type: ignore[assignment]
