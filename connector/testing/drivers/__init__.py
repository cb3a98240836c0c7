"""Conformance drivers for the bundled helpdesk simulators, one module per adapter type."""
