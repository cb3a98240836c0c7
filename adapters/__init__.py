"""Helpdesk adapters; each one is registered under the ``connector.adapters`` entry-point group."""
