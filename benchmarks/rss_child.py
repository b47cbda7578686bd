"""Child process: run UpdateOpportunitiesOperator over a JSON Lines file; report peak RSS."""

from __future__ import annotations

import json
import resource
import sys
import time


def main() -> None:
    path, run_id = sys.argv[1], sys.argv[2]
    from truto_airflow.operators.bulk import UpdateOpportunitiesOperator

    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    op = UpdateOpportunitiesOperator(
        task_id="rss",
        updates=path,
        max_concurrency=32,
        progress_every_rows=None,
        progress_every_seconds=None,
    )
    t0 = time.perf_counter()
    summary = op.execute({"run_id": run_id})  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        "RESULT "
        + json.dumps(
            {
                "rows": summary["rows"],
                "outcomes": summary["outcomes"],
                "seconds": round(seconds, 2),
                "rows_per_second": summary["rows_per_second"],
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "rss_before_run_mb": round(baseline_kb / 1024, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
