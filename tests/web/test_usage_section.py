"""SPEC §10 in a real browser: the Usage section (the 30-day chart by model, drawn with no
network but this server's; the log with filters, pages and the CSV export of what is
filtered) and the redemption-code field."""

from __future__ import annotations

import csv
import io
import re
import time

import pytest
from browser_helpers import Person, Visit, api_key, log_rows, redemption_code
from playwright.sync_api import Page, Request, Route, expect

pytestmark = pytest.mark.browser

DAY = 86_400


def days_ago(days: int, hour: int = 12) -> int:
    """A moment `days` UTC days before today, at `hour` (never in the future)."""
    today = int(time.time()) // DAY * DAY
    return min(today - days * DAY + hour * 3600, int(time.time()) - 60)


def only_this_server(page: Page, base_url: str) -> list[str]:
    """Refuse every request that is not to the server; returns the refused ones' URLs."""
    refused: list[str] = []

    def handle(route: Route, request: Request) -> None:
        if request.url.startswith(base_url):
            route.continue_()
        else:
            refused.append(request.url)
            route.abort()

    page.context.route("**/*", handle)
    return refused


def log_rows_table(page: Page) -> list[list[str]]:
    rows = page.locator("#log-table tbody tr")
    return [row.locator("td").all_inner_texts() for row in rows.all()]


def test_the_chart_draws_30_days_by_model_with_no_network_but_the_servers(
    visit: Visit, alice: Person
) -> None:
    log_rows(visit.server, alice.username, [
        {"model": "model-a", "quota": 500_000, "created_at": days_ago(0)},
        {"model": "model-a", "quota": 250_000, "created_at": days_ago(3)},
        {"model": "model-b", "quota": 100_000, "created_at": days_ago(3)},
        {"model": "model-b", "quota": 5_000, "created_at": days_ago(29, hour=0)},
        {"model": "model-c", "quota": 900_000, "created_at": days_ago(31)},  # too old
    ])  # fmt: skip
    page = visit.page
    refused = only_this_server(page, visit.server.base_url)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    visit.log_in(alice)

    chart = page.get_by_role("img", name="Spending per day by model, last 30 days")
    expect(chart).to_be_visible()
    expect(chart.locator("rect.bar")).to_have_count(4)
    expect(page.locator("#usage-legend li")).to_have_text(["model-a $1.50", "model-b $0.21"])
    expect(page.locator("#usage-total")).to_have_text("$1.71 · 4 requests")
    assert "model-c" not in chart.inner_html()
    description = chart.locator("desc").text_content()
    assert description == "$1.71 in all: model-a $1.50, model-b $0.21."
    bar_titles = chart.locator("rect.bar title").all_text_contents()
    assert any(title.endswith("model-a: $1.00") for title in bar_titles)
    assert refused == []
    assert all(url.startswith(visit.server.base_url) for url in requests)


def test_with_no_usage_the_chart_says_so(visit: Visit, alice: Person) -> None:
    visit.log_in(alice)
    chart = visit.page.get_by_role("img", name="Spending per day by model, last 30 days")
    expect(chart.locator("desc")).to_have_text("No spending in these 30 days.")
    expect(chart.locator("rect.bar")).to_have_count(0)
    expect(visit.page.get_by_text("No requests match.")).to_be_visible()


def test_the_log_pages_and_filters_by_model_key_and_dates(visit: Visit, alice: Person) -> None:
    rows = [
        {"model": "model-a" if n % 2 else "model-b", "quota": 10_000, "created_at": days_ago(n % 5),
         "key_name": "laptop" if n % 3 == 0 else "ci", "request_id": f"r{n}"}
        for n in range(45)
    ]  # fmt: skip
    log_rows(visit.server, alice.username, rows)
    visit.log_in(alice)
    page = visit.page
    status = page.locator("#log-page")
    expect(status).to_have_text("Page 1 of 3 · 45 requests")
    expect(page.locator("#log-table tbody tr")).to_have_count(20)
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()
    page.get_by_role("button", name="Next").click()
    expect(status).to_have_text("Page 2 of 3 · 45 requests")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#log-table tbody tr")).to_have_count(5)
    expect(page.get_by_role("button", name="Next")).to_be_disabled()

    page.get_by_label("Model", exact=True).fill("model-a")
    page.get_by_role("button", name="Apply filters").click()
    expect(status).to_have_text("Page 1 of 2 · 22 requests")
    assert {cells[2] for cells in log_rows_table(page)} == {"model-a"}

    page.get_by_label("Key name", exact=True).fill("laptop")
    page.get_by_role("button", name="Apply filters").click()
    expect(status).to_have_text("Page 1 of 1 · 7 requests")  # odd multiples of 3 below 45
    assert {(cells[1], cells[2]) for cells in log_rows_table(page)} == {("laptop", "model-a")}

    day = time.strftime("%Y-%m-%d", time.gmtime(days_ago(1)))
    page.get_by_role("button", name="Clear").click()
    expect(status).to_have_text("Page 1 of 3 · 45 requests")
    page.get_by_label("From (UTC)").fill(day)
    page.get_by_label("To (UTC)").fill(day)
    page.get_by_role("button", name="Apply filters").click()
    expect(status).to_have_text("Page 1 of 1 · 9 requests")
    assert {cells[0][:10] for cells in log_rows_table(page)} == {day}


def test_the_export_downloads_the_filtered_log_as_csv(visit: Visit, alice: Person) -> None:
    log_rows(visit.server, alice.username, [
        {"model": "model-a", "quota": 10_000, "created_at": days_ago(1), "request_id": "a1"},
        {"model": "model-b", "quota": 20_000, "created_at": days_ago(1), "request_id": "b1",
         "key_name": "=HYPERLINK(1)"},
    ])  # fmt: skip
    visit.log_in(alice)
    page = visit.page
    page.get_by_label("Model", exact=True).fill("model-b")
    page.get_by_label("Model", exact=True).press("Enter")  # the keyboard applies the filters too
    expect(page.locator("#log-page")).to_have_text("Page 1 of 1 · 1 request")
    with page.expect_download() as started:
        page.get_by_role("link", name="Export CSV").click()
    download = started.value
    assert download.suggested_filename == "quotaledger-log.csv"
    rows = list(csv.reader(io.StringIO(download.path().read_text())))
    assert rows[0][:4] == ["time_utc", "request_id", "key_name", "model"]
    assert [row[1:4] for row in rows[1:]] == [["b1", "'=HYPERLINK(1)", "model-b"]]


def test_the_log_pages_with_the_keyboard(visit: Visit, alice: Person) -> None:
    log_rows(visit.server, alice.username, [
        {"model": "model-a", "quota": 1, "created_at": days_ago(1), "request_id": f"r{n}"}
        for n in range(25)
    ])  # fmt: skip
    visit.log_in(alice)
    page = visit.page
    # The log loads after the page: Next is enabled only once it has (a loaded machine
    # showed the race).
    expect(page.locator("#log-page")).to_have_text("Page 1 of 2 · 25 requests")
    expect(page.get_by_role("button", name="Next")).to_be_enabled()
    page.get_by_role("button", name="Next").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#log-page")).to_have_text("Page 2 of 2 · 25 requests")
    expect(page.get_by_role("button", name="Previous")).to_be_focused()  # Next is now off
    page.keyboard.press("Enter")
    expect(page.locator("#log-page")).to_have_text("Page 1 of 2 · 25 requests")


def test_a_redemption_code_adds_its_quota_and_the_balance_shows_it(
    visit: Visit, alice: Person
) -> None:
    code = redemption_code(visit.server, 5_000_000)
    visit.log_in(alice)
    page = visit.page
    expect(page.locator("#balance-usd")).to_have_text("$50.00")
    page.get_by_label("Redemption code").fill(code)
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator("#redeem-status")).to_have_text(
        "Added $10.00 (5,000,000 quota) to your balance."
    )
    expect(page.locator("#balance-usd")).to_have_text("$60.00")
    expect(page.locator("#balance-quota")).to_have_text("30,000,000")
    expect(page.get_by_label("Redemption code")).to_be_empty()


def test_a_used_or_unknown_code_is_refused_beside_the_field_with_the_keyboard(
    visit: Visit, alice: Person
) -> None:
    code = redemption_code(visit.server, 1_000_000)
    visit.log_in(alice)
    page = visit.page
    field = page.get_by_label("Redemption code")
    field.focus()
    page.keyboard.type(code)
    page.keyboard.press("Enter")
    expect(page.locator("#balance-usd")).to_have_text("$52.00")
    error = page.locator("#redeem-error")
    page.keyboard.type(code)
    page.keyboard.press("Enter")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    expect(error).to_have_text(re.compile(r"\S"))
    expect(page.locator("#redeem-status")).to_be_hidden()
    expect(field).to_be_focused()
    assert code not in error.inner_text()
    page.keyboard.press("Control+a")
    page.keyboard.type("qlr-not-a-real-code")
    page.keyboard.press("Enter")
    expect(error).not_to_have_text(re.compile("^$"))
    expect(page.locator("#balance-usd")).to_have_text("$52.00")


def test_the_sections_fit_a_narrow_screen_in_dark_mode(visit: Visit, alice: Person) -> None:
    log_rows(visit.server, alice.username, [
        {"model": "a-rather-long-model-name-2026", "quota": 10_000, "created_at": days_ago(n),
         "key_name": "laptop", "request_id": f"r{n}"}
        for n in range(3)
    ])  # fmt: skip
    api_key(visit.server, alice.username, "laptop")
    visit.log_in(alice)
    page = visit.page
    page.set_viewport_size({"width": 375, "height": 740})
    page.emulate_media(color_scheme="dark")
    expect(page.locator("#keys-table tbody tr")).to_have_count(1)
    expect(page.locator("#log-table tbody tr")).to_have_count(3)
    expect(page.locator("#usage-chart rect.bar")).to_have_count(3)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_the_log_shows_cache_tokens_channel_and_latency(visit: Visit, alice: Person) -> None:
    log_rows(visit.server, alice.username, [
        {"model": "claude-sonnet-4-5", "quota": 20_000, "created_at": days_ago(0),
         "cached_tokens": 12_000, "cache_write_tokens": 1_500, "cache_write_1h_tokens": 500,
         "channel": "anthropic-main", "latency_ms": 2_350},
        {"model": "gpt-5", "quota": 1_000, "created_at": days_ago(1), "latency_ms": 420,
         "cached_tokens": 0, "cache_write_tokens": 0, "cache_write_1h_tokens": 0,
         "channel": None},
    ])  # fmt: skip
    visit.log_in(alice)
    page = visit.page
    expect(page.locator("#log-table tbody tr")).to_have_count(2)
    headers = page.locator("#log-table thead th").all_text_contents()  # (CSS upper-cases)
    assert headers[3:9] == [
        "Tokens in",
        "Tokens out",
        "Cache read",
        "Cache write",
        "Cost",
        "Channel",
    ]
    second, first = log_rows_table(page)  # newest (the last written) first
    assert first[5:9] == ["12,000", "2,000", "$0.04", "anthropic-main"]
    assert first[9] == "2.4 s"
    assert second[5:10] == ["0", "0", "$0.002", "—", "420 ms"]
