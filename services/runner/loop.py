"""The agent loop: one explicit `while` over turns, each committed as one concurrency-checked event."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from contracts.events import (
    Event,
    JobCancelled,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    ToolResult,
    TurnCompleted,
)
from services.common.clock import now, now_iso, to_iso
from services.common.history import Lineage
from services.common.settings import Settings
from services.common.store import AppendConflictError, EventStore
from services.runner.failures import ModelFailure, not_before
from services.runner.model import ModelClient, ModelReply
from services.runner.tools import TOOL_DEFINITIONS, ToolOutcome, Workspace

__all__ = ["CRASH_POINTS", "SYSTEM_PROMPT", "JobLoop", "LoopContext", "parse_crash_at"]

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are a careful software engineer working in a checkout of the user's repository. "
    "Use the tools to explore, then edit the code to complete the task. Paths are relative to the "
    "repository root. When the task is done, call the finish tool with a short summary of the change."
)

_PAYLOAD_MARGIN = 16 * 1024
"""Bytes kept free below the server's max payload for headers and the event's other fields."""

_RESULT_RESERVE = 1024
"""Bytes kept per tool call for its result, which `_fit` can shrink to about 400 bytes."""

_CANCEL_POLL_SECONDS = 0.5
"""How often a retry wait checks the job's history for a cancel request."""

CRASH_POINTS = ("before_model", "after_model", "after_tool", "after_append")
"""Where the `TURNLOG_RUNNER_CRASH_AT` test hook can kill the runner inside a turn."""

_T = TypeVar("_T")


def parse_crash_at(value: str | None) -> tuple[str, int] | None:
    """Parse the `POINT:TURN` test hook; raise ValueError naming the accepted points when it is invalid."""
    if not value:
        return None
    point, _, turn = value.partition(":")
    if point not in CRASH_POINTS or not turn.isdigit() or int(turn) < 1:
        raise ValueError(
            f"invalid TURNLOG_RUNNER_CRASH_AT {value!r}: expected POINT:TURN with POINT one of "
            f"{', '.join(CRASH_POINTS)} and TURN >= 1, such as after_model:3"
        )
    return point, int(turn)


@dataclass(slots=True)
class LoopContext:
    """What one run of a job needs, gathered by the runner service before the loop starts."""

    job_id: str
    lineage: Lineage
    workspace: Workspace
    expected_last: int
    """Stream sequence of the job's last event; every append is checked against it."""


class _Interrupted(Exception):
    """The loop stopped between commit points: the runner is shutting down, or the user cancelled."""

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome
        super().__init__(outcome)


class JobLoop:
    """Runs the turns of one job until it finishes, fails, is cancelled or loses its history to another writer."""

    def __init__(self, *, store: EventStore, model: ModelClient, settings: Settings, max_payload: int) -> None:
        self._store = store
        self._model = model
        self._settings = settings
        self._max_payload = max_payload
        self._crash_at = parse_crash_at(settings.runner_crash_at)
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        """Make every running job hand itself back: at once if it waits on the model, else after its current turn."""
        self._stopping.set()

    async def run(self, context: LoopContext) -> str:
        """Run the job; return how it ended: `completed`, `failed`, `cancelled`, `lost` or `handed_back`."""
        try:
            return await self._turns(context)
        except AppendConflictError as exc:
            log.warning("job %s: stopping, another writer appended first (%s)", context.job_id, exc.detail)
            return "lost"
        except _Interrupted as stop:
            return stop.outcome

    async def _turns(self, context: LoopContext) -> str:
        lineage = context.lineage
        while lineage.last_turn < lineage.max_turns:
            if self._stopping.is_set():
                return "handed_back"
            turn = lineage.last_turn + 1
            conversation = lineage.conversation()
            self._crash_if("before_model", turn)
            try:
                reply = await self._call_model(context, turn, conversation.messages)
            except ModelFailure as failure:
                await self._fail(context, failure)
                return "failed"
            self._crash_if("after_model", turn)

            provisional = self._record(context.job_id, turn, reply, [], [], 0.0)
            room = self._change_room(provisional, reply.content)
            if room is None:
                size = len(reply.raw_content)
                await self._fail(
                    context,
                    ModelFailure(
                        "output_too_large",
                        f"the model's answer at turn {turn} is {size} bytes, too large for one event of at most "
                        f"{self._max_payload} bytes; lower TURNLOG_MAX_TOKENS or raise the NATS max_payload",
                        False,
                    ),
                )
                return "failed"

            context.workspace.limit_changes(room)
            started = time.perf_counter()
            results, finished = await self._run_tools(context.workspace, reply.content, turn)
            tools_ms = (time.perf_counter() - started) * 1000
            changes = context.workspace.take_changes()

            record = self._fit(self._record(context.job_id, turn, reply, results, changes, tools_ms))
            cancel = await self._append(context, record)
            lineage.turns.append(record)
            log.info("job %s: turn %d/%d committed", context.job_id, turn, lineage.max_turns)
            self._crash_if("after_append", turn)

            if finished is not None:
                await self._append(
                    context, JobCompleted(job_id=context.job_id, at=now_iso(), summary=finished, turns=turn)
                )
                return "completed"
            if cancel:
                await self._append(context, JobCancelled(job_id=context.job_id, at=now_iso(), turns=turn))
                return "cancelled"

        await self._fail(
            context,
            ModelFailure(
                "max_turns",
                f"reached maxTurns {lineage.max_turns} before the model called finish; resume is not possible, "
                "start a new job with a higher maxTurns",
                False,
            ),
        )
        return "failed"

    def _record(
        self,
        job_id: str,
        turn: int,
        reply: ModelReply,
        results: list[ToolResult],
        changes: list[Any],
        tools_ms: float,
    ) -> TurnCompleted:
        return TurnCompleted(
            job_id=job_id,
            at=now_iso(),
            turn=turn,
            assistant_content=msgspec.Raw(reply.raw_content),
            tool_results=results,
            stop_reason=reply.stop_reason,
            model=reply.model,
            usage=reply.usage,
            model_ms=round(reply.elapsed_ms, 1),
            tools_ms=round(tools_ms, 1),
            changes=changes,
        )

    def _change_room(self, provisional: TurnCompleted, content: list[dict[str, Any]]) -> int | None:
        """Return the bytes left for file changes once the answer and a reserve for results are counted.

        None means the answer alone leaves no room, so the turn cannot be recorded.
        """
        calls = sum(1 for block in content if block.get("type") == "tool_use")
        used = len(msgspec.json.encode(provisional)) + _RESULT_RESERVE * (calls + 1)
        room = self._max_payload - _PAYLOAD_MARGIN - used
        return room if room >= 0 else None

    async def _call_model(self, context: LoopContext, turn: int, messages: list[dict[str, Any]]) -> ModelReply:
        """Call the model, retrying transient failures while the wait stays under max_retry_wait.

        Only the model call repeats: no tool of this turn has run yet.
        """
        attempt = 0
        waited = 0.0
        max_tokens = self._settings.max_tokens
        truncated_retry = False
        while True:
            attempt += 1
            try:
                reply = await self._unless_stopping(
                    self._model.create(
                        model=self._settings.model,
                        max_tokens=max_tokens,
                        system=SYSTEM_PROMPT,
                        tools=TOOL_DEFINITIONS,
                        messages=messages,
                    )
                )
            except ModelFailure as failure:
                wait = _backoff(attempt, failure.retry_after)
                # Give up once the total wait for this turn would pass max_retry_wait, so a model that
                # keeps failing without asking for a delay still ends the job instead of retrying forever.
                if not failure.retryable or waited + wait > self._settings.max_retry_wait:
                    if failure.retryable and failure.retry_after is None:
                        failure.retry_after = wait
                    raise
                waited += wait
                log.warning(
                    "job %s turn %d: %s; retrying in %.1fs (attempt %d)", context.job_id, turn, failure, wait, attempt
                )
                await self._wait_retry(context, wait)
                continue

            if reply.stop_reason == "max_tokens" and (_ends_in_tool_use(reply.content) or reply.truncated_tool_input):
                # A tool_use cut by max_tokens has incomplete input: never run it.
                if truncated_retry:
                    raise ModelFailure(
                        "output_truncated",
                        f"the model's tool call was cut off at max_tokens twice, the second time at {max_tokens}; "
                        "raise TURNLOG_MAX_TOKENS and resume the job",
                        False,
                    )
                truncated_retry = True
                max_tokens *= 2
                log.warning(
                    "job %s turn %d: tool call cut off at max_tokens; retrying with max_tokens %d",
                    context.job_id,
                    turn,
                    max_tokens,
                )
                continue
            return reply

    async def _unless_stopping(self, call: Awaitable[_T]) -> _T:
        """Await `call`, abandoning it as soon as the runner starts shutting down."""
        task = asyncio.ensure_future(call)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise _Interrupted("handed_back")
        return task.result()

    async def _wait_retry(self, context: LoopContext, seconds: float) -> None:
        """Sleep before a retry, ending early with `_Interrupted` on shutdown or a user's cancel request."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            await self._check_cancel(context)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=min(remaining, _CANCEL_POLL_SECONDS))
            except TimeoutError:
                continue
            raise _Interrupted("handed_back")

    async def _check_cancel(self, context: LoopContext) -> None:
        if await self._store.last_sequence(context.job_id) == context.expected_last:
            return
        newer = await self._store.read(context.job_id, after=context.expected_last)
        if not newer:
            return
        if not all(isinstance(stored.event, JobCancelRequested) for stored in newer):
            raise AppendConflictError(context.job_id, context.expected_last, "new events arrived during a retry wait")
        context.expected_last = newer[-1].sequence
        turns = context.lineage.last_turn
        await self._append(context, JobCancelled(job_id=context.job_id, at=now_iso(), turns=turns))
        log.info("job %s: cancelled during a model retry wait", context.job_id)
        raise _Interrupted("cancelled")

    async def _run_tools(
        self, workspace: Workspace, content: list[dict[str, Any]], turn: int
    ) -> tuple[list[ToolResult], str | None]:
        results: list[ToolResult] = []
        finished: str | None = None
        for block in content:
            if block.get("type") != "tool_use":
                continue
            name = str(block.get("name"))
            started = time.perf_counter()
            outcome: ToolOutcome = await asyncio.to_thread(workspace.run_tool, name, block.get("input"))
            elapsed_ms = (time.perf_counter() - started) * 1000
            if outcome.is_error:
                log.info("tool %s failed in %.1fms: %s", name, elapsed_ms, outcome.content[:200])
            results.append(
                ToolResult(tool_use_id=str(block.get("id")), content=outcome.content, is_error=outcome.is_error)
            )
            if outcome.finished:
                finished = outcome.summary or ""
            self._crash_if("after_tool", turn)
        return results, finished

    def _fit(self, record: TurnCompleted) -> TurnCompleted:
        """Shrink tool results until the event fits the server's max payload."""
        limit = self._max_payload - _PAYLOAD_MARGIN
        size = len(msgspec.json.encode(record))
        if size <= limit:
            return record
        results = list(record.tool_results)
        while size > limit and any(len(result.content) > 256 for result in results):
            longest = max(range(len(results)), key=lambda index: len(results[index].content))
            result = results[longest]
            keep = max(len(result.content) // 2, 256)
            note = f"\n[output truncated to fit the event size limit: kept {keep} of {len(result.content)} characters]"
            results[longest] = msgspec.structs.replace(result, content=result.content[:keep] + note)
            record = msgspec.structs.replace(record, tool_results=results)
            size = len(msgspec.json.encode(record))
        return record

    async def _append(self, context: LoopContext, event: Event) -> bool:
        """Append with the concurrency check; return True when a cancel request arrived meanwhile.

        A conflict caused only by a user's cancel request is absorbed: the turn is still recorded
        and the loop stops after it. Any other conflict means another writer owns the job.
        """
        cancel = False
        while True:
            try:
                context.expected_last = await self._store.append(event, expected_last=context.expected_last)
                return cancel
            except AppendConflictError:
                newer = await self._store.read(context.job_id, after=context.expected_last)
                if not newer or not all(isinstance(stored.event, JobCancelRequested) for stored in newer):
                    raise
                cancel = True
                context.expected_last = newer[-1].sequence

    async def _fail(self, context: LoopContext, failure: ModelFailure) -> None:
        moment = now()
        retry_not_before = (
            to_iso(not_before(moment, failure.retry_after)) if failure.retryable and failure.retry_after else None
        )
        log.warning("job %s failed: %s", context.job_id, failure)
        await self._append(
            context,
            JobFailed(
                job_id=context.job_id,
                at=to_iso(moment),
                kind=failure.kind,
                message=failure.message,
                retryable=failure.retryable,
                retry_not_before=retry_not_before,
                turns=context.lineage.last_turn,
            ),
        )

    def _crash_if(self, point: str, turn: int) -> None:
        # Test hook only: SIGKILL gives the process no chance to clean up, exactly like a crash.
        if self._crash_at == (point, turn):
            log.warning("TURNLOG_RUNNER_CRASH_AT %s:%d reached; killing this runner process", point, turn)
            os.kill(os.getpid(), signal.SIGKILL)


def _ends_in_tool_use(content: list[dict[str, Any]]) -> bool:
    return bool(content) and content[-1].get("type") == "tool_use"


def _backoff(attempt: int, server_wait: float | None) -> float:
    # Exponential backoff with full jitter, never sooner than the server asked.
    jittered = random.uniform(0, min(30.0, 0.5 * 2**attempt))
    return max(jittered, server_wait or 0.0)
