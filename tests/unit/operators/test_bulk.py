"""UpdateOpportunitiesOperator: inputs, task state, XCom summary, ledger across task retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from tests.conftest import ACCOUNT_ID, TOKEN
from tests.unit.bulk.test_ledger_outcomes import FakeTaskStateStore
from tests.unit.bulk.test_supervision import SAFETY_NET_S
from truto_airflow.operators.bulk import (
    SUMMARY_XCOM_KEY,
    UpdateOpportunitiesOperator,
    decide_failure,
)
from truto_airflow.retry import RetryPolicy


class FakeTI:
    def __init__(self, try_number: int = 1, map_index: int = -1) -> None:
        self.dag_id = "bulk_dag"
        self.task_id = "write"
        self.run_id = "scheduled__2026-11-28"
        self.map_index = map_index
        self.try_number = try_number
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)  # XCom values must serialise
        self.xcom[key] = value


def context(ti: FakeTI, store: FakeTaskStateStore | None = None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"ti": ti, "task_instance": ti, "run_id": ti.run_id}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


Handler = Callable[[httpx2.Request], httpx2.Response]


def operator(handler: Handler, updates: Any, **kwargs: Any) -> UpdateOpportunitiesOperator:
    # integration= skips the preflight's account lookup, so handlers see only the PATCHes.
    kwargs.setdefault("integration", "hubspot")
    return UpdateOpportunitiesOperator(
        task_id="write",
        updates=updates,
        max_concurrency=4,
        progress_every_seconds=None,
        hook_params={
            "async_transport": httpx2.MockTransport(handler),
            "retry_policy": RetryPolicy(max_retries=0, backoff_base=0.001),
        },
        **kwargs,
    )


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"opp-{i}", "body": {"amount": i}} for i in range(n)]


def status_for(failing: dict[str, int]) -> Handler:
    def handler(request: httpx2.Request) -> httpx2.Response:
        oid = request.url.path.rsplit("/", 1)[-1]
        code = failing.get(oid, 200)
        return httpx2.Response(code, json={"statusCode": code, "message": f"status {code}"})

    return handler


@pytest.fixture(autouse=True)
def _conn(truto_conn: str) -> str:
    return truto_conn


@pytest.fixture(autouse=True)
def _safety_net(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bound every engine run far above what it takes: a regression (a hang) fails the test."""
    import truto_airflow.operators.bulk as bulk_module

    class BoundedRunner(bulk_module.LoopRunner):
        def run(self, coro: Any) -> Any:
            return super().run(asyncio.wait_for(coro, SAFETY_NET_S))

    monkeypatch.setattr(bulk_module, "LoopRunner", BoundedRunner)


def test_success_returns_and_pushes_the_summary() -> None:
    ti = FakeTI()
    summary = operator(status_for({}), rows(20)).execute(context(ti))  # type: ignore[arg-type]
    assert summary["outcomes"] == {"updated": 20, "failed": 0, "invalid": 0}
    assert ti.xcom[SUMMARY_XCOM_KEY] == summary
    assert summary["accounts"] == {ACCOUNT_ID: {"updated": 20}}
    assert TOKEN not in json.dumps(summary)


def test_permanent_failures_fail_without_airflow_retries() -> None:
    op = operator(status_for({"opp-2": 422}), rows(5))
    with pytest.raises(AirflowFailException, match="1 of 5 rows failed or invalid"):
        op.execute(context(FakeTI()))  # type: ignore[arg-type]


def test_transient_failures_fail_retryably_after_every_row() -> None:
    sent: list[str] = []
    inner = status_for({"opp-1": 500})

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request.url.path)
        return inner(request)

    op = operator(handler, rows(6))
    with pytest.raises(AirflowException) as info:
        op.execute(context(FakeTI()))  # type: ignore[arg-type]
    assert not isinstance(info.value, AirflowFailException)
    assert len(sent) == 6  # every row was attempted before failing


def test_failure_budget() -> None:
    failing = {f"opp-{i}": 422 for i in range(3)}
    ok = operator(status_for(failing), rows(10), max_failed=3)
    assert ok.execute(context(FakeTI()))["outcomes"]["failed"] == 3  # type: ignore[arg-type]
    ratio = operator(status_for(failing), rows(10), max_failed_ratio="0.2")
    with pytest.raises(AirflowFailException, match=r"more than max_failed_ratio=20\.0%"):
        ratio.execute(context(FakeTI()))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outcomes", "kwargs", "fails"),
    [
        ({"updated": 10, "failed": 0, "invalid": 0}, {}, False),
        ({"updated": 9, "failed": 0, "invalid": 1}, {}, True),
        ({"updated": 9, "failed": 0, "invalid": 1}, {"count_invalid": False}, False),
        ({"updated": 8, "failed": 2, "invalid": 0}, {"max_failed": 2}, False),
        ({"updated": 7, "failed": 3, "invalid": 0}, {"max_failed": 2}, True),
        ({"updated": 9, "failed": 1, "invalid": 0}, {"max_failed_ratio": 0.1}, False),
        ({"updated": 8, "failed": 2, "invalid": 0}, {"max_failed_ratio": 0.1}, True),
    ],
)
def test_decide_failure(outcomes: dict[str, int], kwargs: dict[str, Any], fails: bool) -> None:
    options: dict[str, Any] = {"max_failed": None, "max_failed_ratio": None, **kwargs}
    reason = decide_failure({"rows": 10, "outcomes": outcomes}, **options)
    assert (reason is not None) is fails


def test_jsonl_input_and_rejected_rows_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows(30)) + "\n{broken\n")
    target = tmp_path / "rejected" / "rows.jsonl"
    failing = {f"opp-{i}": 404 for i in range(0, 30, 3)}
    op = operator(status_for(failing), str(path), rejected_rows_path=str(target), inline_rejected=3)
    ti = FakeTI()
    with pytest.raises(AirflowFailException):
        op.execute(context(ti))  # type: ignore[arg-type]
    summary = ti.xcom[SUMMARY_XCOM_KEY]
    assert summary["rows"] == 31
    assert summary["outcomes"] == {"updated": 20, "failed": 10, "invalid": 1}
    assert summary["rejected"]["location"] == str(target)
    assert len(summary["rejected"]["rows"]) == 3
    written = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(written) == 11
    assert {w["outcome"] for w in written} == {"failed", "invalid"}
    assert any(w.get("line") == 31 for w in written)


def test_task_retry_skips_applied_rows_and_reuses_keys() -> None:
    store = FakeTaskStateStore()
    keys: dict[str, set[str]] = {}
    attempt = {"n": 1}

    def handler(request: httpx2.Request) -> httpx2.Response:
        oid = request.url.path.rsplit("/", 1)[-1]
        keys.setdefault(oid, set()).add(request.headers["idempotency-key"])
        if attempt["n"] == 1 and oid in {"opp-3", "opp-8"}:
            return httpx2.Response(502, json={"message": "bad gateway"})
        return httpx2.Response(200, json={"id": oid})

    with pytest.raises(AirflowException):
        operator(handler, rows(10)).execute(context(FakeTI(1), store))  # type: ignore[arg-type]
    attempt["n"] = 2
    sent_before = sum(len(v) for v in keys.values())
    ti = FakeTI(2)
    summary = operator(handler, rows(10)).execute(context(ti, store))  # type: ignore[arg-type]
    assert summary["already_applied"] == 8
    assert summary["requests_sent"] == 2
    assert summary["outcomes"]["updated"] == 10
    assert sum(len(v) for v in keys.values()) == sent_before  # retried rows: same key
    assert all(len(v) == 1 for v in keys.values())


def test_resend_applied_ignores_the_ledger() -> None:
    store = FakeTaskStateStore()
    operator(status_for({}), rows(4)).execute(context(FakeTI(), store))  # type: ignore[arg-type]
    op = operator(status_for({}), rows(4), resend_applied=True)
    summary = op.execute(context(FakeTI(2), store))  # type: ignore[arg-type]
    assert summary["requests_sent"] == 4


def test_planners_is_a_deprecated_name_for_steps() -> None:
    from truto_airflow.bulk import Outcome, RowItem, StepDecision

    class Refuse:
        async def run(self, item: RowItem) -> RowItem | StepDecision:
            return StepDecision(Outcome.INVALID, "refused", "preflight")

    with pytest.warns(DeprecationWarning, match=r"planners=\.\.\.\) is deprecated; pass steps"):
        old = operator(status_for({}), rows(2), planners=[Refuse()], max_failed=None)
    new = operator(status_for({}), rows(2), steps=[Refuse()], max_failed=None)
    assert [type(s) for s in old.steps] == [type(s) for s in new.steps] == [Refuse]


def test_templated_fields_and_reexport() -> None:
    from truto_airflow.operators.opportunities import UpdateOpportunitiesOperator as Reexported

    assert Reexported is UpdateOpportunitiesOperator
    assert {"updates", "max_failed", "rejected_rows_path"} <= set(
        UpdateOpportunitiesOperator.template_fields
    )


# -- the engine stops early (issue 9): the task fails naming the cause, summary in XCom ----------


class BrokenTaskStateStore(FakeTaskStateStore):
    """Airflow's task_state_store after the supervisor that serves it died."""

    def set(self, key: str, value: Any) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_engine_failure_fails_the_task_naming_the_cause() -> None:
    calls = {"n": 0}

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls["n"] += 1
        if calls["n"] > 10:
            raise RuntimeError("transport bug")
        return httpx2.Response(200, json={"id": "x"})

    ti = FakeTI()
    with pytest.raises(AirflowException) as info:
        operator(handler, rows(400)).execute(context(ti))  # type: ignore[arg-type]
    assert not isinstance(info.value, AirflowFailException)  # a retry resumes from the ledger
    text = str(info.value)
    assert "stopped early: worker" in text and "RuntimeError: transport bug" in text
    assert "updated=10" in text and "not_attempted=" in text
    summary = ti.xcom[SUMMARY_XCOM_KEY]
    assert summary["aborted"]["cause"] == "RuntimeError: transport bug"
    assert sum(summary["outcomes"].values()) == summary["rows"] < 400
    assert TOKEN not in text and TOKEN not in json.dumps(summary)


def test_broken_ledger_store_fails_the_task_and_says_what_was_not_recorded() -> None:
    """The supervisor is gone: task_state_store raises BrokenPipeError (so does the log)."""
    ti = FakeTI()
    op = operator(status_for({}), rows(1500))
    with pytest.raises(AirflowException) as info:
        op.execute(context(ti, BrokenTaskStateStore()))  # type: ignore[arg-type]
    text = str(info.value)
    assert "stopped early: ledger failed: LedgerStoreError" in text
    assert "BrokenPipeError" in text
    summary = ti.xcom[SUMMARY_XCOM_KEY]
    assert summary["rows"] < 1500  # it did not carry on without memory
    assert summary["ledger"]["unsaved"] == summary["outcomes"]["updated"] >= 1000
    assert f"{summary['ledger']['unsaved']} applied row(s) are not in the ledger" in text


def test_orphaned_task_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its parent (the supervisor) died: the parent pid changes; the run ends, never idles."""
    import truto_airflow.operators.bulk as bulk_module
    from truto_airflow.bulk.engine import BulkEngine

    monkeypatch.setattr(BulkEngine, "watch_every", 0.001)
    parents = iter([100])  # the first call (at start) sees the supervisor; later ones do not
    monkeypatch.setattr(bulk_module.os, "getppid", lambda: next(parents, 1))

    async def handler(request: httpx2.Request) -> httpx2.Response:
        # Never answers: only the watch can end this run. The wait's bound is a safety net far
        # above the milliseconds this takes, so a regression fails instead of hanging CI.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), SAFETY_NET_S)
        return httpx2.Response(500, json={"message": "safety net reached: the watch did not fire"})

    ti = FakeTI()
    with pytest.raises(AirflowException) as info:
        operator(handler, rows(50)).execute(context(ti))  # type: ignore[arg-type]
    text = str(info.value)
    assert "stopped early: watch failed" in text
    assert "parent process (pid 100, Airflow's task supervisor) is gone" in text
    assert ti.xcom[SUMMARY_XCOM_KEY]["outcomes"]["interrupted"] == 1  # the pacer's probe


def test_failing_xcom_push_does_not_hide_the_cause() -> None:
    class DeadTI(FakeTI):
        def xcom_push(self, key: str, value: Any) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    def handler(request: httpx2.Request) -> httpx2.Response:
        raise RuntimeError("transport bug")

    with pytest.raises(AirflowException, match="RuntimeError: transport bug"):
        operator(handler, rows(5)).execute(context(DeadTI()))  # type: ignore[arg-type]


def test_fail_now_cause_stays_fail_now() -> None:
    from truto_airflow.exceptions import TrutoInputError

    def updates() -> Any:
        yield from rows(3)
        raise TrutoInputError("updates: the source refused to go on")

    ti = FakeTI()
    with pytest.raises(AirflowFailException, match="reader failed: TrutoInputError"):
        operator(status_for({}), updates()).execute(context(ti))  # type: ignore[arg-type]
    assert ti.xcom[SUMMARY_XCOM_KEY]["rows"] == 3
