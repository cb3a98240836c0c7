"""The conversations' state and the Python API that tests and the sandbox change it with."""

from __future__ import annotations

import time
from typing import Any

from adapters.helpscout.simulator.records import (
    STATUSES,
    _Conversation,
    _iso,
    _paragraphs,
    _Person,
    _Thread,
)


class HelpScoutConversations:
    """Mailboxes, conversations and threads as customers, agents and workflows change them;
    callers of the underscored helpers hold ``self.lock``."""

    def add_mailbox(self, name: str) -> int:
        with self.lock:
            mailbox_id = next(self._ids)
            self.mailboxes[mailbox_id] = name
        return mailbox_id

    def create_conversation(
        self,
        customer_id: int,
        body: str,
        *,
        subject: str = "Help needed",
        mailbox_id: int | None = None,
        tags: tuple[str, ...] | list[str] = (),
        html: bool = False,
        kind: str = "email",
    ) -> int:
        """A customer writes in: a new active conversation whose first thread is theirs
        (``kind="chat"``: a chat conversation opened by a chat line)."""
        with self.lock:
            customer = self._person(customer_id, "customer")
            mailbox = mailbox_id if mailbox_id is not None else self.default_mailbox_id
            if mailbox not in self.mailboxes:
                raise KeyError(f"no mailbox {mailbox}")
            stamp = self._stamp()
            conversation = _Conversation(
                next(self._ids), next(self._numbers), mailbox, subject, "active", kind,
                customer_id, customer, _iso(stamp), kind, list(dict.fromkeys(tags)),
            )
            self.conversations[conversation.id] = conversation
            self._add_thread(conversation, "chat" if kind == "chat" else "customer",
                             body if html else _paragraphs(body), customer, source_type=kind)
        return conversation.id

    def add_customer_reply(self, conversation_id: int, body: str, *, html: bool = False) -> int:
        """The customer answers by mail; a pending or closed conversation becomes active."""
        with self.lock:
            conversation = self._live(conversation_id)
            customer = self.people[conversation.customer_id]
            reopen = "active" if conversation.status in ("pending", "closed") else None
            return self._add_thread(conversation, "customer", body if html else _paragraphs(body),
                                    customer, status=reopen, source_type="email").id

    def add_chat(self, conversation_id: int, body: str, *, user_id: int | None = None) -> int:
        """A chat line, by the customer or (with ``user_id``) by a user."""
        with self.lock:
            conversation = self._live(conversation_id)
            author = self.people[user_id if user_id is not None else conversation.customer_id]
            return self._add_thread(conversation, "chat", _paragraphs(body), author,
                                    source_type="chat").id

    def add_reply(
        self, conversation_id: int, user_id: int, body: str, *, draft: bool = False,
        status: str | None = None, via_workflow: bool = False,
    ) -> int:
        """A user's reply (or draft) from the web app; ``status`` as the agent picked it."""
        with self.lock:
            conversation = self._live(conversation_id)
            author = self._person(user_id, "user", "system_user")
            return self._add_thread(
                conversation, "message", _paragraphs(body), author,
                state="draft" if draft else "published", status=status,
                source_type="workflows" if via_workflow else "web",
            ).id

    def add_note(self, conversation_id: int, user_id: int, body: str) -> int:
        with self.lock:
            conversation = self._live(conversation_id)
            author = self._person(user_id, "user", "system_user")
            return self._add_thread(conversation, "note", _paragraphs(body), author).id

    def run_workflow(self, conversation_id: int, name: str, *, reply: str | None = None) -> int:
        """A workflow runs: a line item, and the reply it sends when it has one."""
        with self.lock:
            conversation = self._live(conversation_id)
            owner = self.people[self.owner_user_id]
            thread = self._add_thread(
                conversation, "lineitem", None, owner,
                action={"type": "automatic-workflow", "text": f"Workflow {name} ran",
                        "associatedEntities": {}},
            )
            if reply is not None:
                thread = self._add_thread(conversation, "message", _paragraphs(reply), owner,
                                          source_type="workflows")
            return thread.id

    def set_status(self, conversation_id: int, status: str, *, user_id: int | None = None) -> int:
        """A user changes the status; Help Scout records it as a line item."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        with self.lock:
            conversation = self._live(conversation_id)
            author = self.people[user_id if user_id is not None else self.owner_user_id]
            return self._add_thread(
                conversation, "lineitem", None, author, status=status,
                action={"type": "changed-ticket-status", "text": f"Marked as {status}",
                        "associatedEntities": {}},
            ).id

    def add_tags(self, conversation_id: int, *tags: str) -> None:
        with self.lock:
            conversation = self._live(conversation_id)
            conversation.tags = list(dict.fromkeys([*conversation.tags, *tags]))
            self._touch(conversation)

    def move(self, conversation_id: int, mailbox_id: int) -> None:
        with self.lock:
            conversation = self._live(conversation_id)
            if mailbox_id not in self.mailboxes:
                raise KeyError(f"no mailbox {mailbox_id}")
            conversation.mailbox_id = mailbox_id
            self._touch(conversation)

    def send_draft(self, thread_id: int) -> None:
        """An agent sends a draft: the same thread, now published."""
        with self.lock:
            for conversation in self.conversations.values():
                for thread in conversation.threads:
                    if thread.id == thread_id and thread.state == "draft":
                        thread.state = "published"
                        self._touch(conversation)
                        return
            raise KeyError(f"no draft {thread_id}")

    def delete(self, conversation_id: int) -> None:
        """Move it to the trash: 404 from the API, listed as ``state: deleted``."""
        with self.lock:
            conversation = self._live(conversation_id)
            conversation.deleted = True
            self._touch(conversation)

    def merge(self, conversation_id: int, into_id: int) -> None:
        """Merge one conversation into another: the old id answers 301 from now on."""
        with self.lock:
            source, target = self._live(conversation_id), self._live(into_id)
            target.threads.extend(source.threads)
            target.threads.sort(key=lambda t: (t.created_at, t.id))
            source.merged_into = into_id
            self._touch(target)

    def restrict(self, conversation_id: int) -> None:
        """Put the conversation out of the API user's reach: 403 from now on, gone from lists."""
        with self.lock:
            self._live(conversation_id).restricted = True

    def corrupt(self, conversation_id: int) -> None:
        """Serve the conversation's first thread malformed: no id, a body that is not text."""
        with self.lock:
            conversation = self._live(conversation_id)
            conversation.corrupt = True
            self._touch(conversation)

    def threads(self, conversation_id: int) -> list[dict[str, Any]]:
        """The conversation's threads as v3 serves them, oldest first."""
        with self.lock:
            return [self._thread_json(t, v3=True) for t in self.conversations[conversation_id]
                    .threads]

    def posts_by(self, user_id: int) -> list[dict[str, Any]]:
        """Threads ``user_id`` created over the API (drafts, notes, replies), oldest first."""
        with self.lock:
            return [
                {**self._thread_json(t, v3=True), "conversationId": c.id}
                for c in self.conversations.values() for t in c.threads if t.api_user == user_id
            ]

    def conversation_json(self, conversation_id: int) -> dict[str, Any]:
        """The conversation as the API serves it, e.g. to build a custom answer for a Fault."""
        with self.lock:
            return self._conversation_json(self.conversations[conversation_id])

    def _stamp(self) -> int:
        """Nanoseconds now, strictly increasing, so every change sorts after all earlier ones."""
        self._last_stamp = max(time.time_ns(), self._last_stamp + 1)
        return self._last_stamp

    def _touch(self, conversation: _Conversation) -> int:
        stamp = self._stamp()
        conversation.stamps.append(stamp)
        return stamp

    def _live(self, conversation_id: int) -> _Conversation:
        conversation = self.conversations[conversation_id]
        if conversation.deleted or conversation.merged_into is not None:
            raise KeyError(f"conversation {conversation_id} is gone")
        return conversation

    def _add_thread(
        self, conversation: _Conversation, kind: str, body: str | None, author: _Person, *,
        state: str = "published", status: str | None = None, source_type: str = "web",
        action: dict[str, Any] | None = None, api_user: int | None = None,
    ) -> _Thread:
        stamp = self._touch(conversation)
        changed = status is not None and status != conversation.status
        thread = _Thread(
            next(self._ids), kind, state, status if changed and status else "nochange", body,
            author, conversation.customer_id, _iso(stamp), source_type, action, api_user,
        )
        conversation.threads.append(thread)
        if changed and status:
            conversation.status = status
            closing = status == "closed"
            conversation.closed_at = _iso(stamp) if closing else None
            conversation.closed_by = author.id if closing and author.kind == "user" else 0
        if state == "published" and kind != "lineitem":
            if author.kind == "customer":
                conversation.waiting_since = _iso(stamp)
            else:
                conversation.user_updated_at = _iso(stamp)
        return thread

    def _tag_id(self, tag: str) -> int:
        if tag not in self._tag_ids:
            self._tag_ids[tag] = next(self._ids)
        return self._tag_ids[tag]

    # The play API of ``connector sandbox`` (see Simulator.seed_ticket).
    def seed_ticket(self, customer: str, subject: str, body: str) -> int:
        first, _, last = customer.partition(" ")
        person = self.add_customer(first, last, email=self.play_email(customer))
        return self.create_conversation(person, body, subject=subject)

    def customer_reply(self, ticket_id: int, body: str) -> int:
        return self.add_customer_reply(ticket_id, body)

    def agent_reply(self, ticket_id: int, body: str) -> int:
        return self.add_reply(ticket_id, self.owner_user_id, body)

    def resolve(self, ticket_id: int) -> None:
        self.set_status(ticket_id, "closed")
