"""The same opportunity several times in one input: applied in input order, the last row wins.

Each row is its own write with its own Idempotency-Key (the row's ordinal is part of it), stable
across task retries; when one row of an opportunity fails, later rows of it are held back, so a
task retry applies the rest in order instead of letting an earlier row win.
"""

from __future__ import annotations

import collections
import json
import threading
from typing import Any

import httpx2
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.bulk.conftest import make_engine, opp_id, run
from truto_airflow.bulk.ledger import MemoryLedgerStore, SuccessLedger
from truto_airflow.bulk.rows import RawRow


class FakeCrm:
    """A MockTransport handler with Truto's idempotency semantics (replay on a reused key)."""

    def __init__(self, fail: set[tuple[str, int]] | None = None) -> None:
        self.state: dict[str, dict[str, Any]] = {}
        self.cache: dict[tuple[str, str], httpx2.Response] = {}
        self.applied: list[tuple[str, int]] = []
        self.keys: list[str] = []
        self.fail = fail or set()
        self.lock = threading.Lock()

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        oid = opp_id(request)
        key = request.headers["idempotency-key"]
        body = json.loads(request.content)
        with self.lock:
            self.keys.append(key)
            if (oid, body["amount"]) in self.fail:
                return httpx2.Response(500, json={"statusCode": 500, "message": "down"})
            cached = self.cache.get((oid, key))
            if cached is not None:
                return cached
            self.state.setdefault(oid, {}).update(body)
            self.applied.append((oid, body["amount"]))
            response = httpx2.Response(200, json={"id": oid, **self.state[oid]})
            self.cache[(oid, key)] = response
            return response


def test_rows_a_b_a_end_at_a_and_each_row_gets_its_own_key() -> None:
    crm = FakeCrm()
    rows = [
        {"id": "opp-1", "body": {"amount": 1}},
        {"id": "opp-1", "body": {"amount": 2}},
        {"id": "opp-1", "body": {"amount": 1}},
    ]
    summary = run(make_engine(crm), rows)
    assert summary["outcomes"]["updated"] == 3
    assert crm.applied == [("opp-1", 1), ("opp-1", 2), ("opp-1", 1)]
    assert crm.state["opp-1"]["amount"] == 1
    assert len(set(crm.keys)) == 3


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(min_value=0, max_value=3)),
        min_size=1,
        max_size=25,
    )
)
def test_last_row_wins_for_any_sequence_of_repeats(pairs: list[tuple[str, int]]) -> None:
    crm = FakeCrm()
    rows = [{"id": oid, "body": {"amount": amount}} for oid, amount in pairs]
    summary = run(make_engine(crm), rows)
    assert summary["outcomes"]["updated"] == len(rows)
    expected: dict[str, int] = {}
    for oid, amount in pairs:
        expected[oid] = amount
    assert {oid: s["amount"] for oid, s in crm.state.items()} == expected
    per_opp: dict[str, list[int]] = collections.defaultdict(list)
    for oid, amount in crm.applied:
        per_opp[oid].append(amount)
    for oid in expected:
        assert per_opp[oid] == [a for o, a in pairs if o == oid]  # every row, in input order


def test_keys_are_stable_across_task_retries() -> None:
    rows = [{"id": "opp-1", "body": {"amount": n % 2}} for n in range(4)]
    first, second = FakeCrm(), FakeCrm()
    run(make_engine(first), rows)
    run(make_engine(second), rows)
    assert first.keys == second.keys


def test_a_failed_row_holds_back_later_rows_of_the_same_opportunity_until_the_retry() -> None:
    store = MemoryLedgerStore()
    rows = [
        {"id": "opp-1", "body": {"amount": 1}},
        {"id": "opp-1", "body": {"amount": 2}},  # fails in the first try
        {"id": "opp-1", "body": {"amount": 3}},
        {"id": "opp-2", "body": {"amount": 9}},
    ]
    crm = FakeCrm(fail={("opp-1", 2)})
    summary = run(make_engine(crm, ledger=SuccessLedger(store), max_retries=0), rows)
    assert summary["outcomes"] == {"updated": 2, "failed": 2, "invalid": 0}
    held = {r["row"]: r for r in summary["rejected"]["rows"]}[2]
    assert held["not_sent"] is True and held["status_code"] == 500
    assert "row 1" in held["message"]
    assert crm.applied == [("opp-1", 1), ("opp-2", 9)]
    # The retry: row 0 and row 3 were applied (skipped by the ledger), rows 1 and 2 go in order.
    crm.fail.clear()
    ledger = SuccessLedger(store)
    ledger.load()
    summary = run(make_engine(crm, ledger=ledger), rows)
    assert summary["outcomes"]["updated"] == 4
    assert summary["already_applied"] == 2
    assert crm.applied[2:] == [("opp-1", 2), ("opp-1", 3)]
    assert crm.state["opp-1"]["amount"] == 3


def test_ledger_resume_with_repeats_applies_the_rows_not_yet_applied() -> None:
    store = MemoryLedgerStore()
    rows = [
        {"id": "opp-1", "body": {"amount": 1}},
        {"id": "opp-1", "body": {"amount": 2}},
        {"id": "opp-1", "body": {"amount": 1}},  # same body as row 0: not "already applied"
    ]
    crm = FakeCrm(fail={("opp-1", 2)})
    run(make_engine(crm, ledger=SuccessLedger(store), max_retries=0), rows)
    crm.fail.clear()
    ledger = SuccessLedger(store)
    ledger.load()
    summary = run(make_engine(crm, ledger=ledger), rows)
    assert summary["already_applied"] == 1
    assert crm.state["opp-1"]["amount"] == 1
    assert crm.applied == [("opp-1", 1), ("opp-1", 2), ("opp-1", 1)]


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(min_value=0, max_value=50)),
        min_size=1,
        max_size=15,
        unique_by=lambda pair: pair[1],  # amounts name rows
    ),
    st.data(),
)
def test_after_any_failures_a_retry_converges_to_the_last_row(
    pairs: list[tuple[str, int]], data: st.DataObject
) -> None:
    failing = data.draw(st.sets(st.sampled_from(pairs)))
    store = MemoryLedgerStore()
    rows = [{"id": oid, "body": {"amount": amount}} for oid, amount in pairs]
    crm = FakeCrm(fail=set(failing))
    run(make_engine(crm, ledger=SuccessLedger(store), max_retries=0), rows)
    for oid in {"a", "b"}:  # the first try left a prefix of each opportunity's rows applied
        wanted = [a for o, a in pairs if o == oid]
        applied = [a for o, a in crm.applied if o == oid]
        assert applied == wanted[: len(applied)]
    crm.fail.clear()
    ledger = SuccessLedger(store)
    ledger.load()
    summary = run(make_engine(crm, ledger=ledger), rows)
    assert summary["outcomes"]["updated"] == len(rows)
    expected = {oid: amount for oid, amount in pairs}
    assert {oid: s["amount"] for oid, s in crm.state.items()} == expected


def test_a_spilled_row_keeps_its_ledger_identity() -> None:
    import dataclasses

    from truto_airflow.bulk import RowItem

    engine = make_engine(FakeCrm())
    item = engine.preparer.prepare(RawRow(3, {"id": "opp-1", "body": {"amount": 1}}))
    assert isinstance(item, RowItem)
    smaller = dataclasses.replace(
        item, request=dataclasses.replace(item.request, idempotency_key="wire-key")
    )
    back = RowItem.from_record(json.loads(json.dumps(smaller.to_record())))
    assert back.key == item.key != "wire-key"
    assert back.request.idempotency_key == "wire-key"
