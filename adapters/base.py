"""What every helpdesk adapter is: normalised records, capabilities, settings and the base class.

An adapter translates one helpdesk's API into the few calls the engine needs. It knows nothing of
Uppzy or of the store: it reports tickets and messages, posts a note or draft, and says whether a
ticket is resolved. Retries, timeouts and rate-limit handling come from ``connector.core.http``,
so an adapter only describes its vendor's quirks.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
)

from adapters.auth import CredentialStore, OAuthGrant, OAuthTokens, StaticCredentials
from adapters.payload import json_object, numeric_id, parse_time
from adapters.signatures import WebhookScheme, scheme_for
from connector.core.durations import Duration
from connector.core.errors import MalformedResponse
from connector.core.http import (
    CallObserver,
    HttpClient,
    Response,
    RetryPolicy,
    Timeouts,
    header_retry_after,
)
from connector.core.redact import register_secret


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
class Account:
    """The user (or agent) the credentials act as, as ``check`` reads it; ``status`` is the
    answer's HTTP status, for a refusal of this account to name."""

    record: dict[str, Any]
    id: str
    status: int


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can do; shown by ``connector adapters``."""

    drafts: bool  # True: real drafts an agent sends; False: internal notes
    webhook: str | None = None  # the push-signature scheme, when the helpdesk has one
    notes_because: str | None = None
    """Why an adapter writes notes, when that is the helpdesk's limit rather than a choice
    (shown by ``connector adapters``, so nobody looks for a draft setting that cannot exist)."""


class DraftOverride(BaseModel):
    """Per-adapter ``draft:`` keys; anything not set follows the top-level ``draft`` section."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["post", "shadow"] | None = None


class AdapterSettings(BaseModel):
    """Settings every adapter accepts; subclasses add ``auth`` and their own filters."""

    model_config = ConfigDict(extra="forbid")
    api_suffix: ClassVar[str] = ""
    """The API's base path, which the adapter adds itself: people copy the address from the
    vendor's docs with it, so a ``url`` ending in it is taken for the root."""

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
    _key_path: str = PrivateAttr(default="")

    @property
    def key_path(self) -> str:
        """Where these settings sit in the config (``adapters[0]``), for messages that must tell
        a person which key to fix; set by the config loader."""
        return self._key_path or f"adapters[name={self.name}]"

    def locate(self, key_path: str) -> None:
        self._key_path = key_path

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/").removesuffix(cls.api_suffix)


class FilteredSettings(AdapterSettings):
    """Settings of a helpdesk whose tickets can be narrowed down: a ticket must match every
    filter that is set (``tags``: at least one of the listed tags)."""

    group_ids: list[int] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    def wants(self, raw: Mapping[str, Any], **id_filters: list[int]) -> bool:
        """Whether a ticket as the vendor sent it passes ``group_ids``, ``tags`` and the
        vendor's own id filters (field name -> ids, e.g. ``brand_id=self.brand_ids``)."""
        return self.wants_ids(raw, **id_filters) and self.wants_tags(raw.get("tags"))

    def wants_ids(self, raw: Mapping[str, Any], **id_filters: list[int]) -> bool:
        """The id filters alone, for vendors whose tags cost a request of their own."""
        filters = {"group_id": self.group_ids, **id_filters}
        return all(not ids or raw.get(name) in ids for name, ids in filters.items())

    def wants_tags(self, tags: Any) -> bool:
        """Whether ``tags`` (as the vendor sent them) hold one of the configured ones."""
        return not self.tags or (
            isinstance(tags, list | set | frozenset) and any(tag in tags for tag in self.tags)
        )


EntryReader = Callable[[dict[str, Any], str, datetime], Message | None]
"""Makes a message of one conversation entry, given its id and creation time."""


class Adapter(ABC):
    """Base of every helpdesk adapter.

    Subclasses set ``type_name``, ``capabilities``, ``settings_model`` and ``simulator`` (the
    dotted path of their simulator class, served by ``connector sandbox``), and implement the
    abstract methods. Every method may raise the typed errors of ``connector.core.errors``; the
    engine decides what they mean for the work item.
    """

    type_name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    settings_model: ClassVar[type[AdapterSettings]] = AdapterSettings
    simulator: ClassVar[str | None] = None
    retry_after_header: ClassVar[str | None] = None
    """The vendor's own "wait this long" header on a 429, when it sends no ``Retry-After``."""
    rate_families: ClassVar[Mapping[str, str]] = {}
    """Endpoint label -> family, for endpoints the vendor limits apart from the account: a 429
    there holds back only that family (see ``connector.core.http.HttpClient``)."""

    authorization: str | None = None
    """A fixed ``Authorization`` header value, for adapters whose credentials never change; set
    from ``settings.auth`` when that is ``StaticCredentials``."""
    tokens: OAuthTokens | None = None
    """OAuth access tokens, for adapters that fetch and renew them (see ``use_oauth``)."""
    credentials: CredentialStore | None = None
    """Where rotated credentials outlive the process; the engine binds its database."""

    def __init__(self, settings: AdapterSettings, *, observer: CallObserver | None = None) -> None:
        if not isinstance(settings, self.settings_model):
            raise TypeError(f"{type(self).__name__} needs {self.settings_model.__name__}")
        self.settings = settings
        self._observer = observer
        register_secret(secret_value(settings.webhook_secret))
        auth = getattr(settings, "auth", None)
        if isinstance(auth, StaticCredentials):
            self.authorization = auth.authorization()
        self.http = self.make_http(observer)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def log(self) -> logging.Logger:
        """The adapter module's logger, for what the base does on the adapter's behalf."""
        return logging.getLogger(type(self).__module__)

    def read_account(
        self, path: str, endpoint: str, params: Mapping[str, Any] | None = None
    ) -> Account:
        """The account's own record, the cheapest authenticated read. An answer without the
        account's id proves nothing about the credentials, so it fails the check."""
        resp = self.http.request("GET", path, endpoint=endpoint, params=params)
        record = json_object(resp.data, endpoint)
        account_id = numeric_id(record.get("id"))
        if account_id is None:
            raise MalformedResponse(f"{self.name} {endpoint}: no id in the account's record",
                                    status=resp.status, endpoint=endpoint)
        return Account(record, account_id, resp.status)

    def answered_id(
        self, resp: Response, endpoint: str, number: str, what: str, key: str = "id"
    ) -> str:
        """The id of the ``what`` (note, draft) a write on ticket ``number`` made, under ``key``.

        Without it the post exists but cannot be named, so this raises rather than invent an
        id: the engine's retry then finds the post by its marker instead of posting twice.
        """
        found = numeric_id(as_dict(resp.data).get(key))
        if found is None:
            raise MalformedResponse(
                f"{self.name} {endpoint}: no id in the answer on ticket {number} (expected "
                f"the {what} id in {key!r})",
                status=resp.status, endpoint=endpoint,
            )
        return found

    def read_entries(
        self, items: Iterable[Any], what: str, build: EntryReader, *, time_key: str = "created_at",
        read_id: Callable[[Any], str | None] = numeric_id,
        read_time: Callable[[Any], datetime | None] = parse_time,
    ) -> list[Message]:
        """The messages ``build`` makes of a conversation's entries, in the vendor's order.

        ``build`` gets each entry as a dict with its ``id`` and creation time, and may return
        None for an entry that is no message. An entry without id or time is skipped, and
        logged by ``what`` ("a thread of conversation 5"), never by its content: one unusable
        entry must not hide the rest of the conversation. ``read_id``/``read_time`` read the
        vendor's id and time forms (numeric ids and ISO times unless told otherwise).
        """
        messages: list[Message] = []
        for item in items:
            entry = as_dict(item)
            entry_id, created_at = read_id(entry.get("id")), read_time(entry.get(time_key))
            if entry_id is None or created_at is None:
                self.log.warning("%s: skipped %s without id or time", self.name, what)
            elif (message := build(entry, entry_id, created_at)) is not None:
                messages.append(message)
        return messages

    def make_http(self, observer: CallObserver | None) -> HttpClient:
        """The client for this helpdesk; override ``api_base``/``auth_headers`` rather than this."""
        return HttpClient(
            self.api_base(),
            name=self.name,
            timeouts=Timeouts(connect=5.0, read=self.settings.timeout),
            retry=RetryPolicy(),
            headers=self.api_headers(),
            auth_headers=self.auth_headers,
            on_auth_failure=self.refresh_credentials,
            retry_after_from=self.wait_hint(),
            observer=observer,
            rate_families=self.rate_families,
        )

    def api_base(self) -> str:
        return self.settings.url

    def api_headers(self) -> dict[str, str]:
        """Headers every API request carries besides authentication: a vendor whose answers
        change with a version header (Intercom) gets the one the adapter was written for."""
        return {}

    def wait_hint(self) -> Callable[[Mapping[str, str]], float | None] | None:
        """How a 429 without ``Retry-After`` says how long to wait: by default the seconds in
        ``retry_after_header``; a vendor that sends a reset time instead overrides this."""
        return header_retry_after(self.retry_after_header) if self.retry_after_header else None

    def use_oauth(self, grant: OAuthGrant, vendor: str, token_url: str | None = None) -> None:
        """Authenticate with OAuth access tokens from ``grant`` at ``token_url`` (default:
        ``settings.url``; some vendors hand out tokens on another host than their API). They
        are fetched by a client of their own: the API client asks for auth headers on every
        attempt and would otherwise ask itself for a token while fetching one."""
        http = HttpClient(
            token_url or self.settings.url, name=self.name,
            timeouts=Timeouts(connect=5.0, read=self.settings.timeout), retry=RetryPolicy(),
            retry_after_from=self.wait_hint(), observer=self._observer,
        )
        self.tokens = OAuthTokens(grant, http, vendor=vendor,
                                  key_path=f"{self.settings.key_path}.auth",
                                  store=self.credentials)

    def size_pool(self, connections: int) -> None:
        """Keep as many connections to the helpdesk as the engine has workers: with fewer, the
        calls beyond the pool's size close their connection after use, and each next call
        opens (and against a real helpdesk, handshakes) a new one."""
        self.http.resize_pool(connections)

    def bind_credentials(self, store: CredentialStore) -> None:
        """The engine's store for credentials that must survive a restart (rotated tokens)."""
        self.credentials = store
        if self.tokens is not None:
            self.tokens.bind(store)

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate one request; called before every attempt."""
        if self.tokens is not None:
            return self.tokens.header()
        return {"Authorization": self.authorization} if self.authorization else {}

    def refresh_credentials(self, rejected: Mapping[str, str]) -> bool:
        """Called once on a 401 with the refused headers; True if new credentials are worth one
        more try."""
        return self.tokens.renew(rejected) if self.tokens is not None else False

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
            if carries_marker(message, marker):
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

    def webhook_challenge(self, headers: Mapping[str, str]) -> dict[str, str] | None:
        """The answer to a signed setup request by which a vendor proves the URL before it saves
        the webhook (Front); None for an ordinary delivery, and for vendors without one."""
        return None

    def webhook_delivery_id(self, headers: Mapping[str, str]) -> str | None:
        """The vendor's id of this delivery, the same on its retries; None when it sends none."""
        return None

    def webhook_ticket_ids(self, headers: Mapping[str, str], body: bytes) -> list[str]:
        """Ticket ids a verified payload names ([] for events not about a ticket).

        Payloads are partial or user-shaped, so only the id is taken; the engine re-reads the
        rest. Raises ``adapters.signatures.WebhookPayloadError`` when the body names no ticket.
        """
        raise NotImplementedError(f"{self.type_name} adapters do not parse webhooks")

    def close(self) -> None:
        if self.tokens is not None:
            self.tokens.close()
        self.http.close()


def contains_marker(text: str, marker: str) -> bool:
    """Whether ``text`` holds ``marker`` as a whole: ``ref turn-12`` is not in ``ref turn-120``."""
    return re.search(re.escape(marker) + r"(?![A-Za-z0-9_.:-])", text) is not None


def carries_marker(message: Message, marker: str) -> bool:
    """Whether ``message`` is our post with ``marker``. A customer's message never is, even
    when it quotes or pastes our marker: taking it for ours would drop the draft it needs."""
    return message.role != Role.CUSTOMER and contains_marker(message.body, marker)


def secret_value(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty dict: vendors omit or null sections."""
    return value if isinstance(value, dict) else {}
