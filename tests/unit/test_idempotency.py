"""Idempotency keys: stable across task retries, distinct for any other change."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from truto_airflow.idempotency import context_identity, derive_idempotency_key

BASE: dict[str, Any] = {
    "dag_id": "d",
    "task_id": "t",
    "run_id": "r",
    "map_index": None,
    "integrated_account_id": "a",
    "opportunity_id": "1",
    "body": {"amount": 1, "stage": {"id": "s"}},
}


def test_key_is_stable_and_ignores_body_key_order() -> None:
    reordered = {**BASE, "body": {"stage": {"id": "s"}, "amount": 1}}
    assert derive_idempotency_key(**BASE) == derive_idempotency_key(**reordered)
    assert derive_idempotency_key(**BASE).startswith("truto-airflow-")


@given(
    st.sampled_from(sorted(BASE)),
    st.one_of(st.text(min_size=1, max_size=5), st.integers(0, 5)),
)
def test_any_changed_part_changes_the_key(part: str, value: Any) -> None:
    changed = {**BASE, part: {"amount": value} if part == "body" else value}
    if changed[part] == BASE[part] or (part != "body" and str(changed[part]) == str(BASE[part])):
        return
    assert derive_idempotency_key(**changed) != derive_idempotency_key(**BASE)


def test_context_identity_from_ti_and_without_one() -> None:
    ti = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=3, try_number=2)
    assert context_identity({"ti": ti}) == ("d", "t", "r", 3)
    assert context_identity({}) == ("unknown-dag", "unknown-task", "manual", None)
    assert context_identity({"dag": SimpleNamespace(dag_id="x"), "run_id": "r2"})[::2] == (
        "x",
        "r2",
    )


def test_derived_keys_are_pinned_across_releases() -> None:
    """Keys computed by the released derivation: a retry after an upgrade must send the same
    key (a faster encoder or constructor may not change a single byte)."""
    from truto_airflow.idempotency import RunIdentity

    identity = RunIdentity("dag", "task", "run-1", 3)
    account = "62f44730-dd91-461e-bd6a-aedd9e0ad79d"
    body = {"name": "Déal", "amount": 1.5, "custom_fields": {"b": None, "a": [1, "x"]}}
    assert (
        identity.for_row(7).key(account=account, opportunity_id="o/1", body=body)
        == "truto-airflow-379d053300f3cf8806de199b2fb652106975afcbafb97bf7"
    )
    assert (
        identity.key(account=account, opportunity_id="o/1", body={"name": "Déal"})
        == "truto-airflow-34869b50670918228d5097a09fac680a9b1548808c323df3"
    )


def _released_derivation(parts: dict[str, Any]) -> str:
    """The derivation as released (a list of str() parts joined by U+001F), the reference any
    faster spelling must match byte for byte."""
    import hashlib
    import json

    body = json.dumps(parts["body"], sort_keys=True, separators=(",", ":"), default=str)
    joined = [
        str(parts["dag_id"]),
        str(parts["task_id"]),
        str(parts["run_id"]),
        str(-1 if parts["map_index"] is None else parts["map_index"]),
        str(parts["integrated_account_id"]),
        str(parts["opportunity_id"]),
        hashlib.sha256(body.encode()).hexdigest(),
    ]
    if parts.get("row") is not None:
        joined.append(f"row={int(parts['row'])}")
    return "truto-airflow-" + hashlib.sha256("\x1f".join(joined).encode()).hexdigest()[:48]


class _Text(str):
    def __str__(self) -> str:
        return "shown"


_part = st.one_of(st.text(max_size=6), st.integers(-3, 3), st.just(_Text("x")))


@given(
    st.fixed_dictionaries(
        {
            "dag_id": _part,
            "task_id": _part,
            "run_id": _part,
            "map_index": st.one_of(st.none(), st.integers(-2, 5)),
            "integrated_account_id": _part,
            "opportunity_id": _part,
            "body": st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3)),
        },
        optional={"row": st.one_of(st.none(), st.integers(0, 10**6), st.booleans())},
    )
)
def test_the_derivation_is_the_released_one_byte_for_byte(parts: dict[str, Any]) -> None:
    assert derive_idempotency_key(**parts) == _released_derivation(parts)
