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


def _type_checking_names(module: object) -> set[str]:
    """Names a package imports under ``if TYPE_CHECKING:`` (what type checkers see)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                names |= {alias.asname or alias.name for alias in stmt.names}
    return names


@pytest.mark.parametrize("package", ["truto_airflow", "truto_airflow.bulk"])
def test_one_export_list_and_the_type_checkers_view_agree(package: str) -> None:
    import importlib

    module = importlib.import_module(package)
    exports = set(module._EXPORTS)
    assert set(module.__all__) - {"__version__"} == exports
    assert _type_checking_names(module) == exports
    for name in exports:  # each resolves to the class/function of that name
        assert getattr(module, name).__name__ == name


def test_bulk_package_exports_the_plan_step_seam_and_deprecates_the_rest() -> None:
    import truto_airflow.bulk as bulk
    from truto_airflow.bulk.engine import BulkEngine

    assert set(bulk.__all__) == {"Outcome", "RowItem", "RowResult", "RowStep", "StepDecision"}
    with pytest.warns(DeprecationWarning, match=r"truto_airflow\.bulk\.engine"):
        assert bulk.BulkEngine is BulkEngine  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        _ = bulk.NoSuchThing  # type: ignore[attr-defined]


_IMPORTED = "import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('truto')))"


@pytest.mark.parametrize(
    "module", ["truto_airflow.operators.opportunities", "truto_airflow.bulk.steps"]
)
def test_single_row_operator_and_plan_seam_do_not_import_the_bulk_engine(module: str) -> None:
    import ast

    code = _IMPORTED.format(module=module)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(out.stdout)
    assert module in loaded
    assert "truto_airflow.bulk.engine" not in loaded
    assert "truto_airflow.operators.bulk" not in loaded


def test_old_bulk_operator_path_works_without_warnings() -> None:
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "from truto_airflow.operators.opportunities import UpdateOpportunitiesOperator as Old\n"
        "from truto_airflow.operators.bulk import UpdateOpportunitiesOperator as New\n"
        "import truto_airflow\n"
        "print(Old is New is truto_airflow.UpdateOpportunitiesOperator)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out.stderr
