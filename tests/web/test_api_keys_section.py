"""SPEC §10 in a real browser: the API keys section of Account Settings. Create a key with
every option, see it once, copy it, find it in the list; disable, enable, delete it; all of
it with the keyboard alone too. What is asserted is what a person sees, and what the API
then says about the key."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from browser_helpers import Person, Visit, api_key
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

KEY = re.compile(r"^sk-ql-[0-9A-Za-z]{20,}$")


def open_key_dialog(page: Page) -> None:
    page.get_by_role("button", name="Create API key").click()
    expect(page.get_by_role("dialog", name="Create API key")).to_be_visible()


def shown_key(page: Page) -> str:
    expect(page.locator("#key-value")).to_have_text(KEY)
    return page.locator("#key-value").inner_text()


def key_row(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator("#keys-table tbody tr").filter(
        has=page.get_by_role("rowheader", name=name, exact=True)
    )


def keys_of(page: Page) -> list[dict[str, object]]:
    """The caller's keys as the API answers them, through the page's session."""
    items: list[dict[str, object]] = page.request.get("/api/token/").json()["data"]["items"]
    return items


def key_balance(visit: Visit, key: str) -> httpx.Response:
    return httpx.get(
        f"{visit.server.base_url}/api/usage/token", headers={"Authorization": f"Bearer {key}"}
    )


def test_a_key_made_with_every_option_is_shown_once_with_copy_and_warnings(
    visit: Visit, alice: Person
) -> None:
    visit.log_in(alice)
    page = visit.page
    expect(page.get_by_text("You have no API keys yet.")).to_be_visible()
    open_key_dialog(page)
    expires = (datetime.now(UTC) + timedelta(days=10)).date()
    dialog = page.get_by_role("dialog", name="Create API key")
    dialog.get_by_label("Name", exact=True).fill("laptop")
    dialog.get_by_label("Unlimited").uncheck()
    dialog.get_by_label("Budget in USD").fill("5")
    dialog.get_by_label("Period", exact=True).select_option("day")
    dialog.get_by_label("Limit per period in USD").fill("1.50")
    dialog.get_by_label("Expires after").fill(expires.isoformat())
    dialog.get_by_label("Models (optional)").fill("model-a, model-b")
    dialog.get_by_label("Allowed networks (optional)").fill("127.0.0.1/32\n10.0.0.0/8")
    dialog.get_by_role("button", name="Create key").click()

    key = shown_key(page)
    warnings = dialog.get_by_role("note").inner_text()
    for warning in ("spend your balance", "shown only once", "Never hard-code it",
                    "commit it to a repository", "environment variable", "delete it"):  # fmt: skip
        assert warning in warnings
    dialog.get_by_role("button", name="Copy", exact=True).click()
    expect(dialog.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key

    [made] = keys_of(page)
    end_of_day = int(datetime(expires.year, expires.month, expires.day, tzinfo=UTC).timestamp())
    assert (made["name"], made["unlimited_quota"], made["remain_quota"]) == (
        "laptop",
        False,
        2_500_000,
    )
    assert (made["period"], made["period_quota"]) == ("day", 750_000)
    assert made["expired_time"] == end_of_day + 86_400
    assert (made["model_limits_enabled"], made["model_limits"]) == (True, "model-a,model-b")
    assert sorted(str(made["allow_ips"]).split("\n")) == ["10.0.0.0/8", "127.0.0.1/32"]
    assert key_balance(visit, key).status_code == 200  # the shown key is the real one

    row = key_row(page, "laptop")
    expect(row).to_contain_text(f"sk-ql-…{key[-4:]}")
    expect(row).to_contain_text("$5.00")
    expect(row).to_contain_text("$0.00 of $1.50 today")
    expect(row).to_contain_text("Active")
    expect(row).to_contain_text(f"through {expires.isoformat()}")
    expect(row).to_contain_text("Never")


def test_after_closing_or_reloading_the_key_is_nowhere_in_the_page(
    visit: Visit, alice: Person
) -> None:
    visit.log_in(alice)
    page = visit.page
    open_key_dialog(page)
    page.get_by_label("Name", exact=True).fill("ci")
    page.get_by_role("button", name="Create key").click()
    key = shown_key(page)
    page.get_by_role("button", name="Done").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.locator("#key-value")).to_be_empty()
    assert key not in page.content()
    expect(key_row(page, "ci")).to_contain_text("Unlimited")

    page.reload()
    expect(key_row(page, "ci")).to_contain_text(f"sk-ql-…{key[-4:]}")
    assert key not in page.content()
    assert key[6:-4] not in page.content()


def test_bad_input_is_explained_in_the_dialog_and_nothing_is_made(
    visit: Visit, alice: Person
) -> None:
    visit.log_in(alice)
    page = visit.page
    open_key_dialog(page)
    alert = page.get_by_role("dialog").get_by_role("alert")
    page.get_by_role("button", name="Create key").click()
    expect(alert).to_have_text("Give the key a name.")
    expect(page.get_by_label("Name", exact=True)).to_be_focused()

    page.get_by_label("Name", exact=True).fill("laptop")
    page.get_by_label("Unlimited").uncheck()
    expect(page.get_by_label("Budget in USD")).to_be_focused()
    page.get_by_label("Budget in USD").fill("five dollars")
    page.get_by_role("button", name="Create key").click()
    expect(alert).to_have_text("Enter the budget in USD, such as 5 or 12.50.")

    page.get_by_label("Budget in USD").fill("5")
    page.get_by_label("Allowed networks (optional)").fill("not-a-network")
    page.get_by_role("button", name="Create key").click()
    expect(alert).to_contain_text("not-a-network")  # the server's reason, shown as it is
    expect(page.locator("#key-result")).to_be_hidden()
    assert keys_of(page) == []


def test_a_key_is_disabled_enabled_and_deleted_from_the_list(visit: Visit, alice: Person) -> None:
    key = api_key(visit.server, alice.username, "server-1")
    visit.log_in(alice)
    page = visit.page
    row = key_row(page, "server-1")
    row.get_by_role("button", name="Disable key server-1").click()
    expect(row).to_contain_text("Disabled")
    assert keys_of(page)[0]["status"] == 2
    row.get_by_role("button", name="Enable key server-1").click()
    expect(row).to_contain_text("Active")
    assert keys_of(page)[0]["status"] == 1

    row.get_by_role("button", name="Delete key server-1").click()
    confirm = page.get_by_role("dialog", name="Delete API key")
    expect(confirm).to_contain_text("Delete server-1?")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    expect(row).to_be_visible()

    row.get_by_role("button", name="Delete key server-1").click()
    confirm.get_by_role("button", name="Delete key").click()
    expect(confirm).to_be_hidden()
    expect(page.get_by_text("You have no API keys yet.")).to_be_visible()
    assert keys_of(page) == []
    assert key_balance(visit, key).status_code == 401


def test_keys_are_made_and_managed_with_the_keyboard_alone(visit: Visit, alice: Person) -> None:
    visit.log_in(alice)
    page = visit.page
    page.get_by_role("button", name="Create API key").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.type("keyboard")
    page.keyboard.press("Tab")  # to "Unlimited"
    page.keyboard.press("Space")
    expect(page.get_by_label("Budget in USD")).to_be_focused()
    page.keyboard.type("2")
    page.keyboard.press("Enter")
    copy = page.get_by_role("dialog").get_by_role("button", name="Copy", exact=True)
    expect(copy).to_be_focused()
    key = shown_key(page)
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.get_by_role("button", name="Create API key")).to_be_focused()
    assert key not in page.content()

    row = key_row(page, "keyboard")
    expect(row).to_contain_text("$2.00")
    row.get_by_role("button", name="Disable key keyboard").focus()
    page.keyboard.press("Enter")
    expect(row.get_by_role("button", name="Enable key keyboard")).to_be_focused()
    page.keyboard.press("Tab")
    expect(row.get_by_role("button", name="Delete key keyboard")).to_be_focused()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("dialog", name="Delete API key")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_text("You have no API keys yet.")).to_be_visible()
    expect(page.get_by_role("button", name="Create API key")).to_be_focused()


def test_an_expired_key_says_so_in_the_list(visit: Visit, alice: Person) -> None:
    key = api_key(visit.server, alice.username, "old")
    visit.log_in(alice)
    page = visit.page
    answer = page.request.put(
        "/api/token/",
        data={"id": keys_of(page)[0]["id"], "expired_time": int(time.time()) + 2},
        headers={"X-CSRF-Token": _csrf(page)},
    )
    assert answer.ok, answer.text()
    time.sleep(2.5)
    page.reload()
    expect(key_row(page, "old")).to_contain_text("Expired")
    assert key not in page.content()


def _csrf(page: Page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "ql_csrf")
