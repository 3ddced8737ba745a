"""The config file: the documented example works, and every mistake is refused with the
file, the line, the key and the reason, without repeating a secret."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from quotaledger.monitor.config import WatchConfig, load_config
from quotaledger.monitor.notify import check_url
from quotaledger.monitor.tokens import resolve_tokens
from quotaledger.monitor.tomlsource import ConfigError

DOCS = Path(__file__).parents[2] / "docs" / "monitor.md"
GOOD = """\
[defaults]
interval = "5m"
repeat = "6h"
notify = ["json://127.0.0.1:8080/hook"]

[[account]]
name = "prod"
base_url = "https://api.example.com"
token_env = "PROD_TOKEN"
warn_usd = 20
critical_usd = 5
"""


def load(tmp_path: Path, text: str) -> WatchConfig:
    path = tmp_path / "watch.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, check_url=check_url)


def refusal(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value


def test_the_documented_example_loads(tmp_path: Path) -> None:
    example = re.search(r"```toml\n(.*?)```", DOCS.read_text(), re.S)
    assert example is not None
    config = load(tmp_path, example.group(1))
    prod, openrouter, deepseek, laptop = config.accounts
    assert laptop.key_env == "LAPTOP_KEY" and laptop.token_env == "PROD_TOKEN"
    assert laptop.thresholds.warn == Decimal(2)
    assert prod.user_id == 42 and prod.thresholds.warn == Decimal(20)
    assert openrouter.interval == timedelta(minutes=15) and openrouter.base_url is None
    assert openrouter.notify == ("slack://T000/B000/XXXX/#billing",)
    assert deepseek.thresholds.currency == "CNY" and deepseek.thresholds.critical == 20
    assert len(prod.notify) == 3  # inherited from [defaults]


def test_defaults_apply_and_accounts_override_them(tmp_path: Path) -> None:
    text = GOOD + 'repeat = "off"\nunknown_after = 5\nrecovery_margin = 0.2\n'
    account = load(tmp_path, text).accounts[0]
    assert account.interval == timedelta(minutes=5)
    assert account.timeout == timedelta(seconds=10)
    assert account.policy.repeat is None
    assert account.policy.unknown_after == 5
    assert account.policy.recovery_margin == Decimal("0.2")
    assert account.provider == "newapi"


def test_an_unknown_key_is_refused_with_its_line_and_a_suggestion(tmp_path: Path) -> None:
    error = refusal(tmp_path, GOOD.replace("warn_usd = 20", "warn_sud = 20"))
    assert str(error) == (
        f"{tmp_path / 'watch.toml'}:10: [[account]] #1 (prod) warn_sud: "
        "unknown key 'warn_sud' (did you mean 'warn_usd'?)"
    )


def test_an_interval_under_60_seconds_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, GOOD.replace('interval = "5m"', 'interval = "30s"'))
    assert error.line == 2
    assert "[defaults] interval: '30s' is under 60 s" in str(error)


def test_an_accounts_own_interval_is_checked_on_its_own_line(tmp_path: Path) -> None:
    error = refusal(tmp_path, GOOD + "interval = 59\n")
    assert (error.line, error.where) == (12, "[[account]] #1 (prod) interval")


def test_critical_above_warn_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, GOOD.replace("critical_usd = 5", "critical_usd = 25"))
    assert error.line == 11
    assert error.reason == "critical_usd (25) must be below warn_usd (20)"


def test_a_bad_apprise_url_is_refused_without_repeating_it(tmp_path: Path) -> None:
    text = GOOD.replace(
        '["json://127.0.0.1:8080/hook"]',
        '[\n  "json://127.0.0.1:8080/hook",\n  "slack://s3cr3t-webhook-part",\n]',
    )
    error = refusal(tmp_path, text)
    assert error.line == 6
    assert "invalid slack:// URL" in str(error)
    assert "s3cr3t" not in str(error)


def test_an_unknown_apprise_scheme_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, GOOD.replace("json://127.0.0.1:8080/hook", "nosuch://x"))
    assert error.reason.startswith("unknown Apprise scheme nosuch://")


def test_a_missing_token_variable_is_refused_at_its_line(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    with pytest.raises(ConfigError) as caught:
        resolve_tokens(config, {})
    assert caught.value.line == 9
    assert caught.value.reason == "environment variable PROD_TOKEN is not set or empty"


def test_a_token_in_the_file_is_refused_without_repeating_it(tmp_path: Path) -> None:
    error = refusal(tmp_path, GOOD + 'token = "ql_supersecret"\n')
    assert "the token never sits in the file" in str(error)
    assert "supersecret" not in str(error)


def test_a_token_pasted_as_token_env_is_not_repeated(tmp_path: Path) -> None:
    error = refusal(tmp_path, GOOD.replace('"PROD_TOKEN"', '"sk-live-abc123"'))
    assert error.line == 9 and "abc123" not in str(error)


def test_a_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("ql_fromfile\n")
    text = GOOD.replace('token_env = "PROD_TOKEN"', f'token_file = "{tmp_path / "token"}"')
    tokens = resolve_tokens(load(tmp_path, text), {})
    assert tokens["prod"].reveal() == "ql_fromfile"
    assert "ql_fromfile" not in repr(tokens)


def test_token_env_and_token_file_together_are_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, GOOD + 'token_file = "/tmp/x"\n')
    assert error.reason == "set one of token_env or token_file, not both"


def test_cny_thresholds_need_a_currency_and_do_not_mix_with_usd(tmp_path: Path) -> None:
    cny = GOOD.replace(
        "warn_usd = 20\ncritical_usd = 5", 'currency = "cny"\nwarn = 100\ncritical = 20'
    )
    assert load(tmp_path, cny).accounts[0].thresholds.currency == "CNY"
    mixed = refusal(tmp_path, GOOD + "warn = 100\n")
    assert "use either warn_usd/critical_usd or currency with warn/critical" in mixed.reason


def test_duplicate_account_names_are_refused(tmp_path: Path) -> None:
    second = GOOD[GOOD.index("[[account]]") :]
    error = refusal(tmp_path, GOOD + "\n" + second)
    assert error.where == "[[account]] #2 (prod) name" and error.line == 14


def test_invalid_toml_is_refused_with_its_line(tmp_path: Path) -> None:
    error = refusal(tmp_path, GOOD.replace("warn_usd = 20", "warn_usd = "))
    assert error.line == 10 and "invalid TOML" in error.reason


def test_a_config_without_accounts_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, GOOD[: GOOD.index("[[account]]")])
    assert error.reason == "no [[account]] tables: nothing to watch"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('provider = "nosuch"', "unknown provider 'nosuch'"),
        ('base_url = "api.example.com"', "expected an http:// or https:// URL"),
        ("warn_usd = -1", "expected an amount of at least 0"),
        ('timeout = "10m"', "must be shorter than interval"),
        ('recovery_margin = "150%"', "expected between 0% and 100%"),
    ],
)
def test_bad_values_are_refused_with_a_reason(tmp_path: Path, line: str, reason: str) -> None:
    key = line.split(" ")[0]
    text = re.sub(rf"^{key} = .*$", line, GOOD, flags=re.M)
    if key not in GOOD:
        text += line + "\n"
    assert reason in refusal(tmp_path, text).reason


@pytest.mark.parametrize("value", ['"abc"', '"é"', '"4\\n2"', '"42abc"', "-1", "true", '""', "4.2"])
def test_a_user_id_that_is_not_digits_is_refused_at_its_line(tmp_path: Path, value: str) -> None:
    error = refusal(tmp_path, GOOD + f"user_id = {value}\n")
    assert error.line == 12
    assert error.where == "[[account]] #1 (prod) user_id"
    assert "expected the numeric user id" in error.reason


@pytest.mark.parametrize(("value", "parsed"), [("42", 42), ('"42"', "42"), ('" 7 "', "7")])
def test_a_numeric_user_id_is_accepted(tmp_path: Path, value: str, parsed: object) -> None:
    assert load(tmp_path, GOOD + f"user_id = {value}\n").accounts[0].user_id == parsed


def test_a_relative_token_file_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "prod.token").write_text("ql_besidetheconfig\n")
    path = tmp_path / "conf" / "watch.toml"
    path.write_text(GOOD.replace('token_env = "PROD_TOKEN"', 'token_file = "prod.token"'))
    monkeypatch.chdir(tmp_path)  # cron and systemd start elsewhere
    config = load_config(path, check_url=check_url)
    assert config.accounts[0].token_file == tmp_path / "conf" / "prod.token"
    assert resolve_tokens(config, {})["prod"].reveal() == "ql_besidetheconfig"


def test_an_account_without_notify_urls_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, GOOD.replace('notify = ["json://127.0.0.1:8080/hook"]\n', ""))
    assert error.line == 5  # the [[account]] header
    assert error.reason.startswith("no notify URLs for account 'prod'")


@pytest.mark.parametrize("where", ["defaults", "account"])
def test_notify_written_empty_on_purpose_is_accepted(tmp_path: Path, where: str) -> None:
    text = GOOD.replace('notify = ["json://127.0.0.1:8080/hook"]\n', "")
    text = (
        text.replace("[defaults]\n", "[defaults]\nnotify = []\n")
        if where == "defaults"
        else (text + "notify = []\n")
    )
    assert load(tmp_path, text).accounts[0].notify == ()
