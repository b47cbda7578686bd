"""Provider registration: the dict validates against Airflow's own schemas and Airflow sees it."""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import pkgutil
import re
import subprocess
import sys
from importlib.metadata import distribution

import airflow
import jsonschema
import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

import truto_airflow
from tests.conftest import ROOT
from truto_airflow.get_provider_info import get_provider_info

AIRFLOW_DIR = pathlib.Path(airflow.__file__).parent


def _schema(name: str) -> dict[str, object]:
    return json.loads((AIRFLOW_DIR / name).read_text())  # type: ignore[no-any-return]


def test_matches_the_runtime_schema() -> None:
    jsonschema.validate(get_provider_info(), _schema("provider_info.schema.json"))


def test_connection_type_matches_the_strict_provider_yaml_schema() -> None:
    strict = _schema("provider.yaml.schema.json")
    conn_schema = strict["properties"]["connection-types"]  # type: ignore[index]
    definitions = {k: v for k, v in strict.items() if k in ("definitions", "$defs")}
    jsonschema.validate(get_provider_info()["connection-types"], {**conn_schema, **definitions})


def test_package_name_is_the_canonical_distribution_name() -> None:
    dist = distribution("truto-airflow")
    assert get_provider_info()["package-name"] == canonicalize_name(dist.metadata["Name"])
    assert dist.version == truto_airflow.__version__


def test_declared_classes_and_modules_import() -> None:
    info = get_provider_info()
    (conn,) = info["connection-types"]
    module, _, cls_name = conn["hook-class-name"].rpartition(".")
    hook_cls = getattr(importlib.import_module(module), cls_name)
    assert hook_cls.conn_type == conn["connection-type"] == "truto"
    assert hook_cls.hook_name == conn["hook-name"]
    assert hook_cls.conn_name_attr == "truto_conn_id"
    assert hook_cls.default_conn_name == "truto_default"
    for group in ("hooks", "operators"):
        for entry in info[group]:
            for mod in entry["python-modules"]:
                importlib.import_module(mod)
    for link in info["extra-links"]:
        module, _, cls_name = link.rpartition(".")
        assert hasattr(importlib.import_module(module), cls_name)


def test_every_operator_and_hook_module_is_declared() -> None:
    """A new module under operators/ or hooks/ must be listed, or Airflow never shows it."""
    info = get_provider_info()
    for group in ("operators", "hooks"):
        package = importlib.import_module(f"truto_airflow.{group}")
        present = {
            f"{package.__name__}.{m.name}"
            for m in pkgutil.iter_modules(package.__path__)
            if not m.name.startswith("_")
        }
        declared = {mod for entry in info[group] for mod in entry["python-modules"]}
        assert declared == present, f"get_provider_info()[{group!r}] must list exactly {present}"


def test_versions_start_with_this_version_and_each_has_a_changelog_entry() -> None:
    versions = get_provider_info()["versions"]
    assert versions[0] == truto_airflow.__version__
    assert versions == sorted(versions, key=Version, reverse=True)
    changelog = (ROOT / "CHANGELOG.md").read_text()
    released = re.findall(r"^## \[(\d[^\]]*)\]", changelog, flags=re.MULTILINE)
    assert released == versions, "CHANGELOG.md release sections and provider versions differ"
    assert "## [Unreleased]" in changelog


def test_documentation_url_is_this_projects_docs() -> None:
    urls = dict(
        (label.strip(), url.strip())
        for label, _, url in (
            v.partition(",") for v in distribution("truto-airflow").metadata.get_all("Project-URL")
        )
    )
    assert "truto.one" not in urls["Documentation"]


def test_ui_field_behaviour() -> None:
    (conn,) = get_provider_info()["connection-types"]
    ui = conn["ui-field-behaviour"]
    # port is shown: the hook honours it and Airflow 3.3's Test button needs a stored port
    assert set(ui["hidden-fields"]) == {"schema", "login"}
    assert "port" in ui["placeholders"]
    assert ui["relabeling"] == {"host": "Base URL", "password": "API token"}
    assert ui["placeholders"]["host"] == "https://api.truto.one"
    assert set(conn["conn-fields"]) == {"integrated_account_id", "timeout", "max_retries"}


@pytest.mark.integration
def test_airflow_lists_the_provider_and_its_connection_type() -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    airflow_bin = pathlib.Path(sys.executable).with_name("airflow")
    providers = subprocess.run(
        [str(airflow_bin), "providers", "list", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    names = {p["package_name"]: p for p in json.loads(providers.stdout)}
    assert names["truto-airflow"]["version"] == truto_airflow.__version__
    hooks = subprocess.run(
        [str(airflow_bin), "providers", "hooks", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    by_type = {h["connection_type"]: h for h in json.loads(hooks.stdout)}
    assert by_type["truto"]["class"] == "truto_airflow.hooks.truto.TrutoHook"
