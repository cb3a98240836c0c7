"""Persistent state: tables, engine set-up, migrations."""
