"""The package root: version and lazy public re-exports."""

from __future__ import annotations

import subprocess
import sys

import pytest

import truto_airflow


def test_version_is_pep440() -> None:
    from packaging.version import Version

    assert str(Version(truto_airflow.__version__)) == truto_airflow.__version__


def test_importing_the_package_does_not_import_airflow() -> None:
    code = "import sys, truto_airflow; print('airflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_lazy_exports_resolve() -> None:
    from truto_airflow.hooks.truto import TrutoHook

    assert truto_airflow.TrutoHook is TrutoHook
    assert truto_airflow.TrutoAPIError.__name__ == "TrutoAPIError"
    with pytest.raises(AttributeError):
        _ = truto_airflow.NoSuchThing  # type: ignore[attr-defined]
