"""Secrets the daemon keeps in its own database, read and replaced atomically.

Two kinds live here: a key the installation makes for itself once (``installation_key``, which
salts per-user session ids so they cannot be reversed with a list of addresses), and credentials
a vendor hands back at run time that must survive a restart (a rotated OAuth refresh token).
``replace`` is a compare-and-set, so two instances renewing the same token at once cannot both
believe they won: the loser reads the winner's value and uses it.
"""

from __future__ import annotations

import secrets as _random

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from connector.store.db import session_scope
from connector.store.models import StoredSecret, utcnow

INSTALLATION_KEY = "installation_key"


def read(engine: Engine, name: str) -> str | None:
    """The stored value, or None when nothing is stored under ``name``."""
    with engine.connect() as connection:
        return connection.execute(
            select(StoredSecret.value).where(StoredSecret.name == name)  # type: ignore[arg-type]
        ).scalar_one_or_none()


def replace(engine: Engine, name: str, new: str, expected: str | None) -> bool:
    """Store ``new`` if the stored value is still ``expected`` (None: nothing stored yet).

    Returns False when another writer got there first; the caller then reads and uses theirs.
    """
    table = StoredSecret.__table__  # type: ignore[attr-defined]
    with session_scope(engine) as db:
        if expected is None:
            try:
                with db.begin_nested():
                    db.execute(insert(table).values(name=name, value=new, updated_at=utcnow()))
            except IntegrityError:
                return False
            return True
        result = db.execute(update(table).where(table.c.name == name, table.c.value == expected)
                            .values(value=new, updated_at=utcnow()))
        return result.rowcount == 1  # type: ignore[attr-defined]


def installation_key(engine: Engine) -> str:
    """This installation's random key, made on first use and the same for every instance."""
    current = read(engine, INSTALLATION_KEY)
    if current is not None:
        return current
    replace(engine, INSTALLATION_KEY, _random.token_hex(32), None)
    stored = read(engine, INSTALLATION_KEY)
    assert stored is not None
    return stored
