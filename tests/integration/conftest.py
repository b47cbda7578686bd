"""Integration fixtures: the Truto emulator on loopback and helpers to run example DAGs."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import ROOT

if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun

    from truto_airflow.emulator import EmulatorHandle


@pytest.fixture
def emulator(truto_emulator: EmulatorHandle, airflow_db: None) -> EmulatorHandle:
    """The emulator plugin's fixture (a real uvicorn server on 127.0.0.1, reset for each test,
    ``truto_default`` pointing at its HubSpot account), plus a migrated metadata DB."""
    return truto_emulator


@pytest.fixture(scope="session")
def example_dags() -> DagBag:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags_examples"))
    assert bag.import_errors == {}
    return bag


def task_states(dag_run: DagRun) -> dict[tuple[str, int], tuple[str | None, int]]:
    """``{(task_id, map_index): (state, try_number)}`` of a finished run."""
    return {
        (ti.task_id, ti.map_index): (None if ti.state is None else str(ti.state), ti.try_number)
        for ti in dag_run.get_task_instances()
    }


def xcoms(dag_run: DagRun) -> dict[tuple[str, int, str], Any]:
    """Every XCom of the run, deserialised: ``{(task_id, map_index, key): value}``."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id)
        return {(r.task_id, r.map_index, r.key): XComModel.deserialize_value(r) for r in rows}


def task_log_text() -> str:
    """Everything the task log handler wrote under AIRFLOW_HOME/logs (if anything)."""
    import os

    logs = pathlib.Path(os.environ["AIRFLOW_HOME"]) / "logs"
    if not logs.exists():
        return ""
    return "\n".join(p.read_text(errors="replace") for p in sorted(logs.rglob("*")) if p.is_file())
