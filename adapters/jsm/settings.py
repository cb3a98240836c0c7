"""What a ``type: jsm`` section holds: the site or gateway, one of two ways to authenticate, and
the filters that narrow the requests we answer.

Atlassian accepts an API token only on the site itself and OAuth (3LO) tokens only through its
gateway, so the two kinds of ``auth`` come with different ``url`` rules, checked here where a
mistake is a config error naming the key instead of a 401 on the first poll.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from adapters.auth import Credentials, StaticCredentials, basic_authorization, union_by_key
from adapters.base import AdapterSettings
from connector.core.durations import Duration

SEARCH_PAGE_MAX = 100
"""Issues per search page we ask for: Jira may return fewer when fields are requested, and the
listing is followed by ``nextPageToken`` anyway."""
TOKEN_URL = "https://auth.atlassian.com"


class JsmTokenAuth(StaticCredentials):
    """An Atlassian account's API token: Basic ``{email}:{api_token}`` on the site."""

    email: str = Field(min_length=3)
    api_token: SecretStr = Field(min_length=1)

    def authorization(self) -> str:
        return basic_authorization(self.email, self.api_token)


class JsmOAuth(Credentials):
    """An OAuth 2.0 (3LO) app's client and the refresh token its consent flow handed out
    (scope ``offline_access`` included). Atlassian replaces the refresh token on every use; the
    newest is kept in the database and wins over this one after a restart."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr = Field(min_length=1)
    refresh_token: SecretStr = Field(min_length=1)
    token_url: str = Field(
        default=TOKEN_URL, pattern=r"^https?://",
        description="Where tokens are renewed; only tests point it elsewhere.",
    )


JsmAuth = union_by_key("refresh_token", JsmOAuth, JsmTokenAuth)


class JsmSettings(AdapterSettings):
    """One JSM Cloud site. ``url``: ``https://<site>.atlassian.net`` with an API token,
    ``https://api.atlassian.com/ex/jira/<cloudId>`` with OAuth."""

    type: Literal["jsm"]
    auth: JsmAuth
    projects: list[str] = Field(
        default_factory=list, description="Project keys whose requests are answered (JQL)."
    )
    service_desk_ids: list[int] = Field(default_factory=list)
    request_type_ids: list[int] = Field(default_factory=list)
    overlap: Duration = Field(
        default=120.0, ge=60.0,
        description="How far back each poll re-reads: search lags behind changes, and JQL "
        "compares times to the minute.",
    )
    page_size: int = Field(default=50, ge=1, le=SEARCH_PAGE_MAX)

    @model_validator(mode="after")
    def _gateway_for_oauth(self) -> JsmSettings:
        host = urlsplit(self.url).hostname or ""
        if isinstance(self.auth, JsmOAuth) and host.endswith(".atlassian.net"):
            raise ValueError("url: OAuth tokens work only through the gateway, "
                             "https://api.atlassian.com/ex/jira/<cloudId>, not on the site")
        return self

    def wants_request(self, service_desk_id: object, request_type_id: object) -> bool:
        """Whether a request of that service desk and request type is ours to answer (the
        JSM API writes both ids as text)."""
        return _listed(service_desk_id, self.service_desk_ids) and _listed(
            request_type_id, self.request_type_ids)

    @property
    def filters_requests(self) -> bool:
        """Whether reporting a changed request needs its request view (the search has no
        service desk or request type field of a fixed name)."""
        return bool(self.service_desk_ids or self.request_type_ids)


def _listed(value: object, ids: list[int]) -> bool:
    return not ids or str(value) in {str(i) for i in ids}
