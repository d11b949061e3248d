"""Percentiles, result rows and the table `make bench` prints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Row", "Summary", "format_table", "format_value", "percentile", "summarize"]


@dataclass(frozen=True, slots=True)
class Summary:
    """The median and 99th percentile of a sample, with its size."""

    p50: float
    p99: float
    count: int


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0-100) with linear interpolation between closest ranks.

    This is the method numpy calls "linear" (its default): the rank is q/100 × (n - 1).
    """
    if not values:
        raise ValueError("percentile of an empty sample; measure at least one value")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is out of range; use 0 to 100")
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> Summary:
    """Summarize a sample by its median and 99th percentile."""
    return Summary(p50=percentile(values, 50), p99=percentile(values, 99), count=len(values))


@dataclass(slots=True)
class Row:
    """One benchmark target: turnlog's figure, the baseline's, their ratio and whether the target is met.

    `met` is None when the row could not be measured; `note` then gives the reason.
    """

    number: int
    measure: str
    unit: str
    target: str
    turnlog: Summary | None = None
    baseline: Summary | None = None
    ratio: float | None = None
    met: bool | None = None
    note: str = ""
    details: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """Return `met`, `missed` or `not measured`."""
        if self.met is None:
            return "not measured"
        return "met" if self.met else "missed"


def format_value(value: float, unit: str) -> str:
    """Format a figure with its unit, choosing digits by magnitude."""
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "ms" and value < 1:
        return f"{value:.3f} ms"
    if value >= 100:
        return f"{value:,.0f} {unit}"
    if value >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def _pair(summary: Summary | None, unit: str) -> tuple[str, str]:
    if summary is None:
        return "-", "-"
    return format_value(summary.p50, unit), format_value(summary.p99, unit)


def format_table(rows: Sequence[Row]) -> str:
    """Render the rows as a Markdown table, followed by one line per row that carries a note."""
    header = (
        "| # | measure | turnlog p50 | turnlog p99 | baseline p50 | baseline p99 | ratio | target | result |",
        "|---|---|---|---|---|---|---|---|---|",
    )
    lines = list(header)
    for row in rows:
        turnlog_p50, turnlog_p99 = _pair(row.turnlog, row.unit)
        baseline_p50, baseline_p99 = _pair(row.baseline, row.unit)
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}×"
        cells = (
            str(row.number),
            row.measure,
            turnlog_p50,
            turnlog_p99,
            baseline_p50,
            baseline_p99,
            ratio,
            row.target,
            row.verdict,
        )
        lines.append("| " + " | ".join(cells) + " |")

    notes = [f"{row.number}. {row.note}" for row in rows if row.note]
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)
