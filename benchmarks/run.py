"""``make bench``: the bulk operator against the emulator, next to the ways people do it today.

Everything runs on loopback against the Truto emulator in a subprocess (fixed 20 ms latency,
seed 1). **Every scenario runs in its own process** (``benchmarks.scenario``,
``benchmarks.airflow_child``), paired scenarios alternate their order from round to round, and
each figure is the median of ``--rounds`` rounds (default 3). Beside rows/s each scenario reports
its process CPU time per row (client side: the emulator is another process). Writes
``benchmarks/results/bench-<time>.json`` and ``latest.json`` and prints the tables
``benchmarks.table`` renders (the README's are regenerated from such a file, never typed).

(a) UpdateOpportunitiesOperator (``execute()`` with a minimal context: the engine is what is
measured) and (f) the client ceiling, bare aiohttp with one session on the same event loop, at
concurrency 32 and 128 · (b) a sequential httpx2 loop · (c) the Truto Python SDK's pattern (a
faithful equivalent: truto-python-sdk needs Python >= 3.12, see ``clients.py``) · (d) N mapped
UpdateOpportunityOperator tasks through ``dag.test()`` (no asset event: its default) · (da)
the same with asset events on (``outlets=list(DEFAULT_OUTLETS)``) · (e) N mapped HttpOperator tasks,
same way (per-task median; each DAG run in a
fresh process on a copy of one migrated DB) · (pd)/(pe) the same DAGs production-like:
``dag.test(use_executor=True)`` with the LocalExecutor (``PRODUCTION_PARALLELISM`` slots) and an
execution API server, so every task runs in its own task process under Airflow's supervisor and
parses the DAG file itself, as on a worker (per-task duration as Airflow records it) · a
rate-limited run (4 accounts, R requests per 10 s each) · JSON Lines inputs of 10,000 and 100,000
rows end to end (rows/s, CPU per row, peak RSS; progress lines shown while it runs) · the export
benchmark (``benchmarks/export.py``): rows/s and peak RSS exporting 10,000 and 100,000
opportunities, and the large export again under injected faults, checked record by record.

Options: ``--quick`` (smaller N everywhere, for a smoke run), ``--rounds N``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from benchmarks import run_child, table

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

LATENCY_MS = 20.0
SEED = 1
CONCURRENCY = (32, 128)
# Fields every benchmarked CRM applies (currency is not applied on HubSpot: the preflight
# would refuse it, which is the point of the preflight).
BODY = {"amount": 4200, "name": "Benchmark deal"}
RATE_ACCOUNTS = ("hubspot", "pipedrive", "attio", "salesforce")
# Figures a round reports that are medians over rounds (the rest are taken from the median run).
MEDIAN_KEYS = (
    "rows_per_second",
    "cpu_ms_per_row",
    "p50_ms",
    "p99_ms",
    "task_median_ms",
    "scheduled_to_end_median_ms",
    "slot_ms_per_task",
    "worker_cpu_ms_per_task",
)
#: Worker slots of the production-like pair (pd)/(pe): low enough not to thrash 2 cores.
PRODUCTION_PARALLELISM = 2


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per key, the median over rounds; every run is kept beside it."""
    out: dict[str, Any] = dict(runs[0])
    for key in MEDIAN_KEYS:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = round(statistics.median(values), 4)
    out["seconds"] = round(statistics.median(r["seconds"] for r in runs), 3)
    out["runs"] = [
        {k: r[k] for k in ("rows_per_second", "cpu_ms_per_row", "seconds", "states") if k in r}
        for r in runs
    ]
    out.pop("task_ms", None)
    return out


#: The bulk pairs also run on 1/SMALL_FRACTION of the rows, to split CPU into a fixed per-task
#: part and a marginal part per row (:func:`marginal_cpu`).
SMALL_FRACTION = 4


def marginal_cpu(full: dict[str, Any], small: dict[str, Any]) -> dict[str, Any]:
    """CPU per row beyond the fixed per-task cost, from two row counts (medians over rounds):
    ``(cpu(N) - cpu(n)) / (N - n)``; the fixed part is ``cpu(N) - N x marginal``. For the
    operator the fixed part is what ``execute()`` does once (account lookup, clients, TLS
    context, event loop, connection warm-up); for the ceiling, its session and connections."""
    rows, few = full["rows"], small["rows"]
    cpu, cpu_few = full["cpu_ms_per_row"] * rows, small["cpu_ms_per_row"] * few
    marginal = (cpu - cpu_few) / (rows - few)
    return {
        "cpu_marginal_ms_per_row": round(marginal, 4),
        "cpu_fixed_ms": round(cpu - marginal * rows, 1),
        "small_run": {k: small.get(k) for k in ("rows", "rows_per_second", "cpu_ms_per_row")},
    }


def _alternating(
    rounds: int, sides: dict[str, Callable[[], dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """Each round runs every side once; the order rotates, so no side always goes first."""
    names = list(sides)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        if r % 2:
            order.reverse()
        for name in order:
            runs[name].append(sides[name]())
            print(f"  {name} round {r + 1}: {table.brief(runs[name][-1])}", flush=True)
    return {n: _median(v) for n, v in runs.items()}


class Bench:
    def __init__(self, emu: Any, args: argparse.Namespace) -> None:
        self.emu = emu
        self.args = args
        self.account = emu.accounts["hubspot"]
        self.env = {
            **os.environ,
            "AIRFLOW_CONN_TRUTO_DEFAULT": emu.airflow_conn_json("hubspot"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
        }
        home = tempfile.mkdtemp(prefix="truto-bench-home-")
        self.env.setdefault("AIRFLOW_HOME", home)
        self.env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home}/airflow.db")
        self._template_db: pathlib.Path | None = None

    def spec(self, kind: str, ids: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "base_url": self.emu.base_url,
            "token": self.emu.token,
            "account": self.account,
            "ids": ids,
            "body": BODY,
            "run_id": f"bench-{kind}-{time.time_ns()}",
            **extra,
        }

    def scenario(self, kind: str, ids: list[str], **extra: Any) -> Callable[[], dict[str, Any]]:
        # run_id is fresh for every call: a repeated run_id would skip rows the ledger holds.
        return lambda: self.run_scenario(self.spec(kind, ids, **extra))

    def run_scenario(self, spec: dict[str, Any], *, live: bool = False) -> dict[str, Any]:
        """``benchmarks.scenario`` in a fresh process, its spec in a file (ids make it long)."""
        path = pathlib.Path(tempfile.mkdtemp(prefix="truto-bench-spec-")) / "spec.json"
        path.write_text(json.dumps(spec))
        try:
            return run_child("benchmarks.scenario", [str(path)], self.env, live=live)
        finally:
            path.unlink()

    # -- (d) / (e) ------------------------------------------------------------------------------

    def _airflow_env(self) -> dict[str, str]:
        """A fresh AIRFLOW_HOME holding a copy of one migrated DB (migrated once per bench)."""
        if self._template_db is None:
            home = pathlib.Path(tempfile.mkdtemp(prefix="truto-bench-airflow-template-"))
            env = self._home_env(home)
            migrated = run_child("benchmarks.airflow_child", ["migrate"], env)
            print(f"  airflow DB migrated once in {migrated['migrate_s']} s", flush=True)
            self._template_db = home / "airflow.db"
        home = pathlib.Path(tempfile.mkdtemp(prefix="truto-bench-airflow-"))
        shutil.copy(self._template_db, home / "airflow.db")
        return self._home_env(home)

    def _home_env(self, home: pathlib.Path) -> dict[str, str]:
        port = self.emu.base_url.rsplit(":", 1)[-1]
        return {
            **self.env,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home),
            "AIRFLOW_CONN_TRUTO_HTTP": json.dumps(
                {
                    "conn_type": "http",
                    "host": "127.0.0.1",
                    "port": int(port),
                    "schema": "http",
                    "extra": {"Authorization": f"Bearer {self.emu.token}"},
                }
            ),
        }

    def mapped(self, which: str, ids: list[str]) -> Callable[[], dict[str, Any]]:
        spec = json.dumps({"account": self.account, "ids": ids, "body": BODY})
        return lambda: run_child(
            "benchmarks.airflow_child",
            [which, spec],
            self._production_env() if which.startswith("p") else self._airflow_env(),
        )

    def _production_env(self) -> dict[str, str]:
        """(pd)/(pe): the LocalExecutor (``PRODUCTION_PARALLELISM`` slots, sqlite in WAL mode)
        and an execution API server of the child's own on a free loopback port."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return {
            **self._airflow_env(),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(PRODUCTION_PARALLELISM),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__EXPOSE_CONFIG": "False",
        }

    # -- rate limit, JSON Lines ------------------------------------------------------------------

    def rate_limited(self, per_window: int, windows: int, concurrency: int) -> dict[str, Any]:
        """4 accounts, each ``per_window`` requests per 10 s; rows for ``windows`` windows each."""
        emu = self.emu
        emu.reset()
        emu.configure(rate_limit=per_window, latency_ms=LATENCY_MS)
        per_account = per_window * windows
        columns = [
            [(emu.accounts[a], i) for i in emu.opportunity_ids(emu.accounts[a])[:per_account]]
            for a in RATE_ACCOUNTS
        ]
        path = pathlib.Path(tempfile.mkdtemp(prefix="truto-bench-rl-")) / "rows.jsonl"
        with path.open("w") as fh:
            for group in zip(*columns, strict=True):
                for acct, opp in group:
                    fh.write(
                        json.dumps({"id": opp, "body": BODY, "integrated_account_id": acct}) + "\n"
                    )
        rows = per_account * len(RATE_ACCOUNTS)
        spec = self.spec("operator", [], path=str(path), rows=rows, concurrency=concurrency)
        result = self.run_scenario(spec)
        emu.configure(rate_limit=None)
        emu.reset()
        accounts = len(RATE_ACCOUNTS)
        updated = result["outcomes"]["updated"]
        elapsed = result["seconds"]
        allowed = accounts * per_window / 10.0
        # Fixed windows: the first window's budget is spendable at t=0, so steady-state goodput
        # is what got through *after* it, per second, over the allowed rate.
        steady = (updated - accounts * per_window) / elapsed if elapsed else 0.0
        return {
            "accounts": accounts,
            "limit_per_10s": per_window,
            "rows": rows,
            "updated": updated,
            "seconds": elapsed,
            "allowed_rows_per_second": allowed,
            "goodput_rows_per_second": round(steady, 2),
            "goodput_fraction": round(steady / allowed, 4),
            "requests": result["requests"],
            "responses_429": result["responses_429"],
            "share_429": round(result["responses_429"] / max(result["requests"], 1), 4),
            "outcomes": result["outcomes"],
        }

    def jsonl(self, sizes: list[int], ids: list[str], concurrency: int) -> dict[str, Any]:
        """The operator over JSON Lines files end to end, progress lines shown live."""
        out: dict[str, Any] = {}
        workdir = pathlib.Path(tempfile.mkdtemp(prefix="truto-bench-jsonl-"))
        for size in sizes:
            path = workdir / f"rows-{size}.jsonl"
            with path.open("w") as fh:
                for n in range(size):
                    row = {"id": ids[n % len(ids)], "body": {"amount": n, "name": f"Deal {n}"}}
                    fh.write(json.dumps(row) + "\n")
            every = max(size // 5, 1000)
            spec = self.spec(
                "operator",
                [],
                path=str(path),
                rows=size,
                concurrency=concurrency,
                progress_every_rows=every,
            )
            print(f"  {size:,} JSON Lines rows, concurrency {concurrency}:", flush=True)
            out[str(size)] = self.run_scenario(spec, live=True)
            print(f"  {size:,} rows: {table.brief(out[str(size)])}", flush=True)
            path.unlink()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description="truto-airflow bulk benchmarks")
    parser.add_argument("--quick", action="store_true", help="small N everywhere")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per scenario (median)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated groups: bulk,baselines,mapped,production,rate,jsonl,export "
        "(default: all)",
    )
    args = parser.parse_args()
    quick = args.quick
    rows_bulk = {32: 600, 128: 1200} if quick else {32: 3000, 128: 6000}
    rows_b = 40 if quick else 150
    rows_de = 6 if quick else 20
    rows_p = 6 if quick else 12  # each task is a process start: ~1 s of CPU
    rate_r = 40 if quick else 100
    jsonl_sizes = [2_000, 20_000] if quick else [10_000, 100_000]
    groups = set(filter(None, args.only.split(","))) or {
        "bulk",
        "baselines",
        "mapped",
        "production",
        "rate",
        "jsonl",
        "export",
    }

    from truto_airflow.emulator import EmulatorConfig, run_emulator

    load_before = os.getloadavg()
    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "latency_ms": LATENCY_MS,
        "seed": SEED,
        "rounds": args.rounds,
        "quick": quick,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "scenarios": {},
        "notes": [
            "every scenario runs in its own process; paired scenarios alternate their order; "
            "figures are medians over rounds; CPU ms per row is the client process's user + "
            "system time over the work, divided by rows (the emulator is another process)",
            "the HTTP stack (aiohttp, yarl, multidict, uvloop) is imported before the clock "
            "starts for the operator and the ceiling alike; the operator's other once-per-task "
            "work (account lookup, clients, TLS context, event loop) is inside its figures",
            f"bulk pairs also run on 1/{SMALL_FRACTION} of the rows: marginal CPU per row = "
            "(cpu(N) - cpu(N/4)) / (N - N/4), fixed CPU per task = cpu(N) - N x marginal "
            "(both from medians over rounds); the CPU target is judged on the marginal figure",
            "(f) is the client ceiling: bare aiohttp, one session, on the operator's event loop "
            "(uvloop when installed), nothing done per row but the request; the request is the "
            "operator's (same headers, compact body, a distinct Idempotency-Key per row), so the "
            "server does the same work for both",
            "(c) is a faithful equivalent of truto-python-sdk's update (a new aiohttp session per "
            "call, raise_for_status, no retries): the SDK needs Python >= 3.12",
            "(d)/(e) run N mapped tasks with dag.test() (sqlite, in-process), each DAG run in a "
            "fresh process on a copy of one migrated DB; the per-task figure is the median "
            "task instance duration; (da) is (d) with the asset alias as outlet (asset events on: "
            "a ValidateInletsAndOutlets call before execute and an event recorded after)",
            f"(pd)/(pe) are (d)/(e) production-like: dag.test(use_executor=True), LocalExecutor "
            f"with {PRODUCTION_PARALLELISM} worker slots (spawned: no DAG module imported before "
            "the first task), an execution API server (airflow api-server --apps execution), "
            "sqlite in WAL mode; every task runs in its own task process that parses the DAG "
            "file (imports included). Per-task figure: median task instance start -> end as "
            "Airflow records it; worker-slot ms per task: first start -> last end x slots / "
            "tasks (it includes Airflow's supervisor lingering after some tasks); worker CPU "
            "ms per task: the CPU of the workers and their task processes over the tasks (the "
            "workers' own start-up included, alike for both). dag.test()'s "
            "1 s poll is capped at 0.1 s (a scheduler hands a freed slot its next task sooner)",
        ],
    }
    scen = results["scenarios"]
    biggest = max(rows_bulk.values())
    with run_emulator(
        EmulatorConfig(seed=SEED, opportunities=biggest * 6, latency_ms=LATENCY_MS),
        subprocess=True,
    ) as emu:
        bench = Bench(emu, args)
        ids = emu.opportunity_ids(bench.account)[:biggest]
        assert len(ids) == biggest, f"the emulator seeded only {len(ids)} hubspot ids"
        print(f"emulator at {emu.base_url}: latency {LATENCY_MS:.0f} ms, seed {SEED}", flush=True)
        if "bulk" in groups:
            for c in CONCURRENCY:
                n = rows_bulk[c]
                small = n // SMALL_FRACTION
                paired = _alternating(
                    args.rounds,
                    {
                        f"a{c}": bench.scenario("operator", ids[:n], concurrency=c),
                        f"f{c}": bench.scenario("aiohttp", ids[:n], concurrency=c),
                        f"a{c}-small": bench.scenario("operator", ids[:small], concurrency=c),
                        f"f{c}-small": bench.scenario("aiohttp", ids[:small], concurrency=c),
                    },
                )
                for side in (f"a{c}", f"f{c}"):
                    paired[side].update(marginal_cpu(paired[side], paired.pop(f"{side}-small")))
                scen.update(paired)
        if "baselines" in groups:
            scen.update(
                _alternating(
                    args.rounds,
                    {
                        "b": bench.scenario("sequential", ids[:rows_b], concurrency=1),
                        "c": bench.scenario("sdk", ids[: rows_bulk[32]], concurrency=32),
                    },
                )
            )
        for group, n, kinds in (
            ("mapped", rows_de, ("d", "da", "e")),
            ("production", rows_p, ("pd", "pe")),
        ):
            if group in groups:
                sides = {k: bench.mapped(k, ids[:n]) for k in kinds}
                scen.update(_alternating(args.rounds, sides))
        if "rate" in groups:
            results["rate_limited"] = bench.rate_limited(rate_r, 3, 32)
            print(f"  rate-limited: {results['rate_limited']}", flush=True)
        if "jsonl" in groups:
            emu.reset()
            results["jsonl"] = bench.jsonl(jsonl_sizes, ids, 32)
    if "export" in groups:
        from benchmarks.export import bench_export
        from benchmarks.export import report as export_report

        results["export"] = bench_export(jsonl_sizes, LATENCY_MS, SEED)
        print("\n".join(f"  {line}" for line in export_report(results["export"], jsonl_sizes)))
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    table.add_ratios(results)
    print()
    print(table.render(results))
    if not all(results["targets"].values()):
        print("What bounds the bulk figures (profile): docs/bulk.md, section Performance.")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"bench-{stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS / f'bench-{stamp}.json'}")
    print(
        "README table: .venv/bin/python -m benchmarks.table --write benchmarks/results/latest.json"
    )


if __name__ == "__main__":
    main()
