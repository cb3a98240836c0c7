"""Intercom adapter; its simulator lives in ``adapters.intercom.simulator``."""

from adapters.intercom.adapter import IntercomAdapter
from adapters.intercom.settings import IntercomSettings

__all__ = ["IntercomAdapter", "IntercomSettings"]
