"""Helpdesk ↔ Uppzy connector: drafts answers to customer messages for human agents."""

__version__ = "0.1.0"
