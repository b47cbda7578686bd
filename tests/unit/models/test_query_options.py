"""The five Truto query options travel as one value (TrutoQueryOptions)."""

from __future__ import annotations

import pytest

from truto_airflow.hooks.truto import TrutoHook, TrutoQueryOptions
from truto_airflow.models.options import TrutoQueryArgs

ACCOUNT = "62f44730-dd91-461e-bd6a-aedd9e0ad79d"


def test_the_options_value_lists_every_keyword_the_hook_takes() -> None:
    assert set(TrutoQueryArgs.__annotations__) == set(TrutoQueryOptions.__dataclass_fields__)


@pytest.mark.usefixtures("truto_conn")
def test_keywords_build_the_query_of_the_value() -> None:
    hook = TrutoHook()
    options = TrutoQueryOptions(
        integrated_account_id=ACCOUNT,
        response_format="raw",
        ignore_remote_data=True,
        exclude_fields=["a"],
        remote_query={"x": 1},
    )
    request = hook.prepare_update(
        "1",
        {"amount": 1},
        integrated_account_id=ACCOUNT,
        response_format="raw",
        ignore_remote_data=True,
        exclude_fields=["a"],
        remote_query={"x": 1},
        idempotency_key="k-1",
    )
    assert dict(options.query(ACCOUNT)) == {
        "integrated_account_id": ACCOUNT,
        "truto_response_format": "raw",
        "truto_ignore_remote_data": True,
        "truto_exclude_fields": ["a"],
        "remote_query": {"x": 1},
    }
    assert ("truto_exclude_fields", "a") in request.params or any(
        k.startswith("truto_exclude_fields") for k, _ in request.params
    )
    assert ("integrated_account_id", ACCOUNT) in request.params


@pytest.mark.usefixtures("truto_conn")
def test_an_unknown_keyword_is_still_refused() -> None:
    with pytest.raises(TypeError):
        TrutoHook().prepare_update("1", {"amount": 1}, response_fromat="raw")  # type: ignore[call-arg]
