"""One contract test per documented rule: the emulator must behave like Truto's docs."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from truto_airflow.capabilities import load_opportunity_capabilities
from truto_airflow.emulator.seed import SPECIAL_OPPORTUNITY_ID
from truto_airflow.emulator.state import EmulatorState

OPP = "/unified/crm/opportunities"
CAPS = load_opportunity_capabilities()


def _q(accounts: dict[str, str], key: str = "hubspot", **extra: Any) -> dict[str, Any]:
    return {"integrated_account_id": accounts[key], **extra}


def _assert_error(body: dict[str, Any], status: int) -> None:
    assert body["statusCode"] == status
    assert isinstance(body["error"], str)
    assert body["error"]
    assert isinstance(body["message"], str)


# -- auth and routing ------------------------------------------------------------------------
def test_missing_token_is_401(client: TestClient, accounts: dict[str, str]) -> None:
    response = client.get(
        f"{OPP}/opp-hubspot-0001", params=_q(accounts), headers={"Authorization": ""}
    )
    assert response.status_code == 401
    assert response.json() == {
        "statusCode": 401,
        "error": "Unauthorized",
        "message": response.json()["message"],
    }


def test_wrong_token_is_401_also_on_admin(client: TestClient) -> None:
    bad = {"Authorization": "Bearer nope"}
    assert client.get("/_emulator/health", headers=bad).status_code == 401
    assert client.get("/integrated-account", headers=bad).status_code == 401


def test_unknown_route_uses_truto_error_format(client: TestClient) -> None:
    response = client.get("/unified/crm/nothing-here")
    assert response.status_code == 404
    _assert_error(response.json(), 404)


# -- integrated account param ----------------------------------------------------------------
def test_integrated_account_id_required(client: TestClient) -> None:
    response = client.patch(f"{OPP}/opp-hubspot-0001", json={"name": "x"})
    assert response.status_code == 400
    body = response.json()
    _assert_error(body, 400)
    insight = body["truto_error_insight"]["missing_required_query_parameters"]
    assert insight["value"] == ["integrated_account_id"]
    assert "truto_is_remote_error" not in body


def test_unknown_account_404(client: TestClient) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    response = client.get(f"{OPP}/opp-hubspot-0001", params={"integrated_account_id": unknown})
    assert response.status_code == 404
    _assert_error(response.json(), 404)


@pytest.mark.parametrize(
    "bad", ["nope", "62f44730dd91461eaedd9e0ad79d", "{62f44730-dd91-461e-bd6a-aedd9e0ad79d}", " "]
)
def test_non_uuid_account_is_400_in_truto_shape(client: TestClient, bad: str) -> None:
    params = {"integrated_account_id": bad}
    for response in (
        client.get(f"{OPP}/opp-hubspot-0001", params=params),
        client.patch(f"{OPP}/opp-hubspot-0001", params=params, json={"name": "x"}),
        client.get(OPP, params=params),
        client.get(f"/integrated-account/{quote(bad, safe='')}"),
    ):
        assert response.status_code == 400, response.text
        body = response.json()
        _assert_error(body, 400)
        assert "UUID" in body["message"]


def test_sandbox_rejects_writes_with_405_but_reads(
    client: TestClient, accounts: dict[str, str], state: EmulatorState
) -> None:
    before = state.accounts[accounts["sandbox"]].opportunities["opp-sandbox-0001"]["name"]
    response = client.patch(
        f"{OPP}/opp-sandbox-0001", params=_q(accounts, "sandbox"), json={"name": "x"}
    )
    assert response.status_code == 405
    _assert_error(response.json(), 405)
    read = client.get(f"{OPP}/opp-sandbox-0001", params=_q(accounts, "sandbox"))
    assert read.json()["name"] == before


def test_needs_reauth_account_is_remote_401(client: TestClient, accounts: dict[str, str]) -> None:
    response = client.get(OPP, params=_q(accounts, "needs_reauth"))
    assert response.status_code == 401
    body = response.json()
    assert body["truto_is_remote_error"] is True
    assert "raw_response" in body
    assert "remote_error" in body["truto_error_insight"]


def test_unknown_opportunity_404(client: TestClient, accounts: dict[str, str]) -> None:
    response = client.patch(f"{OPP}/opp-hubspot-9999", params=_q(accounts), json={"name": "x"})
    assert response.status_code == 404
    _assert_error(response.json(), 404)


def test_id_is_one_percent_decoded_path_segment(
    client: TestClient, accounts: dict[str, str]
) -> None:
    path = f"{OPP}/{quote(SPECIAL_OPPORTUNITY_ID, safe='')}"
    response = client.patch(path, params=_q(accounts), json={"name": "odd id"})
    assert response.status_code == 200
    assert response.json()["id"] == SPECIAL_OPPORTUNITY_ID
    assert response.json()["name"] == "odd id"


def test_single_resource_is_not_wrapped(client: TestClient, accounts: dict[str, str]) -> None:
    body = client.get(f"{OPP}/opp-hubspot-0002", params=_q(accounts)).json()
    assert body["id"] == "opp-hubspot-0002"
    assert "result" not in body


# -- per-integration write rules ------------------------------------------------------------
def test_unsupported_field_is_silently_not_applied(
    client: TestClient, accounts: dict[str, str], state: EmulatorState
) -> None:
    response = client.patch(
        f"{OPP}/opp-hubspot-0001",
        params=_q(accounts),
        json={"name": "New", "currency": "JPY", "status": "won"},
    )
    assert response.status_code == 200
    record = state.accounts[accounts["hubspot"]].opportunities["opp-hubspot-0001"]
    assert record["name"] == "New"
    assert "currency" not in record  # HubSpot is not in the docs' currency list
    assert "status" not in record
    assert "currency" not in response.json()


def test_salesforce_unlisted_applies_every_field(
    client: TestClient, accounts: dict[str, str]
) -> None:
    body = {
        "currency": "JPY",
        "status": "anything",
        "close_time": "10:00",
        "tags": [{"id": "t1", "name": "vip"}],
        "description": "d",
    }
    response = client.patch(
        f"{OPP}/opp-salesforce-0001", params=_q(accounts, "salesforce"), json=body
    )
    assert response.status_code == 200
    for name, value in body.items():
        assert response.json()[name] == value


def test_teamleader_requires_name_account_contact(
    client: TestClient, accounts: dict[str, str]
) -> None:
    response = client.patch(
        f"{OPP}/opp-teamleader-0001", params=_q(accounts, "teamleader"), json={"name": "x"}
    )
    assert response.status_code == 400
    body = response.json()
    _assert_error(body, 400)
    assert body["truto_error_insight"]["missing_required_body_fields"]["value"] == [
        "account",
        "contact",
    ]
    full = {"name": "x", "account": {"id": "acct-1"}, "contact": [{"id": "c-1"}]}
    ok = client.patch(f"{OPP}/opp-teamleader-0001", params=_q(accounts, "teamleader"), json=full)
    assert ok.status_code == 200


def test_status_values_enforced_with_remote_422(
    client: TestClient, accounts: dict[str, str]
) -> None:
    response = client.patch(
        f"{OPP}/opp-pipedrive-0001", params=_q(accounts, "pipedrive"), json={"status": "lead"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["truto_is_remote_error"] is True
    assert body["raw_response"]["success"] is False
    ok = client.patch(
        f"{OPP}/opp-attio-0001", params=_q(accounts, "attio"), json={"status": "in_progress"}
    )
    assert ok.status_code == 200
    assert ok.json()["status"] == "in_progress"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "12"),
        ("amount", True),
        ("contact", {"id": "c"}),
        ("contact", [{"name": "no id"}]),
        ("owner", {"id": 5}),
        ("close_date", "next tuesday"),
        ("custom_fields", ["a"]),
        ("remote_data", "x"),
    ],
)
def test_body_types_are_validated(
    client: TestClient, accounts: dict[str, str], field: str, value: Any
) -> None:
    response = client.patch(f"{OPP}/opp-hubspot-0001", params=_q(accounts), json={field: value})
    assert response.status_code == 400
    assert field in response.json()["message"]


def test_non_object_body_is_400(client: TestClient, accounts: dict[str, str]) -> None:
    response = client.patch(f"{OPP}/opp-hubspot-0001", params=_q(accounts), content=b"[1]")
    assert response.status_code == 400
    bad_json = client.patch(f"{OPP}/opp-hubspot-0001", params=_q(accounts), content=b"{nope")
    assert bad_json.status_code == 400


def test_remote_data_is_merged(
    client: TestClient, accounts: dict[str, str], state: EmulatorState
) -> None:
    client.patch(f"{OPP}/opp-hubspot-0001", params=_q(accounts), json={"remote_data": {"a": 1}})
    response = client.patch(
        f"{OPP}/opp-hubspot-0001", params=_q(accounts), json={"remote_data": {"b": 2}}
    )
    assert response.json()["remote_data"]["a"] == 1
    assert response.json()["remote_data"]["b"] == 2
    assert response.json()["remote_data"]["properties"]["dealname"]  # vendor data stays


def test_custom_fields_are_set_key_by_key(client: TestClient, accounts: dict[str, str]) -> None:
    url = f"{OPP}/opp-hubspot-0001"
    client.patch(url, params=_q(accounts), json={"custom_fields": {"a": 1, "b": 2}})
    response = client.patch(url, params=_q(accounts), json={"custom_fields": {"b": None, "c": 3}})
    fields = response.json()["custom_fields"]
    assert fields["a"] == 1  # not sent: kept
    assert "b" not in fields  # null: cleared
    assert fields["c"] == 3


def test_stage_by_id_reports_its_name(client: TestClient, accounts: dict[str, str]) -> None:
    url = f"{OPP}/opp-hubspot-0001"
    by_id = client.patch(url, params=_q(accounts), json={"stage": {"id": "stage-hubspot-2"}})
    assert by_id.json()["stage"]["id"] == "stage-hubspot-2"
    assert by_id.json()["stage"]["name"]
    name = by_id.json()["stage"]["name"]
    by_name = client.patch(url, params=_q(accounts), json={"stage": {"name": name}})
    assert by_name.json()["stage"] == {"id": "stage-hubspot-2", "name": name}


def test_updated_at_moves_on_every_applied_write(
    client: TestClient, accounts: dict[str, str]
) -> None:
    before = client.get(f"{OPP}/opp-hubspot-0003", params=_q(accounts)).json()["updated_at"]
    after = client.patch(f"{OPP}/opp-hubspot-0003", params=_q(accounts), json={"amount": 1}).json()[
        "updated_at"
    ]
    parsed = dt.datetime.fromisoformat(after)
    assert parsed.utcoffset() is not None
    assert parsed > dt.datetime.fromisoformat(before)


# -- response formats and query options ------------------------------------------------------
def test_raw_format_is_vendor_shaped(client: TestClient, accounts: dict[str, str]) -> None:
    hubspot = client.get(
        f"{OPP}/opp-hubspot-0001", params=_q(accounts, truto_response_format="raw")
    ).json()
    assert set(hubspot) >= {"id", "properties"}
    assert "dealname" in hubspot["properties"]
    pipedrive = client.patch(
        f"{OPP}/opp-pipedrive-0001",
        params=_q(accounts, "pipedrive", truto_response_format="raw"),
        json={"name": "Raw"},
    ).json()
    assert pipedrive["success"] is True
    assert pipedrive["data"]["title"] == "Raw"


def test_normalized_format_has_every_field_the_crm_returns(
    client: TestClient, accounts: dict[str, str]
) -> None:
    client.patch(f"{OPP}/opp-hubspot-0001", params=_q(accounts), json={"description": None})
    body = client.get(
        f"{OPP}/opp-hubspot-0001", params=_q(accounts, truto_response_format="normalized")
    ).json()
    assert set(body) == CAPS.returned_fields("hubspot")
    assert body["description"] is None  # returned by HubSpot, unset: present as null
    assert "currency" not in body and "urls" not in body  # HubSpot returns neither


# -- which fields each CRM returns (the docs' response table) ---------------------------------
@pytest.mark.parametrize("key", ["hubspot", "pipedrive", "attio", "teamleader", "salesforce"])
def test_reads_and_writes_return_only_the_documented_fields(
    client: TestClient, accounts: dict[str, str], state: EmulatorState, key: str
) -> None:
    account = state.accounts[accounts[key]]
    returned = CAPS.returned_fields(account.integration)
    opp_id = f"opp-{key}-0001"
    stored = set(account.opportunities[opp_id]) | {"remote_data"}
    expected = stored if returned is None else stored & returned
    read = client.get(f"{OPP}/{opp_id}", params=_q(accounts, key)).json()
    record = account.opportunities[opp_id]
    body = {f: record[f] for f in CAPS.required_fields(account.integration)}  # Teamleader
    written = client.patch(
        f"{OPP}/{opp_id}", params=_q(accounts, key), json={**body, "remote_data": {"x": 1}}
    ).json()
    listed = client.get(OPP, params=_q(accounts, key, limit=1)).json()["result"][0]
    for body in (read, written, listed):
        assert set(body) == expected


def test_docs_response_table_facts() -> None:
    """Pinned from the page: a change to the generated data shows up here."""
    assert CAPS.returned_fields("teamleader") == {"remote_data"}  # in no response table
    assert CAPS.returned_fields("salesforce") is None  # the page says nothing: everything
    hubspot = CAPS.returned_fields("hubspot")
    assert hubspot is not None
    assert not {"urls", "status", "currency", "tags", "last_activity_at"} & hubspot
    for crm in ("attio", "close", "highlevel", "monday_crm", "onepagecrm", "pipedrive"):
        assert "urls" in (CAPS.returned_fields(crm) or ())
    assert "id" not in CAPS.returned_fields("teamleader")  # type: ignore[operator]


def test_a_write_the_crm_applies_but_does_not_return_is_kept(
    client: TestClient, accounts: dict[str, str], state: EmulatorState
) -> None:
    account = state.accounts[accounts["pipedrive"]]
    response = client.patch(
        f"{OPP}/opp-pipedrive-0001", params=_q(accounts, "pipedrive"), json={"close_time": "17:00"}
    )
    assert response.status_code == 200 and "close_time" not in response.json()
    assert account.opportunities["opp-pipedrive-0001"]["close_time"] == "17:00"


def test_invalid_format_is_400(client: TestClient, accounts: dict[str, str]) -> None:
    response = client.get(
        f"{OPP}/opp-hubspot-0001", params=_q(accounts, truto_response_format="xml")
    )
    assert response.status_code == 400
    _assert_error(response.json(), 400)


async def test_stream_format_sends_several_chunks(
    app_and_state: tuple[Any, EmulatorState], accounts: dict[str, str]
) -> None:
    app, _ = app_and_state
    path = f"{OPP}/opp-hubspot-0001"
    query = f"integrated_account_id={accounts['hubspot']}&truto_response_format=stream"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"authorization", b"Bearer emu-test-token")],
        "root_path": "",
        "server": ("test", 80),
        "client": ("test", 1),
    }
    sent: list[dict[str, Any]] = []

    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected until the app finishes
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    chunks = [m["body"] for m in sent if m["type"] == "http.response.body" and m.get("body")]
    assert len(chunks) >= 3
    import json

    assert json.loads(b"".join(chunks))["id"] == "opp-hubspot-0001"
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert b"content-length" not in dict(start["headers"])


def test_ignore_remote_data(client: TestClient, accounts: dict[str, str]) -> None:
    body = client.get(
        f"{OPP}/opp-hubspot-0001", params=_q(accounts, truto_ignore_remote_data="true")
    ).json()
    assert "remote_data" not in body
    assert body["id"] == "opp-hubspot-0001"


def test_exclude_fields_array_form(client: TestClient, accounts: dict[str, str]) -> None:
    params = [
        ("integrated_account_id", accounts["hubspot"]),
        ("truto_exclude_fields[]", "name"),
        ("truto_exclude_fields[]", "urls"),
    ]
    body = client.get(f"{OPP}/opp-hubspot-0001", params=params).json()
    assert "name" not in body
    assert "urls" not in body
    assert "amount" in body


@pytest.mark.parametrize("style", ["[]", "[0]"])
def test_remote_query_decoded_and_echoed(
    client: TestClient, accounts: dict[str, str], state: EmulatorState, style: str
) -> None:
    second = "[]" if style == "[]" else "[1]"
    params = [
        ("integrated_account_id", accounts["hubspot"]),
        ("remote_query[foo]", "bar"),
        (f"remote_query[ids]{style}", "1"),
        (f"remote_query[ids]{second}", "2"),
        ("truto_exclude_fields" + style, "description"),
    ]
    body = client.get(f"{OPP}/opp-hubspot-0001", params=params).json()
    assert body["remote_data"]["remote_query"] == {"foo": "bar", "ids": ["1", "2"]}
    assert "description" not in body
    logged = state.log[-1]
    assert logged["query"]["remote_query"] == {"foo": "bar", "ids": ["1", "2"]}


def test_malformed_query_is_400(client: TestClient, accounts: dict[str, str]) -> None:
    params = [("integrated_account_id", accounts["hubspot"]), ("a[]", "1"), ("a[x]", "2")]
    assert client.get(f"{OPP}/opp-hubspot-0001", params=params).status_code == 400


# -- lists -----------------------------------------------------------------------------------
def test_pagination_walks_every_opportunity(
    client: TestClient, accounts: dict[str, str], state: EmulatorState
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = _q(accounts, "pipedrive", limit=4, **({"next_cursor": cursor} if cursor else {}))
        page = client.get(OPP, params=params).json()
        assert set(page) == {"result", "next_cursor", "prev_cursor", "result_count"}
        assert page["result_count"] == len(page["result"])
        seen += [item["id"] for item in page["result"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert page["result_count"] == 4
    assert seen == list(state.accounts[accounts["pipedrive"]].opportunities)


def test_truto_key_by(client: TestClient, accounts: dict[str, str]) -> None:
    page = client.get("/unified/crm/stages", params=_q(accounts, truto_key_by="id")).json()
    assert isinstance(page["result"], dict)
    assert page["result"]["stage-hubspot-1"]["name"]
    users = client.get("/unified/crm/users", params=_q(accounts, limit=2)).json()
    assert [u["id"] for u in users["result"]] == ["user-hubspot-1", "user-hubspot-2"]


def test_bad_cursor_is_400(client: TestClient, accounts: dict[str, str]) -> None:
    assert client.get(OPP, params=_q(accounts, next_cursor="!!")).status_code == 400


def test_integrated_account_routes(client: TestClient, accounts: dict[str, str]) -> None:
    account = client.get(f"/integrated-account/{accounts['salesforce']}").json()
    assert account["integration"] == {
        **account["integration"],
        "name": "salesforce",
        "category": "crm",
    }
    assert account["is_sandbox"] is False
    assert client.get(f"/integrated-account/{accounts['sandbox']}").json()["is_sandbox"] is True
    assert client.get("/integrated-account/unknown").status_code == 400
    unknown = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/integrated-account/{unknown}").status_code == 404
    listing = client.get("/integrated-account", params={"limit": 1}).json()
    assert set(listing) == {"result", "next_cursor", "limit"}
    assert len(listing["result"]) == 1


# -- request log -----------------------------------------------------------------------------
def test_request_log_never_records_authorization(
    client: TestClient, accounts: dict[str, str], state: EmulatorState
) -> None:
    client.patch(
        f"{OPP}/opp-hubspot-0001",
        params=_q(accounts),
        json={"name": "logged"},
        headers={"Idempotency-Key": "k-1", "User-Agent": "truto-airflow/test"},
    )
    entry = state.log[-1]
    assert entry["headers"]["idempotency-key"] == "k-1"
    assert entry["headers"]["user-agent"] == "truto-airflow/test"
    assert "authorization" not in entry["headers"]
    assert entry["body"] == {"name": "logged"}
    assert entry["applied"] is True
    assert entry["status"] == 200
    assert entry["account_id"] == accounts["hubspot"]
