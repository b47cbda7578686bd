"""Parking the bulk engine's workers and reader until there is something to do.

The engine parks a worker whenever no account may send, and wakes one per row admitted or
answered: at high concurrency that happens thousands of times a second, so a wait has to be
cheap and a wake-up has to reach only the coroutine that can use it. ``asyncio.Event`` wakes
every waiter on each ``set()`` (each then looks for work, finds none, and waits again), and a
wait with a timeout on it needs a task and ``asyncio.wait``. A :class:`Waiters` wait is one
future and, with a timeout, one timer handle; :meth:`Waiters.wake_one` resumes a single waiter.

A cancellation is never swallowed: the future is awaited directly, so a cancel that lands in
the same loop turn as a wake-up still raises ``CancelledError`` in the waiter (the problem of
``asyncio.wait_for`` before Python 3.12, gh-86296).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

__all__ = ["BatchWaiters", "Waiters"]


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)  # False: still parked, the waiter unparks itself


class Waiters:
    """Coroutines parked until :meth:`wake_one` / :meth:`wake_all` or their timeout."""

    def __init__(self) -> None:
        self._parked: deque[asyncio.Future[bool]] = deque()
        #: Waiters woken but not resumed yet (each will look for work when it runs).
        self.pending = 0

    def __len__(self) -> int:
        """How many coroutines are parked (some may be about to resume)."""
        return len(self._parked)

    async def wait(self, timeout: float | None) -> None:
        """Park until woken, or until ``timeout`` seconds pass (``None``: no timeout)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._parked.append(future)
        timer = None if timeout is None else loop.call_later(max(timeout, 0.0), _expire, future)
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()
            if not future.cancelled() and future.result():
                self.pending -= 1
            else:
                # Timed out or cancelled: still in the queue (a wake-up takes it out).
                with contextlib.suppress(ValueError):
                    self._parked.remove(future)

    def wake_one(self) -> bool:
        """Resume the longest-parked waiter; ``False`` if none was parked."""
        parked = self._parked
        while parked:
            future = parked.popleft()
            if not future.done():
                future.set_result(True)
                self.pending += 1
                return True
        return False

    def wake_all(self) -> None:
        """Resume every parked waiter (the run is ending, or many may proceed at once)."""
        if not self._parked:
            return  # the common case (every settled row asks): no new queue per call
        parked, self._parked = self._parked, deque()
        for future in parked:
            if not future.done():
                future.set_result(True)
                self.pending += 1


class BatchWaiters(Waiters):
    """:class:`Waiters` woken by :meth:`signal` once every ``batch`` signals since the last
    wait began (or by :meth:`wake_all`, or their timeout). For a waiter that can do a batch
    of work at once: the bulk reader, parked for room, admits a batch of rows once that many
    have settled, instead of being woken to admit one row per settled row."""

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch = max(1, batch)
        self._left = 0

    async def wait(self, timeout: float | None) -> None:
        self._left = self.batch
        await super().wait(timeout)

    def signal(self) -> None:
        """One unit of what the waiters wait for (a row left memory)."""
        if self._left > 1:
            self._left -= 1
        else:
            self.wake_all()
