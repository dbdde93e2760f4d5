"""Encrypted payloads: what Temporal stores of an order (addresses, payment tokens, amounts) is
AES-256-GCM ciphertext, readable only by processes that hold the keys.

Every payload the SDK sends to Temporal (workflow and activity inputs and results, update and
query arguments, failure details, activity summaries) passes through :class:`EncryptionCodec`:
the whole original payload (its metadata and data, serialized) becomes the plaintext, and the
stored payload says only ``encoding: binary/encrypted`` and which key encrypted it.

Decoding trusts nothing unencrypted: a payload that is not ciphertext of a configured key (sent by
a client without the keys, e.g. ``temporal workflow update execute ... --input '{"approved":
true}'``) is never passed through. It decodes to a *refusal*, which fails whatever reads it with
:class:`PayloadDecryptionError` (see :class:`EncryptionCodec` for why decode itself does not raise).

Keys form a ring, newest first: new payloads are encrypted with the newest key, and every key in
the ring still decrypts what it encrypted — so a new key is added in front, and an old one is
dropped only once no history that needs it is kept any more (docs/security.md has the
rotation procedure). ``python -m cloudmart.codec new-key <id>`` prints a new ``id:base64`` entry.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import EncodingPayloadConverter, PayloadCodec

ENCODING = b"binary/encrypted"
REFUSED = b"binary/refused"
"""What :meth:`EncryptionCodec.decode` makes of a payload it cannot decrypt: its data is the
reason, and :class:`RefusedPayloadConverter` raises it where the payload is read."""
KEY_ID = "encryption-key-id"
KEY_BYTES = 32
"""AES-256."""
NONCE_BYTES = 12
"""GCM's standard nonce, random per payload (2^32 payloads per key keep collisions negligible)."""
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_AAD_PREFIX = b"cloudmart-payload-v1:"


SERVER_PAYLOADS = frozenset({(b"json/plain", b'"ACTIVITY_ID_NOT_STARTED"')})
"""The payloads Temporal's server writes itself, which no worker could have encrypted: the
details of an activity cancelled while it waits to retry. Refusing them would fail the workflow
activation that receives the cancellation, forever, wedging the saga (an operator resolving a
stuck compensation, or a customer cancelling while a step backs off). They carry nothing a
client chooses, so they pass through, exactly as they are and nothing else."""


class PayloadKeyError(ValueError):
    """The configured keys cannot be used; the message says which entry and why."""


class PayloadDecryptionError(ValueError):
    """A payload is not ciphertext of a configured key; the message says why, naming the
    payload's key id (never a configured one, never a key)."""


@dataclass(frozen=True)
class PayloadKey:
    id: str
    secret: bytes

    def __repr__(self) -> str:  # never the secret, in a traceback or a log line
        return f"PayloadKey(id={self.id!r})"


def parse_payload_keys(text: str) -> tuple[PayloadKey, ...]:
    """``id:base64key,id:base64key,...``, newest first; empty means no keys."""
    keys: list[PayloadKey] = []
    for position, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        key_id, colon, encoded = entry.partition(":")
        key_id = key_id.strip()
        where = f"key #{position} ({key_id!r})" if colon else f"key #{position}"
        if not colon:
            raise PayloadKeyError(f"{where} is not of the form id:base64key")
        if not KEY_ID_PATTERN.match(key_id):
            raise PayloadKeyError(
                f"{where}: the id must be 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        try:
            secret = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise PayloadKeyError(f"{where}: the key is not valid base64") from None
        if len(secret) != KEY_BYTES:
            raise PayloadKeyError(
                f"{where}: the key is {len(secret)} bytes, AES-256 needs {KEY_BYTES}"
            )
        if any(k.id == key_id for k in keys):
            raise PayloadKeyError(f"{where}: the id {key_id!r} is used twice")
        keys.append(PayloadKey(key_id, secret))
    return tuple(keys)


def new_key_entry(key_id: str) -> str:
    """A fresh ``id:base64key`` entry for ``CLOUDMART_PAYLOAD_KEYS``."""
    if not KEY_ID_PATTERN.match(key_id):
        raise PayloadKeyError(f"invalid key id {key_id!r}")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def _associated_data(key_id: str) -> bytes:
    # Binds the ciphertext to the key id in its metadata: relabelling a payload with another
    # key's id fails authentication instead of decrypting under the wrong key.
    return _AAD_PREFIX + key_id.encode()


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def _shown(value: bytes) -> str:
    # Metadata comes from whoever sent the payload: quoted and cut short, never trusted in a log.
    return repr(value[:64].decode(errors="replace"))


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads.

    ``decode`` never raises and never passes a payload through: one it cannot decrypt (not
    encrypted, a key id not configured, tampered with) becomes a refusal payload. Raising there
    would fail the worker's whole workflow activation, which Temporal retries forever: a single
    update sent without the keys would then block its saga, every later update answered
    "Workflow Task in failed state". A refusal fails only what carries it: the update is
    rejected with the reason, a query fails, a signal is dropped, an activity attempt fails.
    """

    def __init__(self, keys: Sequence[PayloadKey]) -> None:
        if not keys:
            raise PayloadKeyError("at least one payload key is needed")
        self.current = keys[0]
        self._ciphers = {key.id: AESGCM(key.secret) for key in keys}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt_or_refuse(payload) for payload in payloads]

    def _decrypt_or_refuse(self, payload: Payload) -> Payload:
        if (payload.metadata.get("encoding"), payload.data) in SERVER_PAYLOADS:
            return payload
        try:
            return self.decrypt(payload)
        except PayloadDecryptionError as err:
            return Payload(metadata={"encoding": REFUSED}, data=str(err).encode())

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.current.id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(
            nonce, payload.SerializeToString(), _associated_data(key_id)
        )
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed
        )

    def decrypt(self, payload: Payload) -> Payload:
        """The original payload; raises :class:`PayloadDecryptionError` if ``payload`` is not
        ciphertext of a configured key. The message names the payload's key id, never the
        configured ones (it may reach whoever sent the payload)."""
        if not is_encrypted(payload):
            encoding = _shown(payload.metadata.get("encoding", b""))
            raise PayloadDecryptionError(
                f"refused a payload that is not encrypted (encoding {encoding}): the sagas accept "
                "only payloads encrypted with a configured key (CLOUDMART_PAYLOAD_KEYS)"
            )
        raw_id = payload.metadata.get(KEY_ID, b"")
        key_id = raw_id.decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {_shown(raw_id)}, which is not configured "
                "(CLOUDMART_PAYLOAD_KEYS)"
            )
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _associated_data(key_id))
        except (InvalidTag, ValueError):  # ValueError: too short to hold a nonce
            raise PayloadDecryptionError(
                f"payload encrypted with key id {key_id!r} failed authentication "
                "(tampered with, or the key under that id has changed)"
            ) from None
        original = Payload()
        try:
            original.ParseFromString(plain)
        except DecodeError:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {key_id!r} does not hold a payload"
            ) from None
        return original


class RefusedPayloadConverter(EncodingPayloadConverter):
    """Reads a refusal (see :class:`EncryptionCodec`) by raising its reason; writes nothing."""

    @property
    def encoding(self) -> str:
        return REFUSED.decode()

    def to_payload(self, value: object) -> Payload | None:
        return None  # never chosen to encode a value

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> object:
        raise PayloadDecryptionError(payload.data.decode(errors="replace"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Payload encryption keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    new_key = commands.add_parser("new-key", help="print a new id:base64key entry")
    new_key.add_argument("id", help="the key's id, e.g. k2 or 2026-11")
    args = parser.parse_args(argv)
    try:
        print(new_key_entry(args.id))
    except PayloadKeyError as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
