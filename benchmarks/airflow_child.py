"""Child process for (d), (da), (e), (pd), (pe): N mapped tasks run by Airflow itself.

Run by ``benchmarks.run`` once per DAG run, each in a fresh process with its own AIRFLOW_HOME and
a copy of one migrated sqlite DB (so neither side pays the other's cold start); prints one JSON
line. (d) maps ``UpdateOpportunityOperator`` over N rows (no asset event: its default), (da)
the same with ``outlets=list(DEFAULT_OUTLETS)`` (asset events on), (e) maps the http provider's
``HttpOperator`` over the same rows the way a user would write it (PATCH, JSON body, the token in
the connection's extra headers).

In-process, (d)/(da)/(e): ``dag.test()`` runs every task in this one process, where a worker runs
each task in a fresh process. So that (d) pays what a worker pays, each of its tasks starts with
an empty in-process integration cache (``truto_airflow.account_integration.INTEGRATIONS``) and
finds the account in the worker's cache files, which start empty in this run's own directory:
the first task makes the preflight's lookup, the others read one small file. What this hides:
the import of the operator's modules (paid once here) and Airflow's own per-process work.

Production-like, (pd)/(pe): ``dag.test(use_executor=True)`` with the LocalExecutor, whose
workers (spawned, so nothing of the DAG file is imported in them) run each task as a worker
does: Airflow's supervisor forks a task process, which parses the DAG file (imports included),
talks to an execution API server over HTTP and exits. Task durations are Airflow's own
(``TaskInstance`` start -> end).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pathlib
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any


def _cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


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


#: One file per operator: a task process parses only its own DAG's file, so it imports only
#: its own operator (the http provider, or truto_airflow), as in a real deployment.
_DAG_HEADER = """
import json, pathlib
import pendulum
from airflow.sdk import DAG

spec = json.loads((pathlib.Path(__file__).parent / "spec.json").read_text())
account, ids, body = spec["account"], spec["ids"], spec["body"]
start = pendulum.datetime(2024, 1, 1, tz="UTC")
"""
DAG_FILES = {
    "bench_truto.py": _DAG_HEADER
    + """
from truto_airflow.assets import DEFAULT_OUTLETS
from truto_airflow.operators.opportunities import UpdateOpportunityOperator

with DAG("bench_mapped_truto", schedule=None, start_date=start, catchup=False):
    UpdateOpportunityOperator.partial(
        task_id="update", integrated_account_id=account
    ).expand_kwargs([{"opportunity_id": i, "body": body} for i in ids])

with DAG("bench_mapped_truto_asset_events", schedule=None, start_date=start, catchup=False):
    UpdateOpportunityOperator.partial(
        task_id="update", integrated_account_id=account, outlets=list(DEFAULT_OUTLETS)
    ).expand_kwargs([{"opportunity_id": i, "body": body} for i in ids])
""",
    "bench_http.py": _DAG_HEADER
    + """
from airflow.providers.http.operators.http import HttpOperator

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
""",
}


#: Scenario -> (DAG, task, production-like). ``da`` is (d) with the asset alias as outlet.
#: ``pd`` / ``pe`` are (d) / (e) through the LocalExecutor, each task in its own task process.
SCENARIOS = {
    "d": ("bench_mapped_truto", "update", False),
    "da": ("bench_mapped_truto_asset_events", "update", False),
    "e": ("bench_mapped_http", "patch", False),
    "pd": ("bench_mapped_truto", "update", True),
    "pe": ("bench_mapped_http", "patch", True),
}


def _ms(values: list[float]) -> float | None:
    return round(1000 * statistics.median(values), 1) if values else None


@contextlib.contextmanager
def _execution_api() -> Iterator[None]:
    """``airflow api-server --apps execution`` on the port of ``execution_api_server_url``, as a
    worker's supervisor talks to it over HTTP (``dag.test()`` starts none). Up before the clock
    starts, stopped by its pid after."""
    import subprocess

    import httpx2

    url = os.environ["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    port = url.rsplit(":", 1)[1].split("/")[0]
    airflow = str(pathlib.Path(sys.executable).with_name("airflow"))
    home = pathlib.Path(os.environ["AIRFLOW_HOME"])
    with (home / "api-server.log").open("w") as log:
        proc = subprocess.Popen(
            [airflow, "api-server", "--apps", "execution", "-H", "127.0.0.1", "-p", port],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx2.get(url + "health", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((home / "api-server.log").read_text()[-3000:])
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _poll_like_a_scheduler(seconds: float) -> None:
    """``dag.test(use_executor=True)`` hands the executor a new task only in its poll loop, which
    sleeps 1 s whenever no task is schedulable: a freed worker slot would wait up to 1 s for its
    next task, and that wait (not the task) would dominate the figures. A busy scheduler reacts
    sooner, so this process's sleeps are capped at ``seconds`` (the tasks run in other
    processes, which this does not touch)."""
    sleep = time.sleep

    def capped(secs: float) -> None:
        sleep(min(secs, seconds))

    time.sleep = capped


def main() -> None:
    """``migrate`` (build the template DB once), or a scenario of :data:`SCENARIOS` with a spec:
    one DAG run."""
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
    for name, text in DAG_FILES.items():
        (folder / name).write_text(text)
    os.environ["TRUTO_AIRFLOW_CACHE_DIR"] = str(folder / "truto-cache")  # empty: no earlier run's
    dag_id, task_id, production = SCENARIOS[which]
    if production:
        # Workers start as a scheduler's do: Airflow imported, no DAG file, no provider. Each
        # task process (forked by its worker's supervisor) then parses the DAG file itself.
        multiprocessing.set_start_method("spawn", force=True)
        _poll_like_a_scheduler(0.1)
    else:
        _fresh_process_per_task()
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder))
    if bag.import_errors:
        raise RuntimeError(str(bag.import_errors))
    dag = bag.get_dag(dag_id)
    assert dag is not None
    with _execution_api() if production else contextlib.nullcontext():
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        workers0 = _cpu_seconds(resource.RUSAGE_CHILDREN)
        dag_run = dag.test(use_executor=production)
        seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
        # The executor's workers have exited and been reaped (the API server has not yet):
        # their CPU and their task processes'.
        workers = _cpu_seconds(resource.RUSAGE_CHILDREN) - workers0
    tis = [t for t in dag_run.get_task_instances() if t.task_id == task_id]
    tasks = sorted(
        (t.end_date - t.start_date).total_seconds() for t in tis if t.start_date and t.end_date
    )
    rows = len(spec["ids"])
    result = {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 2),
        "task_median_ms": _ms(tasks),
        "task_ms": [round(1000 * t, 1) for t in tasks],
        "states": _states(dag_run),
    }
    if production:
        slots = int(os.environ["AIRFLOW__CORE__PARALLELISM"])
        starts = [t.start_date for t in tis if t.start_date]
        ends = [t.end_date for t in tis if t.end_date]
        # From the moment dag.test() made the task schedulable (all N at once, so it includes
        # the wait for a free worker slot and grows with N / parallelism) to its end.
        scheduled = [
            (t.end_date - t.scheduled_dttm).total_seconds()
            for t in tis
            if t.scheduled_dttm and t.end_date
        ]
        result.update(
            parallelism=slots,
            # Steadier than wall time on a busy machine. It includes the workers' own start-up
            # (importing Airflow), the same for both operators, spread over the N tasks.
            worker_cpu_ms_per_task=round(1000 * workers / rows, 1),
            scheduled_to_end_median_ms=_ms(scheduled),
            # What a worker slot spends per task, from the first task's start to the last one's
            # end (the workers' own start-up excluded), task process start and exit included.
            slot_ms_per_task=round(
                1000 * (max(ends) - min(starts)).total_seconds() * slots / rows, 1
            )
            if starts and ends
            else None,
        )
    else:
        # CPU of the whole dag.test() process per task (Airflow's in-process API included):
        # steadier than wall time on a loaded machine. (With the executor the tasks' CPU is
        # in other processes, so it is not reported there.)
        result["cpu_ms_per_row"] = round(1000 * cpu / rows, 2)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
