"""Benchmarks: each prints a table, measured side by side with its baseline in the same run."""
