"""Temporal activities: thin, idempotent wrappers keyed by order id around each service."""
