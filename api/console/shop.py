"""The shopper's pages: the catalog, a product, the cart and checkout, and 'My account'."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.console.common import (
    DEMO_CUSTOMERS,
    DESTINATIONS,
    PAYMENT_TOKENS,
    ConsoleDep,
    FormSession,
    SessionDep,
    app_state,
    go,
    page,
    post_then,
    refused,
)
from api.console.session import PATH

router = APIRouter(prefix=PATH)

SORTS = {"name": "name", "price": "price, lowest first", "rating": "rating, highest first"}


def _search_params(**given: str | None) -> dict[str, str]:
    return {name: value for name, value in given.items() if value not in (None, "")}


@router.get("", response_class=HTMLResponse)
async def shop(
    request: Request,
    console: ConsoleDep,
    session: SessionDep,
    q: Annotated[str | None, Query()] = None,
    category: Annotated[str | None, Query()] = None,
    min_price: Annotated[str | None, Query()] = None,
    max_price: Annotated[str | None, Query()] = None,
    min_rating: Annotated[str | None, Query()] = None,
    sort: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    """The catalog from the read side's ``product_search``, searched as ``GET /products`` is
    (the filters' errors are its 422s). Prices are typed in euros and asked for in cents."""
    filters = _search_params(
        q=q,
        category=category,
        min_price=min_price,
        max_price=max_price,
        min_rating=min_rating,
        sort=sort,
    )
    params = dict(filters)
    for bound in ("min_price", "max_price"):
        if bound in params:
            params[bound] = _cents(params[bound])
    answer = await console.backend.call(request, session, "GET", "/products", params=params)
    everything = await console.backend.call(request, session, "GET", "/products")
    categories = sorted({p["category"] for p in everything.body} if everything.ok else set())
    if not answer.ok:
        return refused(request, console, session, answer, filters=filters)
    return page(
        request,
        console,
        session,
        "shop.html",
        products=answer.body,
        filters=filters,
        categories=categories,
        sorts=SORTS,
    )


def _cents(euros: str) -> str:
    """'12.50' → '1250'; anything else is passed on for the API to refuse by name."""
    try:
        return str(round(float(euros) * 100))
    except ValueError:
        return euros


@router.get("/products/{sku}", response_class=HTMLResponse)
async def product(request: Request, sku: str, console: ConsoleDep, session: SessionDep):
    answer = await console.backend.call(request, session, "GET", f"/products/{sku}")
    if not answer.ok:
        return refused(request, console, session, answer)
    return page(request, console, session, "product.html", product=answer.body)


@router.post("/products/{sku}/ratings", response_model=None)
async def rate(
    request: Request,
    sku: str,
    console: ConsoleDep,
    session: FormSession,
    stars: Annotated[int, Form()],
    comment: Annotated[str, Form()] = "",
) -> HTMLResponse | RedirectResponse:
    """``POST /products/{sku}/ratings`` as the shopper: the API decides who may (a completed
    order with the product) and refuses the rest with its 403, 409 or 422."""
    rating: dict[str, object] = {"stars": stars, "comment": comment or None}
    if session.role != "customer":  # with a customer token the API takes the token's
        rating["customer_id"] = session.customer_id
    path, then = f"/products/{sku}/ratings", f"{PATH}/products/{sku}"
    return await post_then(request, console, session, path, rating, then)


@router.post("/cart")
async def add_to_cart(
    console: ConsoleDep,
    session: FormSession,
    sku: Annotated[str, Form(max_length=64)],
    quantity: Annotated[int, Form(ge=0, le=100)] = 1,
) -> RedirectResponse:
    """Sets a line of the cart (0 removes it); the API checks the sku and stock at checkout."""
    return go("/console/cart", console, session.with_cart_line(sku, quantity))


@router.get("/cart", response_class=HTMLResponse)
async def cart(request: Request, console: ConsoleDep, session: SessionDep) -> HTMLResponse:
    answer = await console.backend.call(request, session, "GET", "/products")
    catalog = {p["sku"]: p for p in answer.body} if answer.ok else {}
    lines = [
        {"sku": sku, "quantity": quantity, "product": catalog.get(sku)}
        for sku, quantity in session.cart
    ]
    total = sum(
        line["product"]["price_cents"] * line["quantity"] for line in lines if line["product"]
    )
    return page(
        request,
        console,
        session,
        "cart.html",
        lines=lines,
        total_cents=total,
        tokens=PAYMENT_TOKENS,
        destinations=DESTINATIONS,
        # One key per checkout form: a second click (or a resent form) places the same order.
        attempt=secrets.token_urlsafe(16),
    )


@router.post("/checkout")
async def checkout(
    request: Request,
    console: ConsoleDep,
    session: FormSession,
    attempt: Annotated[str, Form(min_length=8, max_length=64)],
    payment_token: Annotated[str, Form()],
    country: Annotated[str, Form()],
    name: Annotated[str, Form()] = "",
    line1: Annotated[str, Form()] = "",
    city: Annotated[str, Form()] = "",
    postal_code: Annotated[str, Form()] = "",
    guest_email: Annotated[str, Form()] = "",
):
    """``POST /orders`` for the cart, as the signed-in customer, the chosen demo customer, or
    a guest (name and e-mail): the API's answer (its 422 naming the field) is shown as is."""
    order: dict[str, object] = {
        "items": [{"sku": sku, "quantity": quantity} for sku, quantity in session.cart],
        "payment_token": payment_token,
        "shipping_address": {
            "name": name,
            "line1": line1,
            "city": city,
            "postal_code": postal_code,
            "country": country,
        },
    }
    if guest_email:
        order["guest"] = {"name": name, "email": guest_email}
    else:
        order["customer_id"] = session.customer_id
    answer = await console.backend.call(
        request, session, "POST", "/orders", json=order, headers={"Idempotency-Key": attempt}
    )
    if not answer.ok:
        return refused(request, console, session, answer, back="/console/cart")
    placed = answer.body
    after = session.with_empty_cart()
    if placed.get("customer_token"):  # a guest's token: the guest follows and cancels with it
        after = after.signed_in(
            bearer=placed["customer_token"], role="customer", who=placed["customer_id"]
        )
    return go(f"/console/orders/{placed['order_id']}", console, after)


@router.post("/shopper")
async def choose_shopper(
    request: Request,
    console: ConsoleDep,
    session: FormSession,
    customer_id: Annotated[str, Form()],
) -> RedirectResponse:
    """Shop as one of the demo customers: only while the API requires no tokens (then anyone
    may say which customer they are, in the API as here)."""
    if app_state(request).settings.require_auth or customer_id not in DEMO_CUSTOMERS:
        return go("/console/signin", console, session)
    return go("/console", console, session.shopping_as(customer_id))


@router.get("/account", response_class=HTMLResponse)
async def account(request: Request, console: ConsoleDep, session: SessionDep) -> HTMLResponse:
    customer_id = session.customer_id
    if customer_id is None:
        return page(request, console, session, "account.html", customer_id=None)
    orders = await console.backend.call(
        request, session, "GET", "/orders", params={"customer_id": customer_id, "page_size": 50}
    )
    activity = await console.backend.call(
        request, session, "GET", f"/customers/{customer_id}/activity", params={"limit": 20}
    )
    recommended = await console.backend.call(
        request, session, "GET", f"/customers/{customer_id}/recommendations"
    )
    loyalty = await console.backend.call(
        request, session, "GET", f"/customers/{customer_id}/loyalty"
    )
    return page(
        request,
        console,
        session,
        "account.html",
        customer_id=customer_id,
        orders=orders.body["items"] if orders.ok else [],
        orders_error=None if orders.ok else orders.message,
        loyalty=loyalty.body if loyalty.ok else None,
        activity=activity.body["items"] if activity.ok else [],
        recommendations=recommended.body if recommended.ok else [],
    )
