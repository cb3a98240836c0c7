"""Help Scout adapter; its simulator lives in ``adapters.helpscout.simulator``."""

from adapters.helpscout.adapter import HelpScoutAdapter, HelpScoutAuth, HelpScoutSettings

__all__ = ["HelpScoutAdapter", "HelpScoutAuth", "HelpScoutSettings"]
