"""Example: split a large input into per-account chunks and map the bulk operator over them.

``split_into_chunks`` stands in for a warehouse export (one JSON Lines file), then
:func:`~truto_airflow.partition.partition_by_account` cuts it into chunk files of at most
``chunk_size`` rows that never mix integrated accounts, and returns one
``{"updates": path, "integrated_account_id": account}`` per chunk (small XCom). ``write_chunk``
is ``UpdateOpportunitiesOperator`` expanded over those, so the chunks run as separate task
instances that Celery or Kubernetes workers pick up in parallel, each pacing one account's
rate-limit budget. Every instance runs in the ``truto_api`` pool, whose slots cap how many chunks
write at once across the whole deployment: total requests in flight <= pool slots x
``max_concurrency``. Create the pool once: ``airflow pools set truto_api 4 "Truto API writers"``
(see docs/scaling.md).
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.operators.bulk import UpdateOpportunitiesOperator
from truto_airflow.partition import partition_by_account

TRUTO_CONN_ID = os.environ.get("TRUTO_CONN_ID", "truto_default")
TRUTO_POOL = os.environ.get("TRUTO_POOL", "truto_api")
WORK_DIR = pathlib.Path(
    os.environ.get("TRUTO_EXAMPLE_WORK_DIR")
    or pathlib.Path(tempfile.gettempdir()) / "truto_airflow_examples"
)

with DAG(
    dag_id="example_truto_bulk_chunked",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "truto", "bulk"],
    doc_md=__doc__,
    params={
        "rows": Param(45, type="integer", minimum=1),
        "chunk_size": Param(20, type="integer", minimum=1),
    },
) as dag:

    @task
    def split_into_chunks(params: dict[str, Any], run_id: str) -> list[dict[str, str]]:
        """Stand-in warehouse export (one JSONL file), partitioned by account."""
        folder = WORK_DIR / f"chunks-{run_id.replace(':', '_').replace('+', '_')}"
        folder.mkdir(parents=True, exist_ok=True)
        export = folder / "export.jsonl"
        with export.open("w") as fh:
            for n in range(1, int(params["rows"]) + 1):
                row = {"id": f"opp-hubspot-{n:04d}", "body": {"amount": 500 + n}}
                fh.write(json.dumps(row) + "\n")
        # Rows without an account belong to the connection's default account.
        default_account = TrutoHook(TRUTO_CONN_ID).resolve_account(None)
        return partition_by_account(
            str(export),
            folder / "chunks",
            max_rows=int(params["chunk_size"]),
            integrated_account_id=default_account,
        )

    # [START howto_operator_truto_bulk_chunked]
    UpdateOpportunitiesOperator.partial(
        task_id="write_chunk",
        truto_conn_id=TRUTO_CONN_ID,
        pool=TRUTO_POOL,
        max_concurrency=8,
        ignore_remote_data=True,
    ).expand_kwargs(split_into_chunks())
    # [END howto_operator_truto_bulk_chunked]
