"""Debian's Chromium driven by Playwright, for the browser tests: where it is, how it is launched, and a page that
fails its test on any script or console error."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = os.environ.get("MAMMO_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "no Chromium here (Debian's `chromium` package: `make test` installs it)"
NO_PLAYWRIGHT = "playwright is not installed: `make test` installs it"


def launch(driver: Any) -> Any:
    """Chromium, headless, as root can run it."""
    return driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


@contextmanager
def watched_page() -> Iterator[Any]:
    """A page in a fresh browser (1280 x 1000); leaving the block fails the test if the page threw or logged an
    error. Skips with the reason where Playwright or Chromium is missing."""
    playwright = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT)
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    with playwright.sync_playwright() as driver:
        browser = launch(driver)
        page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        yield page
        assert errors == []
        browser.close()
