"""One benchmark scenario in a fresh process: ``python -m benchmarks.scenario SPEC.json``.

``benchmarks.run`` starts one of these per scenario and round, so no scenario pays another's
cold start, warms another's caches or shares its heap. The child prints one ``RESULT {json}``
line with rows, wall seconds, rows/s and the process CPU time spent on the work (user + system,
all threads, measured around the work only: imports and setup are excluded), per row.

Imports are excluded the same way for every kind: the HTTP stack both the operator and the
ceiling run on (aiohttp, yarl, multidict, uvloop) is imported before the clock starts
(:func:`_warm_imports`), as the ceiling's module imports always did; the operator imports them
lazily, so without this its figure carried ~0.2 s of imports the ceiling's did not. Everything
else the operator does once per task stays inside its figure (the preflight's account lookup,
the hook's clients and TLS context, the event loop); ``benchmarks.run`` separates that fixed
cost from the marginal CPU per row with a second, smaller row count.

The emulator runs in its own process (started by ``benchmarks.run``), so the CPU figure is the
client's alone. Spec keys: ``kind`` (below), ``base_url``, ``token``, ``account``, ``ids``,
``body``, ``concurrency`` and per-kind extras.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import sys
import time
from collections.abc import Callable
from typing import Any


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measured(rows: int, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    extra = work()
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1),
        "cpu_seconds": round(cpu, 3),
        "cpu_ms_per_row": round(1000 * cpu / rows, 4),
        **extra,
    }


def _warm_imports() -> None:
    """Import the HTTP stack every bulk kind runs on before any clock starts (module doc)."""
    import contextlib
    import importlib

    for name in ("aiohttp", "yarl", "multidict", "uvloop"):
        with contextlib.suppress(ImportError):  # uvloop is optional (and absent on Windows)
            importlib.import_module(name)


def operator(spec: dict[str, Any]) -> dict[str, Any]:
    """(a) UpdateOpportunitiesOperator's ``execute()`` with a minimal context."""
    from truto_airflow.operators.bulk import UpdateOpportunitiesOperator

    _warm_imports()

    updates: Any = spec.get("path") or [{"id": i, "body": spec["body"]} for i in spec["ids"]]
    every = spec.get("progress_every_rows")
    op = UpdateOpportunitiesOperator(
        task_id="bench_bulk",
        updates=updates,
        max_concurrency=spec["concurrency"],
        progress_every_rows=every,
        progress_every_seconds=10.0 if every else None,
    )  # progress lines go to stdout (Airflow's logger); benchmarks.run_child shows them live
    summary: dict[str, Any] = {}

    def work() -> dict[str, Any]:
        summary.update(op.execute({"run_id": spec["run_id"]}))  # type: ignore[arg-type]
        return {}

    rows = spec["rows"] if spec.get("path") else len(spec["ids"])
    out = _measured(rows, work)
    out.update(
        p50_ms=summary["latency_ms"]["p50"],
        p99_ms=summary["latency_ms"]["p99"],
        outcomes=summary["outcomes"],
        requests=summary["requests_sent"],
        responses_429=summary["rate_limited"],
        errors=summary["outcomes"]["failed"] + summary["outcomes"]["invalid"],
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    return out


def aiohttp_ceiling(spec: dict[str, Any]) -> dict[str, Any]:
    """(f) bare aiohttp, one session, same event loop as the operator (uvloop when installed)."""
    from benchmarks import clients

    _warm_imports()
    requests = clients.ceiling_requests(
        spec["base_url"], spec["token"], spec["account"], spec["ids"], spec["body"]
    )
    measured: dict[str, Any] = {}

    def work() -> dict[str, Any]:
        measured.update(clients.aiohttp_ceiling(requests, spec["concurrency"]).as_dict())
        return {}

    out = _measured(len(spec["ids"]), work)
    out.update(p50_ms=measured["p50_ms"], p99_ms=measured["p99_ms"], errors=measured["errors"])
    return out


def sequential(spec: dict[str, Any]) -> dict[str, Any]:
    """(b) a sequential httpx2 loop."""
    from benchmarks import clients

    args = (spec["base_url"], spec["token"], spec["account"], spec["ids"], spec["body"])
    return _measured(len(spec["ids"]), lambda: _timing(clients.sequential_httpx2(*args)))


def sdk(spec: dict[str, Any]) -> dict[str, Any]:
    """(c) the Truto SDK's pattern (a session per call)."""
    from benchmarks import clients

    args = (spec["base_url"], spec["token"], spec["account"], spec["ids"], spec["body"])
    return _measured(
        len(spec["ids"]), lambda: _timing(clients.sdk_pattern(*args, spec["concurrency"]))
    )


def _timing(measured: Any) -> dict[str, Any]:
    d = measured.as_dict()
    return {"p50_ms": d["p50_ms"], "p99_ms": d["p99_ms"], "errors": d["errors"]}


KINDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "operator": operator,
    "aiohttp": aiohttp_ceiling,
    "sequential": sequential,
    "sdk": sdk,
}


def main() -> None:
    spec = json.loads(pathlib.Path(sys.argv[1]).read_text())
    if spec.get("profile"):  # cProfile of the work, sorted by own time, to the given path
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(KINDS[spec["kind"]], spec)
        profiler.dump_stats(spec["profile"] + ".prof")
        stats = pstats.Stats(profiler, stream=open(spec["profile"], "w"))  # noqa: SIM115
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(40)
    else:
        result = KINDS[spec["kind"]](spec)
    result["pid"] = os.getpid()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
