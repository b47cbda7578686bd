"""Benchmarks for the bulk operator (``make bench``; not part of ``make test``)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_child(
    module: str, args: list[str], env: Mapping[str, str], *, live: bool = False
) -> dict[str, Any]:
    """Run ``python -m <module> <args>`` (a fresh process, so ``ru_maxrss`` is its own) and
    return the JSON of its ``RESULT {...}`` line. ``live``: its progress lines (the operator's
    ``Bulk progress:`` log lines) are printed as they come."""
    # stderr to a file, so a chatty child never blocks on a full pipe while stdout is read
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if live and "Bulk progress:" in line:
                shown = line[line.index("Bulk progress:") :].split(" [")[0].rstrip()
                print(f"    {shown}", flush=True)
        proc.wait(timeout=1800)
        errors.seek(0)
        stderr = errors.read()
    found = next((x for x in lines if x.startswith("RESULT ")), None)
    if found is None:
        raise RuntimeError(f"{module} failed:\n{''.join(lines)[-2000:]}\n{stderr[-3000:]}")
    result: dict[str, Any] = json.loads(found[len("RESULT ") :])
    return result
