"""The operator console (SPEC §13) in Chromium against a real `quotaledger serve`: an admin
adds a channel and tests it against the fake upstream on loopback, sets a price, creates a
user and grants quota, resets a password, creates and downloads redemption codes, filters
the logs, and finds each action in Audit. Stored markup is shown as text, never run; the
pages work by keyboard and at phone width.

Screenshots for the README are written to QUOTALEDGER_SCREENSHOTS (a folder) when set."""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_helpers import Person, Visit, create_user, log_rows
from playwright.sync_api import Browser, Page, expect

from quotaledger.billing import pricing
from quotaledger.identity import accounts
from quotaledger.relay import channels
from quotaledger.secret import Secret
from quotaledger.store.database import Database
from support import ADMIN_PASSWORD, LiveServer, start_server, stop_server

pytestmark = pytest.mark.browser
SECRET_KEY = "console-tests-secret-key-of-enough-length-0123"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fake_upstream.py"
MARKUP = '<img src=x id=pwned onerror="document.title=1">'
ADMIN = Person("admin", ADMIN_PASSWORD)


def _fake_upstream_module() -> Any:
    if "fake_upstream" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fake_upstream", EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["fake_upstream"] = module
        spec.loader.exec_module(module)
    return sys.modules["fake_upstream"]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Any]:
    with _fake_upstream_module().serve_in_thread() as running:
        yield running


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """This module's server: with a secret key, for channel keys; every test logs the admin
    in, so logins are not limited."""
    folder = tmp_path_factory.mktemp("console")
    env = {
        "QUOTALEDGER_RATE_LIMIT_LOGIN_ADDRESS": "off",
        "QUOTALEDGER_RATE_LIMIT_LOGIN": "off",
        "QUOTALEDGER_SECRET_KEY": SECRET_KEY,
    }
    server = start_server(f"sqlite:///{folder / 'console.db'}", folder, env)
    yield server
    stop_server(server)


def _database(server: LiveServer) -> Database:
    return Database(server.database_url)


def _balance(server: LiveServer, username: str) -> int:
    database = _database(server)
    try:
        return accounts.find_account(database, username).quota
    finally:
        database.dispose()


def _admin(visit: Visit, path: str) -> Page:
    visit.log_in(ADMIN)
    visit.page.goto(path)
    return visit.page


def _screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("QUOTALEDGER_SCREENSHOTS")
    if folder:
        page.set_viewport_size({"width": 1280, "height": 800})
        page.screenshot(path=str(Path(folder) / f"console-{name}.png"))


def _expect_audited(page: Page, action: str, target: str) -> None:
    page.goto("/admin/audit")
    page.get_by_placeholder("Action, e.g. user.").fill(action)
    page.get_by_role("button", name="Filter").click()
    row = page.locator("#audit-rows tr").filter(has_text=target).first
    expect(row).to_contain_text(action)
    expect(row).to_contain_text("admin")
    expect(row).to_contain_text("127.0.0.1")


def test_an_admin_adds_a_channel_and_tests_it(visit: Visit, upstream: Any) -> None:
    page = _admin(visit, "/admin/channels")
    page.get_by_label("Name").fill("fake")
    page.get_by_label("Format").select_option("openai")
    page.get_by_label("Base URL").fill(upstream.base_url + "/v1")
    page.get_by_label("Models", exact=True).fill("gpt-fake")
    page.get_by_label("Upstream key").fill("sk-console-upstream-7777")
    page.get_by_role("button", name="Add channel").click()

    row = page.locator("#channel-rows tr").filter(has_text="fake")
    expect(row).to_contain_text("…7777")
    page.get_by_role("button", name="Test fake").click()
    expect(page.locator("#page-status")).to_contain_text("Channel fake works: HTTP 200")
    assert "sk-console-upstream-7777" not in page.content()
    _screenshot(page, "channels")

    page.get_by_role("button", name="Edit fake").click()
    page.get_by_label("Priority").fill("7")
    page.get_by_role("button", name="Save changes").click()
    expect(row).to_contain_text("7 / 1")
    expect(row).to_contain_text("…7777")  # the key was kept
    page.get_by_role("button", name="Disable fake").click()
    expect(row).to_contain_text("disabled")
    _expect_audited(page, "channel.test", "fake")


def test_deleting_a_channel_asks_first(visit: Visit, upstream: Any) -> None:
    page = _admin(visit, "/admin/channels")
    page.get_by_label("Name").fill("doomed")
    page.get_by_label("Base URL").fill(upstream.base_url + "/v1")
    page.get_by_label("Models", exact=True).fill("gpt-fake")
    page.get_by_label("Upstream key").fill("sk-doomed-upstream-1234")
    page.get_by_role("button", name="Add channel").click()
    row = page.locator("#channel-rows tr").filter(has_text="doomed")
    expect(row).to_have_count(1)

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete doomed").click()
    expect(row).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete doomed").click()
    expect(row).to_have_count(0)


def test_an_admin_sets_a_price_with_every_field(visit: Visit) -> None:
    page = _admin(visit, "/admin/prices")
    page.get_by_label("Model").fill("claude-console")
    page.get_by_label("Input USD / Mtok", exact=True).fill("3")
    page.get_by_label("Output USD / Mtok", exact=True).fill("15")
    page.get_by_label("Cache read USD / Mtok", exact=True).fill("0.3")
    page.get_by_label("Cache write (1 h) USD / Mtok", exact=True).fill("6")
    page.get_by_text("Maximum output, long context, web search").click()
    page.get_by_label("Max output tokens").fill("64000")
    page.get_by_label("Web search USD / 1,000 calls").fill("10")
    page.get_by_role("button", name="Save price").click()

    row = page.locator("#price-rows tr").filter(has_text="claude-console")
    expect(row).to_contain_text("$15")
    expect(row).to_contain_text("$0.3")
    expect(row).to_contain_text("$6")
    # An edit that changes one field keeps the others (a PUT replaces the whole price).
    page.get_by_role("button", name="Edit claude-console").click()
    expect(page.get_by_label("Max output tokens")).to_have_value("64000")
    page.get_by_label("Output USD / Mtok", exact=True).fill("16")
    page.get_by_role("button", name="Save price").click()
    expect(row).to_contain_text("$16")
    database = _database(visit.server)
    try:
        [price] = [p for p in pricing.list_prices(database) if p.model == "claude-console"]
    finally:
        database.dispose()
    assert (str(price.output_usd_per_mtok), str(price.cache_write_1h_usd_per_mtok)) == ("16", "6")
    assert (price.max_output_tokens, str(price.web_search_usd_per_kcall)) == (64_000, "10")
    _expect_audited(page, "price.set", "claude-console")


def test_an_admin_creates_a_user_and_grants_quota(visit: Visit) -> None:
    page = _admin(visit, "/admin/users")
    page.get_by_label("Username").fill("newcomer")
    page.get_by_role("button", name="Create user").click()
    password = page.locator("#secret-value")
    expect(password).to_have_text(re.compile(r"\S{12,}"))
    database = _database(visit.server)
    try:
        assert accounts.authenticate(database, "newcomer", password.inner_text())
    finally:
        database.dispose()
    before = _balance(visit.server, "newcomer")

    page.get_by_role("button", name="Grant or deduct for newcomer").click()
    page.get_by_label("Amount (USD; negative deducts)").fill("12.50")
    page.get_by_label("Reason").fill("welcome credit")
    page.get_by_role("button", name="Record").click()

    expect(page.locator("#page-status")).to_contain_text("$12.50")
    assert _balance(visit.server, "newcomer") - before == 6_250_000
    _screenshot(page, "users")
    _expect_audited(page, "user.grant", "newcomer")
    expect(page.locator("#audit-rows")).to_contain_text("welcome credit")


def test_resetting_a_password_ends_the_users_session(
    visit: Visit, browser: Browser, web_server: LiveServer
) -> None:
    person = create_user(web_server, "forgetful", quota=0)
    other = browser.new_context(base_url=web_server.base_url)
    theirs = Visit(other.new_page(), web_server)
    theirs.log_in(person)

    page = _admin(visit, "/admin/users")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Reset the password of forgetful").click()
    new_password = page.locator("#secret-value")
    expect(new_password).to_have_text(re.compile(r"\S{12,}"))

    theirs.page.reload()
    expect(theirs.page).to_have_url(re.compile(r"/login"))
    theirs.log_in(Person("forgetful", new_password.inner_text()))
    other.close()
    _expect_audited(page, "user.reset_password", "forgetful")


def test_redemption_codes_are_shown_once_and_downloaded(visit: Visit) -> None:
    page = _admin(visit, "/admin/redemptions")
    page.get_by_label("Name").fill("launch")
    page.get_by_label("How many").fill("3")
    page.get_by_label("Value each (USD)").fill("5")
    page.get_by_role("button", name="Create codes").click()

    shown = page.locator("#codes-value")
    expect(shown).to_have_text(re.compile(r"^(qlr-\S+\n){2}qlr-\S+$"))
    codes = shown.inner_text().split("\n")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [row["code"] for row in rows] == codes
    assert {row["usd"] for row in rows} == {"5.00"}
    expect(page.locator("#code-rows tr").filter(has_text="launch")).to_have_count(3)

    page.reload()
    expect(page.locator("#code-rows tr").filter(has_text="launch")).to_have_count(3)
    assert not any(code in page.content() for code in codes)
    _expect_audited(page, "redemption.create", "launch")


def test_logs_of_every_user_are_filtered(visit: Visit, web_server: LiveServer) -> None:
    for name, model, status in (("logger1", "model-a", 200), ("logger2", "model-b", 503)):
        create_user(web_server, name, quota=0)
        log_rows(
            web_server,
            name,
            [
                {
                    "model": model,
                    "quota": 10,
                    "created_at": 1_800_000_000,
                    "channel": "east",
                    "status": status,
                    "request_id": f"{name}-req",
                }
            ],
        )
    page = _admin(visit, "/admin/logs")
    expect(page.locator("#log-rows")).to_contain_text("logger1")

    page.get_by_label("User").fill("logger2")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#log-rows tr")).to_have_count(1)
    expect(page.locator("#log-rows")).to_contain_text("model-b")
    page.get_by_label("User").fill("")
    page.get_by_label("Status").fill("2xx")
    page.get_by_label("Channel").fill("east")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#log-rows tr")).to_have_count(1)
    expect(page.locator("#log-rows")).to_contain_text("logger1")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    lines = Path(download.value.path()).read_text().strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("logger1,")


def test_the_dashboard_draws_its_chart_from_local_assets(
    visit: Visit, web_server: LiveServer
) -> None:
    create_user(web_server, "spender", quota=0)
    log_rows(
        web_server,
        "spender",
        [{"model": "model-d", "quota": 500_000, "created_at": int(time.time()), "channel": "west"}],
    )
    earlier = [  # a few earlier days, for a chart with some shape
        {"model": model, "quota": quota, "created_at": int(time.time()) - days * 86_400,
         "channel": "west", "request_id": f"earlier-{days}"}
        for days, model, quota in ((2, "model-d", 300_000), (5, "model-e", 800_000),
                                   (9, "model-e", 450_000), (16, "model-d", 650_000))
    ]  # fmt: skip
    create_user(web_server, "spender2", quota=0)
    log_rows(web_server, "spender2", earlier)
    requests: list[str] = []
    visit.page.on("request", lambda request: requests.append(request.url))
    page = _admin(visit, "/admin")
    page.get_by_role("button", name="30 days").click()

    expect(page.locator("#by-model")).to_contain_text("model-d")
    expect(page.locator("#total-quota")).to_have_text("$5.40")
    expect(page.locator("#by-channel")).to_contain_text("west")
    expect(page.locator("#day-chart svg rect")).to_have_count(30)
    expect(page.locator("#day-chart")).not_to_contain_text("NaN")  # rows of other days left out
    expect(page.locator("#day-chart svg rect title").last).to_contain_text("$1.00")
    assert all(url.startswith(web_server.base_url) for url in requests)
    _screenshot(page, "dashboard")


def test_stored_markup_is_shown_as_text_and_never_run(visit: Visit, web_server: LiveServer) -> None:
    """Every free-text field the console shows holds markup: none becomes an element."""
    create_user(web_server, "marked", quota=0)
    database = _database(web_server)
    try:
        account = accounts.find_account(database, "marked")
        pricing.set_price(database, pricing.make_price(MARKUP, per_call_usd="0.01"))
        pricing.set_group_ratio(database, MARKUP[:60], "1")
        from quotaledger.billing import redemptions
        from quotaledger.identity import keys

        keys.create_key(database, account.id, MARKUP[:60], keys.KeyLimits())
        redemptions.create_codes(database, 1000, name=MARKUP[:60])
        accounts.create_account(database, "grouped", "grouped-password-1", group=MARKUP[:60])
        cipher = channels.ChannelCipher(Secret(SECRET_KEY))
        spec = channels.ChannelSpec("marked", "https://up.example/v1", (MARKUP,), Secret("sk-x"))
        channels.add_channel(database, cipher, spec)
    finally:
        database.dispose()
    log_rows(
        web_server,
        "marked",
        [
            {
                "model": MARKUP,
                "quota": 1,
                "created_at": int(time.time()),
                "key_name": MARKUP[:60],
                "channel": MARKUP[:60],
                "request_id": MARKUP,
            }
        ],
    )
    visit.log_in(ADMIN)
    token = _admin_token(web_server)
    httpx.post(
        f"{web_server.base_url}/api/user/grant",
        headers={"Authorization": token},
        json={"id": account.id, "quota": 5, "reason": MARKUP},
    ).raise_for_status()

    page = visit.page
    for path, where in (
        ("/admin/prices", "#price-rows"),
        ("/admin/prices", "#group-rows"),
        ("/admin/keys", "#key-rows"),
        ("/admin/redemptions", "#code-rows"),
        ("/admin/logs", "#log-rows"),
        ("/admin/audit", "#audit-rows"),
        ("/admin", "#by-model"),
        ("/admin", "#by-channel"),
        ("/admin/channels", "#channel-rows"),
        ("/admin/users", "#user-rows"),
    ):
        page.goto(path)
        expect(page.locator(where)).to_contain_text("<img src=x")
        expect(page.locator("#pwned")).to_have_count(0)
        assert page.locator("main img").count() == 0, path
    assert page.title() != "1"


def _admin_token(server: LiveServer) -> str:
    from support import token_from

    return token_from(server.base_url, "admin", ADMIN_PASSWORD)


def test_keys_of_every_user_are_found_and_disabled_by_keyboard(
    visit: Visit, web_server: LiveServer
) -> None:
    from browser_helpers import api_key

    create_user(web_server, "keyholder", quota=0)
    raw = api_key(web_server, "keyholder", "ci-runner")
    page = _admin(visit, "/admin/keys")
    page.get_by_placeholder("Key name, user or hint").focus()
    page.keyboard.type("keyholder")
    page.keyboard.press("Enter")
    row = page.locator("#key-rows tr")
    expect(row).to_have_count(1)
    page.get_by_role("button", name="Disable ci-runner of keyholder").focus()
    page.keyboard.press("Enter")
    expect(row).to_contain_text("disabled")
    answer = httpx.get(
        f"{web_server.base_url}/v1/models", headers={"Authorization": f"Bearer {raw}"}
    )
    assert answer.status_code in (401, 403)
    _expect_audited(page, "key.disable", "keyholder/ci-runner")


def test_a_user_changes_their_password_and_other_sessions_end(
    visit: Visit, browser: Browser, web_server: LiveServer
) -> None:
    person = create_user(web_server, "changer", quota=0)
    other = browser.new_context(base_url=web_server.base_url)
    elsewhere = Visit(other.new_page(), web_server)
    elsewhere.log_in(person)
    visit.log_in(person)
    page = visit.page

    page.get_by_label("Current password").fill("not-my-password")
    page.get_by_label("New password").fill("a-brand-new-password")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#password-error")).to_contain_text("Wrong password")
    page.get_by_label("Current password").fill(person.password)
    page.get_by_label("New password").fill("a-brand-new-password")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#password-status")).to_contain_text("1 other session ended")

    page.reload()
    expect(page).to_have_url(re.compile(r"/account"))
    elsewhere.page.reload()
    expect(elsewhere.page).to_have_url(re.compile(r"/login"))
    other.close()


def test_a_user_is_refused_the_console(visit: Visit, web_server: LiveServer) -> None:
    person = create_user(web_server, "curious", quota=0)
    visit.log_in(person)
    expect(visit.page.get_by_role("link", name="Operator console")).to_have_count(0)
    answer = visit.page.goto("/admin/users")
    assert answer is not None and answer.status == 403
    expect(visit.page.get_by_role("alert")).to_contain_text("admin accounts only")


@pytest.mark.parametrize("path", ["/admin", "/admin/channels", "/admin/users", "/admin/logs"])
def test_pages_fit_a_phone(visit: Visit, path: str) -> None:
    visit.page.set_viewport_size({"width": 375, "height": 740})
    page = _admin(visit, path)
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 375, f"{path} is {overflow} px wide at 375 px"
