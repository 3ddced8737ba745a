"""`quotaledger price ...` and `quotaledger group set`."""

from __future__ import annotations

import click

from quotaledger.cli.common import (
    audited,
    database_url_option,
    handles_errors,
    json_option,
    open_database,
    print_json,
)


@click.group()
def price() -> None:
    """Set, list and delete model prices."""


@price.command(name="set")
@click.argument("model")
@click.option("--per-call-usd", metavar="X", help="Fixed USD price per call (ModelFixedPrice).")
@click.option("--input-usd-per-mtok", metavar="X", help="USD per million input tokens.")
@click.option(
    "--output-usd-per-mtok",
    metavar="Y",
    help="USD per million output tokens (not needed for an embeddings model).",
)
@click.option(
    "--cache-read-usd-per-mtok",
    metavar="X",
    help="USD per million cached input tokens read [default: input x 0.1 on anthropic "
    "channels; on OpenAI-format channels the model's published cached-input ratio, 0.5 for "
    "a model not known].",
)
@click.option(
    "--cache-write-usd-per-mtok",
    metavar="X",
    help="USD per million tokens written to a 5-minute cache [default: input x 1.25 on "
    "anthropic channels, else the input price].",
)
@click.option(
    "--cache-write-1h-usd-per-mtok",
    metavar="X",
    help="USD per million tokens written to a 1-hour cache [default: input x 2 on "
    "anthropic channels, else the input price].",
)
@click.option(
    "--max-output-tokens",
    type=int,
    metavar="N",
    help="The model's largest output per answer: what an uncapped request reserves "
    "[default: the published figure of a well-known model, else 32768].",
)
@click.option(
    "--long-context-threshold",
    type=int,
    metavar="N",
    help="Input tokens past which every token of a request is priced at the long-context "
    "prices below (e.g. 200000).",
)
@click.option("--long-input-usd-per-mtok", metavar="X", help="Long-context input price.")
@click.option(
    "--long-output-usd-per-mtok",
    metavar="Y",
    help="Long-context output price [default: the output price].",
)
@click.option(
    "--long-cache-read-usd-per-mtok",
    metavar="X",
    help="Long-context cache-read price [default: the same ratio of the long input price].",
)
@click.option(
    "--long-cache-write-usd-per-mtok",
    metavar="X",
    help="Long-context 5-minute cache-write price [default: as for the base price].",
)
@click.option(
    "--long-cache-write-1h-usd-per-mtok",
    metavar="X",
    help="Long-context 1-hour cache-write price [default: as for the base price].",
)
@click.option(
    "--web-search-usd-per-1k",
    "web_search_usd_per_kcall",
    metavar="X",
    help="USD per 1,000 web searches made by the provider's server tool (e.g. 10).",
)
@database_url_option
@handles_errors
def set_price(
    model: str,
    per_call_usd: str | None,
    input_usd_per_mtok: str | None,
    output_usd_per_mtok: str | None,
    database_url: str | None,
    max_output_tokens: int | None,
    long_context_threshold: int | None,
    **extras: str | None,
) -> None:
    """Price MODEL per call, or per million input and output tokens (input only for an
    embeddings model).

    \b
    Examples:
      quotaledger price set dall-e-3 --per-call-usd 0.04
      quotaledger price set gpt-4o-mini --input-usd-per-mtok 0.15 --output-usd-per-mtok 0.60
      quotaledger price set text-embedding-3-small --input-usd-per-mtok 0.02
      quotaledger price set claude-sonnet-4-5 --input-usd-per-mtok 3 --output-usd-per-mtok 15 \\
          --cache-read-usd-per-mtok 0.3 --max-output-tokens 64000 \\
          --long-context-threshold 200000 --long-input-usd-per-mtok 6 \\
          --long-output-usd-per-mtok 22.5 --web-search-usd-per-1k 10
    """
    from quotaledger.billing import pricing

    new = pricing.make_price(
        model,
        per_call_usd=per_call_usd,
        input_usd_per_mtok=input_usd_per_mtok,
        output_usd_per_mtok=output_usd_per_mtok,
        max_output_tokens=max_output_tokens,
        long_context_threshold=long_context_threshold,
        **extras,
    )
    database = open_database(database_url)
    pricing.set_price(database, new)
    audited(database, "price.set", model, **new.as_row())
    click.echo(f"{model}: {_describe(new)}")


@price.command(name="list")
@json_option
@database_url_option
@handles_errors
def list_prices(as_json: bool, database_url: str | None) -> None:
    """List model prices."""
    from quotaledger.billing import pricing

    found = pricing.list_prices(open_database(database_url))
    if as_json:
        print_json([p.as_row() for p in found])
        return
    if not found:
        click.echo("No prices set. Add one with: quotaledger price set MODEL --per-call-usd X")
    for p in found:
        click.echo(f"{p.model}: {_describe(p)}")


@price.command(name="delete")
@click.argument("model")
@database_url_option
@handles_errors
def delete_price(model: str, database_url: str | None) -> None:
    """Delete MODEL's price (charges for it are then refused)."""
    from quotaledger.billing import pricing

    database = open_database(database_url)
    pricing.delete_price(database, model)
    audited(database, "price.delete", model)
    click.echo(f"Deleted the price of {model}.")


def _describe(p: object) -> str:
    from quotaledger.billing.pricing import Price

    assert isinstance(p, Price)
    if p.per_call_usd is not None:
        text = f"${p.per_call_usd} per call"
    elif p.output_usd_per_mtok is None:
        text = f"${p.input_usd_per_mtok} per million input tokens (output free)"
    else:
        text = (
            f"${p.input_usd_per_mtok} / ${p.output_usd_per_mtok} per million input / output tokens"
        )
    extras = [
        f"{label} ${value}"
        for label, value in (
            ("cache read", p.cache_read_usd_per_mtok),
            ("cache write", p.cache_write_usd_per_mtok),
            ("1h cache write", p.cache_write_1h_usd_per_mtok),
        )
        if value is not None
    ]
    if p.long_context_threshold is not None:
        out = p.long_output_usd_per_mtok or p.output_usd_per_mtok
        extras.append(
            f"past {p.long_context_threshold:,} input tokens ${p.long_input_usd_per_mtok} / ${out}"
        )
    if p.web_search_usd_per_kcall is not None:
        extras.append(f"web search ${p.web_search_usd_per_kcall} per 1,000")
    if p.max_output_tokens is not None:
        extras.append(f"at most {p.max_output_tokens:,} output tokens")
    return text + (f" ({', '.join(extras)})" if extras else "")


@click.group()
def group() -> None:
    """User groups and their price multipliers."""


@group.command(name="set")
@click.argument("name")
@click.option("--ratio", required=True, metavar="R", help="Price multiplier, e.g. 0.8 or 1.5.")
@database_url_option
@handles_errors
def set_group(name: str, ratio: str, database_url: str | None) -> None:
    """Set the price multiplier of group NAME.

    \b
    Example:
      quotaledger group set vip --ratio 0.8
    """
    from quotaledger.billing import pricing

    database = open_database(database_url)
    value = pricing.set_group_ratio(database, name, ratio)
    audited(database, "group.set", name, ratio=str(value))
    click.echo(f"Group {name}: prices x {value}.")


from quotaledger.cli.limits import group_limits  # noqa: E402 - registered after the group's own

group.add_command(group_limits)
