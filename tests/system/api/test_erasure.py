"""The right to be forgotten, end to end over the real stack: a registered customer and a guest
each order (to a street of their own) and are erased by the operator; soon after, not one file
of the stack's (its SQLite databases with their write-ahead logs, the activity journal, the
logs) holds their names, e-mails, streets or postcodes; their orders still read COMPLETED, the money
taken is still recorded, and the audit log still verifies (``make audit-verify``).

Temporal's own history is not searched: it keeps the sagas' inputs (a guest's name and e-mail,
every shipping address) encrypted with the deployment's payload key until the namespace's
retention removes the closed workflows (docs/customers.md, "Sealing and erasure"). The test
stack's dev server keeps it in memory; a persisted one's file, ``temporal.db``, is left out by
name below.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from cloudmart.settings import Settings
from devstack.stack import settings_env
from tests.support import operator_headers
from tests.system.api.test_api import order_body
from tests.system.api.test_auth import bearer

WAIT = {"wait": 10}
ERASED_WITHIN = 20.0
"""Seconds: the subscribers poll every 50 ms once caught up; this is the test's patience."""
TEMPORALS_OWN = {"temporal.db", "temporal.db-wal", "temporal.db-shm", "temporal.db-journal"}
"""The dev server's history (persisted stacks only): outside what an erasure reaches."""


class Person:
    """Someone with details found nowhere else in the stack: each value is searched for."""

    def __init__(self, role: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.name = f"Zebulon {role.title()} Erasable{tag}"
        self.email = f"zeb.{role}.{tag}@forget-me.example"
        self.street = f"Vergessenweg {tag}"
        self.city = f"Ohnespur{tag}"
        self.postcode = f"ZQ{tag[:6]}"

    @property
    def address(self) -> dict[str, str]:
        return {
            "name": self.name,
            "line1": self.street,
            "city": self.city,
            "postal_code": self.postcode,
            "country": "DE",
        }

    def secrets(self) -> dict[str, bytes]:
        return {
            "name": self.name.encode(),
            "surname": self.name.split()[-1].encode(),
            "e-mail": self.email.encode(),
            "street": self.street.encode(),
            "city": self.city.encode(),
            "postcode": self.postcode.encode(),
        }


def stack_files(settings: Settings) -> Iterator[Path]:
    """Every file of the stack: all under its data directory (the SQLite files and their
    -wal/-shm companions, the logs) and the activity journal, bar Temporal's own."""
    roots = {settings.data_dir, settings.activity_journal}
    seen: set[Path] = set()
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name not in TEMPORALS_OWN and path not in seen:
                seen.add(path)
                yield path


def found(settings: Settings, people: list[Person]) -> list[str]:
    """Where any of the people's details still are: ``file: whose what``."""
    hits = []
    for path in stack_files(settings):
        try:
            content = path.read_bytes().lower()
        except FileNotFoundError:  # a -wal/-shm file removed while we looked
            continue
        for person in people:
            for what, value in person.secrets().items():
                if value.lower() in content:
                    hits.append(f"{path.relative_to(settings.data_dir)}: {person.name}'s {what}")
    return hits


def test_an_erased_customers_details_are_gone_from_every_store(
    anonymous: httpx.Client, auth_settings: Settings
) -> None:
    operator = operator_headers(auth_settings)
    customer, guest = Person("customer"), Person("guest")

    # A registered customer, with an address in the profile, orders to it.
    registered = anonymous.post(
        "/customers",
        json={"name": customer.name, "email": customer.email, "address": customer.address},
    )
    assert registered.status_code == 201, registered.text
    customer_id = registered.json()["customer"]["customer_id"]
    mine = bearer(registered.json()["token"])
    body = {**order_body(customer=customer_id), "shipping_address": customer.address}
    placed = anonymous.post("/orders", json=body, params=WAIT, headers=mine)
    assert placed.status_code == 202, placed.text
    assert placed.json()["state"]["status"] == "COMPLETED", placed.json()
    orders = [placed.json()["order_id"]]

    # A guest checks out: the saga opens the guest's account.
    body = order_body()
    del body["customer_id"]
    body |= {
        "guest": {"name": guest.name, "email": guest.email},
        "shipping_address": guest.address,
    }
    placed = anonymous.post("/orders", json=body, params=WAIT, headers={"Idempotency-Key": "e-1"})
    assert placed.status_code == 202, placed.text
    assert placed.json()["state"]["status"] == "COMPLETED", placed.json()
    orders.append(placed.json()["order_id"])
    guest_id = placed.json()["customer_id"]

    people = [customer, guest]
    before = found(auth_settings, people)
    assert any("shipping.db" in hit and "street" in hit for hit in before), before

    for who in (customer_id, guest_id):
        erased = anonymous.post(f"/customers/{who}/erase", headers=operator)
        assert erased.status_code == 200, erased.text
        assert erased.json()["erased"] is True

    deadline = time.monotonic() + ERASED_WITHIN
    while (left := found(auth_settings, people)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"still readable {ERASED_WITHIN:.0f} s after the erasures: {left}"

    # What an erasure must not touch: the orders, the money taken, the audit log.
    payment = create_engine(auth_settings.db_url("payment"))
    try:
        for order_id in orders:
            order = anonymous.get(f"/orders/{order_id}", headers=operator)
            assert order.status_code == 200 and order.json()["status"] == "COMPLETED", order.text
            with payment.connect() as connection:
                charge: Any = connection.execute(
                    text("SELECT status, amount_cents FROM charges WHERE order_id = :o"),
                    {"o": order_id},
                ).one()
            assert charge.amount_cents > 0
    finally:
        payment.dispose()
    verify = subprocess.run(
        [sys.executable, "-m", "services.audit.verify"],
        env=settings_env(auth_settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.startswith("audit log intact"), verify.stdout
