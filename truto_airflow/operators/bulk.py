"""``UpdateOpportunitiesOperator``: thousands of opportunity updates in one task.

Same models, validation and hook as the single-row operator; the engine lives in
:mod:`truto_airflow.bulk`. See docs/bulk.md and docs/scaling.md.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from truto_airflow.bulk.engine import BulkEngine, BulkRunError, BulkSettings
from truto_airflow.bulk.ledger import (
    LedgerStore,
    NullLedgerStore,
    PathLedgerStore,
    SuccessLedger,
    TaskStateLedgerStore,
)
from truto_airflow.bulk.outcomes import format_outcome_table
from truto_airflow.bulk.prepare import RowPreparer
from truto_airflow.bulk.rows import RowSource, open_source, resolve_path
from truto_airflow.bulk.runner import LoopRunner
from truto_airflow.bulk.safety import (
    CurrentState,
    DataSafetyStep,
    PlannedRejectedRows,
    PlanRecorder,
    scan_wanted_ids,
)
from truto_airflow.bulk.steps import RowStep
from truto_airflow.bulk.task_outcome import (
    SUMMARY_XCOM_KEY,
    decide_failure,
    log_data_safety,
    rejection_error,
    stopped_early_error,
)
from truto_airflow.bulk.task_outcome import transient as _transient  # noqa: F401 (old path)
from truto_airflow.bulk.transport import AiohttpTransport, aiohttp_available
from truto_airflow.exceptions import TrutoInputError
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.idempotency import RunIdentity
from truto_airflow.models.options import ResponseFormat, TrutoQueryOptions
from truto_airflow.operators._base import (
    QUERY_TEMPLATE_FIELDS,
    SAFETY_TEMPLATE_FIELDS,
    TrutoWriteOperator,
)
from truto_airflow.rendered import blank_to_none

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["SUMMARY_XCOM_KEY", "UpdateOpportunitiesOperator", "decide_failure"]


def _number(name: str, value: Any, *, kind: type = int, minimum: float = 0) -> Any:
    value = blank_to_none(value)
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise TrutoInputError(f"{name} must be a number, got {value!r}") from None
    if number < minimum:
        raise TrutoInputError(f"{name} must be >= {minimum}, got {value!r}")
    return number


def supervisor_watch() -> Callable[[], str | None]:
    """A bulk-engine watch: the run stops when this process's parent is gone.

    Why: in a deployment the task runs in a child of Airflow's task supervisor, which relays its
    logs, heartbeats and ``task_state_store`` (the ledger). When the supervisor dies the child is
    orphaned: its pipes are broken, nobody records what it does, and Airflow has already failed
    this try (and may be running the retry). Its parent id changing is the only sign that needs
    no write to fail first.
    """
    parent = os.getppid()

    def check() -> str | None:
        now = os.getppid()
        if now == parent:
            return None
        return (
            f"this task's parent process (pid {parent}, Airflow's task supervisor) is gone "
            f"(parent now pid {now}): stopping instead of running on unobserved"
        )

    return check


class UpdateOpportunitiesOperator(TrutoWriteOperator):
    """Update many CRM opportunities through Truto, every row accounted for.

    Each row is ``{"id": ..., "body": {...}, "integrated_account_id": ... (optional)}``. Rows are
    validated like :class:`UpdateOpportunityOperator` input, sent with bounded concurrency on the
    hook's async client, paced per integrated account from Truto's ``ratelimit-*`` headers and
    429s, and retried with a per-row Idempotency-Key that is stable across task retries. Each row
    ends ``updated``, ``failed`` (Truto's status, message and insight) or ``invalid`` (never
    sent). The XCom return value is a summary of counts; see docs/bulk.md.

    :param updates: the rows: a list (XCom, params, TaskFlow output), a JSON array string, or the
        path of a JSON Lines file (local, ``file://`` or an ``ObjectStoragePath`` URL such as
        ``s3://bucket/rows.jsonl``), streamed line by line. (templated)
    :param integrated_account_id: account for rows that do not name one; defaults to the
        connection's ``integrated_account_id`` extra. (templated)
    :param max_concurrency: requests in flight at once (default 32).
    :param max_concurrency_per_account: optional cap per integrated account.
    :param max_failed: the task fails when more rows than this are rejected (failed, plus
        invalid unless ``count_invalid_as_failed=False``). (templated)
    :param max_failed_ratio: ... or when more than this fraction of rows is rejected. With
        neither set, any rejected row fails the task (after every row was attempted). (templated)
    :param rejected_rows_path: where to write every rejected row (JSON Lines, with bodies):
        a local path or ``ObjectStoragePath`` URL. Up to ``inline_rejected`` rows also go to the
        summary itself. (templated)
    :param checkpoint_path: a directory (local or ``ObjectStoragePath``) for the success ledger
        when Airflow's ``task_state_store`` is not available. (templated)
    :param resend_applied: ignore the ledger and send rows an earlier try already applied.
    :param progress_every_rows: / ``progress_every_seconds``: progress log cadence.
    :param response_format: / ``ignore_remote_data`` / ``exclude_fields`` / ``remote_query``:
        Truto query options, as on the single-row operator. (templated)
    :param steps: per-row steps run before sending (see :mod:`truto_airflow.bulk.steps`).
    :param planners: deprecated name of ``steps`` (0.1).
    :param hook_params: extra keyword arguments for :class:`TrutoHook`.
    :param http_transport: the wire under the hook's ``httpx2.AsyncClient``: ``"auto"``
        (aiohttp's pool when installed, less CPU per request; see docs/bulk.md),
        ``"aiohttp"`` or ``"httpx"`` (httpx2's own).
    :param unsupported_fields: a field the row's CRM does not apply (per Truto's docs):
        ``"error"`` (default: the row ends ``invalid``, unsent), ``"warn"`` or ``"ignore"``
        (sent). Missing required fields and invalid ``status`` values always make the row
        ``invalid``. See docs/data_safety.md. (templated)
    :param integration: the CRM for every row; by default read per account from
        ``GET /integrated-account/{id}`` (once per account). (templated)
    :param skip_unchanged: read each opportunity's current state (GET per row, or the list
        endpoint for accounts with many rows) and send only the fields that differ; rows with
        nothing to change end ``unchanged``. Reads the input twice (ids first). (templated)
    :param dry_run: validate, preflight, read the current state and diff, send no write; rows
        end ``would_update``/``unchanged``/``invalid`` and the summary's
        ``data_safety.plan`` has one entry per input row (refused rows with their reason) with
        the fields that would change, old -> new (the first ``inline_plan`` rows; all of them
        in a JSON Lines file when larger). Stored as
        :attr:`plan_only`, because ``BaseOperator.dry_run()`` is a method. (templated)
    :param plan_path: where to write the full dry-run plan (local path or
        ``ObjectStoragePath`` URL); by default a local temporary file when the plan is larger
        than ``inline_plan``. (templated)
    """

    template_fields: Sequence[str] = (
        "updates",
        "integrated_account_id",
        "max_failed",
        "max_failed_ratio",
        "rejected_rows_path",
        "checkpoint_path",
        *QUERY_TEMPLATE_FIELDS,
        *SAFETY_TEMPLATE_FIELDS,
        "plan_path",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"updates": "json"}
    ui_color = "#d6ecfa"

    def __init__(
        self,
        *,
        updates: Any,
        max_concurrency: int = 32,
        max_concurrency_per_account: int | None = None,
        max_failed: Any = None,
        max_failed_ratio: Any = None,
        count_invalid_as_failed: bool = True,
        rejected_rows_path: Any = None,
        inline_rejected: int = 20,
        checkpoint_path: Any = None,
        resend_applied: bool = False,
        progress_every_rows: int | None = 1000,
        progress_every_seconds: float | None = 30.0,
        max_throttle_seconds: float = 300.0,
        steps: Sequence[RowStep] = (),
        planners: Sequence[Any] = (),
        http_transport: str = "auto",
        plan_path: Any = None,
        inline_plan: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan_path = plan_path
        self.inline_plan = inline_plan
        if http_transport not in {"auto", "aiohttp", "httpx"}:
            raise TrutoInputError("http_transport must be 'auto', 'aiohttp' or 'httpx'")
        self.http_transport = http_transport
        if max_concurrency < 1:
            raise TrutoInputError("max_concurrency must be >= 1")
        self.updates = updates
        self.max_concurrency = max_concurrency
        self.max_concurrency_per_account = max_concurrency_per_account
        self.max_failed = max_failed
        self.max_failed_ratio = max_failed_ratio
        self.count_invalid_as_failed = count_invalid_as_failed
        self.rejected_rows_path = rejected_rows_path
        self.inline_rejected = inline_rejected
        self.checkpoint_path = checkpoint_path
        self.resend_applied = resend_applied
        self.progress_every_rows = progress_every_rows
        self.progress_every_seconds = progress_every_seconds
        self.max_throttle_seconds = max_throttle_seconds
        if planners:
            warnings.warn(
                "UpdateOpportunitiesOperator(planners=...) is deprecated; pass steps=... "
                "(truto_airflow.bulk.steps.RowStep)",
                DeprecationWarning,
                stacklevel=2,
            )
        self.steps = [*steps, *planners]

    def get_hook(self) -> TrutoHook:
        """The hook on aiohttp's pool when ``http_transport`` allows it (see docs/bulk.md)."""
        params = dict(self.hook_params)
        if (
            self.http_transport != "httpx"
            and "async_transport" not in params
            and aiohttp_available()
        ):
            params["async_transport"] = AiohttpTransport(max_connections=self.max_concurrency)
        elif self.http_transport == "aiohttp" and not aiohttp_available():
            raise TrutoInputError("http_transport='aiohttp' needs the aiohttp package")
        return TrutoHook(truto_conn_id=self.truto_conn_id, **params)

    # -- pieces -----------------------------------------------------------------------------

    def _ledger_store(self, context: Mapping[str, Any], identity: RunIdentity) -> LedgerStore:
        path = blank_to_none(self.checkpoint_path)
        if path is not None:
            base = resolve_path(path)
            return PathLedgerStore(
                base
                / identity.dag_id
                / identity.run_id.replace("/", "_")
                / f"{identity.task_id}.{-1 if identity.map_index is None else identity.map_index}"
            )
        accessor = context.get("task_state_store")
        if accessor is not None:
            return TaskStateLedgerStore(accessor)
        self.log.info(
            "No task_state_store in this context and no checkpoint_path: rows applied by this "
            "try are not remembered across tries (Idempotency-Keys still make resends replays)"
        )
        return NullLedgerStore()

    def _preparer(self, identity: RunIdentity) -> RowPreparer:
        shape = self.response_options()
        fmt = shape["response_format"]
        # A bad format fails the task here, not every row.
        shape["response_format"] = ResponseFormat.parse(fmt).value if fmt is not None else None
        options = TrutoQueryOptions(
            integrated_account_id=blank_to_none(self.integrated_account_id), **shape
        )
        return RowPreparer(hook=self.hook, identity=identity, options=options)

    # -- execute ----------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        max_failed = _number("max_failed", self.max_failed)
        ratio = _number("max_failed_ratio", self.max_failed_ratio, kind=float)
        if ratio is not None and ratio > 1:
            raise TrutoInputError(f"max_failed_ratio must be between 0 and 1, got {ratio}")
        identity = self.run_identity(context)
        source = open_source(self.updates)
        preparer = self._preparer(identity)
        ledger = SuccessLedger(self._ledger_store(context, identity))
        if not self.resend_applied:
            known = ledger.load()
            if known:
                self.log.info(
                    "Ledger (%s): %d rows were applied by an earlier try of this run; they "
                    "are skipped",
                    ledger.store.description,
                    known,
                )
        settings = BulkSettings(
            max_concurrency=self.max_concurrency,
            max_concurrency_per_account=self.max_concurrency_per_account,
            max_throttle_seconds=self.max_throttle_seconds,
            progress_every_rows=self.progress_every_rows,
            progress_every_seconds=self.progress_every_seconds,
            inline_rejected=self.inline_rejected,
        )
        safety = self._safety_step(identity, preparer, source)
        rejected = PlannedRejectedRows(
            safety,
            destination=blank_to_none(self.rejected_rows_path),
            inline_limit=self.inline_rejected,
        )
        engine = BulkEngine(
            self.hook,
            preparer,
            settings=settings,
            ledger=ledger,
            rejected=rejected,
            steps=[safety, *self.steps],
            logger=self.log,
            watch=supervisor_watch(),
        )
        self.log.info(
            "Bulk update of %s with max_concurrency=%d (ledger: %s)",
            source.description,
            self.max_concurrency,
            ledger.store.description,
        )
        # execution_timeout and on_kill cancel the run; the hook's client closes on the way out.
        self._runner = LoopRunner()
        try:
            summary = self._runner.run(self._run(engine, source))
        except BulkRunError as exc:
            raise stopped_early_error(exc, context, safety.describe(), self.log) from exc
        summary["data_safety"] = safety.describe()
        log_data_safety(self.log, summary["data_safety"])
        self.report_written(
            context,
            base_url=self.hook.settings.base_url,
            accounts=summary["accounts"],
            dry_run=self.dry_run_flag(),
            source=self.updates,
        )
        self.log.info("Bulk update outcomes:\n%s", format_outcome_table(summary))
        if summary["rejected"]["location"]:
            self.log.info("Rejected rows written to %s", summary["rejected"]["location"])
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=SUMMARY_XCOM_KEY, value=summary)
        reason = decide_failure(
            summary,
            max_failed=max_failed,
            max_failed_ratio=ratio,
            count_invalid=self.count_invalid_as_failed,
        )
        if reason is not None:
            raise rejection_error(reason, summary)
        return summary

    def _safety_step(
        self, identity: RunIdentity, preparer: RowPreparer, source: RowSource
    ) -> DataSafetyStep:
        """Preflight, skip-unchanged and dry run as the first row step (docs/data_safety.md)."""
        safety = self.safety_options()
        current = None
        if safety.skip_unchanged or safety.dry_run:
            # Which ids each account needs decides GET-per-row vs the list endpoint.
            default = blank_to_none(self.integrated_account_id)

            def resolve(raw: Any) -> str:
                return self.hook.resolve_account(blank_to_none(raw) or default)

            # A second pass over the same source: a generator is not consumed by the scan.
            current = CurrentState(self.hook, scan_wanted_ids(source.scan(), resolve))
        return DataSafetyStep(
            self.hook,
            identity,
            preflight=safety.preflight,
            skip_unchanged=safety.skip_unchanged,
            dry_run=safety.dry_run,
            current=current,
            plan=PlanRecorder(
                destination=blank_to_none(self.plan_path), inline_limit=self.inline_plan
            ),
            logger=self.log,
        )

    async def _run(self, engine: BulkEngine, source: Any) -> dict[str, Any]:
        try:
            return await engine.run(source)
        finally:
            await self.hook.aclose()

    def on_kill(self) -> None:
        """End the async work (safe from Airflow's SIGTERM handler); else close the hook."""
        runner: LoopRunner | None = self.__dict__.get("_runner")
        if runner is not None and runner.stop():
            return  # the run unwinds, closes the hook's client, and execute raises
        super().on_kill()
