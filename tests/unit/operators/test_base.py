"""The options every Truto operator shares are declared once (operators/_base.py) and still
behave as each operator's own keyword arguments: defaults, ``default_args``, ``expand()``."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG

from truto_airflow.operators._base import (
    QUERY_TEMPLATE_FIELDS,
    SAFETY_TEMPLATE_FIELDS,
    TrutoWriteOperator,
)
from truto_airflow.operators.bulk import UpdateOpportunitiesOperator
from truto_airflow.operators.export import ExportOpportunitiesOperator
from truto_airflow.operators.opportunities import UpdateOpportunityOperator

START = pendulum.datetime(2024, 1, 1, tz="UTC")
WRITERS = (UpdateOpportunityOperator, UpdateOpportunitiesOperator)
REQUIRED: dict[type, dict[str, Any]] = {
    UpdateOpportunityOperator: {"opportunity_id": "o", "body": {"amount": 1}},
    UpdateOpportunitiesOperator: {"updates": []},
    ExportOpportunitiesOperator: {"output_path": "/tmp/x.jsonl"},
}


@pytest.mark.parametrize("cls", list(REQUIRED))
def test_shared_options_are_template_fields_of_every_operator(cls: type) -> None:
    fields = tuple(cls.template_fields)
    assert set(QUERY_TEMPLATE_FIELDS) <= set(fields)
    assert len(fields) == len(set(fields)), "a field is listed twice"
    if issubclass(cls, TrutoWriteOperator):
        assert set(SAFETY_TEMPLATE_FIELDS) | {"integrated_account_id"} <= set(fields)


@pytest.mark.parametrize("cls", WRITERS)
def test_write_defaults_and_dry_run_stored_as_plan_only(cls: type) -> None:
    op = cls(task_id="t", **REQUIRED[cls])
    assert (op.unsupported_fields, op.integration, op.skip_unchanged, op.plan_only) == (
        "error",
        None,
        False,
        False,
    )
    assert op.truto_conn_id == "truto_default" and op.hook_params == {}
    assert cls(task_id="u", dry_run=True, **REQUIRED[cls]).plan_only is True


def test_export_and_bulk_send_no_response_option_unless_given() -> None:
    for cls in (UpdateOpportunitiesOperator, ExportOpportunitiesOperator):
        op = cls(task_id="t", **REQUIRED[cls])
        assert op.response_options() == {
            "response_format": None,
            "ignore_remote_data": None,
            "exclude_fields": None,
            "remote_query": None,
        }


@pytest.mark.parametrize("cls", list(REQUIRED))
def test_default_args_reach_the_shared_options(cls: type) -> None:
    # Airflow fills default_args per class __init__ signature: the base's options must be
    # parameters of a wrapped __init__, not anonymous **kwargs.
    defaults = {"truto_conn_id": "crm_b", "exclude_fields": ["remote_data"]}
    if issubclass(cls, TrutoWriteOperator):
        defaults |= {"unsupported_fields": "warn", "skip_unchanged": True}
    with DAG("d", schedule=None, start_date=START, default_args=defaults):
        op = cls(task_id="t", **REQUIRED[cls])
    for name, value in defaults.items():
        assert getattr(op, name) == value, name


@pytest.mark.parametrize("cls", WRITERS)
def test_expand_accepts_the_shared_options_and_refuses_unknown_ones(cls: type) -> None:
    with DAG("d", schedule=None, start_date=START):
        cls.partial(task_id="ok", **REQUIRED[cls]).expand(skip_unchanged=[True, False])
        with pytest.raises(TypeError, match="skip_unchnaged"):
            cls.partial(task_id="bad", **REQUIRED[cls]).expand(skip_unchnaged=[True])
