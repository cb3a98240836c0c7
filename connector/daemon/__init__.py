"""The running daemon around the engine: scheduler, ops server, metrics, notifications and the
webhook route."""
