"""The data-safety decision for one update, shared by both operators (docs/data_safety.md).

:func:`decide` is pure: the caller looks the integration up, runs the preflight check, reads
the current state when :func:`reads_current` says so, and sends (or not) what the decision
says. The single operator and the bulk row step both call it, so a row is judged the same way
whichever operator carries it:

* a preflight error (policy-dependent) makes the update ``invalid``: nothing is read or sent;
* with ``skip_unchanged`` the body to send is the diff's minimal body, and an update with
  nothing left to send is ``unchanged``;
* a dry run reads the current state even without ``skip_unchanged``, so its plan always shows
  old -> new; its outcome is ``would_update`` (or ``unchanged``) and nothing is sent;
* otherwise the outcome is ``send``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from truto_airflow.diff import UpdateDiff, diff_update
from truto_airflow.exceptions import TrutoConfigError
from truto_airflow.preflight import PreflightReport, UnsupportedFieldsPolicy

__all__ = ["DecisionOutcome", "SafetyDecision", "decide", "format_change", "reads_current"]

DecisionOutcome = Literal["invalid", "unchanged", "would_update", "send"]


@dataclass(frozen=True)
class SafetyDecision:
    """What to do with one update, and the plan entry that explains it."""

    outcome: DecisionOutcome
    #: The JSON body to send (``send``) or that would be sent (``would_update``); else empty.
    body: dict[str, Any]
    report: PreflightReport
    #: The comparison with the current state; ``None`` when it was not read.
    diff: UpdateDiff | None = None
    #: Why the update is ``invalid``.
    message: str | None = None

    def plan(self) -> dict[str, Any]:
        """JSON-ready: outcome, the fields that change (old -> new), the fields sent."""
        entry: dict[str, Any] = {"outcome": self.outcome}
        if self.message:
            entry["message"] = self.message
        if self.outcome == "invalid":
            return entry
        entry["compared"] = self.diff is not None
        if self.diff is None:
            entry["changes"] = {name: {"new": value} for name, value in self.body.items()}
            return entry
        entry["changes"] = self.diff.plan()
        entry["unchanged"] = list(self.diff.unchanged)
        entry["carried"] = list(self.diff.carried)
        entry["fields"] = list(self.body)
        return entry


def reads_current(
    report: PreflightReport,
    policy: UnsupportedFieldsPolicy,
    *,
    skip_unchanged: bool,
    dry_run: bool,
) -> bool:
    """Whether the caller must read the opportunity before :func:`decide`."""
    return (skip_unchanged or dry_run) and report.ok(policy)


def decide(
    body: Mapping[str, Any],
    report: PreflightReport,
    *,
    policy: UnsupportedFieldsPolicy,
    skip_unchanged: bool,
    dry_run: bool,
    current: Mapping[str, Any] | None = None,
) -> SafetyDecision:
    """Judge one validated update (its JSON ``body``) against its preflight report and, when it
    was read, the ``current`` opportunity (``None``: not read)."""
    message = report.error_message(policy)
    if message:
        return SafetyDecision("invalid", {}, report, message=message)
    if skip_unchanged and current is None:
        raise TrutoConfigError("skip_unchanged needs the current state (see reads_current)")
    diff = None
    if current is not None:
        diff = diff_update(
            body,
            current,
            keep=report.required_fields,
            uncompared=report.unsupported_fields if policy != "error" else (),
        )
    sent = diff.body if skip_unchanged and diff is not None else dict(body)
    if not sent:
        return SafetyDecision("unchanged", {}, report, diff)
    return SafetyDecision("would_update" if dry_run else "send", sent, report, diff)


def format_change(name: str, change: Mapping[str, Any]) -> str:
    """One plan line for one field: ``amount: 1200 -> 5000``; ``remote_data`` as keys only
    (passthrough data may hold anything); ``?`` for an old value the read did not return."""
    if name == "remote_data":
        keys = sorted(change.get("new") or {})
        return f"remote_data: always sent (keys {','.join(keys)})"
    if "old" in change:
        line = f"{name}: {change['old']!r} -> {change['new']!r}"
    elif change.get("note"):
        line = f"{name}: ? -> {change['new']!r}"
    else:
        return f"{name}: -> {change['new']!r} (current value not read)"
    return f"{line} ({change['note']})" if change.get("note") else line
