"""The conformance scenarios; ``tests/conformance`` runs them through
``connector.testing.conformance``.
"""
