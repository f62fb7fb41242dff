"""Keeping secrets out of logs, payloads and history."""
