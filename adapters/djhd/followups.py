"""What a django-helpdesk follow-up means for us: who wrote it, and our text made safe to post.

Kept apart from the adapter's HTTP and paging; the facts come from django-helpdesk 2.6.1's
``update_ticket.py``, ``email.py`` and ``forms.py`` (docs/adapters/django_helpdesk.md).
"""

from __future__ import annotations

import re
from typing import Any

from adapters.base import Role
from adapters.djhd.feed import followup_id
from connector.core.errors import MalformedResponse

# django-helpdesk renders every follow-up comment as a Django template (``update_ticket``), and
# turns ``#<number>`` into a back-link note on that ticket; a zero-width space defuses both.
_TEMPLATE_SYNTAX = re.compile(r"([{%#])(?=[{%#}])|([}%#])(?=})")
_TICKET_REF = re.compile(r"#(?=\d)")
ZWSP = "\u200b"
# Markup in a comment: typed into the public form, which stores it as is (django-helpdesk shows
# comments as Markdown, which lets HTML through).
HTML = re.compile(r"<(?:p|div|br|span|b|i|ul|ol|li|a|table|blockquote|strong|em|html|body)"
                  r"\b[^>]*>", re.IGNORECASE)


def author_role(item: dict[str, Any], comment: str, ticket: dict[str, Any], opening: bool) -> Role:
    """Who wrote a follow-up, from what django-helpdesk records.

    - no text (status changes, hold, back-links, assignments): system;
    - a ``message_id``: it came in by e-mail, which only the e-mail intake records (customer);
    - the opening follow-up with the ticket's description: the customer's question, whoever
      typed it (the public form stores a logged-in customer as its ``user``);
    - any other follow-up with a ``user``: staff (``update_ticket`` keeps the user only when it
      is staff);
    - the rest (escalation, the submitter's "accepted resolution" close): system.
    """
    if not comment.strip():
        return Role.SYSTEM
    if item.get("message_id"):
        return Role.CUSTOMER
    description = ticket.get("description")
    if opening and item.get("public") is True and item.get("new_status") is None \
            and isinstance(description, str) and description.strip() == comment.strip():
        return Role.CUSTOMER
    if item.get("user") is not None:
        return Role.AGENT
    return Role.SYSTEM


def followups(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The ticket's follow-ups in the order they were written (date, then id)."""
    items = data.get("followup_set")
    if not isinstance(items, list):
        raise MalformedResponse("ticket: no followup_set list", endpoint="ticket")
    found = [item for item in items if isinstance(item, dict)]
    return sorted(found, key=lambda i: (str(i.get("date") or ""), followup_id(i) or 0))


def defuse(text: str) -> str:
    """``text`` as django-helpdesk will store it unchanged: a zero-width space breaks template
    tags (``{{``, ``{%``, ``{#`` and their ends), which ``update_ticket`` would render, and
    ``#<digits>``, which would add a back-link note to that ticket."""
    text = _TEMPLATE_SYNTAX.sub(lambda m: (m.group(1) or m.group(2)) + ZWSP, text)
    return _TICKET_REF.sub("#" + ZWSP, text)
