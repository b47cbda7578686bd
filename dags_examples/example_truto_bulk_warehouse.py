"""Example: write warehouse rows back to the CRM with one bulk task.

``build_warehouse`` stands in for your warehouse: it creates a small sqlite database of scored
opportunities. ``export_rows`` streams a query result into a JSON Lines file (never the whole
result in memory or in XCom; use an ``ObjectStoragePath`` such as ``s3://bucket/run.jsonl`` when
workers do not share a disk) and returns its path. ``write_back`` is
``UpdateOpportunitiesOperator`` reading that file: bounded concurrency, per-account pacing,
every row ending ``updated``, ``failed`` or ``invalid``, and a summary in XCom.
"""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import tempfile
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from truto_airflow.operators.bulk import UpdateOpportunitiesOperator

TRUTO_CONN_ID = os.environ.get("TRUTO_CONN_ID", "truto_default")
WORK_DIR = pathlib.Path(
    os.environ.get("TRUTO_EXAMPLE_WORK_DIR")
    or pathlib.Path(tempfile.gettempdir()) / "truto_airflow_examples"
)

with DAG(
    dag_id="example_truto_bulk_warehouse",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "truto", "bulk"],
    doc_md=__doc__,
    params={
        "rows": Param(40, type="integer", minimum=1, description="Rows in the demo warehouse"),
        "max_failed_ratio": Param(0.0, type="number", minimum=0, maximum=1),
    },
) as dag:

    @task
    def build_warehouse(params: dict[str, Any], run_id: str) -> str:
        """A tiny 'warehouse' with one scored opportunity per row (ids from the emulator seed)."""
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        path = WORK_DIR / f"warehouse-{run_id.replace(':', '_').replace('+', '_')}.db"
        with sqlite3.connect(path) as db:
            db.execute("DROP TABLE IF EXISTS opportunity_scores")
            db.execute(
                "CREATE TABLE opportunity_scores (opportunity_id TEXT, amount REAL, "
                "close_date TEXT, score REAL)"
            )
            db.executemany(
                "INSERT INTO opportunity_scores VALUES (?, ?, ?, ?)",
                [
                    (f"opp-hubspot-{n:04d}", 1000.0 + 25 * n, "2026-12-31T00:00:00+00:00", n / 100)
                    for n in range(1, int(params["rows"]) + 1)
                ],
            )
        return str(path)

    @task
    def export_rows(db_path: str) -> str:
        """Stream the query into JSON Lines, one ``{"id", "body"}`` row per line."""
        out = pathlib.Path(db_path).with_suffix(".jsonl")
        with sqlite3.connect(db_path) as db, out.open("w") as fh:
            cursor = db.execute(
                "SELECT opportunity_id, amount, close_date FROM opportunity_scores ORDER BY 1"
            )
            for opp_id, amount, close_date in cursor:
                body = {"amount": amount, "close_date": close_date}
                fh.write(json.dumps({"id": opp_id, "body": body}) + "\n")
        return str(out)

    # [START howto_operator_truto_bulk]
    write_back = UpdateOpportunitiesOperator(
        task_id="write_back",
        truto_conn_id=TRUTO_CONN_ID,
        updates=export_rows(build_warehouse()),
        max_concurrency=16,
        max_failed_ratio="{{ params.max_failed_ratio }}",
        ignore_remote_data=True,
        progress_every_rows=10,
    )
    # [END howto_operator_truto_bulk]
