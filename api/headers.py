"""Request headers more than one route reads."""

from __future__ import annotations

from typing import Any

from fastapi import Header

PRINTABLE = r"^[\x21-\x7e]+$"
"""Printable ASCII, no spaces: what a header value may carry unquoted."""


def idempotency_key(description: str, min_length: int = 1) -> Any:
    """The ``Idempotency-Key`` header: a retry with the same key answers what the first
    request made (docs/api.md#idempotency-keys)."""
    return Header(
        alias="Idempotency-Key",
        min_length=min_length,
        max_length=255,
        pattern=PRINTABLE,
        description=description,
    )
