"""execution_timeout and on_kill stop a bulk task on asyncio and on uvloop alike.

Airflow delivers ``execution_timeout`` as SIGALRM in the main thread, whose handler raises
``AirflowTaskTimeout`` wherever the main thread is, and then calls ``on_kill``; SIGTERM calls
``on_kill`` only. The signals are sent at a chosen request (no timers): either while a row's
coroutine runs, or while the loop sits idle waiting for an answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sys
import threading
from collections.abc import Iterator

import httpx2
import pytest
from airflow.sdk.exceptions import AirflowTaskTerminated, AirflowTaskTimeout

from truto_airflow.operators.bulk import UpdateOpportunitiesOperator
from truto_airflow.retry import RetryPolicy

ROWS = [{"id": f"opp-{i}", "body": {"amount": i}} for i in range(200)]
FIRE_AT = 3  # the request during which the signal arrives
CONCURRENCY = 2
#: Requests that may still begin after the signal: the cancel is taken at the loop's next turn,
#: by which time each worker may have started at most one more row.
AFTER = 2 * CONCURRENCY


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    else:
        monkeypatch.setitem(sys.modules, "uvloop", None)  # import fails: plain asyncio
    return str(request.param)


@pytest.fixture(autouse=True)
def _conn(truto_conn: str) -> str:
    return truto_conn


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGALRM, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


class Server:
    """Answers PATCHes; at request ``FIRE_AT`` sends ``sig`` to the main thread.

    ``idle=True``: the answer waits on a future that a helper thread resolves right after the
    signal, so the signal lands while the loop waits on I/O (and a loop that swallowed it
    would simply carry on: the test then fails on "no timeout", it never hangs).
    """

    def __init__(self, sig: int, *, idle: bool) -> None:
        self.sig = sig
        self.idle = idle
        self.requests = 0
        self.answered = 0
        self.main = threading.main_thread().ident
        self.helper: threading.Thread | None = None

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        await asyncio.sleep(0)  # a real answer takes a loop turn; a mock would not
        if self.requests == FIRE_AT:
            if self.idle:
                loop = asyncio.get_running_loop()
                answer: asyncio.Future[None] = loop.create_future()

                def fire() -> None:
                    assert self.main is not None
                    signal.pthread_kill(self.main, self.sig)
                    loop.call_soon_threadsafe(lambda: answer.done() or answer.set_result(None))

                self.helper = threading.Thread(target=fire)
                self.helper.start()
                await answer
            else:
                signal.raise_signal(self.sig)
        self.answered += 1
        return httpx2.Response(200, json={"id": request.url.path.rsplit("/", 1)[-1]})


def operator(server: Server) -> UpdateOpportunitiesOperator:
    return UpdateOpportunitiesOperator(
        task_id="write",
        updates=ROWS,
        integration="hubspot",
        max_concurrency=CONCURRENCY,
        progress_every_seconds=None,
        http_transport="httpx",
        hook_params={
            "async_transport": httpx2.MockTransport(server),
            "retry_policy": RetryPolicy(max_retries=0),
        },
    )


def run_with_execution_timeout(op: UpdateOpportunitiesOperator) -> None:
    """Airflow's own code path: ``execution_timeout`` set, then the task runner's executor
    (SIGALRM timer, ``AirflowTaskTimeout``, then ``on_kill``). The timer is an hour: the test
    sends the signal itself at a chosen request.

    Airflow 3.3.2 runs this in ``task_runner._run_execute_callable``; 3.3.0 (our floor) inlines
    the same steps in ``_execute_task``: ``timeout(...)`` around ``execute``, then ``on_kill``."""
    from airflow.sdk.execution_time import task_runner

    op.execution_timeout = dt.timedelta(hours=1)
    run_execute = getattr(task_runner, "_run_execute_callable", None)
    if run_execute is not None:
        run_execute({"run_id": "manual"}, op.execute, op)
        return
    from airflow.sdk.execution_time.timeout import timeout

    try:
        with timeout(op.execution_timeout.total_seconds()):
            op.execute({"run_id": "manual"})  # type: ignore[arg-type]
    except AirflowTaskTimeout:
        op.on_kill()
        raise


@pytest.mark.usefixtures("restore_signals")
@pytest.mark.parametrize("idle", [False, True], ids=["in_row", "loop_idle"])
def test_execution_timeout_fails_the_task_and_stops_sending(loop_kind: str, idle: bool) -> None:
    server = Server(signal.SIGALRM, idle=idle)
    op = operator(server)
    with pytest.raises(AirflowTaskTimeout):
        run_with_execution_timeout(op)
    if server.helper is not None:
        server.helper.join()
    # The run stops at once: 200 rows, a handful sent.
    assert server.requests <= FIRE_AT + AFTER < len(ROWS)
    assert op.hook._async_client is None  # the client was closed


@pytest.mark.usefixtures("restore_signals")
@pytest.mark.parametrize("idle", [False, True], ids=["in_row", "loop_idle"])
def test_sigterm_on_kill_ends_the_async_work(loop_kind: str, idle: bool) -> None:
    server = Server(signal.SIGTERM, idle=idle)
    op = operator(server)
    # Airflow's SIGTERM handler only calls on_kill (task_runner._on_term).
    signal.signal(signal.SIGTERM, lambda signum, frame: op.on_kill())
    with pytest.raises(AirflowTaskTerminated, match="on_kill"):
        op.execute(context={"run_id": "manual"})
    if server.helper is not None:
        server.helper.join()
    assert server.requests <= FIRE_AT + AFTER < len(ROWS)
    assert op.hook._async_client is None
