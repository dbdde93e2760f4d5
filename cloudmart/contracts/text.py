"""Constrained text types shared by the request models.

Free text is NFC-normalised and stripped; control characters and lone surrogates are refused,
because they corrupt logs and cannot be stored in UTF-8 columns or Temporal payloads; and so are
bidirectional controls and invisible characters, which make a name or an address read otherwise
than it is (a right-to-left override reverses what follows; a zero-width space hides in a
"same" name).
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, StringConstraints

_FORBIDDEN_CATEGORIES = {"Cc", "Cs"}
_INVISIBLE = frozenset(
    "\u061c\u200e\u200f"  # Arabic letter mark, left-to-right and right-to-left marks
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings and overrides
    "\u2066\u2067\u2068\u2069"  # isolates
    "\u200b\u200c\u200d\u2060\ufeff"  # zero-width space, non-joiner, joiner; word joiner; BOM
)


def _clean(value: str) -> str:
    value = unicodedata.normalize("NFC", value)
    if any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in value):
        raise ValueError("must not contain control characters")
    if invisible := next((ch for ch in value if ch in _INVISIBLE), None):
        raise ValueError(
            f"must not contain bidirectional controls or invisible characters "
            f"(found U+{ord(invisible):04X})"
        )
    return value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _printable(max_length: int, min_length: int = 1) -> tuple[object, ...]:
    return (
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        AfterValidator(_clean),
    )


PersonName = Annotated[str, *_printable(200)]
AddressLine = Annotated[str, *_printable(200)]
City = Annotated[str, *_printable(100)]
PostalCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]{1,11}$")]
Reason = Annotated[str, *_printable(500)]
Comment = Annotated[str, *_printable(500)]
"""A customer's short remark (a product rating's): the same checks as every free text."""

CustomerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")]
"""Letters, digits and ``_ . : @ -``: safe to embed in a Temporal visibility query."""

Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]

CountryCode = Annotated[str, BeforeValidator(_upper), StringConstraints(pattern=r"^[A-Z]{2}$")]
"""ISO 3166-1 alpha-2 format; whether it is delivered to is shipping's business rule."""

PaymentToken = Annotated[str, StringConstraints(pattern=r"^tok_[a-z0-9_]{1,60}$")]

OrderId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")]
