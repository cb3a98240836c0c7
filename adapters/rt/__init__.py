"""Request Tracker 5 adapter (REST2); no simulator: tests run a real RT (scripts/rt_server.py)."""

from adapters.rt.adapter import RTAdapter, RTSettings

__all__ = ["RTAdapter", "RTSettings"]
