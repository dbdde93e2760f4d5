"""Sealing a customer's personal data with a key of their own (crypto-shredding).

Every event of a customer carries their ``Profile`` (name, e-mail, address) as ``personal``:
AES-256-GCM under the customer's key, a random 12-byte nonce, and the customer id as associated
data, so a sealed profile moved into another customer's event does not open. The keys live in
the customers database (``customer_keys``), never in the event store; destroying a customer's
key leaves every event of theirs in place, unreadable: ``open`` then answers None.

A sealed profile is ``v1.`` and the base64url of nonce and ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, delete, event, select
from sqlmodel import Session

from cloudmart.contracts.customers import Profile
from services.customers.models import CustomerKey
from services.database import insert_if_absent, read_only, transaction

KEY_BYTES = 32
NONCE_BYTES = 12
PREFIX = "v1."


class SealingError(ValueError):
    """A sealed profile that is malformed or does not open under the customer's key (tampered,
    or another customer's): never a profile, and never silently None (None means erased)."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def seal_with(key: bytes, customer_id: str, profile: Profile) -> str:
    nonce = os.urandom(NONCE_BYTES)
    plain = profile.model_dump_json().encode()
    sealed = AESGCM(key).encrypt(nonce, plain, customer_id.encode())
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def open_with(key: bytes, customer_id: str, sealed: str) -> Profile:
    if not sealed.startswith(PREFIX):
        raise SealingError(f"customer {customer_id}: not a sealed profile")
    try:
        raw = base64.urlsafe_b64decode(sealed.removeprefix(PREFIX).encode())
        plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], customer_id.encode())
    except (binascii.Error, ValueError, InvalidTag):
        raise SealingError(f"customer {customer_id}: the sealed profile does not open") from None
    return Profile.model_validate_json(plain)


class ProfileSealing:
    """Seals and opens customers' profiles with the keys in the customers database.

    Keys are read from the database on every call, never cached: once ``destroy`` has
    committed, no process of ours opens that customer's profile again."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reads = read_only(engine)
        if engine.dialect.name == "sqlite":
            # A deleted key's bytes are overwritten, not left in a free page of the file.
            event.listen(engine, "connect", _secure_delete)

    def create_key(self, session: Session, customer_id: str) -> bool:
        """Give the customer a key in the caller's transaction (with their row); False if they
        already have one."""
        return bool(
            insert_if_absent(session, CustomerKey, [{"customer_id": customer_id, "key": new_key()}])
        )

    def seal(self, customer_id: str, profile: Profile, *, session: Session | None = None) -> str:
        key = self._key(customer_id, session)
        if key is None:
            raise SealingError(f"customer {customer_id} has no key: erased, or never registered")
        return seal_with(key, customer_id, profile)

    def open(
        self, customer_id: str, sealed: str, *, session: Session | None = None
    ) -> Profile | None:
        """The profile; None once the customer's key is destroyed (erased)."""
        key = self._key(customer_id, session)
        return None if key is None else open_with(key, customer_id, sealed)

    def opener(
        self, customer_id: str, *, session: Session | None = None
    ) -> Callable[[str], Profile | None]:
        """``open`` for many of the customer's events, their key read once (None: erased)."""
        key = self._key(customer_id, session)
        return lambda sealed: None if key is None else open_with(key, customer_id, sealed)

    def destroy(self, customer_id: str, *, session: Session | None = None) -> bool:
        """Destroy the customer's key: every profile sealed with it is unreadable from now on.
        Returns whether there was one."""
        if session is not None:
            return _delete_key(session, customer_id)
        with transaction(self.engine) as own:
            destroyed = _delete_key(own, customer_id)
        self.forget_freed_pages()
        return destroyed

    def forget_freed_pages(self) -> None:
        """SQLite: move the write-ahead log (which still holds the key's page as it was) into
        the database file and empty it. PostgreSQL keeps a deleted row's bytes until VACUUM
        reclaims them (docs/customers.md)."""
        if self.engine.dialect.name != "sqlite":
            return
        connection = self.engine.raw_connection()  # no BEGIN: a checkpoint runs outside one
        try:
            cursor = connection.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.close()
        finally:
            connection.close()

    def _key(self, customer_id: str, session: Session | None) -> bytes | None:
        statement = select(CustomerKey.key).where(CustomerKey.customer_id == customer_id)
        if session is not None:
            return session.scalar(statement)
        with self._reads.connect() as connection:
            return connection.scalar(statement)


def _delete_key(session: Session, customer_id: str) -> bool:
    result = session.execute(delete(CustomerKey).where(CustomerKey.customer_id == customer_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _secure_delete(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
