"""Temporal workflows. Code here runs in the workflow sandbox: deterministic, no I/O."""
