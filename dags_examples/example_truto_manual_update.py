"""Example: a manually triggered update of one opportunity, with a form for its values."""

from __future__ import annotations

import datetime as dt
import os

import pendulum
from airflow.sdk import DAG, Param

from truto_airflow.operators.opportunities import UpdateOpportunityOperator

TRUTO_CONN_ID = os.environ.get("TRUTO_CONN_ID", "truto_default")

DOC_MD = """
### Manual opportunity update

Trigger this DAG from the UI ("Trigger DAG w/ config") and fill in the form: the opportunity id,
the new amount and the stage id. The DAG renders templates as native objects
(`render_template_as_native_obj=True`), so `{{ params.amount }}` reaches Truto as a JSON number,
not a string. The updated opportunity is the task's XCom, and the task's "Open in CRM" link opens
it in the CRM when the CRM's answer has `urls` (HubSpot's has none, per Truto's docs).
"""

# [START howto_operator_truto_manual_update]
with DAG(
    dag_id="example_truto_manual_update",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "truto"],
    doc_md=DOC_MD,
    render_template_as_native_obj=True,
    params={
        "opportunity_id": Param(
            "opp-hubspot-0001", type="string", minLength=1, description="Opportunity id."
        ),
        "amount": Param(25_000, type="number", minimum=0, description="New amount."),
        "stage_id": Param(
            "stage-hubspot-5", type="string", minLength=1, description="New stage id."
        ),
        "integrated_account_id": Param(
            None,
            type=["null", "string"],
            description="Integrated account UUID; empty uses the connection's default.",
        ),
    },
) as dag:
    UpdateOpportunityOperator(
        task_id="update_opportunity",
        truto_conn_id=TRUTO_CONN_ID,
        opportunity_id="{{ params.opportunity_id }}",
        integrated_account_id="{{ params.integrated_account_id }}",
        # One expression for the whole body: the native renderer returns the dict itself, so
        # an id that looks like a number ("12345") stays a string.
        body="{{ {'amount': params.amount, 'stage': {'id': params.stage_id}} }}",
        ignore_remote_data=True,
        # Only transient failures (429/5xx the hook could not absorb, network errors) use these
        # retries; a bad id, body or token fails at once.
        retries=2,
        retry_delay=dt.timedelta(minutes=1),
    )
# [END howto_operator_truto_manual_update]
