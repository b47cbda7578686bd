"""partition_by_account: every row exactly once, accounts never mixed, at most N rows a chunk."""

from __future__ import annotations

import json
import pathlib
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from truto_airflow.exceptions import TrutoInputError
from truto_airflow.partition import AccountPartitioner, partition_by_account

ACCOUNTS = [str(uuid.UUID(int=n)) for n in range(1, 6)]


def read_chunks(chunks: list[dict[str, str]]) -> list[list[dict[str, Any]]]:
    return [
        [json.loads(line) for line in pathlib.Path(c["updates"]).read_text().splitlines()]
        for c in chunks
    ]


@given(
    picks=st.lists(st.integers(0, len(ACCOUNTS) - 1), max_size=120),
    max_rows=st.one_of(st.none(), st.integers(1, 17)),
    max_open=st.integers(1, 4),
)
def test_every_row_once_no_mixing_bounded(
    tmp_path_factory: pytest.TempPathFactory,
    picks: list[int],
    max_rows: int | None,
    max_open: int,
) -> None:
    out = tmp_path_factory.mktemp("chunks")
    rows = [
        {"id": f"opp-{n}", "body": {"amount": n}, "integrated_account_id": ACCOUNTS[a]}
        for n, a in enumerate(picks)
    ]
    with AccountPartitioner(out, max_rows=max_rows, max_open_files=max_open) as part:
        for n, row in enumerate(rows):
            part.add(row, where=f"row {n}")
        chunks = [c.kwargs() for c in part.publish()]
    contents = read_chunks(chunks)
    seen: list[str] = []
    per_account: dict[str, list[str]] = {}
    for chunk, lines in zip(chunks, contents, strict=True):
        assert lines, "no empty chunk"
        assert {row["integrated_account_id"] for row in lines} == {chunk["integrated_account_id"]}
        if max_rows is not None:
            assert len(lines) <= max_rows
        seen += [row["id"] for row in lines]
    # exactly once
    assert sorted(seen) == sorted(row["id"] for row in rows)
    # within an account, chunk order (by file name) then line order is input order
    for chunk, lines in sorted(zip(chunks, contents, strict=True), key=lambda p: p[0]["updates"]):
        per_account.setdefault(chunk["integrated_account_id"], []).extend(r["id"] for r in lines)
    for account, ids in per_account.items():
        assert ids == [r["id"] for r in rows if r["integrated_account_id"] == account]
    if max_rows is None:
        assert len(chunks) == len(set(picks))
    # nothing but the chunks was left in the output directory (no .part files)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        pathlib.Path(c["updates"]).name for c in chunks
    )


def test_chunks_interleave_accounts(tmp_path: pathlib.Path) -> None:
    rows = [{"id": f"a{n}", "integrated_account_id": ACCOUNTS[0]} for n in range(5)]
    rows += [{"id": f"b{n}", "integrated_account_id": ACCOUNTS[1]} for n in range(3)]
    chunks = partition_by_account(rows, tmp_path, max_rows=2)
    order = [c["integrated_account_id"] for c in chunks]
    a, b = ACCOUNTS[0], ACCOUNTS[1]
    assert order == [a, b, a, b, a]


def test_reads_jsonl_file_and_canonicalises_account(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "rows.jsonl"
    upper = ACCOUNTS[2].upper()
    source.write_text(
        json.dumps({"id": "x", "integrated_account_id": upper})
        + "\n\n"
        + json.dumps({"id": "y", "integrated_account_id": ACCOUNTS[2]})
        + "\n"
    )
    chunks = partition_by_account(str(source), tmp_path / "out", max_rows=10)
    assert len(chunks) == 1
    assert chunks[0]["integrated_account_id"] == ACCOUNTS[2]
    assert [r["id"] for r in read_chunks(chunks)[0]] == ["x", "y"]


def test_default_account_fills_missing(tmp_path: pathlib.Path) -> None:
    chunks = partition_by_account(
        [{"id": "x"}, {"id": "y", "integrated_account_id": ""}],
        tmp_path,
        integrated_account_id=ACCOUNTS[3],
    )
    assert [r["integrated_account_id"] for r in read_chunks(chunks)[0]] == [ACCOUNTS[3]] * 2


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"id": "x", "integrated_account_id": ACCOUNTS[0]}, {"id": "y"}], "row 1 has no"),
        ([{"id": "x", "integrated_account_id": "not-a-uuid"}], "row 0 field 'integrated_acc"),
        ([{"id": "x", "integrated_account_id": ACCOUNTS[0], "body": {"a": float("nan")}}], "NaN"),
        ([{"id": "x", "integrated_account_id": ACCOUNTS[0], "body": {"a": b"x"}}], "row 0"),
        ([["not", "a", "mapping"]], "row 0 is a list"),
    ],
)
def test_bad_rows_refused_and_nothing_published(
    tmp_path: pathlib.Path, rows: list[Any], message: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(TrutoInputError, match=message):
        partition_by_account(rows, out)
    assert not out.exists() or not any(out.iterdir())


def test_bad_json_line_names_the_line(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps({"id": "x", "integrated_account_id": ACCOUNTS[0]}) + "\n{oops\n")
    out = tmp_path / "out"
    with pytest.raises(TrutoInputError, match="line 2"):
        partition_by_account(str(source), out)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("bad", [0, -1, True, "x"])
def test_max_rows_validated(tmp_path: pathlib.Path, bad: Any) -> None:
    with pytest.raises((TrutoInputError, ValueError)):
        partition_by_account([], tmp_path, max_rows=bad)


@pytest.mark.usefixtures("memory_store")
def test_object_storage_output() -> None:
    from airflow.sdk import ObjectStoragePath

    base = f"memory://truto-partition-{uuid.uuid4().hex}/chunks"
    rows = [{"id": f"o{n}", "integrated_account_id": ACCOUNTS[n % 2]} for n in range(5)]
    chunks = partition_by_account(rows, base, max_rows=2)
    assert [c["updates"].startswith("memory://") for c in chunks] == [True] * len(chunks)
    total = 0
    for chunk in chunks:
        lines = ObjectStoragePath(chunk["updates"]).read_text().splitlines()
        assert {json.loads(x)["integrated_account_id"] for x in lines} == {
            chunk["integrated_account_id"]
        }
        total += len(lines)
    assert total == 5
    names = [p.name for p in ObjectStoragePath(base).iterdir()]
    assert not [n for n in names if n.endswith(".part")]
