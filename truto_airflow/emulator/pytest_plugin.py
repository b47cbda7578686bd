"""pytest plugin (auto-loaded through the ``pytest11`` entry point): test your DAGs on the emulator.

* ``truto_emulator`` - function-scoped: the session's emulator, ``reset()`` before the test, with
  ``AIRFLOW_CONN_TRUTO_DEFAULT`` pointing at it (HubSpot account as the default account), a
  migrated metadata DB, and ``dag.test()`` able to run any DAG object the test holds. So
  ``def test_my_dag(truto_emulator): assert my_dag.test().state == "success"`` works as is.
* ``truto_airflow_db`` - session-scoped: the migrated metadata DB alone (no emulator).
* ``truto_emulator_factory`` - start emulators with a custom :class:`EmulatorConfig`; each is
  stopped at the end of the test (same Airflow set-up as ``truto_emulator``).

An isolated Airflow. Airflow reads its configuration once, when it is first imported, and a test
module typically imports a DAG (hence Airflow) while pytest collects it, before any fixture
runs. So before conftest files and test modules are imported, the plugin points Airflow at a
temporary ``AIRFLOW_HOME`` with a sqlite DB (no example DAGs, no default connections), and
``DAGS_FOLDER`` at ``<rootdir>/dags`` when the project has one (its parent is then importable,
so ``from dags.my_dag import my_dag`` works). This replaces any ``AIRFLOW_HOME`` from the shell:
tests never write runs into a real metadata DB. The preflight's account-lookup cache files go
there too (``TRUTO_AIRFLOW_CACHE_DIR``), not to ``~/.cache``. A conftest that sets these
variables itself wins (it runs later); ``truto_isolated_airflow = false`` in the pytest ini
turns the isolation off.

Import cost. This module is imported by *every* pytest run in an environment where the provider
is installed, so it imports nothing heavy at module level: no Airflow, Starlette or uvicorn until
a fixture is actually used. The early hook only sets environment variables and creates one
empty temporary directory, removed when pytest exits.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from truto_airflow.emulator.config import EmulatorConfig
    from truto_airflow.emulator.server import EmulatorHandle

__all__ = [
    "truto_airflow_db",
    "truto_emulator",
    "truto_emulator_factory",
    "truto_emulator_session",
]

CONN_ENV = "AIRFLOW_CONN_TRUTO_DEFAULT"
ISOLATION_INI = "truto_isolated_airflow"
# The bundle Airflow creates for DAGS_FOLDER when no bundle list is configured.
DEFAULT_BUNDLE = "dags-folder"

_saved_env: dict[str, str | None] = {}
_temp_home: str | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        ISOLATION_INI,
        "truto-airflow: run tests against a temporary AIRFLOW_HOME with a sqlite DB",
        type="bool",
        default=True,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Isolate Airflow before conftest files and test modules can import it (see module doc)."""
    global _temp_home
    if "airflow" in sys.modules or not early_config.getini(ISOLATION_INI):
        return  # too late to change Airflow's configuration, or not wanted
    _temp_home = tempfile.mkdtemp(prefix="truto-airflow-test-")
    project_dags = early_config.rootpath / "dags"
    dags_folder = project_dags if project_dags.is_dir() else pathlib.Path(_temp_home, "dags")
    env: dict[str, str | None] = {
        "AIRFLOW_HOME": _temp_home,
        "AIRFLOW_CONFIG": None,  # then $AIRFLOW_HOME/airflow.cfg
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_temp_home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
        "TRUTO_AIRFLOW_CACHE_DIR": str(pathlib.Path(_temp_home, "truto-cache")),
    }
    for key, value in env.items():
        _saved_env[key] = os.environ.get(key)
        _set_env(key, value)
    if project_dags.is_dir() and str(early_config.rootpath) not in sys.path:
        sys.path.append(str(early_config.rootpath))


def _set_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def pytest_unconfigure(config: pytest.Config) -> None:
    global _temp_home
    for key, value in _saved_env.items():
        _set_env(key, value)
    _saved_env.clear()
    if _temp_home is not None:
        shutil.rmtree(_temp_home, ignore_errors=True)
        _temp_home = None


@pytest.fixture(scope="session")
def truto_airflow_db() -> None:
    """Migrate the metadata DB Airflow is configured with (idempotent; about a second)."""
    from airflow.utils import db

    db.initdb()


def _serialize(dag: DAG) -> None:
    """Write ``dag`` to the metadata DB as the DAG processor would, so ``dag.test()`` can create a
    run for it wherever it was defined (a test function, a factory, a module outside DAGS_FOLDER).
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    manager = DagBundlesManager()  # type: ignore[no-untyped-call]
    manager.sync_bundles_to_db()
    names = [bundle.name for bundle in manager.get_all_dag_bundles()]
    bundle = DEFAULT_BUNDLE if DEFAULT_BUNDLE in names or not names else names[0]
    bag = DagBag(dag_folder=os.devnull, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, bundle, None)


@pytest.fixture
def _truto_dag_test(truto_airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """``DAG.test()`` serializes the DAG object first (Airflow 3 only runs serialized DAGs)."""
    from airflow.sdk import DAG

    original = DAG.test

    @functools.wraps(original)
    def test(self: DAG, *args: Any, **kwargs: Any) -> Any:
        _serialize(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DAG, "test", test)


@pytest.fixture(scope="session")
def truto_emulator_session() -> Iterator[EmulatorHandle]:
    """One emulator (thread mode, default config) shared by the whole session."""
    from truto_airflow.emulator.server import run_emulator

    with run_emulator() as handle:
        yield handle


@pytest.fixture
def truto_emulator(
    truto_emulator_session: EmulatorHandle,
    _truto_dag_test: None,
    monkeypatch: pytest.MonkeyPatch,
) -> EmulatorHandle:
    """A freshly reset emulator; ``truto_default`` connects to it as the HubSpot account; the
    metadata DB is migrated and ``dag.test()`` runs the DAG object it is called on."""
    truto_emulator_session.reset()
    monkeypatch.setenv(CONN_ENV, truto_emulator_session.airflow_conn_json("hubspot"))
    return truto_emulator_session


@pytest.fixture
def truto_emulator_factory(
    _truto_dag_test: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., EmulatorHandle]]:
    """``factory(config=None, *, subprocess=False, set_connection=True, **config_fields)``; the
    test gets the same Airflow set-up as with ``truto_emulator``."""
    from truto_airflow.emulator.config import EmulatorConfig
    from truto_airflow.emulator.server import run_emulator

    with contextlib.ExitStack() as stack:

        def factory(
            config: EmulatorConfig | None = None,
            *,
            subprocess: bool = False,
            set_connection: bool = True,
            **fields: Any,
        ) -> EmulatorHandle:
            if config is None:
                config = EmulatorConfig(**fields)
            elif fields:
                raise TypeError("pass either config or config fields, not both")
            handle = stack.enter_context(run_emulator(config, subprocess=subprocess))
            if set_connection:
                monkeypatch.setenv(CONN_ENV, handle.airflow_conn_json("hubspot"))
            return handle

        yield factory
