"""The turn state machine and everything around it: ingest, chat, drafts, sessions, feedback."""
