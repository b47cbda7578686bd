"""Integration fixtures: the Truto emulator on loopback and helpers to run example DAGs."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import ROOT

if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun

    from truto_airflow.emulator import EmulatorHandle


@pytest.fixture
def emulator(truto_emulator: EmulatorHandle) -> EmulatorHandle:
    """The emulator plugin's fixture: a real uvicorn server on 127.0.0.1, reset for each test,
    ``truto_default`` pointing at its HubSpot account, a migrated metadata DB."""
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


@dataclasses.dataclass(frozen=True)
class Distribution:
    """The sdist and wheel built from this checkout."""

    sdist: pathlib.Path
    wheel: pathlib.Path


@pytest.fixture(scope="session")
def built_dist(tmp_path_factory: pytest.TempPathFactory) -> Distribution:
    """Build the sdist and wheel once per session (about 5 s), or take the ones `make dist` built
    (``TRUTO_DIST_DIR``), so the checks run on exactly what a release would upload.

    The build uses this venv's setuptools (`--no-build-isolation`) so it needs no network."""
    given = os.environ.get("TRUTO_DIST_DIR")
    if given:
        out = pathlib.Path(given).resolve()
    else:
        out = tmp_path_factory.mktemp("dist")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "uv",
                "build",
                "-q",
                "--no-build-isolation",
                "--offline",
                "--python",
                sys.executable,
                "--out-dir",
                str(out),
                str(ROOT),
            ],
            check=True,
            timeout=300,
        )
    (sdist,) = out.glob("truto_airflow-*.tar.gz")
    (wheel,) = out.glob("truto_airflow-*.whl")
    return Distribution(sdist=sdist, wheel=wheel)
