"""Idempotency, rate limits and fault knobs, plus the real-server API (thread and subprocess)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from truto_airflow.emulator import EmulatorConfig, run_emulator
from truto_airflow.emulator.app import create_app
from truto_airflow.emulator.cli import main as cli_main
from truto_airflow.emulator.faults import FaultInjector, RateLimiter
from truto_airflow.emulator.server import EmulatorHandle
from truto_airflow.emulator.state import EmulatorState

from .conftest import AUTH, TOKEN

OPP = "/unified/crm/opportunities"


def _q(accounts: dict[str, str], key: str = "hubspot") -> dict[str, str]:
    return {"integrated_account_id": accounts[key]}


# -- idempotency -----------------------------------------------------------------------------
def test_idempotent_replay_does_not_apply_twice(
    client: TestClient, accounts: dict[str, str], state: EmulatorState
) -> None:
    kwargs: dict[str, Any] = {"params": _q(accounts), "headers": {"Idempotency-Key": "abc"}}
    first = client.patch(f"{OPP}/opp-hubspot-0001", json={"amount": 10}, **kwargs)
    second = client.patch(f"{OPP}/opp-hubspot-0001", json={"amount": 10}, **kwargs)
    assert second.status_code == first.status_code == 200
    assert second.content == first.content
    assert second.headers["truto-idempotent-replay"] == "true"
    assert "truto-idempotent-replay" not in first.headers
    assert state.apply_counts[(accounts["hubspot"], "opp-hubspot-0001")] == 1
    assert state.log[-1]["replay"] is True


def test_idempotency_key_reused_with_other_body_is_409(
    client: TestClient, accounts: dict[str, str]
) -> None:
    kwargs: dict[str, Any] = {"params": _q(accounts), "headers": {"Idempotency-Key": "k"}}
    assert client.patch(f"{OPP}/opp-hubspot-0001", json={"amount": 1}, **kwargs).status_code == 200
    conflict = client.patch(f"{OPP}/opp-hubspot-0001", json={"amount": 2}, **kwargs)
    assert conflict.status_code == 409
    assert conflict.json()["statusCode"] == 409


def test_idempotency_key_is_scoped_by_path(client: TestClient, accounts: dict[str, str]) -> None:
    kwargs: dict[str, Any] = {"params": _q(accounts), "headers": {"Idempotency-Key": "same"}}
    client.patch(f"{OPP}/opp-hubspot-0001", json={"amount": 1}, **kwargs)
    other = client.patch(f"{OPP}/opp-hubspot-0002", json={"amount": 1}, **kwargs)
    assert "truto-idempotent-replay" not in other.headers


async def test_concurrent_duplicates_apply_once(config: EmulatorConfig) -> None:
    app = create_app(config.with_knobs({"latency_ms": 20}))
    state: EmulatorState = app.state.emulator.state
    account = state.account_keys["hubspot"]
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://emu", headers=AUTH) as c:
        responses = await asyncio.gather(
            *(
                c.patch(
                    f"{OPP}/opp-hubspot-0004",
                    params={"integrated_account_id": account},
                    json={"name": "once"},
                    headers={"Idempotency-Key": "dup"},
                )
                for _ in range(8)
            )
        )
    assert {r.status_code for r in responses} == {200}
    assert state.apply_counts[(account, "opp-hubspot-0004")] == 1
    assert sum(r.headers.get("truto-idempotent-replay") == "true" for r in responses) == 7


# -- rate limits -----------------------------------------------------------------------------
def test_rate_limit_headers_and_429(config: EmulatorConfig) -> None:
    app = create_app(config.with_knobs({"rate_limit": 3}))
    accounts = app.state.emulator.state.account_keys
    with TestClient(app, headers=dict(AUTH)) as client:
        answers = [client.get(f"{OPP}/opp-hubspot-0001", params=_q(accounts)) for _ in range(4)]
        other_account = client.get(f"{OPP}/opp-pipedrive-0001", params=_q(accounts, "pipedrive"))
        admin = client.get("/_emulator/health")
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[0].headers["ratelimit-limit"] == "3;w=10"
    assert [r.headers["ratelimit-remaining"] for r in answers] == ["2", "1", "0", "0"]
    limited = answers[3]
    assert 1 <= int(limited.headers["retry-after"]) <= 10
    assert limited.headers["ratelimit-reset"] == limited.headers["retry-after"]
    body = limited.json()
    assert body["statusCode"] == 429
    assert "rate_limit_error" in body["truto_error_insight"]
    assert other_account.status_code == 200  # the limit is per integrated account
    assert "ratelimit-limit" not in admin.headers


def test_rate_limit_window_resets() -> None:
    now = [100.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert limiter.check("a", 1).allowed
    denied = limiter.check("a", 1)
    assert not denied.allowed
    assert denied.reset_s == 10
    now[0] += 4.2
    assert limiter.check("a", 1).reset_s == 6
    now[0] += 6
    assert limiter.check("a", 1).allowed


# -- injected faults -------------------------------------------------------------------------
def _fates(seed: int, n: int, **knobs: Any) -> list[Any]:
    config = EmulatorConfig(seed=seed, **knobs)
    injector = FaultInjector(seed)
    return [injector.draw(config) for _ in range(n)]


def test_fault_injection_is_deterministic_per_seed() -> None:
    first = _fates(11, 400, fault_rate=0.25)
    assert first == _fates(11, 400, fault_rate=0.25)
    assert first != _fates(12, 400, fault_rate=0.25)
    statuses = [f.fault_status for f in first if f.fault_status]
    assert 60 <= len(statuses) <= 140
    assert set(statuses) == {500, 502, 504}
    # Other knobs do not shift the fault stream.
    with_latency = _fates(11, 400, fault_rate=0.25, latency_jitter_ms=5, drop_rate=0.1)
    assert [f.fault_status for f in with_latency] == [f.fault_status for f in first]


def test_injected_5xx_uses_truto_body_and_does_not_apply(config: EmulatorConfig) -> None:
    app = create_app(config.with_knobs({"fault_rate": 1.0, "fault_statuses": (500, 502, 504)}))
    state: EmulatorState = app.state.emulator.state
    accounts = state.account_keys
    with TestClient(app, headers=dict(AUTH)) as client:
        answers = [
            client.patch(f"{OPP}/opp-hubspot-0001", params=_q(accounts), json={"name": "x"})
            for _ in range(12)
        ]
        account_route = client.get(f"/integrated-account/{accounts['hubspot']}")
    assert {r.status_code for r in answers} <= {500, 502, 504}
    for response in answers:
        assert response.json()["statusCode"] == response.status_code
    assert state.apply_counts[(accounts["hubspot"], "opp-hubspot-0001")] == 0
    assert account_route.status_code == 200  # no faults outside /unified/*


# -- real server ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorHandle]:
    with run_emulator(EmulatorConfig(seed=5, opportunities=30, token=TOKEN)) as handle:
        yield handle


@pytest.fixture
def fresh(emu: EmulatorHandle) -> EmulatorHandle:
    emu.reset()
    return emu


def _patch(
    emu: EmulatorHandle, body: dict[str, Any], headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx2.Response:
    with httpx2.Client(
        base_url=emu.base_url, headers={**AUTH, **(headers or {})}, **kwargs
    ) as client:
        return client.patch(
            f"{OPP}/opp-hubspot-0001",
            params={"integrated_account_id": emu.accounts["hubspot"]},
            json=body,
        )


def test_drop_before_and_after_apply(fresh: EmulatorHandle) -> None:
    fresh.configure(drop_rate=1.0)
    with pytest.raises(httpx2.RemoteProtocolError):
        _patch(fresh, {"name": "first"})
    assert fresh.apply_count("hubspot", "opp-hubspot-0001") == 0
    with pytest.raises(httpx2.RemoteProtocolError):
        _patch(fresh, {"name": "second"})
    assert fresh.apply_count("hubspot", "opp-hubspot-0001") == 1
    state = fresh.opportunity("hubspot", "opp-hubspot-0001")
    assert state is not None
    assert state["name"] == "second"
    faults = [(r.fault, r.applied) for r in fresh.requests(method="PATCH")]
    assert faults == [("drop_before", False), ("drop_after", True)]


def test_retry_after_drop_with_same_key_replays(fresh: EmulatorHandle) -> None:
    fresh.configure(drop_rate=1.0)
    headers = {"Idempotency-Key": "retry-1"}
    with pytest.raises(httpx2.RemoteProtocolError):
        _patch(fresh, {"name": "a"}, headers=headers)  # dropped before apply
    with pytest.raises(httpx2.RemoteProtocolError):
        _patch(fresh, {"name": "a"}, headers=headers)  # applied, then dropped
    fresh.configure(drop_rate=0.0)
    replay = _patch(fresh, {"name": "a"}, headers=headers)
    assert replay.status_code == 200
    assert replay.headers["truto-idempotent-replay"] == "true"
    assert fresh.apply_count("hubspot", "opp-hubspot-0001") == 1


def test_slow_response_exceeds_client_timeout(fresh: EmulatorHandle) -> None:
    fresh.configure(slow_rate=1.0, slow_ms=3000)
    with pytest.raises(httpx2.ReadTimeout):
        _patch(fresh, {"name": "slow"}, timeout=0.2)


def test_handle_inspection_configure_and_reset(fresh: EmulatorHandle) -> None:
    ids = fresh.opportunity_ids("hubspot")
    assert ids[0] == "opp-hubspot-0001"
    assert fresh.opportunity("hubspot", "missing") is None
    _patch(fresh, {"name": "logged"}, headers={"User-Agent": "ua-test"})
    [entry] = fresh.requests(method="patch", account_id="hubspot")
    assert entry.headers["user-agent"] == "ua-test"
    assert "authorization" not in entry.headers
    assert entry.body == {"name": "logged"}
    assert fresh.configure(latency_ms=1).latency_ms == 1
    with pytest.raises(RuntimeError):
        fresh.configure(no_such_knob=1)
    fresh.reset()
    assert fresh.requests() == []
    assert fresh.config.latency_ms == 0
    restored = fresh.opportunity("hubspot", "opp-hubspot-0001")
    assert restored is not None
    assert restored["name"] != "logged"


def test_airflow_connection_values(fresh: EmulatorHandle) -> None:
    data = json.loads(fresh.airflow_conn_json("pipedrive"))
    assert data == {
        "conn_type": "truto",
        "host": fresh.base_url,
        "password": TOKEN,
        "extra": {"integrated_account_id": fresh.accounts["pipedrive"]},
    }
    from airflow.models.connection import Connection

    conn = Connection(conn_id="truto_default", uri=fresh.airflow_conn_uri())
    assert conn.conn_type == "truto"
    base = httpx2.URL(fresh.base_url)
    assert (conn.host, conn.port) == (f"http://{base.host}", base.port)
    assert conn.password == TOKEN
    assert conn.extra_dejson["integrated_account_id"] == fresh.accounts["hubspot"]


def test_fixture_points_airflow_at_emulator(truto_emulator: EmulatorHandle) -> None:
    import os

    conn = json.loads(os.environ["AIRFLOW_CONN_TRUTO_DEFAULT"])
    assert conn["host"] == truto_emulator.base_url
    assert conn["extra"]["integrated_account_id"] == truto_emulator.accounts["hubspot"]
    assert truto_emulator.requests() == []


def test_factory_and_subprocess_mode(truto_emulator_factory: Callable[..., EmulatorHandle]) -> None:
    emu = truto_emulator_factory(seed=9, opportunities=12, subprocess=True)
    assert len(emu.opportunity_ids("salesforce")) == 2
    with httpx2.Client(
        base_url=emu.base_url, headers={"Authorization": f"Bearer {emu.token}"}
    ) as c:
        response = c.get("/integrated-account", params={"limit": 1})
    assert response.status_code == 200


def test_cli_refuses_remote_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--host", "0.0.0.0"]) == 2  # noqa: S104 - the refused case
    assert "--allow-remote" in capsys.readouterr().err


def test_ten_thousand_opportunities_are_seeded() -> None:
    # Seeding speed is a benchmark concern (benchmarks/), never a timed test.
    app = create_app(EmulatorConfig(opportunities=10_000))
    state: EmulatorState = app.state.emulator.state
    assert sum(len(a.opportunities) for a in state.accounts.values()) == 10_001  # + odd-id deal
