"""Every process of the stack serves Prometheus metrics, and ours count what happened: a few
orders placed over HTTP, then each process's ``/metrics`` read before and after."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from devstack.stack import DevStack
from tests.system.api.test_api import order_body

DASHBOARDS = Path(__file__).parents[2] / "deploy" / "grafana" / "dashboards"
ALERTS = Path(__file__).parents[2] / "deploy" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\b((?:cloudmart|temporal)_[a-z_]+)\b")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([0-9.eE+-]+|NaN|[+-]Inf)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    samples: Samples = {}
    for line in answer.text.splitlines():
        if found := SAMPLE.match(line):
            name, labels, value = found.groups()
            samples[(name, frozenset(LABEL.findall(labels or "")))] = float(value)
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


@pytest.fixture(scope="module")
def api(dev_stack: DevStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev_stack.api_url, timeout=40) as client:
        yield client


def until(api: httpx.Client, order_id: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while (now := api.get(f"/orders/{order_id}").json()["status"]) != status:
        assert time.monotonic() < deadline, (order_id, now)
        time.sleep(0.3)


def test_each_process_serves_the_sdks_metrics_and_ours_counts_the_orders(
    api: httpx.Client, dev_stack: DevStack, as_operator: dict[str, str]
) -> None:
    """Also: the Grafana dashboards (deploy/grafana) chart only metrics these processes
    export."""
    ports = dev_stack.metrics_ports
    assert set(ports) == {"api", "worker", "worker-subscribers", "temporal"}
    before = {name: scrape(port) for name, port in ports.items() if name != "temporal"}

    outcomes = []
    for token, country in (("tok_ok", "DE"), ("tok_ok", "DE"), ("tok_ok", "JP")):
        body = order_body(items=[("CABLE-USBC-2M", 1)], token=token, country=country)
        placed = api.post("/orders", json=body, params={"wait": 20})
        assert placed.status_code == 202, placed.text
        outcomes.append(placed.json()["state"]["status"])
    assert outcomes == ["COMPLETED", "COMPLETED", "FAILED"]
    # And one that gets stuck (a refund refused for good), resolved by the operator.
    stuck = order_body(items=[("CABLE-USBC-2M", 1)], token="tok_norefund", country="JP")
    stuck_id = api.post("/orders", json=stuck).json()["order_id"]
    until(api, stuck_id, "COMPENSATION_STUCK")
    resolution = {"step": "payment.refund", "note": "refunded by hand"}
    resolved = api.post(
        f"/orders/{stuck_id}/compensation/resolve", json=resolution, headers=as_operator
    )
    assert resolved.status_code == 202, resolved.text
    until(api, stuck_id, "FAILED")
    time.sleep(6)  # the subscribers measure their lag every 5 s (services/lag_metrics.py)

    after = {name: scrape(port) for name, port in ports.items()}

    api_now, api_then = after["api"], before["api"]
    posted = total(api_now, "cloudmart_api_requests", route="/orders", method="POST", status="202")
    assert posted - total(api_then, "cloudmart_api_requests", route="/orders", status="202") >= 3
    assert total(api_now, "cloudmart_api_request_latency_count", route="/orders") >= 3
    assert "temporal_request" in names(api_now)  # the SDK's client metrics, same endpoint

    worker, then = after["worker"], before["worker"]

    def grew(name: str, **labels: str) -> float:
        return total(worker, name, **labels) - total(then, name, **labels)

    assert grew("cloudmart_orders_started") >= 4
    assert grew("cloudmart_orders_stuck", kind="compensation") >= 1
    assert grew("cloudmart_compensations", step="payment.refund", outcome="RESOLVED") >= 1
    assert grew("cloudmart_orders_ended", outcome="COMPLETED") >= 2
    assert grew("cloudmart_orders_ended", outcome="FAILED") >= 1
    assert grew("cloudmart_step_latency_count", step="payment.charge", outcome="COMPLETED") >= 3
    assert grew("cloudmart_step_latency_count", step="shipping.create", outcome="FAILED") >= 1
    assert grew("cloudmart_compensations", step="payment.refund", outcome="COMPLETED") >= 1
    assert grew("cloudmart_compensations", step="inventory.release", outcome="COMPLETED") >= 1
    sdk = names(worker)
    assert {"temporal_workflow_task_execution_latency_bucket", "temporal_sticky_cache_size"} <= sdk

    subscribers = after["worker-subscribers"]
    assert ("cloudmart_subscriber_lag", frozenset({("subscriber", "projector")})) in subscribers
    stuck_now = {dict(labels)["status"] for name, labels in subscribers if "stuck_now" in name}
    assert stuck_now == {"COMPENSATION_STUCK", "STEP_STUCK"}

    assert len(after["temporal"]) > 0  # the dev server's own metrics

    # A dashboard charting a metric nobody exports shows an empty panel and no error.
    exported = set().union(
        *(names(after[name]) for name in ("api", "worker", "worker-subscribers"))
    )
    for dashboard in sorted(DASHBOARDS.glob("*.json")):
        panels = json.loads(dashboard.read_text())["panels"]
        charted = {
            m for panel in panels for t in panel["targets"] for m in METRIC.findall(t["expr"])
        }
        assert charted, dashboard.name
        assert charted <= exported, (dashboard.name, sorted(charted - exported))
    # The same for the alerts: one on a metric nobody exports would never fire.
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    for rule in rules:
        watched = set(METRIC.findall(rule["expr"]))
        assert watched and watched <= exported, (rule["alert"], sorted(watched - exported))


DASHBOARDS = Path(__file__).parents[2] / "deploy" / "grafana" / "dashboards"
ALERTS = Path(__file__).parents[2] / "deploy" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\b((?:cloudmart|temporal)_[a-z_]+)\b")
