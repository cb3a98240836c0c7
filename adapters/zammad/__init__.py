"""Zammad adapter; its simulator lives in ``adapters.zammad.simulator``."""

from adapters.zammad.adapter import ZammadAdapter, ZammadSettings

__all__ = ["ZammadAdapter", "ZammadSettings"]
