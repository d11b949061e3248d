"""Rows 1 to 4: turn commit, the LangGraph peer, resume read-back and bytes stored per job."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from contracts import topology
from contracts.codec import encode_event
from contracts.events import TurnCompleted
from services.bench.harness import bench_runtime, nats_server
from services.bench.peer import LangGraphPeer, PeerUnavailableError
from services.bench.stats import Row, Summary, summarize
from services.bench.workload import TURN_BYTES, turn_event, write_job
from services.common.history import load_lineage
from services.common.store import EventStore

__all__ = ["StoreSizes", "measure_store_rows"]

HISTORY_TURNS = 50
_BASE_COMMIT = "0" * 40
"""Rows 1 to 4 never check out a repository, so the base commit is only recorded."""


@dataclass(frozen=True, slots=True)
class StoreSizes:
    """How many samples each row takes."""

    commits: int
    reads: int
    peer_steps: int

    @classmethod
    def for_mode(cls, quick: bool) -> StoreSizes:
        """Return the quick or the full sample counts."""
        return cls(commits=200, reads=15, peer_steps=15) if quick else cls(commits=1000, reads=60, peer_steps=60)


def _ms(start: int) -> float:
    return (time.perf_counter_ns() - start) / 1e6


def _single(value: float) -> Summary:
    return Summary(p50=value, p99=value, count=1)


async def measure_store_rows(root: Path, *, quick: bool) -> list[Row]:
    """Measure rows 1 to 4 on a fresh nats-server and a SQLite file under `root`."""
    sizes = StoreSizes.for_mode(quick)
    bytes_row = await _bytes_stored(root / "bytes")

    async with nats_server(root / "nats") as url, bench_runtime(url, "bench-store") as runtime:
        commit_samples, raw_samples = await _turn_commits(runtime.store, sizes.commits)
        commit_row = Row(
            number=1,
            measure="turn commit: append of a 20 KiB TurnCompleted",
            unit="ms",
            target="≤ 1.3×",
            turnlog=summarize(commit_samples),
            baseline=summarize(raw_samples),
            note=(
                "baseline: raw nats-py js.publish of the same encoded bytes, no headers, interleaved with the "
                "appends; ratio of medians."
            ),
        )
        commit_row.ratio = commit_row.turnlog.p50 / commit_row.baseline.p50  # type: ignore[union-attr]
        commit_row.met = commit_row.ratio <= 1.3

        read_samples = await _read_backs(runtime.store, sizes.reads)

    peer_row = Row(number=2, measure="turn commit vs LangGraph SqliteSaver step", unit="ms", target="≥ 5× faster")
    read_row = Row(
        number=3,
        measure="resume read-back: 50 × 20 KiB turns to a conversation",
        unit="ms",
        target="≤ 1.0×",
        turnlog=summarize(read_samples),
    )
    peer_row.turnlog = commit_row.turnlog
    try:
        peer_steps, peer_reads = _peer(root / "peer", sizes.peer_steps, sizes.reads)
    except PeerUnavailableError as exc:
        peer_row.note = f"peer unavailable: {exc}"
        read_row.note = f"peer unavailable: {exc}"
        return [commit_row, peer_row, read_row, bytes_row]

    peer_row.baseline = summarize(peer_steps)
    peer_row.ratio = peer_row.baseline.p50 / commit_row.turnlog.p50  # type: ignore[union-attr]
    peer_row.met = peer_row.ratio >= 5
    peer_row.note = (
        "baseline: LangGraph update_state appending the equal turn (AIMessage + ToolMessage) to a 50-turn "
        "thread in SqliteSaver on a file; ratio = LangGraph median / turnlog median (speed-up)."
    )
    read_row.baseline = summarize(peer_reads)
    read_row.ratio = read_row.turnlog.p50 / read_row.baseline.p50  # type: ignore[union-attr]
    read_row.met = read_row.ratio <= 1.0
    read_row.note = (
        "turnlog: load_lineage + conversation() over batched direct gets; baseline: LangGraph get_state of "
        "the equal 50-turn thread."
    )
    return [commit_row, peer_row, read_row, bytes_row]


async def _turn_commits(store: EventStore, count: int) -> tuple[list[float], list[float]]:
    """Time a turnlog append and a raw publish of the same bytes in each round, swapping their order.

    Whichever publish comes first in a round measured slower in trial runs, so each goes first in
    half of the rounds.
    """
    job_id = "benchcommit"
    raw_subject = topology.event_subject("benchraw", "turn.completed.v1")
    turnlog: list[float] = []
    raw: list[float] = []
    warmup = 20
    expected = 0

    async def append(event: TurnCompleted) -> float:
        nonlocal expected
        start = time.perf_counter_ns()
        expected = await store.append(event, expected_last=expected)
        return _ms(start)

    async def publish(payload: bytes) -> float:
        start = time.perf_counter_ns()
        await store.js.publish(raw_subject, payload)
        return _ms(start)

    for number in range(1, count + warmup + 1):
        event = turn_event(job_id, number)
        payload = encode_event(event)
        if number % 2:
            turnlog_ms = await append(event)
            raw_ms = await publish(payload)
        else:
            raw_ms = await publish(payload)
            turnlog_ms = await append(event)
        if number > warmup:
            turnlog.append(turnlog_ms)
            raw.append(raw_ms)
    return turnlog, raw


async def _read_backs(store: EventStore, count: int) -> list[float]:
    job_id = "benchread"
    await write_job(store, job_id, turns=HISTORY_TURNS, base_commit=_BASE_COMMIT)
    samples: list[float] = []
    for index in range(count + 2):
        start = time.perf_counter_ns()
        lineage = await load_lineage(store, job_id)
        conversation = lineage.conversation()
        elapsed = _ms(start)
        if len(conversation.messages) != 2 * HISTORY_TURNS + 1:
            raise RuntimeError(f"read-back built {len(conversation.messages)} messages, expected 101")
        if index >= 2:
            samples.append(elapsed)
    return samples


def _peer(directory: Path, steps: int, reads: int) -> tuple[list[float], list[float]]:
    directory.mkdir(parents=True, exist_ok=True)
    peer = LangGraphPeer(directory / "checkpoints.sqlite")
    try:
        turns = [turn_event("benchpeer", number) for number in range(1, HISTORY_TURNS + 1)]
        base = peer.seed("benchpeer", "Add error handling to the API", turns)

        step_samples: list[float] = []
        for number in range(steps + 2):
            messages = peer.turn_messages(turn_event("benchpeer", HISTORY_TURNS + 1 + number))
            start = time.perf_counter_ns()
            peer.append_turn(base, messages)
            if number >= 2:
                step_samples.append(_ms(start))

        read_samples: list[float] = []
        for number in range(reads + 2):
            start = time.perf_counter_ns()
            count = peer.read_state(base)
            if number >= 2:
                read_samples.append(_ms(start))
            if count != 2 * HISTORY_TURNS + 1:
                raise RuntimeError(f"LangGraph state has {count} messages, expected 101")
    finally:
        peer.close()
    return step_samples, read_samples


async def _bytes_stored(directory: Path) -> Row:
    """Write one 50-turn job into a fresh stream and compare the stream's bytes with the turn payloads."""
    async with nats_server(directory) as url, bench_runtime(url, "bench-bytes") as rt:
        turns = await write_job(rt.store, "benchbytes", turns=HISTORY_TURNS, base_commit=_BASE_COMMIT)
        info = await rt.js.stream_info(topology.EVENTS_STREAM)
    stored = float(info.state.bytes)
    payloads = float(sum(len(encode_event(turn)) for turn in turns))
    ratio = stored / payloads
    return Row(
        number=4,
        measure="bytes stored for a 50-turn job",
        unit="B",
        target="≤ 1.05×",
        turnlog=_single(stored),
        baseline=_single(payloads),
        ratio=ratio,
        met=ratio <= 1.05,
        note=(
            f"turnlog: stream bytes of the whole job ({info.state.messages} messages: request, start, "
            f"{HISTORY_TURNS} turns of {TURN_BYTES // 1024} KiB, failure); baseline: sum of the turn payloads."
        ),
    )
