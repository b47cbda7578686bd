"""Example: the whole enrichment loop, export -> score -> partition -> write back -> summary.

1. ``export`` (:class:`ExportOpportunitiesOperator`) streams every opportunity of the chosen
   integrated accounts into one JSON Lines file (cursor pagination, retries, atomic output).
2. ``score`` is plain Python with no network: it reads the export line by line and writes one
   update row per opportunity, ``{"id", "integrated_account_id", "body": {"custom_fields":
   {"deal_score": ...}}}``. Replace it with your model, a dbt job or a warehouse query.
3. ``partition`` (:class:`PartitionByAccountOperator`) splits the rows into chunk files that
   never mix accounts, so each mapped write task paces one account's rate-limit budget.
4. ``write_scores`` maps ``UpdateOpportunitiesOperator`` over the chunks with
   ``skip_unchanged=True``: a second run of the same scores sends nothing (all ``unchanged``).
   Each instance emits an asset event per account (``truto://<host>/<account>/crm/
   opportunities``) with its counts; ``example_truto_enrichment_consumer`` is scheduled on it.
5. ``summary`` adds up the chunk summaries.

Memory stays flat at every step: files flow between tasks, XCom carries paths and counts.
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
from truto_airflow.operators.export import ExportOpportunitiesOperator
from truto_airflow.operators.partition import PartitionByAccountOperator

TRUTO_CONN_ID = os.environ.get("TRUTO_CONN_ID", "truto_default")
WORK_DIR = pathlib.Path(
    os.environ.get("TRUTO_EXAMPLE_WORK_DIR")
    or pathlib.Path(tempfile.gettempdir()) / "truto_airflow_examples"
)
#: One folder per run: ``run_id`` without the characters some file systems refuse.
RUN_DIR = f"{WORK_DIR}/loop-{{{{ run_id | replace(':', '_') | replace('+', '_') }}}}"


def deal_score(opportunity: dict[str, Any]) -> int:
    """A stand-in model: 0-100 from the amount (bigger deals score higher, with diminishing
    returns). Deterministic, so a second run produces the same scores."""
    amount = opportunity.get("amount")
    if not isinstance(amount, (int, float)) or amount <= 0:
        return 0
    return round(100 * amount / (amount + 50_000))


with DAG(
    dag_id="example_truto_enrichment_loop",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "truto", "bulk", "export"],
    doc_md=__doc__,
    params={
        # None: the connection's default integrated account.
        "integrated_account_ids": Param(None, type=["null", "array"]),
        "chunk_size": Param(5000, type="integer", minimum=1),
    },
) as dag:
    # [START howto_operator_truto_export]
    export = ExportOpportunitiesOperator(
        task_id="export",
        truto_conn_id=TRUTO_CONN_ID,
        integrated_account_ids="{{ params.integrated_account_ids }}",
        output_path=f"{RUN_DIR}/opportunities.jsonl",
        page_size=100,
        ignore_remote_data=True,
    )
    # [END howto_operator_truto_export]

    @task
    def score(export_summary: dict[str, Any]) -> str:
        """Read the export line by line, write one update row per opportunity."""
        source = pathlib.Path(export_summary["path"])
        target = source.with_name("scores.jsonl")
        with source.open(encoding="utf-8") as rows, target.open("w", encoding="utf-8") as out:
            for line in rows:
                opportunity = json.loads(line)
                row = {
                    "id": opportunity["id"],
                    "integrated_account_id": opportunity["integrated_account_id"],
                    "body": {"custom_fields": {"deal_score": deal_score(opportunity)}},
                }
                out.write(json.dumps(row) + "\n")
        return str(target)

    # [START howto_operator_truto_partition]
    partition = PartitionByAccountOperator(
        task_id="partition",
        rows=score(export.output),
        output_dir=f"{RUN_DIR}/chunks",
        max_rows="{{ params.chunk_size }}",
    )
    write_scores = UpdateOpportunitiesOperator.partial(
        task_id="write_scores",
        truto_conn_id=TRUTO_CONN_ID,
        skip_unchanged=True,
        ignore_remote_data=True,
        max_concurrency=8,
    ).expand_kwargs(partition.output)
    # [END howto_operator_truto_partition]

    @task
    def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
        """Add up the outcome counts of every chunk."""
        totals: dict[str, int] = {}
        # Index by len(): iterating a mapped task's results probes one past the end, which
        # Airflow logs as an "XCom not found" error.
        for n in range(len(results)):
            for outcome, count in results[n]["outcomes"].items():
                totals[outcome] = totals.get(outcome, 0) + int(count)
        print(f"Enrichment loop: {totals} over {len(results)} chunk(s)")
        return {"chunks": len(results), "outcomes": totals}

    summary(write_scores.output)
