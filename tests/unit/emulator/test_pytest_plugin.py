"""The pytest plugin in projects that do not use it: no import cost, and an isolation that is
in place before test modules import Airflow, that a conftest can override and the ini can turn
off. (tests/integration/test_user_project.py runs the fixture itself in a fresh project.)"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

HEAVY = ("airflow", "starlette", "uvicorn", "truto_airflow.emulator.server", "httpx2")


def test_importing_the_plugin_imports_nothing_heavy() -> None:
    code = (
        "import sys, truto_airflow.emulator.pytest_plugin\n"
        f"print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _pytest(project: pathlib.Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=120,
    )


def test_a_project_that_never_uses_the_fixture_gets_a_temporary_home_and_no_airflow(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "test_plain.py").write_text(
        textwrap.dedent(
            f"""
            import os, sys, tempfile

            def test_plain():
                home = os.environ["AIRFLOW_HOME"]
                assert home.startswith(tempfile.gettempdir()) and os.path.isdir(home)
                assert "/home/user/airflow" not in home
                assert os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{{home}}/airflow.db"
                assert os.environ["AIRFLOW__CORE__DAGS_FOLDER"] == {str(tmp_path / "dags")!r}
                assert os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
                assert "AIRFLOW_CONFIG" not in os.environ
                assert {str(tmp_path)!r} in sys.path  # `from dags.x import y` works
                assert not [m for m in sys.modules if m.startswith({HEAVY!r})]
            """
        )
    )
    run = _pytest(tmp_path, AIRFLOW_HOME="/home/user/airflow", AIRFLOW_CONFIG="/etc/airflow.cfg")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_a_conftest_wins_and_the_ini_turns_isolation_off(tmp_path: pathlib.Path) -> None:
    conftest = tmp_path / "conftest.py"
    conftest.write_text("import os\nos.environ['AIRFLOW__CORE__DAGS_FOLDER'] = '/srv/dags'\n")
    (tmp_path / "test_env.py").write_text(
        "import os\n"
        "def test_env():\n"
        "    assert os.environ['AIRFLOW__CORE__DAGS_FOLDER'] == '/srv/dags'\n"
        "    assert os.environ.get('AIRFLOW_HOME') == os.environ['EXPECTED_HOME']\n"
    )
    isolated = _pytest(tmp_path, AIRFLOW_HOME="/srv/airflow", EXPECTED_HOME="/srv/airflow")
    assert isolated.returncode == 1  # the plugin replaced the shell's AIRFLOW_HOME
    assert "assert os.environ.get('AIRFLOW_HOME') == os.environ['EXPECTED_HOME']" in isolated.stdout
    (tmp_path / "pytest.ini").write_text("[pytest]\ntruto_isolated_airflow = false\n")
    kept = _pytest(tmp_path, AIRFLOW_HOME="/srv/airflow", EXPECTED_HOME="/srv/airflow")
    assert kept.returncode == 0, kept.stdout + kept.stderr
