"""skip_unchanged and dry_run on both operators, against a CRM whose reads leave fields out.

Truto's list endpoint (and some CRMs' GET) may return a subset of the fields; a field the read
did not return must never be judged "already holds this value". A dry run must show old -> new
and list every input row, including rows refused by validation. The fake CRM here is a small
MockTransport with state, so "no PATCH" is the witness that nothing was written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx2
import pendulum
import pytest
from airflow.sdk import DAG

from tests.conftest import ACCOUNT_ID
from truto_airflow.exceptions import TrutoInputError
from truto_airflow.operators.bulk import UpdateOpportunitiesOperator
from truto_airflow.operators.opportunities import TRUTO_PLAN_XCOM_KEY, UpdateOpportunityOperator
from truto_airflow.retry import RetryPolicy

START = pendulum.datetime(2026, 1, 1, tz="UTC")


class FakeCRM:
    """GET one, GET the list (``truto_key_by=id``), PATCH; the list drops ``list_omits``."""

    def __init__(
        self,
        records: dict[str, dict[str, Any]],
        *,
        list_omits: tuple[str, ...] = (),
        get_omits: tuple[str, ...] = (),
    ) -> None:
        self.records = records
        self.list_omits = list_omits
        self.get_omits = get_omits
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.gets: list[str] = []
        self.list_pages = 0

    def _view(self, record: dict[str, Any], omit: tuple[str, ...]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k not in omit}

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        assert request.url.params.get("integrated_account_id") == ACCOUNT_ID
        if path == "/unified/crm/opportunities":
            self.list_pages += 1
            assert request.url.params.get("truto_key_by") == "id"
            result = {k: self._view(v, self.list_omits) for k, v in self.records.items()}
            return httpx2.Response(200, json={"result": result, "next_cursor": None})
        oid = path.rsplit("/", 1)[-1]
        if request.method == "GET":
            self.gets.append(oid)
            return httpx2.Response(200, json=self._view(self.records[oid], self.get_omits))
        body = json.loads(request.content)
        self.patches.append((oid, body))
        self.records[oid].update(body)
        return httpx2.Response(200, json=self.records[oid])

    @property
    def patched(self) -> dict[str, dict[str, Any]]:
        return dict(self.patches)


class FakeTI:
    dag_id = "safety_dag"
    task_id = "write"
    run_id = "manual__2026-01-01"
    map_index = -1
    try_number = 1

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)  # XCom values must serialise
        self.pushed[key] = value


@pytest.fixture(autouse=True)
def _conn(truto_conn: str) -> Iterator[None]:
    yield


def run_single(crm: FakeCRM, body: Any, ti: FakeTI | None = None, **kwargs: Any) -> Any:
    kwargs.setdefault("opportunity_id", "opp-1")
    with DAG("safety_dag", schedule=None, start_date=START):
        op = UpdateOpportunityOperator(
            task_id="write",
            body=body,
            integration="hubspot",
            hook_params={
                "transport": httpx2.MockTransport(crm),
                "retry_policy": RetryPolicy(max_retries=0),
            },
            **kwargs,
        )
    ti = ti or FakeTI()
    ctx: dict[str, Any] = {"ti": ti, "task_instance": ti, "run_id": ti.run_id}
    op.render_template_fields(ctx)
    return op.execute(ctx)  # type: ignore[arg-type]


def run_bulk(crm: FakeCRM, updates: Any, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("max_concurrency", 4)
    op = UpdateOpportunitiesOperator(
        task_id="write",
        updates=updates,
        integration="hubspot",
        progress_every_seconds=None,
        http_transport="httpx",
        hook_params={
            "async_transport": httpx2.MockTransport(crm),
            "retry_policy": RetryPolicy(max_retries=0),
        },
        **kwargs,
    )
    ti = FakeTI()
    summary: dict[str, Any] = op.execute({"ti": ti, "task_instance": ti, "run_id": ti.run_id})  # type: ignore[arg-type]
    return summary


def records(n: int, **fields: Any) -> dict[str, dict[str, Any]]:
    return {f"opp-{i}": {"id": f"opp-{i}", "name": f"Deal {i}", **fields} for i in range(n)}


# -- a field the read did not return is unknown ------------------------------------------------


def test_single_sends_a_clear_the_get_did_not_return() -> None:
    crm = FakeCRM(records(1, description="old text"), get_omits=("description",))
    run_single(
        crm, {"description": None, "name": "Deal 0"}, opportunity_id="opp-0", skip_unchanged=True
    )
    assert crm.patches == [("opp-0", {"description": None})]


def test_bulk_rereads_with_get_when_the_list_left_the_field_out() -> None:
    crm = FakeCRM(records(25), list_omits=("description",))
    for i in range(0, 25, 2):
        crm.records[f"opp-{i}"]["description"] = "old text"
    for i in range(1, 25, 2):
        crm.records[f"opp-{i}"]["description"] = None
    rows = [{"id": f"opp-{i}", "body": {"description": None}} for i in range(25)]
    summary = run_bulk(crm, rows, skip_unchanged=True)
    # the list alone would have called every row "already cleared"
    assert set(crm.patched) == {f"opp-{i}" for i in range(0, 25, 2)}
    assert all(body == {"description": None} for body in crm.patched.values())
    assert summary["outcomes"]["unchanged"] == 12 and summary["outcomes"]["updated"] == 13
    state = summary["data_safety"]["current_state"]
    assert state["list_pages"] == 1 and state["reread_after_list"] == 25
    assert state["get_calls"] == 25


def test_bulk_sends_what_neither_list_nor_get_returned() -> None:
    crm = FakeCRM(
        records(20, description="old"), list_omits=("description",), get_omits=("description",)
    )
    rows = [
        {"id": f"opp-{i}", "body": {"description": None, "name": f"Deal {i}"}} for i in range(20)
    ]
    summary = run_bulk(crm, rows, skip_unchanged=True)
    assert summary["outcomes"]["updated"] == 20
    assert all(body == {"description": None} for body in crm.patched.values())


def test_bulk_list_entries_with_every_field_need_no_get() -> None:
    crm = FakeCRM(records(20, description=None))
    rows = [{"id": f"opp-{i}", "body": {"description": None}} for i in range(20)]
    summary = run_bulk(crm, rows, skip_unchanged=True)
    assert crm.patches == [] and crm.gets == []
    assert summary["outcomes"]["unchanged"] == 20


# -- custom_fields shapes, Decimal on the wire --------------------------------------------------


def test_custom_fields_as_name_value_list_from_the_get() -> None:
    cf = [{"name": "score", "value": 7}, {"name": "tier", "value": "gold"}]
    crm = FakeCRM(records(1, custom_fields=cf))
    out = run_single(
        crm, {"custom_fields": {"score": 7}}, opportunity_id="opp-0", skip_unchanged=True
    )
    assert out["outcome"] == "unchanged" and crm.patches == []
    run_single(
        crm,
        {"custom_fields": {"score": 7, "region": None}},
        opportunity_id="opp-0",
        skip_unchanged=True,
    )
    assert crm.patches == [("opp-0", {"custom_fields": {"region": None}})]


def test_decimal_in_custom_fields_goes_out_as_a_json_number() -> None:
    crm = FakeCRM(records(1))
    run_single(
        crm,
        {"amount": Decimal("10.50"), "custom_fields": {"score": Decimal("7.25")}},
        opportunity_id="opp-0",
    )
    ((_, body),) = crm.patches
    assert body == {"amount": 10.5, "custom_fields": {"score": 7.25}}


# -- dry run: old -> new always, every row in the plan --------------------------------------------


def test_single_dry_run_without_skip_reads_and_shows_old_values() -> None:
    crm = FakeCRM(records(1, amount=5), get_omits=("description",))
    plan = run_single(
        crm,
        {"amount": 6, "name": "Deal 0", "description": "x"},
        opportunity_id="opp-0",
        dry_run=True,
    )
    assert crm.patches == [] and crm.gets == ["opp-0"]
    assert plan["changes"]["amount"] == {"old": 5, "new": 6}
    assert "old" not in plan["changes"]["description"]
    assert "not returned" in plan["changes"]["description"]["note"]
    assert plan["unchanged"] == ["name"]
    assert plan["body"] == {"amount": 6, "name": "Deal 0", "description": "x"}


def test_single_dry_run_of_refused_input_still_shows_its_plan() -> None:
    crm = FakeCRM(records(1))
    ti = FakeTI()
    with pytest.raises(TrutoInputError, match="nmae"):
        run_single(crm, {"nmae": "typo"}, ti=ti, opportunity_id="opp-0", dry_run=True)
    plan = ti.pushed[TRUTO_PLAN_XCOM_KEY]
    assert plan["outcome"] == "invalid" and "nmae" in plan["message"]
    assert crm.patches == [] and crm.gets == []


def test_bulk_dry_run_without_skip_reads_and_shows_old_values() -> None:
    crm = FakeCRM(records(3, amount=5))
    rows = [{"id": f"opp-{i}", "body": {"amount": 5 + i}} for i in range(3)]
    summary = run_bulk(crm, rows, dry_run=True)
    assert crm.patches == []
    plan = {row["id"]: row for row in summary["data_safety"]["plan"]["rows"]}
    assert plan["opp-1"]["changes"] == {"amount": {"old": 5, "new": 6}}
    # without skip_unchanged the real run would send row 0 too, even though nothing differs
    assert plan["opp-0"]["outcome"] == "would_update" and plan["opp-0"]["changes"] == {}
    assert plan["opp-0"]["unchanged"] == ["amount"]


BAD_ROWS: list[Any] = [
    {"id": "opp-0", "body": {"amount": 1}},
    {"id": "opp-1"},
    {"id": "opp-2", "body": {"nmae": "typo"}},
    {"body": {"amount": 1}},
    "not a row",
    {"id": "opp-1", "body": {}},
    {"id": "opp-2", "body": {"amount": 2}, "extra": 1},
]


def test_bulk_dry_run_plan_lists_every_row_including_refused_ones() -> None:
    crm = FakeCRM(records(3, amount=0))
    summary = run_bulk(crm, BAD_ROWS, dry_run=True, max_failed=len(BAD_ROWS))
    plan = summary["data_safety"]["plan"]
    assert plan["count"] == len(BAD_ROWS)
    by_row = {row["row"]: row for row in plan["rows"]}
    assert sorted(by_row) == list(range(len(BAD_ROWS)))
    assert by_row[0]["outcome"] == "would_update"
    for index in range(1, len(BAD_ROWS)):
        assert by_row[index]["outcome"] == "invalid" and by_row[index]["message"], index
    assert "nmae" in by_row[2]["message"]
    assert crm.patches == []


# -- one decision for both operators ------------------------------------------------------------

CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"amount": 5}, {"amount": "5.00"}),
    ({"amount": 5}, {}),
    ({"description": None}, {"description": ""}),
    ({"description": None}, {}),
    ({"close_date": "2026-12-01"}, {"close_date": "2026-12-01T00:00:00Z"}),
    ({"close_date": "2026-12-01"}, {"close_date": "2026-12-01T00:00:00-05:00"}),
    ({"custom_fields": {"d": "2026-01-01"}}, {"custom_fields": {"d": "2026-01-01T00:00:00Z"}}),
    ({"custom_fields": {"s": 7}}, {"custom_fields": [{"name": "s", "value": "7"}]}),
    ({"custom_fields": {"s": 7}}, {"custom_fields": ["s", 7]}),
    ({"name": "5", "amount": 1}, {"name": 5, "amount": 1}),
]


@pytest.mark.parametrize(("body", "current"), CASES)
def test_single_and_bulk_judge_a_row_alike(body: dict[str, Any], current: dict[str, Any]) -> None:
    single = run_single(
        FakeCRM({"opp-0": {"id": "opp-0", **current}}),
        body,
        opportunity_id="opp-0",
        skip_unchanged=True,
        dry_run=True,
    )
    summary = run_bulk(
        FakeCRM({"opp-0": {"id": "opp-0", **current}}),
        [{"id": "opp-0", "body": body}],
        skip_unchanged=True,
        dry_run=True,
    )
    (row,) = summary["data_safety"]["plan"]["rows"]
    assert row["outcome"] == single["outcome"]
    assert row["changes"] == single["changes"]
    assert row["unchanged"] == single["unchanged"]


def test_single_dry_run_with_a_missing_connection_is_no_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from truto_airflow.exceptions import TrutoConfigError

    monkeypatch.delenv("AIRFLOW_CONN_TRUTO_DEFAULT")
    ti = FakeTI()
    with pytest.raises(TrutoConfigError):
        run_single(FakeCRM(records(1)), {"amount": 1}, ti=ti, dry_run=True)
    assert TRUTO_PLAN_XCOM_KEY not in ti.pushed
