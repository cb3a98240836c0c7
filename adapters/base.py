"""What every helpdesk adapter is: normalised records, capabilities, settings and the base class.

An adapter translates one helpdesk's API into the few calls the engine needs. It knows nothing of
Uppzy or of the store: it reports tickets and messages, posts a note or draft, and says whether a
ticket is resolved. Retries, timeouts and rate-limit handling come from ``connector.http``, so an
adapter only describes its vendor's quirks.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, SecretStr, Tag, field_validator

from adapters.webhooks import WebhookScheme, scheme_for
from connector.durations import Duration
from connector.http import CallObserver, HttpClient, RetryPolicy, Timeouts, header_retry_after
from connector.redact import register_secret

log = logging.getLogger(__name__)


class Role(StrEnum):
    """Who wrote a message, as far as answering is concerned."""

    CUSTOMER = "customer"
    AGENT = "agent"
    SYSTEM = "system"  # triggers, automations, line items, status events


@dataclass(frozen=True)
class Message:
    """One entry of a ticket's conversation. ``body`` is clean plain text."""

    external_id: str
    ticket_id: str
    created_at: datetime
    role: Role
    public: bool
    body: str
    author_id: str | None = None


@dataclass(frozen=True)
class Ticket:
    """A ticket as the engine needs it; ``resolved`` already accounts for custom statuses."""

    external_id: str
    status: str
    resolved: bool
    updated_at: datetime | None = None
    subject: str | None = None
    requester_id: str | None = None
    requester_email: str | None = None
    channel: str | None = None
    tags: frozenset[str] = field(default_factory=frozenset)
    url: str | None = None
    message_count: int | None = None
    """The helpdesk's own count of messages on the ticket, as its change feed reports it (None:
    the helpdesk gave none). The engine compares it with what it read to skip needless reads, so
    it must never count fewer things than ``list_messages`` returns for the same ticket."""


@dataclass(frozen=True)
class ChangePage:
    """One page of changed tickets and the cursor that resumes right after it.

    ``more`` is True while the helpdesk has further pages now; the engine stores each page and its
    cursor in one transaction before it asks for the next.
    """

    tickets: list[Ticket]
    cursor: str
    more: bool


@dataclass(frozen=True)
class Posted:
    """Where our text landed: a real draft reply, or an internal note."""

    external_id: str
    kind: Literal["draft", "note"]


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can do; shown by ``connector adapters``."""

    drafts: bool  # True: real drafts an agent sends; False: internal notes
    webhook: str | None = None  # the push-signature scheme, when the helpdesk has one


class DraftOverride(BaseModel):
    """Per-adapter ``draft:`` keys; anything not set follows the top-level ``draft`` section."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["post", "shadow"] | None = None


class AdapterSettings(BaseModel):
    """Settings every adapter accepts; subclasses add ``auth`` and their own filters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    type: str
    url: str
    poll_interval: Duration = 30.0
    site_id: str | None = None
    start_from: Duration = Field(
        default=300.0,
        description="On first start, how far back (seconds) to look for changes.",
    )
    timeout: Duration = 30.0
    close_after_idle: Duration | None = Field(
        default=None, gt=0,
        description="Close a session after this long without a customer message, even while "
        "the ticket stays open; the next message continues in the next session id.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None, min_length=16,
        description="Enables POST /webhooks/<name> on the ops listener: the helpdesk's signing "
        "secret (or, for Freshdesk, the shared secret it sends in a header).",
    )
    draft: DraftOverride = DraftOverride()

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class Adapter(ABC):
    """Base of every helpdesk adapter.

    Subclasses set ``type_name``, ``capabilities``, ``settings_model`` and ``simulator`` (the
    dotted path of their simulator class, served by ``connector sandbox``), and implement the
    abstract methods. Every method may raise the typed errors of ``connector.errors``; the engine
    decides what they mean for the work item.
    """

    type_name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    settings_model: ClassVar[type[AdapterSettings]] = AdapterSettings
    simulator: ClassVar[str | None] = None
    retry_after_header: ClassVar[str | None] = None
    """The vendor's own "wait this long" header on a 429, when it sends no ``Retry-After``."""

    authorization: str | None = None
    """A fixed ``Authorization`` header value, for adapters whose credentials never change."""

    def __init__(self, settings: AdapterSettings, *, observer: CallObserver | None = None) -> None:
        if not isinstance(settings, self.settings_model):
            raise TypeError(f"{type(self).__name__} needs {self.settings_model.__name__}")
        self.settings = settings
        register_secret(secret_value(settings.webhook_secret))
        self.http = self.make_http(observer)

    @property
    def name(self) -> str:
        return self.settings.name

    def make_http(self, observer: CallObserver | None) -> HttpClient:
        """The client for this helpdesk; override ``api_base``/``auth_headers`` rather than this."""
        return HttpClient(
            self.api_base(),
            name=self.name,
            timeouts=Timeouts(connect=5.0, read=self.settings.timeout),
            retry=RetryPolicy(),
            auth_headers=self.auth_headers,
            on_auth_failure=self.refresh_credentials,
            retry_after_from=header_retry_after(self.retry_after_header)
            if self.retry_after_header else None,
            observer=observer,
        )

    def api_base(self) -> str:
        return self.settings.url

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate one request; called before every attempt."""
        return {"Authorization": self.authorization} if self.authorization else {}

    def refresh_credentials(self) -> bool:
        """Called once on a 401; return True if new credentials are worth one more try."""
        return False

    @abstractmethod
    def check(self) -> str:
        """The cheapest authenticated read; returns a short safe description (e.g. the user)."""

    @abstractmethod
    def poll_changes(self, cursor: str | None, start_from: datetime) -> ChangePage:
        """One page of tickets changed since ``cursor`` (or since ``start_from`` when None)."""

    @abstractmethod
    def get_ticket(self, ticket_id: str) -> Ticket:
        """The ticket's current state (after a webhook, or to re-check before posting)."""

    @abstractmethod
    def list_messages(self, ticket: Ticket) -> list[Message]:
        """The whole conversation, oldest first, with roles and visibility resolved."""

    @abstractmethod
    def post_draft(self, ticket_id: str, text: str) -> Posted:
        """Post ``text`` (plain text, markers included) as a draft or internal note."""

    def find_posted(self, ticket: Ticket, marker: str) -> str | None:
        """Id of a message of ours carrying ``marker``, for reconciliation after a crash."""
        for message in self.list_messages(ticket):
            if marker in message.body:
                return message.external_id
        return None

    def list_tickets(self, since: datetime, until: datetime | None) -> Iterator[list[Ticket]]:
        """Pages of tickets changed between ``since`` and ``until`` (None: now), for backfill.

        The listing keeps its own position and never touches the live cursor. Optional: an
        adapter without it cannot be backfilled.
        """
        raise NotImplementedError(f"{self.type_name} adapters do not support backfill")

    # ----- push webhooks: only ever a hint to re-read a ticket now ----------------------------
    def webhook_scheme(self) -> WebhookScheme | None:
        """How this helpdesk signs webhooks; override to pass settings to the scheme."""
        return scheme_for(self.capabilities.webhook)

    def accepts_webhooks(self) -> bool:
        """A route exists only with a scheme and a configured secret: no secret, no entry."""
        return self.settings.webhook_secret is not None and self.webhook_scheme() is not None

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether the request really comes from the helpdesk (header names lower-cased)."""
        scheme = self.webhook_scheme()
        secret = secret_value(self.settings.webhook_secret).encode()
        return scheme is not None and bool(secret) and scheme.verify(secret, headers, body)

    def webhook_delivery_id(self, headers: Mapping[str, str]) -> str | None:
        """The vendor's id of this delivery, the same on its retries; None when it sends none."""
        return None

    def webhook_ticket_ids(self, headers: Mapping[str, str], body: bytes) -> list[str]:
        """Ticket ids a verified payload names ([] for events not about a ticket).

        Payloads are partial or user-shaped, so only the id is taken; the engine re-reads the
        rest. Raises ``adapters.webhooks.WebhookPayloadError`` when the body names no ticket.
        """
        raise NotImplementedError(f"{self.type_name} adapters do not parse webhooks")

    def close(self) -> None:
        self.http.close()


class BearerTokenAuth(BaseModel):
    """An OAuth (or personal) access token sent as ``Authorization: Bearer …``."""

    model_config = ConfigDict(extra="forbid")

    access_token: SecretStr = Field(min_length=1)


def union_by_key(key: str, when_present: type[BaseModel], otherwise: type[BaseModel]) -> Any:
    """A settings union chosen by whether ``key`` is given (e.g. ``auth: {token: ...}``).

    Choosing up front makes a config error name one variant's fields instead of listing every
    variant's; the tags are the class names, which the config loader leaves out of key paths.
    """

    def pick(value: Any) -> str:
        chosen = (key in value) if isinstance(value, dict) else isinstance(value, when_present)
        return when_present.__name__ if chosen else otherwise.__name__

    return Annotated[
        Annotated[when_present, Tag(when_present.__name__)]
        | Annotated[otherwise, Tag(otherwise.__name__)],
        Discriminator(pick),
    ]


def secret_value(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty dict: vendors omit or null sections."""
    return value if isinstance(value, dict) else {}
