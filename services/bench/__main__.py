"""`python -m services.bench [--quick] [--rows 1,5]`: measure the targets and print one table."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path

from services.bench.harness import machine_info, scratch_dir
from services.bench.stats import Row, format_table

log = logging.getLogger("services.bench")

RowGroup = Callable[[Path, bool], Awaitable[list[Row]]]


async def _store(root: Path, quick: bool) -> list[Row]:
    from services.bench.store_rows import measure_store_rows

    return await measure_store_rows(root, quick=quick)


async def _resume(root: Path, quick: bool) -> list[Row]:
    from services.bench.resume_row import measure_resume

    return [await measure_resume(root, quick=quick)]


async def _takeover(root: Path, quick: bool) -> list[Row]:
    from services.bench.takeover_row import measure_takeover

    return [await measure_takeover(root, quick=quick)]


async def _webhook(root: Path, quick: bool) -> list[Row]:
    from services.bench.webhook_row import measure_webhook

    return [await measure_webhook(root, quick=quick)]


async def _projection(root: Path, quick: bool) -> list[Row]:
    from services.bench.projection_row import measure_projection

    return [await measure_projection(root, quick=quick)]


async def _runner(root: Path, quick: bool) -> list[Row]:
    from services.bench.runner_row import measure_runner

    return [await measure_runner(root, quick=quick)]


GROUPS: tuple[tuple[tuple[int, ...], str, RowGroup], ...] = (
    ((1, 2, 3, 4), "store", _store),
    ((5,), "end-to-end resume", _resume),
    ((6,), "crash takeover", _takeover),
    ((7,), "webhook ingest", _webhook),
    ((8,), "projection rebuild", _projection),
    ((9,), "concurrent jobs in one runner", _runner),
)


def _parse_rows(text: str | None) -> set[int]:
    every = {number for numbers, _, _ in GROUPS for number in numbers}
    if not text:
        return every
    try:
        wanted = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise SystemExit(f"--rows {text!r} is invalid: give row numbers 1 to 9 separated by commas") from None
    unknown = wanted - every
    if unknown:
        raise SystemExit(f"--rows names unknown rows {sorted(unknown)}: the rows are 1 to 9")
    return wanted


async def run(rows: set[int], *, quick: bool) -> list[Row]:
    """Run every group that contains a requested row, each in its own scratch folder, and collect the rows."""
    results: list[Row] = []
    for numbers, name, group in GROUPS:
        if not rows & set(numbers):
            continue
        log.info("measuring %s (rows %s)", name, ", ".join(map(str, numbers)))
        started = time.monotonic()
        async with scratch_dir(name.replace(" ", "-")) as root:
            try:
                measured = await group(root, quick)
            except Exception as exc:
                log.exception("the %s benchmark failed", name)
                measured = [
                    Row(number=number, measure=name, unit="", target="", note=f"failed: {exc}") for number in numbers
                ]
        log.info("%s took %.1f s", name, time.monotonic() - started)
        results.extend(row for row in measured if row.number in rows)
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the benchmarks and print the machine, the table and the notes."""
    parser = argparse.ArgumentParser(prog="python -m services.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Smaller samples: the whole run takes under 2 minutes.")
    parser.add_argument("--rows", help="Comma-separated row numbers to run, such as 1,5 (default: all 9).")
    parser.add_argument("--json", type=Path, help="Also write the machine details and rows to this JSON file.")
    options = parser.parse_args(argv)
    rows = _parse_rows(options.rows)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("nats", "httpx", "httpx2", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access", "services"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Closing a connection at the end of each row logs a reconnect warning that means nothing here.
    logging.getLogger("services.common.natsconn").setLevel(logging.ERROR)
    log.setLevel(logging.INFO)

    machine = machine_info()
    started = time.monotonic()
    results = asyncio.run(run(rows, quick=options.quick))
    elapsed = time.monotonic() - started

    mode = "quick" if options.quick else "full"
    print(f"turnlog benchmarks ({mode} mode, {elapsed:.0f} s)")
    for key, value in machine.items():
        print(f"  {key}: {value}")
    print()
    print(format_table(results))
    if options.json:
        document = {
            "mode": mode,
            "seconds": round(elapsed, 1),
            "machine": machine,
            "rows": [asdict(r) for r in results],
        }
        options.json.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
