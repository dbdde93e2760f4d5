"""The API's requests, counted by route, method and status, and timed by route
(``cloudmart_api_requests``, ``cloudmart_api_request_latency``: cloudmart/metrics.py).

By the route's path template (``/orders/{order_id}``), never the path itself: an order id per
label value would grow the series without bound."""

from __future__ import annotations

import time
from datetime import timedelta

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.common import MetricMeter

from cloudmart import metrics

UNROUTED = "(no route)"


class RequestMetrics:
    def __init__(self, app: ASGIApp, meter: MetricMeter) -> None:
        self.app = app
        self._requests = meter.create_counter(
            metrics.API_REQUESTS, "API requests answered, by route, method and status"
        )
        self._latency = meter.create_histogram_timedelta(
            metrics.API_REQUEST_LATENCY, "API requests, from arrival to the answer's start", "ms"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app fails before answering

        async def answering(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed = timedelta(seconds=time.perf_counter() - started)
                self._latency.record(elapsed, {"route": _route(scope)})
            await send(message)

        try:
            await self.app(scope, receive, answering)
        finally:
            labels = {"route": _route(scope), "method": scope["method"], "status": str(status)}
            self._requests.add(1, labels)


def _route(scope: Scope) -> str:
    return getattr(scope.get("route"), "path", None) or UNROUTED
