"""The Temporal client every process uses: same address, namespace, and data converter (pydantic
JSON, encrypted by the payload codec)."""

from __future__ import annotations

import dataclasses

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from cloudmart.codec import EncryptionCodec, PayloadKey
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


def encrypted_converter(keys: tuple[PayloadKey, ...]) -> DataConverter:
    """The pydantic converter, every payload encrypted with the newest of ``keys``."""
    return dataclasses.replace(pydantic_data_converter, payload_codec=EncryptionCodec(keys))


def data_converter(settings: Settings) -> DataConverter:
    keys = settings.payload_key_ring
    if not keys:
        raise PayloadKeysMissing()
    return encrypted_converter(keys)


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    """Connect to Temporal. ``lazy`` defers the connection to the first call (the API uses it
    so that it starts, and answers 503, while Temporal is down)."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        lazy=lazy,
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


async def register_search_attributes(client: Client) -> None:
    """Register the saga's search attributes (for servers not started with them, e.g. in tests)."""
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={key.name: key.indexed_value_type.value for key in SEARCH_ATTRIBUTES},
        )
    )
