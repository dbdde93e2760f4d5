"""``make screenshots``: the README's pictures of the console, taken from a stack of its own.

Starts a throwaway stack (as the tests do), drives the distribution's Chromium through the
console (the shop, then an order to a country shipping refuses, which unwinds), and writes
``docs/images/console-shop.png`` and ``docs/images/console-order-unwinding.png``. Nothing is
drawn by hand: the pictures are what the console shows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from cloudmart.process import exit_now
from devstack.stack import DevStack, settings_env, throwaway_settings

OUT = Path(__file__).resolve().parent.parent / "docs" / "images"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def take(api_url: str, chromium: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    shop, unwinding = out / "console-shop.png", out / "console-order-unwinding.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page(base_url=api_url, viewport={"width": 1100, "height": 760})
        page.goto("/console")
        page.select_option("#shopper", "c-42")
        page.click("button:has-text('Switch')")
        page.screenshot(path=shop)
        page.click("[data-testid=add-LAMP-LED-01]")
        page.check("input[value=tok_ok]")
        page.select_option("#country", "JP")
        page.click("button:has-text('Place order')")
        page.wait_for_selector("#live[data-ended=true]", timeout=30_000)
        page.screenshot(path=unwinding, full_page=True)
        browser.close()
    return [shop, unwinding]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    chromium = os.environ.get("CLOUDMART_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        print("make screenshots: no Chromium (apt-get install chromium)", file=sys.stderr)
        exit_now(2)
    with tempfile.TemporaryDirectory(prefix="cloudmart-screenshots-") as data:
        settings = throwaway_settings(Path(data))
        stack = DevStack(settings, settings_env(settings), output=None, persist=False)
        try:
            stack.start()
            for written in take(stack.api_url, chromium, args.out):
                print(f"wrote {written}")
        finally:
            stack.stop()
    exit_now(0)


if __name__ == "__main__":
    main()
