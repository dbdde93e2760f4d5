"""The chaos run's customers: a seeded mix of orders placed at a given concurrency, some of
them cancelled, some returned (in part or whole) once completed, and a background reviewer that
decides every payment held for review."""

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
RETURN_ENDS = frozenset({"RETURNED", "REJECTED"})
TRANSIT = 1.0
"""Seconds between the parcel's label and its inspection (the parcel on its way)."""
SAFE_SKUS = ("KB-MECH-01", "MOUSE-ERGO-01", "HEADSET-01", "LAMP-LED-01", "HUB-USBC-7")
"""Products of which the run never runs out: the orders planned to be returned buy these."""
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
    give_back: PlannedReturn | None = None
    """What the customer returns once the order has completed (None: nothing)."""


@dataclass(frozen=True)
class PlannedReturn:
    whole: bool
    """Every line, or one unit of the first line."""
    accept: bool
    """The warehouse's verdict on the parcel."""


def plan(count: int, seed: int, returns: int = 0) -> list[PlannedOrder]:
    """``count`` orders; ``returns`` of them (paid and shipped without fail) to be returned once
    completed: part or whole, a third of them rejected at inspection, and the first accepted one
    paid with ``tok_norefund``, whose refund the provider refuses for good."""
    orders = _orders(count, seed)
    picker = random.Random(f"returns-{seed}")  # its own: the orders' mix stays the seed's
    for i, n in enumerate(sorted(picker.sample(range(count), min(returns, count)))):
        accept = i % 3 != 1
        body = {**orders[n].body, "payment_token": "tok_norefund" if i == 0 else "tok_ok"}
        body["shipping_address"] = {**body["shipping_address"], "country": "DE"}
        body["items"] = [
            {"sku": sku, "quantity": picker.randint(1, 2)}
            for sku in picker.sample(SAFE_SKUS, picker.choice((1, 2)))
        ]
        give_back = PlannedReturn(whole=i % 2 == 0, accept=accept)
        orders[n] = PlannedOrder(n, body, orders[n].idempotency_key, None, give_back)
    return orders


def _orders(count: int, seed: int) -> list[PlannedOrder]:
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
    returns: dict[str, PlannedReturn] = field(default_factory=dict)
    """The returns requested, by id: what the warehouse will say of each."""
    return_views: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each return's last view (``GET /returns/{id}``)."""
    inspections: dict[str, int] = field(default_factory=dict)
    """Inspection answers by status code (202 done, 409 already inspected by a retry)."""
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
            # A customer who means to return the order waits until it has ended: the return
            # then runs while the faults go on.
            following = self.follow_seconds if order.give_back is None else patience
            state = self.follow(order_id, time.monotonic() + following)
            if order.give_back is not None and state and state["status"] == "COMPLETED":
                self._give_back(order_id, state, order.give_back, patience)
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

    def _give_back(
        self, order_id: str, state: dict[str, Any], planned: PlannedReturn, patience: float
    ) -> None:
        """Return the completed order's lines (all, or one unit of the first), then act as the
        warehouse once the parcel is labelled; follow the return while it runs."""
        items = state["items"] if planned.whole else [{**state["items"][0], "quantity": 1}]
        lines = [{"sku": item["sku"], "quantity": item["quantity"]} for item in items]
        answer = self.client.call(
            "return",
            "POST",
            f"/orders/{order_id}/returns",
            json={"lines": lines, "reason": "chaos"},
            deadline=time.monotonic() + patience,
        )
        if answer.status_code != 201:
            raise GaveUp(f"return of {order_id}: {answer.status_code} {answer.text[:200]}")
        return_id = answer.json()["return_id"]
        with self._lock:
            self.returns[return_id] = planned
        self.follow_return(return_id, time.monotonic() + patience)

    def follow_return(self, return_id: str, until: float) -> dict[str, Any] | None:
        """Poll the return until it ends or is stuck, or ``until``, inspecting its parcel once
        labelled; its last view."""
        view = None
        while time.monotonic() < until:
            try:
                answer = self.client.call("poll", "GET", f"/returns/{return_id}", deadline=until)
                if answer.status_code != 200:
                    break
                view = answer.json()
                with self._lock:
                    self.return_views[return_id] = view
                if view["status"] in RETURN_ENDS or view["stuck"]:
                    break
                if view["status"] == "AWAITING_INSPECTION":
                    time.sleep(TRANSIT)
                    self._inspect(return_id, until)
                    continue
            except GaveUp:
                break
            time.sleep(0.3)
        return view

    def _inspect(self, return_id: str, until: float) -> None:
        accept = self.returns[return_id].accept
        body = {"accepted": accept, "note": "as described" if accept else "worn"}
        answer = self.client.call(
            "inspect", "POST", f"/returns/{return_id}/inspection", json=body, deadline=until
        )
        with self._lock:
            key = str(answer.status_code)
            self.inspections[key] = self.inspections.get(key, 0) + 1

    def returning(self) -> int:
        """Returns requested and not yet ended (or stuck), as last seen."""
        with self._lock:
            return sum(
                1 for return_id in self.returns if not _settled(self.return_views.get(return_id))
            )

    def unsettled_returns(self) -> list[str]:
        with self._lock:
            return [r for r in self.returns if not _settled(self.return_views.get(r))]

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


def _settled(view: dict[str, Any] | None) -> bool:
    return view is not None and (view["status"] in RETURN_ENDS or bool(view["stuck"]))
