"""Operators that write CRM opportunities through Truto's Unified CRM API.

:class:`UpdateOpportunityOperator` sends one ``PATCH /unified/crm/opportunities/{id}``. Every
input is validated (by :meth:`TrutoHook.prepare_update`) before the request is built, so a bad
body, id, account or option fails the task without touching the CRM and without Airflow retries.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from truto_airflow.data_safety import SafetyDecision, decide, format_change, reads_current
from truto_airflow.exceptions import TrutoConfigError, TrutoInputError
from truto_airflow.hooks.truto import PreparedRequest
from truto_airflow.links import TrutoOpportunityLink, record_opportunity_url
from truto_airflow.models.opportunity import OpportunityUpdate
from truto_airflow.models.options import ResponseFormat
from truto_airflow.operators._base import (
    QUERY_TEMPLATE_FIELDS,
    SAFETY_TEMPLATE_FIELDS,
    TrutoWriteOperator,
)
from truto_airflow.output import atomic_output
from truto_airflow.rendered import blank_to_none

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["TRUTO_PLAN_XCOM_KEY", "UpdateOpportunityOperator", "first_opportunity_url"]

#: A dry run also pushes its plan under this key, so it is in XCom even when the run fails.
TRUTO_PLAN_XCOM_KEY = "truto_plan"

#: Chunk size when streaming a ``truto_response_format=stream`` body to ``output_path``.
STREAM_CHUNK_SIZE = 64 * 1024

#: Deprecated in 0.2, to be removed in 0.3 (README "Deprecation policy"): the answer to one PATCH
#: is one opportunity, small enough for XCom, and Truto's ``stream`` format is meant for large
#: payloads, which only list reads have (ExportOpportunitiesOperator writes those to storage).
STREAM_DEPRECATION = (
    "UpdateOpportunityOperator(response_format='stream', output_path=...) is deprecated and "
    "will be removed in truto-airflow 0.3: the updated opportunity is returned as the task's "
    "XCom; write it to storage in a downstream task if you need a file (list reads: "
    "ExportOpportunitiesOperator(output_path=...))"
)


def first_opportunity_url(result: Any) -> str | None:
    """The first ``urls[].url`` of an opportunity response, if it has one."""
    if not isinstance(result, Mapping):
        return None
    urls = result.get("urls")
    if not isinstance(urls, Sequence) or isinstance(urls, (str, bytes)):
        return None
    for entry in urls:
        url = entry.get("url") if isinstance(entry, Mapping) else None
        if isinstance(url, str) and url.strip():
            return url
    return None


class UpdateOpportunityOperator(TrutoWriteOperator):
    """Update one CRM opportunity through Truto (``PATCH /unified/crm/opportunities/{id}``).

    Returns the updated opportunity (parsed JSON) as the task's XCom; its first CRM URL is the
    "Open in CRM" extra link, which Airflow stores under the XCom key ``truto_opportunity_url``.

    :param opportunity_id: the opportunity's id in the unified API. (templated)
    :param body: the fields to change: a dict (Jinja inside values is rendered), an XComArg /
        TaskFlow output, a JSON object string (``{{ ... | tojson }}``), a natively rendered
        object, or an :class:`~truto_airflow.models.OpportunityUpdate` (converted to its JSON
        body here, so it is templated and serialised like a dict). Fields not given are not
        sent; an explicit ``None`` clears the field. (templated)
    :param integrated_account_id: the customer's integrated account (UUID); defaults to the
        connection's ``integrated_account_id`` extra. (templated)
    :param truto_conn_id: the ``truto`` Airflow connection.
    :param response_format: ``unified`` (default), ``raw``, ``normalized`` or ``stream``
        (deprecated, with ``output_path``). (templated)
    :param ignore_remote_data: drop ``remote_data`` from the response. (templated)
    :param exclude_fields: response fields to drop (``truto_exclude_fields``). (templated)
    :param remote_query: query parameters passed to the CRM untouched. (templated)
    :param idempotency_key: the ``Idempotency-Key`` to send; by default derived from the DAG
        run, task, map index, account, opportunity id and body, so a task retry replays the
        first write instead of applying it twice. (templated)
    :param output_path: deprecated (removed in 0.3): where a ``stream`` response is written
        chunk by chunk: a local path or an :class:`~airflow.sdk.ObjectStoragePath` URL
        (``s3://...``). Required for ``stream``, refused otherwise. (templated)
    :param hook_params: extra keyword arguments for :class:`TrutoHook` (``timeout``,
        ``max_retries``, ``retry_policy``, ``transport`` ...).
    :param unsupported_fields: what to do with a field the account's CRM does not apply (per
        Truto's docs): ``"error"`` (default: fail before writing), ``"warn"`` (log and write) or
        ``"ignore"``. Missing required fields and invalid ``status`` values always fail. See
        docs/data_safety.md. (templated)
    :param integration: the CRM (``"hubspot"``, ``"Pipedrive"`` ...); by default read from
        ``GET /integrated-account/{id}``. (templated)
    :param skip_unchanged: read the opportunity first and send only the fields whose value
        differs; with nothing to change, no write is sent and the XCom is
        ``{"outcome": "unchanged", ...}``. (templated)
    :param dry_run: validate, preflight, read the current state and diff, then return the plan
        (old -> new) to XCom and the log without sending any write; the plan is also pushed
        under the XCom key ``truto_plan``, even when the input is refused. Stored as
        :attr:`plan_only`, because
        ``BaseOperator.dry_run()`` is a method. (templated)
    """

    template_fields: Sequence[str] = (
        "opportunity_id",
        "body",
        "integrated_account_id",
        *QUERY_TEMPLATE_FIELDS,
        "idempotency_key",
        "output_path",
        *SAFETY_TEMPLATE_FIELDS,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"body": "json", "remote_query": "json"}
    ui_color = "#e8f4fd"
    operator_extra_links = (TrutoOpportunityLink(),)
    #: No asset event by default: this operator is one PATCH per task, usually mapped over many
    #: rows, where an event per task costs each task an outlet check and meets Airflow's race on
    #: an alias's first event (docs/export.md). Pass ``outlets=[...]`` to emit them.
    default_outlets: ClassVar[tuple[Any, ...]] = ()

    def __init__(
        self,
        *,
        opportunity_id: Any,
        body: Any,
        response_format: Any = "unified",
        ignore_remote_data: Any = False,
        idempotency_key: Any = None,
        output_path: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            response_format=response_format, ignore_remote_data=ignore_remote_data, **kwargs
        )
        self.opportunity_id = opportunity_id
        # A pydantic object is neither rendered nor serialised by Airflow (the UI and the
        # rendered-fields table would show its str()); its JSON body is, and keeps PATCH
        # semantics (unset fields absent, explicit None as null).
        self.body = body.to_body() if isinstance(body, OpportunityUpdate) else body
        self.idempotency_key = idempotency_key
        self.output_path = output_path
        if output_path is not None or str(getattr(response_format, "value", response_format)) == (
            ResponseFormat.STREAM.value
        ):
            warnings.warn(STREAM_DEPRECATION, DeprecationWarning, stacklevel=2)

    # -- execution ------------------------------------------------------------------------------

    def prepare(self, context: Context | Mapping[str, Any], *, body: Any = None) -> PreparedRequest:
        """Validate every input and build the PATCH, with its idempotency key; sends nothing.

        ``body`` overrides :attr:`body` (the minimal body of ``skip_unchanged``).
        """
        hook = self.hook
        response_format = ResponseFormat.parse(blank_to_none(self.response_format) or "unified")
        output_path = blank_to_none(self.output_path)
        if response_format is ResponseFormat.STREAM and output_path is None:
            raise TrutoInputError(
                "response_format='stream' needs output_path (a local path or an "
                "ObjectStoragePath URL) to write the streamed body to"
            )
        if response_format is not ResponseFormat.STREAM and output_path is not None:
            raise TrutoInputError(
                f"output_path is only used with response_format='stream' (got "
                f"{response_format.value!r}); remove it or switch to streaming"
            )
        account = hook.resolve_account(blank_to_none(self.integrated_account_id))
        options = self.response_options()
        options["response_format"] = response_format.value
        caller_key = blank_to_none(self.idempotency_key)
        return hook.prepare_update(
            self.opportunity_id,
            self.body if body is None else body,
            integrated_account_id=account,
            idempotency_key=self.run_identity(context) if caller_key is None else str(caller_key),
            **options,
        )

    def execute(self, context: Context) -> Any:
        """Validate, send the PATCH and return the updated opportunity (or stream summary)."""
        record_opportunity_url(self, None)  # this try's link: none until the CRM answers
        try:
            result = self._update(context)
            self._report(context, result)
            return result
        finally:
            self.hook.close()  # the pool is not needed after the task (reopened on next use)

    def _update(self, context: Context) -> Any:
        try:
            prepared = self.prepare(context)
        except TrutoInputError as exc:
            # The input is refused (not the connection): the dry run's plan still shows why.
            if self._dry_run_flag() and not isinstance(exc, TrutoConfigError):
                self._refused_plan(context, str(exc))
            raise
        prepared_or_outcome = self._data_safety(context, prepared)
        if not isinstance(prepared_or_outcome, PreparedRequest):
            return prepared_or_outcome
        prepared = prepared_or_outcome
        streaming = prepared.query.get("truto_response_format") == ResponseFormat.STREAM.value
        started = time.monotonic()
        if streaming:
            result, status = self._stream_to_output(prepared)
        else:
            response = self.hook.send(prepared)
            result, status = self.hook.decode_result(response, prepared), response.status_code
        self.log.info(
            "Truto opportunity %s updated: fields=%s status=%d duration=%.3fs idempotency_key=%s",
            self.opportunity_id,
            ",".join(prepared.fields),
            status,
            time.monotonic() - started,
            prepared.idempotency_key,
        )
        # Airflow stores the link (key truto_opportunity_url) when the task ends: one XCom write.
        record_opportunity_url(self, None if streaming else first_opportunity_url(result))
        return result

    def _report(self, context: Context, result: Any) -> None:
        """Asset event and lineage of this write (one account, one row)."""
        # _outcome() dicts (unchanged / dry run) carry "preflight"; anything else is the CRM's
        # answer to a write that was sent.
        planned = isinstance(result, Mapping) and "preflight" in result and "outcome" in result
        outcome = str(result["outcome"]) if planned else "updated"
        account = self.hook.resolve_account(blank_to_none(self.integrated_account_id))
        self.report_written(
            context,
            base_url=self.hook.settings.base_url,
            accounts={account: {outcome: 1}},
            dry_run=planned and result.get("dry_run") is True,
        )

    # -- data safety: preflight, skip-unchanged, dry run (docs/data_safety.md) ------------------

    def _dry_run_flag(self) -> bool:
        """``dry_run`` as given, ``False`` when it is not a flag (``_data_safety`` says why)."""
        try:
            return self.dry_run_flag()
        except TrutoInputError:
            return False

    def _refused_plan(self, context: Context | Mapping[str, Any], message: str) -> None:
        """A dry run whose input is refused still shows its plan: one row, ``invalid``, why."""
        account = blank_to_none(self.integrated_account_id)
        outcome: dict[str, Any] = {
            "outcome": "invalid",
            "dry_run": True,
            "opportunity_id": str(self.opportunity_id),
            "integrated_account_id": None if account is None else str(account),
            "message": message,
        }
        self._log_plan(outcome)
        self._push_plan(context, outcome)

    @staticmethod
    def _push_plan(context: Context | Mapping[str, Any], outcome: Mapping[str, Any]) -> None:
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=TRUTO_PLAN_XCOM_KEY, value=dict(outcome))

    def _data_safety(self, context: Context, prepared: PreparedRequest) -> Any:
        """Preflight, read, decide (:func:`~truto_airflow.data_safety.decide`); the PATCH to
        send, or the XCom outcome (``unchanged``, or the dry run's plan)."""
        safety = self.safety_options()
        policy, skip, dry_run = safety.policy, safety.skip_unchanged, safety.dry_run
        account = str(prepared.query.get("integrated_account_id"))
        report = safety.preflight.check(prepared.json_body, integrated_account_id=account)
        for issue in report.warnings(policy):
            self.log.warning("Preflight (opportunity %s): %s", self.opportunity_id, issue.message)
        current: Mapping[str, Any] | None = None
        if reads_current(report, policy, skip_unchanged=skip, dry_run=dry_run):
            got = self.hook.get_opportunity(
                self.opportunity_id, integrated_account_id=account, ignore_remote_data=True
            )
            current = got if isinstance(got, Mapping) else {}
        decision = decide(
            prepared.json_body,
            report,
            policy=policy,
            skip_unchanged=skip,
            dry_run=dry_run,
            current=current,
        )
        outcome = self._outcome(account, decision, dry_run=dry_run)
        if dry_run:
            self._log_plan(outcome)
            self._push_plan(context, outcome)
        if decision.outcome == "invalid":
            raise TrutoInputError(str(decision.message))
        if dry_run:
            return outcome
        if decision.outcome == "unchanged":
            self.log.info(
                "Truto opportunity %s unchanged (fields %s already hold these values): no write",
                self.opportunity_id,
                ",".join(outcome.get("unchanged", ())),
            )
            return outcome
        if decision.body == prepared.json_body:
            return prepared
        return self.prepare(context, body=decision.body)

    def _outcome(self, account: str, decision: SafetyDecision, *, dry_run: bool) -> dict[str, Any]:
        """The XCom of a run that sends nothing: the decision's plan entry, with context."""
        plan = decision.plan()
        result: dict[str, Any] = {
            "outcome": plan.pop("outcome"),
            "dry_run": dry_run,
            "opportunity_id": str(self.opportunity_id),
            "integrated_account_id": account,
            "integration": decision.report.integration,
            **plan,
            "body": decision.body,
            "preflight": decision.report.to_dict(),
        }
        return result

    def _log_plan(self, outcome: Mapping[str, Any]) -> None:
        self.log.info(
            "Dry run (no write sent) for Truto opportunity %s: %s",
            self.opportunity_id,
            outcome["outcome"],
        )
        if outcome.get("message"):
            self.log.info("  refused: %s", outcome["message"])
        for name, change in (outcome.get("changes") or {}).items():
            self.log.info("  %s", format_change(name, change))
        for name in outcome.get("unchanged") or ():
            self.log.info("  %s: unchanged", name)

    def _stream_to_output(self, prepared: PreparedRequest) -> tuple[dict[str, Any], int]:
        """Stream the answer to ``output_path``, published atomically (:mod:`truto_airflow.output`,
        the rule the export and partition files follow too)."""
        written = 0
        with (
            self.hook.stream(prepared) as response,
            atomic_output(blank_to_none(self.output_path)) as (fh, final),
        ):
            status = response.status_code
            for chunk in response.iter_bytes(STREAM_CHUNK_SIZE):
                fh.write(chunk)
                written += len(chunk)
        return {"path": str(final), "bytes": written, "status_code": status}, status


def __getattr__(name: str) -> Any:
    """``UpdateOpportunitiesOperator`` lives in :mod:`truto_airflow.operators.bulk`; the old
    import path from this module keeps working, loaded on first use so that importing the
    single-row operator never imports the bulk engine."""
    if name == "UpdateOpportunitiesOperator":
        from truto_airflow.operators.bulk import UpdateOpportunitiesOperator

        return UpdateOpportunitiesOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
