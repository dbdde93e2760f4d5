"""The API with its dependencies down: clear 503s in JSON, never a 500 or a stack trace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.protobuf.any_pb2 import Any
from temporalio.api.common.v1 import GrpcStatus
from temporalio.api.errordetails.v1 import WorkflowNotReadyFailure
from temporalio.service import RPCError, RPCStatusCode

from api.errors import Unavailable
from api.sagas import Sagas
from cloudmart.temporal import is_unreachable
from devstack.processes import free_port
from devstack.stack import DevStack, throwaway_settings
from services.database import create_db_engine
from services.migrations import upgrade
from tests.support import api_process, worker_process
from tests.system.api.test_api import order_body, wait_for

OPERATOR_TOKEN = "degraded-operator-" + "x" * 24


@pytest.fixture(scope="module")
def degraded_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str]]:
    """An API whose Temporal is not running and whose payment database cannot be opened; the
    read side and the event store are migrated, loyalty's database is not."""
    data = tmp_path_factory.mktemp("degraded")
    unopenable = data / "payment.db"
    unopenable.mkdir()  # a directory where the database file should be
    dead_temporal = f"127.0.0.1:{free_port()}"
    settings = throwaway_settings(
        data,
        temporal_address=dead_temporal,
        payment_db_url=f"sqlite:///{unopenable}",
        operator_token=OPERATOR_TOKEN,
    )
    for name in ("event_store", "readmodel"):
        engine = create_db_engine(settings.db_url(name), pool_size=1)
        upgrade(name, engine)
        engine.dispose()
    with api_process(settings) as api:
        yield api, dead_temporal


def test_placing_an_order_while_temporal_is_down_is_a_clear_503(degraded_api) -> None:
    api, address = degraded_api
    response = api.post("/orders", json=order_body())
    assert response.status_code == 503
    assert response.json() == {"detail": f"Temporal is unreachable at {address}; try again shortly"}


@pytest.mark.parametrize("params", [{}, {"wait": 5}])
def test_live_saga_state_while_temporal_is_down_is_503(degraded_api, params) -> None:
    api, address = degraded_api
    response = api.get("/orders/00000000-0000-4000-8000-000000000000", params=params)
    assert response.status_code == 503
    assert address in response.json()["detail"]


@pytest.mark.parametrize("path", ["/orders", "/products", "/stats"])
def test_the_read_side_answers_while_temporal_is_down(degraded_api, path: str) -> None:
    """CQRS: listing, search and stats come from projections, not from the saga engine."""
    api, _ = degraded_api
    response = api.get(path)
    assert response.status_code == 200, response.text


def test_health_names_what_is_down_to_the_operator(degraded_api) -> None:
    api, address = degraded_api
    response = api.get("/healthz", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["temporal"].startswith(f"unreachable at {address}")
    assert body["checks"]["payment_db"].startswith("unreachable: ")
    assert body["checks"]["inventory_db"] == "ok"
    assert body["checks"]["shipping_db"] == "ok"
    assert body["checks"]["readmodel_db"] == "ok"
    # The read side is independent of Temporal: its progress is still reported.
    assert body["projections"] == {"position": 0, "events_behind": 0, "lag_ms": None}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-operator-token-0000000000"}, {"Authorization": "x"}],
)
def test_health_tells_anyone_else_only_what_is_down(degraded_api, headers) -> None:
    """Temporal's address and the databases' errors (their paths, hosts) are the operator's."""
    api, address = degraded_api
    response = api.get("/healthz", headers=headers)
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {
            "temporal": "unavailable",
            "event_store_db": "ok",
            "inventory_db": "ok",
            "payment_db": "unavailable",
            "shipping_db": "ok",
            "readmodel_db": "ok",
            "loyalty_db": "ok",
            "customers_db": "ok",
            "audit_db": "ok",
        },
        "projections": {"position": 0, "events_behind": 0, "lag_ms": None},
    }
    assert address.split(":")[1] not in response.text


def test_loyalty_without_an_initialised_database_is_503(degraded_api) -> None:
    api, _ = degraded_api  # nothing created loyalty's tables: no worker ever ran here
    response = api.get("/customers/c-1/loyalty")
    assert response.status_code == 503
    assert response.json() == {"detail": "a service database is unavailable; see /healthz"}


def test_an_order_whose_worker_is_down_is_a_clear_503_and_a_retry_is_safe(
    dev_stack: DevStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Temporal is up, but no worker polls this deployment's task queues (yet)."""
    settings = throwaway_settings(
        tmp_path_factory.mktemp("no-worker"),
        temporal_address=dev_stack.settings.temporal_address,
        task_queue_prefix=f"late-worker-{uuid.uuid4().hex[:6]}",
    )
    with api_process(settings) as api:
        placed = api.post("/orders", json=order_body(token="tok_review"))
        assert placed.status_code == 202  # accepted: the saga waits for a worker
        order_id = placed.json()["order_id"]
        # Waiting on it cannot say more, but the order is placed all the same: a 202, no state.
        waited = api.post("/orders", json=order_body(token="tok_review"), params={"wait": 0.5})
        assert waited.status_code == 202, waited.text
        assert (waited.json()["status"], waited.json()["state"]) == ("PENDING", None)
        for method, path in (
            ("GET", f"/orders/{order_id}"),
            ("POST", f"/orders/{order_id}/cancel"),
        ):
            response = api.request(method, path)
            assert response.status_code == 503
            assert response.json()["detail"].endswith("is the worker running?")

        # The 503 meant "outcome unknown": the saga may still get that cancel. A worker comes
        # up, the client retries, and the order is cancelled once.
        with worker_process(settings):
            retry = api.post(f"/orders/{order_id}/cancel")
            assert retry.status_code == 202, retry.text
            state = wait_for(api, order_id)
    # Cancelled once, whichever request reached the saga. The first one (the 503's) reaches it
    # in its first workflow task, before any step, if the server still holds it: Temporal keeps
    # an update it admitted in memory only, and under load it may have dropped it. Then the
    # retry cancels the steps that had begun meanwhile, and their compensations undo them.
    assert state["status"] == "CANCELLED" and state["failure"] is None
    assert all(c["status"] == "COMPLETED" for c in state["compensations"])
    assert (state["steps"] == []) is (state["compensations"] == [])


def test_a_call_cut_off_by_a_dying_server_is_unreachable_not_an_error() -> None:
    """What a query gets when Temporal is SIGKILLed under it (found by the chaos run as a 500):
    a 503, try again; a refused request stays an error."""
    assert is_unreachable(RPCError("h2 protocol error: http2 error", RPCStatusCode.CANCELLED, b""))
    assert not is_unreachable(RPCError("bad", RPCStatusCode.INVALID_ARGUMENT, b""))


async def test_a_saga_whose_workflow_task_is_being_retried_is_a_503_not_a_500(
    tmp_path: Path,
) -> None:
    """What a query gets while a killed worker's workflow task waits for its retry (found by the
    chaos run as a 500): the server's FAILED_PRECONDITION with WorkflowNotReadyFailure."""
    not_ready = GrpcStatus(
        code=RPCStatusCode.FAILED_PRECONDITION,
        message="Unable to query workflow due to Workflow Task in failed state.",
        details=[
            Any(type_url=f"type.googleapis.com/{WorkflowNotReadyFailure.DESCRIPTOR.full_name}")
        ],
    )
    sagas = Sagas(None, throwaway_settings(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(Unavailable, match="is recovering"):
        async with sagas._answers("o-1", "query"):
            raise RPCError(
                not_ready.message, RPCStatusCode.FAILED_PRECONDITION, not_ready.SerializeToString()
            )
    with pytest.raises(Unavailable, match="is the worker running"):  # also found by chaos
        async with sagas._answers("o-1", "query"):
            raise RPCError(
                "no poller seen for task queue recently, worker may be down",
                RPCStatusCode.FAILED_PRECONDITION,
                GrpcStatus(code=9).SerializeToString(),
            )
    with pytest.raises(RPCError):  # any other precondition is not a reason to retry
        async with sagas._answers("o-1", "query"):
            raise RPCError(
                "other", RPCStatusCode.FAILED_PRECONDITION, GrpcStatus(code=9).SerializeToString()
            )
