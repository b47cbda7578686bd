"""Ledger stores, rejected rows, summary counts, the outcome table and progress lines."""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from truto_airflow.bulk import Outcome, RowResult
from truto_airflow.bulk.ledger import (
    TOKEN_LEN,
    MemoryLedgerStore,
    PathLedgerStore,
    SuccessLedger,
    TaskStateLedgerStore,
    token_for,
)
from truto_airflow.bulk.outcomes import LatencyHistogram, SummaryBuilder, format_outcome_table
from truto_airflow.bulk.progress import ProgressReporter
from truto_airflow.bulk.rejects import RejectedRows
from truto_airflow.idempotency import derive_idempotency_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTaskStateStore:
    """Same surface as Airflow's TaskStateStoreAccessor (get/set/delete)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        json.dumps(value)  # values must be JSON
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def key(i: int) -> str:
    return derive_idempotency_key(
        dag_id="d",
        task_id="t",
        run_id="r",
        map_index=None,
        integrated_account_id="a",
        opportunity_id=str(i),
        body={"amount": i},
    )


def test_token_is_fixed_width_and_distinct() -> None:
    tokens = {token_for(key(i)) for i in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) == TOKEN_LEN for t in tokens)
    assert len(token_for("custom-key")) == TOKEN_LEN


@pytest.mark.parametrize("kind", ["memory", "path", "task_state"])
def test_ledger_round_trip(kind: str, tmp_path: pathlib.Path) -> None:
    store: Any
    if kind == "memory":
        store = MemoryLedgerStore()
    elif kind == "path":
        store = PathLedgerStore(tmp_path / "ckpt")
    else:
        accessor = FakeTaskStateStore()
        store = TaskStateLedgerStore(accessor)
    clock = FakeClock()
    ledger = SuccessLedger(store, flush_rows=3, flush_seconds=5.0, clock=clock)
    for i in range(7):
        ledger.record(key(i))
    assert ledger.flushes == 2  # every 3 rows
    clock.now = 6.0
    ledger.record(key(7))  # 5 s passed: flushed even though only 2 rows were pending
    assert ledger.flushes == 3
    ledger.flush()
    again = SuccessLedger(store)
    assert again.load() == 8
    assert again.already_applied(key(3))
    assert not again.already_applied(key(8))
    if kind == "task_state":
        assert accessor.data["truto_bulk_ledger"] == {"v": 1, "chunks": 3}
        assert all(len(v) <= 64_000 for v in accessor.data.values() if isinstance(v, str))


def test_rejected_rows_inline_then_file(tmp_path: pathlib.Path) -> None:
    sink = RejectedRows(destination=str(tmp_path / "out" / "rejected.jsonl"), inline_limit=2)
    for i in range(5):
        sink.add(RowResult(i, Outcome.FAILED, f"o{i}", status_code=422, body={"amount": i}))
    info = sink.finish()
    assert info["count"] == 5 and len(info["rows"]) == 2 and info["truncated"]
    lines = (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()
    assert [json.loads(x)["body"]["amount"] for x in lines] == [0, 1, 2, 3, 4]
    small = RejectedRows(inline_limit=5)
    small.add(RowResult(0, Outcome.INVALID, "x"))
    assert small.finish()["location"] is None


def test_summary_and_table() -> None:
    builder = SummaryBuilder()
    for i in range(4):
        builder.record(RowResult(i, Outcome.UPDATED, str(i), "acc-1", status_code=200))
    builder.record(RowResult(4, Outcome.FAILED, "4", "acc-2", status_code=401, not_sent=True))
    builder.record(RowResult(5, Outcome.INVALID, "5"))
    builder.record(RowResult(6, Outcome.UPDATED, "6", "acc-1", already_applied=True))
    for status in (200, 200, 429, None):
        builder.request_done(status, 0.02)
    summary = builder.build(duration=2.0, rejected={"count": 2, "rows": [], "location": None})
    assert summary["outcomes"] == {"updated": 5, "failed": 1, "invalid": 1}
    assert summary["status_codes"] == {"200": 4, "401": 1}
    assert summary["rate_limited"] == 1 and summary["network_errors"] == 1
    assert summary["rows_per_second"] == 3.5
    assert summary["not_sent"] == 1 and summary["already_applied"] == 1
    table = format_outcome_table(summary)
    lines = table.splitlines()
    assert lines[0].split() == ["integrated_account_id", "updated", "failed", "invalid", "total"]
    assert lines[2].split() == ["(none)", "0", "0", "1", "1"]
    assert any(line.split() == ["all", "5", "1", "1", "7"] for line in lines)
    assert "429s: 1" in lines[-1]


def _reference_counts(results: list[RowResult]) -> dict[str, Any]:
    """The summary's per-row counts as first written (the rule SummaryBuilder.record keeps)."""
    from collections import Counter

    outcomes: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    accounts: dict[str, Counter[str]] = {}
    applied = not_sent = 0
    for r in results:
        outcomes[r.outcome.value] += 1
        code = "none" if r.status_code is None else str(r.status_code)
        if r.outcome in (Outcome.UPDATED, Outcome.FAILED) and not r.already_applied:
            codes[code] += 1
        applied += r.already_applied
        not_sent += r.not_sent
        account = r.integrated_account_id or "(none)"
        if account not in accounts and len(accounts) >= 1000:
            account = "(other)"
        accounts.setdefault(account, Counter())[r.outcome.value] += 1
    return {
        "rows": len(results),
        "outcomes": {o: outcomes.get(o, 0) for o in ("updated", "failed", "invalid")}
        | {k: v for k, v in outcomes.items() if k not in ("updated", "failed", "invalid")},
        "status_codes": dict(sorted(codes.items())),
        "already_applied": applied,
        "not_sent": not_sent,
        "accounts": {k: dict(v) for k, v in sorted(accounts.items())},
    }


_results = st.builds(
    RowResult,
    index=st.integers(0, 10),
    outcome=st.sampled_from(list(Outcome)),
    integrated_account_id=st.none() | st.sampled_from(["", "acc-1", "acc-2", "(other)"]),
    status_code=st.none() | st.sampled_from([200, 204, 401, 429, 500]),
    not_sent=st.booleans(),
    already_applied=st.booleans(),
)


@settings(max_examples=150)
@given(results=st.lists(_results, max_size=30), crowd=st.sampled_from([0, 999, 1000]))
def test_summary_counts_every_row_by_the_one_rule(results: list[RowResult], crowd: int) -> None:
    """Outcomes, final status codes (only for sent rows not applied earlier), accounts (at most
    1000, then ``(other)``), ``already_applied`` and ``not_sent``, whatever the mix."""
    rows = [RowResult(i, Outcome.UPDATED, str(i), f"crowd-{i}", 200) for i in range(crowd)]
    rows += results
    builder = SummaryBuilder()
    for row in rows:
        builder.record(row)
    summary = builder.build(duration=1.0, rejected={})
    assert {k: summary[k] for k in _reference_counts(rows)} == _reference_counts(rows)


def test_latency_percentiles() -> None:
    hist = LatencyHistogram()
    assert hist.percentile(50) is None
    for ms in range(1, 101):
        hist.add(ms / 1000)
    p50, p99 = hist.percentile(50), hist.percentile(99)
    assert p50 is not None and p99 is not None
    assert 49 <= p50 <= 51.5
    assert 98 <= p99 <= 101


def test_progress_every_n_rows_or_seconds(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    log = logging.getLogger("test.progress")
    progress = ProgressReporter(log, every_rows=100, every_seconds=10, total=1000, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        clock.now = 1.0
        assert progress.maybe_report(50, {"updated": 50}) is None
        line = progress.maybe_report(100, {"updated": 100})
        assert line is not None
        assert "100/1,000 rows (10.0%)" in line and "100.0 rows/s" in line and "ETA 9.0 s" in line
        clock.now = 5.0
        assert progress.maybe_report(150, {"updated": 150}) is None
        clock.now = 11.5
        assert progress.maybe_report(151, {"updated": 151}) is not None  # 10 s passed
    assert progress.lines == 2
    assert len([r for r in caplog.records if "Bulk progress" in r.getMessage()]) == 2
    unknown = ProgressReporter(log, every_rows=1, total=None, clock=clock)
    assert "total unknown" in (unknown.maybe_report(1, {}) or "")
