"""Walking a vendor's paged listing without trusting it to end.

Every listing we read page by page (comments, threads, conversations, a backfill replay) is
bounded the same way: a page the listing leads back to is never read twice, and no listing
runs past a number of pages chosen far above any real one. A vendor bug, a proxy that drops the
end marker or a cursor that stops moving then costs a few requests and an error naming the
listing, instead of a poll that never returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from connector.core.errors import MalformedResponse

log = logging.getLogger(__name__)

Key = TypeVar("Key")  # what names a page: a number, a vendor cursor, a query
Item = TypeVar("Item")

PageReader = Callable[[Key], tuple[list[Item], Key | None]]
"""Reads the page ``key`` names: its items, and the key of the next page (None: the last)."""


def follow_pages(
    read: PageReader[Key, Item],
    first: Key,
    *,
    limit: int,
    what: str,
    noun: str,
    endpoint: str,
    strict: bool = True,
) -> Iterator[list[Item]]:
    """The pages of a listing, from ``first`` on, each as soon as it is read.

    The listing stops early when its next page is one already read, or when it still has more
    after ``limit`` pages. ``strict``: that is an error (``MalformedResponse`` from
    ``"{what}: …"``), because what was read is not the whole of something that must be whole,
    like a conversation. Otherwise it is logged and the pages read are all there is, for
    listings whose part is still worth having (a backfill, a list of mailboxes).
    """
    key, seen = first, {_hashable(first)}
    for _ in range(limit):
        items, following = read(key)
        yield items
        if following is None:
            return
        if _hashable(following) in seen:
            _stop(f"{what}: its pages of {noun} never end: the next one repeats one already "
                  "read", endpoint, strict)
            return
        seen.add(_hashable(following))
        key = following
    _stop(f"{what} has more than {limit} pages of {noun}", endpoint, strict)


def link_query(href: str, path: str, endpoint: str) -> dict[str, str]:
    """The query of a vendor's absolute "next" link, to send to our own base URL.

    The link names the vendor's public host; following it as it is would bypass a configured
    proxy (or leave the simulator) and send our credentials wherever the answer says. Only its
    query is kept, and a link to another path than the listing's own is refused.
    """
    target = urlsplit(href)
    if target.path != path:
        raise MalformedResponse(f"{endpoint}: next link leads to {target.path!r}, not to "
                                f"{path!r}", endpoint=endpoint)
    return dict(parse_qsl(target.query))


def _stop(message: str, endpoint: str, strict: bool) -> None:
    if strict:
        raise MalformedResponse(message, endpoint=endpoint)
    log.warning("%s; stopped there", message)


def _hashable(key: Any) -> Hashable:
    """A page's key as something a set can hold: a query is a dict."""
    return tuple(sorted(key.items())) if isinstance(key, dict) else key
