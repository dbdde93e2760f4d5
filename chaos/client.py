"""The chaos run's HTTP client: it rides out a stack that is failing on purpose.

A 503 (Temporal or a worker or a database down) or a dropped connection is retried until a
deadline, and counted; anything else the API answers is returned to the caller. Orders are
placed with an Idempotency-Key, so a retry after a lost answer never places a second order.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx

RETRYABLE = (httpx.TransportError,)  # connection refused/reset, timeouts, a dropped answer


class GaveUp(RuntimeError):
    """The API did not answer usefully before the deadline."""


class ChaosClient:
    def __init__(
        self, base_url: str, *, timeout: float = 15, operator_token: str | None = None
    ) -> None:
        # The run reviews held payments, an operator action: it calls the API as the operator
        # (whose token every route accepts).
        headers = {"Authorization": f"Bearer {operator_token}"} if operator_token else {}
        self._http = httpx.Client(base_url=base_url, timeout=timeout, headers=headers)
        self._lock = threading.Lock()
        self.retries: Counter[str] = Counter()
        """503s and dropped connections per kind of request (place, cancel, review, poll, list):
        each is retried, unless the caller's deadline has passed (a customer who stops
        following an order; the settle phase follows it again)."""
        self.unexpected: list[str] = []
        """Answers the API must never give (a 5xx other than 503)."""

    def close(self) -> None:
        self._http.close()

    def call(
        self, kind: str, method: str, path: str, *, deadline: float, **kwargs: Any
    ) -> httpx.Response:
        """The first answer that is not a 503 or a transport error; retried until ``deadline``."""
        pause = 0.2
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
                if response.status_code != 503:
                    if response.status_code >= 500:
                        with self._lock:
                            self.unexpected.append(
                                f"{method} {path}: {response.status_code} {response.text[:200]}"
                            )
                    return response
                why = f"503 {response.text[:120]}"
            except RETRYABLE as err:
                why = f"{type(err).__name__}: {err}"
            with self._lock:
                self.retries[kind] += 1
            if time.monotonic() > deadline:
                raise GaveUp(f"{method} {path}: still failing at the deadline ({why})")
            time.sleep(pause)
            pause = min(pause * 1.5, 2.0)
