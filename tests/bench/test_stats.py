"""The benchmark's percentile, summary and table helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.bench.stats import Row, Summary, format_table, format_value, percentile, summarize


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([4.0, 1.0, 3.0, 2.0], 25, 1.75),
        (list(range(1, 101)), 99, 99.01),
    ],
)
def test_percentile_interpolates_linearly(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_empty_sample_rejected() -> None:
    with pytest.raises(ValueError, match="percentile of an empty sample; measure at least one value"):
        percentile([], 50)


def test_percentile_out_of_range_rejected() -> None:
    with pytest.raises(ValueError, match="percentile 101 is out of range; use 0 to 100"):
        percentile([1.0], 101)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200))
def test_summary_within_sample_bounds(values: list[float]) -> None:
    summary = summarize(values)
    assert min(values) <= summary.p50 <= summary.p99 <= max(values)
    assert summary.count == len(values)


def test_format_value_by_unit_and_magnitude() -> None:
    assert format_value(1_066_175, "B") == "1,066,175 B"
    assert format_value(0.5678, "ms") == "0.568 ms"
    assert format_value(24.44, "ms") == "24.4 ms"
    assert format_value(2.071, "s") == "2.07 s"
    assert format_value(26_884.2, "ev/s") == "26,884 ev/s"


def test_table_shows_rows_verdicts_and_notes() -> None:
    measured = Row(
        number=1,
        measure="turn commit",
        unit="ms",
        target="≤ 1.3×",
        turnlog=Summary(p50=0.86, p99=1.17, count=200),
        baseline=Summary(p50=0.57, p99=3.41, count=200),
        ratio=1.52,
        met=False,
        note="baseline: raw publish.",
    )
    unavailable = Row(number=2, measure="peer", unit="ms", target="≥ 5× faster", note="peer unavailable: no module")

    lines = format_table([measured, unavailable]).splitlines()

    assert lines[0].startswith("| # | measure | turnlog p50 |")
    assert lines[2] == "| 1 | turn commit | 0.860 ms | 1.17 ms | 0.570 ms | 3.41 ms | 1.52× | ≤ 1.3× | missed |"
    assert lines[3] == "| 2 | peer | - | - | - | - | - | ≥ 5× faster | not measured |"
    assert lines[5] == "1. baseline: raw publish."
    assert lines[6] == "2. peer unavailable: no module"
