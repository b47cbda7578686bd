"""Row outcomes and the run summary (counts only: memory does not grow with the input)."""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from truto_airflow.bulk.prepare import RowItem
    from truto_airflow.bulk.steps import StepDecision
    from truto_airflow.exceptions import TrutoAPIError

__all__ = [
    "Failure",
    "LatencyHistogram",
    "Outcome",
    "RowResult",
    "SummaryBuilder",
    "describe_exception",
    "format_outcome_table",
    "json_safe",
    "safe_text",
]

#: Longest text kept from a value or an exception in a row's reason.
_TEXT_LIMIT = 300
#: Nesting kept when a rejected row's body is written out (deeper levels are summarised).
_DEPTH_LIMIT = 20


def safe_text(value: Any, limit: int = _TEXT_LIMIT) -> str:
    """``str(value)`` on one line, cut to ``limit``; never raises (a row may hold anything)."""
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    text = " ".join(text.encode("utf-8", "backslashreplace").decode("utf-8").split())
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more]"


def describe_exception(exc: BaseException, redact: Callable[[str], str] | None = None) -> str:
    """``Type: message`` on one line (token masked by ``redact``), for a row's reason."""
    text = f"{type(exc).__name__}: {safe_text(exc)}"
    return redact(text) if redact is not None else text


def json_safe(value: Any, _depth: int = 0) -> Any:
    """``value`` as plain JSON types, so any row (bytes, odd objects, non-string keys, lone
    surrogates, NaN) can be written to the rejected-rows file as evidence."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if _depth >= _DEPTH_LIMIT:
        return f"<{type(value).__name__} nested too deep>"
    try:
        if isinstance(value, Mapping):
            return {safe_text(k): json_safe(v, _depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [json_safe(v, _depth + 1) for v in value]
    except Exception as exc:  # a mapping whose items() raises: describe it instead
        return f"<{type(value).__name__}: {describe_exception(exc)}>"
    return safe_text(value)


class Outcome(str, enum.Enum):
    """How a row ended. Every input row gets exactly one."""

    #: Truto accepted the update (2xx), in this try or an earlier try of the same run.
    UPDATED = "updated"
    #: Truto (or the network) refused it after the retries the policy allows.
    FAILED = "failed"
    #: Rejected before sending: the row itself is malformed or fails validation (including the
    #: field-support preflight, see docs/data_safety.md).
    INVALID = "invalid"
    #: ``skip_unchanged``: the CRM already holds every value, so nothing was sent.
    UNCHANGED = "unchanged"
    #: ``dry_run``: the row would be written; nothing was sent.
    WOULD_UPDATE = "would_update"
    #: The run stopped on an internal failure (the summary's ``aborted``) before this row was
    #: sent. A task retry sends it.
    NOT_ATTEMPTED = "not_attempted"
    #: The run stopped while this row was in flight or waiting for a retry: it may have been
    #: applied. A task retry resends it with the same Idempotency-Key, so Truto replays it
    #: rather than applying it twice.
    INTERRUPTED = "interrupted"


#: Outcomes (their values) of rows that were sent, or tried to be: only these have a final
#: status code.
_SENT_VALUES = frozenset({Outcome.UPDATED.value, Outcome.FAILED.value})

#: Outcomes always present in the summary (the data-safety ones appear when they occur).
CORE_OUTCOMES = (Outcome.UPDATED, Outcome.FAILED, Outcome.INVALID)

#: Outcomes that count as rejected (written to the rejected-rows file, fail the task).
REJECTED = frozenset({Outcome.FAILED, Outcome.INVALID})


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a row was rejected, or an account was closed: what is kept of Truto's error (its
    names, as on :class:`~truto_airflow.exceptions.TrutoAPIError`), or this package's reason
    for a row that got no HTTP answer (``status_code`` ``None``), is invalid, or was held back.
    """

    status_code: int | None
    #: Truto's error code, or ours (``invalid_row``, ``earlier_row_failed``, an exception's
    #: type, ...); ``None`` only when a row step rejected the row without one.
    error: str | None
    message: str
    error_insight: dict[str, Any] | None = None
    is_remote_error: bool | None = None

    @classmethod
    def of(cls, error: TrutoAPIError) -> Failure:
        """What a failed row (or a closed account) keeps of Truto's error."""
        return cls(
            status_code=error.status_code,
            error=error.error or f"HTTP {error.status_code}",
            message=error.message or error.error or "",
            error_insight=error.error_insight or None,
            is_remote_error=error.is_remote_error,
        )

    @classmethod
    def no_answer(cls, exc: BaseException, detail: str) -> Failure:
        """A request that got no HTTP answer (``detail``: the exception, redacted)."""
        return cls(status_code=None, error=type(exc).__name__, message=detail)


@dataclass(slots=True)
class RowResult:
    """The final word on one row; only rejected rows are kept (bounded), never all of them."""

    index: int
    outcome: Outcome
    opportunity_id: str | None = None
    integrated_account_id: str | None = None
    #: The row's final HTTP status: an updated row's 2xx, a rejected row's failure's.
    status_code: int | None = None
    #: Why the row was rejected: set for ``failed`` and ``invalid`` rows, and only for them.
    failure: Failure | None = None
    attempts: int = 0
    line: int | None = None
    #: True when the row was never sent because its account was already known to be dead.
    not_sent: bool = False
    #: Already applied in an earlier try of this run (skipped via the ledger).
    already_applied: bool = False
    #: The validated body; written to the rejected-rows file, never to XCom or the log.
    body: Any = None

    # -- the failure's parts, by the names a rejected row has always had ---------------------

    @property
    def error(self) -> str | None:
        return None if self.failure is None else self.failure.error

    @property
    def message(self) -> str | None:
        return None if self.failure is None else self.failure.message

    @property
    def error_insight(self) -> dict[str, Any] | None:
        return None if self.failure is None else self.failure.error_insight

    @property
    def is_remote_error(self) -> bool | None:
        return None if self.failure is None else self.failure.is_remote_error

    # -- one constructor per way a row ends -------------------------------------------------

    @classmethod
    def for_item(cls, item: RowItem, outcome: Outcome, **fields: Any) -> RowResult:
        """A row's outcome with the row's identity (index, ids, line, body) filled in."""
        return cls(
            index=item.index,
            outcome=outcome,
            opportunity_id=item.opportunity_id,
            integrated_account_id=item.account,
            line=item.line,
            body=item.request.json_body,
            **fields,
        )

    @classmethod
    def _of(cls, item: RowItem, outcome: Outcome, **fields: Any) -> RowResult:
        """A row's outcome with its index and ids (no body: the row is not rejected)."""
        return cls(item.index, outcome, item.opportunity_id, item.account, **fields)

    @classmethod
    def updated(cls, item: RowItem, status_code: int) -> RowResult:
        """Truto accepted the row's request."""
        return cls._of(item, Outcome.UPDATED, status_code=status_code, attempts=item.attempts)

    @classmethod
    def applied_earlier(cls, item: RowItem) -> RowResult:
        """The success ledger says an earlier try of this run applied the row: not sent again."""
        return cls._of(item, Outcome.UPDATED, already_applied=True, line=item.line)

    @classmethod
    def failed(
        cls, item: RowItem, failure: Failure, *, attempts: int = 0, not_sent: bool = False
    ) -> RowResult:
        """Truto (or the network) refused the row, or it was not sent (``not_sent``) for
        ``failure``: its account's, or an earlier row's."""
        return cls.for_item(
            item,
            Outcome.FAILED,
            status_code=failure.status_code,
            failure=failure,
            attempts=attempts,
            not_sent=not_sent,
        )

    @classmethod
    def invalid(cls, item: RowItem, error: str, message: str) -> RowResult:
        """The row cannot be sent as it is."""
        return cls.for_item(item, Outcome.INVALID, failure=Failure(None, error, message))

    @classmethod
    def decided(cls, item: RowItem, decision: StepDecision) -> RowResult:
        """A row step settled the row without sending it (a rejection keeps the step's reason)."""
        if decision.outcome not in REJECTED:
            return cls.for_item(item, decision.outcome)
        failure = Failure(None, decision.error, decision.message)
        return cls.for_item(item, decision.outcome, failure=failure)

    @classmethod
    def cut_short(cls, item: RowItem, *, sent: bool) -> RowResult:
        """The run stopped before the row finished: ``interrupted`` when it may have been sent,
        else ``not_attempted``."""
        outcome = Outcome.INTERRUPTED if sent else Outcome.NOT_ATTEMPTED
        return cls._of(item, outcome, attempts=item.attempts + item.throttles, line=item.line)

    @classmethod
    def not_attempted(cls, index: int, opportunity_id: str | None, line: int | None) -> RowResult:
        """The run stopped while the row was being read, before it was prepared."""
        return cls(
            index=index, outcome=Outcome.NOT_ATTEMPTED, opportunity_id=opportunity_id, line=line
        )

    def holds_back(self) -> Failure:
        """The failure each later row of this (failed) row's opportunity ends with, unsent:
        sending them before this row succeeds would apply the opportunity's rows out of order."""
        return Failure(
            self.status_code,
            "earlier_row_failed",
            f"not sent: row {self.index} for this opportunity failed earlier in this run "
            f"({self.error}); sending this later row would apply the opportunity's rows "
            f"out of order. Fix row {self.index} and retry the task: it applies both, in order",
        )

    def to_dict(self, *, with_body: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "row": self.index,
            "outcome": self.outcome.value,
            "id": self.opportunity_id,
            "integrated_account_id": self.integrated_account_id,
            "status_code": self.status_code,
            "error": self.error,
            "message": self.message,
        }
        if self.line is not None:
            data["line"] = self.line
        if self.error_insight:
            data["error_insight"] = self.error_insight
        if self.is_remote_error is not None:
            data["is_remote_error"] = self.is_remote_error
        if self.attempts:
            data["attempts"] = self.attempts
        if self.not_sent:
            data["not_sent"] = True
        if with_body and self.body is not None:
            data["body"] = json_safe(self.body)
        return data


class LatencyHistogram:
    """Log-scale buckets (2 % wide): constant memory, percentiles within about 1 %."""

    _BASE = math.log(1.02)

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0

    def add(self, seconds: float) -> None:
        ms = max(seconds * 1000.0, 0.001)
        self._buckets[int(math.log(ms) / self._BASE)] += 1
        self.count += 1

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) in milliseconds, or ``None`` with no samples."""
        if not self.count:
            return None
        rank = max(1, math.ceil(self.count * q / 100.0))
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                return round(math.exp((bucket + 0.5) * self._BASE), 2)
        return None  # pragma: no cover - unreachable


@dataclass
class SummaryBuilder:
    """Accumulates counts while rows finish; ``build()`` turns them into the XCom summary."""

    total_rows: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    #: Final status code per row (``"none"`` for rows that never got an HTTP answer).
    status_codes: Counter[str] = field(default_factory=Counter)
    #: Every HTTP answer, retries included.
    responses: Counter[str] = field(default_factory=Counter)
    requests_sent: int = 0
    retries: int = 0
    rate_limited: int = 0
    network_errors: int = 0
    already_applied: int = 0
    not_sent: int = 0
    accounts: dict[str, Counter[str]] = field(default_factory=dict)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def record(self, result: RowResult) -> None:
        # Every row passes here once: plain lookups (an Enum's ``value`` and hash are Python
        # code) and no Counter built per row.
        self.total_rows += 1
        outcome = result.outcome._value_
        self.outcomes[outcome] += 1
        if result.already_applied:
            self.already_applied += 1
        elif outcome in _SENT_VALUES:
            status = result.status_code
            self.status_codes["none" if status is None else str(status)] += 1
        if result.not_sent:
            self.not_sent += 1
        account = result.integrated_account_id or "(none)"
        counts = self.accounts.get(account)
        if counts is None:
            if len(self.accounts) >= 1000:
                account = "(other)"
            counts = self.accounts.setdefault(account, Counter())
        counts[outcome] += 1

    def request_done(self, status: int | None, seconds: float) -> None:
        self.requests_sent += 1
        self.latency.add(seconds)
        if status is None:
            self.network_errors += 1
        else:
            self.responses[str(status)] += 1
            if status == 429:
                self.rate_limited += 1

    @property
    def done(self) -> int:
        return self.total_rows

    def build(self, *, duration: float, rejected: dict[str, Any]) -> dict[str, Any]:
        rate = self.total_rows / duration if duration > 0 else 0.0
        # updated/failed/invalid always; unchanged/would_update only when a row had them
        counts = {o.value: self.outcomes.get(o.value, 0) for o in CORE_OUTCOMES}
        counts.update({k: v for k, v in self.outcomes.items() if k not in counts})
        return {
            "rows": self.total_rows,
            "outcomes": counts,
            "status_codes": dict(sorted(self.status_codes.items())),
            "responses": dict(sorted(self.responses.items())),
            "requests_sent": self.requests_sent,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "network_errors": self.network_errors,
            "already_applied": self.already_applied,
            "not_sent": self.not_sent,
            "duration_s": round(duration, 3),
            "rows_per_second": round(rate, 1),
            "latency_ms": {
                "p50": self.latency.percentile(50),
                "p99": self.latency.percentile(99),
            },
            "accounts": {k: dict(v) for k, v in sorted(self.accounts.items())},
            "rejected": rejected,
        }


def format_outcome_table(summary: dict[str, Any]) -> str:
    """A compact, fixed-width table of outcomes per account for the task log."""
    kinds = list(summary["outcomes"])
    header = ["integrated_account_id", *kinds, "total"]
    rows: list[list[str]] = []
    for account, counts in summary["accounts"].items():
        values = [int(counts.get(k, 0)) for k in kinds]
        rows.append([account, *map(str, values), str(sum(values))])
    totals = [int(summary["outcomes"].get(k, 0)) for k in kinds]
    rows.append(["all", *map(str, totals), str(sum(totals))])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=False)]
        return "  ".join([first, *rest])

    rule = "  ".join("-" * w for w in widths)
    lines = [fmt(header), rule, *(fmt(r) for r in rows[:-1]), rule, fmt(rows[-1])]
    codes = ", ".join(f"{k}: {v}" for k, v in summary["status_codes"].items()) or "-"
    lines.append(
        f"final status codes: {codes}; requests sent: {summary['requests_sent']}, "
        f"retries: {summary['retries']}, 429s: {summary['rate_limited']}, "
        f"network errors: {summary['network_errors']}, already applied: "
        f"{summary['already_applied']}; {summary['rows_per_second']} rows/s in "
        f"{summary['duration_s']} s"
    )
    return "\n".join(lines)
