"""A local, faithful stand-in for the Truto API, in the spirit of moto/LocalStack.

>>> from truto_airflow.emulator import EmulatorConfig, run_emulator
>>> with run_emulator(EmulatorConfig(seed=1)) as emu:  # doctest: +SKIP
...     emu.base_url, emu.accounts["hubspot"]

Names are loaded lazily so that the pytest plugin (imported by every pytest run) stays cheap and
Starlette/uvicorn are only imported when an emulator is actually started. See docs/emulator.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from truto_airflow.emulator.config import EmulatorConfig
    from truto_airflow.emulator.server import EmulatorHandle, RecordedRequest, run_emulator

__all__ = ["EmulatorConfig", "EmulatorHandle", "RecordedRequest", "run_emulator"]

_WHERE = {
    "EmulatorConfig": "truto_airflow.emulator.config",
    "EmulatorHandle": "truto_airflow.emulator.server",
    "RecordedRequest": "truto_airflow.emulator.server",
    "run_emulator": "truto_airflow.emulator.server",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
