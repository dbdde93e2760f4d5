from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.auth import CallerDep
from api.deps import State
from api.errors import AUTH_RESPONSES, ERROR_RESPONSES, CustomerNotFound
from cloudmart.contracts.text import CustomerId
from services.loyalty.account import Statement

router = APIRouter(
    prefix="/customers", tags=["loyalty"], responses={**ERROR_RESPONSES, **AUTH_RESPONSES}
)


@router.get("/{customer_id}/loyalty", response_model=Statement)
def loyalty(
    customer_id: Annotated[CustomerId, Path()], state: State, caller: CallerDep
) -> Statement:
    """The customer's points and the latest entries of their account (at most 100, oldest
    first; a customer with none has 0 points). Loyalty
    follows the order events on its own, so a just-completed order may count a moment later.
    A customer token sees its own customer's account only (404 for any other)."""
    if not caller.sees(customer_id):
        raise CustomerNotFound(customer_id)
    return state.loyalty.statement(customer_id)
