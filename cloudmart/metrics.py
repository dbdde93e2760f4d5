"""Prometheus metrics: one endpoint per process, serving the Temporal SDK's own metrics (task
latencies, slots, the sticky cache, request latency) and ours, through the SDK's runtime.

A process serves them when ``CLOUDMART_METRICS_ADDRESS`` names where (``make up`` gives each
process its own port; docs/operations.md lists them). Our instruments come from a meter: the
runtime's in the API and the subscribers, ``workflow.metric_meter()`` in the saga (it records
nothing while a worker replays a history, so a restart counts no order twice).

Names (each also ``cloudmart_*`` in Prometheus; durations in milliseconds):

- ``cloudmart_orders_started``, ``cloudmart_orders_ended{outcome}``: the sagas' starts and ends;
- ``cloudmart_step_latency{step,outcome}``: a step from its first attempt to its result;
- ``cloudmart_compensations{step,outcome}``: compensations as they end;
- ``cloudmart_orders_stuck{kind}``: orders declared stuck (a compensation or a step);
- ``cloudmart_orders_stuck_now{status}``: orders stuck now, from the read side;
- ``cloudmart_subscriber_lag{subscriber}``: events in the store a subscriber has not handled;
- ``cloudmart_api_requests{route,method,status}``, ``cloudmart_api_request_latency{route}``.
"""

from __future__ import annotations

import functools
import logging

from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from cloudmart.settings import Settings

log = logging.getLogger("cloudmart.metrics")

LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
"""From a database write (milliseconds) to a step retried for a minute."""
HISTOGRAMS = ("cloudmart_step_latency", "cloudmart_api_request_latency")

ORDERS_STARTED = "cloudmart_orders_started"
ORDERS_ENDED = "cloudmart_orders_ended"
STEP_LATENCY = "cloudmart_step_latency"
COMPENSATIONS = "cloudmart_compensations"
ORDERS_STUCK = "cloudmart_orders_stuck"
ORDERS_STUCK_NOW = "cloudmart_orders_stuck_now"
SUBSCRIBER_LAG = "cloudmart_subscriber_lag"
API_REQUESTS = "cloudmart_api_requests"
API_REQUEST_LATENCY = "cloudmart_api_request_latency"


@functools.cache
def _runtime(address: str) -> Runtime:
    config = PrometheusConfig(
        bind_address=address,
        histogram_bucket_overrides={name: LATENCY_BUCKETS_MS for name in HISTOGRAMS},
    )
    log.info("metrics at http://%s/metrics", address)
    # Which process it is, Prometheus says (its job and instance labels).
    return Runtime(telemetry=TelemetryConfig(metrics=config, attach_service_name=False))


def runtime(settings: Settings) -> Runtime | None:
    """This process's runtime serving metrics at ``settings.metrics_address``; None when it
    serves none (the SDK's default runtime is used then). One per process, whoever asks."""
    if not settings.metrics_address:
        return None
    return _runtime(settings.metrics_address)


def meter(settings: Settings) -> MetricMeter:
    """The process's meter for our instruments (a no-op one when metrics are off)."""
    served = runtime(settings)
    return served.metric_meter if served is not None else MetricMeter.noop
