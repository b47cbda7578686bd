"""One status table (``exceptions.STATUS_POLICY``): the hook's retries, the task's failure kind,
the bulk engine's closed accounts and the bulk operator's "transient" verdict all agree with it."""

from __future__ import annotations

import collections

import httpx2
import pytest
from airflow.sdk.exceptions import AirflowFailException

from tests.unit.bulk.conftest import ACCOUNTS, account_of, make_engine, rows_for, run
from truto_airflow.exceptions import (
    STATUS_POLICY,
    TrutoAPIError,
    TrutoClientError,
    TrutoServerError,
    status_policy,
)
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.operators.bulk import _transient
from truto_airflow.retry import RETRY_STATUSES, RetryPolicy

#: Every listed status, plus unlisted ones that take their class's fallback.
STATUSES = [*sorted(STATUS_POLICY), 402, 418, 451, 501, 505, 599]


def _answer(status: int) -> httpx2.Response:
    return httpx2.Response(status, json={"statusCode": status, "message": "no"})


@pytest.mark.parametrize("status", STATUSES)
def test_the_hook_retries_exactly_what_the_table_says(truto_conn: str, status: int) -> None:
    policy = status_policy(status)
    answers = [_answer(status), httpx2.Response(200, json={"id": "1"})]
    sent: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return answers[len(sent) - 1]

    hook = TrutoHook(
        truto_conn,
        transport=httpx2.MockTransport(handler),
        retry_policy=RetryPolicy(max_retries=1, sleep=lambda _s: None),
    )
    if policy.hook_retries:
        assert hook.update_opportunity("1", {"amount": 1})["id"] == "1"
        assert len(sent) == 2
        assert status in RETRY_STATUSES
        return
    with pytest.raises(TrutoAPIError) as info:
        hook.update_opportunity("1", {"amount": 1})
    assert len(sent) == 1 and status not in RETRY_STATUSES
    assert type(info.value) is policy.error
    # The task's failure kind: fail now (no Airflow retry) exactly when no task retry can help.
    assert isinstance(info.value, AirflowFailException) is (not policy.task_retry_helps)
    assert info.value.policy == policy


@pytest.mark.parametrize("status", [s for s in STATUSES if s != 429])
def test_the_bulk_engine_closes_exactly_the_accounts_the_table_says(status: int) -> None:
    # (429 closes an account by the throttle clock, not by status: see test_engine.)
    sent: collections.Counter[str] = collections.Counter()

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent[account_of(request)] += 1
        return _answer(status)

    summary = run(make_engine(handler, max_retries=1), rows_for(3, ACCOUNTS[0]))
    assert summary["accounts"][ACCOUNTS[0]] == {"failed": 3}
    if status_policy(status).closes_account:
        assert sent[ACCOUNTS[0]] == 1  # the first answer closed the account
    else:
        retries = 2 if status_policy(status).hook_retries else 1
        assert sent[ACCOUNTS[0]] == 3 * retries
    # The bulk operator calls a failure transient exactly when a task retry may help.
    assert _transient(str(status)) is status_policy(status).task_retry_helps


def test_fallbacks_and_the_non_error_statuses() -> None:
    assert status_policy(418).error is TrutoClientError
    assert status_policy(501).error is TrutoServerError
    assert not status_policy(501).hook_retries
    assert _transient("none")  # no HTTP answer at all
    assert not _transient("200") and not _transient("204")  # updated rows are no failures
