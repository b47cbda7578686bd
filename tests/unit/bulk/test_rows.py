"""Row sources: lists, JSON strings, JSON Lines files streamed line by line."""

from __future__ import annotations

import json
import pathlib

import pytest

from truto_airflow.bulk.rows import open_source
from truto_airflow.exceptions import TrutoInputError


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
