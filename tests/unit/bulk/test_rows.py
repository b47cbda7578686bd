"""Row sources: lists, JSON strings, JSON Lines files streamed line by line."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from tests.unit.bulk.conftest import ACCOUNTS
from truto_airflow.bulk.prepare import RowItem, RowPreparer, RunIdentity
from truto_airflow.bulk.rows import RawRow, open_source
from truto_airflow.exceptions import TrutoInputError
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.models.options import TrutoQueryOptions


def test_list_and_json_string() -> None:
    src = open_source([{"id": "a", "body": {}}, {"id": "b", "body": {}}])
    assert src.total == 2
    assert [r.data["id"] for r in src.rows] == ["a", "b"]
    src = open_source(json.dumps([{"id": "c", "body": {}}]))
    assert [r.index for r in src.rows] == [0]


def test_jsonl_is_streamed_and_bad_lines_become_rows(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "1", "body": {"amount": 1}}\n\n{not json\n{"id": "3", "body": {}}')
    src = open_source(str(path))
    assert src.total == 3
    first = next(src.rows)
    assert (first.index, first.line, first.data["id"]) == (0, 1, "1")
    rest = list(src.rows)
    assert rest[0].error is not None and "line 3" in rest[0].error
    assert (rest[1].index, rest[1].line) == (2, 4)


def test_jsonl_is_not_read_whole(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("w") as fh:
        for i in range(20_000):
            fh.write(json.dumps({"id": str(i), "body": {"amount": i}}) + "\n")
    src = open_source(f"file://{path}")
    next(src.rows)
    # Opened through a buffered reader: only a block, not the 600 KB file, has been read.
    frame = src.rows.gi_frame  # type: ignore[attr-defined]
    assert frame is not None
    handle = next(v for v in frame.f_locals.values() if hasattr(v, "tell"))
    assert handle.tell() < path.stat().st_size / 4


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "updates is empty"),
        ({"id": "x"}, "single mapping"),
        ("   ", "empty string"),
        ("/nonexistent/rows.jsonl", "does not exist"),
        ("[not json", "JSON list"),
        (42, "got int"),
    ],
)
def test_bad_inputs_are_explained(value: object, message: str) -> None:
    with pytest.raises(TrutoInputError, match=message):
        open_source(value)


def one_shot_inputs() -> dict[str, Callable[[list[dict[str, Any]]], Any]]:
    return {
        "generator": lambda rows: (row for row in rows),
        "iterator": lambda rows: iter(rows),
        "map": lambda rows: map(dict, rows),
        "filter": lambda rows: filter(None, rows),
    }


@pytest.mark.parametrize("kind", sorted(one_shot_inputs()))
def test_any_iterable_is_read_fully_even_with_skip_unchanged(kind: str) -> None:
    """The id scan of skip_unchanged must not consume the rows the writes need."""
    from tests.unit.operators.test_bulk import FakeTI, context, operator

    rows = [{"id": f"opp-{i}", "body": {"amount": i}} for i in range(30)]
    patched: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        oid = request.url.path.rsplit("/", 1)[-1]
        if request.method == "GET":
            if oid == "opportunities":  # the list walk for accounts with many rows
                return httpx2.Response(
                    200, json={"result": [{"id": r["id"], "amount": -1} for r in rows]}
                )
            return httpx2.Response(200, json={"id": oid, "amount": -1})
        patched.append(oid)
        return httpx2.Response(200, json={"id": oid})

    updates = one_shot_inputs()[kind](rows)
    op = operator(handler, updates, skip_unchanged=True)
    summary = op.execute(context(FakeTI()))  # type: ignore[arg-type]
    assert summary["rows"] == 30
    assert summary["outcomes"]["updated"] == 30
    assert sorted(patched) == sorted(r["id"] for r in rows)


def test_a_one_shot_source_scans_and_then_reads_every_row() -> None:
    rows = [{"id": str(i), "body": {"amount": i}} for i in range(5)] + [
        {"id": "x", "body": b"\xff"}
    ]
    src = open_source(r for r in rows)
    assert [r.data["id"] for r in src.scan()] == [r["id"] for r in rows]
    assert src.total == 6
    assert [(r.index, r.data) for r in src.rows] == list(enumerate(rows))


def test_a_row_that_cannot_be_kept_for_the_second_read_becomes_an_invalid_row() -> None:
    rows: list[Any] = [{"id": "a", "body": {"amount": 1}}, {"id": "b", "body": (x for x in ())}]
    src = open_source(iter(rows))
    scanned = list(src.scan())
    assert scanned[0].data == rows[0] and scanned[0].error is None
    assert scanned[1].data is None and "could not be kept" in (scanned[1].error or "")
    assert [r.index for r in src.rows] == [0, 1]


def test_the_run_query_options_reach_every_row_and_a_row_account_wins() -> None:
    hook = TrutoHook(async_transport=httpx2.MockTransport(lambda request: httpx2.Response(500)))
    options = TrutoQueryOptions(
        integrated_account_id=ACCOUNTS[0],
        response_format="raw",
        ignore_remote_data=True,
        exclude_fields=["remote_data"],
        remote_query={"fields": "Amount"},
    )
    preparer = RowPreparer(hook=hook, identity=RunIdentity("d", "t", "r"), options=options)
    rows = [
        RawRow(0, {"id": "a", "body": {"amount": 1}}),
        RawRow(1, {"id": "b", "body": {"amount": 2}, "integrated_account_id": ACCOUNTS[1]}),
    ]
    items = [preparer.prepare(row) for row in rows]
    assert all(isinstance(item, RowItem) for item in items)
    params = [dict(item.request.params) for item in items if isinstance(item, RowItem)]
    assert [p["integrated_account_id"] for p in params] == ACCOUNTS[:2]
    for p in params:
        assert p["truto_response_format"] == "raw"
        assert p["truto_ignore_remote_data"] == "true"
        assert p["truto_exclude_fields[]"] == "remote_data"
        assert p["remote_query[fields]"] == "Amount"
