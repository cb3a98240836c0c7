"""The Intercom simulator, a small package: the HTTP side (``server``), the workspace's state
(``workspace``) and the search's query language (``search``)."""

from adapters.intercom.simulator.server import IntercomSimulator

__all__ = ["IntercomSimulator"]
