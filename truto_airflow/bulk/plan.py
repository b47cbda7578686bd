"""Turning an input row into a ready-to-send request, and the per-row plan seam.

The pipeline for every row is ``prepare`` (validate, resolve the account, derive the
Idempotency-Key, build the PATCH without sending) -> ``plan`` steps -> send. A plan step
(:class:`RowPlanner`) sees a prepared row just before it is sent and may keep it, change it, or
settle it with an outcome without sending (preflight ``invalid`` rows, ``skip_unchanged``, a dry
run). Steps run inside the row's concurrency slot, after the account's pacer let it go.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from truto_airflow.bulk.outcomes import Outcome, RowResult
from truto_airflow.bulk.rows import ROW_KEYS, RawRow
from truto_airflow.exceptions import TrutoInputError
from truto_airflow.idempotency import derive_idempotency_key
from truto_airflow.models.opportunity import parse_update_body

if TYPE_CHECKING:
    from truto_airflow.hooks.truto import PreparedRequest, TrutoHook

__all__ = ["PlanDecision", "RowItem", "RowPlanner", "RowPreparer", "RunIdentity"]


@dataclass(frozen=True)
class RunIdentity:
    """Where the write happens: the parts of the Idempotency-Key that survive task retries."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int | None = None


@dataclass(slots=True)
class RowItem:
    """A validated row on its way to Truto (kept only while queued or in flight)."""

    index: int
    opportunity_id: str
    account: str
    request: PreparedRequest
    line: int | None = None
    attempts: int = 0
    throttles: int = 0

    @property
    def key(self) -> str:
        assert self.request.idempotency_key is not None
        return self.request.idempotency_key

    @property
    def lock_key(self) -> tuple[str, str]:
        return (self.account, self.opportunity_id)

    def to_record(self) -> dict[str, Any]:
        """A JSON-able form for spilling to disk."""
        req = self.request
        return {
            "i": self.index,
            "o": self.opportunity_id,
            "a": self.account,
            "l": self.line,
            "p": req.path,
            "q": req.params,
            "b": req.json_body,
            "k": req.idempotency_key,
            "f": list(req.fields),
        }

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> RowItem:
        from truto_airflow.hooks.truto import PreparedRequest

        request = PreparedRequest(
            method="PATCH",
            path=rec["p"],
            params=[(str(k), str(v)) for k, v in rec["q"]],
            json_body=rec["b"],
            idempotency_key=rec["k"],
            fields=tuple(rec["f"]),
        )
        return cls(rec["i"], rec["o"], rec["a"], request, rec.get("l"))


@dataclass(frozen=True)
class PlanDecision:
    """A plan step settled the row without sending it."""

    outcome: Outcome
    message: str
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class RowPlanner(Protocol):
    """A per-row step between validation and sending (see the module docstring)."""

    async def plan(self, item: RowItem) -> RowItem | PlanDecision: ...


@dataclass
class RowPreparer:
    """Validates rows with the hook's own checks and builds their PATCH requests."""

    hook: TrutoHook
    identity: RunIdentity
    integrated_account_id: str | None = None
    response_format: str | None = None
    ignore_remote_data: bool | None = None
    exclude_fields: Sequence[str] | None = None
    remote_query: Mapping[str, Any] | None = None
    _accounts: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def _account(self, raw: Any) -> str:
        text = raw if raw is None or isinstance(raw, str) else str(raw)
        cache_key = text or ""
        if cache_key not in self._accounts:
            if len(self._accounts) > 10_000:
                self._accounts.clear()
            chosen = text or self.integrated_account_id
            self._accounts[cache_key] = self.hook.resolve_account(chosen)
        return self._accounts[cache_key]

    def prepare(self, raw: RawRow) -> RowItem | RowResult:
        """A :class:`RowItem`, or an ``invalid`` :class:`RowResult` saying what to fix."""
        data = raw.data
        opp_id: Any = data.get("id") if isinstance(data, Mapping) else None
        account_raw: Any = data.get("integrated_account_id") if isinstance(data, Mapping) else None

        def invalid(message: str, account: str | None = None) -> RowResult:
            return RowResult(
                index=raw.index,
                outcome=Outcome.INVALID,
                opportunity_id=None if opp_id is None else str(opp_id),
                integrated_account_id=account
                or (None if account_raw is None else str(account_raw)),
                error="invalid_row",
                message=message,
                line=raw.line,
                body=data.get("body") if isinstance(data, Mapping) else data,
            )

        if raw.error is not None:
            return invalid(raw.error)
        if not isinstance(data, Mapping):
            return invalid(
                f"row {raw.index} must be an object with 'id' and 'body', got {type(data).__name__}"
            )
        unknown = sorted(str(k) for k in data if k not in ROW_KEYS)
        if unknown:
            return invalid(
                f"row {raw.index} has unknown key(s) {', '.join(unknown)}: a row is "
                "{'id', 'body', optional 'integrated_account_id'}; put opportunity fields in 'body'"
            )
        if "body" not in data:
            return invalid(f"row {raw.index} has no 'body' (the fields to update)")
        try:
            account = self._account(account_raw)
        except TrutoInputError as exc:
            return invalid(str(exc))
        try:
            update = parse_update_body(data["body"])
            request = self.hook.prepare_update(
                opp_id,
                update,
                integrated_account_id=account,
                response_format=self.response_format,
                ignore_remote_data=self.ignore_remote_data,
                exclude_fields=self.exclude_fields,
                remote_query=self.remote_query,
                idempotency_key="pending",
            )
        except TrutoInputError as exc:
            return invalid(str(exc), account)
        opp = str(opp_id)
        key = derive_idempotency_key(
            dag_id=self.identity.dag_id,
            task_id=self.identity.task_id,
            run_id=self.identity.run_id,
            map_index=self.identity.map_index,
            integrated_account_id=account,
            opportunity_id=opp,
            body=request.json_body,
        )
        request = dataclasses.replace(request, idempotency_key=key)
        return RowItem(raw.index, opp, account, request, raw.line)
