"""The bottom layer: errors, HTTP, redaction, durations and logging. Imports nothing else of ours,
so every other layer may use it."""
