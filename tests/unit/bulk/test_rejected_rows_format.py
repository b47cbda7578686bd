"""The rejected-rows file and the summary, pinned byte for byte for every way a row ends.

Users filter the rejected-rows file and the XCom summary by these keys and values; a change in
how a row's outcome is held in memory must not change one byte of them.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import httpx2

from tests.unit.bulk.conftest import ACCOUNTS, make_engine, opp_id, run
from truto_airflow.bulk.engine import BulkSettings
from truto_airflow.bulk.outcomes import REJECTED, Outcome, RowResult
from truto_airflow.bulk.prepare import RowItem, RowPreparer
from truto_airflow.bulk.rejects import RejectedRows
from truto_airflow.bulk.rows import RawRow
from truto_airflow.bulk.steps import StepDecision
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.idempotency import RunIdentity

A, B, C = ACCOUNTS

#: Written by the code before RowResult held its failure as one value (0.2 development).
_SNAPSHOTS = pathlib.Path(__file__).parent / "snapshots"

#: Truto's error body for a refused row (with the optional insight and remote flag).
_422 = {
    "statusCode": 422,
    "error": "Unprocessable Entity",
    "message": "amount must be positive",
    "truto_is_remote_error": True,
    "truto_error_insight": {"missing_required_body_fields": ["name"]},
}


def _answer(request: httpx2.Request) -> httpx2.Response:
    oid = opp_id(request)
    if oid == "opp-422":
        return httpx2.Response(422, json=_422)
    if oid == "opp-500":
        return httpx2.Response(500, json={"statusCode": 500, "message": "down"})
    if oid == "opp-401":
        return httpx2.Response(401, json={"statusCode": 401, "error": "Unauthorized"})
    if oid == "opp-net":
        raise httpx2.ConnectError("refused", request=request)
    if oid == "opp-html":
        return httpx2.Response(200, text="<html>login</html>")
    return httpx2.Response(200, json={"id": oid})


class _Decides:
    """A user's row step settling some rows without sending them."""

    async def run(self, item: RowItem) -> RowItem | StepDecision:
        oid = item.opportunity_id
        if oid == "opp-step-failed":
            return StepDecision(Outcome.FAILED, "the step refused it")  # no error code
        if oid == "opp-step-invalid":
            return StepDecision(Outcome.INVALID, "field 'x' unsupported", error="preflight")
        if oid == "opp-step-raises":
            raise RuntimeError("step broke")
        if oid == "opp-same":
            return StepDecision(Outcome.UNCHANGED, "every field already holds this value")
        if oid == "opp-dry":
            return StepDecision(Outcome.WOULD_UPDATE, "dry run: not sent")
        return item


def _rows() -> list[Any]:
    def row(oid: str, account: str = A, **body: Any) -> dict[str, Any]:
        return {"id": oid, "integrated_account_id": account, "body": {"amount": 1, **body}}

    return [
        row("opp-ok"),
        row("opp-422", amount=-1),
        row("opp-500"),
        row("opp-500", amount=2),  # held back: an earlier row of it failed
        row("opp-html"),
        row("opp-step-failed"),
        row("opp-step-invalid"),
        row("opp-step-raises"),
        row("opp-same"),
        row("opp-dry"),
        {"id": "opp-nobody", "integrated_account_id": A},
        "not an object",
        row("opp-401", B),
        row("opp-after-401", B),
        row("opp-net", C),
    ]


def _run(tmp_path: pathlib.Path, seen: list[RowResult] | None = None) -> tuple[dict[str, Any], str]:
    source = tmp_path / "rows.jsonl"
    lines = [json.dumps(r) for r in _rows()]
    lines.insert(3, "{not json")
    source.write_text("\n".join(lines) + "\n")
    target = tmp_path / "rejected.jsonl"
    engine = make_engine(
        _answer,
        settings=BulkSettings(max_concurrency=1, progress_every_seconds=None),
        max_retries=0,
        steps=[_Decides()],
        rejected=RejectedRows(destination=target, inline_limit=3),
    )
    if seen is not None:
        record = engine.summary.record

        def keep(result: RowResult) -> None:
            seen.append(result)
            record(result)

        engine.summary.record = keep  # type: ignore[method-assign]
    summary = run(engine, source)
    for timing in ("duration_s", "rows_per_second", "latency_ms"):
        summary.pop(timing)
    summary["rejected"]["location"] = pathlib.Path(summary["rejected"]["location"]).name
    return summary, target.read_text()


def test_every_rejected_row_kind_is_written_byte_for_byte_as_before(
    tmp_path: pathlib.Path,
) -> None:
    summary, written = _run(tmp_path)
    assert written == (_SNAPSHOTS / "rejected_rows.jsonl").read_text()
    assert json.dumps(summary, indent=1) + "\n" == (_SNAPSHOTS / "summary.json").read_text()


def test_rows_that_are_not_rejected_keep_the_words_they_had() -> None:
    hook = TrutoHook()
    preparer = RowPreparer(hook=hook, identity=RunIdentity("dag", "task", "run-1"))
    item = preparer.prepare(RawRow(7, {"id": "opp-7", "body": {"amount": 1}}, line=8))
    assert isinstance(item, RowItem)
    item.attempts, item.throttles = 2, 1
    base = {"row": 7, "id": "opp-7", "integrated_account_id": item.account}
    none = {"status_code": None, "error": None, "message": None}
    assert RowResult.updated(item, 204).to_dict(with_body=True) == {
        **base,
        "outcome": "updated",
        **none,
        "status_code": 204,
        "attempts": 2,
    }
    assert RowResult.applied_earlier(item).to_dict() == {
        **base,
        "outcome": "updated",
        **none,
        "line": 8,
    }
    assert RowResult.cut_short(item, sent=True).to_dict() == {
        **base,
        "outcome": "interrupted",
        **none,
        "line": 8,
        "attempts": 3,
    }
    assert RowResult.cut_short(item, sent=False).to_dict()["outcome"] == "not_attempted"
    assert RowResult.not_attempted(9, "opp-9", None).to_dict() == {
        "row": 9,
        "outcome": "not_attempted",
        "id": "opp-9",
        "integrated_account_id": None,
        **none,
    }


def test_a_row_carries_a_failure_exactly_when_it_is_rejected(tmp_path: pathlib.Path) -> None:
    seen: list[RowResult] = []
    _run(tmp_path, seen)
    assert len(seen) == 16
    for result in seen:
        failure = result.failure
        assert (failure is not None) == (result.outcome in REJECTED), result
        # the names a rejected row has always been read by
        assert result.error == (failure and failure.error)
        assert result.message == (failure and failure.message)
        assert result.error_insight == (failure and failure.error_insight)
        assert result.is_remote_error == (failure and failure.is_remote_error)
        if failure is not None:
            assert result.status_code == failure.status_code
