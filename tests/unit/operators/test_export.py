"""ExportOpportunitiesOperator on the emulator (loopback) and on MockTransport (odd pages)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import httpx2
import pytest
from airflow.sdk import AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors

from tests.conftest import ACCOUNT_ID
from truto_airflow.assets import DEFAULT_ASSET_ALIAS
from truto_airflow.emulator import EmulatorHandle
from truto_airflow.exceptions import TrutoAuthError, TrutoInputError, TrutoPaginationError
from truto_airflow.operators.export import ExportOpportunitiesOperator, parse_account_ids
from truto_airflow.retry import RetryPolicy


def no_sleep(_: float) -> None:
    return None


def export_op(output: Any, **kwargs: Any) -> ExportOpportunitiesOperator:
    kwargs.setdefault("hook_params", {"retry_policy": RetryPolicy(max_retries=2, sleep=no_sleep)})
    return ExportOpportunitiesOperator(task_id="export", output_path=output, **kwargs)


def read_lines(path: pathlib.Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def leftovers(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# -- emulator -----------------------------------------------------------------------------------


def test_exports_every_record_of_each_account_tagged(
    truto_emulator: EmulatorHandle, tmp_path: pathlib.Path
) -> None:
    hubspot, attio = truto_emulator.accounts["hubspot"], truto_emulator.accounts["attio"]
    out = tmp_path / "out" / "opps.jsonl"
    op = export_op(
        str(out), integrated_account_ids=[hubspot, attio], page_size=7, ignore_remote_data=True
    )
    accessors = OutletEventAccessors()
    summary = op.execute({"outlet_events": accessors})  # type: ignore[arg-type]

    lines = read_lines(out)
    by_account: dict[str, list[str]] = {}
    for line in lines:
        by_account.setdefault(line["integrated_account_id"], []).append(line["id"])
        assert "remote_data" not in line
    assert by_account == {
        hubspot: truto_emulator.opportunity_ids(hubspot),
        attio: truto_emulator.opportunity_ids(attio),
    }
    assert summary["path"] == str(out)
    assert summary["rows"] == len(lines)
    assert summary["accounts"] == {a: len(ids) for a, ids in by_account.items()}
    assert summary["bytes"] == out.stat().st_size
    assert leftovers(out.parent) == []
    # pages of 7: one request per page, every one with the list options
    gets = truto_emulator.requests(method="GET", path="/unified/crm/opportunities")
    assert len(gets) == sum(-(-len(ids) // 7) for ids in by_account.values())
    assert {g.query["limit"] for g in gets} == {"7"}
    assert {g.query["truto_ignore_remote_data"] for g in gets} == {"true"}

    # asset event on the file, lineage CRM -> file
    [event] = accessors[AssetAlias(name=DEFAULT_ASSET_ALIAS)].asset_alias_events
    assert event.dest_asset_key.uri == f"file://{out}"
    assert event.extra == {
        "operation": "export",
        "rows": len(lines),
        "accounts": summary["accounts"],
    }
    lineage = op.get_openlineage_facets_on_complete(None)
    host = truto_emulator.base_url.split("://", 1)[1]
    assert [(i.namespace, i.name) for i in lineage.inputs] == [
        (f"truto://{host}", f"{hubspot}/crm/opportunities"),
        (f"truto://{host}", f"{attio}/crm/opportunities"),
    ]
    assert [i.inputFacets["inputStatistics"].rowCount for i in lineage.inputs] == [
        len(by_account[hubspot]),
        len(by_account[attio]),
    ]
    [output] = lineage.outputs
    assert (output.namespace, output.name) == ("file", str(out))
    stats = output.outputFacets["outputStatistics"]
    assert (stats.rowCount, stats.size) == (len(lines), out.stat().st_size)


def test_default_account_and_list_options_are_sent(
    truto_emulator: EmulatorHandle, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "opps.jsonl"
    summary = export_op(
        out,
        exclude_fields=["description", "urls"],
        remote_query={"pipeline": "default"},
        query_params={"sort_by": "name"},
        limit=5,
        page_size=2,
    ).execute({})  # type: ignore[arg-type]
    hubspot = truto_emulator.accounts["hubspot"]
    assert summary["accounts"] == {hubspot: 5}
    lines = read_lines(out)
    assert [line["id"] for line in lines] == truto_emulator.opportunity_ids(hubspot)[:5]
    assert all("description" not in line and "urls" not in line for line in lines)
    gets = truto_emulator.requests(method="GET", path="/unified/crm/opportunities")
    assert len(gets) == 3  # limit=5 at 2 per page: no page is read beyond the limit
    assert gets[0].query["remote_query"] == {"pipeline": "default"}
    assert gets[0].query["sort_by"] == "name"
    assert gets[0].query["truto_exclude_fields"] == ["description", "urls"]


def test_failure_mid_export_publishes_nothing_and_keeps_the_old_file(
    truto_emulator: EmulatorHandle, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "opps.jsonl"
    out.write_text("previous export\n")
    accounts = [truto_emulator.accounts["hubspot"], truto_emulator.accounts["needs_reauth"]]
    with pytest.raises(TrutoAuthError):
        export_op(out, integrated_account_ids=accounts).execute({})  # type: ignore[arg-type]
    assert out.read_text() == "previous export\n"
    assert leftovers(tmp_path) == []


def test_fault_soak_every_record_exactly_once(
    truto_emulator_factory: Any, tmp_path: pathlib.Path
) -> None:
    """Injected 5xx and dropped connections on ~1 page in 4: retries re-read the same cursor."""
    emulator = truto_emulator_factory(opportunities=3000, seed=11)
    emulator.configure(fault_rate=0.15, drop_rate=0.1)
    accounts = [emulator.accounts[k] for k in ("pipedrive", "attio", "salesforce")]
    out = tmp_path / "soak.jsonl"
    summary = export_op(
        out,
        integrated_account_ids=accounts,
        page_size=25,
        hook_params={"retry_policy": RetryPolicy(max_retries=12, sleep=no_sleep)},
    ).execute({})  # type: ignore[arg-type]
    lines = read_lines(out)
    keys = [(line["integrated_account_id"], line["id"]) for line in lines]
    expected = [(a, i) for a in accounts for i in emulator.opportunity_ids(a)]
    assert keys == expected  # every record once, in order, none lost or repeated
    assert summary["rows"] == 1500
    faults = [r.fault for r in emulator.requests(method="GET") if r.fault]
    assert len(faults) > 10  # the soak really was faulty, with every kind of fault
    assert {"drop_before", "drop_after"} <= set(faults)
    assert any(f.startswith("status_5") for f in faults)


@pytest.mark.usefixtures("memory_store")
def test_object_storage_output(truto_emulator: EmulatorHandle) -> None:
    from airflow.sdk import ObjectStoragePath

    url = "memory://exports/run-1/opps.jsonl"
    summary = export_op(url, limit=3).execute({})  # type: ignore[arg-type]
    assert summary["path"] == url
    assert len(ObjectStoragePath(url).read_text().splitlines()) == 3
    assert [p.name for p in ObjectStoragePath("memory://exports/run-1").iterdir()] == ["opps.jsonl"]
    lineage = export_op(url).get_openlineage_facets_on_complete(None)
    assert lineage.outputs == []  # nothing ran on this instance: nothing is claimed


def test_progress_lines(
    truto_emulator: EmulatorHandle, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    op = export_op(tmp_path / "x.jsonl", progress_every_rows=20, progress_every_seconds=None)
    op.execute({})  # type: ignore[arg-type]
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if "Export progress" in line]
    assert len(progress) == 51 // 20
    assert "40 rows" in progress[-1]
    assert "51 opportunities exported" in out


# -- odd servers (MockTransport) ----------------------------------------------------------------


def mock_op(pages: list[Any], output: pathlib.Path) -> ExportOpportunitiesOperator:
    calls = {"n": 0}

    def handler(request: httpx2.Request) -> httpx2.Response:
        page = pages[min(calls["n"], len(pages) - 1)]
        calls["n"] += 1
        if isinstance(page, bytes):
            return httpx2.Response(200, content=page, headers={"content-type": "application/json"})
        return httpx2.Response(200, json=page)

    return export_op(
        output,
        hook_params={
            "transport": httpx2.MockTransport(handler),
            "retry_policy": RetryPolicy(max_retries=0),
        },
    )


@pytest.mark.usefixtures("truto_conn")
def test_cursor_cycle_fails_and_publishes_nothing(tmp_path: pathlib.Path) -> None:
    pages = [
        {"result": [{"id": "1"}], "next_cursor": "A"},
        {"result": [{"id": "2"}], "next_cursor": "B"},
        {"result": [{"id": "3"}], "next_cursor": "A"},
    ]
    out = tmp_path / "x.jsonl"
    with pytest.raises(TrutoPaginationError, match="cycle"):
        mock_op(pages, out).execute({})  # type: ignore[arg-type]
    assert not out.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.usefixtures("truto_conn")
def test_non_json_value_fails_and_publishes_nothing(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "x.jsonl"
    page = b'{"result": [{"id": "1", "amount": NaN}], "next_cursor": null}'
    with pytest.raises(TrutoPaginationError, match="not valid JSON"):
        mock_op([page], out).execute({})  # type: ignore[arg-type]
    assert not out.exists()


@pytest.mark.usefixtures("truto_conn")
def test_record_field_cannot_spoof_the_account(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "x.jsonl"
    page = {"result": [{"id": "1", "integrated_account_id": "someone-else"}], "next_cursor": None}
    mock_op([page], out).execute({})  # type: ignore[arg-type]
    assert read_lines(out) == [{"id": "1", "integrated_account_id": ACCOUNT_ID}]


# -- arguments ----------------------------------------------------------------------------------


OTHER = "0b7e2c4e-2f5c-4e8e-9a59-3a1f7d1c2b10"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("None", None),
        (ACCOUNT_ID, [ACCOUNT_ID]),
        (f"{ACCOUNT_ID.upper()}, {OTHER}", [ACCOUNT_ID, OTHER]),
        (json.dumps([ACCOUNT_ID, OTHER, ACCOUNT_ID]), [ACCOUNT_ID, OTHER]),
        (repr([ACCOUNT_ID]), [ACCOUNT_ID]),
        ((ACCOUNT_ID,), [ACCOUNT_ID]),
    ],
)
def test_parse_account_ids(value: Any, expected: list[str] | None) -> None:
    assert parse_account_ids(value) == expected


@pytest.mark.parametrize("value", [[], ["nope"], "[1, 2", 42, [None]])
def test_parse_account_ids_refuses(value: Any) -> None:
    with pytest.raises(TrutoInputError):
        parse_account_ids(value)


@pytest.mark.usefixtures("truto_conn")
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"page_size": 0}, "page_size"),
        ({"limit": "x"}, "limit"),
        ({"ignore_remote_data": "maybe"}, "ignore_remote_data"),
        ({"output_path": ""}, "output_path"),
        ({"remote_query": "[1]"}, "remote_query"),
    ],
)
def test_bad_arguments_fail_before_any_request(
    tmp_path: pathlib.Path, kwargs: dict[str, Any], match: str
) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise AssertionError("no request may be sent")

    kwargs.setdefault("output_path", tmp_path / "x.jsonl")
    op = ExportOpportunitiesOperator(
        task_id="export", hook_params={"transport": httpx2.MockTransport(handler)}, **kwargs
    )
    with pytest.raises(TrutoInputError, match=match):
        op.execute({})  # type: ignore[arg-type]
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize("rendered", ["['description', 'urls']", '["description", "urls"]'])
def test_list_options_rendered_by_default_templating(rendered: str) -> None:
    """Without native rendering a list param arrives as its Python repr; it is still a list."""
    from truto_airflow.models.options import build_unified_query

    query = build_unified_query(integrated_account_id=ACCOUNT_ID, exclude_fields=rendered)
    assert query["truto_exclude_fields"] == ["description", "urls"]
