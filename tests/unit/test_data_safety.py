"""The one data-safety decision both operators call (truto_airflow.data_safety.decide)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.unit.test_diff import partial_states, updates
from truto_airflow.data_safety import decide, format_change, reads_current
from truto_airflow.models.opportunity import parse_update_body
from truto_airflow.preflight import PreflightReport, check_update

UNCHECKED = PreflightReport(integration=None, display_name=None, checked=False)


@given(updates, partial_states, st.booleans(), st.booleans())
def test_decide_never_calls_unread_data_unchanged(
    update: dict[str, Any], current: dict[str, Any], skip: bool, dry_run: bool
) -> None:
    body = parse_update_body(update).to_body()
    assume(body)  # an empty update is refused before any decision (prepare_update)
    assert reads_current(UNCHECKED, "error", skip_unchanged=skip, dry_run=dry_run) == (
        skip or dry_run
    )
    read = current if (skip or dry_run) else None
    decision = decide(
        body, UNCHECKED, policy="error", skip_unchanged=skip, dry_run=dry_run, current=read
    )
    plan = decision.plan()
    json.dumps(plan)
    if decision.outcome == "unchanged":
        assert skip and all(name in current for name in body)
    else:
        assert decision.outcome == ("would_update" if dry_run else "send")
        assert set(decision.body) <= set(body)
        if not skip:
            assert decision.body == body
    if read is not None:
        assert plan["compared"] is True
        for name, change in plan["changes"].items():
            if name not in current:
                assert "old" not in change and "not returned" in change["note"]
            elif name != "custom_fields":
                assert "old" in change
            format_change(name, change)  # every plan line can be logged


def test_preflight_errors_are_invalid_before_anything_is_read() -> None:
    report = check_update("teamleader", {"name": "x"})
    assert not reads_current(report, "ignore", skip_unchanged=True, dry_run=True)
    decision = decide(
        {"name": "x"}, report, policy="ignore", skip_unchanged=True, dry_run=True, current=None
    )
    assert decision.outcome == "invalid" and "requires field 'account'" in str(decision.message)
    assert decision.plan() == {"outcome": "invalid", "message": decision.message}


def test_required_fields_ride_along_and_skip_needs_a_read() -> None:
    report = check_update(
        "teamleader", {"name": "x", "account": {"id": "a"}, "contact": [{"id": "c"}]}
    )
    body = {"name": "y", "account": {"id": "a"}, "contact": [{"id": "c"}]}
    current = {"name": "x", "account": {"id": "a"}, "contact": [{"id": "c"}]}
    decision = decide(
        body, report, policy="error", skip_unchanged=True, dry_run=False, current=current
    )
    assert decision.outcome == "send" and decision.body == body
    with pytest.raises(ValueError, match="current state"):
        decide(body, report, policy="error", skip_unchanged=True, dry_run=False)


@pytest.mark.parametrize(
    ("name", "change", "line"),
    [
        ("amount", {"old": 1, "new": 2}, "amount: 1 -> 2"),
        ("description", {"new": None, "note": "unknown"}, "description: ? -> None (unknown)"),
        ("amount", {"new": 2}, "amount: -> 2 (current value not read)"),
        ("remote_data", {"new": {"b": 1, "a": 2}}, "remote_data: always sent (keys a,b)"),
    ],
)
def test_format_change(name: str, change: dict[str, Any], line: str) -> None:
    assert format_change(name, change) == line
