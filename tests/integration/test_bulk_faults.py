"""UpdateOpportunitiesOperator against the emulator under faults: 5xx, 429 bursts, drops.

The emulator's end state must equal the expected state for every row, the outcome counts must
add up to the input, and no row may be applied twice (``apply_count``), including across a task
retry that resumes from the success ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException

from tests.unit.bulk.test_ledger_outcomes import FakeTaskStateStore
from tests.unit.operators.test_bulk import FakeTI, context
from truto_airflow.operators.bulk import SUMMARY_XCOM_KEY, UpdateOpportunitiesOperator
from truto_airflow.retry import RetryPolicy

pytestmark = pytest.mark.integration

ACCOUNTS = ("hubspot", "pipedrive")


def build_rows(
    emu: Any, per_account: int
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], int]]:
    """Rows interleaved across accounts, each with a unique amount; and the expected state."""
    columns = []
    for key in ACCOUNTS:
        account = emu.accounts[key]
        ids = emu.opportunity_ids(account)[:per_account]
        assert len(ids) == per_account
        columns.append([(account, i) for i in ids])
    rows, expected = [], {}
    for n, (account, opp) in enumerate(
        pair for group in zip(*columns, strict=True) for pair in group
    ):
        amount = 10_000 + n
        rows.append({"id": opp, "body": {"amount": amount}, "integrated_account_id": account})
        expected[(account, opp)] = amount
    return rows, expected


def assert_end_state(emu: Any, expected: dict[tuple[str, str], int]) -> None:
    wrong, twice = [], []
    for (account, opp), amount in expected.items():
        if emu.opportunity(account, opp)["amount"] != amount:
            wrong.append(opp)
        if emu.apply_count(account, opp) != 1:
            twice.append((opp, emu.apply_count(account, opp)))
    assert wrong == []
    assert twice == []


def bulk(**kwargs: Any) -> UpdateOpportunitiesOperator:
    return UpdateOpportunitiesOperator(
        task_id="write",
        max_concurrency=32,
        progress_every_seconds=None,
        hook_params={
            "retry_policy": RetryPolicy(max_retries=6, backoff_base=0.02, max_wait=15.0),
            "timeout": 10.0,
        },
        **kwargs,
    )


def exhaust_window(emu: Any, account: str, opp: str) -> int:
    """Another client spends the account's whole window (a 429 burst for everyone else)."""
    import httpx2

    headers = {"Authorization": f"Bearer {emu.token}"}
    url = f"{emu.base_url}/unified/crm/opportunities/{opp}"
    with httpx2.Client(headers=headers, timeout=10) as client:
        for n in range(1, 2000):
            try:
                response = client.get(url, params={"integrated_account_id": account})
            except httpx2.TransportError:
                continue  # the emulator drops some connections on purpose
            if response.status_code == 429:
                return n
    raise AssertionError("the rate limit never answered 429")


def test_faults_5xx_429_bursts_and_drops(truto_emulator_factory: Any) -> None:
    emu = truto_emulator_factory(
        seed=7,
        opportunities=1000 * 6,
        latency_ms=5,
        fault_rate=0.05,
        drop_rate=0.03,
        rate_limit=700,
    )
    rows, expected = build_rows(emu, 1000)
    hubspot = emu.accounts["hubspot"]

    def rows_with_a_noisy_neighbour() -> Iterator[dict[str, Any]]:
        # Half-way through the input, another client of the same account spends its budget:
        # our next requests meet 429s they could not foresee (a burst), then the pacer waits
        # out the window. Triggered by row count, not by a timer, so the burst always lands.
        for n, row in enumerate(rows):
            if n == len(rows) // 2:
                exhaust_window(emu, hubspot, "opp-hubspot-0001")
            yield row

    ti = FakeTI()
    operator = bulk(updates=rows_with_a_noisy_neighbour())
    summary = operator.execute(context(ti, FakeTaskStateStore()))  # type: ignore[arg-type]
    assert summary["rows"] == len(rows) == 2000
    assert sum(summary["outcomes"].values()) == 2000
    assert summary["outcomes"]["updated"] == 2000
    responses = summary["responses"]
    assert sum(int(responses.get(code, 0)) for code in ("500", "502", "504")) > 40
    assert int(responses.get("429", 0)) > 0
    assert summary["network_errors"] > 10
    assert summary["retries"] >= summary["requests_sent"] - 2000
    assert ti.xcom[SUMMARY_XCOM_KEY] == summary
    assert_end_state(emu, expected)


def test_task_retry_resumes_without_reapplying(truto_emulator_factory: Any) -> None:
    emu = truto_emulator_factory(
        seed=3, opportunities=600 * 6, latency_ms=2, fault_rate=0.2, drop_rate=0.05
    )
    rows, expected = build_rows(emu, 600)
    store = FakeTaskStateStore()
    first = UpdateOpportunitiesOperator(
        task_id="write",
        updates=rows,
        progress_every_seconds=None,
        hook_params={"retry_policy": RetryPolicy(max_retries=0)},
    )
    ti1 = FakeTI(try_number=1)
    with pytest.raises(AirflowException, match="transient"):
        first.execute(context(ti1, store))  # type: ignore[arg-type]
    failed = ti1.xcom[SUMMARY_XCOM_KEY]["outcomes"]["failed"]
    assert 50 < failed < 600
    emu.configure(fault_rate=0.0, drop_rate=0.0)
    before = len(emu.requests(method="PATCH"))
    ti2 = FakeTI(try_number=2)
    summary = bulk(updates=rows).execute(context(ti2, store))  # type: ignore[arg-type]
    sent = len(emu.requests(method="PATCH")) - before
    assert summary["outcomes"]["updated"] == 1200
    assert summary["already_applied"] == 1200 - failed
    assert sent == failed == summary["requests_sent"]
    assert_end_state(emu, expected)


def test_dead_account_and_invalid_rows_are_isolated(truto_emulator_factory: Any) -> None:
    emu = truto_emulator_factory(seed=5, opportunities=200 * 6, latency_ms=2)
    rows, expected = build_rows(emu, 200)
    dead = emu.accounts["needs_reauth"]
    rows += [
        {"id": f"opp-x-{i}", "body": {"amount": 1}, "integrated_account_id": dead}
        for i in range(50)
    ]
    rows += [{"id": "opp-bad", "body": {"amount": "lots"}}, {"id": "", "body": {"amount": 1}}]
    ti = FakeTI()
    with pytest.raises(AirflowException):
        bulk(updates=rows).execute(context(ti))  # type: ignore[arg-type]
    summary = ti.xcom[SUMMARY_XCOM_KEY]
    assert summary["outcomes"] == {"updated": 400, "failed": 50, "invalid": 2}
    assert summary["accounts"][dead] == {"failed": 50}
    assert len(emu.requests(method="PATCH", account_id=dead)) == 1
    assert_end_state(emu, expected)


def test_example_bulk_dags_end_to_end(emulator: Any, example_dags: Any) -> None:
    from tests.integration.conftest import task_states, xcoms

    hubspot = emulator.accounts["hubspot"]
    warehouse = example_dags.get_dag("example_truto_bulk_warehouse")
    run = warehouse.test()
    states = task_states(run)
    assert {state for state, _ in states.values()} == {"success"}
    summary = xcoms(run)[("write_back", -1, "return_value")]
    assert summary["outcomes"] == {"updated": 40, "failed": 0, "invalid": 0}
    assert summary["ledger"]["store"] == "Airflow task_state_store"  # Airflow 3.3 task SDK
    assert emulator.opportunity(hubspot, "opp-hubspot-0007")["amount"] == 1000 + 25 * 7

    chunked = example_dags.get_dag("example_truto_bulk_chunked")
    run = chunked.test()
    states = task_states(run)
    chunks = sorted(i for (task, i) in states if task == "write_chunk")
    assert chunks == [0, 1, 2]  # 45 rows in chunks of 20
    assert all(state == "success" for state, _ in states.values())
    values = xcoms(run)
    assert sum(values[("write_chunk", i, "return_value")]["rows"] for i in chunks) == 45
    assert emulator.opportunity(hubspot, "opp-hubspot-0045")["amount"] == 545
    assert all(emulator.apply_count(hubspot, f"opp-hubspot-{n:04d}") == 2 for n in (1, 40))


def test_same_opportunity_repeated_is_applied_in_order_and_the_last_row_wins(
    truto_emulator_factory: Any,
) -> None:
    """Rows A, B, A of one opportunity (among others, under drops and 5xx): the CRM ends at A,
    every row was applied once, in order, each under its own Idempotency-Key."""
    emu = truto_emulator_factory(seed=11, opportunities=60 * 6, fault_rate=0.1, drop_rate=0.05)
    hubspot = emu.accounts["hubspot"]
    ids = emu.opportunity_ids(hubspot)[:20]
    target = ids[0]
    rows: list[dict[str, Any]] = []
    for n, opp in enumerate(ids[1:]):
        rows.append({"id": opp, "body": {"amount": 500 + n}, "integrated_account_id": hubspot})
        if n in (3, 9, 15):  # A, B, A spread through the input
            amount = 111 if n != 9 else 222
            rows.append(
                {"id": target, "body": {"amount": amount}, "integrated_account_id": hubspot}
            )
    summary = bulk(updates=rows).execute(context(FakeTI(), FakeTaskStateStore()))  # type: ignore[arg-type]
    assert summary["outcomes"]["updated"] == len(rows)
    assert emu.opportunity(hubspot, target)["amount"] == 111
    assert emu.apply_count(hubspot, target) == 3
    applied = [
        r for r in emu.requests(method="PATCH", opportunity_id=target) if r.applied and not r.replay
    ]
    assert [r.body["amount"] for r in applied] == [111, 222, 111]
    assert len({r.headers["idempotency-key"] for r in applied}) == 3
