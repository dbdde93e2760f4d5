"""An order at a point of its past: the aggregate's fold over its events up to a sequence number
or a time, as a pure function (the route's parsing of ``as_of`` is tested over HTTP)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cloudmart.contracts.events import EventType
from cloudmart.contracts.orders import OrderStatus
from services.event_store.aggregate import replay
from services.event_store.as_of import events_as_of, order_as_of
from tests.unit.test_order_aggregate import PLACED, T0, story

# Held for review, approved, completed: event n occurred at T0 + n seconds.
REVIEWED = story(
    (EventType.ORDER_PLACED, PLACED),
    (EventType.INVENTORY_RESERVED, {"lines": [], "total_cents": 2000}),
    (EventType.FRAUD_CHECK_PASSED, {"score": 0, "reasons": []}),
    (EventType.PAYMENT_REVIEW_REQUESTED, {"amount_cents": 2000}),
    (EventType.PAYMENT_REVIEWED, {"approved": True}),
    (EventType.PAYMENT_CHARGED, {"amount_cents": 2000}),
    (EventType.SHIPMENT_CREATED, {"tracking_number": "CM-1", "country": "DE"}),
    (EventType.INVENTORY_COMMITTED, {"lines": []}),
    (EventType.ORDER_COMPLETED, {"total_cents": 2000}),
)


def test_as_of_a_sequence_the_order_is_the_fold_of_the_events_numbered_up_to_it() -> None:
    held = order_as_of("o-1", REVIEWED, 4)
    assert held.state is not None
    assert (held.state.status, held.state.version, held.state.tracking_number) == (
        OrderStatus.AWAITING_PAYMENT_REVIEW,
        4,
        None,
    )
    assert (held.sequence, held.occurred_at, held.source) == (
        4,
        T0 + timedelta(seconds=4),
        "event_store",
    )
    assert held.state == replay("o-1", REVIEWED[:4])  # the same fold as the whole story's


def test_as_of_a_time_the_events_at_or_before_it_count() -> None:
    at_the_review = order_as_of("o-1", REVIEWED, T0 + timedelta(seconds=4))
    just_before = order_as_of("o-1", REVIEWED, T0 + timedelta(seconds=4, microseconds=-1))
    assert at_the_review.state is not None and just_before.state is not None
    assert at_the_review.state.status is OrderStatus.AWAITING_PAYMENT_REVIEW
    assert (just_before.state.status, just_before.sequence) == (OrderStatus.CHARGING_PAYMENT, 3)


@pytest.mark.parametrize("as_of", [None, 9, 10**30, T0 + timedelta(days=365)])
def test_as_of_now_or_later_is_the_whole_story(as_of) -> None:
    final = order_as_of("o-1", REVIEWED, as_of)
    assert final.state == replay("o-1", REVIEWED)
    assert final.state is not None and final.state.status is OrderStatus.COMPLETED
    assert (final.sequence, final.as_of) == (9, as_of)


@pytest.mark.parametrize("as_of", [0, T0, T0 - timedelta(days=1)])
def test_before_the_order_was_placed_there_is_no_state_not_an_invented_one(as_of) -> None:
    """The aggregate's initial state says PENDING for customer "": an order that did not exist
    yet was not pending."""
    before = order_as_of("o-1", REVIEWED, as_of)
    assert (before.state, before.sequence, before.occurred_at) == (None, 0, None)


def test_an_order_with_no_stored_events_has_no_state() -> None:
    assert order_as_of("o-1", [], None).state is None


def test_the_story_ends_at_the_first_event_past_the_point() -> None:
    """A prefix, never a filter: a later event timed earlier (which the saga's clock never
    writes) does not make a state the order never had."""
    skewed = [*REVIEWED[:3], REVIEWED[3].model_copy(update={"occurred_at": T0})]
    assert [e.sequence for e in events_as_of(skewed, T0 + timedelta(seconds=2))] == [1, 2]
