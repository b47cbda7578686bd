"""The built sdist and wheel: what a release would upload is complete, honest and renders."""

from __future__ import annotations

import email.parser
import re
import subprocess
import sys
import tarfile
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import truto_airflow
from tests.conftest import ROOT
from tests.integration.conftest import Distribution

pytestmark = pytest.mark.integration

PYPROJECT = (ROOT / "pyproject.toml").read_text()  # tomllib is 3.11+; the suite runs on 3.10


def _wheel_files(dist: Distribution) -> set[str]:
    with zipfile.ZipFile(dist.wheel) as zf:
        return set(zf.namelist())


def _wheel_metadata(dist: Distribution) -> email.message.Message:
    with zipfile.ZipFile(dist.wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(zf.read(name).decode())


def test_twine_check_passes_metadata_and_readme_rendering(built_dist: Distribution) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "check",
            "--strict",
            str(built_dist.sdist),
            str(built_dist.wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("PASSED") == 2


def test_wheel_ships_the_package_data_and_license(built_dist: Distribution) -> None:
    files = _wheel_files(built_dist)
    assert "truto_airflow/py.typed" in files
    data = {p.name for p in (ROOT / "truto_airflow" / "data").glob("*.json")}
    assert data, "no package data to check"
    assert {f"truto_airflow/data/{name}" for name in data} <= files
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "truto_airflow").rglob("*.py")}
    assert sources <= files, f"missing from the wheel: {sorted(sources - files)}"
    assert any(re.search(r"\.dist-info/licenses/LICENSE$", f) for f in files)
    # Only the package: no tests, examples, benchmarks or scripts installed into site-packages.
    assert {f.split("/", 1)[0] for f in files} == {
        "truto_airflow",
        f"truto_airflow-{truto_airflow.__version__}.dist-info",
    }


def test_sdist_has_what_a_rebuild_needs(built_dist: Distribution) -> None:
    with tarfile.open(built_dist.sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "LICENSE", "truto_airflow/py.typed"} <= names
    assert "truto_airflow/data/opportunity_update_capabilities.json" in names


def test_wheel_metadata(built_dist: Distribution) -> None:
    meta = _wheel_metadata(built_dist)
    assert meta["Name"] == "truto-airflow"
    assert meta["Version"] == truto_airflow.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Description-Content-Type"] == "text/markdown"
    # Development tools are dependency groups, never extras users could install.
    assert set(meta.get_all("Provides-Extra")) == {"emulator", "bulk"}
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist")]
    airflow = next(r for r in requires if r.name == "apache-airflow")
    assert airflow.specifier == SpecifierSet(">=3.3.0,<4")
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert "truto.one" not in urls["Documentation"]


def test_python_classifiers_match_requires_python(built_dist: Distribution) -> None:
    meta = _wheel_metadata(built_dist)
    floor = SpecifierSet(meta["Requires-Python"])
    listed = sorted(
        (tuple(int(x) for x in c.rsplit(" ", 1)[1].split(".")))
        for c in meta.get_all("Classifier")
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert listed == [(3, minor) for minor in range(10, 14)]
    assert all(f"{major}.{minor}" in floor for major, minor in listed)
    assert "3.9" not in floor


def test_setuptools_floor_accepts_a_license_expression() -> None:
    # PEP 639 `license = "<SPDX expression>"` needs setuptools >= 77.
    assert re.search(r'^license = "Apache-2.0"$', PYPROJECT, flags=re.MULTILINE)
    (requires,) = re.findall(r"^requires = \[(.*)\]$", PYPROJECT, flags=re.MULTILINE)
    (req,) = [Requirement(r.strip().strip('"')) for r in requires.split(",")]
    assert req.name == "setuptools"
    assert "76.1" not in req.specifier and "77.0" in req.specifier
