"""`history --plot`: the balance over time as an SVG or PNG, drawn with matplotlib.

matplotlib is imported here only, when a chart is asked for, with the file-only Agg
backend (no display needed; works over SSH and in cron).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quotaledger.monitor.config import AccountConfig
from quotaledger.monitor.history import Poll

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FORMATS = {".svg", ".png", ".pdf"}


def plot_balance(account: AccountConfig, polls: Sequence[Poll], path: Path) -> Path:
    """Draw the balance of `polls` with the account's thresholds into `path`."""
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"cannot draw {path.name}: use a .svg, .png or .pdf file name")
    good = [p for p in polls if p.ok and p.amount is not None]
    if not good:
        raise ValueError(f"no successful polls of {account.name} to draw")
    import matplotlib

    matplotlib.use("Agg")
    # Concise date labels ("Nov 24", "06:00") whatever the span: minutes or months.
    with matplotlib.rc_context({"date.converter": "concise"}):
        _draw(account, polls, good, path)
    return path


def _draw(account: AccountConfig, polls: Sequence[Poll], good: list[Poll], path: Path) -> None:
    from matplotlib.figure import Figure

    # A bare Figure (not pyplot): no global state, nothing to close.
    figure = Figure(figsize=(9, 4), layout="constrained")
    axes = figure.add_subplot()
    axes.step(_times(good), [float(p.amount or 0) for p in good], where="post", label="balance")
    failed = [p for p in polls if not p.ok]
    if failed:
        axes.plot(_times(failed), [0.0] * len(failed), "x", color="grey", label="failed poll")
    _thresholds(axes, account)
    axes.set(title=f"{account.name}: balance", ylabel=good[-1].currency, xlabel="time (UTC)")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.savefig(path)


def _times(polls: Sequence[Poll]) -> Any:
    import numpy

    # Naive UTC datetime64: what matplotlib's date axis takes without a timezone warning.
    return numpy.array([p.at.replace(tzinfo=None) for p in polls], dtype="datetime64[s]")


def _thresholds(axes: Axes, account: AccountConfig) -> None:
    thresholds = account.thresholds
    for value, label, colour in (
        (thresholds.warn, "warn", "orange"),
        (thresholds.critical, "critical", "red"),
    ):
        if value is not None:
            axes.axhline(float(value), linestyle="--", color=colour, label=label)
