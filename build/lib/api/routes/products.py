from __future__ import annotations

from fastapi import APIRouter

from api.deps import State
from api.errors import ERROR_RESPONSES
from cloudmart.contracts.steps import ProductView

router = APIRouter(tags=["catalog"], responses=ERROR_RESPONSES)


@router.get("/products", response_model=list[ProductView])
def list_products(state: State) -> list[ProductView]:
    """The catalog with live stock: on hand (free to order) and reserved (held by sagas)."""
    return state.catalog.list_products()
