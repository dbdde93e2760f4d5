"""What crosses into Temporal, and the worker's log, when an activity fails: a database error as
its type and code with no value quoted, on SQLite and PostgreSQL, whatever the failure converter;
our own errors as we wrote them; a library's message withheld."""

from __future__ import annotations

import dataclasses
import traceback
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.failures import WITHHELD, failures_for_temporal
from activities.payment import PaymentActivities
from cloudmart.contracts.steps import ChargePayment
from services.factory import Services
from tests.support import TEST_CONVERTER

TOKEN = f"tok_secret_{uuid.uuid4().hex[:12]}"

REFUSE_CHARGES = {
    # A trigger's message is its own: without hide_parameters, SQLAlchemy adds the row's values.
    "sqlite": "CREATE TRIGGER refuse BEFORE INSERT ON charges BEGIN SELECT RAISE(ABORT, 'no'); END",
    # PostgreSQL's own message quotes the row: DETAIL: Failing row contains (..., <token>, ...).
    "postgresql": "ALTER TABLE charges ADD CONSTRAINT refuse CHECK (amount_cents < 0) NOT VALID",
}
CODES = {
    "sqlite": "sqlite3.IntegrityError SQLITE_CONSTRAINT_TRIGGER",
    "postgresql": "psycopg.errors.CheckViolation 23514",
}

CONVERTERS = {
    "default": TEST_CONVERTER,
    "encoded attributes": dataclasses.replace(
        TEST_CONVERTER, failure_converter_class=DefaultFailureConverterWithEncodedAttributes
    ),
}


async def as_temporal_stores_it(err: BaseException, converter: DataConverter) -> bytes:
    """The failure as the worker sends it, with its encoded attributes (if any) decrypted."""
    failure = Failure()
    await converter.encode_failure(err, failure)
    seen = [failure.SerializeToString()]
    if failure.HasField("encoded_attributes"):
        assert converter.payload_codec is not None
        [attributes] = await converter.payload_codec.decode([failure.encoded_attributes])
        seen.append(attributes.data)
    return b"\n".join(seen)


def as_logged(err: BaseException) -> str:
    """What the SDK's warning prints of it (``exc_info``): the chain, messages and frames."""
    return "".join(traceback.format_exception(err))


@pytest.mark.parametrize("converter", CONVERTERS)
async def test_a_refused_charge_reaches_temporal_without_the_token(
    services: Services, backend: str, converter: str
) -> None:
    assert services.payment is not None
    with services.payment.engine.begin() as connection:
        connection.exec_driver_sql(REFUSE_CHARGES[backend])
    request = ChargePayment(
        order_id=str(uuid.uuid4()), customer_id="c-1", payment_token=TOKEN, amount_cents=100
    )
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(PaymentActivities(services.payment).charge, request)

    err = raised.value
    assert (err.type, err.non_retryable) == ("IntegrityError", False)  # retried
    assert err.message == f"database error ({CODES[backend]}); {WITHHELD}"
    assert err.__cause__ is None and err.__suppress_context__  # no chained driver message
    assert "services/payment/service.py" in as_logged(err)  # where it failed, still
    assert TOKEN not in as_logged(err)
    stored = await as_temporal_stores_it(err, CONVERTERS[converter])
    assert b"IntegrityError" in stored
    assert TOKEN.encode() not in stored


def test_engines_never_quote_parameters_in_errors(services: Services) -> None:
    assert services.payment is not None
    with pytest.raises(DBAPIError) as raised, services.payment.engine.connect() as connection:
        connection.execute(text("SELECT * FROM no_such_table WHERE token = :t"), {"t": TOKEN})
    assert TOKEN not in str(raised.value)
    assert "SQL parameters hidden" in str(raised.value)


def test_our_messages_cross_as_written_a_librarys_are_withheld() -> None:
    class Ours(RuntimeError):
        pass

    Ours.__module__ = "services.example"

    @failures_for_temporal
    def fails(err: Exception) -> None:
        try:
            raise KeyError(TOKEN)  # what the error below was raised while handling
        except KeyError:
            raise err  # noqa: B904 (implicitly chained, as a careless raise would be)

    with pytest.raises(ApplicationError) as ours:
        fails(Ours("order o-1: still changing"))
    assert (ours.value.type, ours.value.message) == ("Ours", "order o-1: still changing")
    assert not ours.value.non_retryable
    assert TOKEN not in as_logged(ours.value)  # the context it was raised in is not chained

    with pytest.raises(ApplicationError) as library:
        fails(ValueError(f"invalid literal: {TOKEN!r}"))
    assert (library.value.type, library.value.message) == ("ValueError", WITHHELD)
    assert TOKEN not in as_logged(library.value)
