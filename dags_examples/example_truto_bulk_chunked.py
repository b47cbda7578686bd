"""Example: split a large input into chunks and map the bulk operator over them.

``split_into_chunks`` writes one JSON Lines file per chunk and returns their paths (small XCom);
``write_chunk`` is ``UpdateOpportunitiesOperator`` expanded over those paths, so the chunks run
as separate task instances that Celery or Kubernetes workers pick up in parallel. Every instance
runs in the ``truto_api`` pool, whose slots cap how many chunks write at once across the whole
deployment: total requests in flight <= pool slots x ``max_concurrency``. Create the pool once:
``airflow pools set truto_api 4 "Truto API writers"`` (see docs/scaling.md).
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from truto_airflow.operators.bulk import UpdateOpportunitiesOperator

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
    def split_into_chunks(params: dict[str, Any], run_id: str) -> list[str]:
        """Stand-in for a warehouse export: one JSONL file per ``chunk_size`` rows."""
        folder = WORK_DIR / f"chunks-{run_id.replace(':', '_').replace('+', '_')}"
        folder.mkdir(parents=True, exist_ok=True)
        size, total = int(params["chunk_size"]), int(params["rows"])
        paths: list[str] = []
        for start in range(0, total, size):
            path = folder / f"chunk-{start // size:05d}.jsonl"
            with path.open("w") as fh:
                for n in range(start + 1, min(start + size, total) + 1):
                    row = {"id": f"opp-hubspot-{n:04d}", "body": {"amount": 500 + n}}
                    fh.write(json.dumps(row) + "\n")
            paths.append(str(path))
        return paths

    # [START howto_operator_truto_bulk_chunked]
    UpdateOpportunitiesOperator.partial(
        task_id="write_chunk",
        truto_conn_id=TRUTO_CONN_ID,
        pool=TRUTO_POOL,
        max_concurrency=8,
        ignore_remote_data=True,
    ).expand(updates=split_into_chunks())
    # [END howto_operator_truto_bulk_chunked]
