"""The Temporal client every process uses: same address, namespace, and data converter (pydantic
JSON, encrypted by the payload codec, failure messages and stack traces included)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from temporalio.api.failure.v1 import Failure
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadConverter,
)
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from cloudmart import metrics, tracing
from cloudmart.codec import (
    EncryptionCodec,
    PayloadDecryptionError,
    PayloadKey,
    RefusedPayloadConverter,
)
from cloudmart.contracts.saga import SEARCH_ATTRIBUTES
from cloudmart.settings import Settings


class PayloadKeysMissing(RuntimeError):
    """No payload keys: a process would otherwise write order data to Temporal in clear."""

    def __init__(self) -> None:
        super().__init__(
            "CLOUDMART_PAYLOAD_KEYS is not set: order data in Temporal is encrypted, and every "
            "process needs the same keys. `make up` generates them (<data dir>/payload-keys); "
            "elsewhere create one with `python -m cloudmart.codec new-key k1` and give its output "
            "to every worker and the API as CLOUDMART_PAYLOAD_KEYS"
        )


class PayloadConverterWithRefusals(PydanticPayloadConverter):
    """Pydantic JSON, and the codec's refusals read as the error they carry."""

    def __init__(self) -> None:  # nullary: DataConverter builds it from its class
        super().__init__()
        self._set_converters(*self.converters.values(), RefusedPayloadConverter())


class EncryptedFailureConverter(DefaultFailureConverterWithEncodedAttributes):
    """Failure messages and stack traces travel as an encrypted payload (Temporal otherwise
    keeps them in clear: a database error's message can quote an address). One exception: a
    failure caused by refusing an unencrypted payload stays readable, since it is meant for a
    caller without the keys and says nothing of an order."""

    def to_failure(
        self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure
    ) -> None:
        if _caused_by_refusal(exception):
            _PLAIN_FAILURES.to_failure(exception, payload_converter, failure)
        else:
            super().to_failure(exception, payload_converter, failure)


_PLAIN_FAILURES = DefaultFailureConverter()


def _caused_by_refusal(exception: BaseException | None) -> bool:
    while exception is not None:
        if isinstance(exception, PayloadDecryptionError):
            return True
        exception = exception.__cause__
    return False


def encrypted_converter(keys: tuple[PayloadKey, ...]) -> DataConverter:
    """The pydantic converter, every payload and failure message encrypted with the newest of
    ``keys``, and every payload not encrypted with one of them refused."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_converter_class=PayloadConverterWithRefusals,
        failure_converter_class=EncryptedFailureConverter,
        payload_codec=EncryptionCodec(keys),
    )


def data_converter(settings: Settings) -> DataConverter:
    keys = settings.payload_key_ring
    if not keys:
        raise PayloadKeysMissing()
    return encrypted_converter(keys)


def tls_config(settings: Settings) -> TLSConfig | Literal[False]:
    """The TLS of the connection to Temporal's frontend, read from the files the settings name
    (checked when the settings were read). Never None: left to itself, the SDK would decide."""
    if not settings.temporal_tls_on:
        return False
    return TLSConfig(
        server_root_ca_cert=_read(settings.temporal_tls_ca),  # None: the system's roots
        client_cert=_read(settings.temporal_tls_cert),
        client_private_key=_read(settings.temporal_tls_key),
        domain=settings.temporal_tls_server_name,
    )


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    """Connect to Temporal, over TLS and with the API key as the settings say. ``lazy`` defers
    the connection to the first call (the API uses it so that it starts, and answers 503,
    while Temporal is down)."""
    api_key = settings.temporal_api_key
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        tls=tls_config(settings),
        api_key=None if api_key is None else api_key.get_secret_value(),
        lazy=lazy,
        runtime=metrics.runtime(settings),  # serves this process's metrics, where configured
        # Traces the client's calls, and the workflows and activities of the workers it serves.
        interceptors=tracing.interceptors(),
    )


UNREACHABLE = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)


def is_unreachable(err: BaseException) -> bool:
    """Whether ``err`` means Temporal could not be reached (as opposed to a refused request).

    CANCELLED is what a call gets when the server dies under it (``h2 protocol error``: the
    chaos run found it as a 500 where a 503 belongs); it never means the request was refused.
    """
    if isinstance(err, RPCError):
        return err.status in UNREACHABLE
    return isinstance(err, RuntimeError) and str(err).startswith("Failed client connect")


def unreachable_hint(settings: Settings) -> str:
    """What to check when Temporal cannot be reached. A TLS handshake the frontend refuses (no
    client certificate, or one it does not trust), or a client in clear at a frontend that
    requires TLS, reaches the SDK as a dropped connection (``transport error``, a reset or a
    broken pipe), the same error as a server that is down: so the hint names the settings."""
    if settings.temporal_tls_on:
        return (
            "is it running? over TLS, check CLOUDMART_TEMPORAL_TLS_CERT and _KEY (a frontend "
            "requiring mutual TLS refuses a client without a certificate it trusts), and that "
            "CLOUDMART_TEMPORAL_TLS_CA and _SERVER_NAME match the frontend's certificate"
        )
    return (
        "is the dev server running? `make up` starts it; a frontend that requires TLS "
        "needs CLOUDMART_TEMPORAL_TLS_* set"
    )


async def register_search_attributes(client: Client) -> None:
    """Register the saga's search attributes (for servers not started with them, e.g. in tests)."""
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={key.name: key.indexed_value_type.value for key in SEARCH_ATTRIBUTES},
        )
    )
