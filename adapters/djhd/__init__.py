"""django-helpdesk adapter (REST API); no simulator: tests run a real django-helpdesk
(scripts/djhd_server.py)."""

from adapters.djhd.adapter import DjhdAdapter, DjhdSettings

__all__ = ["DjhdAdapter", "DjhdSettings"]
