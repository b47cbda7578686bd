"""How a finished (or stopped) bulk run becomes the task's result: its log report and failure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from truto_airflow.bulk.engine import BulkRunError
from truto_airflow.bulk.outcomes import format_outcome_table
from truto_airflow.bulk.progress import GuardedLog
from truto_airflow.data_safety import format_change
from truto_airflow.exceptions import TrutoBulkError, TrutoBulkFatalError, status_policy

__all__ = [
    "SUMMARY_XCOM_KEY",
    "decide_failure",
    "log_data_safety",
    "rejection_error",
    "stopped_early_error",
    "transient",
]

#: The summary is also pushed under this key, so it is in XCom even when the task fails.
SUMMARY_XCOM_KEY = "truto_bulk_summary"


def transient(code: str) -> bool:
    """Whether a row's final status (a summary ``status_codes`` key; ``none``: no HTTP answer)
    is an error a later task retry may get past (``exceptions.STATUS_POLICY``). 2xx keys count
    updated rows, not failures."""
    if code == "none":
        return True
    return code.isdigit() and int(code) >= 400 and status_policy(int(code)).task_retry_helps


def decide_failure(
    summary: Mapping[str, Any],
    *,
    max_failed: int | None,
    max_failed_ratio: float | None,
    count_invalid: bool = True,
) -> str | None:
    """Why the task should fail (``None`` = it succeeds). Defaults: any rejected row fails it."""
    outcomes = summary["outcomes"]
    rejected = int(outcomes.get("failed", 0)) + (
        int(outcomes.get("invalid", 0)) if count_invalid else 0
    )
    rows = int(summary["rows"])
    what = "failed or invalid" if count_invalid else "failed"
    if max_failed is None and max_failed_ratio is None:
        return f"{rejected} of {rows} rows {what}" if rejected else None
    if max_failed is not None and rejected > max_failed:
        return f"{rejected} of {rows} rows {what}, more than max_failed={max_failed}"
    if max_failed_ratio is not None and rows and rejected / rows > max_failed_ratio:
        return (
            f"{rejected} of {rows} rows {what} ({rejected / rows:.1%}), more than "
            f"max_failed_ratio={max_failed_ratio:.1%}"
        )
    return None


def rejection_error(reason: str, summary: Mapping[str, Any]) -> TrutoBulkError:
    """The task failure for a run that rejected too many rows: retryable when a failure was
    transient (a retry sends only rows not applied yet), fail-now otherwise."""
    any_transient = any(n and transient(code) for code, n in summary["status_codes"].items())
    message = (
        f"Bulk update rejected rows: {reason}. Every row was attempted; see the outcome "
        f"table above and XCom {SUMMARY_XCOM_KEY!r}"
    )
    if any_transient:
        return TrutoBulkError(
            f"{message}. Some failures were transient (429/5xx/network): a task retry "
            "sends only rows not applied yet"
        )
    return TrutoBulkFatalError(
        f"{message}. No failure was transient, so a retry could not help; fix the rows "
        "(or the account) and re-run"
    )


def stopped_early_error(
    error: BulkRunError, context: Mapping[str, Any], data_safety: dict[str, Any], logger: Any
) -> TrutoBulkError:
    """The task failure for a run the engine stopped: names the cause, keeps the summary.

    Retryable unless the cause itself is a fail-now error: rows the ledger recorded are
    skipped by the retry, the others are resent under the same Idempotency-Keys. Logging and
    the XCom push are best effort here (their pipes may be what broke), so the cause is what
    the task reports.
    """
    log = GuardedLog.wrap(logger)
    summary = error.summary
    summary["data_safety"] = data_safety
    counts = ", ".join(f"{k}={v}" for k, v in summary["outcomes"].items() if v)
    message = (
        f"Bulk update stopped early: {error.where} failed: {summary['aborted']['cause']}. "
        f"{summary['rows']} row(s) read: {counts or 'none finished'}. A task retry skips the "
        "rows the ledger recorded and sends the rest with the same Idempotency-Keys"
    )
    ledger = summary["ledger"]
    if ledger["unsaved"]:
        message += (
            f"; {ledger['unsaved']} applied row(s) are not in the ledger ({ledger['error']}): "
            "a retry sends them again and Truto replays them by key"
        )
    log.error("%s", message)
    log.info("Bulk update outcomes:\n%s", format_outcome_table(summary))
    ti = context.get("ti")
    if ti is not None:
        try:
            ti.xcom_push(key=SUMMARY_XCOM_KEY, value=summary)
        except Exception as exc:
            log.warning("Could not push the summary to XCom (%s: %s)", type(exc).__name__, exc)
    if isinstance(error.cause, AirflowFailException):
        return TrutoBulkFatalError(message)
    return TrutoBulkError(message)


def log_data_safety(log: Any, info: Mapping[str, Any]) -> None:
    """The data-safety part of the task log: preflight refusals, fields sent unapplied, the
    current-state read and the dry-run plan."""
    if info["preflight_invalid_rows"]:
        log.warning(
            "Preflight refused %d row(s) before sending (outcome 'invalid'; reasons in the "
            "rejected rows)",
            info["preflight_invalid_rows"],
        )
    for key, count in info["unsupported_fields_sent"].items():
        log.warning("%d row(s) sent a field the CRM does not apply (%s)", count, key)
    if "current_state" in info:
        log.info("Current state read with: %s", info["current_state"])
    plan = info.get("plan")
    if plan is not None:
        log.info("Dry run: no write was sent; plan of %d row(s):", plan["count"])
        for row in plan["rows"]:
            changes = ", ".join(
                format_change(name, change) for name, change in (row.get("changes") or {}).items()
            )
            log.info("  %s %s: %s", row["id"], row["outcome"], changes or row.get("message", ""))
        if plan["location"]:
            log.info("Full plan written to %s", plan["location"])
