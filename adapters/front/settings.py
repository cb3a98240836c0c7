"""What a Front adapter is configured with, and the id forms Front uses.

Front's ids are a type prefix and a token (``cnv_55c8c149``, ``tea_6r55a``); settings check the
prefix so that an id pasted into the wrong key (a channel id as the teammate) is a config error
naming the key, not a 404 on the first draft.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from adapters.auth import TokenAuth
from adapters.base import AdapterSettings

API_URL = "https://api2.frontapp.com"
MAX_EVENTS_PAGE = 15  # Front's own cap on ``limit`` for GET /events (spec: list-events)


def id_pattern(prefix: str) -> str:
    return rf"^{prefix}_[0-9a-z]+$"


class FrontTokenAuth(TokenAuth):
    """A Front API token, sent as ``Authorization: Bearer …`` (the spec's bearer scheme)."""

    form = "Bearer {}"


class FrontSettings(AdapterSettings):
    """One Front company. ``url`` is the API root; it only changes for the simulator.

    A company API token acts as no teammate, so drafts need a teammate to be written as (their
    author, which is also how our drafts are told from anybody else's) and a channel to be sent
    from (Front requires ``channel_id`` on a draft reply).
    """

    type: Literal["front"]
    url: str = API_URL
    auth: FrontTokenAuth
    teammate_id: str = Field(
        pattern=id_pattern("tea"),
        description="The teammate (tea_…) our drafts are written as; shown as their author.",
    )
    channel_id: str = Field(
        pattern=id_pattern("cha"),
        description="The channel (cha_…) our draft replies are sent from when a human sends them.",
    )
    inbox_ids: list[Annotated[str, Field(pattern=id_pattern("inb"))]] = Field(
        default_factory=list,
        description="Only events of these inboxes (inb_…); every inbox the token sees if empty.",
    )
    page_size: int = Field(
        default=MAX_EVENTS_PAGE, ge=1, le=MAX_EVENTS_PAGE,
        description="Events per page of the change feed (Front allows at most 15).",
    )
