"""Business failures: a step's rules said no, so retrying cannot help and the saga compensates.

Services raise these; activities turn them into non-retryable Temporal ``ApplicationError``s
whose ``type`` is the class name, and the workflow reports that type and message as the order's
failure. Anything else an activity raises is treated as transient and retried.
"""

from __future__ import annotations


class BusinessFailure(Exception):
    """Base of every typed, non-retryable failure."""

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__


class UnknownSku(BusinessFailure):
    pass


class OutOfStock(BusinessFailure):
    pass


class PaymentDeclined(BusinessFailure):
    pass


class FraudSuspected(BusinessFailure):
    """The fraud screen scored the order too risky to charge."""


class PaymentReviewRejected(BusinessFailure):
    pass


class PaymentReviewTimedOut(BusinessFailure):
    pass


class Undeliverable(BusinessFailure):
    pass


class AbortedByOperator(BusinessFailure):
    """An operator aborted the order while one of its steps was stuck (``POST
    /orders/{id}/abort``): raised by the saga itself, which then compensates what was done."""


class AccountClosed(BusinessFailure):
    """The order's customer has closed their account (or it was a guest's, cancelled): a closed
    account places no orders."""


class EmailTaken(BusinessFailure):
    """A guest checkout (or a registration) with an e-mail another account already uses."""


class AlreadyCompensated(BusinessFailure):
    """A forward step arrived after its compensation had run for the same order (a late retry).

    The compensation left a tombstone; the step is refused so that nothing is reserved, charged
    or shipped for an order that was already undone.
    """


class InvalidTransition(BusinessFailure):
    """A step that contradicts what already happened to the order (e.g. committing a release)."""


BUSINESS_FAILURES: tuple[type[BusinessFailure], ...] = (
    UnknownSku,
    OutOfStock,
    PaymentDeclined,
    FraudSuspected,
    PaymentReviewRejected,
    PaymentReviewTimedOut,
    Undeliverable,
    AbortedByOperator,
    AccountClosed,
    EmailTaken,
    AlreadyCompensated,
    InvalidTransition,
)
