"""The README's performance figures are generated from a committed results file, never typed."""

from __future__ import annotations

import json
from typing import Any

from benchmarks import table


def test_readme_table_is_rendered_from_the_published_results() -> None:
    results = json.loads(table.PUBLISHED.read_text())
    readme = table.README.read_text()
    assert table.current_section(readme) == table.readme_section(results), (
        "README.md's performance section differs from benchmarks/results/README-table.json: "
        "regenerate it with `python -m benchmarks.table --write <results.json>`"
    )


def test_targets_follow_the_ratios() -> None:
    scenarios = {
        "a32": {"rows_per_second": 900.0, "cpu_ms_per_row": 0.3},
        "f32": {"rows_per_second": 1000.0, "cpu_ms_per_row": 0.2},
        "a128": {"rows_per_second": 800.0, "cpu_ms_per_row": 0.31},
        "f128": {"rows_per_second": 1000.0, "cpu_ms_per_row": 0.2},
        "d": {"rows_per_second": 10.0, "task_median_ms": 70.0},
        "e": {"rows_per_second": 10.0, "task_median_ms": 69.0},
    }
    results = {"scenarios": scenarios}
    table.add_ratios(results)
    assert results["ratios"]["rate_a_over_f_c32"] == 0.9
    assert results["targets"] == {
        "bulk >= 0.9 x aiohttp at c=32": True,
        "bulk CPU per row <= 1.5 x aiohttp at c=32": True,
        "bulk >= 0.85 x aiohttp at c=128": False,
        "bulk CPU per row <= 1.5 x aiohttp at c=128": False,
        "mapped UpdateOpportunityOperator task median <= HttpOperator's": False,
    }


def test_marginal_cpu_splits_the_fixed_per_task_cost_and_decides_the_cpu_target() -> None:
    from benchmarks.run import marginal_cpu

    # 0.5 s fixed + 0.1 ms per row: 3000 rows -> 0.8 s, 750 rows -> 0.575 s.
    full = {"rows": 3000, "cpu_ms_per_row": 800 / 3000, "rows_per_second": 900.0}
    small = {"rows": 750, "cpu_ms_per_row": 575 / 750, "rows_per_second": 500.0}
    split = marginal_cpu(full, small)
    assert split["cpu_marginal_ms_per_row"] == 0.1 and split["cpu_fixed_ms"] == 500.0
    scenarios = {
        "a32": {**full, **split},
        "f32": {"rows_per_second": 1000.0, "cpu_ms_per_row": 0.2, "cpu_marginal_ms_per_row": 0.08},
    }
    results = {"scenarios": scenarios, "latency_ms": 20.0}
    table.add_ratios(results)
    assert results["ratios"]["cpu_a_over_f_c32"] == 1.333  # the whole figure is still shown
    assert results["ratios"]["cpu_marginal_a_over_f_c32"] == 1.25
    assert results["targets"]["bulk CPU per row <= 1.5 x aiohttp at c=32"] is True
    scenarios["f32"]["cpu_marginal_ms_per_row"] = 0.06
    table.add_ratios(results)
    assert results["targets"]["bulk CPU per row <= 1.5 x aiohttp at c=32"] is False


def _production_pair(pd_ms: float, pe_ms: float, pd_states: dict[str, int]) -> dict[str, Any]:
    def side(ms: float, states: dict[str, int]) -> dict[str, Any]:
        return {
            "rows": 12,
            "rows_per_second": 1.0,
            "task_median_ms": ms,
            "slot_ms_per_task": 2 * ms,
            "worker_cpu_ms_per_task": 3 * ms,
            "parallelism": 2,
            "runs": [{"states": {"success": 12}}, {"states": states}],
        }

    return {
        "pd": side(pd_ms, pd_states),
        "pe": side(pe_ms, {"success": 12}),
        "d": {"rows_per_second": 10.0, "task_median_ms": 70.0},
        "da": {"rows_per_second": 10.0, "task_median_ms": 56.0},
        "e": {"rows_per_second": 10.0, "task_median_ms": 60.0},
    }


def test_the_production_like_pair_has_its_own_verdict_beside_the_in_process_one() -> None:
    results: dict[str, Any] = {"scenarios": _production_pair(600.0, 700.0, {"success": 12})}
    table.add_ratios(results)
    targets = results["targets"]
    assert targets["mapped UpdateOpportunityOperator task median <= HttpOperator's"] is False
    assert targets[table.PRODUCTION_TARGET] is True
    assert targets[table.PRODUCTION_SUCCESS] is True
    assert results["ratios"]["task_median_pd_over_pe"] == 0.857
    assert results["ratios"]["task_median_da_over_e"] == 0.933

    slower = {"scenarios": _production_pair(701.0, 700.0, {"success": 12})}
    table.add_ratios(slower)
    assert slower["targets"][table.PRODUCTION_TARGET] is False


def test_a_task_that_failed_in_any_round_is_a_missed_target_and_shown() -> None:
    results: dict[str, Any] = {
        "scenarios": _production_pair(600.0, 700.0, {"success": 11, "failed": 1}),
        "latency_ms": 20.0,
        "when": "2026-11-29T00:00:00+00:00",
        "cpus": 2,
        "python": "3.11",
        "rounds": 2,
    }
    table.add_ratios(results)
    assert results["targets"][table.PRODUCTION_SUCCESS] is False
    text = table.render(results)
    row = next(
        line for line in text.splitlines() if "`UpdateOpportunityOperator` tasks (12" in line
    )
    assert row.endswith("| 600 | 1,200 | 1,800 | 1 |")
    assert "asset events on" in text and "with asset events on 0.93" in text
    assert f"**missed**: {table.PRODUCTION_SUCCESS}" in text


def test_results_without_the_new_scenarios_render_no_production_table() -> None:
    results = json.loads(table.PUBLISHED.read_text())
    results["scenarios"] = {k: v for k, v in results["scenarios"].items() if k not in ("pd", "pe")}
    table.add_ratios(results)
    assert "production-like" not in table.render(results)
    assert table.PRODUCTION_TARGET not in results["targets"]
