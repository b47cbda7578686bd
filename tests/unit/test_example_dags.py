"""Every example DAG imports cleanly and defines tasks (no metadata DB needed)."""

from __future__ import annotations

import pathlib

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions.asset import BaseAsset

from tests.conftest import ROOT

EXAMPLES = ROOT / "dags_examples"
EXAMPLE_FILES = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def test_there_are_examples() -> None:
    assert {p.stem for p in EXAMPLE_FILES} >= {
        "example_truto_enrichment",
        "example_truto_manual_update",
        "example_truto_mapped_updates",
    }


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_imports_and_has_tasks(path: pathlib.Path) -> None:
    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}
    assert bag.dags, f"{path.name} defines no DAG"
    for dag in bag.dags.values():
        assert dag.tasks, f"{dag.dag_id} has no tasks"
        # examples are triggered (by hand, or by an asset event), never by a clock
        assert dag.schedule is None or isinstance(dag.schedule, BaseAsset)
        assert "truto" in dag.tags
        assert dag.doc_md
        assert dag.start_date is not None
    text = path.read_text()
    assert "# [START " in text
    assert "# [END " in text


def test_manual_update_renders_native_objects() -> None:
    bag = DagBag(dag_folder=str(EXAMPLES / "example_truto_manual_update.py"))
    dag = bag.dags["example_truto_manual_update"]
    assert dag.render_template_as_native_obj is True
    assert set(dag.params) >= {"opportunity_id", "amount", "stage_id"}
    assert dag.params.get_param("amount").schema["type"] == "number"
