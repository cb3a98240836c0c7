"""Zendesk Support adapter; its simulator lives in ``adapters.zendesk.simulator``."""

from adapters.zendesk.adapter import ZendeskAdapter, ZendeskSettings

__all__ = ["ZendeskAdapter", "ZendeskSettings"]
