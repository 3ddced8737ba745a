"""`quotaledger channel ...`: the relay's upstreams (SPEC §8, §8a)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from quotaledger.cli.common import (
    audited,
    database_url_option,
    fail,
    handles_errors,
    json_option,
    open_database,
    print_json,
    print_table,
)
from quotaledger.cli.exits import Exit
from quotaledger.relay.providers import FORMATS, PROVIDERS


@click.group()
def channel() -> None:
    """Add, list, test, disable and delete the relay's upstream channels."""


@channel.command()
@click.argument("name")
@click.option(
    "--base-url",
    metavar="URL",
    help="The upstream's base URL, as its SDK takes it (https://host/v1) [gemini: Google's].",
)
@click.option("--models", required=True, metavar="A,B", help="The models this channel serves.")
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="A=UPSTREAM-A",
    help="Call model A by another name upstream (repeat for several).",
)
@click.option("--api-key-stdin", is_flag=True, help="Read the upstream key from standard input.")
@click.option("--api-key-env", metavar="VAR", help="Read the upstream key from variable VAR.")
@click.option(
    "--priority", type=int, default=0, show_default=True, help="Higher priorities are tried first."
)
@click.option(
    "--weight",
    type=int,
    default=1,
    show_default=True,
    help="Share of requests among channels of one priority.",
)
@click.option(
    "--format",
    "wire_format",
    type=click.Choice(FORMATS),
    default="openai",
    show_default=True,
    help="The upstream's API: openai (chat, embeddings, responses), openai-chat (chat and "
    "embeddings only: DeepSeek, Kimi, GLM, Qwen, OpenRouter, vLLM...), anthropic (messages), "
    "gemini (generateContent). Every client endpoint works on every format (converted).",
)
@database_url_option
@handles_errors
def add(
    name: str, base_url: str | None, models: str, mappings: tuple[str, ...], api_key_stdin: bool,
    api_key_env: str | None, priority: int, weight: int, wire_format: str,
    database_url: str | None,
) -> None:  # fmt: skip
    """Add channel NAME. Its key is stored encrypted with QUOTALEDGER_SECRET_KEY (which must
    be set) and never shown again; never give it as a flag.

    \b
    Examples:
      printf '%s' "$OPENAI_API_KEY" | quotaledger channel add openai \\
          --base-url https://api.openai.com/v1 --models gpt-4o-mini,gpt-4o --api-key-stdin
      quotaledger channel add claude --format anthropic --base-url https://api.anthropic.com \\
          --models claude-sonnet-4 --map claude-sonnet-4=claude-sonnet-4-20250514 \\
          --api-key-env ANTHROPIC_API_KEY
      quotaledger channel add deepseek --format openai-chat \\
          --base-url https://api.deepseek.com --models deepseek-chat --api-key-env DEEPSEEK_KEY
      quotaledger channel add google --format gemini --models gemini-2.5-flash \\
          --api-key-env GEMINI_API_KEY
    """
    from quotaledger.relay import channels
    from quotaledger.settings import Secret, Settings

    base_url = base_url or PROVIDERS[wire_format].default_base_url
    if base_url is None:
        raise click.UsageError(f"--base-url is required for {wire_format} channels")
    cipher = channels.ChannelCipher(Settings.from_env(database_url=database_url).secret_key)
    spec = channels.ChannelSpec(
        name=name, base_url=base_url, models=tuple(models.split(",")),
        api_key=Secret(_api_key(api_key_stdin, api_key_env)), model_map=_mapping(mappings),
        format=wire_format, priority=priority, weight=weight,
    )  # fmt: skip
    database = open_database(database_url)
    added = channels.add_channel(database, cipher, spec)
    audited(database, "channel.add", added.name, format=added.format, base_url=added.base_url,
            models=list(added.models), key=added.api_key_hint)  # fmt: skip
    click.echo(f"Added channel {added.name} ({added.format}, {added.base_url}, key "
               f"{added.api_key_hint}) serving {', '.join(added.models)}.")  # fmt: skip
    _warn_unpriced(database, added.models)


def _warn_unpriced(database: Any, models: tuple[str, ...]) -> None:
    """A model is offered only when it has a price (SPEC §8): say which are not, at once,
    rather than let the first request find a 404."""
    from quotaledger.billing import pricing

    priced = {p.model for p in pricing.list_prices(database)}
    for model in models:
        if model not in priced:
            click.echo(
                f"Warning: {model} has no price, so it is not offered until one is set: "
                f"quotaledger price set {model} --input-usd-per-mtok X --output-usd-per-mtok Y",
                err=True,
            )


def _api_key(from_stdin: bool, variable: str | None) -> str:
    if from_stdin == (variable is not None):
        raise click.UsageError("give the upstream key with --api-key-stdin or --api-key-env VAR")
    if from_stdin:
        return sys.stdin.readline().strip()
    assert variable is not None
    value = os.environ.get(variable, "").strip()
    if not value:
        raise click.UsageError(f"--api-key-env: the variable {variable} is not set or empty")
    return value


def _mapping(mappings: tuple[str, ...]) -> dict[str, str]:
    result = {}
    for item in mappings:
        model, sep, upstream = item.partition("=")
        if not sep or not model.strip() or not upstream.strip():
            raise click.BadParameter(f"expected MODEL=UPSTREAM-MODEL, got {item!r}",
                                     param_hint="--map")  # fmt: skip
        result[model.strip()] = upstream.strip()
    return result


@channel.command(name="list")
@json_option
@database_url_option
@handles_errors
def list_channels(as_json: bool, database_url: str | None) -> None:
    """List the channels (highest priority first); keys only as hints."""
    from quotaledger.cli.channel_health import health_columns, health_json, read_health
    from quotaledger.relay import channels

    database = open_database(database_url)
    found = channels.list_channels(database)
    seen = read_health(database)
    if as_json:
        print_json([channel_json(c) | health_json(seen, c.id) for c in found])
        return
    if not found:
        click.echo("No channels. Add one with: quotaledger channel add NAME --base-url URL ...")
        return
    columns = ("name", "format", "base URL", "models", "priority", "weight", "status", "key",
               "health", "last error", "last success", "p50", "ok (1 h)", "balance")  # fmt: skip
    rows = []
    for c in found:
        served = ", ".join(f"{m}→{c.model_map[m]}" if m in c.model_map else m for m in c.models)
        rows.append((c.name, c.format, c.base_url, served, str(c.priority), str(c.weight),
                     c.status, c.api_key_hint, *health_columns(seen, c.id)))  # fmt: skip
    print_table(columns, rows)  # the last error is the upstream's text


def channel_json(c: Any) -> dict[str, Any]:
    return {
        "name": c.name, "format": c.format, "base_url": c.base_url, "models": list(c.models),
        "model_map": c.model_map, "priority": c.priority, "weight": c.weight,
        "status": c.status, "api_key_hint": c.api_key_hint, "created_at": c.created_at,
    }  # fmt: skip


def _simple(verb: str) -> Any:
    @channel.command(name=verb, help=f"{verb.capitalize()} channel NAME.")
    @click.argument("name")
    @database_url_option
    @handles_errors
    def command(name: str, database_url: str | None) -> None:
        from quotaledger.relay import channels

        database = open_database(database_url)
        if verb == "delete":
            channels.delete_channel(database, name)
        else:
            channels.set_channel_status(database, name, f"{verb}d")
        if verb == "enable":  # the operator's word: an automatic disable or cool-down ends
            from quotaledger.relay.health import HealthBook

            HealthBook(database).reset(channels.get_channel(database, name).id)
        audited(database, f"channel.{verb}", name)
        click.echo(f"{verb.capitalize()}d channel {name}.")

    return command


from quotaledger.cli.channel_health import balance  # noqa: E402 - after the group

channel.add_command(balance)
disable = _simple("disable")
enable = _simple("enable")
delete = _simple("delete")


@channel.command(name="test")
@click.argument("name")
@click.option("--model", metavar="M", help="The model to ask [default: the channel's first].")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds.")
@database_url_option
@handles_errors
def test_channel(name: str, model: str | None, timeout: float, database_url: str | None) -> None:
    """Send channel NAME one tiny request (at most 1 output token); print the status and
    the latency. Exit 0 on a 2xx answer, 1 on another status, 5 when unreachable."""
    from quotaledger.relay import channels
    from quotaledger.settings import Settings

    cipher = channels.ChannelCipher(Settings.from_env(database_url=database_url).secret_key)
    found = channels.get_channel(open_database(database_url), name)
    result = channels.probe_channel(found, cipher, model, timeout)
    if result.status == 0:
        fail(f"channel {name}: {result.detail}", Exit.NETWORK)
    line = (
        f"channel {name}: HTTP {result.status} in {result.seconds * 1000:.0f} ms "
        f"({result.upstream_model})"
    )
    if result.ok:
        click.echo(line)
        return
    fail(f"{line}: {result.detail}", Exit.ERROR)


@channel.command()
@click.argument("name")
@click.option("--rename", metavar="NEW", help="A new name for the channel.")
@click.option("--base-url", metavar="URL", help="A new base URL.")
@click.option("--models", metavar="A,B", help="The models it serves (replaces the list).")
@click.option("--map", "mappings", multiple=True, metavar="A=UPSTREAM-A",
              help="Replace the model map (repeat for several; --map '' clears it).")  # fmt: skip
@click.option("--api-key-stdin", is_flag=True, help="A new upstream key, from standard input.")
@click.option("--api-key-env", metavar="VAR", help="A new upstream key, from variable VAR.")
@click.option("--priority", type=int, help="A new priority.")
@click.option("--weight", type=int, help="A new weight.")
@click.option("--format", "wire_format", type=click.Choice(FORMATS), help="A new format.")
@database_url_option
@handles_errors
def edit(
    name: str, rename: str | None, base_url: str | None, models: str | None,
    mappings: tuple[str, ...], api_key_stdin: bool, api_key_env: str | None,
    priority: int | None, weight: int | None, wire_format: str | None, database_url: str | None,
) -> None:  # fmt: skip
    """Change channel NAME: only the options given change; the key stays unless a new one
    is given (and is never shown).

    \b
    Examples:
      quotaledger channel edit openai --priority 10 --weight 3
      printf '%s' "$NEW_KEY" | quotaledger channel edit openai --api-key-stdin
    """
    from quotaledger.relay import channels
    from quotaledger.settings import Secret, Settings

    changes: dict[str, Any] = {
        key: value
        for key, value in (("name", rename), ("base_url", base_url), ("priority", priority),
                           ("weight", weight), ("format", wire_format))
        if value is not None
    }  # fmt: skip
    if models is not None:
        changes["models"] = tuple(models.split(","))
    if mappings:
        changes["model_map"] = _mapping(tuple(m for m in mappings if m))
    cipher = None
    if api_key_stdin or api_key_env:
        changes["api_key"] = Secret(_api_key(api_key_stdin, api_key_env))
        cipher = channels.ChannelCipher(Settings.from_env(database_url=database_url).secret_key)
    if not changes:
        raise click.UsageError("give at least one setting to change")
    database = open_database(database_url)
    changed = channels.update_channel(database, cipher, name, changes)
    shown = {k: (v if k != "api_key" else "new key") for k, v in changes.items()}
    audited(database, "channel.edit", name, **shown)
    click.echo(f"Updated channel {changed.name} ({changed.format}, {changed.base_url}, key "
               f"{changed.api_key_hint}) serving {', '.join(changed.models)}.")  # fmt: skip
