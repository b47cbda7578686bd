"""Every exception class truto-airflow defines derives from ``TrutoError``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import truto_airflow
from truto_airflow.exceptions import TrutoError


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(truto_airflow.__path__, "truto_airflow."):
        # The emulator is a fake Truto server for tests; its exceptions become HTTP answers.
        if not info.name.startswith("truto_airflow.emulator"):
            names.append(info.name)
    return names


def test_every_exception_class_in_the_package_derives_from_truto_error() -> None:
    found = []
    for name in _modules():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("truto_airflow"):
                found.append(obj)
    strays = sorted(
        {f"{c.__module__}.{c.__qualname__}" for c in found if not issubclass(c, TrutoError)}
    )
    assert strays == []
    assert len(set(found)) >= 20  # the walk did see the tree
