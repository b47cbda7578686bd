"""Docs that cannot go stale: every Python block in README.md and docs/*.md compiles, and every
block that is a whole program runs against the emulator, DAGs included (``dag.test()`` must
succeed).

A block is a fragment, compiled only, when its fence says so (```` ```python test="compile" ````,
for snippets that use names defined elsewhere or need real Truto data) or when its first line
names a file of the README's example project (``# dags/my_dag.py``), which
tests/integration/test_user_project.py runs as a project. Everything else runs.
"""

from __future__ import annotations

import pathlib
import re
import runpy
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.markdown_blocks import DOCS, Block, python_blocks

# Values for the DAG params a docs DAG leaves to the trigger: the emulator's seed data.
RUN_CONF = {"opportunity_id": "opp-hubspot-0001"}

BLOCKS = python_blocks()


def test_the_docs_have_python_blocks_and_most_run() -> None:
    assert {b.doc.name for b in BLOCKS} >= {"README.md", "operator.md", "bulk.md", "emulator.md"}
    assert sum(b.runs for b in BLOCKS) > len(BLOCKS) / 2


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_block_compiles(block: Block) -> None:
    compile(block.source, block.id, "exec")


@pytest.mark.integration
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.runs], ids=lambda b: b.id)
def test_block_runs_against_the_emulator(
    block: Block, truto_emulator: Any, tmp_path: pathlib.Path
) -> None:
    from airflow.sdk import DAG

    # A real file, so DAGs get a real fileloc; the name says where the block came from.
    path = tmp_path / (re.sub(r"\W", "_", block.id) + ".py")
    path.write_text(block.source)
    namespace = runpy.run_path(str(path), run_name="docs_block")
    for dag in {id(v): v for v in namespace.values() if isinstance(v, DAG)}.values():
        conf = {key: value for key, value in RUN_CONF.items() if key in dag.params}
        run = dag.test(run_conf=conf)
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert run.state == "success", f"{block.id}: DAG {dag.dag_id} {states}"


def test_every_example_dag_is_described() -> None:
    """No count to go stale: each file in dags_examples/ is named in README.md or docs/."""
    text = "\n".join(doc.read_text() for doc in DOCS)
    examples = sorted(p.stem for p in (ROOT / "dags_examples").glob("example_*.py"))
    assert examples
    missing = [name for name in examples if f"`{name}" not in text and f"/{name}.py" not in text]
    assert not missing, f"describe {missing} in docs/ (operator.md lists the examples)"
