"""Fixtures for scale-out tests: a 3-node nats-server cluster on loopback and `turnlog serve` processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts import topology
from contracts.checkpoint import Checkpoint
from contracts.events import Event, JobCompleted, JobRequested, TurnCompleted, Usage
from services.common.clock import now_iso
from services.common.embedded import free_port, nats_server_binary
from services.common.fold import fold
from services.common.store import EventStore
from services.demo.sample import create_sample_repository

TURNLOG = str(Path(sys.executable).parent / "turnlog")
CLUSTER_NAME = "turnlog-test"


class ClusterNode:
    """One nats-server of the cluster; it keeps its ports and store across kill and restart."""

    def __init__(self, name: str, store: Path) -> None:
        self.name = name
        self.port = free_port()
        self.monitor = free_port()
        self.cluster_port = free_port()
        self.store = store
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def route(self) -> str:
        return f"nats://127.0.0.1:{self.cluster_port}"

    def start(self, routes: list[str]) -> None:
        command = [
            nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor),
            "-js", "-sd", str(self.store), "--server_name", self.name, "--cluster_name", CLUSTER_NAME,
            "--cluster", self.route, "--routes", ",".join(routes),
        ]  # fmt: skip
        log = (self.store.parent / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_listening(self, timeout: float = 15) -> None:
        """Wait until the node's monitor answers; JetStream may still be electing its meta leader."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/varz", timeout=0.5) as response:
                    if response.status == 200:
                        return
            except OSError:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"nats-server {self.name} exited with {self.process.returncode}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server {self.name} did not listen within {timeout:.0f} s") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the node: no leadership hand-over, no flush."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class NatsCluster:
    """Three JetStream nodes routed to each other on loopback, each with its own temporary store."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        self.nodes = [ClusterNode(f"n{index}", root / f"n{index}") for index in range(1, size + 1)]

    @property
    def routes(self) -> list[str]:
        return [node.route for node in self.nodes]

    @property
    def url(self) -> str:
        """The comma-separated server list services get as TURNLOG_NATS_URL."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.name == name)

    def start(self) -> None:
        for node in self.nodes:
            node.store.mkdir(parents=True, exist_ok=True)
            node.start(self.routes)
        for node in self.nodes:
            node.wait_listening()

    def restart(self, node: ClusterNode) -> None:
        node.start(self.routes)
        node.wait_listening()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def nats_cluster() -> Iterator[NatsCluster]:
    """A fresh 3-node cluster for one test, removed after it."""
    root = Path(tempfile.mkdtemp(prefix="turnlog-cluster-"))
    cluster = NatsCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


async def connect_cluster(servers: str) -> Client:
    """Connect the test itself, reconnecting forever like the services do."""
    return await nats.connect(
        servers=servers.split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.2, connect_timeout=2
    )


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await condition():
                return
        except Exception as exc:
            last_error: Exception | None = exc
        else:
            last_error = None
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error!r})")
        await asyncio.sleep(0.2)


class Fleet:
    """`turnlog serve SERVICE` processes sharing one environment, each logging to its own file."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.api_port = free_port()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def serve(self, name: str, service: str, *, port: int | None = None, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start `turnlog serve SERVICE` as the process called `name`, with its own data dir."""
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "TURNLOG_DATA_DIR": str(data_dir), **extra_env}
        command = [TURNLOG, "serve", service, *(["--port", str(port)] if port else [])]
        with (self.root / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def serve_api(self) -> None:
        """Start the api service on `api_url` and a gateway on a port of its own."""
        self.serve("api", "api", port=self.api_port)
        self.serve("gateway", "gateway", port=free_port())

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)[-4000:]}" for name in self.processes)

    async def wait_ready(self, timeout: float = 30) -> None:
        async def ready() -> bool:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{self.api_url}/ready", timeout=1)).status_code == 200

        await wait_for(ready, timeout, "the API's /ready")

    async def create_job(self, task: str, max_turns: int = 10) -> str:
        body = {"repository": "my-org/my-repo", "task": task, "maxTurns": max_turns}
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{self.api_url}/jobs", json=body, timeout=10)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["jobId"]
        return job_id

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """Build fleets over a sample repository `my-org/my-repo`; every process is stopped after the test."""
    repos = tmp_path / "repos"
    create_sample_repository(repos)
    fleets: list[Fleet] = []

    def build(nats_url: str, **extra_env: str) -> Fleet:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("TURNLOG_", "ANTHROPIC_"))}
        env.update({"TURNLOG_NATS_URL": nats_url, "TURNLOG_REPOS_DIR": str(repos), "TURNLOG_LOG_LEVEL": "INFO"})
        env.update(extra_env)
        fleet = Fleet(tmp_path / f"fleet{len(fleets)}", env)
        fleet.root.mkdir()
        fleets.append(fleet)
        return fleet

    yield build
    for fleet in fleets:
        fleet.stop()


class JobAudit(msgspec.Struct):
    """What the event history of one job says, for assertions."""

    job_id: str
    types: list[str]
    turns: list[int]
    completed: int
    requested: int
    checkpoint_matches: bool
    checkpoint_differences: dict[str, tuple[Any, Any]]


async def audit_job(store: EventStore, js: JetStreamContext, job_id: str) -> JobAudit:
    """Read one job's history and compare its checkpoint in the KV bucket to a fold of that history."""
    stored = await store.read(job_id)
    events: list[tuple[int, Event]] = [(item.sequence, item.event) for item in stored if item.event is not None]
    assert len(events) == len(stored), f"job {job_id}: undecodable events in its history"
    checkpoints = await js.key_value(topology.CHECKPOINT_BUCKET)
    entry = await checkpoints.get(job_id)
    live = msgspec.json.decode(entry.value or b"", type=Checkpoint)
    rebuilt = fold(events)
    live_fields = msgspec.to_builtins(live)
    rebuilt_fields = msgspec.to_builtins(rebuilt) if rebuilt is not None else {}
    differences = {
        name: (value, rebuilt_fields.get(name))
        for name, value in live_fields.items()
        if rebuilt_fields.get(name) != value
    }
    return JobAudit(
        job_id=job_id,
        types=[type(event).__name__ for _, event in events],
        turns=[event.turn for _, event in events if isinstance(event, TurnCompleted)],
        completed=sum(isinstance(event, JobCompleted) for _, event in events),
        requested=sum(isinstance(event, JobRequested) for _, event in events),
        checkpoint_matches=live == rebuilt,
        checkpoint_differences=differences,
    )


def turn_event(job_id: str, turn: int) -> TurnCompleted:
    """Build a minimal turn event, for histories the test writes itself."""
    return TurnCompleted(
        job_id=job_id,
        at=now_iso(),
        turn=turn,
        assistant_content=msgspec.Raw(b"[]"),
        tool_results=[],
        stop_reason="end_turn",
        model="probe",
        usage=Usage(input_tokens=turn, output_tokens=1),
        model_ms=0.0,
        tools_ms=0.0,
    )


class ProbeWriter:
    """Appends turn events to a job no runner owns, recording every sequence the store acknowledged."""

    def __init__(self, store: EventStore, job_id: str) -> None:
        self.store = store
        self.job_id = job_id
        self.acked: list[int] = []
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        expected = 0
        while not self._stopping.is_set():
            event = turn_event(self.job_id, len(self.acked) + 1)
            expected = await self.store.append(event, expected_last=expected)
            self.acked.append(expected)
            # Each probe event waits in the projector for a checkpoint that never comes (the probe
            # job has no request), so a slow pace keeps that churn from loading the host.
            await asyncio.sleep(0.1)

    async def assert_complete(self) -> None:
        """Assert that every acknowledged append is stored once, in order, and nothing else is."""
        history = await self.store.read(self.job_id)
        assert [stored.sequence for stored in history] == self.acked
        turns = [stored.event.turn for stored in history if isinstance(stored.event, TurnCompleted)]
        assert turns == list(range(1, len(self.acked) + 1))


async def describe_state(js: JetStreamContext, store: EventStore, job_ids: list[str]) -> str:
    """Describe the consumers and each job's history against its checkpoint, printed when a test fails."""
    lines: list[str] = []
    for consumer in (topology.RUNNER_CONSUMER, topology.PROJECTOR_CONSUMER):
        try:
            info = await js.consumer_info(topology.EVENTS_STREAM, consumer)
            lines.append(
                f"{consumer}: pending={info.num_pending} ack_pending={info.num_ack_pending} "
                f"redelivered={info.num_redelivered} waiting={info.num_waiting} delivered={info.delivered} "
                f"ack_floor={info.ack_floor} cluster={info.cluster}"
            )
        except Exception as exc:
            lines.append(f"{consumer}: {exc!r}")
    checkpoints = await js.key_value(topology.CHECKPOINT_BUCKET)
    for job_id in job_ids:
        try:
            history = await store.read(job_id)
            entry = await checkpoints.get(job_id)
            live = msgspec.json.decode(entry.value or b"", type=Checkpoint)
            audit = await audit_job(store, js, job_id)
            lines.append(
                f"{job_id}: events={[type(s.event).__name__ for s in history][-3:]} "
                f"last={history[-1].sequence} kv={live.job_status}@{live.last_sequence} "
                f"differences={audit.checkpoint_differences}"
            )
        except Exception as exc:
            lines.append(f"{job_id}: {exc!r}")
    return "\n".join(lines)
