"""Waiters (the engine's parking of idle workers and the reader) and the frozen heap of a run."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from truto_airflow.bulk.runner import frozen_heap
from truto_airflow.bulk.wakeup import BatchWaiters, Waiters

LOOPS = ["asyncio", "uvloop"]


def run_on(loop_kind: str, main: Callable[[], Awaitable[Any]]) -> Any:
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(main())
    return asyncio.run(main())  # type: ignore[arg-type]


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_cancel_that_lands_with_the_wake_up_is_never_swallowed(loop_kind: str) -> None:
    async def main() -> None:
        waiters = Waiters()
        parked = asyncio.create_task(waiters.wait(10.0))
        await asyncio.sleep(0)  # parked
        assert waiters.wake_one()  # the wake-up and the cancel land in the same loop turn
        parked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await parked
        assert len(waiters) == 0 and waiters.pending == 0

    run_on(loop_kind, main)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="fixed in asyncio.wait_for on 3.12")
def test_why_not_wait_for_it_swallows_that_cancel() -> None:
    async def main() -> bool:
        event = asyncio.Event()
        waiter = asyncio.create_task(asyncio.wait_for(event.wait(), 10.0))
        await asyncio.sleep(0)
        event.set()
        waiter.cancel()
        return await waiter

    assert asyncio.run(main()) is True  # the cancel was lost


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_wake_one_resumes_exactly_one_waiter_the_longest_parked(loop_kind: str) -> None:
    async def main() -> None:
        waiters = Waiters()
        resumed: list[int] = []

        async def park(n: int) -> None:
            await waiters.wait(None)
            resumed.append(n)

        tasks = [asyncio.create_task(park(n)) for n in range(5)]
        await asyncio.sleep(0)
        assert len(waiters) == 5
        assert waiters.wake_one()
        assert waiters.pending == 1  # woken, not resumed yet
        await asyncio.sleep(0)
        assert resumed == [0] and len(waiters) == 4 and waiters.pending == 0
        waiters.wake_all()
        await asyncio.gather(*tasks)
        assert sorted(resumed) == [0, 1, 2, 3, 4] and waiters.pending == 0
        assert not waiters.wake_one()  # nobody parked: nothing happens

    run_on(loop_kind, main)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_timed_out_waiter_unparks_itself(loop_kind: str) -> None:
    """Workers park with timeouts all the time; the parked queue must not keep them."""

    async def main() -> None:
        waiters = Waiters()
        for _ in range(50):
            await waiters.wait(0)
        assert len(waiters) == 0 and waiters.pending == 0
        late = asyncio.create_task(waiters.wait(None))
        await asyncio.sleep(0)
        assert waiters.wake_one()  # reaches the live waiter, not a timed-out one
        await late

    run_on(loop_kind, main)


def test_frozen_heap_freezes_for_the_block_only() -> None:
    before = gc.get_freeze_count()
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        garbage: list[Any] = []
        garbage.append(garbage)  # a cycle made during the run is still collected
        del garbage
        assert gc.collect() >= 1
    assert gc.get_freeze_count() == before == 0


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_batch_waiters_wake_once_a_batch_of_signals_came_since_the_wait(loop_kind: str) -> None:
    async def main() -> None:
        room = BatchWaiters(3)
        room.signal()  # nobody waits: nothing to wake, and it does not count for a later wait
        parked = asyncio.create_task(room.wait(None))
        await asyncio.sleep(0)
        room.signal()
        room.signal()
        await asyncio.sleep(0)
        assert not parked.done() and len(room) == 1
        room.signal()  # the third since the wait began
        await parked
        again = asyncio.create_task(room.wait(None))  # a new wait counts afresh
        await asyncio.sleep(0)
        room.signal()
        await asyncio.sleep(0)
        assert not again.done()
        room.wake_all()  # the run ends, a spill refills: at once, whatever the count
        await again
        assert len(room) == 0 and room.pending == 0

    run_on(loop_kind, main)
