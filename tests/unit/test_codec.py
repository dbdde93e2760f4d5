"""The payload codec and its keys, on their own: encryption, rotation, refusals, configuration."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from cloudmart.codec import (
    ENCODING,
    KEY_ID,
    REFUSED,
    EncryptionCodec,
    PayloadDecryptionError,
    new_key_entry,
    parse_payload_keys,
)
from cloudmart.settings import Settings
from cloudmart.temporal import PayloadKeysMissing, data_converter, encrypted_converter
from devstack.stack import PAYLOAD_KEYS_FILE, settings_env, with_dev_payload_keys
from tests.support import address

SECRET = "tok_secret_5f1c"


def payload(value: object = None) -> Payload:
    return pydantic_data_converter.payload_converter.to_payloads([value or {"token": SECRET}])[0]


def codec(*entries: str) -> EncryptionCodec:
    return EncryptionCodec(parse_payload_keys(",".join(entries)))


OLD, NEW = new_key_entry("k1"), new_key_entry("k2")


async def test_a_payload_round_trips_and_is_unreadable_in_between() -> None:
    original = payload({"token": SECRET, "address": address().model_dump()})
    [encrypted] = await codec(OLD).encode([original])
    assert encrypted.metadata["encoding"] == ENCODING
    assert encrypted.metadata[KEY_ID] == b"k1"
    stored = encrypted.SerializeToString()
    for clear in (SECRET, "Hauptstr", "json/plain"):
        assert clear.encode() not in stored
    assert await codec(OLD).decode([encrypted]) == [original]


async def test_the_same_payload_encrypts_differently_each_time() -> None:
    first, second = await codec(OLD).encode([payload(), payload()])
    assert first.data != second.data


async def test_rotation_new_payloads_use_the_newest_key_and_old_ones_still_decrypt() -> None:
    [before] = await codec(OLD).encode([payload()])
    rotated = codec(NEW, OLD)  # the new key first
    [after] = await rotated.encode([payload()])
    assert after.metadata[KEY_ID] == b"k2"
    assert await rotated.decode([before, after]) == [payload(), payload()]
    # Until every process has the new key, one that lacks it cannot read the new payloads.
    with pytest.raises(PayloadDecryptionError, match="key id 'k2', which is not configured"):
        codec(OLD).decrypt(after)


async def test_an_unknown_key_id_is_named_but_never_the_configured_ones() -> None:
    """The message may reach whoever sent the payload (the codec server's 400, a rejected
    update): it names the payload's key id, not the ids this process holds."""
    [encrypted] = await codec(NEW).encode([payload()])
    holder = codec(OLD, new_key_entry("k-secret-id"))
    with pytest.raises(PayloadDecryptionError, match="key id 'k2', which is not configured") as err:
        holder.decrypt(encrypted)
    assert "k1" not in str(err.value) and "k-secret-id" not in str(err.value)


async def test_a_tampered_ciphertext_fails_authentication() -> None:
    [encrypted] = await codec(OLD).encode([payload()])
    flipped = bytearray(encrypted.data)
    flipped[-1] ^= 1
    tampered = Payload(metadata=dict(encrypted.metadata), data=bytes(flipped))
    with pytest.raises(PayloadDecryptionError, match="key id 'k1' failed authentication"):
        codec(OLD).decrypt(tampered)


async def test_a_payload_relabelled_with_another_key_id_fails() -> None:
    """The key id is authenticated data: a payload cannot be passed off as another key's, even
    if that key holds the same secret."""
    secret = OLD.partition(":")[2]
    both = codec(OLD, f"k9:{secret}")
    [encrypted] = await both.encode([payload()])
    relabelled = Payload(metadata={**encrypted.metadata, KEY_ID: b"k9"}, data=encrypted.data)
    with pytest.raises(PayloadDecryptionError, match="'k9' failed authentication"):
        both.decrypt(relabelled)


async def test_a_payload_that_is_not_encrypted_is_refused_where_it_is_read() -> None:
    """What a client without the keys sends (an update approving a held payment, say) is never
    passed through. The codec's decode does not raise (that would fail a worker's whole
    workflow activation, again and again): it yields a refusal, which raises when read."""
    plain = payload()
    [refusal] = await codec(OLD).decode([plain])
    assert refusal.metadata["encoding"] == REFUSED
    assert SECRET.encode() not in refusal.SerializeToString()  # the sender's data is dropped
    converter = encrypted_converter(parse_payload_keys(OLD))
    with pytest.raises(PayloadDecryptionError, match=r"refused a payload that is not encrypted"):
        await converter.decode([plain])
    # The same for a payload under a key id this process lacks, or tampered with.
    [foreign] = await codec(NEW).encode([payload()])
    with pytest.raises(PayloadDecryptionError, match="key id 'k2', which is not configured"):
        await converter.decode([foreign])
    # And what is encrypted with a configured key reads as before.
    [sealed] = await converter.encode([{"token": SECRET}])
    assert await converter.decode([sealed]) == [{"token": SECRET}]


async def test_a_refusal_never_encodes_a_value() -> None:
    converter = encrypted_converter(parse_payload_keys(OLD))
    [plain] = converter.payload_converter.to_payloads([{"token": SECRET}])
    assert plain.metadata["encoding"] == b"json/plain"


async def test_failure_messages_and_stack_traces_are_encrypted() -> None:
    """Temporal keeps a failure's message and stack trace in clear unless the failure
    converter moves them into an encoded (here: encrypted) attribute."""
    converter = encrypted_converter(parse_payload_keys(OLD))
    try:
        raise ApplicationError(f"database error charging {SECRET}", type="OperationalError")
    except ApplicationError as raised:
        error = raised
    failure = Failure()
    await converter.encode_failure(error, failure)
    assert failure.message == "Encoded failure" and failure.stack_trace == ""
    assert failure.application_failure_info.type == "OperationalError"  # the type stays in clear
    assert SECRET.encode() not in failure.SerializeToString()
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    stored = failure.SerializeToString()  # decode_failure decodes in place
    decoded = await converter.decode_failure(Failure.FromString(stored))
    assert isinstance(decoded, ApplicationError)
    assert decoded.message == f"database error charging {SECRET}"
    # Read without the keys: the message cannot be recovered.
    plain = await pydantic_data_converter.decode_failure(Failure.FromString(stored))
    assert SECRET not in str(plain)


async def test_the_refusal_of_an_unencrypted_payload_stays_readable_to_its_sender() -> None:
    """A caller without the keys learns why its update was rejected: the refusal says nothing
    of an order, so its failure is not encrypted."""
    converter = encrypted_converter(parse_payload_keys(OLD))
    try:
        try:
            await converter.decode([payload()])
        except PayloadDecryptionError as refusal:
            raise RuntimeError("Failed decoding arguments") from refusal  # as the SDK wraps it
    except RuntimeError as raised:
        error = raised
    failure = Failure()
    await converter.encode_failure(error, failure)
    assert failure.message == "Failed decoding arguments"
    assert "refused a payload that is not encrypted" in failure.cause.message
    assert not failure.HasField("encoded_attributes")


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ("k1", "key #1 is not of the form id:base64key"),
        ("k1:not base64!", r"key #1 \('k1'\): the key is not valid base64"),
        (f"k1:{base64.b64encode(os.urandom(16)).decode()}", "16 bytes, AES-256 needs 32"),
        (f"{NEW},k2:{OLD.partition(':')[2]}", r"key #2 \('k2'\): the id 'k2' is used twice"),
        (f"-bad:{OLD.partition(':')[2]}", "the id must be"),
    ],
    # Named, not shown: the keys are random (a run's ids must not change) and secret.
    ids=["no-colon", "not-base64", "short-key", "id-twice", "bad-id"],
)
def test_bad_keys_are_refused_naming_the_entry_never_echoing_it(keys: str, error: str) -> None:
    with pytest.raises(ValidationError, match=error) as raised:
        Settings(payload_keys=keys)
    assert "payload_keys" in str(raised.value)
    for entry in keys.split(","):
        secret = entry.partition(":")[2]
        assert not secret or secret not in str(raised.value)


def test_keys_are_secret_in_the_settings_yet_reach_child_processes() -> None:
    settings = Settings(payload_keys=f"{NEW},{OLD}")
    assert NEW not in repr(settings) and NEW not in settings.model_dump_json()
    assert [key.id for key in settings.payload_key_ring] == ["k2", "k1"]
    assert "secret" not in repr(settings.payload_key_ring)
    assert settings_env(settings, {})["CLOUDMART_PAYLOAD_KEYS"] == f"{NEW},{OLD}"


def test_without_keys_no_client_can_be_built() -> None:
    with pytest.raises(PayloadKeysMissing, match="CLOUDMART_PAYLOAD_KEYS is not set"):
        data_converter(Settings(payload_keys=""))


def test_the_dev_stack_generates_one_key_for_good_readable_only_by_its_owner(
    tmp_path: Path,
) -> None:
    first = with_dev_payload_keys(Settings(data_dir=tmp_path))
    path = tmp_path / PAYLOAD_KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [key.id for key in first.payload_key_ring] == ["dev-1"]
    again = with_dev_payload_keys(Settings(data_dir=tmp_path))
    assert again.payload_key_ring == first.payload_key_ring
    configured = Settings(data_dir=tmp_path, payload_keys=NEW)
    assert with_dev_payload_keys(configured) is configured  # configured keys win


def test_new_key_prints_an_entry_the_settings_accept() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "cloudmart.codec", "new-key", "2026-11"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert [key.id for key in Settings(payload_keys=printed).payload_key_ring] == ["2026-11"]
