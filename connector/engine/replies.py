"""What agents answered: the reply an answer is compared with (adoption, shadow mode).

A ticket's stored messages follow conversation order, so the reply to a turn is the first
public agent message after the turn's question by row id (``store.messages``). During a
conversation read the messages it found are not stored yet; they will be, after every stored
one and in the order read, so the reply is looked for among them in that order too.
"""

from __future__ import annotations

from adapters.base import Role
from connector.engine.adoption import similarity
from connector.store.messages import Awaiting, NewMessage, Reply


def reply_to(waiting: Awaiting, new: list[NewMessage]) -> Reply | None:
    """The first public reply by a human agent after the turn's last customer message, once
    ``new`` messages are stored too."""
    asked = waiting.turn.last_message_id
    after = all(m.external_id != asked for m in new)  # its question is stored, or unknown
    if after and waiting.reply is not None:
        return waiting.reply
    for message in new:
        if after and message.role == Role.AGENT.value and message.public and not message.ours:
            return Reply(message.body, message.created_at)
        after = after or message.external_id == asked
    return None


def similarities(waiting: list[Awaiting], new: list[NewMessage] | None = None) -> dict[int, float]:
    """Shadow answers scored against their agent's reply, for those that have one."""
    scores: dict[int, float] = {}
    for item in waiting:
        reply = reply_to(item, new or [])
        if reply is not None and item.turn.id is not None:
            scores[item.turn.id] = similarity(item.turn.answer or "", reply.body)
    return scores
