"""SPEC §5 in a real browser: log in, see the balance, get the system token in a password
dialog, use it, reload, log out. What is asserted is what a person sees."""

from __future__ import annotations

import re

import pytest
from browser_helpers import Person, Visit, balance_with, charge, create_user
from playwright.sync_api import Page, expect

from support import token_from

pytestmark = pytest.mark.browser

TOKEN = re.compile(r"^ql_[0-9A-Za-z]{20,}$")


def open_token_dialog(page: Page) -> None:
    page.get_by_role("button", name="System Token").click()
    expect(page.get_by_role("dialog", name="System Token")).to_be_visible()


def submit_password(page: Page, password: str) -> None:
    page.get_by_label("Account password").fill(password)
    page.get_by_role("button", name="Verify and create token").click()


def shown_token(page: Page) -> str:
    """The token the dialog shows, once it is there."""
    expect(page.locator("#token-value")).to_have_text(TOKEN)
    return page.locator("#token-value").inner_text()


def test_account_page_without_a_session_leads_to_the_login_page(visit: Visit) -> None:
    visit.page.goto("/account")
    expect(visit.page).to_have_url(re.compile(r"/login$"))
    expect(visit.page.get_by_role("heading", name="Log in")).to_be_visible()


def test_a_wrong_login_is_refused_with_a_message(visit: Visit, alice: Person) -> None:
    page = visit.page
    page.goto("/login")
    page.get_by_label("Username").fill(alice.username)
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_after_login_the_page_shows_the_balance_and_a_curl_example(visit: Visit) -> None:
    # The reference page's example: 24,997,909 quota left is $49.99.
    visit.server.cli("price", "set", "model-a", "--per-call-usd", "0.02")
    carol = create_user(visit.server, "carol", quota=24_997_909 + 3 * 10_000)
    charge(visit.server, "carol", "model-a", "r1", "r2", "r3")
    visit.log_in(carol)
    page = visit.page
    expect(page.get_by_role("heading", name="Account Settings")).to_be_visible()
    expect(page.locator("#balance-usd")).to_have_text("$49.99")
    expect(page.locator("#balance-quota")).to_have_text("24,997,909")
    expect(page.locator("#used-usd")).to_have_text("$0.06")
    expect(page.locator("#used-quota")).to_have_text("30,000")
    expect(page.locator("#request-count")).to_have_text("3")
    expect(page.locator("#group")).to_have_text("default")
    example = page.locator("#curl-example").inner_text()
    assert example.startswith(f"curl --compressed -s {visit.server.base_url}/api/user/self")
    assert 'Authorization: $QUOTALEDGER_TOKEN"' in example
    expect(page.get_by_text("You have no system token yet.")).to_be_visible()


def test_a_wrong_password_shows_an_error_in_the_dialog_and_keeps_the_old_token(
    visit: Visit, alice: Person
) -> None:
    old_token = token_from(visit.server.base_url, alice.username, alice.password)
    visit.log_in(alice)
    page = visit.page
    open_token_dialog(page)
    submit_password(page, "not-her-password")
    dialog = page.get_by_role("dialog", name="System Token")
    expect(dialog.get_by_role("alert")).to_have_text("Wrong password.")
    expect(dialog.locator("#token-value")).to_be_hidden()
    assert "ql_" not in dialog.inner_text()
    assert balance_with(visit.server, old_token).status_code == 200


_PAST_THE_DELAY = 30_000  # ms


_THROTTLED = re.compile(r"^Too many (failed attempts|requests): try again in \d+ s\.$")


def test_repeated_wrong_passwords_are_throttled_with_the_wait(visit: Visit, alice: Person) -> None:
    visit.log_in(alice)
    page = visit.page
    open_token_dialog(page)
    alert = page.get_by_role("dialog").get_by_role("alert")
    submit = page.get_by_role("button", name="Verify and create token")
    for _ in range(8):  # 3 wrong passwords, then a wait; 5 checks a minute per account
        submit_password(page, "not-her-password")
        expect(submit).not_to_have_attribute("aria-busy", "true", timeout=_PAST_THE_DELAY)
        expect(alert).to_be_visible(timeout=_PAST_THE_DELAY)
        if "Too many" in alert.inner_text():
            break
        # A wait set by the last failure may have lapsed: the button comes back after it.
        expect(submit).to_be_enabled(timeout=_PAST_THE_DELAY)
    expect(alert).to_have_text(_THROTTLED)
    expect(submit).to_be_disabled()  # until the wait is over


def _log_in_as(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_repeated_wrong_logins_show_the_wait_and_the_right_password_works_after_it(
    visit: Visit, alice: Person
) -> None:
    page = visit.page
    page.goto("/login")
    alert = page.get_by_role("alert")
    submit = page.get_by_role("button", name="Log in")
    for _ in range(8):
        _log_in_as(page, alice.username, "not-her-password")
        expect(alert).to_be_visible(timeout=_PAST_THE_DELAY)
        if "Too many" in alert.inner_text():
            break
        expect(submit).to_be_enabled(timeout=_PAST_THE_DELAY)
    # The wait, not the attempt rate (5 a minute): the same words for any username.
    expect(alert).to_have_text(re.compile(r"^Too many failed attempts: try again in \d+ s\.$"))
    expect(submit).to_be_disabled()  # trying again before the wait is over is pointless
    expect(page).to_have_url(re.compile(r"/login$"))
    # The wait over (at most a few seconds after three failures), the button is back and
    # the right password logs in.
    expect(submit).to_be_enabled(timeout=_PAST_THE_DELAY)
    _log_in_as(page, alice.username, alice.password)
    page.wait_for_url("**/account")
    expect(page.get_by_role("heading", name="Account Settings")).to_be_visible()


def test_the_right_password_shows_a_new_token_once_with_copy_and_warnings(
    visit: Visit, alice: Person
) -> None:
    old_token = token_from(visit.server.base_url, alice.username, alice.password)
    visit.log_in(alice)
    page = visit.page
    open_token_dialog(page)
    submit_password(page, alice.password)

    token = shown_token(page)
    warnings = page.get_by_role("note").inner_text()
    for warning in (
        "full account permissions",
        "shown only once",
        "invalidates the old one at once",
        "Never hard-code it",
        "commit it to a repository",
        "environment variable",
        "Rotate it regularly",
    ):
        assert warning in warnings
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == token

    answer = balance_with(visit.server, token)
    assert answer.status_code == 200
    assert answer.json()["data"]["username"] == alice.username
    assert balance_with(visit.server, old_token).status_code == 401


def test_after_closing_or_reloading_the_token_is_nowhere_in_the_page(
    visit: Visit, alice: Person
) -> None:
    visit.log_in(alice)
    page = visit.page
    open_token_dialog(page)
    submit_password(page, alice.password)
    token = shown_token(page)

    page.get_by_role("button", name="Done").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.locator("#token-value")).to_be_empty()
    assert token not in page.content()
    expect(page.locator("#token-status")).to_contain_text(f"ql_…{token[-4:]}")

    page.reload()
    expect(page.get_by_role("heading", name="Account Settings")).to_be_visible()
    assert token not in page.content()
    expect(page.locator("#token-status")).to_contain_text(f"Current token: ql_…{token[-4:]}")


def test_the_dialog_works_with_the_keyboard_alone(visit: Visit, alice: Person) -> None:
    visit.log_in(alice)
    page = visit.page
    page.get_by_role("button", name="System Token").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Account password")).to_be_focused()
    page.keyboard.type("not-her-password")
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog").get_by_role("alert")).to_have_text("Wrong password.")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.get_by_role("button", name="System Token")).to_be_focused()

    page.keyboard.press("Enter")
    expect(page.get_by_label("Account password")).to_be_focused()  # type only once it has focus
    page.keyboard.type(alice.password)
    page.keyboard.press("Enter")
    copy = page.get_by_role("button", name="Copy", exact=True)
    expect(copy).to_be_focused()
    shown_token(page)


def test_logging_out_ends_the_session(visit: Visit, alice: Person) -> None:
    visit.log_in(alice)
    page = visit.page
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login\?notice=logged-out$"))
    expect(page.get_by_role("status")).to_have_text("You have logged out.")
    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/login$"))
    assert page.request.get("/api/user/self").status == 401


def test_logged_in_login_page_and_site_root_lead_to_the_account(
    visit: Visit, alice: Person
) -> None:
    visit.log_in(alice)
    for path in ("/login", "/"):
        visit.page.goto(path)
        expect(visit.page).to_have_url(re.compile(r"/account$"))


def test_pages_are_locked_down_cookies_strict_and_session_writes_need_csrf(
    visit: Visit, alice: Person
) -> None:
    visit.log_in(alice)
    page = visit.page
    response = page.reload()
    assert response is not None
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["cache-control"] == "no-store"
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    assert cookies["ql_session"]["httpOnly"] is True
    assert cookies["ql_session"]["sameSite"] == "Strict"
    assert cookies["ql_csrf"]["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find("ql_session") == -1

    no_csrf = page.request.post("/api/user/token", data={"password": alice.password})
    assert no_csrf.status == 403


def test_the_page_fits_a_narrow_screen_in_dark_mode(visit: Visit, alice: Person) -> None:
    visit.log_in(alice)
    page = visit.page
    page.set_viewport_size({"width": 375, "height": 740})
    page.emulate_media(color_scheme="dark")
    open_token_dialog(page)
    submit_password(page, alice.password)
    expect(page.locator("#token-value")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    dialog_box = page.get_by_role("dialog").bounding_box()
    assert dialog_box is not None and dialog_box["width"] <= 375
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    text = page.evaluate("getComputedStyle(document.body).color")
    assert _luminance(background) < 0.1 < 0.7 < _luminance(text)


def _luminance(css_color: str) -> float:
    red, green, blue = (int(part) / 255 for part in re.findall(r"\d+", css_color)[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue
