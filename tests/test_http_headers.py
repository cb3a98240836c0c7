"""The fast header parser gives exactly the message ``email.parser`` gives, on every kind of
header block (plain ones take the fast path, odd ones fall back), and responses read over real
HTTP carry the same headers with it installed."""

from __future__ import annotations

import email.parser
import http.client
import http.server
import io
import threading
from typing import Any

import pytest
import urllib3

from connector.core import http_headers

BLOCKS = [
    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n",
    b"\r\n",
    b"",
    b"A: b\n\n",
    b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nRetry-After:   7 \t\r\n\r\n",
    b"Empty:\r\nX-Tab:\tv\r\n\r\n",
    b"Last: no newline at EOF",
    b"Folded: one\r\n two\r\n\r\n",  # obsolete folding: the e-mail parser joins it
    b" Leading: continuation first\r\n\r\n",
    b"Bad Name: space before the colon\r\nAfter: x\r\n\r\n",
    b"No colon here\r\nAfter: x\r\n\r\n",
    b":empty name\r\nAfter: x\r\n\r\n",
    b"From someone\r\nA: b\r\n\r\n",
    b"From: someone\r\n\r\n",
    b"X: a\rb\r\n\r\n",  # a lone CR splits the line for the e-mail parser
    b"X: a\r\r\n\r\n",
    b"X: caf\xe9 \x85 \x0c end\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n",
    b"content-type:  Message/rfc822\r\n\r\n",
    b"Content-Type: text/plain; charset=utf-8\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n",
]


def _shape(message: Any) -> dict[str, Any]:
    """Everything a reader of the message could see, defects by kind."""
    state = dict(vars(message))
    state["defects"] = [type(d).__name__ for d in message.defects]
    if isinstance(state["_payload"], list):  # a nested message, parsed by the e-mail parser
        state["_payload"] = [_shape(part) for part in state["_payload"]]
    return state


@pytest.mark.parametrize("block", BLOCKS)
def test_same_message_as_the_email_parser(block: bytes) -> None:
    expected = email.parser.Parser(_class=http.client.HTTPMessage).parsestr(
        block.decode("iso-8859-1"))
    got = http_headers.parse_headers(io.BytesIO(block))
    assert type(got) is http.client.HTTPMessage
    assert _shape(got) == _shape(expected)
    assert got.items() == expected.items()


@pytest.mark.parametrize("block", BLOCKS[:7])
def test_plain_blocks_take_the_fast_path(block: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(*args: Any) -> None:
        raise AssertionError("the e-mail parser ran on a plain header block")

    monkeypatch.setattr(http_headers, "_slow", slow)
    assert isinstance(http_headers.parse_headers(io.BytesIO(block)), http.client.HTTPMessage)


def test_limits_of_http_client_still_apply() -> None:
    with pytest.raises(http.client.LineTooLong):
        http_headers.parse_headers(io.BytesIO(b"X: " + b"a" * 70000 + b"\r\n\r\n"))
    with pytest.raises(http.client.HTTPException):
        http_headers.parse_headers(io.BytesIO(b"X: a\r\n" * 101 + b"\r\n"))


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(429)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "3")
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_responses_over_http_read_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        def fetch() -> tuple[int, list[tuple[str, str]], bytes]:
            with urllib3.PoolManager() as pool:
                response = pool.request("GET", url, retries=False)
                return response.status, list(response.headers.items()), response.data

        monkeypatch.setattr(http.client, "parse_headers", http_headers.STDLIB_PARSE_HEADERS)
        before = fetch()
        http_headers.install()
        assert http.client.parse_headers is http_headers.parse_headers
        after = fetch()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert after == before
    assert ("Retry-After", "3") in after[1]
    assert after[2] == b'{"ok": true}'
