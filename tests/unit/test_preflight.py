"""Field-support preflight: unsupported fields, required fields, status values, resolution."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.models.test_opportunity import field_values
from truto_airflow.capabilities import load_opportunity_capabilities
from truto_airflow.exceptions import TrutoInputError, TrutoServerError
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.models.opportunity import parse_update_body
from truto_airflow.preflight import (
    Preflight,
    check_update,
    integration_from_account,
    validate_policy,
)
from truto_airflow.retry import RetryPolicy

caps = load_opportunity_capabilities()
LISTED = sorted(s for s in caps.integrations() if caps.is_listed(s))
ACCOUNT = "62f44730-dd91-461e-bd6a-aedd9e0ad79d"
OTHER_ACCOUNT = "11111111-2222-3333-4444-555555555555"

#: A valid value for each body field, so any field can be put in an update.
SAMPLE: dict[str, Any] = {
    "name": "Renewal",
    "description": "from the warehouse",
    "amount": 1200,
    "currency": "EUR",
    "close_date": "2026-12-01T00:00:00+00:00",
    "close_time": "12:00",
    "created_at": "2026-01-01T00:00:00+00:00",
    "owner": {"id": "u1"},
    "account": {"id": "a1"},
    "contact": [{"id": "c1"}],
    "stage": {"id": "s1"},
    "status": "won",
    "tags": [{"name": "vip"}],
    "custom_fields": {"score": 3},
    "remote_data": {"anything": 1},
}


# -- pure checks ----------------------------------------------------------------------------------


def test_unsupported_field_names_integration_field_and_fix() -> None:
    report = check_update("Pipedrive", {"amount": 10, "description": "lost on Pipedrive"})
    assert report.checked
    assert report.unsupported_fields == ["description"]
    (issue,) = report.errors("error")
    assert issue.kind == "unsupported_field"
    assert "Pipedrive" in issue.message
    assert "'description'" in issue.message
    assert "remote_data" in issue.message
    assert "unsupported_fields='warn'" in issue.message
    assert re.search(r"Pipedrive.*'description'", report.error_message("error"))


def test_policy_warn_and_ignore_let_unsupported_fields_through() -> None:
    report = check_update("pipedrive", {"description": "x"})
    assert [i.field for i in report.warnings("warn")] == ["description"]
    assert report.errors("warn") == []
    assert report.errors("ignore") == [] and report.warnings("ignore") == []
    assert report.error_message("warn") == ""  # nothing blocks the write
    assert not report.ok("error") and report.ok("ignore")


def test_remote_data_is_never_flagged() -> None:
    report = check_update("Pipedrive", {"remote_data": {"description": "via passthrough"}})
    assert report.checked and report.issues == ()


def test_teamleader_missing_required_fields_are_errors_under_every_policy() -> None:
    report = check_update("Teamleader", {"name": "Deal"})
    missing = sorted(i.field for i in report.issues if i.kind == "missing_required")
    assert missing == ["account", "contact"]
    for policy in ("error", "warn", "ignore"):
        assert {i.field for i in report.errors(policy)} == {"account", "contact"}
    assert "Teamleader requires field 'account'" in report.error_message("ignore")


def test_teamleader_null_required_field_counts_as_missing() -> None:
    report = check_update(
        "teamleader", {"name": None, "account": {"id": "a"}, "contact": [{"id": "c"}]}
    )
    assert [(i.kind, i.field) for i in report.issues] == [("missing_required", "name")]
    assert "is null" in report.issues[0].message


def test_teamleader_complete_body_passes() -> None:
    body = {"name": "Deal", "account": {"id": "a"}, "contact": [{"id": "c"}]}
    report = check_update("Teamleader", body)
    assert report.issues == ()
    assert report.required_fields == {"name", "account", "contact"}


def test_pipedrive_bad_status_is_an_error_with_a_hint() -> None:
    report = check_update("Pipedrive", {"status": "Won"})
    (issue,) = report.errors("ignore")
    assert issue.kind == "invalid_status" and issue.field == "status"
    assert "did you mean 'won'" in issue.message
    assert "deleted, lost, open, won" in issue.message


@pytest.mark.parametrize("status", ["open", "won", "lost", "deleted"])
def test_pipedrive_documented_statuses_pass(status: str) -> None:
    assert check_update("Pipedrive", {"status": status}).issues == ()


def test_status_values_not_enumerated_are_not_checked() -> None:
    assert caps.status_values("close") is None
    assert check_update("Close", {"status": "anything-goes"}).issues == ()


def test_clearing_status_is_not_an_invalid_value() -> None:
    assert check_update("Pipedrive", {"status": None}).issues == ()


def test_status_on_an_integration_without_status_is_unsupported_not_invalid() -> None:
    report = check_update("HubSpot", {"status": "won"})
    assert [(i.kind, i.field) for i in report.issues] == [("unsupported_field", "status")]


@pytest.mark.parametrize("name", ["Salesforce", "salesforce", "Zoho CRM", "zoho_crm"])
def test_unlisted_integrations_get_no_preflight(name: str) -> None:
    report = check_update(name, {"description": "x", "status": "whatever", "close_time": "01:00"})
    assert not report.checked
    assert report.issues == ()
    assert report.note is not None and "no per-field support" in report.note


def test_unknown_integration_is_not_blocked() -> None:
    report = check_update("copper", {"description": "x"})
    assert not report.checked and report.issues == ()
    assert "copper" in (report.note or "")
    assert not check_update(None, {"description": "x"}).checked


def test_integration_names_are_normalised() -> None:
    assert check_update("Zendesk Sell", {"amount": 1}).integration == "zendesk_sell"
    assert check_update("HUBSPOT", {"amount": 1}).integration == "hubspot"


def test_report_is_json_serialisable() -> None:
    report = check_update("Pipedrive", {"description": "x", "status": "nope"})
    data = json.loads(json.dumps(report.to_dict()))
    assert data["integration"] == "pipedrive"
    assert {i["kind"] for i in data["issues"]} == {"unsupported_field", "invalid_status"}


def test_invalid_body_fails_like_the_operator_would() -> None:
    with pytest.raises(TrutoInputError, match="unknown field 'descripton'"):
        check_update("HubSpot", {"descripton": "typo"})


@pytest.mark.parametrize("bad", ["strict", "", None, 1])
def test_policy_values_are_validated(bad: Any) -> None:
    with pytest.raises(TrutoInputError, match="unsupported_fields="):
        validate_policy(bad)
    assert validate_policy(" Warn ") == "warn"


def test_integration_from_account() -> None:
    assert integration_from_account({"integration": {"name": "hubspot"}}) == "hubspot"
    assert integration_from_account({"integration": {"name": ""}}) is None
    assert integration_from_account({"status": "active"}) is None


# -- properties over the whole table -------------------------------------------------------------


@given(st.sampled_from(LISTED), st.sets(st.sampled_from(sorted(SAMPLE))))
def test_exactly_the_unsupported_fields_are_flagged(integration: str, fields: set[str]) -> None:
    body = {f: SAMPLE[f] for f in fields}
    report = check_update(integration, body)
    supported = caps.supported_fields(integration) | {"remote_data"}
    assert set(report.unsupported_fields) == fields - supported
    required = caps.required_fields(integration)
    missing = {i.field for i in report.issues if i.kind == "missing_required"}
    assert missing == required - fields
    # warn/ignore never turn an unsupported field into an error
    assert all(i.kind != "unsupported_field" for i in report.errors("warn"))


@given(st.sampled_from(LISTED))
def test_remote_data_alone_passes_everywhere_except_required_fields(integration: str) -> None:
    report = check_update(integration, {"remote_data": {"x": 1}})
    assert {i.kind for i in report.issues} <= {"missing_required"}
    assert {i.field for i in report.issues} == caps.required_fields(integration)


# -- resolution and the per-task object -----------------------------------------------------------


class FakeHook:
    def __init__(self, integration: str | None = "pipedrive", error: Exception | None = None):
        self.calls: list[str | None] = []
        self.integration = integration
        self.error = error

    def get_integrated_account(self, integrated_account_id: str | None = None) -> Any:
        self.calls.append(integrated_account_id)
        if self.error is not None:
            raise self.error
        return {"id": integrated_account_id, "integration": {"name": self.integration}}


class ListLogger:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, msg: str, *args: Any) -> None:
        self.warnings.append(msg % args)


def test_resolution_is_cached_per_account() -> None:
    hook = FakeHook("pipedrive")
    pf = Preflight(hook=hook)
    for _ in range(5):
        assert pf.resolve(ACCOUNT).name == "pipedrive"
    pf.resolve(OTHER_ACCOUNT)
    assert hook.calls == [ACCOUNT, OTHER_ACCOUNT]


def test_explicit_integration_skips_the_lookup() -> None:
    hook = FakeHook("pipedrive")
    pf = Preflight(hook=hook, integration="HubSpot")
    report = pf.check({"description": "ok on HubSpot"}, integrated_account_id=ACCOUNT)
    assert report.integration == "hubspot" and report.issues == ()
    assert hook.calls == []


def test_unlisted_integration_warns_once_per_task() -> None:
    logger = ListLogger()
    pf = Preflight(hook=FakeHook("salesforce"), logger=logger)
    for i in range(10):
        report = pf.check({"description": f"row {i}"}, integrated_account_id=ACCOUNT)
        assert not report.checked
    assert len(logger.warnings) == 1
    assert "Salesforce" in logger.warnings[0]


@pytest.mark.parametrize(
    ("status", "cls", "words"),
    [
        (401, "TrutoAuthError", "token is invalid or expired"),
        (403, "TrutoAuthError", "integration='<crm>'"),
        (404, "TrutoNotFoundError", "does not exist or is not visible"),
        (400, "TrutoValidationError", "nothing was sent"),
        (405, "TrutoMethodNotAllowedError", "nothing was sent"),
    ],
)
def test_client_error_on_lookup_fails_with_that_error(status: int, cls: str, words: str) -> None:
    """Issue 8: a 401/403 lookup used to warn "integration unknown" and send the PATCH anyway."""
    from airflow.sdk.exceptions import AirflowFailException

    from truto_airflow import exceptions

    err = exceptions.error_class_for_status(status)(status_code=status, message="nope")
    hook = FakeHook(error=err)
    logger = ListLogger()
    pf = Preflight(hook=hook, logger=logger)
    for _ in range(3):
        with pytest.raises(getattr(exceptions, cls)) as info:
            pf.check({"description": "x"}, integrated_account_id=ACCOUNT)
        assert isinstance(info.value, AirflowFailException)  # no Airflow retries
        assert info.value.status_code == status
        assert words in str(info.value) and ACCOUNT in str(info.value)
    assert hook.calls == [ACCOUNT]  # the failure is remembered for the task
    assert logger.warnings == []


async def test_client_error_on_async_lookup_fails_too() -> None:
    from truto_airflow.exceptions import TrutoAuthError

    class AsyncFakeHook(FakeHook):
        async def aget_integrated_account(self, integrated_account_id: str | None = None) -> Any:
            return self.get_integrated_account(integrated_account_id)

    hook = AsyncFakeHook(error=TrutoAuthError(status_code=401, message="bad token"))
    pf = Preflight(hook=hook)
    for _ in range(2):
        with pytest.raises(TrutoAuthError, match="token is invalid"):
            await pf.aresolve(ACCOUNT)
    with pytest.raises(TrutoAuthError):
        pf.resolve(ACCOUNT)
    assert hook.calls == [ACCOUNT]


def test_missing_connection_on_lookup_is_not_an_unknown_integration() -> None:
    from truto_airflow.exceptions import TrutoConfigError

    hook = FakeHook(error=TrutoConfigError("Airflow connection 'truto_default' is not defined"))
    with pytest.raises(TrutoConfigError):
        Preflight(hook=hook).check({"amount": 1}, integrated_account_id=ACCOUNT)


def _lookup_answers(status: int, seen: list[str]) -> Callable[[httpx2.Request], httpx2.Response]:
    """Account lookups (GET) answer ``status``; writes would succeed. Records the methods."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.method)
        if request.method == "GET":
            return httpx2.Response(status, json={"statusCode": status, "message": "no"})
        return httpx2.Response(200, json={"id": "1"})

    return handler


@pytest.mark.parametrize("status", [401, 403, 404])
def test_operator_sends_no_patch_when_the_lookup_is_refused(
    monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    from tests.conftest import truto_conn_json
    from truto_airflow.exceptions import TrutoClientError
    from truto_airflow.operators.opportunities import UpdateOpportunityOperator

    monkeypatch.setenv("AIRFLOW_CONN_TRUTO_DEFAULT", truto_conn_json())
    seen: list[str] = []
    handler = _lookup_answers(status, seen)
    op = UpdateOpportunityOperator(
        task_id="t",
        opportunity_id="1",
        body={"amount": 1},
        hook_params={
            "transport": httpx2.MockTransport(handler),
            "retry_policy": RetryPolicy(max_retries=0),
        },
    )
    with pytest.raises(TrutoClientError) as info:
        op.execute({})  # type: ignore[arg-type]
    assert info.value.status_code == status
    assert seen == ["GET"]


def test_bulk_rows_fail_and_nothing_is_sent_when_the_lookup_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.conftest import truto_conn_json
    from tests.unit.operators.test_bulk import operator as bulk_operator
    from tests.unit.operators.test_bulk import rows

    monkeypatch.setenv("AIRFLOW_CONN_TRUTO_DEFAULT", truto_conn_json())
    seen: list[str] = []
    op = bulk_operator(_lookup_answers(403, seen), rows(4), integration=None, max_failed=10)
    summary = op.execute({})  # type: ignore[arg-type]
    assert summary["outcomes"]["updated"] == 0
    assert summary["outcomes"]["failed"] + summary["outcomes"]["invalid"] == 4
    assert "PATCH" not in seen
    assert seen.count("GET") == 1


def test_transient_error_on_lookup_propagates() -> None:
    hook = FakeHook(error=TrutoServerError(status_code=502, message="bad gateway"))
    with pytest.raises(TrutoServerError):
        Preflight(hook=hook).check({"amount": 1}, integrated_account_id=ACCOUNT)


def test_logs_go_to_the_module_logger_by_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="truto_airflow.preflight"):
        Preflight(integration="zoho_crm").check({"amount": 1})
    assert "Zoho CRM" in caplog.text


# -- against TrutoHook (mock transport): sync and async share the cache --------------------------


def _hook(monkeypatch: pytest.MonkeyPatch, seen: list[str]) -> TrutoHook:
    from tests.conftest import truto_conn_json

    monkeypatch.setenv("AIRFLOW_CONN_TRUTO_DEFAULT", truto_conn_json())

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(f"{request.method} {request.url.path}")
        assert request.method == "GET", "preflight must never write"
        return httpx2.Response(
            200, json={"id": ACCOUNT, "integration": {"name": "teamleader", "id": "i"}}
        )

    return TrutoHook(
        transport=httpx2.MockTransport(handler),
        async_transport=httpx2.MockTransport(handler),
        retry_policy=RetryPolicy(max_retries=0),
    )


def test_resolves_through_truto_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    pf = Preflight(hook=_hook(monkeypatch, seen))
    report = pf.check({"name": "x"})  # the connection's default account
    assert report.integration == "teamleader"
    assert {i.field for i in report.errors()} == {"account", "contact"}
    pf.check({"name": "y"})
    assert seen == [f"GET /integrated-account/{ACCOUNT}"]


async def test_async_resolution_uses_one_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    hook = _hook(monkeypatch, seen)
    pf = Preflight(hook=hook)
    try:
        resolved = await pf.aresolve(ACCOUNT)
        assert resolved.name == "teamleader" and resolved.source == "account"
        assert (await pf.aresolve(ACCOUNT)).name == "teamleader"
        # the sync path (and the hook's own cache) see the same answer without a new call
        assert hook.get_integrated_account(ACCOUNT)["integration"]["name"] == "teamleader"
        assert pf.check({"name": "x"}, resolved=resolved).integration == "teamleader"
    finally:
        await hook.aclose()
    assert seen == [f"GET /integrated-account/{ACCOUNT}"]


bulk_bodies = st.tuples(
    field_values, st.one_of(st.none(), st.sampled_from(["open", "won", "lost", "Open", "x"]))
).map(lambda pair: pair[0] if pair[1] is None else {**pair[0], "status": pair[1]})


@settings(max_examples=150)
@given(st.sampled_from(sorted(load_opportunity_capabilities().integrations())), bulk_bodies)
def test_checking_the_validated_update_equals_checking_its_body(slug: str, body: Any) -> None:
    """The bulk step checks the row's validated update (no second validation): the report is
    the one its JSON body gives, for every integration."""
    update = parse_update_body(body)
    assert check_update(slug, update) == check_update(slug, update.to_body())


def test_a_rows_report_never_carries_another_rows_issues() -> None:
    """The report of a row without issues is worked out once per integration and shared; a
    row with issues gets its own, and the shared one stays clean."""
    clean = check_update("hubspot", {"amount": 1})
    refused = check_update("hubspot", {"amount": 1, "currency": "EUR"})
    assert [(i.kind, i.field) for i in refused.issues] == [("unsupported_field", "currency")]
    again = check_update("hubspot", {"name": "x"})
    assert again == clean and again.issues == () and again.checked
    assert check_update("hubspot", {"amount": 1}).issues == ()
