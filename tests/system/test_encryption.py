"""Encrypted payloads end to end: what Temporal stores of an order is unreadable without the
keys, whole with them; the codec server decodes it for the Web UI; tokens never reach a log."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import History
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from cloudmart.codec import ENCODING, KEY_ID
from cloudmart.contracts.orders import OrderState, OrderStatus
from cloudmart.contracts.saga import workflow_id
from cloudmart.settings import Settings
from cloudmart.temporal import connect
from devstack.binaries import find_binary
from devstack.processes import free_port
from devstack.stack import DevStack, settings_env, throwaway_settings
from services.factory import Services
from tests.support import new_saga_input
from tests.workflows.saga_helpers import start

PLAIN_SEARCH_ATTRIBUTES = {"OrderStatus", "CustomerId", "TemporalChangeVersion"}
"""What the saga upserts (and the SDK, for ``workflow.patched``): Temporal indexes search
attributes, so no codec ever sees them."""


def payloads_in(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload anywhere in ``message``, with where it was found."""
    if isinstance(message, Payload):
        yield path, message
        return
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        where = f"{path}.{field.name}"
        if field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    yield from payloads_in(item, f"{where}[{key}]")
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield from payloads_in(item, f"{where}[{index}]")
        else:
            yield from payloads_in(value, where)


def split_history(history: History) -> tuple[list[Payload], dict[str, Payload]]:
    """The history's payloads that carry order data, and the ones Temporal or its SDK must
    read (search attributes by name, the patch markers as ``patch:<id>``)."""
    data: list[Payload] = []
    plain: dict[str, Payload] = {}
    for path, payload in payloads_in(history):
        if ".search_attributes.indexed_fields[" in path:
            plain[path.rsplit("[", 1)[1].rstrip("]")] = payload
        elif ".marker_recorded_event_attributes.details[patch-data]" in path:
            # Written by the SDK's core, beyond the codec's reach.
            plain[f"patch:{json.loads(payload.data)['id']}"] = payload
        else:
            data.append(payload)
    return data, plain


# --- a saga on the time-skipping server ---------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])  # about Temporal's side: one backend is enough
async def test_a_saga_history_is_unreadable_without_the_keys_and_whole_with_them(
    client: Client, settings: Settings, workers: Services
) -> None:
    saga = new_saga_input(settings, (("SKU-B", 3),))  # 7500 cents
    handle = await start(client, saga)
    state = await handle.result()
    assert state.status == OrderStatus.COMPLETED and state.total_cents == 7500
    secrets = [b"tok_ok", b"Hauptstr. 1", b"Ada Lovelace", b"10115", b"7500"]

    # A client without the codec: the history is ciphertext, the result undecodable.
    plain = Client(
        client.service_client, namespace=client.namespace, data_converter=pydantic_data_converter
    )
    history = History(events=(await plain.get_workflow_handle(handle.id).fetch_history()).events)
    data, attributes = split_history(history)
    assert len(data) > 10  # the input, each activity's input and result, summaries, the result
    for payload in data:
        assert payload.metadata["encoding"] == ENCODING
        assert payload.metadata[KEY_ID] == b"test-1"
        for secret in secrets:
            assert secret not in payload.SerializeToString(), secret
    with pytest.raises(Exception, match="binary/encrypted"):
        await plain.get_workflow_handle(handle.id).result()

    # What stays readable (docs/security.md): the search attributes, and the patch's id.
    assert set(attributes) == PLAIN_SEARCH_ATTRIBUTES | {"patch:fraud-check"}
    assert not any(b"7500" in a.data for a in attributes.values())  # no amount in clear

    # Through the codec: every payload is the original again.
    codec = client.data_converter.payload_codec
    assert codec is not None
    decoded = b"".join(p.SerializeToString() for p in await codec.decode(data))
    for secret in secrets:
        assert secret in decoded, secret
    assert await client.get_workflow_handle(handle.id, result_type=OrderState).result() == state


# --- the real stack, with the Web UI --------------------------------------------------------------


@pytest.fixture(scope="module")
def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """`make up` as it runs on a laptop: Web UI on, Temporal's state on disk, every process's
    output in ``stack.log`` (Temporal's in ``logs/temporal.log``)."""
    data_dir = tmp_path_factory.mktemp("encrypted-stack")
    settings = throwaway_settings(
        data_dir,
        temporal_ui_port=free_port(),
        task_queue_prefix=f"enc-{uuid.uuid4().hex[:8]}",
        activity_threads=4,
    )
    with (data_dir / "stack.log").open("w") as output:
        stack = DevStack(settings, settings_env(settings), output=output, persist=True)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


@pytest.fixture(scope="module")
def api(ui_stack: DevStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ui_stack.api_url, timeout=15) as client:
        yield client


def ui_origin(stack: DevStack) -> str:
    return f"http://localhost:{stack.settings.temporal_ui_port}"


def place(api: httpx.Client, token: str, line1: str = "Hauptstr. 1") -> str:
    body = {
        "customer_id": f"c-{uuid.uuid4().hex[:8]}",
        "items": [{"sku": "MOUSE-ERGO-01", "quantity": 1}],
        "payment_token": token,
        "shipping_address": {
            **{"name": "Ada Lovelace", "line1": line1, "city": "Berlin"},
            **{"postal_code": "10115", "country": "DE"},
        },
    }
    response = api.post("/orders", json=body)
    assert response.status_code == 202, response.text
    return response.json()["order_id"]


def wait_for_end(api: httpx.Client, order_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = api.get(f"/orders/{order_id}").json()
        if state["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"order {order_id} never ended: {state}")


async def plain_history(stack: DevStack, order_id: str) -> History:
    """The closed saga's history, read without the codec (the saga reports its outcome a
    moment before it returns: it still stores its last events)."""
    await (await connect(stack.settings)).get_workflow_handle(workflow_id(order_id)).result()
    plain = await Client.connect(
        stack.settings.temporal_address, data_converter=pydantic_data_converter
    )
    fetched = await plain.get_workflow_handle(workflow_id(order_id)).fetch_history()
    return History(events=fetched.events)


def proto_json(payloads: list[Payload]) -> dict[str, Any]:
    """What the Web UI posts: Payloads in protobuf's JSON form."""
    return MessageToDict(Payloads(payloads=payloads))


def test_the_web_ui_is_configured_with_the_codec_server(ui_stack: DevStack) -> None:
    ui = httpx.get(f"http://127.0.0.1:{ui_stack.settings.temporal_ui_port}/api/v1/settings")
    assert ui.json()["Codec"]["Endpoint"] == ui_stack.codec_url
    assert ui_stack.codec_url == f"{ui_stack.api_url}/codec"


async def test_the_codec_server_decodes_a_history_for_the_web_ui(
    ui_stack: DevStack, api: httpx.Client
) -> None:
    order_id = place(api, "tok_ok")
    assert wait_for_end(api, order_id)["status"] == "COMPLETED"
    data, _ = split_history(await plain_history(ui_stack, order_id))
    assert all(p.metadata["encoding"] == ENCODING for p in data)

    headers = {"Origin": ui_origin(ui_stack), "X-Namespace": "default"}
    response = await asyncio.to_thread(
        api.post, "/codec/decode", json=proto_json(data), headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ui_origin(ui_stack)
    decoded = response.json()["payloads"]
    assert len(decoded) == len(data)
    assert all(base64.b64decode(p["metadata"]["encoding"]) == b"json/plain" for p in decoded)
    values = [json.loads(base64.b64decode(p["data"])) for p in decoded]
    placed = values[0]  # the saga's input: the order as placed
    assert placed["order_id"] == order_id
    assert placed["payment_token"] == "tok_ok"
    assert placed["shipping_address"]["line1"] == "Hauptstr. 1"
    assert "charge 4999 cents" in values  # an activity's summary, as the UI lists it
    assert any(isinstance(v, dict) and v.get("status") == "COMPLETED" for v in values)  # result


def test_the_cli_shows_a_history_decoded_through_the_codec_server(
    ui_stack: DevStack, api: httpx.Client
) -> None:
    order_id = place(api, "tok_ok", "Hauptstr. 7")
    assert wait_for_end(api, order_id)["status"] == "COMPLETED"

    def shown_payload_data(*flags: str) -> bytes:
        """Every payload's data in ``temporal workflow show -o json`` (protobuf JSON, base64)."""
        command = [find_binary("temporal"), "workflow", "show", "-w", workflow_id(order_id)]
        command += ["-o", "json", "--address", ui_stack.settings.temporal_address, *flags]
        shown = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found: list[bytes] = []

        def walk(node: object) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("data"), str) and "metadata" in node:
                    found.append(base64.b64decode(node["data"]))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(json.loads(shown))
        return b"\n".join(found)

    assert b"Hauptstr. 7" not in shown_payload_data()
    assert b"Hauptstr. 7" in shown_payload_data("--codec-endpoint", ui_stack.codec_url)


def test_the_codec_server_encodes_what_it_decodes(api: httpx.Client) -> None:
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'{"payment_token":"tok_ok"}')
    encoded = api.post("/codec/encode", json=proto_json([original]))
    assert encoded.status_code == 200, encoded.text
    [sealed] = encoded.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == ENCODING
    assert b"tok_ok" not in base64.b64decode(sealed["data"])
    decoded = api.post("/codec/decode", json=encoded.json())
    assert decoded.json() == proto_json([original])
    # A payload that is not encrypted comes back as it is.
    assert api.post("/codec/decode", json=proto_json([original])).json() == proto_json([original])


def test_the_codec_server_refuses_what_it_cannot_decode(api: httpx.Client) -> None:
    foreign = Payload(metadata={"encoding": ENCODING, KEY_ID: b"k-elsewhere"}, data=b"\x00" * 40)
    refused = api.post("/codec/decode", json=proto_json([foreign]))
    assert refused.status_code == 400
    assert "key id 'k-elsewhere'" in refused.json()["detail"]
    ours = api.post("/codec/encode", json=proto_json([Payload(data=b"x")])).json()
    ours["payloads"][0]["data"] = base64.b64encode(b"\x01" * 40).decode()
    tampered = api.post("/codec/decode", json=ours)
    assert tampered.status_code == 400 and "failed authentication" in tampered.json()["detail"]
    bad = api.post("/codec/decode", json={"payloads": [{"metadata": {"encoding": "!!"}}]})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "payloads", 0, "metadata"]
    assert api.post("/codec/decode", json={"payload": []}).status_code == 422


def test_only_the_web_ui_origin_may_call_the_codec_server(
    ui_stack: DevStack, api: httpx.Client
) -> None:
    def preflight(path: str, origin: str) -> httpx.Response:
        return api.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )

    for origin in (ui_origin(ui_stack), f"http://127.0.0.1:{ui_stack.settings.temporal_ui_port}"):
        allowed = preflight("/codec/decode", origin)
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["access-control-allow-origin"] == origin
        assert "x-namespace" in allowed.headers["access-control-allow-headers"].lower()
    refused = preflight("/codec/decode", "http://evil.example")
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    # The rest of the API is not for browsers on other origins, the UI's included.
    orders = preflight("/orders", ui_origin(ui_stack))
    assert "access-control-allow-origin" not in orders.headers


async def test_no_payment_token_or_address_reaches_a_log_or_temporals_database(
    ui_stack: DevStack, api: httpx.Client
) -> None:
    """Runs last in this module: it stops the stack to read everything it wrote."""
    marker = uuid.uuid4().hex[:12]
    token = f"tok_secret_{marker}"  # unknown to the provider: declined, compensated
    street = f"Geheimweg {marker}"
    declined = place(api, token, street)
    assert wait_for_end(api, declined)["status"] == "FAILED"
    completed = place(api, "tok_ok", street)
    assert wait_for_end(api, completed)["status"] == "COMPLETED"
    # Through the codec, the history does hold them: the check below is not vacuous.
    client = await connect(ui_stack.settings)
    fetched = await client.get_workflow_handle(workflow_id(declined)).fetch_history()
    codec = client.data_converter.payload_codec
    assert codec is not None
    data, _ = split_history(History(events=fetched.events))
    decoded = b"".join(p.SerializeToString() for p in await codec.decode(data))
    assert token.encode() in decoded and street.encode() in decoded

    statuses = ui_stack.stop()
    assert set(statuses.values()) == {0}, statuses
    data_dir = ui_stack.settings.data_dir
    written = [
        data_dir / "stack.log",  # the worker's and the API's output
        *sorted((data_dir / "logs").iterdir()),  # Temporal's
        *sorted(data_dir.glob("temporal.db*")),  # its database, write-ahead log included
    ]
    # Not vacuous either: the log is the processes' output, the database holds the orders.
    assert "POST /orders" in (data_dir / "stack.log").read_text()
    assert declined.encode() in b"".join(p.read_bytes() for p in written if ".db" in p.name)
    for path in written:
        content = path.read_bytes()
        for secret in (token, "tok_ok", street):
            assert secret.encode() not in content, f"{secret} in {path}"
