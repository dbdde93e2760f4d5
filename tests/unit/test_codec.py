"""The payload codec and its keys, on their own: encryption, rotation, refusals, configuration."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
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
    PayloadKeyError,
    RefusedPayloadConverter,
    new_key_entry,
    parse_payload_keys,
)
from cloudmart.codec import main as codec_main
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


async def test_the_servers_own_cancellation_details_pass_through_and_nothing_else() -> None:
    """An activity cancelled while it waits to retry is recorded by the server with details it
    writes itself, unencrypted; the saga must read them (or its activation fails forever). Only
    that exact payload passes: the same encoding with any other data is refused."""
    converter = encrypted_converter(parse_payload_keys(OLD))
    server = Payload(metadata={"encoding": b"json/plain"}, data=b'"ACTIVITY_ID_NOT_STARTED"')
    assert await converter.decode([server]) == ["ACTIVITY_ID_NOT_STARTED"]
    for forged in (
        Payload(metadata={"encoding": b"json/plain"}, data=b'"ACTIVITY_ID_NOT_STARTED" '),
        Payload(metadata={"encoding": b"json/plain"}, data=b'{"approved": true}'),
        Payload(metadata={"encoding": b"binary/plain"}, data=b'"ACTIVITY_ID_NOT_STARTED"'),
    ):
        with pytest.raises(PayloadDecryptionError, match="not encrypted"):
            await converter.decode([forged])


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


# --- refusals, word for word: they reach whoever sent the payload or set the keys -------------

KEY = OLD.partition(":")[2]
"""k1's secret, base64."""


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("k1", "key #1 is not of the form id:base64key"),
        (f",, ,k1{KEY}", "key #4 is not of the form id:base64key"),  # counted as written
        ("k1:ab:cd", "key #1 ('k1'): the key is not valid base64"),
        (f"k1:{KEY[:10]}!{KEY[10:]}", "key #1 ('k1'): the key is not valid base64"),
        (
            f"k1:{base64.b64encode(bytes(16)).decode()}",
            "key #1 ('k1'): the key is 16 bytes, AES-256 needs 32",
        ),
        (f"{NEW},k2:{KEY}", "key #2 ('k2'): the id 'k2' is used twice"),
        *(
            (
                f"{key_id}:{KEY}",
                f"key #1 ({key_id!r}): the id must be 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit",
            )
            for key_id in ("-k1", "", "k 1", "k" * 65)
        ),
    ],
    ids=[
        "no-colon",
        "fourth",
        "two-colons",
        "not-base64",
        "short-key",
        "id-twice",
        "dash-first",
        "empty-id",
        "space",
        "65-characters",
    ],
)
def test_a_bad_key_entry_is_named_and_what_is_wrong_said(keys: str, message: str) -> None:
    with pytest.raises(PayloadKeyError) as refused:
        parse_payload_keys(keys)
    assert str(refused.value) == message
    assert KEY not in str(refused.value)


def test_blank_entries_and_spaces_around_an_entry_are_ignored() -> None:
    keys = parse_payload_keys(f" , {NEW.replace(':', ' : ')} ,,{OLD},")
    assert [key.id for key in keys] == ["k2", "k1"]
    assert keys[1].secret == base64.b64decode(KEY)
    assert parse_payload_keys("") == () == parse_payload_keys(" , ")
    assert [k.id for k in parse_payload_keys(f"{'k' * 64}:{KEY}")] == ["k" * 64]


def test_a_new_key_is_random_and_needs_a_valid_id() -> None:
    first, second = parse_payload_keys(f"{new_key_entry('k1')},{new_key_entry('k1.b_2-c')}")
    assert len(first.secret) == 32 and first.secret != second.secret
    assert repr(first) == "PayloadKey(id='k1')"  # never the secret
    with pytest.raises(PayloadKeyError) as refused:
        new_key_entry("bad id")
    assert str(refused.value) == "invalid key id 'bad id'"


def test_a_codec_needs_a_key() -> None:
    with pytest.raises(PayloadKeyError) as refused:
        EncryptionCodec([])
    assert str(refused.value) == "at least one payload key is needed"


UNENCRYPTED = (
    "refused a payload that is not encrypted (encoding {}): the sagas accept only payloads "
    "encrypted with a configured key (CLOUDMART_PAYLOAD_KEYS)"
)
NOT_CONFIGURED = (
    "payload encrypted with key id {}, which is not configured (CLOUDMART_PAYLOAD_KEYS)"
)


def encrypted_as(key_id: bytes | None, data: bytes = b"x" * 40) -> Payload:
    metadata = {"encoding": ENCODING} | ({} if key_id is None else {KEY_ID: key_id})
    return Payload(metadata=metadata, data=data)


@pytest.mark.parametrize(
    ("received", "message"),
    [
        (Payload(), UNENCRYPTED.format("''")),
        (Payload(data=b"{}"), UNENCRYPTED.format("''")),
        (payload(), UNENCRYPTED.format("'json/plain'")),
        # What the sender wrote is quoted, cut at 64 characters, and never fails to print.
        (Payload(metadata={"encoding": b"e" * 100}), UNENCRYPTED.format(repr("e" * 64))),
        (Payload(metadata={"encoding": b"\xffjson"}), UNENCRYPTED.format(repr("\ufffdjson"))),
        (encrypted_as(None), NOT_CONFIGURED.format("''")),
        (encrypted_as(b"k2"), NOT_CONFIGURED.format("'k2'")),
        (encrypted_as(b"k" * 100), NOT_CONFIGURED.format(repr("k" * 64))),
        (encrypted_as(b"\xffk1"), NOT_CONFIGURED.format(repr("\ufffdk1"))),
        (
            encrypted_as(b"k1"),
            "payload encrypted with key id 'k1' failed authentication (tampered with, or the key "
            "under that id has changed)",
        ),
    ],
    ids=[
        "nothing",
        "no-encoding",
        "json",
        "long-encoding",
        "not-utf8-encoding",
        "no-key-id",
        "unknown-key-id",
        "long-key-id",
        "not-utf8-key-id",
        "not-ciphertext",
    ],
)
async def test_each_refusal_says_why(received: Payload, message: str) -> None:
    with pytest.raises(PayloadDecryptionError) as refused:
        codec(OLD).decrypt(received)
    assert str(refused.value) == message
    [refusal] = await codec(OLD).decode([received])
    assert refusal == Payload(metadata={"encoding": REFUSED}, data=message.encode())
    with pytest.raises(PayloadDecryptionError) as raised:
        RefusedPayloadConverter().from_payload(refusal)
    assert str(raised.value) == message


async def test_ciphertext_that_holds_no_payload_is_refused() -> None:
    nonce = bytes(12)
    sealed = AESGCM(base64.b64decode(KEY)).encrypt(nonce, b"\xff\xff", b"cloudmart-payload-v1:k1")
    with pytest.raises(PayloadDecryptionError) as refused:
        codec(OLD).decrypt(encrypted_as(b"k1", nonce + sealed))
    assert str(refused.value) == "payload encrypted with key id 'k1' does not hold a payload"


async def test_ciphertext_too_short_to_hold_a_nonce_is_refused_too() -> None:
    [refusal] = await codec(OLD).decode([encrypted_as(b"k1", b"short")])
    assert refusal.metadata["encoding"] == REFUSED


def test_a_refusal_is_read_by_raising_its_reason_even_if_garbled() -> None:
    converter = RefusedPayloadConverter()
    assert converter.encoding == "binary/refused"
    assert converter.to_payload({"approved": True}) is None
    refusal = Payload(metadata={"encoding": REFUSED}, data=b"\xffno")
    with pytest.raises(PayloadDecryptionError) as raised:
        converter.from_payload(refusal)
    assert str(raised.value) == "\ufffdno"


# --- python -m cloudmart.codec, in this process --------------------------------------------------


def test_the_key_cli_prints_an_entry_or_says_what_is_wrong(
    capsys: pytest.CaptureFixture[str],
) -> None:
    codec_main(["new-key", "k7"])
    out = capsys.readouterr().out
    assert out.endswith("\n")
    [key] = parse_payload_keys(out.strip())
    assert key.id == "k7" and len(key.secret) == 32

    for argv, error in (
        (["new-key", "bad id"], "error: invalid key id 'bad id'"),
        ([], "error: the following arguments are required: command"),
        (["new-key"], "error: the following arguments are required: id"),
    ):
        with pytest.raises(SystemExit) as exited:
            codec_main(argv)
        assert exited.value.code == 2
        assert capsys.readouterr().err.strip().endswith(error)

    with pytest.raises(SystemExit):
        codec_main(["--help"])
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert "Payload encryption keys." in lines
    assert "new-key print a new id:base64key entry" in lines
    with pytest.raises(SystemExit):
        codec_main(["new-key", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "id the key's id, e.g. k2 or 2026-11" in text
