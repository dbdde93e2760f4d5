"""Every path of the saga, one click away in the console, watched in a real browser: an order that
completes, a declined payment unwinding in reverse, an operator approving a held payment while the
customer's page follows it live, a cancel (and its refusal once too late), and an operator
resolving a stuck compensation."""

from __future__ import annotations

import re
import time
from urllib.parse import urlparse

from playwright.sync_api import Browser, Page, expect

from devstack.stack import DevStack

PHONE_WIDTH = 375
SKU = "CABLE-USBC-2M"  # plenty in stock, whatever else the shared stack's tests order


def checkout(page: Page, token: str, country: str = "DE", shopper: str = "c-42") -> str:
    """Shop as ``shopper``, put one ``SKU`` in the cart, place the order; its id."""
    page.goto("/console")
    page.select_option("#shopper", shopper)
    page.click("button:has-text('Switch')")
    page.click(f"[data-testid=add-{SKU}]")
    page.wait_for_url("**/console/cart")
    page.check(f"input[value={token}]")
    page.select_option("#country", country)
    page.click("button:has-text('Place order')")
    page.wait_for_url(re.compile(r".*/console/orders/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def status(page: Page, expected: str) -> None:
    expect(page.get_by_test_id("status")).to_have_text(expected, timeout=20_000)


def operator_listing(operator_page: Page, test_id: str, seconds: float = 20) -> None:
    """Open the operator's page and reload it until ``test_id`` is on it: its lists are read
    from the projection, which follows the saga by a moment."""
    operator_page.goto("/console/operator")
    deadline = time.monotonic() + seconds
    while operator_page.get_by_test_id(test_id).count() == 0:
        assert time.monotonic() < deadline, f"{test_id} never on the operator's page"
        time.sleep(0.3)
        operator_page.reload()


def items(page: Page, test_id: str, word: int = 0) -> list[str]:
    """The ``<li>`` texts of a list, each reduced to one word (a step's name, an event's type)."""
    texts = page.get_by_test_id(test_id).locator("li").all_inner_texts()
    return [text.split()[word] for text in texts]


def test_an_order_placed_in_the_shop_completes(page: Page) -> None:
    order_id = checkout(page, "tok_ok")
    status(page, "COMPLETED")
    assert items(page, "steps") == [
        "customers.ensure",
        "inventory.reserve",
        "payment.check_fraud",
        "payment.charge",
        "shipping.create",
        "inventory.commit",
    ]
    expect(page.get_by_test_id("events").locator("li").last).to_contain_text("OrderCompleted")
    page.goto("/console/account")
    expect(page.get_by_test_id("orders")).to_contain_text(order_id[:8], timeout=10_000)


def test_a_declined_payment_shows_its_compensations_in_reverse(page: Page) -> None:
    checkout(page, "tok_decline")
    status(page, "FAILED")
    expect(page.get_by_test_id("failure")).to_contain_text("PaymentDeclined")
    # Done: the reservation, then the charge's attempt; undone: the charge's, then the reservation.
    assert items(page, "compensations") == ["payment.refund", "inventory.release"]
    events = items(page, "events", word=1)
    assert events[events.index("PaymentDeclined") :] == [
        "PaymentDeclined",
        "CompensationStarted",
        "PaymentRefunded",
        "InventoryReleased",
        "OrderFailed",
    ]


def test_an_operator_approves_a_held_payment_and_the_order_page_follows(
    page: Page, operator_page: Page
) -> None:
    order_id = checkout(page, "tok_review")
    status(page, "AWAITING_PAYMENT_REVIEW")
    # A mark in the page's own memory: if the page reloaded, it would be gone.
    page.evaluate("window.notReloaded = true")

    operator_listing(operator_page, f"approve-{order_id}")
    operator_page.get_by_test_id(f"approve-{order_id}").click()
    operator_page.wait_for_url("**/console/operator")

    status(page, "COMPLETED")
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#live")).to_have_attribute("data-ended", "true")
    expect(page.get_by_test_id("cancel")).to_have_count(0)


def test_a_customer_cancels_a_held_order(page: Page) -> None:
    checkout(page, "tok_review")
    status(page, "AWAITING_PAYMENT_REVIEW")
    page.get_by_test_id("cancel").click()
    status(page, "CANCELLED")
    assert items(page, "compensations") == ["payment.refund", "inventory.release"]


def test_a_cancel_too_late_shows_the_sagas_refusal(page: Page, operator_page: Page) -> None:
    # Without scripts, the page is not updated live: it still offers Cancel after the approval.
    order_id = checkout(page, "tok_review")
    status(page, "AWAITING_PAYMENT_REVIEW")
    still = page.context.browser.new_context(  # type: ignore[union-attr]
        base_url=page.url.split("/console")[0], java_script_enabled=False
    )
    still.add_cookies(page.context.cookies())
    stale = still.new_page()
    stale.goto(f"/console/orders/{order_id}")
    operator_listing(operator_page, f"approve-{order_id}")
    operator_page.get_by_test_id(f"approve-{order_id}").click()
    status(page, "COMPLETED")

    stale.get_by_test_id("cancel").click()
    expect(stale.get_by_test_id("error")).to_contain_text("already COMPLETED")
    still.close()


def test_an_operator_resolves_a_stuck_compensation(page: Page, operator_page: Page) -> None:
    # A refund the provider refuses for good, needed because Japan is not delivered to.
    order_id = checkout(page, "tok_norefund", country="JP")
    status(page, "COMPENSATION_STUCK")
    expect(page.get_by_test_id("stuck")).to_contain_text("payment.refund")

    operator_listing(operator_page, f"resolve-{order_id}")
    operator_page.fill(f"#note-{order_id}", "refunded from the provider's dashboard")
    operator_page.get_by_test_id(f"resolve-{order_id}").click()
    operator_page.wait_for_url("**/console/operator")

    status(page, "FAILED")
    compensations = page.get_by_test_id("compensations").locator("li").all_inner_texts()
    assert [text.split()[0] for text in compensations] == [
        "shipping.cancel",
        "payment.refund",
        "inventory.release",
    ]
    assert "RESOLVED" in compensations[1]


def test_the_load_generator_runs_with_its_charts_moving_and_every_order_ends(
    operator_page: Page,
) -> None:
    page = operator_page
    page.fill("input[name=rate]", "4")
    page.fill("input[name=seconds]", "3")
    page.get_by_test_id("start-load").click()
    page.wait_for_url("**/console/operator")

    ended = page.locator("[data-chart=ended]")
    expect(ended).to_have_attribute("data-points", re.compile(r"^[2-9]|\d\d+$"), timeout=15_000)
    panel = page.locator("[data-load-live]")
    expect(panel).to_have_attribute("data-done", "true", timeout=40_000)

    figures = {
        name: page.locator(f'[data-load-live] [data-field="{name}"]').inner_text()
        for name in ("placed", "ended", "in_flight")
    }
    assert figures == {"placed": "12", "ended": "12", "in_flight": "0"}, figures
    outcomes = page.locator('[data-load-live] [data-field="outcomes"]').inner_text()
    counted = {
        part.rsplit(" ", 1)[0]: int(part.rsplit(" ", 1)[1]) for part in outcomes.split(" · ")
    }
    assert set(counted) <= {"COMPLETED", "FAILED"}, counted  # every order ended, none in flight
    assert sum(counted.values()) == 12


def reloaded_until(page: Page, test_id: str, text: str, seconds: float = 30) -> None:
    """Reload ``page`` until its ``test_id`` element reads ``text`` (a page without live
    updates, following a choreography)."""
    deadline = time.monotonic() + seconds
    while (shown := page.get_by_test_id(test_id).inner_text()) != text:
        assert time.monotonic() < deadline, f"{test_id} still {shown!r}, not {text!r}"
        time.sleep(0.5)
        page.reload()


def test_a_customer_returns_an_order_and_the_operator_inspects_it(
    page: Page, operator_page: Page
) -> None:
    checkout(page, "tok_ok")
    status(page, "COMPLETED")
    page.get_by_test_id("return").click()
    page.wait_for_url(re.compile(r".*/console/returns/[0-9a-f-]{36}$"))
    reloaded_until(page, "return-status", "AWAITING_INSPECTION")  # shipping made a label

    operator_page.goto(urlparse(page.url).path)
    operator_page.get_by_test_id("accept-return").click()

    reloaded_until(page, "return-status", "RETURNED")
    rows = page.get_by_test_id("chain").locator("tbody tr").all_inner_texts()
    chain = [row.split("\t")[2] for row in rows]  # the event of each row
    assert chain[0] == "ReturnRequested" and "ReturnAccepted" in chain, chain
    assert {"StockRestocked", "ReturnRefunded", "PointsRevoked"} <= set(chain), chain


def test_a_customer_rates_what_they_received(page: Page) -> None:
    checkout(page, "tok_ok")
    status(page, "COMPLETED")
    page.goto(f"/console/products/{SKU}")
    page.select_option("#stars", "4")
    page.fill("#comment", "does what it says")
    page.get_by_test_id("rate").click()
    page.wait_for_url(f"**/console/products/{SKU}")
    expect(page.get_by_test_id("error")).to_have_count(0)


def test_every_page_fits_a_phone_and_the_keyboard_reaches_the_content(
    browser: Browser, dev_stack: DevStack, page: Page, operator_page: Page
) -> None:
    order_id = checkout(page, "tok_decline")
    status(page, "FAILED")
    phone = browser.new_context(
        base_url=dev_stack.api_url,
        viewport={"width": PHONE_WIDTH, "height": 700},
        is_mobile=True,
    )
    phone.add_cookies(page.context.cookies())
    small = phone.new_page()
    customer_pages = (
        "/console",
        f"/console/products/{SKU}",
        "/console/cart",
        "/console/account",
        f"/console/orders/{order_id}",
        "/console/signin",
    )
    for path in customer_pages:
        fits_a_phone(small, path)
    # The operator's page, with its lists, charts and load generator, signed in on the phone.
    operator_phone = browser.new_context(
        base_url=dev_stack.api_url,
        viewport={"width": PHONE_WIDTH, "height": 700},
        is_mobile=True,
    )
    operator_phone.add_cookies(operator_page.context.cookies())
    fits_a_phone(operator_phone.new_page(), "/console/operator")
    operator_phone.close()
    # The first Tab reaches the skip link, which takes the keyboard past the navigation.
    small.goto("/console")
    small.keyboard.press("Tab")
    assert small.evaluate("document.activeElement.className") == "skip"
    small.keyboard.press("Enter")
    assert small.evaluate("location.hash") == "#main"
    phone.close()


def fits_a_phone(page: Page, path: str) -> None:
    page.goto(path)
    assert urlparse(page.url).path == path, f"{path} went to {page.url}"
    # Against the phone's width itself: a mobile browser widens its layout viewport to content
    # wider than the screen (and zooms out), so innerWidth would follow it.
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= PHONE_WIDTH, f"{path} is {wide} px wide, wider than a phone"
