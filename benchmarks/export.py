"""Export benchmark: rows/s and peak RSS of ExportOpportunitiesOperator, 10,000 vs 100,000.

Each size runs against its own emulator subprocess (seed 1, fixed latency), the export in a
child process so ``ru_maxrss`` is the export's alone. A third run repeats the large export with
injected faults (5xx and dropped connections) and checks that every seeded opportunity is in
the file exactly once. ``python -m benchmarks.export [--quick]``, or part of ``make bench``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import tempfile
from typing import Any

from benchmarks import run_child

PAGE_SIZE = 1000
FAULTS = {"fault_rate": 0.15, "drop_rate": 0.1}


def _run_child(emu: Any, output: pathlib.Path) -> dict[str, Any]:
    accounts = [a for k, a in emu.accounts.items() if k != "needs_reauth"]
    env = {**os.environ, "AIRFLOW_CONN_TRUTO_DEFAULT": emu.airflow_conn_json("hubspot")}
    return run_child("benchmarks.export_child", [str(output), str(PAGE_SIZE), *accounts], env)


def _exactly_once(emu: Any, output: pathlib.Path) -> dict[str, int]:
    """Compare the file with the emulator's ids: missing, duplicated and unknown records."""
    seen: collections.Counter[tuple[str, str]] = collections.Counter()
    with output.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            # The emulator leaves out fields a CRM's response table does not list (Teamleader
            # has no "id" there); its vendor object in remote_data still names the record.
            opp = record.get("id") or (record.get("remote_data") or {}).get("id")
            seen[(record["integrated_account_id"], opp)] += 1
    expected = {
        (account, opp)
        for key, account in emu.accounts.items()
        if key != "needs_reauth"
        for opp in emu.opportunity_ids(account)
    }
    return {
        "expected": len(expected),
        "lines": sum(seen.values()),
        "missing": len(expected - set(seen)),
        "duplicated": sum(1 for n in seen.values() if n > 1),
        "unknown": len(set(seen) - expected),
    }


def bench_export(sizes: list[int], latency_ms: float, seed: int = 1) -> dict[str, Any]:
    from truto_airflow.emulator import EmulatorConfig, run_emulator

    out: dict[str, Any] = {"page_size": PAGE_SIZE, "faults": FAULTS}
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="truto-bench-export-"))
    for size in sizes:
        config = EmulatorConfig(seed=seed, opportunities=size, latency_ms=latency_ms)
        with run_emulator(config, subprocess=True) as emu:
            output = workdir / f"export-{size}.jsonl"
            out[str(size)] = _run_child(emu, output)
            if size == max(sizes):
                emu.configure(**FAULTS)
                faulty = workdir / f"export-{size}-faults.jsonl"
                run = _run_child(emu, faulty)
                faults = collections.Counter(r.fault for r in emu.requests(method="GET") if r.fault)
                run["injected_faults"] = dict(faults)
                run["check"] = _exactly_once(emu, faulty)
                out[f"{size}_faults"] = run
                faulty.unlink()
            output.unlink()
    small, big = (out[str(s)]["peak_rss_mb"] for s in sizes)
    out["rss_big_over_small"] = round(big / small, 3)
    return out


def report(results: dict[str, Any], sizes: list[int]) -> list[str]:
    lines = []
    for size in sizes:
        x = results[str(size)]
        lines.append(
            f"export {x['rows']:>7,} opportunities: {x['rows_per_second']:>8,.0f} rows/s, "
            f"peak RSS {x['peak_rss_mb']:.1f} MB ({x['bytes'] / 1e6:.1f} MB written)"
        )
    faulty = results[f"{max(sizes)}_faults"]
    lines.append(
        f"export with faults {faulty['injected_faults']}: {faulty['check']} "
        f"({faulty['rows_per_second']:,.0f} rows/s)"
    )
    lines.append(f"export RSS ratio: {results['rss_big_over_small']:.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description="ExportOpportunitiesOperator benchmark")
    parser.add_argument("--quick", action="store_true", help="2,000 vs 20,000")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    sizes = [2_000, 20_000] if args.quick else [10_000, 100_000]
    results = bench_export(sizes, args.latency_ms)
    print(json.dumps(results, indent=2))
    print("\n".join(report(results, sizes)))


if __name__ == "__main__":
    main()
