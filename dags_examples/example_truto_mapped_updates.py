"""Example: many opportunity updates from a list produced upstream, one mapped task each."""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from truto_airflow.operators.opportunities import UpdateOpportunityOperator

TRUTO_CONN_ID = os.environ.get("TRUTO_CONN_ID", "truto_default")

DOC_MD = """
### Mapped opportunity updates

`plan_updates` turns the `updates` param (in a real DAG: rows from a warehouse query) into a list
of `{"opportunity_id", "body"}` dicts; `apply_updates` is `UpdateOpportunityOperator` mapped over
that list with `expand_kwargs`, so every row is its own task instance (own retries, own log, own
idempotency key). `mark_reviewed` shows `.expand()` over ids with one shared body.
"""

DEFAULT_UPDATES = [
    {"opportunity_id": "opp-hubspot-0002", "body": {"amount": 12_500}},
    {"opportunity_id": "opp-hubspot-0003", "body": {"description": "Renewal confirmed"}},
    {
        "opportunity_id": "opp-hubspot-0004",
        "body": {"amount": 8_000, "close_date": "2026-12-31T00:00:00+00:00"},
    },
]

# [START howto_operator_truto_mapped_updates]
with DAG(
    dag_id="example_truto_mapped_updates",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "truto"],
    doc_md=DOC_MD,
    params={
        "updates": Param(
            DEFAULT_UPDATES,
            type="array",
            items={"type": "object", "required": ["opportunity_id", "body"]},
            description="Updates to apply: [{opportunity_id, body}, ...]",
        ),
        "integrated_account_id": Param(
            None,
            type=["null", "string"],
            description="Integrated account UUID; empty uses the connection's default.",
        ),
    },
) as dag:

    @task
    def plan_updates(params: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"opportunity_id": str(row["opportunity_id"]), "body": dict(row["body"])}
            for row in params["updates"]
        ]

    @task
    def ids_to_review(updates: list[dict[str, Any]]) -> list[str]:
        return [row["opportunity_id"] for row in updates]

    planned = plan_updates()

    applied = UpdateOpportunityOperator.partial(
        task_id="apply_updates",
        truto_conn_id=TRUTO_CONN_ID,
        integrated_account_id="{{ params.integrated_account_id }}",
        ignore_remote_data=True,
    ).expand_kwargs(planned)

    reviewed = UpdateOpportunityOperator.partial(
        task_id="mark_reviewed",
        truto_conn_id=TRUTO_CONN_ID,
        integrated_account_id="{{ params.integrated_account_id }}",
        body={"custom_fields": {"reviewed_by_airflow": "{{ run_id }}"}},
        ignore_remote_data=True,
    ).expand(opportunity_id=ids_to_review(planned))

    applied >> reviewed
# [END howto_operator_truto_mapped_updates]
