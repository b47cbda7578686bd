"""Run the bulk engine's event loop so that Airflow can still stop the task.

Airflow stops a running task two ways, both in the task's main thread, which is the thread the
event loop runs in:

* ``execution_timeout``: a SIGALRM handler raises ``AirflowTaskTimeout`` *wherever the main
  thread happens to be*. Inside an event loop that is a row's coroutine (where the engine's
  per-row bookkeeping takes it for that row's failure) or the loop's own machinery (uvloop
  swallows exceptions from signal handlers). Either way the task used to run to completion
  and succeed.
* SIGTERM (the task was killed, or its DAG run marked failed): Airflow's handler calls
  ``on_kill()``, which must end the async work from a signal handler.

:class:`LoopRunner` makes both deterministic. While the loop runs, the SIGALRM handler is
wrapped: the original handler is called, the exception it raises is *kept* instead of being
thrown into whatever frame was running, and the run is cancelled through the loop's thread-safe
door (``call_soon_threadsafe``), so in-flight requests are cancelled, the engine flushes its
ledger and the hook closes its client on the way out. Then the kept exception is raised from
:meth:`LoopRunner.run`, so the task fails with Airflow's own timeout error. :meth:`stop` does
the same for ``on_kill`` and raises ``AirflowTaskTerminated``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import FrameType
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowTaskTerminated

__all__ = ["LoopRunner", "frozen_heap"]

T = TypeVar("T")

#: Signals whose Python handler may raise into the loop's thread (Airflow's execution_timeout).
_FORWARDED = ("SIGALRM",)


class LoopRunner:
    """Runs one coroutine to completion on uvloop (when installed) or asyncio; stoppable.

    :param use_uvloop: ``None`` = uvloop when importable.
    """

    def __init__(self, *, use_uvloop: bool | None = None) -> None:
        self.use_uvloop = use_uvloop
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[Any] | None = None
        #: Why the run was stopped; raised from :meth:`run` once the loop has unwound.
        self._reason: BaseException | None = None

    # -- public -----------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro``; raise the stop reason if :meth:`stop` or a forwarded signal ended it."""
        with self._forward_signals():
            result = _run(self._main_of(coro), self._uvloop())
        if self._reason is not None:  # stopped as the work finished: still a stopped task
            raise self._reason
        return result

    def stop(self, reason: BaseException | None = None) -> bool:
        """Cancel the run from any thread or signal handler; ``False`` if nothing is running.

        The run unwinds (``finally`` blocks, client close) and :meth:`run` raises ``reason``
        (default ``AirflowTaskTerminated``).
        """
        with self._lock:
            if self._reason is None:
                self._reason = reason or AirflowTaskTerminated(
                    "the bulk update was stopped (on_kill); rows already applied are in the "
                    "ledger and are not resent by a retry"
                )
            loop, main = self._loop, self._main
        if loop is None or main is None or loop.is_closed():
            return False
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to stop
            loop.call_soon_threadsafe(main.cancel)
            return True
        return False

    # -- internals --------------------------------------------------------------------------

    async def _main_of(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._main = asyncio.current_task()
            stopped = self._reason is not None
        try:
            if stopped:  # stopped before the loop started: do not start the work at all
                coro.close()
                raise asyncio.CancelledError
            return await coro
        except asyncio.CancelledError:
            if self._reason is not None:
                raise self._reason from None
            raise
        finally:
            with self._lock:
                self._loop = self._main = None

    def _uvloop(self) -> bool:
        if self.use_uvloop is not None:
            return self.use_uvloop
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return False
        return True

    @contextlib.contextmanager
    def _forward_signals(self) -> Iterator[None]:
        """Wrap raising signal handlers for the duration of the run (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        saved: dict[signal.Signals, Any] = {}
        for name in _FORWARDED:
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            original = signal.getsignal(sig)
            if callable(original):
                saved[sig] = original
                signal.signal(sig, self._forwarder(original))
        try:
            yield
        finally:
            for sig, original in saved.items():
                signal.signal(sig, original)

    def _forwarder(
        self, original: Callable[[int, FrameType | None], Any]
    ) -> Callable[[int, FrameType | None], None]:
        def forward(signum: int, frame: FrameType | None) -> None:
            try:
                original(signum, frame)
            except BaseException as exc:  # Airflow's timeout: keep it, stop the run cleanly
                if not self.stop(exc):
                    raise  # no loop running (yet or any more): behave as without us

        return forward


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects that exist now out of the cyclic GC's collections while the block runs.

    An Airflow task process holds a few hundred thousand long-lived objects (Airflow, pydantic,
    providers), and each full collection rescans all of them: a bulk run allocates enough to
    trigger one every few thousand rows, about 0.1 s each (measured with ``gc.callbacks``), a
    CPU cost per row that grows with the process, not with the work. ``gc.freeze()`` moves them
    to the permanent generation; ``gc.unfreeze()`` at the end puts them back, so the process
    behaves as before once the run is over. What the run itself allocates is collected as usual.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _run(coro: Coroutine[Any, Any, T], use_uvloop: bool) -> T:
    if use_uvloop:
        import uvloop

        result: T = uvloop.run(coro)
        return result
    return asyncio.run(coro)
