"""The console in a real browser: Playwright drives the distribution's Chromium against the dev
stack's API. No browser is downloaded: without Chromium these tests fail, saying what to install."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from devstack.stack import DevStack

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> Path:
    """``CLOUDMART_CHROMIUM``, else the distribution's ``chromium`` on the PATH."""
    configured = os.environ.get("CLOUDMART_CHROMIUM") or shutil.which("chromium")
    if not configured or not Path(configured).exists():
        pytest.fail(
            "the console's browser tests need Chromium and found none: install the "
            "distribution's package (apt-get install chromium) or point CLOUDMART_CHROMIUM at "
            "a Chromium binary",
            pytrace=False,
        )
    return Path(configured)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module, not per session: while Playwright's synchronous API is started, its event
    loop counts as running in this thread, and every later test that runs one of its own
    (``asyncio.run``, pytest-asyncio) would fail. Stopped after the module's tests, it leaves
    the process as it found it."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser, dev_stack: DevStack) -> Iterator[BrowserContext]:
    """A browser profile of its own (its own cookies: its own console session)."""
    opened = browser.new_context(base_url=dev_stack.api_url)
    opened.set_default_timeout(20_000)
    yield opened
    opened.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def operator_page(browser: Browser, dev_stack: DevStack) -> Iterator[Page]:
    """A second browser profile, signed in to the console as the operator."""
    opened = browser.new_context(base_url=dev_stack.api_url)
    opened.set_default_timeout(20_000)
    signed_in = opened.new_page()
    token = dev_stack.settings.operator_token
    assert token is not None
    signed_in.goto("/console/signin")
    signed_in.fill("#token", token.get_secret_value())
    signed_in.click("button:has-text('Sign in')")
    signed_in.wait_for_url("**/console/operator")
    yield signed_in
    opened.close()
