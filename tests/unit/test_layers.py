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
