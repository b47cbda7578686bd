"""Data safety for the bulk operator: preflight, skip-unchanged and dry run as a row step.

:class:`DataSafetyStep` is a :class:`~truto_airflow.bulk.steps.RowStep`. For each row it

1. runs the field-support preflight (:mod:`truto_airflow.preflight`): a row that would lose a
   field (policy ``"error"``), lacks a field its CRM requires, or has an invalid ``status`` ends
   ``invalid`` with the reason, unsent; other rows proceed;
2. with ``skip_unchanged``, reads the opportunity's current state (:class:`CurrentState`), diffs
   (:mod:`truto_airflow.diff`) and either ends the row ``unchanged`` (nothing sent) or replaces
   its body with the minimal one;
3. with ``dry_run``, records the row's plan (fields that would change, old -> new) and ends it
   ``would_update`` without sending.

Reading current state costs calls, so :class:`CurrentState` picks per account: GET per row for
an account with few rows, else the list endpoint (``truto_key_by=id``), stopping as soon as every
wanted id was seen and never spending more than a couple of pages beyond what GETs would cost.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from truto_airflow.bulk.outcomes import Outcome, RowResult
from truto_airflow.bulk.prepare import RowItem, RunIdentity
from truto_airflow.bulk.rejects import RecordFile, RejectedRows
from truto_airflow.bulk.rows import RawRow
from truto_airflow.bulk.steps import StepDecision
from truto_airflow.data_safety import SafetyDecision, decide, reads_current
from truto_airflow.exceptions import (
    TrutoAPIError,
    TrutoInputError,
    TrutoNetworkError,
    TrutoPaginationError,
)
from truto_airflow.hooks.truto import OPPORTUNITIES_PATH, TrutoHook, opportunity_path
from truto_airflow.preflight import Preflight

__all__ = [
    "LIST_THRESHOLD",
    "CurrentState",
    "DataSafetyStep",
    "PlanRecorder",
    "scan_wanted_ids",
]

#: An account with at least this many rows has its current state read with the list endpoint.
LIST_THRESHOLD = 20
#: Page size asked of the list endpoint.
LIST_PAGE_SIZE = 100
#: Pages the list walk may spend beyond the number of rows it has found so far.
LIST_SLACK_PAGES = 2


def scan_wanted_ids(rows: Iterable[RawRow], resolve: Any) -> dict[str, set[str]]:
    """``{account: {opportunity ids}}`` over the input (rows that will not validate are skipped).

    ``resolve`` maps a row's ``integrated_account_id`` (or ``None``) to the canonical account.
    """
    wanted: dict[str, set[str]] = {}
    for raw in rows:
        data = raw.data
        if raw.error is not None or not isinstance(data, Mapping) or data.get("id") is None:
            continue
        try:
            account = resolve(data.get("integrated_account_id"))
        except TrutoInputError:
            continue
        wanted.setdefault(account, set()).add(str(data["id"]))
    return wanted


class CurrentState:
    """Current opportunities for the diff, read with whichever costs fewer calls per account."""

    def __init__(
        self,
        hook: TrutoHook,
        wanted: Mapping[str, set[str]] | None = None,
        *,
        list_threshold: int = LIST_THRESHOLD,
        page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        self.hook = hook
        self.wanted = {k: set(v) for k, v in (wanted or {}).items()}
        self.list_threshold = list_threshold
        self.page_size = page_size
        self._snapshots: dict[str, dict[str, dict[str, Any]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: Per account, fields a GET did not return (the CRM does not return them at all).
        self._not_in_get: dict[str, set[str]] = {}
        self.calls: Counter[str] = Counter()

    def source_for(self, account: str) -> str:
        """``"list"`` or ``"get"``: how this account's current state is read."""
        return "list" if len(self.wanted.get(account, ())) >= self.list_threshold else "get"

    async def get(self, account: str, opportunity_id: str) -> dict[str, Any]:
        """The opportunity now (a snapshot entry is used once; later reads GET afresh)."""
        return (await self.read(account, opportunity_id))[0]

    async def read(self, account: str, opportunity_id: str) -> tuple[dict[str, Any], bool]:
        """:meth:`get`, and whether the answer is a list entry (which may hold fewer fields)."""
        if self.source_for(account) == "list":
            lock = self._locks.setdefault(account, asyncio.Lock())
            async with lock:
                if account not in self._snapshots:
                    self._snapshots[account] = await self._walk_list(account)
            found = self._snapshots[account].pop(opportunity_id, None)
            if found is not None:
                return found, True
        return await self.fetch(account, opportunity_id), False

    async def fetch(self, account: str, opportunity_id: str) -> dict[str, Any]:
        """``GET`` the opportunity (every field the CRM returns), whatever the account's source."""
        self.calls["get"] += 1
        prepared = self.hook.prepare(
            "GET",
            opportunity_path(opportunity_id),
            params={"integrated_account_id": account, "truto_ignore_remote_data": True},
        )
        data = self.hook.decode(await self.hook.asend(prepared))
        return data if isinstance(data, dict) else {}

    async def reread(
        self, account: str, opportunity_id: str, unknown: Iterable[str]
    ) -> dict[str, Any] | None:
        """A GET for a list entry that left the ``unknown`` fields out, or ``None`` when an
        earlier GET of this account did not return them either (this one would not prove them;
        left unknown, they are sent)."""
        wanted = set(unknown)
        never = self._not_in_get.setdefault(account, set())
        if wanted <= never:
            self.calls["reread_skipped"] += 1
            return None
        self.calls["reread"] += 1
        data = await self.fetch(account, opportunity_id)
        never.update(name for name in wanted if name not in data)
        return data

    async def _walk_list(self, account: str) -> dict[str, dict[str, Any]]:
        remaining = set(self.wanted.get(account, ()))
        total = len(remaining)
        found: dict[str, dict[str, Any]] = {}
        if not remaining:
            return found
        query = self.hook.opportunity_list_query(
            account,
            ignore_remote_data=True,
            params={"truto_key_by": "id"},
            page_size=self.page_size,
        )
        pages = self.hook.apaginate_pages(OPPORTUNITIES_PATH, query)
        read = 0
        try:
            async for items in pages:
                read += 1
                self.calls["list_pages"] += 1
                for entry in items:
                    ident = str(entry.get("id"))
                    if ident in remaining:
                        found[ident] = entry
                        remaining.discard(ident)
                # Total calls = pages + GETs for what is still missing; stop once paging has
                # cost more than the rows it found (plus a little slack): GETs are cheaper now.
                if not remaining or read > (total - len(remaining)) + LIST_SLACK_PAGES:
                    break
        except TrutoPaginationError as exc:
            # The list is only a cheaper way to read; rows it did not deliver are read by GET.
            self.hook.log.warning("Current-state list read of account %s stopped: %s", account, exc)
        finally:
            await pages.aclose()
        return found

    def describe(self) -> dict[str, Any]:
        return {
            "get_calls": self.calls["get"],
            "list_pages": self.calls["list_pages"],
            "reread_after_list": self.calls["reread"],
            "reread_skipped": self.calls["reread_skipped"],
            "accounts_read_by_list": sorted(a for a in self.wanted if self.source_for(a) == "list"),
        }


class PlanRecorder(RecordFile):
    """Dry-run plan rows: the first ``inline_limit`` for XCom, all of them in a JSON Lines file
    (copied to ``destination`` when given, else kept as a local temporary file) when large."""

    prefix = "truto-plan-"

    def __init__(self, *, destination: Any = None, inline_limit: int = 100) -> None:
        super().__init__(destination=destination, inline_limit=inline_limit)

    def add(self, row: dict[str, Any]) -> None:
        self.record(row, row)


class DataSafetyStep:
    """The bulk row step for preflight, ``skip_unchanged`` and ``dry_run`` (module docstring).

    The decision itself is :func:`truto_airflow.data_safety.decide`, the same as the single
    operator's; this class does the I/O around it (account lookup, reading current state).
    """

    def __init__(
        self,
        hook: TrutoHook,
        identity: RunIdentity,
        *,
        preflight: Preflight,
        skip_unchanged: bool = False,
        dry_run: bool = False,
        current: CurrentState | None = None,
        plan: PlanRecorder | None = None,
        logger: Any = None,
    ) -> None:
        self.hook = hook
        self.identity = identity
        self.preflight = preflight
        self.skip_unchanged = skip_unchanged
        self.dry_run = dry_run
        self.current = current or CurrentState(hook)
        self.plan_rows = plan or PlanRecorder()
        self.log = logger or preflight.log
        self.unsupported: Counter[str] = Counter()
        self.invalid = 0

    async def run(self, item: RowItem) -> RowItem | StepDecision:
        body = item.request.json_body
        try:  # an account this task already resolved (every row but its first) needs no await
            resolved = self.preflight.known(item.account) or await self.preflight.aresolve(
                item.account
            )
        except Exception as exc:  # transient after retries: fail the row (retryable), not blind
            text = f"could not look up the integration of account {item.account}: {exc}"
            return StepDecision(Outcome.FAILED, text, error="preflight_lookup")
        checked = body if item.update is None else item.update  # the same fields, validated
        report = self.preflight.check(
            checked, integrated_account_id=item.account, resolved=resolved
        )
        policy = self.preflight.policy
        for issue in report.warnings(policy):
            key = f"{issue.integration}: {issue.field}"
            if not self.unsupported[key]:
                self.log.warning("Preflight (first of possibly many rows): %s", issue.message)
            self.unsupported[key] += 1
        flags = {"skip_unchanged": self.skip_unchanged, "dry_run": self.dry_run}
        current: dict[str, Any] | None = None
        if reads_current(report, policy, **flags):
            try:
                current, listed = await self.current.read(item.account, item.opportunity_id)
                if listed:
                    diff = decide(body, report, policy=policy, current=current, **flags).diff
                    if diff is not None and diff.unknown:
                        # The list left fields out: a GET may prove them unchanged.
                        fuller = await self.current.reread(
                            item.account, item.opportunity_id, diff.unknown
                        )
                        current = current if fuller is None else fuller
            except (TrutoAPIError, TrutoNetworkError) as exc:
                text = f"could not read the current opportunity to compare: {exc}"
                return StepDecision(Outcome.FAILED, text, error="read_current")
        decision = decide(body, report, policy=policy, current=current, **flags)
        if decision.outcome == "invalid":
            self.invalid += 1
            return StepDecision(Outcome.INVALID, str(decision.message), error="preflight")
        if decision.outcome == "unchanged":
            self._record(item, decision)
            return StepDecision(Outcome.UNCHANGED, "every field already holds this value")
        if decision.outcome == "would_update":
            self._record(item, decision)
            return StepDecision(Outcome.WOULD_UPDATE, "dry run: not sent")
        if decision.body == body:
            return item
        # A smaller body is another write: its own key (the row's ordinal still in it), while
        # the ledger keeps naming the row by the key it was prepared with (``row_key``).
        key = self.identity.row_key(
            row=item.index,
            account=item.account,
            opportunity_id=item.opportunity_id,
            body=decision.body,
        )
        request = dataclasses.replace(
            item.request,
            json_body=decision.body,
            fields=tuple(decision.body),
            idempotency_key=key,
        )
        # ``update`` was the full body's: a retry checks what it now sends, as before.
        return dataclasses.replace(item, request=request, row_key=item.key, update=None)

    def _record(self, item: RowItem, decision: SafetyDecision) -> None:
        """A dry run's plan row for a row this step settled (rejected rows: :meth:`rejected`)."""
        if self.dry_run:
            self.plan_rows.add(
                {
                    "row": item.index,
                    "id": item.opportunity_id,
                    "integrated_account_id": item.account,
                    **decision.plan(),
                }
            )

    def rejected(self, result: RowResult) -> None:
        """Every rejected row (refused by validation or preflight, or failed) joins a dry run's
        plan with its reason, wherever in the pipeline it was rejected."""
        if self.dry_run:
            self.plan_rows.add(
                {
                    "row": result.index,
                    "id": result.opportunity_id,
                    "integrated_account_id": result.integrated_account_id,
                    "outcome": result.outcome.value,
                    "error": result.error,
                    "message": result.message,
                }
            )

    def describe(self) -> dict[str, Any]:
        """The ``data_safety`` entry of the bulk summary."""
        info: dict[str, Any] = {
            "unsupported_fields_policy": self.preflight.policy,
            "preflight_invalid_rows": self.invalid,
            "unsupported_fields_sent": dict(self.unsupported),
            "skip_unchanged": self.skip_unchanged,
            "dry_run": self.dry_run,
        }
        if self.skip_unchanged or self.dry_run:
            info["current_state"] = self.current.describe()
        if self.dry_run:
            info["plan"] = self.plan_rows.finish()
        return info


class PlannedRejectedRows(RejectedRows):
    """The run's rejected rows, each also handed to the data-safety step (a dry run lists them
    in its plan). The engine records every rejected row here, wherever it was rejected."""

    def __init__(self, step: DataSafetyStep, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step

    def add(self, result: RowResult) -> None:
        super().add(result)
        self.step.rejected(result)
