"""Fixtures of the browser tests: headless Chromium from Debian (`/usr/bin/chromium`, installed by
`bin/install-browser`) driven by Playwright (from PyPI, no browser download), against
pytest-django's `live_server`.

Without Chromium (or Playwright) the tests skip, saying why, unless FLOWPLANE_REQUIRE_BROWSER is
set: then they fail, so CI cannot pass them by accident.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import landing_dir, redis_test_db, start_worker  # noqa: F401  (fixtures, reused)
from tests.e2e.engine_support import fleet  # noqa: F401  (real workers for a run)

CHROMIUM = Path(os.environ.get("FLOWPLANE_CHROMIUM", "/usr/bin/chromium"))
TIMEOUT_MS = 15_000  # every wait of a page is bounded


def _missing(reason: str) -> None:
    message = f"{reason}; run bin/install-browser (FLOWPLANE_REQUIRE_BROWSER makes this a failure)"
    if os.environ.get("FLOWPLANE_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def chromium(django_db_setup, monkeypatch):
    """A browser per test (a second or so): Playwright's sync API keeps an event loop on this
    thread while it runs, and Django refuses ORM calls from a thread with a running loop unless
    DJANGO_ALLOW_ASYNC_UNSAFE is set; per test, that setting ends with the browser."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not CHROMIUM.exists():
        _missing(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()
    # The test's ORM calls ran while Playwright's loop was running, on connections of their own
    # that Django's teardown does not see; closed here, or dropping the test database finds them.
    from django.db import connections

    connections.close_all()


@pytest.fixture
def sign_in(page, live_server):
    """`sign_in(user)`: through the /login/ form, as a person does; the dashboard is then shown."""

    def go(user, password=None):
        page.goto(f"{live_server.url}/login/")
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", password or f"pw-{user.username}")
        page.click("form.login button[type=submit]")
        page.wait_for_selector("nav .who")
        return page

    return go

