"""Turning an input row into a ready-to-send request: the ``prepare`` step of every bulk row.

``prepare`` validates the row with the hook's own checks, resolves its integrated account,
derives its Idempotency-Key from the run identity and builds the PATCH without sending it. The
optional pre-send steps that may then change or settle a prepared row are in
:mod:`truto_airflow.bulk.plan`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from truto_airflow.bulk.outcomes import (
    Failure,
    Outcome,
    RowResult,
    describe_exception,
    safe_text,
)
from truto_airflow.bulk.rows import ROW_KEYS, RawRow
from truto_airflow.exceptions import TrutoInputError
from truto_airflow.idempotency import RunIdentity  # defined there; this path keeps working
from truto_airflow.models.opportunity import (
    OpportunityUpdate,
    flat_update_body,
    parse_update_body,
)
from truto_airflow.models.options import TrutoQueryOptions

if TYPE_CHECKING:
    from truto_airflow.hooks._wire import UpdateQuery
    from truto_airflow.hooks.truto import PreparedRequest, TrutoHook

__all__ = ["RowItem", "RowPreparer", "RunIdentity"]


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
    #: The row's identity for the success ledger: its key as prepared (full body). A row step
    #: may send a smaller body under another Idempotency-Key; the ledger still names the row.
    row_key: str = ""
    #: The validated body as prepared (its JSON is ``request.json_body``), so the preflight
    #: checks it without validating it again; ``None`` for a row read back from a spill file.
    update: OpportunityUpdate | None = None

    @property
    def key(self) -> str:
        if self.row_key:
            return self.row_key
        assert self.request.idempotency_key is not None
        return self.request.idempotency_key

    @property
    def lock_key(self) -> tuple[str, str]:
        return (self.account, self.opportunity_id)

    def to_record(self) -> dict[str, Any]:
        """A JSON-able form for the spill file (a throttled account's overflow)."""
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
            "r": self.row_key,
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
        return cls(rec["i"], rec["o"], rec["a"], request, rec.get("l"), row_key=rec.get("r", ""))


#: Longest reason kept for an invalid row (a body with many problems names each of them).
_MESSAGE_LIMIT = 2000
#: Most accounts a preparer remembers (resolved ids, encoded queries); a run names a handful,
#: and an input with more distinct values than this is still validated row by row.
_ACCOUNT_CACHE_LIMIT = 1024


@dataclass
class RowPreparer:
    """Validates rows with the hook's own checks and builds their PATCH requests."""

    hook: TrutoHook
    identity: RunIdentity
    #: Truto's query options for every row; a row's own ``integrated_account_id`` wins.
    options: TrutoQueryOptions = field(default_factory=TrutoQueryOptions)
    #: What is immutable for the run, worked out once instead of per row: each account value as
    #: resolved (``hook.resolve_account``, a UUID parse), and each account's encoded query
    #: (``hook.update_query``). Only successes are kept; for the options they were built with.
    _accounts: dict[str | None, str] = field(default_factory=dict, init=False, repr=False)
    _queries: dict[str, UpdateQuery] = field(default_factory=dict, init=False, repr=False)
    _cached_for: TrutoQueryOptions | None = field(default=None, init=False, repr=False)

    def _account(self, raw: Any) -> str:
        text = raw if raw is None or isinstance(raw, str) else str(raw)
        given: Any = text or self.options.integrated_account_id
        if given is not None and not isinstance(given, str):  # odd options: resolved as given
            return self.hook.resolve_account(given)
        account = self._accounts.get(given)
        if account is None:
            account = self.hook.resolve_account(given)
            if len(self._accounts) < _ACCOUNT_CACHE_LIMIT:
                self._accounts[given] = account
        return account

    def _query(self, account: str) -> UpdateQuery:
        """The encoded query of ``account``'s rows (``hook.update_query``), built once."""
        query = self._queries.get(account)
        if query is None:
            options = dataclasses.replace(self.options, integrated_account_id=account)
            query = self.hook.update_query(**dataclasses.asdict(options))
            if len(self._queries) < _ACCOUNT_CACHE_LIMIT:
                self._queries[account] = query
        return query

    def prepare(self, raw: RawRow) -> RowItem | RowResult:
        """A :class:`RowItem`, or an ``invalid`` :class:`RowResult` saying what to fix.

        Never raises for anything about the row: whatever fails while validating, serialising or
        building its request (a bad offset, bytes, an odd object, an id no URL can carry) ends
        this row ``invalid`` with the reason, and the other rows go on.
        """
        try:
            return self._prepare(raw)
        except Exception as exc:
            reason = describe_exception(exc, self.hook.redact_text)
            return self._invalid(raw, f"row {raw.index} could not be prepared: {reason}")

    def _invalid(self, raw: RawRow, message: str, account: str | None = None) -> RowResult:
        data = raw.data
        mapping = isinstance(data, Mapping)
        opp_id: Any = data.get("id") if mapping else None
        account_raw: Any = data.get("integrated_account_id") if mapping else None
        return RowResult(
            index=raw.index,
            outcome=Outcome.INVALID,
            opportunity_id=None if opp_id is None else safe_text(opp_id),
            integrated_account_id=account
            or (None if account_raw is None else safe_text(account_raw)),
            failure=Failure(None, "invalid_row", safe_text(message, _MESSAGE_LIMIT)),
            line=raw.line,
            body=data.get("body") if mapping else data,
        )

    def _prepare(self, raw: RawRow) -> RowItem | RowResult:
        if self._cached_for is not self.options:  # options replaced: forget what came of them
            self._accounts.clear()
            self._queries.clear()
            self._cached_for = self.options
        data = raw.data
        if raw.error is not None:
            return self._invalid(raw, raw.error)
        if not isinstance(data, Mapping):
            return self._invalid(
                raw,
                f"row {raw.index} must be an object with 'id' and 'body', got "
                f"{type(data).__name__}",
            )
        if not ROW_KEYS.issuperset(data):  # the unknown keys are named only when there are some
            unknown = sorted(safe_text(k, 60) for k in data if k not in ROW_KEYS)
            return self._invalid(
                raw,
                f"row {raw.index} has unknown key(s) {', '.join(unknown)}: a row is "
                "{'id', 'body', optional 'integrated_account_id'}; put opportunity fields in "
                "'body'",
            )
        if "body" not in data:
            return self._invalid(raw, f"row {raw.index} has no 'body' (the fields to update)")
        opp_id: Any = data.get("id")
        try:
            account = self._account(data.get("integrated_account_id"))
        except TrutoInputError as exc:
            return self._invalid(raw, str(exc))
        try:
            body = data["body"]
            # A flat body (text fields, amount) is read without the model, here and by the
            # preflight; any other is validated once and the preflight checks the model.
            update = None if flat_update_body(body) is not None else parse_update_body(body)
            request = self.hook.build_update(
                opp_id,
                body if update is None else update,
                lambda: self._query(account),
                idempotency_key=self.identity.for_row(raw.index),  # the hook derives the key
            )
        except TrutoInputError as exc:
            return self._invalid(raw, str(exc), account)
        request.content  # noqa: B018 - encode now: a body that cannot go on the wire is invalid
        key = str(request.idempotency_key)  # derived by the hook from the row's identity
        return RowItem(
            raw.index, str(opp_id), account, request, raw.line, row_key=key, update=update
        )
