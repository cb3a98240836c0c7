"""Freshdesk adapter; its simulator lives in ``adapters.freshdesk.simulator``."""

from adapters.freshdesk.adapter import FreshdeskAdapter, FreshdeskSettings

__all__ = ["FreshdeskAdapter", "FreshdeskSettings"]
