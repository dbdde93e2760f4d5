"""Loyalty: a choreographed reaction to order events (no orchestrator) with its own database."""
