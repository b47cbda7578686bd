"""Data safety against the emulator: preflight, skip-unchanged and dry run write nothing they
should not. The emulator's request log is the witness: "no PATCH" means no write was sent."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG

from truto_airflow.emulator import EmulatorHandle, run_emulator
from truto_airflow.exceptions import TrutoInputError
from truto_airflow.operators.opportunities import UpdateOpportunityOperator
from truto_airflow.retry import RetryPolicy

pytestmark = pytest.mark.integration

START = pendulum.datetime(2026, 1, 1, tz="UTC")


@pytest.fixture(scope="module")
def _server() -> Iterator[EmulatorHandle]:
    with run_emulator() as emu:
        yield emu


@pytest.fixture
def emu(_server: EmulatorHandle) -> EmulatorHandle:
    _server.reset()
    return _server


def use_account(monkeypatch: pytest.MonkeyPatch, emu: EmulatorHandle, key: str) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_TRUTO_DEFAULT", emu.airflow_conn_json(key))
    return emu.account_id(key)


def patches(emu: EmulatorHandle) -> list[Any]:
    return emu.requests(method="PATCH")


@dataclass
class FakeTI:
    dag_id: str = "data_safety"
    task_id: str = "update"
    run_id: str = "manual__2026-01-01"
    map_index: int = -1
    try_number: int = 1
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


class SpyLog:
    """Collects what the operator logs (the task logger is structlog-backed)."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str]] = []

    def _add(self, level: int, msg: str, *args: Any) -> None:
        self.records.append((level, msg % args if args else msg))

    def info(self, msg: str, *args: Any, **_: Any) -> None:
        self._add(logging.INFO, msg, *args)

    def warning(self, msg: str, *args: Any, **_: Any) -> None:
        self._add(logging.WARNING, msg, *args)

    def debug(self, msg: str, *args: Any, **_: Any) -> None:
        self._add(logging.DEBUG, msg, *args)

    def error(self, msg: str, *args: Any, **_: Any) -> None:
        self._add(logging.ERROR, msg, *args)

    def exception(self, msg: str, *args: Any, **_: Any) -> None:
        self._add(logging.ERROR, msg, *args)

    @property
    def warnings(self) -> list[str]:
        return [m for level, m in self.records if level == logging.WARNING]

    @property
    def infos(self) -> list[str]:
        return [m for level, m in self.records if level == logging.INFO]


def run_single(
    monkeypatch: pytest.MonkeyPatch, opportunity_id: str, body: Any, **kwargs: Any
) -> tuple[Any, SpyLog]:
    with DAG("data_safety", schedule=None, start_date=START):
        op = UpdateOpportunityOperator(
            task_id="update",
            opportunity_id=opportunity_id,
            body=body,
            hook_params={"retry_policy": RetryPolicy(max_retries=0)},
            **kwargs,
        )
    spy = SpyLog()
    monkeypatch.setattr(UpdateOpportunityOperator, "log", spy, raising=False)
    ti = FakeTI()
    ctx: dict[str, Any] = {"ti": ti, "task_instance": ti, "run_id": ti.run_id}
    op.render_template_fields(ctx)
    return op.execute(ctx), spy  # type: ignore[arg-type]


# -- single operator: preflight ------------------------------------------------------------------


def test_write_that_would_lose_a_field_fails_before_sending(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "pipedrive")
    with pytest.raises(TrutoInputError) as info:
        run_single(
            monkeypatch, "opp-pipedrive-0001", {"amount": 5000, "description": "Q3 enrichment"}
        )
    message = str(info.value)
    assert "Pipedrive does not apply field 'description'" in message
    assert "remote_data" in message and "unsupported_fields='warn'" in message
    assert patches(emu) == []
    assert emu.opportunity("pipedrive", "opp-pipedrive-0001")["amount"] != 5000


def test_warn_policy_writes_and_says_what_was_dropped(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "pipedrive")
    _, log = run_single(
        monkeypatch,
        "opp-pipedrive-0001",
        {"amount": 5000, "description": "Q3 enrichment"},
        unsupported_fields="warn",
    )
    assert len(patches(emu)) == 1
    assert any("'description'" in w for w in log.warnings)
    assert emu.opportunity("pipedrive", "opp-pipedrive-0001")["amount"] == 5000


def test_teamleader_missing_required_fails_before_sending(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "teamleader")
    with pytest.raises(TrutoInputError, match="Teamleader requires field 'account'"):
        run_single(
            monkeypatch, "opp-teamleader-0001", {"name": "Renamed"}, unsupported_fields="ignore"
        )
    assert patches(emu) == []


def test_pipedrive_bad_status_fails_before_sending(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "pipedrive")
    with pytest.raises(TrutoInputError, match="does not accept status 'closed_won'"):
        run_single(monkeypatch, "opp-pipedrive-0001", {"status": "closed_won"})
    assert patches(emu) == []


def test_salesforce_gets_no_preflight_and_one_warning(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "salesforce")
    _, log = run_single(
        monkeypatch, "opp-salesforce-0001", {"description": "any field", "close_time": "10:00"}
    )
    assert len(patches(emu)) == 1
    skipped = [w for w in log.warnings if "Preflight skipped" in w]
    assert len(skipped) == 1 and "Salesforce" in skipped[0]
    assert emu.opportunity("salesforce", "opp-salesforce-0001")["description"] == "any field"


def test_explicit_integration_needs_no_account_lookup(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "hubspot")
    run_single(monkeypatch, "opp-hubspot-0001", {"amount": 1}, integration="HubSpot")
    assert emu.requests(path="/integrated-account") == []
    assert [r.method for r in emu.requests()] == ["PATCH"]


# -- single operator: skip unchanged -------------------------------------------------------------

ENRICHMENT = {
    "amount": "250000.00",
    "close_date": "2026-03-31T18:00:00-04:00",
    "owner": {"id": "user-pipedrive-2"},
    "stage": {"name": "Contract sent"},
    "custom_fields": {"lead_source": "partner", "score": 87},
}


def test_rerun_of_the_same_enrichment_sends_zero_writes(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "pipedrive")
    first, _ = run_single(monkeypatch, "opp-pipedrive-0002", ENRICHMENT, skip_unchanged=True)
    assert first["id"] == "opp-pipedrive-0002"
    assert len(patches(emu)) == 1
    since = emu.requests()[-1].seq
    # The emulator stores what was sent; the second run compares by meaning (offsets, numbers,
    # stage by name, custom field keys) and finds nothing to do.
    second, log = run_single(monkeypatch, "opp-pipedrive-0002", ENRICHMENT, skip_unchanged=True)
    assert second["outcome"] == "unchanged"
    assert set(second["unchanged"]) == set(ENRICHMENT)
    # a new task on the same worker: the read of the current state and no write (the account's
    # integration is remembered from the first task: preflight.INTEGRATIONS)
    assert [(r.method, r.path.split("/")[1]) for r in emu.requests(since=since)] == [
        ("GET", "unified"),
    ]
    assert len(patches(emu)) == 1
    assert any("unchanged" in m for m in log.infos)


def test_only_changed_fields_are_sent(emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    use_account(monkeypatch, emu, "pipedrive")
    current = emu.opportunity("pipedrive", "opp-pipedrive-0001")
    body = {
        "name": current["name"],
        "amount": f"{current['amount']:.2f}",
        "currency": "JPY" if current["currency"] != "JPY" else "EUR",
    }
    run_single(monkeypatch, "opp-pipedrive-0001", body, skip_unchanged=True)
    (patch,) = patches(emu)
    assert set(patch.body) == {"currency"}


def test_teamleader_required_fields_ride_along_with_a_change(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "teamleader")
    current = emu.opportunity("teamleader", "opp-teamleader-0001")
    body = {
        "name": "Renamed deal",
        "account": current["account"],
        "contact": current["contact"],
    }
    run_single(monkeypatch, "opp-teamleader-0001", body, skip_unchanged=True)
    (patch,) = patches(emu)
    assert set(patch.body) == {"name", "account", "contact"}
    assert patch.status == 200


# -- single operator: dry run --------------------------------------------------------------------


def test_dry_run_sends_no_write_and_returns_the_plan(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "pipedrive")
    before = emu.opportunity("pipedrive", "opp-pipedrive-0003")
    plan, log = run_single(
        monkeypatch,
        "opp-pipedrive-0003",
        {"amount": 777, "name": before["name"]},
        skip_unchanged=True,
        dry_run=True,
    )
    assert patches(emu) == []
    assert plan["dry_run"] is True and plan["outcome"] == "would_update"
    assert plan["changes"] == {"amount": {"old": before["amount"], "new": 777}}
    assert plan["unchanged"] == ["name"]
    assert plan["body"] == {"amount": 777}
    assert any("amount" in m and "-> 777" in m for m in log.infos)
    assert emu.opportunity("pipedrive", "opp-pipedrive-0003") == before


def test_dry_run_without_skip_unchanged_still_shows_old_and_new(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "hubspot")
    before = emu.opportunity("hubspot", "opp-hubspot-0001")
    plan, log = run_single(
        monkeypatch, "opp-hubspot-0001", {"amount": 1, "name": before["name"]}, dry_run="True"
    )
    assert plan["compared"] is True and plan["outcome"] == "would_update"
    assert plan["changes"] == {"amount": {"old": before["amount"], "new": 1}}
    assert plan["unchanged"] == ["name"]
    # without skip_unchanged the real run sends the whole body, unchanged fields included
    assert plan["body"] == {"amount": 1, "name": before["name"]}
    assert [r.method for r in emu.requests()] == ["GET", "GET"]  # account lookup, current state
    assert any(f"amount: {before['amount']!r} -> 1" in m for m in log.infos)


def test_dry_run_fails_where_the_real_run_would(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "pipedrive")
    with pytest.raises(TrutoInputError, match="'description'"):
        run_single(monkeypatch, "opp-pipedrive-0001", {"description": "x"}, dry_run=True)
    assert patches(emu) == []


# -- bulk operator -------------------------------------------------------------------------------


def run_bulk(
    monkeypatch: pytest.MonkeyPatch, updates: Any, **kwargs: Any
) -> tuple[dict[str, Any], SpyLog]:
    from truto_airflow.operators.bulk import UpdateOpportunitiesOperator

    op = UpdateOpportunitiesOperator(
        task_id="bulk",
        updates=updates,
        max_concurrency=8,
        progress_every_seconds=None,
        http_transport="httpx",
        hook_params={"retry_policy": RetryPolicy(max_retries=0)},
        **kwargs,
    )
    spy = SpyLog()
    monkeypatch.setattr(UpdateOpportunitiesOperator, "log", spy, raising=False)
    ti = FakeTI(task_id="bulk")
    ctx: dict[str, Any] = {"ti": ti, "task_instance": ti, "run_id": ti.run_id}
    summary: dict[str, Any] = op.execute(ctx)  # type: ignore[arg-type]
    return summary, spy


def mixed_rows(emu: EmulatorHandle) -> list[dict[str, Any]]:
    """Pipedrive: 3 good, 1 that would lose 'description', 1 bad status; Teamleader: 1 missing
    required fields; Salesforce: 2 rows (no preflight)."""
    pd, tl, sf = (emu.account_id(k) for k in ("pipedrive", "teamleader", "salesforce"))
    return [
        {"id": "opp-pipedrive-0001", "integrated_account_id": pd, "body": {"amount": 101}},
        {"id": "opp-pipedrive-0002", "integrated_account_id": pd, "body": {"amount": 102}},
        {"id": "opp-pipedrive-0003", "integrated_account_id": pd, "body": {"currency": "CHF"}},
        {
            "id": "opp-pipedrive-0004",
            "integrated_account_id": pd,
            "body": {"amount": 104, "description": "would be lost"},
        },
        {"id": "opp-pipedrive-0005", "integrated_account_id": pd, "body": {"status": "Won"}},
        {"id": "opp-teamleader-0001", "integrated_account_id": tl, "body": {"name": "x"}},
        {"id": "opp-salesforce-0001", "integrated_account_id": sf, "body": {"close_time": "09:00"}},
        {"id": "opp-salesforce-0002", "integrated_account_id": sf, "body": {"amount": 5}},
    ]


def test_bulk_preflight_failures_become_invalid_rows_others_proceed(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "pipedrive")
    summary, log = run_bulk(monkeypatch, mixed_rows(emu), max_failed=3)
    assert summary["outcomes"] == {"updated": 5, "failed": 0, "invalid": 3}
    reasons = {r["id"]: r["message"] for r in summary["rejected"]["rows"]}
    assert "'description'" in reasons["opp-pipedrive-0004"]
    assert "status 'Won'" in reasons["opp-pipedrive-0005"]
    assert "Teamleader requires field 'account'" in reasons["opp-teamleader-0001"]
    sent = {r.opportunity_id for r in patches(emu)}
    assert sent == {
        "opp-pipedrive-0001",
        "opp-pipedrive-0002",
        "opp-pipedrive-0003",
        "opp-salesforce-0001",
        "opp-salesforce-0002",
    }
    # one lookup per account, and one "no preflight" warning for Salesforce for the whole task
    assert len(emu.requests(path="/integrated-account")) <= 3
    assert len([w for w in log.warnings if "Preflight skipped" in w]) == 1
    assert summary["data_safety"]["preflight_invalid_rows"] == 3


def test_bulk_rerun_sends_zero_writes_and_counts_unchanged(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "pipedrive")
    rows = [
        {
            "id": f"opp-pipedrive-{n:04d}",
            "body": {"amount": 1000 + n, "stage": {"id": "stage-pipedrive-2"}},
        }
        for n in range(1, 6)
    ]
    first, _ = run_bulk(monkeypatch, rows, skip_unchanged=True)
    assert first["outcomes"]["updated"] == 5
    assert len(patches(emu)) == 5
    # a new row joins the same enrichment: only that row is written
    rows.append({"id": "opp-pipedrive-0006", "body": {"amount": 1006.0}})
    second, _ = run_bulk(monkeypatch, rows, skip_unchanged=True)
    assert second["outcomes"] == {"updated": 1, "failed": 0, "invalid": 0, "unchanged": 5}
    assert len(patches(emu)) == 6
    assert patches(emu)[-1].body == {"amount": 1006.0}
    third, _ = run_bulk(monkeypatch, rows, skip_unchanged=True)
    assert third["outcomes"].get("unchanged") == 6 and third["requests_sent"] == 0
    assert len(patches(emu)) == 6
    assert third["data_safety"]["current_state"]["get_calls"] == 6


def test_bulk_reads_current_state_with_the_list_for_many_rows(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "pipedrive")
    ids = emu.opportunity_ids("pipedrive")
    rows = [{"id": oid, "body": {"name": emu.opportunity("pipedrive", oid)["name"]}} for oid in ids]
    assert len(rows) >= 20
    since = emu.requests()[-1].seq if emu.requests() else 0
    summary, _ = run_bulk(monkeypatch, rows, skip_unchanged=True)
    assert summary["outcomes"].get("unchanged") == len(rows)
    assert patches(emu) == []
    state = summary["data_safety"]["current_state"]
    assert state["get_calls"] == 0 and 1 <= state["list_pages"] < len(rows)
    reads = [r for r in emu.requests(since=since) if r.path.startswith("/unified")]
    assert len(reads) == state["list_pages"]
    assert all(r.query.get("truto_key_by") == "id" for r in reads)


def test_bulk_dry_run_sends_no_writes_and_returns_the_plan(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    use_account(monkeypatch, emu, "pipedrive")
    before = emu.opportunity("pipedrive", "opp-pipedrive-0001")
    rows = [
        {"id": "opp-pipedrive-0001", "body": {"amount": 9999, "name": before["name"]}},
        {
            "id": "opp-pipedrive-0002",
            "body": {"name": emu.opportunity("pipedrive", "opp-pipedrive-0002")["name"]},
        },
        {"id": "opp-pipedrive-0003", "body": {"description": "lost"}},
    ]
    plan_file = tmp_path / "plan.jsonl"
    summary, log = run_bulk(
        monkeypatch,
        rows,
        skip_unchanged=True,
        dry_run=True,
        plan_path=str(plan_file),
        max_failed=1,
    )
    assert patches(emu) == []
    assert summary["outcomes"] == {
        "updated": 0,
        "failed": 0,
        "invalid": 1,
        "unchanged": 1,
        "would_update": 1,
    }
    plan = summary["data_safety"]["plan"]
    by_id = {row["id"]: row for row in plan["rows"]}
    assert by_id["opp-pipedrive-0001"]["changes"] == {
        "amount": {"old": before["amount"], "new": 9999}
    }
    assert by_id["opp-pipedrive-0002"]["outcome"] == "unchanged"
    assert by_id["opp-pipedrive-0003"]["outcome"] == "invalid"
    assert plan["location"] == str(plan_file)
    assert len(plan_file.read_text().splitlines()) == 3
    assert any("Dry run: no write was sent" in m for m in log.infos)
    assert emu.opportunity("pipedrive", "opp-pipedrive-0001") == before


# -- the plan -> approve -> apply example DAG ---------------------------------------------------


def test_plan_apply_example_dag(emulator: EmulatorHandle, example_dags: Any) -> None:
    from tests.integration.conftest import task_states, xcoms

    dag = example_dags.get_dag("example_truto_plan_apply")
    before = emulator.opportunity("hubspot", "opp-hubspot-0001")

    unapproved = dag.test(run_conf={"approve": False})
    states = task_states(unapproved)
    assert states[("plan", -1)][0] == "success"
    assert states[("apply", -1)][0] == "skipped"
    assert emulator.requests(method="PATCH") == []
    summary = xcoms(unapproved)[("plan", -1, "return_value")]
    assert summary["outcomes"]["would_update"] == 3
    planned = {row["id"]: row for row in summary["data_safety"]["plan"]["rows"]}
    assert planned["opp-hubspot-0001"]["changes"]["amount"] == {
        "old": before["amount"],
        "new": 125_000,
    }

    approved = dag.test(run_conf={"approve": True})
    assert task_states(approved)[("apply", -1)][0] == "success"
    assert {r.opportunity_id for r in emulator.requests(method="PATCH")} == {
        "opp-hubspot-0001",
        "opp-hubspot-0002",
        "opp-hubspot-0003",
    }
    assert emulator.opportunity("hubspot", "opp-hubspot-0001")["amount"] == 125_000

    # Everything is applied now: the plan finds nothing to write and the gate stops the run.
    again = dag.test(run_conf={"approve": True})
    assert xcoms(again)[("plan", -1, "return_value")]["outcomes"]["unchanged"] == 3
    assert task_states(again)[("apply", -1)][0] == "skipped"
    assert len(emulator.requests(method="PATCH")) == 3
