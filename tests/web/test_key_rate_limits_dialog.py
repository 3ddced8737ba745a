"""SPEC §12 in a real browser: the API key dialog's rate limits, sent to the API and refused
in words when they are not whole numbers."""

from __future__ import annotations

import pytest
from browser_helpers import Person, Visit
from playwright.sync_api import expect
from test_api_keys_section import keys_of, open_key_dialog, shown_key

pytestmark = pytest.mark.browser


def test_a_key_made_with_rate_limits_has_them(visit: Visit, alice: Person) -> None:
    visit.log_in(alice)
    page = visit.page
    open_key_dialog(page)
    dialog = page.get_by_role("dialog", name="Create API key")
    dialog.get_by_label("Name", exact=True).fill("agent")
    dialog.get_by_label("Requests per minute").fill("60")
    dialog.get_by_label("Concurrent requests").fill("4")
    dialog.get_by_role("button", name="Create key").click()
    shown_key(page)
    [made] = keys_of(page)
    assert (made["rate_limit_rpm"], made["rate_limit_tpm"], made["rate_limit_concurrency"]) == (
        60, 0, 4,
    )  # fmt: skip


def test_a_rate_limit_that_is_not_a_whole_number_is_refused_in_words(
    visit: Visit, alice: Person
) -> None:
    visit.log_in(alice)
    page = visit.page
    open_key_dialog(page)
    dialog = page.get_by_role("dialog", name="Create API key")
    dialog.get_by_label("Name", exact=True).fill("agent")
    dialog.get_by_label("Tokens per minute").fill("1.5k")
    dialog.get_by_role("button", name="Create key").click()
    expect(dialog.get_by_role("alert")).to_have_text(
        "Tokens per minute: a whole number from 1, or empty for no limit."
    )
    expect(dialog.get_by_label("Tokens per minute")).to_be_focused()
    assert keys_of(page) == []
