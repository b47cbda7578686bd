"""One Idempotency-Key derivation: the hook derives the key from the caller's run identity
(``idempotency.RunIdentity``) once the request is validated. Neither operator mints a key that
is then thrown away, and no placeholder key travels anywhere."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx2
import pendulum
import pytest
from airflow.sdk import DAG

from tests.conftest import ACCOUNT_ID
from truto_airflow.bulk.prepare import RowItem, RowPreparer
from truto_airflow.bulk.rows import RawRow
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.idempotency import RunIdentity, derive_idempotency_key
from truto_airflow.operators.opportunities import UpdateOpportunityOperator

OPP = "opp-1"
BODY = {"amount": 12, "name": "Renewal"}
TI = SimpleNamespace(dag_id="dag_k", task_id="write", run_id="scheduled__1", map_index=2)


def rule(*, row: int | None = None, body: Any = BODY) -> str:
    """The key idempotency.py's rule gives this write (the expected value everywhere)."""
    return derive_idempotency_key(
        dag_id="dag_k",
        task_id="write",
        run_id="scheduled__1",
        map_index=2,
        integrated_account_id=ACCOUNT_ID,
        opportunity_id=OPP,
        body=body,
        row=row,
    )


@pytest.fixture(autouse=True)
def _conn(truto_conn: str) -> None:
    return None


@pytest.fixture
def keys_built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str | None]]:
    """Every key handed to ``TrutoHook.prepare``; minting a random key fails the test."""
    seen: list[str | None] = []
    real = TrutoHook.prepare

    def spy(self: TrutoHook, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("idempotency_key"))
        return real(self, *args, **kwargs)

    def no_mint() -> uuid.UUID:
        raise AssertionError("a random Idempotency-Key was minted")

    monkeypatch.setattr(TrutoHook, "prepare", spy)
    monkeypatch.setattr("truto_airflow.hooks._wire.uuid.uuid4", no_mint)
    yield seen


def test_the_hook_derives_the_key_from_the_run_identity() -> None:
    identity = RunIdentity.from_context({"ti": TI}, dag_id="x", task_id="y")
    hook = TrutoHook()
    single = hook.prepare_update(OPP, BODY, idempotency_key=identity)
    row = hook.prepare_update(OPP, BODY, idempotency_key=identity.for_row(7))
    derived = identity.key(account=ACCOUNT_ID, opportunity_id=OPP, body=BODY)
    assert single.idempotency_key == derived == rule()
    assert row.idempotency_key == identity.row_key(
        row=7, account=ACCOUNT_ID, opportunity_id=OPP, body=BODY
    )
    assert row.idempotency_key == rule(row=7)
    # The key is derived from the body as validated and sent, not as given.
    assert hook.prepare_update(OPP, {"amount": 12.0}, idempotency_key=identity).idempotency_key == (
        rule(body={"amount": 12.0})
    )


def test_a_run_identity_outside_a_task_run_uses_the_callers_ids() -> None:
    assert RunIdentity.from_context({"run_id": "r9"}, dag_id="d", task_id="t") == RunIdentity(
        "d", "t", "r9"
    )
    assert RunIdentity.from_context({}, dag_id="d", task_id="t").run_id == "manual"


def test_the_single_operator_mints_nothing_and_sends_the_rules_key(
    keys_built: list[str | None],
) -> None:
    sent: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(200, json={"id": OPP})

    with DAG("dag_k", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
        op = UpdateOpportunityOperator(
            task_id="write",
            opportunity_id=OPP,
            body=BODY,
            integration="hubspot",  # no account lookup
            hook_params={"transport": httpx2.MockTransport(answer)},
        )
    ctx: dict[str, Any] = {"ti": TI, "task_instance": TI, "run_id": TI.run_id}
    op.execute(ctx)  # type: ignore[arg-type]
    assert [r.headers["idempotency-key"] for r in sent] == [rule()]
    assert all(key in (None, rule()) for key in keys_built), keys_built  # no stand-in


def test_bulk_rows_mint_nothing_and_carry_no_placeholder(keys_built: list[str | None]) -> None:
    identity = RunIdentity("dag_k", "write", "scheduled__1", 2)
    preparer = RowPreparer(hook=TrutoHook(), identity=identity)
    item = preparer.prepare(RawRow(index=4, data={"id": OPP, "body": BODY}))
    assert isinstance(item, RowItem)
    assert item.request.idempotency_key == item.key == rule(row=4)
    assert all(key in (None, rule(row=4)) for key in keys_built), keys_built  # no stand-in


def test_a_direct_hook_call_still_gets_one_fresh_key_per_write() -> None:
    hook = TrutoHook()
    first = hook.prepare_update(OPP, BODY).idempotency_key
    second = hook.prepare_update(OPP, BODY).idempotency_key
    assert first and second and first != second
    assert first.startswith("truto-airflow-")
    assert hook.prepare_update(OPP, BODY, idempotency_key="mine-1").idempotency_key == "mine-1"


def test_the_old_import_path_of_run_identity_works() -> None:
    from truto_airflow.bulk.prepare import RunIdentity as Old

    assert Old is RunIdentity
