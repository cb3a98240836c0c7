"""The tables that make the daemon crash-safe: every unit of work is a row with a state.

Times are timezone-aware UTC everywhere; SQLModel stores them as UTC and returns them aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Column, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from connector.core.errors import InvalidTransition


def utcnow() -> datetime:
    return datetime.now(UTC)


class TurnState(StrEnum):
    QUEUED = "queued"  # waiting to be asked
    SUBMITTED = "submitted"  # asked asynchronously; polling for the answer
    ANSWERED = "answered"  # answer (or fallback) ready to post
    POSTING = "posting"  # post started; on retry, look for our marker first
    POSTED = "posted"
    SHADOWED = "shadowed"  # shadow mode: answer stored, nothing posted
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_TURN_STATES = (
    TurnState.QUEUED, TurnState.SUBMITTED, TurnState.ANSWERED, TurnState.POSTING,
)

_T = TurnState
TURN_TRANSITIONS: dict[TurnState, frozenset[TurnState]] = {
    # asked (async), answered at once (sync; posting in the same write), failed or cancelled
    _T.QUEUED: frozenset({_T.SUBMITTED, _T.ANSWERED, _T.POSTING, _T.FAILED, _T.CANCELLED}),
    # answered (posting in the same write), no answer (fallback: answered), forgotten by Uppzy
    _T.SUBMITTED: frozenset({_T.ANSWERED, _T.POSTING, _T.QUEUED, _T.FAILED, _T.CANCELLED}),
    _T.ANSWERED: frozenset({_T.POSTING, _T.SHADOWED, _T.CANCELLED}),
    _T.POSTING: frozenset({_T.POSTED, _T.CANCELLED, _T.FAILED}),
    _T.POSTED: frozenset(), _T.SHADOWED: frozenset(), _T.FAILED: frozenset(),
    _T.CANCELLED: frozenset(),
}
"""Every state change a turn may make; ``check_transition`` holds every write to it."""


class SessionState(StrEnum):
    OPEN = "open"
    CLOSING = "closing"  # resolved (or idle): the close is owed to Uppzy
    CLOSED = "closed"
    FAILED = "failed"  # Uppzy refused the close for good


class FeedbackState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # Uppzy refused it for good (unknown request)


def check_transition(current: str, new: str) -> None:
    if new != current and TurnState(new) not in TURN_TRANSITIONS[TurnState(current)]:
        raise InvalidTransition(f"turn state {current} -> {new} is not allowed")


class AdapterState(SQLModel, table=True):
    """Per adapter: the poll cursor, and why the adapter is paused if it is."""

    __tablename__ = "adapter_state"

    adapter: str = Field(primary_key=True, max_length=64)
    cursor: str | None = Field(default=None, sa_column=Column(Text))
    cursor_moved_at: datetime | None = None
    epoch: datetime | None = None  # messages older than this were history when we started
    last_poll_at: datetime | None = None
    last_poll_ok_at: datetime | None = None
    paused_until: datetime | None = None
    pause_reason: str | None = None
    consecutive_failures: int = 0
    lease_owner: str | None = Field(default=None, max_length=128)  # the instance polling it
    lease_until: datetime | None = None


class TicketRecord(SQLModel, table=True):
    """What we know of a helpdesk ticket; ``needs_sync`` marks it for a conversation re-read.

    The poller sets ``needs_sync`` in the same transaction that advances the cursor, so a crash
    between the two cannot forget a changed ticket.
    """

    __tablename__ = "ticket"
    __table_args__ = (
        UniqueConstraint("adapter", "external_id", name="uq_ticket_adapter_external"),
        Index("ix_ticket_sync", "needs_sync", "sync_after"),
    )

    id: int | None = Field(default=None, primary_key=True)
    adapter: str = Field(max_length=64)
    external_id: str = Field(max_length=128)
    status: str = Field(default="", max_length=64)
    resolved: bool = False
    requester_key: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=64)
    tags: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    remote_updated_at: datetime | None = None
    needs_sync: bool = True
    change_seq: int = 0  # bumped by every poll that saw a change; a sync covers one value
    sync_after: datetime = Field(default_factory=utcnow)
    sync_attempts: int = 0
    sync_error: str | None = None
    session_seq: int = 1
    # The helpdesk's message count in the latest change-feed report (None: it gave none), and how
    # many messages we know are on the ticket (None: unsure). Equal counts let a report of a
    # ticket that only our own post changed go without a re-read; see ingest._mark_changed.
    reported_messages: int | None = None
    known_messages: int | None = None
    first_seen_at: datetime = Field(default_factory=utcnow)
    synced_at: datetime | None = None

    def tag_set(self) -> set[str]:
        return {t for t in self.tags.split(" ") if t}


class MessageRecord(SQLModel, table=True):
    """Every message seen, so a message is turned into a question at most once."""

    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("adapter", "external_id", name="uq_message_adapter_external"),
        Index("ix_message_ticket", "adapter", "ticket_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    adapter: str = Field(max_length=64)
    ticket_id: str = Field(max_length=128)
    external_id: str = Field(max_length=128)
    role: str = Field(max_length=16)
    public: bool = True
    ours: bool = False
    created_at: datetime
    body: str = Field(default="", sa_column=Column(Text, nullable=False))
    turn_id: int | None = Field(default=None, index=True)


class Turn(SQLModel, table=True):
    """One customer turn: the unit of work of the state machine."""

    __tablename__ = "turn"
    __table_args__ = (
        Index("ix_turn_due", "state", "next_attempt_at"),
        Index("ix_turn_ticket", "adapter", "ticket_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    adapter: str = Field(max_length=64)
    ticket_id: str = Field(max_length=128)
    session_id: str = Field(max_length=160, index=True)
    site_id: str = Field(max_length=128)
    state: TurnState = Field(default=TurnState.QUEUED, sa_type=String(16))
    question: str = Field(default="", sa_column=Column(Text, nullable=False))
    last_message_id: str = Field(max_length=128)
    last_message_at: datetime
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    request_id: str | None = Field(default=None, max_length=128, index=True)
    submitted_at: datetime | None = None
    polls: int = 0
    answer: str | None = Field(default=None, sa_column=Column(Text))
    confidence_level: str | None = Field(default=None, max_length=32)
    confidence_score: float | None = None
    answered_at: datetime | None = None
    outcome: str | None = Field(default=None, max_length=16)  # draft | fallback
    superseded_by: int | None = None
    similarity: float | None = None  # shadow mode: answer vs the agent's actual reply, 0..1
    # A posted draft: what the agent did with it (engine/adoption.py); None while pending.
    adoption: str | None = Field(default=None, max_length=16)
    adoption_score: float | None = None
    adopted_at: datetime | None = None
    agent_reply_at: datetime | None = None  # the reply (or sent draft) it was judged against
    posted_id: str | None = Field(default=None, max_length=128)
    posted_at: datetime | None = None
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    claim_owner: str | None = Field(default=None, max_length=128)
    claim_until: datetime | None = None

    @property
    def marker_ref(self) -> str:
        """The id named in the visible marker; known before posting, so retries can find it."""
        return self.request_id or f"turn-{self.id}"


class ChatSession(SQLModel, table=True):
    """An Uppzy session we opened; closed once when its ticket is resolved."""

    __tablename__ = "chat_session"

    session_id: str = Field(primary_key=True, max_length=160)
    adapter: str = Field(max_length=64, index=True)
    ticket_id: str | None = Field(default=None, max_length=128)
    site_id: str = Field(max_length=128)
    state: SessionState = Field(default=SessionState.OPEN, sa_type=String(16))
    created_at: datetime = Field(default_factory=utcnow)
    last_customer_at: datetime | None = None
    closed_at: datetime | None = None
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    claim_owner: str | None = Field(default=None, max_length=128)  # the instance closing it
    claim_until: datetime | None = None


class Feedback(SQLModel, table=True):
    """Answer-quality feedback owed to Uppzy; unique per request so it is sent once."""

    __tablename__ = "feedback"

    id: int | None = Field(default=None, primary_key=True)
    adapter: str = Field(max_length=64)
    ticket_id: str = Field(max_length=128)
    session_id: str = Field(max_length=160)
    site_id: str = Field(max_length=128)
    request_id: str = Field(max_length=128, unique=True)
    value: str = Field(max_length=8)
    source: str = Field(default="tag", max_length=8)  # tag (an agent's) | implicit (adoption)
    state: FeedbackState = Field(default=FeedbackState.PENDING, sa_type=String(16))
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    reason: str | None = Field(default=None, sa_column=Column(Text))
    claim_owner: str | None = Field(default=None, max_length=128)  # the instance sending it
    claim_until: datetime | None = None


class StoredSecret(SQLModel, table=True):
    """A secret the daemon made or was handed at run time and must keep across restarts: the
    installation key that salts per-user session ids, rotated OAuth refresh tokens. Never shown
    by ``status``, never logged."""

    __tablename__ = "stored_secret"

    name: str = Field(primary_key=True, max_length=160)
    value: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class BackfillOutcome(StrEnum):
    QUEUED = "queued"  # a turn exists; the run follows it until it ends
    DRAFTED = "drafted"  # its turn was posted
    NOT_DRAFTED = "not_drafted"  # its turn ended otherwise (cancelled, failed); reason kept
    SKIPPED = "skipped"  # not waiting for us when read; re-read only if the ticket changed since
    ERROR = "error"  # could not be read; retried by the next run


class BackfillItem(SQLModel, table=True):
    """What backfill decided for one ticket, so a rerun skips what is done and resumes the rest.

    Unique per adapter and ticket: a ticket is queued by backfill at most once, whatever window
    later runs ask for; after that, new customer messages are the live poller's.
    """

    __tablename__ = "backfill_item"
    __table_args__ = (
        UniqueConstraint("adapter", "ticket_id", name="uq_backfill_adapter_ticket"),
    )

    id: int | None = Field(default=None, primary_key=True)
    adapter: str = Field(max_length=64)
    ticket_id: str = Field(max_length=128)
    since: datetime
    until: datetime | None = None
    outcome: str = Field(max_length=16)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    turn_id: int | None = None
    ticket_updated_at: datetime | None = None  # the ticket's version the decision was made on
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
