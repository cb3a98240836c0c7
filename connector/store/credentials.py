"""The engine's side of ``adapters.auth.CredentialStore``: credentials kept in the database.

Adapters must not import the store, so the engine wraps ``connector.store.secrets`` in this
small object and hands it to every adapter; a rotated OAuth refresh token then survives a restart
and is shared by every instance on the same database.
"""

from __future__ import annotations

from sqlalchemy import Engine

from connector.store import secrets


class DatabaseCredentials:
    """``read``/``replace`` (compare-and-set) on the ``stored_secret`` table."""

    def __init__(self, db: Engine) -> None:
        self._db = db

    def read(self, name: str) -> str | None:
        return secrets.read(self._db, name)

    def replace(self, name: str, new: str, expected: str | None) -> bool:
        return secrets.replace(self._db, name, new, expected)
