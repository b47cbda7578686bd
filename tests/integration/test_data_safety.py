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
    # a new task: the account lookup and the read of the current state, and no write
    assert [(r.method, r.path.split("/")[1]) for r in emu.requests(since=since)] == [
        ("GET", "integrated-account"),
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


def test_dry_run_without_diff_lists_the_fields_it_would_send(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "hubspot")
    plan, _ = run_single(monkeypatch, "opp-hubspot-0001", {"amount": 1}, dry_run="True")
    assert plan["compared"] is False
    assert plan["changes"] == {"amount": {"new": 1}}
    assert [r.method for r in emu.requests()] == ["GET"]  # the account lookup only


def test_dry_run_fails_where_the_real_run_would(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_account(monkeypatch, emu, "pipedrive")
    with pytest.raises(TrutoInputError, match="'description'"):
        run_single(monkeypatch, "opp-pipedrive-0001", {"description": "x"}, dry_run=True)
    assert patches(emu) == []
