"""Test setup: a private AIRFLOW_HOME (set before anything imports Airflow) and shared fixtures."""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import uuid
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
_HOME = os.environ.get("TRUTO_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="truto-airflow-home-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags_examples")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ["AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS"] = "False"
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
# The integration cache files never go to the real ~/.cache (each test gets its own directory).
os.environ["TRUTO_AIRFLOW_CACHE_DIR"] = os.path.join(_HOME, "truto-cache", "session")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Timing-free property tests: a loaded 2-core CI machine must not turn slowness into failures.
settings.register_profile(
    "truto", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150
)
settings.load_profile("truto")

TOKEN = "test-token-5f2c9a7e41b8"  # distinctive, so tests can search logs and XCom for it
ACCOUNT_ID = "62f44730-dd91-461e-bd6a-aedd9e0ad79d"


def truto_conn_json(
    host: str = "https://api.truto.one",
    *,
    token: str = TOKEN,
    extra: dict[str, Any] | None = None,
) -> str:
    """An ``AIRFLOW_CONN_*`` value (JSON form) for a truto connection."""
    return json.dumps(
        {
            "conn_type": "truto",
            "host": host,
            "password": token,
            "extra": {"integrated_account_id": ACCOUNT_ID, **(extra or {})},
        }
    )


@pytest.fixture
def truto_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    """``truto_default`` pointing at the real base URL (requests are mocked in unit tests)."""
    monkeypatch.setenv("AIRFLOW_CONN_TRUTO_DEFAULT", truto_conn_json())
    return "truto_default"


@pytest.fixture(scope="session")
def airflow_db(truto_airflow_db: None) -> None:
    """A migrated metadata DB in the private AIRFLOW_HOME (only for dag.test() tests); the
    emulator plugin's fixture, so the rule lives in one place."""


@pytest.fixture
def memory_store() -> None:
    """Airflow's ObjectStoragePath on fsspec's in-memory file system (``memory://`` URLs)."""
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    attach("memory", fs=MemoryFileSystem())


@pytest.fixture(autouse=True)
def _forget_integrations(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Each test starts with an empty integration cache (preflight.INTEGRATIONS) and its own
    directory for the worker's cache files: a lookup remembered by an earlier test must not hide
    the requests a test counts."""
    from truto_airflow.preflight import INTEGRATIONS

    monkeypatch.setenv(
        "TRUTO_AIRFLOW_CACHE_DIR", os.path.join(_HOME, "truto-cache", uuid.uuid4().hex)
    )
    INTEGRATIONS.clear()
    yield
    INTEGRATIONS.clear()
