"""The agent loop: one explicit `while` over turns, each committed as one concurrency-checked event."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

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

__all__ = ["SYSTEM_PROMPT", "JobLoop"]

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are a careful software engineer working in a checkout of the user's repository. "
    "Use the tools to explore, then edit the code to complete the task. Paths are relative to the "
    "repository root. When the task is done, call the finish tool with a short summary of the change."
)

_PAYLOAD_MARGIN = 16 * 1024
"""Bytes kept free below the server's max payload for headers and the event's other fields."""


@dataclass(slots=True)
class LoopContext:
    """What one run of a job needs, gathered by the runner service before the loop starts."""

    job_id: str
    lineage: Lineage
    workspace: Workspace
    expected_last: int
    """Stream sequence of the job's last event; every append is checked against it."""


class JobLoop:
    """Runs the turns of one job until it finishes, fails, is cancelled or loses its history to another writer."""

    def __init__(self, *, store: EventStore, model: ModelClient, settings: Settings, max_payload: int) -> None:
        self._store = store
        self._model = model
        self._settings = settings
        self._max_payload = max_payload

    async def run(self, context: LoopContext) -> str:
        """Run the job; return how it ended: `completed`, `failed`, `cancelled` or `lost`."""
        try:
            return await self._turns(context)
        except AppendConflictError as exc:
            log.warning("job %s: stopping, another writer appended first (%s)", context.job_id, exc.detail)
            return "lost"

    async def _turns(self, context: LoopContext) -> str:
        lineage = context.lineage
        while lineage.last_turn < lineage.max_turns:
            turn = lineage.last_turn + 1
            conversation = lineage.conversation()
            try:
                reply = await self._call_model(context.job_id, turn, conversation.messages)
            except ModelFailure as failure:
                await self._fail(context, failure)
                return "failed"

            started = time.perf_counter()
            results, finished = await self._run_tools(context.workspace, reply.content)
            tools_ms = (time.perf_counter() - started) * 1000
            changes = context.workspace.take_changes()

            record = TurnCompleted(
                job_id=context.job_id,
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
            record = self._fit(record)
            cancel = await self._append(context, record)
            lineage.turns.append(record)
            log.info("job %s: turn %d/%d committed", context.job_id, turn, lineage.max_turns)

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
                f"reached maxTurns {lineage.max_turns} before the model called finish",
                False,
            ),
        )
        return "failed"

    async def _call_model(self, job_id: str, turn: int, messages: list[dict[str, Any]]) -> ModelReply:
        """Call the model, retrying transient failures while the wait stays under max_retry_wait."""
        attempt = 0
        max_tokens = self._settings.max_tokens
        truncated_retry = False
        while True:
            attempt += 1
            try:
                reply = await self._model.create(
                    model=self._settings.model,
                    max_tokens=max_tokens,
                    system=SYSTEM_PROMPT,
                    tools=TOOL_DEFINITIONS,
                    messages=messages,
                )
            except ModelFailure as failure:
                wait = _backoff(attempt, failure.retry_after)
                if not failure.retryable or wait > self._settings.max_retry_wait:
                    raise
                log.warning("job %s turn %d: %s; retrying in %.1fs (attempt %d)", job_id, turn, failure, wait, attempt)
                await asyncio.sleep(wait)
                continue

            if reply.stop_reason == "max_tokens" and _ends_in_tool_use(reply.content):
                # A tool_use cut by max_tokens has incomplete input: never run it.
                if truncated_retry:
                    raise ModelFailure(
                        "output_truncated",
                        f"the model's tool call was cut at max_tokens {max_tokens} twice",
                        False,
                    )
                truncated_retry = True
                max_tokens *= 2
                log.warning(
                    "job %s turn %d: tool call truncated; retrying with max_tokens %d",
                    job_id,
                    turn,
                    max_tokens,
                )
                continue
            return reply

    async def _run_tools(
        self, workspace: Workspace, content: list[dict[str, Any]]
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


def _ends_in_tool_use(content: list[dict[str, Any]]) -> bool:
    return bool(content) and content[-1].get("type") == "tool_use"


def _backoff(attempt: int, server_wait: float | None) -> float:
    # Exponential backoff with full jitter, never sooner than the server asked.
    jittered = random.uniform(0, min(30.0, 0.5 * 2**attempt))
    return max(jittered, server_wait or 0.0)
