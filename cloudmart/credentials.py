"""The dev stack's own secrets: an operator token and a customer-token secret, generated on the
first ``make up`` and kept under the data directory (mode 0600), so that later starts, and
``python -m api.tokens``, use the same ones. A secret set in the environment always wins.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from cloudmart.settings import Settings

OPERATOR_TOKEN_FILE = "operator-token"
AUTH_SECRET_FILE = "auth-secret"


def stored_secret(data_dir: Path, name: str) -> str:
    """The secret kept in ``<data_dir>/<name>``; made (random, readable by the owner only) if
    there is none yet."""
    path = data_dir / name
    existing = read_secret(path)
    if existing:
        return existing
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:
        # O_EXCL with the mode at creation: the secret is never readable by others, not even
        # for a moment, and a concurrent first start cannot overwrite the other's.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_secret(path) or value
    with os.fdopen(fd, "w") as file:
        file.write(value + "\n")
    return value


def read_secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def with_dev_credentials(settings: Settings) -> Settings:
    """``settings`` with the stored operator token and auth secret where none is set."""
    updates: dict[str, SecretStr] = {}
    if settings.operator_token is None:
        updates["operator_token"] = SecretStr(stored_secret(settings.data_dir, OPERATOR_TOKEN_FILE))
    if settings.auth_secret is None:
        updates["auth_secret"] = SecretStr(stored_secret(settings.data_dir, AUTH_SECRET_FILE))
    return settings.model_copy(update=updates)
