"""A DAG author's first test, as the README tells it: a fresh project outside this repository,
the built wheel with the `emulator` extra in a fresh venv, the README's DAG and test files
written verbatim, and plain `pytest` passes. Nothing of this checkout's test set-up leaks in: no
conftest, no AIRFLOW_* variables, no sys.path entries.

The venv is installed offline from uv's cache, pinned to the versions of the venv running this
test (so it needs no network and resolves nothing new); that takes about 10 s.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import Distribution
from tests.markdown_blocks import python_blocks

pytestmark = pytest.mark.integration


def readme_project_files() -> dict[str, str]:
    """``{relative path: source}`` of the README blocks that are files of its example project."""
    blocks = python_blocks([ROOT / "README.md"])
    return {b.project_file: b.source for b in blocks if b.project_file is not None}


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a new shell: nothing from this test session's Airflow set-up."""
    drop = ("AIRFLOW", "VIRTUAL_ENV", "PYTHONPATH", "PYTEST_", "TRUTO_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, **extra}


def test_readme_shows_a_dag_and_its_test() -> None:
    files = readme_project_files()
    assert set(files) == {"dags/my_dag.py", "tests/test_my_dag.py"}
    assert "def test_my_dag(truto_emulator):" in files["tests/test_my_dag.py"]
    assert 'my_dag.test().state == "success"' in files["tests/test_my_dag.py"]


def test_readme_project_passes_with_only_the_wheel_installed(
    built_dist: Distribution, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("user-project")
    assert not work.resolve().is_relative_to(ROOT.resolve())
    uv = [sys.executable, "-m", "uv"]
    env = _clean_env(UV_LINK_MODE="hardlink", UV_OFFLINE="1", UV_NO_PROGRESS="1")

    # The versions this session runs on; the project's own wheel comes from the build.
    freeze = subprocess.run(
        [*uv, "pip", "freeze", "--python", sys.executable],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    ).stdout
    pins = [
        line
        for line in freeze.splitlines()
        if line and not line.startswith(("-e", "truto-airflow", "truto_airflow"))
    ]
    constraints = work / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")

    venv = work / "venv"
    subprocess.run(
        [*uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env, timeout=120
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [
            *uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(python),
            "-c",
            str(constraints),
            f"truto-airflow[emulator] @ {built_dist.wheel.as_uri()}",
            "pytest",
        ],
        check=True,
        env=env,
        timeout=600,
    )

    project = work / "my-project"
    for rel, source in readme_project_files().items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)

    home = work / "home"  # a user's home: Airflow must not create ~/airflow in it
    home.mkdir()
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        env=_clean_env(HOME=str(home)),
        timeout=600,
    )
    tests = re.findall(
        r"^def (test_\w+)\(truto_emulator\)", "\n".join(readme_project_files().values()), re.M
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert f"{len(tests)} passed" in run.stdout, run.stdout[-3000:]
    # The plugin used a temporary AIRFLOW_HOME: nothing was written to ~/airflow or the project.
    assert list(home.iterdir()) == []
    assert sorted(p.name for p in project.iterdir()) == ["dags", "tests"]
