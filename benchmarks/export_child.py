"""Child process: run ExportOpportunitiesOperator over every seeded account; report peak RSS.

Usage: ``python -m benchmarks.export_child OUTPUT PAGE_SIZE ACCOUNT [ACCOUNT ...]`` with
``AIRFLOW_CONN_TRUTO_DEFAULT`` pointing at the emulator. Prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main() -> None:
    output, page_size, accounts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    from truto_airflow.operators.export import ExportOpportunitiesOperator

    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    op = ExportOpportunitiesOperator(
        task_id="export_rss",
        output_path=output,
        integrated_account_ids=accounts,
        page_size=page_size,
        progress_every_rows=None,
        progress_every_seconds=None,
    )
    t0 = time.perf_counter()
    summary = op.execute({})  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        "RESULT "
        + json.dumps(
            {
                "rows": summary["rows"],
                "bytes": summary["bytes"],
                "seconds": round(seconds, 2),
                "rows_per_second": round(summary["rows"] / seconds, 1),
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "rss_before_run_mb": round(baseline_kb / 1024, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
