"""Rooms: a lower layer does not know a higher one (see docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "truto_airflow"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_hook_room_imports_neither_bulk_nor_operators() -> None:
    for path in sorted((PACKAGE / "hooks").glob("*.py")):
        higher = {
            name
            for name in _imports(path)
            if name.startswith(("truto_airflow.bulk", "truto_airflow.operators"))
        }
        assert higher == set(), path.name
        # nor reaches into a higher room's transport by name
        assert "send_raw" not in path.read_text(), path.name


def test_no_module_is_over_500_lines() -> None:
    """A module past 500 lines holds more than one job (docs/architecture.md): split it where
    the jobs part, as hooks/ is split, instead of letting it grow."""
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert sizes, "no modules found"
    assert {name: n for name, n in sizes.items() if n > 500} == {}
