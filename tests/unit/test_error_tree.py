"""Every exception class truto-airflow defines derives from ``TrutoError``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

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


def _drawn_tree() -> dict[str, str]:
    """Class name -> the module the exceptions docstring's tree says defines it."""
    from truto_airflow import exceptions

    doc = exceptions.__doc__ or ""
    drawn = {"TrutoError": "truto_airflow.exceptions"}
    for line in doc.splitlines():
        match = re.search(r"[├└]── (\w+)[ *]*(?:\(([\w.]+);)?", line)
        if match:
            drawn[match[1]] = f"truto_airflow.{match[2] or 'exceptions'}"
    return drawn


def test_the_tree_in_the_docstring_names_the_module_that_defines_each_class() -> None:
    drawn = _drawn_tree()
    misplaced = {
        name: module
        for name, module in drawn.items()
        if getattr(importlib.import_module(module), name, None) is None
        or getattr(importlib.import_module(module), name).__module__ != module
    }
    assert misplaced == {}


def test_the_tree_in_the_docstring_draws_every_error_class() -> None:
    defined = set()
    for name in _modules():
        for _, obj in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if issubclass(obj, TrutoError) and obj.__module__ == name:
                defined.add(obj.__name__)
    assert len(defined) >= 20  # the walk did see the tree
    assert defined - set(_drawn_tree()) == set()
