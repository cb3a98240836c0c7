"""An in-memory Help Scout (Inbox API 2.0) over real HTTP, for tests and ``connector sandbox``.

It follows the documented paths, HAL shapes and field names of the endpoints the adapter uses,
and the behaviours that break naive clients:

- OAuth2 client credentials at ``/v2/oauth2/token``; tokens expire (``token_lifetime``) and can
  be revoked (``expire_tokens``), after which the API answers 401.
- The conversation list shows only ``active`` conversations unless ``status=all``; it pages by
  number with a fixed page size, leaves ``_embedded`` out of an empty page, and, like Help
  Scout's search index, may see a change only ``index_lag`` seconds after it happened.
- A reply created without ``status`` reactivates the conversation, draft or not.
- Threads come newest first; v2 reports AI (``system_user``) authors as ``user``, v3 as they are.
- A merged conversation answers 301 with ``Location``, its threads 404, and leaves the list; a
  deleted one answers 404 but stays in the list with ``state: deleted`` (it can be restored).
- Every API answer carries ``X-RateLimit-Limit-Minute``/``X-RateLimit-Remaining-Minute``; over
  the limit the answer is 429 with ``X-RateLimit-Retry-After`` (and no ``Retry-After``). Writes
  count twice. Writes also have a burst limit of 12 per 5 seconds (``write_burst``).
- List answers link their pages with absolute ``_links`` on Help Scout's own host
  (``link_base``); without a ``next`` link the list has ended. ``v3_page_info=False`` leaves the
  ``page`` block out of v3 thread lists, so only the links tell that more pages exist.

Documents followed (addresses and what each says: docs/adapters/helpscout.md):
developer.helpscout.com/mailbox-api/ (overview/authentication, overview/pagination,
overview/rate-limiting, endpoints/conversations/list, endpoints/conversations/threads/list-v3,
endpoints/conversations/threads/reply), developer.helpscout.com/webhooks/, and for the write
burst limit the deprecated developer.helpscout.com/help-desk-api/ (API 1.0).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from collections import deque
from typing import Any, ClassVar

from adapters.helpscout.simulator.auth import HelpScoutAuth
from adapters.helpscout.simulator.conversations import HelpScoutConversations
from adapters.helpscout.simulator.limits import HelpScoutLimits
from adapters.helpscout.simulator.listing import HelpScoutListing
from adapters.helpscout.simulator.records import WRITE_BURST, _Conversation, _Person
from adapters.helpscout.simulator.serialize import HelpScoutJson
from adapters.helpscout.simulator.threads import HelpScoutThreadRoutes
from adapters.signatures import post_webhook
from adapters.simulation import Simulator

__all__ = ["HelpScoutSimulator"]


class HelpScoutSimulator(
    HelpScoutAuth,
    HelpScoutLimits,
    HelpScoutConversations,
    HelpScoutListing,
    HelpScoutThreadRoutes,
    HelpScoutJson,
    Simulator,
):
    """Help Scout's Inbox API 2.0, the subset the adapter uses, with the state tests inspect.

    ``rate_limit``: weighted requests per minute before 429 (None: unlimited).
    ``page_size``: conversations per list page (Help Scout: 25).
    ``token_lifetime``: seconds an access token lives (Help Scout: 172800, two days).
    ``index_lag``: seconds before a change reaches the conversation list (0: at once).
    ``write_burst``: (writes, seconds) allowed before a write is refused with 429 (None: none).
    ``link_base``: the host in ``_links`` hrefs (default: this simulator's own address).
    ``v3_page_info``: False leaves the ``page`` block out of v3 thread lists.
    An app (``app_id``/``app_secret``) owned by the bot user exists from the start, as do a
    mailbox, the account owner and the bot.
    """

    service = "helpscout"
    routes: ClassVar[list[tuple[str, str, str]]] = [
        ("POST", "/v2/oauth2/token", "oauth_token"),
        ("GET", "/v2/users/me", "users_me"),
        ("GET", "/v2/mailboxes", "mailboxes"),
        ("GET", "/v2/conversations", "conversations_list"),
        ("GET", "/v2/conversations/<int:conversation_id>", "conversation_show"),
        ("GET", "/v2/conversations/<int:conversation_id>/threads", "threads_v2"),
        ("GET", "/v3/conversations/<int:conversation_id>/threads", "threads_v3"),
        ("POST", "/v2/conversations/<int:conversation_id>/reply", "reply_create"),
        ("POST", "/v2/conversations/<int:conversation_id>/notes", "note_create"),
    ]

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        rate_limit: int | None = None,
        page_size: int = 25,
        token_lifetime: float = 172_800.0,
        index_lag: float = 0.0,
        write_burst: tuple[int, float] | None = WRITE_BURST,
        link_base: str | None = None,
        v3_page_info: bool = True,
        app_id: str = "hs-app-id",
        app_secret: str = "hs-app-secret",
    ) -> None:
        super().__init__(port, host)
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.rate_limit = rate_limit
        self.page_size = page_size
        self.token_lifetime = token_lifetime
        self.index_lag = index_lag
        self.write_burst = write_burst
        self.link_base = link_base
        self.v3_page_info = v3_page_info
        self._writes: deque[float] = deque()
        self._ids = itertools.count(1001)
        self._numbers = itertools.count(101)
        self._last_stamp = 0
        self._window: deque[tuple[float, int]] = deque()
        self.people: dict[int, _Person] = {}
        self.mailboxes: dict[int, str] = {}
        self.conversations: dict[int, _Conversation] = {}
        self._tag_ids: dict[str, int] = {}
        self._apps: dict[str, tuple[str, int]] = {}
        self._tokens: dict[str, tuple[int, float]] = {}
        self.issued_tokens: list[str] = []  # every access token handed out, oldest first
        self.default_mailbox_id = self.add_mailbox("Support")
        self.owner_user_id = self.add_user("Olivia", "Owner", email="owner@example.com",
                                           role="owner")
        self.bot_user_id = self.add_user("Uppzy", "Bot", email="bot@example.com", role="admin")
        self.app_id, self.app_secret = app_id, app_secret
        self.add_app(app_id, app_secret, self.bot_user_id)

    def send_webhook(
        self, url: str, secret: str, conversation_id: int, *,
        event: str = "convo.customer.reply.created",
    ) -> int:
        """Deliver ``event`` for a conversation to ``url`` as Help Scout does: the v2
        Conversation object, signed with base64 HMAC-SHA1 of the body. Returns the status."""
        body = json.dumps(self.conversation_json(conversation_id)).encode()
        digest = hmac.new(secret.encode(), body, hashlib.sha1).digest()
        return post_webhook(url, body, {
            "X-HelpScout-Event": event,
            "X-HelpScout-Signature": base64.b64encode(digest).decode(),
        })

    def adapter_config(self) -> dict[str, Any]:
        return {"url": self.url, "auth": {"app_id": self.app_id, "app_secret": self.app_secret}}

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "mailboxes": [{"id": k, "name": v} for k, v in self.mailboxes.items()],
                "conversations": [
                    {"id": c.id, "number": c.number, "status": c.status,
                     "threads": len(c.threads), "deleted": c.deleted,
                     "merged_into": c.merged_into}
                    for c in self.conversations.values()
                ],
                "bot_posts": self.posts_by(self.bot_user_id),
            }
