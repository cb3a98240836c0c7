"""Front adapter (Core API): the event feed, conversations' messages, shared draft replies."""

from adapters.front.adapter import FrontAdapter
from adapters.front.settings import FrontSettings

__all__ = ["FrontAdapter", "FrontSettings"]
