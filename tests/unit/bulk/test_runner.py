"""LoopRunner: a stopped run stops, on either loop, whatever the timing."""

from __future__ import annotations

import asyncio
import signal

import pytest
from airflow.sdk.exceptions import AirflowTaskTerminated

from truto_airflow.bulk.runner import LoopRunner


@pytest.mark.parametrize("use_uvloop", [False, True])
def test_runner_returns_the_result_and_refuses_a_run_stopped_before_it_began(
    use_uvloop: bool,
) -> None:
    if use_uvloop:
        pytest.importorskip("uvloop")

    async def work() -> int:
        await asyncio.sleep(0)
        return 7

    assert LoopRunner(use_uvloop=use_uvloop).run(work()) == 7
    runner = LoopRunner(use_uvloop=use_uvloop)
    assert runner.stop() is False  # nothing running yet
    with pytest.raises(AirflowTaskTerminated):
        runner.run(work())


@pytest.mark.parametrize("use_uvloop", [False, True])
def test_a_raising_signal_handler_is_restored_and_still_raises_outside_the_loop(
    use_uvloop: bool,
) -> None:
    if use_uvloop:
        pytest.importorskip("uvloop")

    class Boom(BaseException):
        pass

    def handler(signum: int, frame: object) -> None:
        raise Boom

    saved = signal.signal(signal.SIGALRM, handler)
    try:
        finished: list[bool] = []

        async def work() -> None:
            signal.raise_signal(signal.SIGALRM)
            for _ in range(100):  # the cancel lands at the next loop turn
                await asyncio.sleep(0)
            finished.append(True)

        with pytest.raises(Boom):
            LoopRunner(use_uvloop=use_uvloop).run(work())
        assert finished == []
        assert signal.getsignal(signal.SIGALRM) is handler
        with pytest.raises(Boom):
            signal.raise_signal(signal.SIGALRM)
    finally:
        signal.signal(signal.SIGALRM, saved)
