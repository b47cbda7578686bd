"""Example: score opportunities upstream, write the enrichment to the CRM, read it back.

Run it against the local emulator with ``make demo``, or against real Truto by setting the
``truto_default`` connection and triggering with
``{"opportunity_ids": ["<id>", ...], "integrated_account_id": "<uuid>"}``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.operators.opportunities import UpdateOpportunityOperator

TRUTO_CONN_ID = os.environ.get("TRUTO_CONN_ID", "truto_default")

# Stage ids are CRM-specific; these are the emulator's HubSpot stages. Override with the
# ``stage_ids`` param for a real CRM (or leave it empty to write no stage).
DEFAULT_STAGE_IDS = ["stage-hubspot-2", "stage-hubspot-3", "stage-hubspot-4"]

DOC_MD = """
### Truto enrichment

1. `score_opportunities` computes a deterministic lead score per opportunity id (a stand-in for a
   model or a warehouse query) and turns it into an update: `amount`, `stage` and
   `custom_fields.truto_score`.
2. `write_enrichment` (`UpdateOpportunityOperator`, one mapped task per opportunity) sends each
   update as `PATCH /unified/crm/opportunities/{id}` and returns the updated opportunity.
3. `read_back` reads every opportunity again with `TrutoHook.get_opportunity` and fails the run if
   the CRM does not hold the values that were written.

Params: `opportunity_ids` (the ids to enrich), `integrated_account_id` (empty = the connection's
default), `stage_ids` (the pipeline's stage ids, lowest score first).
"""


def score_for(opportunity_id: str) -> float:
    """A stable pseudo-score in [0, 1) for an id (a real DAG would call a model here)."""
    digest = hashlib.sha256(opportunity_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


# [START howto_operator_truto_enrichment]
with DAG(
    dag_id="example_truto_enrichment",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "truto"],
    doc_md=DOC_MD,
    params={
        "opportunity_ids": Param(
            ["opp-hubspot-0001"],
            type="array",
            items={"type": "string"},
            minItems=1,
            description="Opportunity ids to enrich.",
        ),
        "integrated_account_id": Param(
            None,
            type=["null", "string"],
            description="Integrated account UUID; empty uses the connection's default.",
        ),
        "stage_ids": Param(DEFAULT_STAGE_IDS, type="array", items={"type": "string"}),
    },
) as dag:

    @task
    def score_opportunities(params: dict[str, Any]) -> list[dict[str, Any]]:
        stage_ids = list(params.get("stage_ids") or [])
        updates = []
        for opportunity_id in params["opportunity_ids"]:
            score = score_for(opportunity_id)
            body: dict[str, Any] = {
                "amount": round(1000 + score * 49_000, 2),
                "custom_fields": {"truto_score": round(score, 4)},
            }
            if stage_ids:
                body["stage"] = {
                    "id": stage_ids[min(int(score * len(stage_ids)), len(stage_ids) - 1)]
                }
            updates.append({"opportunity_id": opportunity_id, "body": body})
        return updates

    enrichments = score_opportunities()

    written = UpdateOpportunityOperator.partial(
        task_id="write_enrichment",
        truto_conn_id=TRUTO_CONN_ID,
        integrated_account_id="{{ params.integrated_account_id }}",
        ignore_remote_data=True,
    ).expand_kwargs(enrichments)

    @task(multiple_outputs=False)
    def read_back(
        updates: list[dict[str, Any]], params: dict[str, Any]
    ) -> dict[str, dict[str, Any]]:
        checked: dict[str, dict[str, Any]] = {}
        with TrutoHook(TRUTO_CONN_ID) as hook:
            for update in updates:
                current = hook.get_opportunity(
                    update["opportunity_id"],
                    integrated_account_id=params.get("integrated_account_id"),
                    ignore_remote_data=True,
                )
                expected = update["body"]["amount"]
                if current.get("amount") != expected:
                    raise ValueError(
                        f"opportunity {update['opportunity_id']}: amount is "
                        f"{current.get('amount')!r}, expected {expected!r}"
                    )
                checked[update["opportunity_id"]] = {
                    "amount": current.get("amount"),
                    "stage": (current.get("stage") or {}).get("id"),
                }
        return checked

    verified = read_back(enrichments)
    written >> verified
# [END howto_operator_truto_enrichment]
