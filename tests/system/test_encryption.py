"""Encrypted payloads end to end: what Temporal stores of an order is unreadable without the
keys, whole with them; what a client without the keys sends is refused; the codec server decodes
for the operator only (bearer token or the browser's session cookie); tokens never reach a log."""

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
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from api.routes.codec import SESSION_COOKIE
from api.tokens import mint
from cloudmart.codec import ENCODING, KEY_ID, EncryptionCodec
from cloudmart.contracts.orders import OrderState, OrderStatus, PaymentReviewDecision
from cloudmart.contracts.saga import workflow_id
from cloudmart.settings import Settings
from cloudmart.temporal import connect
from devstack.binaries import find_binary
from devstack.processes import free_port
from devstack.stack import DevStack, settings_env, throwaway_settings
from services.factory import Services
from tests.support import new_saga_input, operator_headers
from tests.workflows.saga_helpers import start, wait_for_status
from workflows.order_saga import OrderSaga

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

    # What stays readable (docs/security.md): the search attributes, and the patches' ids.
    assert set(attributes) == PLAIN_SEARCH_ATTRIBUTES | {"patch:customer-step", "patch:fraud-check"}
    assert not any(b"7500" in a.data for a in attributes.values())  # no amount in clear

    # Through the codec: every payload is the original again.
    codec = client.data_converter.payload_codec
    assert codec is not None
    decoded = b"".join(p.SerializeToString() for p in await codec.decode(data))
    for secret in secrets:
        assert secret in decoded, secret
    assert await client.get_workflow_handle(handle.id, result_type=OrderState).result() == state


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_failure_messages_are_encrypted_in_the_history_and_whole_in_the_saga(
    client: Client, settings: Settings, workers: Services
) -> None:
    """The failure converter moves each failure's message and stack trace into an encrypted
    attribute; the saga (and the API, which reads its state) still gets the real message."""
    handle = await start(client, new_saga_input(settings, token="tok_decline"))
    with pytest.raises(WorkflowFailureError) as ended:
        await handle.result()
    cause = ended.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "PaymentDeclined"
    assert cause.message.startswith("payment declined")
    state = await handle.query(OrderSaga.state)
    assert state.status == OrderStatus.FAILED and state.failure is not None
    assert state.failure.type == "PaymentDeclined"
    assert state.failure.message.startswith("payment declined")

    events = (await without_keys(client).get_workflow_handle(handle.id).fetch_history()).events
    failed = [
        e.activity_task_failed_event_attributes.failure
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
    ] + [
        e.workflow_execution_failed_event_attributes.failure
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    ]
    assert len(failed) >= 2, "the charge's failure and the saga's are in the history"
    for failure in failed:
        assert failure.message == "Encoded failure" and failure.stack_trace == ""
        assert failure.encoded_attributes.metadata["encoding"] == ENCODING
        assert failure.application_failure_info.type == "PaymentDeclined"  # the type stays
        assert b"payment declined" not in failure.SerializeToString()


def without_keys(client: Client) -> Client:
    """A client of the same server with no codec: what `temporal workflow update execute`
    (or any SDK) is, in the hands of someone who can reach Temporal but has no key."""
    return Client(
        client.service_client, namespace=client.namespace, data_converter=pydantic_data_converter
    )


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_an_update_sent_without_the_keys_is_rejected_and_the_saga_goes_on(
    client: Client, settings: Settings, workers: Services
) -> None:
    """Issue 21: `temporal workflow update execute -w order-<id> --name review_payment --input
    '{"approved": true}'` approved a held payment with no token and no key. The worker now
    refuses the unencrypted input: the update is rejected, with the reason readable by its
    sender, and the saga, not blocked, still waits for the operator's decision."""
    handle = await start(client, new_saga_input(settings, token="tok_review"))
    await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)

    forged = without_keys(client).get_workflow_handle(handle.id)
    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await forged.execute_update("review_payment", {"approved": True})
    cause = rejected.value.cause
    assert isinstance(cause, ApplicationError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == "PayloadDecryptionError"
    assert "refused a payload that is not encrypted (encoding 'json/plain')" in cause.cause.message

    state = await handle.query(OrderSaga.state)
    assert state.status == OrderStatus.AWAITING_PAYMENT_REVIEW
    await handle.execute_update(OrderSaga.review_payment, PaymentReviewDecision(approved=True))
    assert (await handle.result()).status == OrderStatus.COMPLETED


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_saga_started_without_the_keys_runs_no_step(
    client: Client, settings: Settings, workers: Services
) -> None:
    """Whoever reaches Temporal could start an order of their own making: its input is refused
    before the saga's code sees it, so nothing is reserved or charged."""
    saga = new_saga_input(settings)
    handle = await without_keys(client).start_workflow(
        "OrderSaga",
        saga.model_dump(mode="json"),
        id=workflow_id(saga.order_id),
        task_queue=saga.task_queues.orders,
    )
    deadline = time.monotonic() + 15
    failures: list[str] = []
    while not failures and time.monotonic() < deadline:
        events = [event async for event in handle.fetch_history_events()]
        failures = [
            e.workflow_task_failed_event_attributes.failure.cause.message
            for e in events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        ]
        await asyncio.sleep(0.1)
    assert failures and "refused a payload that is not encrypted" in failures[0], failures
    assert not any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED for e in events)
    await handle.terminate()


# --- the real stack, with the Web UI --------------------------------------------------------------


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
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


@pytest.fixture
def ui_stack(module_stack: DevStack) -> DevStack:
    """The module's stack, running. The secret scan below stops it to read what it wrote, and
    `--dist worksteal` may hand this worker more of the module's tests after that one: they get
    the stack started again on the same data directory."""
    if not module_stack.processes:
        module_stack.start()
    return module_stack


@pytest.fixture
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


def operator(stack: DevStack) -> dict[str, str]:
    return operator_headers(stack.settings)


def sign_in(api: httpx.Client, stack: DevStack) -> httpx.Response:
    """What the operator's browser does: the sign-in form, posted with the operator token."""
    assert stack.settings.operator_token is not None
    token = stack.settings.operator_token.get_secret_value()
    return api.post("/codec/session", data={"token": token})


def test_the_web_ui_is_configured_with_the_codec_server(ui_stack: DevStack) -> None:
    ui = httpx.get(f"http://127.0.0.1:{ui_stack.settings.temporal_ui_port}/api/v1/settings")
    assert ui.json()["Codec"]["Endpoint"] == ui_stack.codec_url
    # The host the UI is opened on (the banner's http://localhost:<port>), so that the UI's page
    # and the codec server are the same site and the SameSite=Strict session cookie is sent.
    assert ui_stack.codec_url == f"http://localhost:{ui_stack.settings.api_port}/codec"
    assert ui_stack.ui_url.startswith("http://localhost:")


async def test_the_web_ui_decodes_a_history_through_the_operators_session(
    ui_stack: DevStack, api: httpx.Client
) -> None:
    """The requests the Web UI (2.54.1) makes with "Include cross-origin credentials" on, once
    the operator signed in at /codec/session: a preflight, then the decode with the cookie."""
    order_id = place(api, "tok_ok")
    assert wait_for_end(api, order_id)["status"] == "COMPLETED"
    data, _ = split_history(await plain_history(ui_stack, order_id))
    assert all(p.metadata["encoding"] == ENCODING for p in data)

    origin = ui_origin(ui_stack)

    def browser() -> httpx.Response:
        # Signed in from a client of its own: a cookie in ``api``'s jar, which the module's
        # other tests share, would open decodes they expect refused.
        with httpx.Client(base_url=ui_stack.api_url, timeout=15) as form:
            signed_in = sign_in(form, ui_stack)
        assert signed_in.status_code == 200, signed_in.text
        cookie = signed_in.cookies[SESSION_COOKIE]
        preflight = api.options(
            "/codec/decode?preserveStorageRefs=true",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == origin
        assert preflight.headers["access-control-allow-credentials"] == "true"
        headers = {
            "Origin": origin,
            "X-Namespace": "default",
            "Cookie": f"{SESSION_COOKIE}={cookie}",
        }
        with httpx.Client(base_url=ui_stack.api_url, timeout=15) as page:  # no stored cookies
            return page.post(
                "/codec/decode?preserveStorageRefs=true", json=proto_json(data), headers=headers
            )

    response = await asyncio.to_thread(browser)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
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


def test_decoding_needs_the_operator(ui_stack: DevStack, api: httpx.Client) -> None:
    """Issue 21: /codec/decode gave anyone the order's payment token, name and address."""
    sealed = EncryptionCodec(ui_stack.settings.payload_key_ring).encrypt(
        Payload(metadata={"encoding": b"json/plain"}, data=b'{"payment_token":"tok_ok"}')
    )
    body = proto_json([sealed])
    assert ui_stack.settings.auth_secret is not None
    customer = mint("c-42", ui_stack.settings.auth_secret.get_secret_value())
    with httpx.Client(base_url=ui_stack.api_url, timeout=15) as fresh:  # no cookie
        refused = {
            "no token": fresh.post("/codec/decode", json=body),
            "a garbage token": fresh.post(
                "/codec/decode", json=body, headers={"Authorization": "Bearer " + "g" * 43}
            ),
            "a customer token": fresh.post(
                "/codec/decode", json=body, headers={"Authorization": f"Bearer {customer}"}
            ),
            "a forged session": fresh.post(
                "/codec/decode",
                json=body,
                headers={"Cookie": f"{SESSION_COOKIE}=9999999999.{'0' * 64}"},
            ),
            "an expired session": fresh.post(
                "/codec/decode",
                json=body,
                headers={"Cookie": f"{SESSION_COOKIE}=1000.{'0' * 64}"},
            ),
        }
        for who, response in refused.items():
            assert response.status_code in (401, 403), (who, response.status_code)
            assert response.headers["content-type"] == "application/json", who
            assert "detail" in response.json(), who
            assert "tok_ok" not in response.text, who
        assert refused["no token"].status_code == 401
        assert refused["a customer token"].status_code == 403
        assert "sign in again" in refused["an expired session"].json()["detail"]

        allowed = fresh.post("/codec/decode", json=body, headers=operator(ui_stack))
        assert allowed.status_code == 200, allowed.text
        assert base64.b64decode(allowed.json()["payloads"][0]["data"]) == (
            b'{"payment_token":"tok_ok"}'
        )


def test_the_browser_session_is_an_httponly_strict_cookie_for_the_codec_only(
    ui_stack: DevStack, api: httpx.Client
) -> None:
    page = api.get("/codec/session")
    assert page.status_code == 200 and '<input type="password" name="token"' in page.text
    assert page.headers["x-frame-options"] == "DENY"
    with httpx.Client(base_url=ui_stack.api_url, timeout=15) as browser:
        wrong = browser.post("/codec/session", data={"token": "w" * 43})
        assert wrong.status_code == 403 and "set-cookie" not in wrong.headers
        assert wrong.json()["detail"]
        assert browser.post("/codec/session", data={}).status_code == 401

        signed_in = sign_in(browser, ui_stack)
        assert signed_in.status_code == 200, signed_in.text
        set_cookie = signed_in.headers["set-cookie"]
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/codec", "Max-Age=43200"):
            assert attribute in set_cookie, set_cookie
        token = operator(ui_stack)["Authorization"].removeprefix("Bearer ")
        assert token not in set_cookie  # the session proves the token without being it
        assert browser.post("/codec/decode", json={"payloads": []}).status_code == 200
        # The cookie opens nothing but the codec: an operator action still needs the token.
        review = browser.post(
            f"/orders/{uuid.uuid4()}/payment-review",
            json={"approved": True},
            headers={"Cookie": f"{SESSION_COOKIE}={signed_in.cookies[SESSION_COOKIE]}"},
        )
        assert review.status_code == 401

        signed_out = browser.post("/codec/session/end")
        assert signed_out.status_code == 200
        assert browser.post("/codec/decode", json={"payloads": []}).status_code == 401


def test_the_cli_shows_a_history_decoded_with_the_operator_token(
    ui_stack: DevStack, api: httpx.Client
) -> None:
    order_id = place(api, "tok_ok", "Hauptstr. 7")
    assert wait_for_end(api, order_id)["status"] == "COMPLETED"

    def shown(*flags: str) -> subprocess.CompletedProcess[str]:
        command = [find_binary("temporal"), "workflow", "show", "-w", workflow_id(order_id)]
        command += ["-o", "json", "--address", ui_stack.settings.temporal_address, *flags]
        return subprocess.run(command, capture_output=True, text=True)

    def payload_data(output: str) -> bytes:
        """Every payload's data in ``temporal workflow show -o json`` (protobuf JSON, base64)."""
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

        walk(json.loads(output))
        return b"\n".join(found)

    assert b"Hauptstr. 7" not in payload_data(shown().stdout)
    # Without the operator's credential the codec server refuses, and the CLI fails.
    refused = shown("--codec-endpoint", ui_stack.codec_url)
    assert refused.returncode != 0 and "Hauptstr. 7" not in refused.stdout + refused.stderr
    token = operator(ui_stack)["Authorization"]
    decoded = shown("--codec-endpoint", ui_stack.codec_url, "--codec-auth", token)
    assert decoded.returncode == 0, decoded.stderr
    assert b"Hauptstr. 7" in payload_data(decoded.stdout)


def test_there_is_no_encode_anyone_could_mint_ciphertext_with(api: httpx.Client) -> None:
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'{"approved":true}')
    for headers in ({}, {"Authorization": "Bearer " + "g" * 43}):
        gone = api.post("/codec/encode", json=proto_json([original]), headers=headers)
        assert gone.status_code == 404, gone.text
        assert gone.json() == {"detail": "Not Found"}


def test_the_codec_server_refuses_what_it_cannot_decode(
    ui_stack: DevStack, api: httpx.Client
) -> None:
    headers = operator(ui_stack)
    foreign = Payload(metadata={"encoding": ENCODING, KEY_ID: b"k-elsewhere"}, data=b"\x00" * 40)
    refused = api.post("/codec/decode", json=proto_json([foreign]), headers=headers)
    assert refused.status_code == 400
    detail = refused.json()["detail"]
    assert "key id 'k-elsewhere'" in detail
    for key in ui_stack.settings.payload_key_ring:  # the configured ids are not told
        assert key.id not in detail
    tampered = Payload(metadata={"encoding": ENCODING, KEY_ID: b"dev-1"}, data=b"\x01" * 40)
    refused = api.post("/codec/decode", json=proto_json([tampered]), headers=headers)
    assert refused.status_code == 400 and "failed authentication" in refused.json()["detail"]
    bad = api.post(
        "/codec/decode", json={"payloads": [{"metadata": {"encoding": "!!"}}]}, headers=headers
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "payloads", 0, "metadata"]
    assert api.post("/codec/decode", json={"payload": []}, headers=headers).status_code == 422
    # What is in clear in Temporal already (search attributes, patch markers) is shown as it is.
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"COMPLETED"')
    shown = api.post("/codec/decode", json=proto_json([plain]), headers=headers)
    assert shown.json() == proto_json([plain])


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
        assert allowed.headers["access-control-allow-credentials"] == "true"
        assert "x-namespace" in allowed.headers["access-control-allow-headers"].lower()
    refused = preflight("/codec/decode", "http://evil.example")
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers  # the browser gives up here
    # A refused decode still carries the CORS headers: the UI can tell the operator why.
    unauthorized = api.post(
        "/codec/decode", json={"payloads": []}, headers={"Origin": ui_origin(ui_stack)}
    )
    assert unauthorized.status_code == 401
    assert unauthorized.headers["access-control-allow-origin"] == ui_origin(ui_stack)
    # The rest of the API, the sign-in included, is not for scripts on other origins.
    for path in ("/orders", "/codec/session"):
        assert "access-control-allow-origin" not in preflight(path, ui_origin(ui_stack)).headers


async def test_no_payment_token_or_address_reaches_a_log_or_temporals_database(
    ui_stack: DevStack, api: httpx.Client
) -> None:
    """Stops the stack to read everything it wrote (the `ui_stack` fixture starts it again for
    any test this worker runs after it)."""
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
