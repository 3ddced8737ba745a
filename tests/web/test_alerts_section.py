"""Issue 14 in a real browser: the Alerts section of Account Settings. Thresholds in USD,
an Apprise URL that leaves the page once added (only its hint stays), a test notification
that reaches a receiver on 127.0.0.1, a key's thresholds; with the mouse and with the
keyboard alone. What is asserted is what a person sees, and what the API then says."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import Person, Visit, _database
from playwright.sync_api import Page, expect

from alert_inbox import SECRET_PATH, Inbox, running_inbox
from quotaledger.identity import accounts, keys
from quotaledger.identity.keys import KeyLimits
from support import LiveServer, start_server, stop_server

pytestmark = pytest.mark.browser
SECRET_KEY = "web-alerts-tests-secret-key-of-enough-length"


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The page's server, with the secret key the URLs are encrypted with."""
    folder = tmp_path_factory.mktemp("web-alerts")
    env = {
        "QUOTALEDGER_RATE_LIMIT_LOGIN_ADDRESS": "off",
        "QUOTALEDGER_SECRET_KEY": SECRET_KEY,
        "QUOTALEDGER_ALERT_ALLOW_HOSTS": "127.0.0.1",  # the inbox, on loopback
    }
    server = start_server(f"sqlite:///{folder / 'web.db'}", folder, env)
    yield server
    stop_server(server)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with running_inbox() as running:
        yield running


def alerts_of(page: Page) -> dict[str, object]:
    data: dict[str, object] = page.request.get("/api/user/alerts").json()["data"]
    return data


def limited_key(server: LiveServer, person: Person, name: str) -> None:
    with _database(server) as database:
        account = accounts.find_account(database, person.username)
        keys.create_key(database, account.id, name, KeyLimits(quota=5_000_000))


def status(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("#alerts-status")


def test_thresholds_a_url_and_a_test_notification_with_the_mouse(
    visit: Visit, alice: Person, inbox: Inbox, tmp_path: Path
) -> None:
    visit.log_in(alice)
    page = visit.page
    section = page.get_by_role("region", name="Alerts")
    expect(section.get_by_text("No notification address yet")).to_be_visible()
    section.get_by_label("Warning at (USD)").fill("20")
    section.get_by_label("Critical at (USD)").fill("5.5")
    section.get_by_role("button", name="Save thresholds").click()
    expect(status(page)).to_have_text("Thresholds saved.")
    data = alerts_of(page)
    assert (data["warn_quota"], data["critical_quota"]) == (10_000_000, 2_750_000)

    section.get_by_label("Add an Apprise URL").fill(inbox.url)
    section.get_by_role("button", name="Add URL").click()
    expect(section.locator("#alert-urls code")).to_have_text(["json://…0451"])
    expect(section.get_by_label("Add an Apprise URL")).to_have_value("")
    assert SECRET_PATH not in page.content()

    section.get_by_role("button", name="Send test notification").click()
    expect(status(page)).to_have_text("Test notification sent to 1 address.")
    assert inbox.titles() == ["quotaledger: test notification"]
    section.scroll_into_view_if_needed()
    section.screenshot(path=str(_screenshot_path(tmp_path, "alerts-section.png")))

    section.get_by_role("button", name="Remove json://…0451").click()
    expect(status(page)).to_have_text("Removed json://…0451.")
    expect(section.get_by_text("No notification address yet")).to_be_visible()
    assert alerts_of(page)["urls"] == []


def test_refusals_are_shown_beside_the_fields(visit: Visit, alice: Person) -> None:
    visit.log_in(alice)
    page = visit.page
    section = page.get_by_role("region", name="Alerts")
    expect(section.get_by_text("No notification address yet")).to_be_visible()  # loaded
    section.get_by_label("Warning at (USD)").fill("twenty")
    section.get_by_role("button", name="Save thresholds").click()
    expect(page.locator("#alerts-error")).to_have_text("Enter the warning amount in USD, e.g. 20.")
    expect(section.get_by_label("Warning at (USD)")).to_be_focused()
    section.get_by_label("Warning at (USD)").fill("5")
    section.get_by_label("Critical at (USD)").fill("20")
    section.get_by_role("button", name="Save thresholds").click()
    expect(page.locator("#alerts-error")).to_contain_text("must not be above the warning")
    section.get_by_label("Add an Apprise URL").fill("nosuch://s3cr3t")
    section.get_by_role("button", name="Add URL").click()
    expect(page.locator("#alerts-error")).to_contain_text("unknown Apprise scheme nosuch://")
    section.get_by_role("button", name="Send test notification").click()
    expect(page.locator("#alerts-error")).to_contain_text("Add an Apprise URL first")


def test_everything_with_the_keyboard_alone(
    visit: Visit, alice: Person, inbox: Inbox, tmp_path: Path
) -> None:
    limited_key(visit.server, alice, "ci")
    visit.log_in(alice)
    page = visit.page
    keyboard = page.keyboard
    section = page.get_by_role("region", name="Alerts")
    expect(section.get_by_text("No notification address yet")).to_be_visible()  # loaded
    section.get_by_label("Warning at (USD)").focus()
    keyboard.type("12.50")
    keyboard.press("Tab")
    expect(section.get_by_label("Critical at (USD)")).to_be_focused()
    keyboard.type("2")
    keyboard.press("Enter")
    expect(status(page)).to_have_text("Thresholds saved.")
    assert alerts_of(page)["warn_usd"] == "12.50"

    keyboard.press("Tab")  # Save thresholds
    keyboard.press("Tab")
    expect(section.get_by_label("Add an Apprise URL")).to_be_focused()
    keyboard.type(inbox.url)
    keyboard.press("Enter")
    expect(section.locator("#alert-urls code")).to_have_text(["json://…0451"])
    keyboard.press("Tab")  # Add URL
    keyboard.press("Tab")
    expect(section.get_by_role("button", name="Send test notification")).to_be_focused()
    keyboard.press("Enter")
    expect(status(page)).to_have_text("Test notification sent to 1 address.")
    assert len(inbox.received) == 1

    keyboard.press("Tab")
    expect(section.get_by_label("Warning threshold of key ci, USD")).to_be_focused()
    keyboard.type("4")
    keyboard.press("Tab")
    keyboard.type("1")
    keyboard.press("Enter")
    expect(status(page)).to_have_text("Thresholds of key ci saved.")
    expect(section.get_by_role("button", name="Save the thresholds of key ci")).to_be_focused()
    [key] = alerts_of(page)["keys"]  # type: ignore[misc]
    assert (key["warn_quota"], key["critical_quota"]) == (2_000_000, 500_000)
    section.screenshot(path=str(_screenshot_path(tmp_path, "alerts-keyboard.png")))


def _screenshot_path(tmp_path: Path, name: str) -> Path:
    """Where the section's screenshot goes: QUOTALEDGER_SCREENSHOTS if set, to look at."""
    folder = Path(os.environ.get("QUOTALEDGER_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
