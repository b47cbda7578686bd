"""Example: plan (dry run) -> manual approval -> apply, for a batch of opportunity updates."""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from truto_airflow.operators.bulk import UpdateOpportunitiesOperator

TRUTO_CONN_ID = os.environ.get("TRUTO_CONN_ID", "truto_default")

DOC_MD = """
### Plan, approve, apply

1. **plan** runs the bulk update with `dry_run=True` and `skip_unchanged=True`: every row is
   validated and checked against what its CRM applies (preflight), the current opportunities
   are read, and the task's XCom lists, per row, the fields that would change (old -> new).
   No write is sent.
2. **approval** is the manual gate: trigger the DAG with `approve` unticked to see the plan,
   then trigger it again with `approve` ticked to let it through. It also stops the run when
   the plan has nothing to write.
3. **apply** sends the writes, again with `skip_unchanged=True`: it re-reads the live state, so
   a row that someone already changed to the planned value in the meantime is not written twice.

See docs/data_safety.md ("Keeping CRM data safe").
"""


# [START howto_operator_truto_plan_apply]
with DAG(
    dag_id="example_truto_plan_apply",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "truto", "data-safety"],
    doc_md=DOC_MD,
    params={
        "approve": Param(
            False,
            type="boolean",
            description="Tick after reviewing the plan task's XCom to let apply run.",
        ),
        "integrated_account_id": Param(
            None,
            type=["null", "string"],
            description="Integrated account UUID; empty uses the connection's default.",
        ),
    },
) as dag:

    @task
    def enrichment_rows() -> list[dict[str, Any]]:
        """Stand-in for a warehouse query: one row per opportunity to enrich."""
        return [
            {"id": "opp-hubspot-0001", "body": {"amount": 125_000, "description": "Renewal"}},
            {"id": "opp-hubspot-0002", "body": {"custom_fields": {"health_score": 82}}},
            {"id": "opp-hubspot-0003", "body": {"close_date": "2026-12-31"}},
        ]

    rows = enrichment_rows()

    plan = UpdateOpportunitiesOperator(
        task_id="plan",
        truto_conn_id=TRUTO_CONN_ID,
        updates=rows,
        integrated_account_id="{{ params.integrated_account_id or '' }}",
        unsupported_fields="error",  # a field the CRM would drop makes its row invalid
        skip_unchanged=True,
        dry_run=True,
    )

    @task.short_circuit
    def approval(summary: dict[str, Any], **context: Any) -> bool:
        """Let apply run only when a human approved and there is something to write."""
        would_write = int(summary["outcomes"].get("would_update", 0))
        approved = bool(context["params"]["approve"])
        print(f"plan: {summary['outcomes']}; approved={approved}")
        return approved and would_write > 0

    apply = UpdateOpportunitiesOperator(
        task_id="apply",
        truto_conn_id=TRUTO_CONN_ID,
        updates=rows,
        integrated_account_id="{{ params.integrated_account_id or '' }}",
        unsupported_fields="error",
        skip_unchanged=True,
    )

    approval(plan.output) >> apply
# [END howto_operator_truto_plan_apply]
