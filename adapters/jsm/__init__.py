"""Jira Service Management Cloud adapter; its simulator lives in ``adapters.jsm.simulator``."""

from adapters.jsm.adapter import JsmAdapter
from adapters.jsm.settings import JsmSettings

__all__ = ["JsmAdapter", "JsmSettings"]
