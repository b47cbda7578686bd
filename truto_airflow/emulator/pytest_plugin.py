"""pytest plugin (auto-loaded through the ``pytest11`` entry point): Truto emulator fixtures.

* ``truto_emulator`` - function-scoped: the session's emulator, ``reset()`` before the test, with
  ``AIRFLOW_CONN_TRUTO_DEFAULT`` pointing at it (HubSpot account as the default account).
* ``truto_emulator_factory`` - start emulators with a custom :class:`EmulatorConfig`; each is
  stopped at the end of the test.

This module is imported by *every* pytest run in an environment where the provider is installed,
so it imports nothing heavy at module level: no Airflow, Starlette or uvicorn until a fixture is
actually used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from truto_airflow.emulator.config import EmulatorConfig
    from truto_airflow.emulator.server import EmulatorHandle

__all__ = ["truto_emulator", "truto_emulator_factory", "truto_emulator_session"]

CONN_ENV = "AIRFLOW_CONN_TRUTO_DEFAULT"


@pytest.fixture(scope="session")
def truto_emulator_session() -> Iterator[EmulatorHandle]:
    """One emulator (thread mode, default config) shared by the whole session."""
    from truto_airflow.emulator.server import run_emulator

    with run_emulator() as handle:
        yield handle


@pytest.fixture
def truto_emulator(
    truto_emulator_session: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> EmulatorHandle:
    """A freshly reset emulator; ``truto_default`` connects to it as the HubSpot account."""
    truto_emulator_session.reset()
    monkeypatch.setenv(CONN_ENV, truto_emulator_session.airflow_conn_json("hubspot"))
    return truto_emulator_session


@pytest.fixture
def truto_emulator_factory(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., EmulatorHandle]]:
    """``factory(config=None, *, subprocess=False, set_connection=True, **config_fields)``."""
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
