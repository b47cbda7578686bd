"""In-process fixtures: the ASGI app driven by Starlette's TestClient (httpx2 underneath)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from truto_airflow.emulator.app import create_app
from truto_airflow.emulator.config import EmulatorConfig
from truto_airflow.emulator.state import EmulatorState

TOKEN = "emu-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def config() -> EmulatorConfig:
    return EmulatorConfig(seed=3, opportunities=60, token=TOKEN)


@pytest.fixture
def app_and_state(config: EmulatorConfig) -> tuple[object, EmulatorState]:
    app = create_app(config)
    return app, app.state.emulator.state


@pytest.fixture
def state(app_and_state: tuple[object, EmulatorState]) -> EmulatorState:
    return app_and_state[1]


@pytest.fixture
def accounts(state: EmulatorState) -> dict[str, str]:
    return state.account_keys


@pytest.fixture
def client(app_and_state: tuple[object, EmulatorState]) -> Iterator[TestClient]:
    with TestClient(app_and_state[0], headers=dict(AUTH), raise_server_exceptions=True) as c:  # type: ignore[arg-type]
        yield c
