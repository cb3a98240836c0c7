"""The tickets' state and the Python API that tests and the sandbox change it with."""

from __future__ import annotations

import time
from typing import Any

from adapters.zammad.simulator.records import (
    ARTICLE_TYPES,
    STATE_TYPES,
    SYSTEM_USER_ID,
    _Article,
    _Group,
    _iso,
    _parse_time,
    _State,
    _Ticket,
    _User,
)


class ZammadTickets:
    """Groups, states, tickets and articles as agents, customers and triggers change them;
    callers of the underscored helpers hold ``self.lock``."""

    def add_group(self, name: str, *, shared_drafts: bool = True) -> int:
        with self.lock:
            group_id = next(self._ids)
            self.groups[group_id] = _Group(group_id, name, shared_drafts, _iso(self._stamp()))
        return group_id

    def set_group_shared_drafts(self, group_id: int, allowed: bool) -> None:
        with self.lock:
            self.groups[group_id].shared_drafts = allowed

    def add_state(self, name: str, state_type: str) -> int:
        """A custom state of one of Zammad's state types (e.g. "closed")."""
        type_id = next((k for k, v in STATE_TYPES.items() if v == state_type), None)
        if type_id is None:
            raise ValueError(f"state_type must be one of {sorted(STATE_TYPES.values())}")
        with self.lock:
            state_id = max(self.states) + 1
            self.states[state_id] = _State(state_id, name, type_id, True, _iso(self._stamp()))
        return state_id

    def create_ticket(
        self,
        customer_id: int,
        body: str,
        *,
        title: str = "Help needed",
        group_id: int | None = None,
        channel: str = "email",
        html: bool = False,
    ) -> int:
        """A customer's new ticket; its first article is the customer's message."""
        if channel not in ARTICLE_TYPES:
            raise ValueError(f"channel must be one of {sorted(ARTICLE_TYPES)}")
        with self.lock:
            self._require_user(customer_id)
            ticket_id = next(self._ids)
            ticket = _Ticket(
                ticket_id, str(next(self._numbers)), title, group_id or self.default_group,
                self._state_id("new"), customer_id, channel, customer_id,
                _iso(self._stamp()),
            )
            self.tickets[ticket_id] = ticket
            self._new_article(
                ticket, customer_id, body, sender="Customer", type_=channel, internal=False,
                html=html,
            )
            self._touch(ticket, customer_id)
        return ticket_id

    def add_article(
        self,
        ticket_id: int,
        author_id: int,
        body: str,
        *,
        internal: bool = False,
        type_: str | None = None,
        html: bool = False,
    ) -> int:
        """An article as someone else writes it (agent UI, customer mail, phone note).

        The sender follows the author's role; a customer's follow-up reopens a closed ticket,
        as Zammad's default "follow-up possible" does.
        """
        with self.lock:
            ticket = self._live(ticket_id)
            author = self._require_user(author_id)
            sender = "Customer" if author.roles == ["Customer"] else "Agent"
            article = self._new_article(
                ticket, author_id, body, sender=sender,
                type_=type_ or ("note" if internal else "email"), internal=internal, html=html,
            )
            if sender == "Customer" and self._state_type(ticket) == "closed":
                ticket.state_id = self._state_id("open")
            self._touch(ticket, author_id)
        return article.id

    def add_system_article(self, ticket_id: int, body: str) -> int:
        """A trigger's message (auto-reply): sender System, written by the system user."""
        with self.lock:
            ticket = self._live(ticket_id)
            article = self._new_article(
                ticket, SYSTEM_USER_ID, body, sender="System", type_="email", internal=False,
                html=False,
            )
            self._touch(ticket, SYSTEM_USER_ID)
        return article.id

    def set_state(self, ticket_id: int, state: str | int) -> None:
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.state_id = state if isinstance(state, int) else self._state_id(state)
            if ticket.state_id not in self.states:
                raise KeyError(f"no state {state}")
            self._touch(ticket, SYSTEM_USER_ID)

    def set_group(self, ticket_id: int, group_id: int) -> None:
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.group_id = group_id
            self._touch(ticket, SYSTEM_USER_ID)

    def add_tags(self, ticket_id: int, *tags: str) -> None:
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.tags = list(dict.fromkeys([*ticket.tags, *tags]))
            self._touch(ticket, SYSTEM_USER_ID)

    def merge_ticket(self, source_id: int, target_id: int, agent_id: int) -> None:
        """Merge as Zammad does: the articles move to the target (same ids), the source keeps
        a public note "merged" by the agent and stays readable in state "merged"."""
        with self.lock:
            source, target = self._live(source_id), self._live(target_id)
            if self._state_type(target) == "merged":
                raise ValueError("It is not possible to merge into an already merged ticket.")
            for article in source.articles:
                article.ticket_id = target.id
            target.articles = sorted([*target.articles, *source.articles], key=lambda a: a.id)
            source.articles = []
            self._new_article(source, agent_id, "merged", sender="Agent", type_="note",
                              internal=False, html=False)
            source.state_id = self._state_id("merged")
            self._touch(source, agent_id)
            self._touch(target, agent_id)

    def delete_ticket(self, ticket_id: int) -> None:
        """An admin deletes the ticket: 404 from now on, gone from the index after the lag."""
        with self.lock:
            del self.tickets[ticket_id]
            self._queue_index(ticket_id, None)

    def corrupt_ticket(self, ticket_id: int) -> None:
        """Serve the ticket without ``state_id`` and its articles without ids from now on."""
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.corrupt = True
            self._touch(ticket, SYSTEM_USER_ID)

    def articles(self, ticket_id: int) -> list[dict[str, Any]]:
        """The ticket's articles as the API serves them (to an agent), oldest first."""
        with self.lock:
            return [self._article_json(a) for a in self.tickets[ticket_id].articles]

    def posts_by(self, user_id: int, ticket_id: int | None = None) -> list[dict[str, Any]]:
        """Articles and shared drafts ``user_id`` wrote, oldest first, each with ``kind``
        "article" or "draft"."""
        with self.lock:
            posts: list[dict[str, Any]] = []
            for ticket in self.tickets.values():
                if ticket_id is not None and ticket.id != ticket_id:
                    continue
                posts.extend(
                    {**self._article_json(a), "kind": "article"}
                    for a in ticket.articles if a.created_by_id == user_id
                )
                draft = ticket.draft
                if draft is not None and draft.created_by_id == user_id:
                    posts.append({**self._draft_json(ticket, draft), "kind": "draft"})
            return sorted(posts, key=lambda post: post["created_at"])

    def ticket_json(self, ticket_id: int) -> dict[str, Any]:
        """The ticket as ``expand=true`` serves it, e.g. to build a custom answer for a Fault."""
        with self.lock:
            return self._ticket_json(self.tickets[ticket_id], expand=True)

    def _stamp(self) -> int:
        """Milliseconds now, strictly increasing, so every change sorts after earlier ones."""
        self._last_ms = max(time.time_ns() // 1_000_000, self._last_ms + 1)
        return self._last_ms

    def _touch(self, ticket: _Ticket, user_id: int) -> None:
        ticket.updated_at = _iso(self._stamp())
        ticket.updated_by_id = user_id
        self._queue_index(ticket.id, {
            "id": ticket.id, "number": ticket.number, "title": ticket.title,
            "group_id": ticket.group_id, "state_id": ticket.state_id,
            "customer_id": ticket.customer_id, "updated": _parse_time(ticket.updated_at),
        })

    def _state_id(self, name: str) -> int:
        return next(s.id for s in self.states.values() if s.name == name)

    def _state_type(self, ticket: _Ticket) -> str:
        return STATE_TYPES[self.states[ticket.state_id].state_type_id]

    def _require_user(self, user_id: int) -> _User:
        user = self.users.get(user_id)
        if user is None:
            raise KeyError(f"no user {user_id}")
        return user

    def _live(self, ticket_id: int) -> _Ticket:
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            raise KeyError(f"no ticket {ticket_id}")
        return ticket

    def _new_article(
        self, ticket: _Ticket, author_id: int, body: str, *, sender: str, type_: str,
        internal: bool, html: bool,
    ) -> _Article:
        author = self.users.get(author_id)
        from_ = f"{author.firstname} {author.lastname}".strip() if author else ""
        article = _Article(
            next(self._article_ids), ticket.id, sender, type_, internal, body,
            "text/html" if html else "text/plain", from_, ticket.title, author_id, None,
            _iso(self._stamp()),
        )
        ticket.articles.append(article)
        return article

    # The play API of ``connector sandbox`` (see Simulator.seed_ticket).
    def seed_ticket(self, customer: str, subject: str, body: str) -> int:
        person = self.add_user(customer, "customer", self.play_email(customer))
        return self.create_ticket(person, body, title=subject)

    def customer_reply(self, ticket_id: int, body: str) -> int:
        with self.lock:
            customer = self._live(ticket_id).customer_id
        return self.add_article(ticket_id, customer, body)

    def agent_reply(self, ticket_id: int, body: str) -> int:
        agent = self.play_agent(lambda name, email: self.add_user(name, "agent", email))
        return self.add_article(ticket_id, agent, body)

    def resolve(self, ticket_id: int) -> None:
        self.set_state(ticket_id, "closed")
