"""The console's protections over real HTTP: forms only from its own pages, operator pages only
for the operator, tokens never shown, and nothing a visitor could not do through the API itself
(another customer's order stays unknown, the audit log names who acted)."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api.console.session import COOKIE
from api.tokens import mint, mint_operator
from cloudmart.settings import Settings
from devstack.stack import DevStack
from tests.system.api.test_api import order_body

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def browser(dev_stack: DevStack) -> Iterator[httpx.Client]:
    """A visitor of the dev stack's console (customer auth off, as `make up` runs it)."""
    with httpx.Client(base_url=dev_stack.api_url, timeout=30) as client:
        yield client


@pytest.fixture
def auth_browser(anonymous: httpx.Client) -> Iterator[httpx.Client]:
    """A visitor of the console of the API that requires tokens."""
    with httpx.Client(base_url=str(anonymous.base_url), timeout=30) as client:
        yield client


def csrf_of(client: httpx.Client, path: str = "/console") -> str:
    """The form token of the page at ``path`` (and the session cookie that goes with it)."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


def sign_in(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/console/signin", data={"csrf": csrf_of(client), "token": token})


def operator_token(settings: Settings) -> str:
    assert settings.operator_token is not None
    return settings.operator_token.get_secret_value()


def test_a_form_without_its_pages_token_is_refused(browser: httpx.Client) -> None:
    token = csrf_of(browser)
    line = {"sku": "CABLE-USBC-2M", "quantity": "1"}
    for sent in ({}, {"csrf": ""}, {"csrf": token[:-2] + "xx"}):
        refused = browser.post("/console/cart", data=line | sent)
        assert refused.status_code == 403, refused.text
        assert "did not come from the console" in refused.json()["detail"]
    added = browser.post("/console/cart", data=line | {"csrf": token})
    assert added.status_code == 303 and added.headers["location"] == "/console/cart"


def test_a_form_token_is_worth_nothing_with_another_browsers_session(
    browser: httpx.Client, dev_stack: DevStack
) -> None:
    """A page from the attacker's own session gives them a token; the victim's cookie with it
    is refused, so a forged form on another site cannot act in the victim's session."""
    with httpx.Client(base_url=dev_stack.api_url) as attacker:
        theirs = csrf_of(attacker)
    csrf_of(browser)  # the victim's session
    forged = browser.post("/console/cart", data={"csrf": theirs, "sku": "CABLE-USBC-2M"})
    assert forged.status_code == 403


def test_a_forged_or_altered_cookie_makes_a_new_visitor(browser: httpx.Client) -> None:
    sign_in_page = browser.get("/console/signin")
    sealed = sign_in_page.cookies[COOKIE]
    altered = sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]
    for cookie in (altered, "not-a-session"):
        browser.cookies.set(COOKIE, cookie)
        page = browser.get("/console/operator")
        assert page.status_code == 303 and page.headers["location"] == "/console/signin"


def test_the_operator_page_is_for_the_operator_alone(
    browser: httpx.Client, dev_stack: DevStack
) -> None:
    visitor = browser.get("/console/operator")
    assert visitor.status_code == 303 and visitor.headers["location"] == "/console/signin"
    settings = dev_stack.settings
    assert settings.auth_secret is not None
    customer = mint("c-42", settings.auth_secret.get_secret_value())
    refused = sign_in(browser, customer)
    assert refused.status_code == 403
    assert "not the operator's" in html.unescape(refused.text)
    assert customer not in refused.text
    assert browser.get("/console/operator").status_code == 303
    # An approval posted straight to the operator's form, without signing in: the API refuses.
    order_id = browser.post("/orders", json=order_body(token="tok_review")).json()["order_id"]
    decided = browser.post(
        f"/console/operator/orders/{order_id}/review",
        data={"csrf": csrf_of(browser), "approved": "true"},
    )
    assert decided.status_code == 401, decided.text
    assert "operator token" in decided.text


def test_a_wrong_token_is_refused_and_never_shown(browser: httpx.Client) -> None:
    wrong = "definitely-not-the-operator-token-0123456789"
    refused = sign_in(browser, wrong)
    assert refused.status_code == 403
    assert wrong not in refused.text
    assert "not the operator's" in html.unescape(refused.text)


def test_the_operator_token_never_reaches_a_page_a_url_or_the_cookie(
    browser: httpx.Client, dev_stack: DevStack
) -> None:
    token = operator_token(dev_stack.settings)
    signed_in = sign_in(browser, token)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/console/operator"
    cookie = signed_in.headers["set-cookie"]
    assert token not in cookie
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert "path=/console" in cookie.lower()
    for path in ("/console/operator", "/console", "/console/cart", "/console/account"):
        page = browser.get(path)
        assert page.status_code == 200, (path, page.text)
        assert token not in page.text


def test_an_operators_decision_is_the_apis_and_audited_under_their_name(
    browser: httpx.Client, dev_stack: DevStack, as_operator: dict[str, str]
) -> None:
    started = datetime.now(UTC)
    settings = dev_stack.settings
    assert settings.auth_secret is not None
    alice = mint_operator("alice", settings.auth_secret.get_secret_value())
    assert sign_in(browser, alice).headers["location"] == "/console/operator"
    placed = browser.post("/orders", json=order_body(token="tok_review"), params={"wait": 0})
    order_id = placed.json()["order_id"]
    _wait_for(browser, order_id, "AWAITING_PAYMENT_REVIEW")
    operator_page = _operator_page_listing(browser, order_id)
    decided = browser.post(
        f"/console/operator/orders/{order_id}/review",
        data={"csrf": CSRF.search(operator_page.text).group(1), "approved": "true"},  # type: ignore[union-attr]
    )
    assert decided.status_code == 303, decided.text
    assert _wait_for(browser, order_id, "COMPLETED")

    audit = browser.get("/audit", params={"resource": f"/orders/{order_id}"}, headers=as_operator)
    entries = [(e["actor"], e["action"], e["outcome"]) for e in audit.json()["entries"]]
    assert ("alice", "POST /orders/{order_id}/payment-review", "202") in entries
    # The console's own form is not a second entry: the API's request is the record. Signing in
    # is recorded, with who it was.
    since = {"since": started.isoformat(), "limit": 1000}
    everything = browser.get("/audit", params=since, headers=as_operator).json()["entries"]
    console = {(e["actor"], e["action"]) for e in everything if "/console/" in e["action"]}
    assert console == {("alice", "POST /console/signin")}, console


def _operator_page_listing(client: httpx.Client, order_id: str) -> httpx.Response:
    # The operator's lists are read from the projection, which follows the saga by a moment.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        page = client.get("/console/operator")
        if order_id in page.text:
            return page
        time.sleep(0.2)
    raise AssertionError(f"order {order_id} never listed on the operator's page")


def _wait_for(client: httpx.Client, order_id: str, status: str) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if client.get(f"/orders/{order_id}").json()["status"] == status:
            return True
        time.sleep(0.2)
    raise AssertionError(f"order {order_id} never reached {status}")


def test_with_tokens_required_a_customer_sees_only_their_own_orders(
    auth_browser: httpx.Client, auth_settings: Settings
) -> None:
    assert auth_settings.auth_secret is not None
    secret = auth_settings.auth_secret.get_secret_value()
    theirs = order_body(customer="c-other")
    other = auth_browser.post(
        "/orders", json=theirs, headers={"Authorization": f"Bearer {mint('c-other', secret)}"}
    )
    other_id = other.json()["order_id"]

    signed_in = sign_in(auth_browser, mint("c-mine", secret, ttl=timedelta(hours=1)))
    assert signed_in.headers["location"] == "/console/account"
    account = auth_browser.get("/console/account")
    assert "c-mine" in account.text
    for path in (f"/console/orders/{other_id}", f"/console/orders/{other_id}/live"):
        unknown = auth_browser.get(path)
        assert unknown.status_code == 404, (path, unknown.text)
        assert "c-other" not in unknown.text


def test_with_tokens_required_a_guest_checkout_signs_the_guest_in(
    auth_browser: httpx.Client,
) -> None:
    """A guest's token comes with the order's answer; the console keeps it in the session, so
    the guest follows (and may cancel) the order it just placed."""
    csrf = csrf_of(auth_browser)
    auth_browser.post("/console/cart", data={"csrf": csrf, "sku": "CABLE-USBC-2M"})
    checkout = auth_browser.get("/console/cart")
    attempt = re.search(r'name="attempt" value="([^"]+)"', checkout.text)
    assert attempt is not None
    form = {
        "csrf": csrf,
        "attempt": attempt.group(1),
        "payment_token": "tok_ok",
        "country": "DE",
        "name": "Grace Hopper",
        "line1": "1 Compiler Way",
        "city": "Berlin",
        "postal_code": "10115",
        "guest_email": f"grace-{attempt.group(1)[:8].lower()}@example.com",
    }
    before = auth_browser.cookies[COOKIE]
    placed = auth_browser.post("/console/checkout", data=form)
    assert placed.status_code == 303, placed.text
    order_page = auth_browser.get(placed.headers["location"])
    assert order_page.status_code == 200, order_page.text
    assert "signed in as" in order_page.text and "guest-" in order_page.text
    # A double click: the second request carries the same form and the same cookie as the
    # first. It answers the same order, not a second one.
    with httpx.Client(base_url=auth_browser.base_url, cookies={COOKIE: before}) as second:
        again = second.post("/console/checkout", data=form)
    assert again.status_code == 303 and again.headers["location"] == placed.headers["location"]


def test_only_the_operator_starts_a_load_run_and_it_is_audited(
    browser: httpx.Client, dev_stack: DevStack, as_operator: dict[str, str]
) -> None:
    started = datetime.now(UTC)
    run = {"rate": "1", "seconds": "1", "mix_tok_ok": "1"}
    refused = browser.post("/console/operator/load", data=run | {"csrf": csrf_of(browser)})
    assert refused.status_code == 401, refused.text
    assert "operator token" in refused.text

    sign_in(browser, operator_token(dev_stack.settings))
    csrf = csrf_of(browser, "/console/operator")
    no_mix = browser.post(
        "/console/operator/load", data={"rate": "1", "seconds": "1", "csrf": csrf}
    )
    assert no_mix.status_code == 422 and "mix" in no_mix.text
    accepted = browser.post("/console/operator/load", data=run | {"csrf": csrf})
    assert accepted.status_code == 303, accepted.text
    # Its figures stream until its one order has ended (and the next run may start).
    with browser.stream("GET", "/console/operator/load/live") as live:
        figures = [json.loads(line[6:]) for line in live.iter_lines() if line.startswith("data:")]
    assert figures[-1]["done"] and figures[-1]["placed"] == figures[-1]["ended"] == 1

    since = {"since": started.isoformat(), "action": "POST /console/operator/load"}
    entries = browser.get("/audit", params=since, headers=as_operator).json()["entries"]
    assert [(e["actor"], e["outcome"]) for e in entries] == [
        ("anonymous", "401"),
        ("operator", "422"),
        ("operator", "303"),
    ]
