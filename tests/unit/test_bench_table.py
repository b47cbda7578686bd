"""The README's performance figures are generated from a committed results file, never typed."""

from __future__ import annotations

import json

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
