"""Benchmarks for the bulk operator (``make bench``; not part of ``make test``)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_child(
    module: str, args: list[str], env: Mapping[str, str], *, live: bool = False
) -> dict[str, Any]:
    """Run ``python -m <module> <args>`` (a fresh process, so ``ru_maxrss`` is its own) and
    return the JSON of its ``RESULT {...}`` line. ``live``: its stderr (progress lines) is
    shown as it runs instead of being kept for the error message."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=None if live else subprocess.PIPE,
        text=True,
        timeout=1800,
        check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(
            f"{module} failed:\n{proc.stdout[-2000:]}\n{(proc.stderr or '')[-3000:]}"
        )
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result
