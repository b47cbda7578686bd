"""Child process for (d) and (e): N mapped tasks run by Airflow itself (``dag.test()``).

Run by ``benchmarks.run`` once per DAG run, each in a fresh process with its own AIRFLOW_HOME and
a copy of one migrated sqlite DB (so neither side pays the other's cold start); prints one JSON
line. (d) maps ``UpdateOpportunityOperator`` over N rows, (e) maps the http provider's
``HttpOperator`` over the same rows the way a user would write it (PATCH, JSON body, the token in
the connection's extra headers).

``dag.test()`` runs every task in this one process, where a worker runs each task in a fresh
process. So that (d) pays what a worker pays, each of its tasks starts with an empty in-process
integration cache (``truto_airflow.account_integration.INTEGRATIONS``) and finds the account in
the worker's cache files, which start empty in this run's own directory: the first task makes
the preflight's lookup, the others read one small file.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from typing import Any


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


def _fresh_process_per_task() -> None:
    """Each task starts with what a new worker process has in memory: no remembered account."""
    from airflow.sdk.execution_time import supervisor

    from truto_airflow.account_integration import INTEGRATIONS

    run_task = supervisor.run_task_in_process

    def fresh(*args: Any, **kwargs: Any) -> Any:
        INTEGRATIONS.clear()
        return run_task(*args, **kwargs)

    supervisor.run_task_in_process = fresh  # dag.test() imports it from the module per task


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
    """``migrate`` (build the template DB once), or ``d`` / ``e`` with a spec: one DAG run."""
    import os
    import pathlib

    which = sys.argv[1]
    from airflow.utils import db

    if which == "migrate":
        t0 = time.perf_counter()
        db.initdb()
        print("RESULT " + json.dumps({"migrate_s": round(time.perf_counter() - t0, 1)}))
        return
    spec = json.loads(sys.argv[2])
    folder = pathlib.Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    (folder / "spec.json").write_text(json.dumps(spec))
    (folder / "bench_dags.py").write_text(DAG_FILE)
    os.environ["TRUTO_AIRFLOW_CACHE_DIR"] = str(folder / "truto-cache")  # empty: no earlier run's
    _fresh_process_per_task()
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder))
    if bag.import_errors:
        raise RuntimeError(str(bag.import_errors))
    dag_id, task_id = {"d": ("bench_mapped_truto", "update"), "e": ("bench_mapped_http", "patch")}[
        which
    ]
    dag = bag.get_dag(dag_id)
    assert dag is not None
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    dag_run = dag.test()
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    tasks = sorted(_durations(dag_run, task_id))
    result = {
        "rows": len(spec["ids"]),
        "seconds": round(seconds, 3),
        "rows_per_second": round(len(spec["ids"]) / seconds, 2),
        # CPU of the whole dag.test() process per task (Airflow's in-process API included):
        # steadier than wall time on a loaded machine.
        "cpu_ms_per_row": round(1000 * cpu / len(spec["ids"]), 2),
        "task_median_ms": round(1000 * statistics.median(tasks), 1) if tasks else None,
        "task_ms": [round(1000 * t, 1) for t in tasks],
        "states": _states(dag_run),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
