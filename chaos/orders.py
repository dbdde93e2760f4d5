"""The chaos run's customers: a seeded mix of orders placed at a given concurrency, some of
them cancelled, and a background reviewer that decides every payment held for review."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from chaos.client import ChaosClient, GaveUp

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
TOKENS = ("tok_ok", "tok_ok", "tok_ok", "tok_decline", "tok_flaky", "tok_review", "tok_review")
SKUS = (
    "KB-MECH-01",
    "MOUSE-ERGO-01",
    "HEADSET-01",
    "MON-27-4K",
    "LAMP-LED-01",
    "HUB-USBC-7",
    "CAM-VINTAGE-01",  # one in stock: out-of-stock failures
)
UNKNOWN_SKU = "NO-SUCH-SKU"


@dataclass(frozen=True)
class PlannedOrder:
    n: int
    body: dict[str, Any]
    idempotency_key: str
    cancel_after: float | None
    """Seconds after placing when the customer asks to cancel (None: never)."""


def plan(count: int, seed: int) -> list[PlannedOrder]:
    rng = random.Random(seed)
    orders = []
    for n in range(count):
        items = [(sku, rng.randint(1, 3)) for sku in rng.sample(SKUS, rng.choice((1, 1, 2)))]
        if rng.random() < 0.08:
            items.append((UNKNOWN_SKU, 1))
        body = {
            "customer_id": f"chaos-{rng.randrange(40)}",
            "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
            "payment_token": rng.choice(TOKENS),
            "shipping_address": {
                "name": "Ada Lovelace",
                "line1": "Hauptstr. 1",
                "city": "Berlin",
                "postal_code": "10115",
                "country": "JP" if rng.random() < 0.05 else rng.choice(("DE", "NL", "FR")),
            },
        }
        cancel_after = rng.uniform(0, 1.5) if rng.random() < 0.15 else None
        orders.append(PlannedOrder(n, body, f"chaos-{seed}-{n}", cancel_after))
    return orders


def approves(order_id: str) -> bool:
    """The reviewer's verdict: fixed per order, two thirds approved."""
    return hashlib.sha256(order_id.encode()).digest()[0] % 3 != 0


@dataclass
class Load:
    """Places the planned orders, each customer following its own until it ends."""

    client: ChaosClient
    orders: list[PlannedOrder]
    concurrency: int
    follow_seconds: float
    """How long a customer follows its order before placing the next (the settle phase follows
    the rest): while the stack is down, new orders keep arriving, as they would."""
    order_ids: dict[int, str] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancels: dict[str, int] = field(default_factory=dict)
    """Cancel answers by status code (202 accepted, 409 too late)."""
    reviews: dict[str, int] = field(default_factory=dict)
    gave_up: list[str] = field(default_factory=list)
    done: int = 0
    """Customers who have finished (their order ended, or they stopped waiting)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def placed(self) -> int:
        return len(self.order_ids)

    def run(self, patience: float) -> None:
        """Every order placed and followed; ``patience``: how long a request may keep retrying."""
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="customer") as pool:
            for _ in pool.map(lambda o: self._customer(o, patience), self.orders):
                pass

    def _customer(self, order: PlannedOrder, patience: float) -> None:
        try:
            placed = self.client.call(
                "place",
                "POST",
                "/orders",
                json=order.body,
                headers={"Idempotency-Key": order.idempotency_key},
                deadline=time.monotonic() + patience,
            )
            if placed.status_code != 202:
                raise GaveUp(f"order {order.n}: {placed.status_code} {placed.text[:200]}")
            order_id = placed.json()["order_id"]
            with self._lock:
                self.order_ids[order.n] = order_id
            if order.cancel_after is not None:
                time.sleep(order.cancel_after)
                answer = self.client.call(
                    "cancel",
                    "POST",
                    f"/orders/{order_id}/cancel",
                    json={"reason": "changed my mind"},
                    deadline=time.monotonic() + patience,
                )
                with self._lock:
                    key = str(answer.status_code)
                    self.cancels[key] = self.cancels.get(key, 0) + 1
            self.follow(order_id, time.monotonic() + self.follow_seconds)
        except GaveUp as err:
            with self._lock:
                self.gave_up.append(str(err))
        finally:
            with self._lock:
                self.done += 1

    def follow(self, order_id: str, until: float) -> dict[str, Any] | None:
        """Poll the order until it ends or ``until``; its last state seen."""
        state = None
        while time.monotonic() < until:
            try:
                answer = self.client.call("poll", "GET", f"/orders/{order_id}", deadline=until)
            except GaveUp:
                break
            if answer.status_code == 200:
                state = answer.json()
                with self._lock:
                    self.states[order_id] = state
                if state["status"] in TERMINAL:
                    break
            time.sleep(0.3)
        return state

    def unfinished(self) -> list[str]:
        with self._lock:
            return [
                order_id
                for order_id in self.order_ids.values()
                if self.states.get(order_id, {}).get("status") not in TERMINAL
            ]

    def review_in_background(self, stop: threading.Event) -> threading.Thread:
        """A reviewer who finds the held payments on the read side and decides each."""

        def review() -> None:
            while not stop.wait(0.5):
                try:
                    self._review_once()
                except GaveUp:
                    continue

        thread = threading.Thread(target=review, name="reviewer", daemon=True)
        thread.start()
        return thread

    def _review_once(self) -> None:
        deadline = time.monotonic() + 5
        listed = self.client.call(
            "list",
            "GET",
            "/orders",
            params={"status": "AWAITING_PAYMENT_REVIEW", "page_size": 100},
            deadline=deadline,
        )
        if listed.status_code != 200:
            return
        for item in listed.json()["items"]:
            order_id = item["order_id"]
            answer = self.client.call(
                "review",
                "POST",
                f"/orders/{order_id}/payment-review",
                json={"approved": approves(order_id)},
                deadline=deadline,
            )
            with self._lock:
                key = str(answer.status_code)
                self.reviews[key] = self.reviews.get(key, 0) + 1
