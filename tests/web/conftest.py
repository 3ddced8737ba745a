"""Browser fixtures: Debian's Chromium (`apt-get install -y chromium`) driven by
Playwright's sync API against a real `quotaledger serve` process.

Without Chromium the browser tests are skipped, and say why; CI sets
`QUOTALEDGER_REQUIRE_BROWSER=1` so that a missing browser fails the run instead."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator

import pytest
from browser_helpers import Person, Visit, create_user
from playwright.sync_api import Browser, sync_playwright

from support import LiveServer, start_server, stop_server

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
_people = itertools.count(1)


def chromium_path() -> str | None:
    return (
        os.environ.get("QUOTALEDGER_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module; each test gets its own context (cookies, storage)."""
    path = chromium_path()
    if path is None:
        reason = "Chromium not found: apt-get install -y chromium, or set QUOTALEDGER_CHROMIUM"
        if os.environ.get("QUOTALEDGER_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One `quotaledger serve` per test module; every test logs in as its own user.

    All browsers here share 127.0.0.1, so the per-address login limit is off and the
    address's own count of wrong passwords out of reach; the per-account limits, which the
    throttling tests need, stay at their defaults."""
    folder = tmp_path_factory.mktemp("web")
    env = {
        "QUOTALEDGER_RATE_LIMIT_LOGIN_ADDRESS": "off",
        "QUOTALEDGER_LOGIN_ADDRESS_FREE_FAILURES": "1000",
    }
    server = start_server(f"sqlite:///{folder / 'web.db'}", folder, env)
    yield server
    stop_server(server)


@pytest.fixture
def visit(browser: Browser, web_server: LiveServer) -> Iterator[Visit]:
    """A fresh browser context on the live server. Fails the test on any script error or
    Content-Security-Policy violation in the page."""
    context = browser.new_context(base_url=web_server.base_url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_server.base_url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield Visit(page, web_server)
    context.close()
    assert problems == [], "script errors or CSP violations in the page"


@pytest.fixture
def alice(web_server: LiveServer) -> Person:
    """A new user with $50.00, different in every test (rate limits are per account)."""
    return create_user(web_server, f"alice{next(_people)}", quota=25_000_000)
