"""`cancel_until_done` stops a task that swallows a cancellation, as a heartbeat did inside nats-py."""

from __future__ import annotations

import asyncio
import contextlib

from services.common.consumers import cancel_until_done


async def _swallows_first_cancel(beats: list[int]) -> None:
    # Like asyncio.wait_for on Python 3.11 when the reply and the cancel arrive together.
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(10)
    while True:
        beats.append(1)
        await asyncio.sleep(0.01)


async def test_one_cancel_leaves_it_running() -> None:
    beats: list[int] = []
    task = asyncio.create_task(_swallows_first_cancel(beats))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0.1)

    assert not task.done()
    assert beats
    await cancel_until_done(task)


async def test_cancel_until_done_stops_it() -> None:
    beats: list[int] = []
    task = asyncio.create_task(_swallows_first_cancel(beats))
    await asyncio.sleep(0)

    await asyncio.wait_for(cancel_until_done(task), 5)

    assert task.cancelled()
    count = len(beats)
    await asyncio.sleep(0.05)
    assert len(beats) == count


async def test_finished_task_left_alone() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.wait([task])

    await cancel_until_done(task)

    assert isinstance(task.exception(), RuntimeError)
