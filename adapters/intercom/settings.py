"""What an Intercom adapter is configured with: the app's access token and the note's author.

Intercom's access tokens do not expire and cannot be refreshed, so the token is a fixed
``Authorization: Bearer`` header (``BearerTokenAuth``); a 401 means it was revoked.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from adapters.auth import BearerTokenAuth
from adapters.base import AdapterSettings

API_URL = "https://api.intercom.io"
MAX_PAGE_SIZE = 150  # Intercom's maximum per search page


class IntercomSettings(AdapterSettings):
    """One Intercom workspace. ``url`` changes for the EU or Australian hosting region (and
    for the simulator); ``admin_id`` is the teammate the notes are written as."""

    type: Literal["intercom"]
    url: str = API_URL
    auth: BearerTokenAuth
    admin_id: str = Field(
        pattern=r"^[0-9]{1,20}$",
        description="The id of the teammate (admin) the notes are written as; Intercom needs "
        "one on every note, and only notes by this admin are taken for the connector's own.",
    )
    page_size: int = Field(default=MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
