"""Finds adapters through the ``connector.adapters`` entry points, built-in ones included.

Built-in adapters are registered in this project's own ``pyproject.toml`` exactly like a
third-party package would register its own, so nothing here lists them by name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points

from adapters.base import Adapter

log = logging.getLogger(__name__)

GROUP = "connector.adapters"


@dataclass(frozen=True)
class InstalledAdapter:
    type_name: str
    cls: type[Adapter] | None
    distribution: str
    version: str
    error: str | None = None


@cache
def installed() -> dict[str, InstalledAdapter]:
    """Every adapter type that is installed, loaded once; a broken plugin is reported, not fatal."""
    found: dict[str, InstalledAdapter] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        try:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Adapter)):
                raise TypeError(f"{ep.value} is not an Adapter subclass")
        except Exception as exc:  # a third-party plugin must not take the daemon down
            log.warning("adapter plugin %r could not be loaded: %s", ep.name, exc)
            found[ep.name] = InstalledAdapter(ep.name, None, dist, version, str(exc))
            continue
        found[ep.name] = InstalledAdapter(ep.name, cls, dist, version)
    return found


def adapter_class(type_name: str) -> type[Adapter]:
    """The adapter class for a YAML ``type``; KeyError names the installed alternatives."""
    entry = installed().get(type_name)
    if entry is None or entry.cls is None:
        known = ", ".join(sorted(k for k, v in installed().items() if v.cls)) or "none"
        reason = f" ({entry.error})" if entry and entry.error else ""
        raise KeyError(f"unknown adapter type {type_name!r}{reason}; installed: {known}")
    return entry.cls
