"""Child process for (d) and (e): N mapped tasks run by Airflow itself (``dag.test()``).

Run by ``benchmarks.run`` with a private AIRFLOW_HOME and a migrated sqlite DB; prints one JSON
line. (d) maps ``UpdateOpportunityOperator`` over N rows, (e) maps the http provider's
``HttpOperator`` over the same rows the way a user would write it (PATCH, JSON body, the token in
the connection's extra headers).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def _durations(dag_run: Any, task_id: str) -> list[float]:
    out = []
    for ti in dag_run.get_task_instances():
        if ti.task_id == task_id and ti.start_date and ti.end_date:
            out.append((ti.end_date - ti.start_date).total_seconds())
    return out


def _states(dag_run: Any) -> dict[str, int]:
    states: dict[str, int] = {}
    for ti in dag_run.get_task_instances():
        states[str(ti.state)] = states.get(str(ti.state), 0) + 1
    return states


DAG_FILE = """
import json, pathlib
import pendulum
from airflow.providers.http.operators.http import HttpOperator
from airflow.sdk import DAG
from truto_airflow.operators.opportunities import UpdateOpportunityOperator

spec = json.loads((pathlib.Path(__file__).parent / "spec.json").read_text())
account, ids, body = spec["account"], spec["ids"], spec["body"]
start = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG("bench_mapped_truto", schedule=None, start_date=start, catchup=False):
    UpdateOpportunityOperator.partial(
        task_id="update", integrated_account_id=account
    ).expand_kwargs([{"opportunity_id": i, "body": body} for i in ids])

with DAG("bench_mapped_http", schedule=None, start_date=start, catchup=False):
    HttpOperator.partial(
        task_id="patch",
        http_conn_id="truto_http",
        method="PATCH",
        headers={"Content-Type": "application/json"},
    ).expand_kwargs(
        [
            {
                "endpoint": f"/unified/crm/opportunities/{i}?integrated_account_id={account}",
                "data": json.dumps(body),
            }
            for i in ids
        ]
    )
"""


def main() -> None:
    import os
    import pathlib

    spec = json.loads(sys.argv[1])
    folder = pathlib.Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    (folder / "spec.json").write_text(json.dumps(spec))
    (folder / "bench_dags.py").write_text(DAG_FILE)
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    t0 = time.perf_counter()
    db.initdb()
    migrate_s = time.perf_counter() - t0
    bag = DagBag(dag_folder=str(folder))
    if bag.import_errors:
        raise RuntimeError(str(bag.import_errors))
    results: dict[str, Any] = {"migrate_s": round(migrate_s, 1)}
    for key, dag_id, task_id in (
        ("d", "bench_mapped_truto", "update"),
        ("e", "bench_mapped_http", "patch"),
    ):
        dag = bag.get_dag(dag_id)
        assert dag is not None
        t0 = time.perf_counter()
        dag_run = dag.test()
        seconds = time.perf_counter() - t0
        results[key] = {
            "rows": len(spec["ids"]),
            "seconds": round(seconds, 3),
            "task_seconds": _durations(dag_run, task_id),
            "states": _states(dag_run),
        }
    print("RESULT " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
