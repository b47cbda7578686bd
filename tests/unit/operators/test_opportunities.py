"""UpdateOpportunityOperator without a metadata DB: httpx2.MockTransport behind the hook seam."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pendulum
import pytest
from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from tests.conftest import ACCOUNT_ID, TOKEN
from truto_airflow.exceptions import (
    TrutoAuthError,
    TrutoConfigError,
    TrutoInputError,
    TrutoNetworkError,
    TrutoNotFoundError,
    TrutoServerError,
    TrutoValidationError,
)
from truto_airflow.links import TrutoOpportunityLink
from truto_airflow.models import OpportunityUpdate
from truto_airflow.operators.opportunities import (
    STREAM_CHUNK_SIZE,
    UpdateOpportunityOperator,
    first_opportunity_url,
)
from truto_airflow.retry import RetryPolicy

OPP_ID = "opp-hubspot-0001"
START = pendulum.datetime(2024, 1, 1, tz="UTC")
OPP_RESPONSE = {
    "id": OPP_ID,
    "name": "Big deal",
    "amount": 1234.5,
    "stage": {"id": "stage-hubspot-3"},
    "urls": [{"url": "https://app.hubspot.com/contacts/1/deal/1", "type": "deal"}],
    "remote_data": {"secretish": "remote-value-7731"},
}


ACCOUNT_RESPONSE = {"id": ACCOUNT_ID, "integration": {"name": "hubspot"}, "status": "active"}


class Recorder:
    """A MockTransport handler that records requests and answers from a script.

    The operator's preflight looks the integrated account up first (``GET /integrated-account``);
    those lookups are answered with a HubSpot account and kept apart in :attr:`lookups`, so
    :attr:`requests` holds the opportunity calls only.
    """

    def __init__(self, *responses: httpx2.Response | Exception) -> None:
        self.responses = list(responses) or [httpx2.Response(200, json=OPP_RESPONSE)]
        self.requests: list[httpx2.Request] = []
        self.lookups: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.startswith("/integrated-account"):
            self.lookups.append(request)
            return httpx2.Response(200, json=ACCOUNT_RESPONSE)
        self.requests.append(request)
        item = self.responses[min(len(self.requests), len(self.responses)) - 1]
        if isinstance(item, Exception):
            raise item
        return item

    @property
    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self)

    @property
    def last_json(self) -> Any:
        return json.loads(self.requests[-1].content)


@dataclass
class FakeTI:
    """Just enough of a RuntimeTaskInstance for templating, XCom and idempotency keys."""

    dag_id: str = "dag_a"
    task_id: str = "update"
    run_id: str = "manual__2024-01-01"
    map_index: int = -1
    try_number: int = 1
    upstream: dict[str, Any] = field(default_factory=dict)
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        return self.upstream[task_ids or ""]


def no_sleep(_: float) -> None:
    return None


def make_op(
    recorder: Recorder,
    *,
    native: bool = False,
    retry_policy: RetryPolicy | None = None,
    **kwargs: Any,
) -> UpdateOpportunityOperator:
    kwargs.setdefault("opportunity_id", OPP_ID)
    kwargs.setdefault("body", {"amount": 10})
    with DAG(
        "dag_a", schedule=None, start_date=START, render_template_as_native_obj=native
    ) as _dag:
        return UpdateOpportunityOperator(
            task_id=kwargs.pop("task_id", "update"),
            hook_params={
                "transport": recorder.transport,
                "retry_policy": retry_policy or RetryPolicy(max_retries=2, sleep=no_sleep),
            },
            **kwargs,
        )


def run(op: UpdateOpportunityOperator, ti: FakeTI | None = None, **context: Any) -> Any:
    ti = ti or FakeTI()
    ctx: dict[str, Any] = {"ti": ti, "task_instance": ti, "run_id": ti.run_id, **context}
    op.render_template_fields(ctx)
    return op.execute(ctx)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _conn(truto_conn: str) -> Iterator[None]:
    yield


# -- signature and class attributes ------------------------------------------------------------


def test_template_fields_and_renderers() -> None:
    # The documented fields come first; later features may add more after them.
    assert tuple(UpdateOpportunityOperator.template_fields)[:9] == (
        "opportunity_id",
        "body",
        "integrated_account_id",
        "response_format",
        "ignore_remote_data",
        "exclude_fields",
        "remote_query",
        "idempotency_key",
        "output_path",
    )
    assert UpdateOpportunityOperator.template_fields_renderers == {
        "body": "json",
        "remote_query": "json",
    }
    assert any(
        isinstance(link, TrutoOpportunityLink)
        for link in UpdateOpportunityOperator.operator_extra_links
    )


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        UpdateOpportunityOperator("t", OPP_ID, {})  # type: ignore[misc]


def test_defaults() -> None:
    op = UpdateOpportunityOperator(task_id="t", opportunity_id="x", body={"amount": 1})
    assert op.truto_conn_id == "truto_default"
    assert op.response_format == "unified"
    assert op.ignore_remote_data is False
    assert op.integrated_account_id is None
    assert op.idempotency_key is None
    assert op.output_path is None


# -- the request -------------------------------------------------------------------------------


def test_sends_patch_and_returns_opportunity() -> None:
    rec = Recorder()
    ti = FakeTI()
    op = make_op(
        rec,
        body={"amount": 10, "stage": {"id": "s1"}},
        exclude_fields=["description"],
        ignore_remote_data=True,
        remote_query={"properties": ["a", "b"]},
    )
    result = run(op, ti)
    assert result == OPP_RESPONSE
    json.dumps(result)  # JSON-serialisable for XCom
    assert len(rec.requests) == 1
    req = rec.requests[0]
    assert req.method == "PATCH"
    assert req.url.path == f"/unified/crm/opportunities/{OPP_ID}"
    assert list(req.url.params.multi_items()) == [
        ("integrated_account_id", ACCOUNT_ID),
        ("truto_response_format", "unified"),
        ("truto_ignore_remote_data", "true"),
        ("truto_exclude_fields[]", "description"),
        ("remote_query[properties][]", "a"),
        ("remote_query[properties][]", "b"),
    ]
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["user-agent"].startswith("truto-airflow/")
    assert req.headers["idempotency-key"].startswith("truto-airflow-")
    assert rec.last_json == {"amount": 10, "stage": {"id": "s1"}}
    # The link's URL is kept on the operator; Airflow stores it when the task ends (one write).
    assert ti.pushed == {}
    assert TrutoOpportunityLink().get_link(op, ti_key=None) == OPP_RESPONSE["urls"][0]["url"]  # type: ignore[arg-type]


def test_id_is_one_path_segment() -> None:
    rec = Recorder()
    run(make_op(rec, opportunity_id="../a/b?c#d"))
    assert rec.requests[0].url.raw_path.decode().split("?")[0] == (
        "/unified/crm/opportunities/..%2Fa%2Fb%3Fc%23d"
    )


def test_explicit_account_wins_over_connection_default() -> None:
    rec = Recorder()
    other = "11111111-2222-4333-8444-555555555555"
    run(make_op(rec, integrated_account_id="{{ params.account }}"), params={"account": other})
    assert rec.requests[0].url.params["integrated_account_id"] == other


def test_no_url_pushes_nothing_and_gives_an_empty_link() -> None:
    rec = Recorder(httpx2.Response(200, json={"id": OPP_ID, "urls": []}))
    ti = FakeTI()
    op = make_op(rec)
    run(op, ti)
    assert ti.pushed == {}
    assert TrutoOpportunityLink().get_link(op, ti_key=None) == ""  # type: ignore[arg-type]


def test_a_new_try_does_not_show_the_last_tries_link() -> None:
    rec = Recorder()
    op = make_op(rec)
    run(op, FakeTI())
    assert TrutoOpportunityLink().get_link(op, ti_key=None)  # type: ignore[arg-type]
    rec_fail = Recorder(httpx2.Response(404, json={"error": "gone"}))
    failing = make_op(rec_fail)
    failing.__dict__["_truto_opportunity_url"] = "https://stale.example/1"
    with pytest.raises(TrutoNotFoundError):
        run(failing, FakeTI())
    assert TrutoOpportunityLink().get_link(failing, ti_key=None) == ""  # type: ignore[arg-type]


def test_first_opportunity_url() -> None:
    assert first_opportunity_url({"urls": [{"type": "x"}, {"url": "https://a"}]}) == "https://a"
    assert first_opportunity_url({"urls": "https://a"}) is None
    assert first_opportunity_url(["https://a"]) is None
    assert first_opportunity_url({}) is None


def test_opportunity_update_body_survives_templating_and_serialisation() -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    rec = Recorder()
    update = OpportunityUpdate(amount=5, description=None, close_date="2026-01-02T03:04:05Z")
    op = make_op(rec, body=update)
    assert op.body == {"amount": 5, "description": None, "close_date": "2026-01-02T03:04:05+00:00"}
    serialized = DagSerialization.to_dict(op.dag)
    tasks = serialized["dag"]["tasks"]
    assert tasks[0]["__var"]["body"] == op.body  # stored as JSON, not as a str() of a model
    run(op)
    assert rec.last_json == {
        "amount": 5,
        "description": None,
        "close_date": "2026-01-02T03:04:05+00:00",
    }


def test_caller_idempotency_key_is_sent_verbatim_on_every_attempt() -> None:
    rec = Recorder(httpx2.Response(502), httpx2.Response(200, json=OPP_RESPONSE))
    run(make_op(rec, idempotency_key="{{ run_id }}-mine"))
    assert [r.headers["idempotency-key"] for r in rec.requests] == [
        "manual__2024-01-01-mine",
        "manual__2024-01-01-mine",
    ]


# -- templating --------------------------------------------------------------------------------


@pytest.mark.parametrize("native", [False, True])
def test_dict_with_jinja(native: bool) -> None:
    rec = Recorder()
    op = make_op(
        rec,
        native=native,
        opportunity_id="{{ params.opp }}",
        body={"amount": "{{ params.amount }}", "stage": {"id": "{{ params.stage }}"}},
    )
    run(op, params={"opp": OPP_ID, "amount": 1234.5, "stage": "stage-hubspot-2"})
    # Both renderings end up as a JSON number: a string amount is parsed by the model.
    assert op.body["amount"] == (1234.5 if native else "1234.5")
    assert rec.last_json == {"amount": 1234.5, "stage": {"id": "stage-hubspot-2"}}


@pytest.mark.parametrize("native", [False, True])
def test_tojson_string(native: bool) -> None:
    rec = Recorder()
    op = make_op(rec, native=native, body="{{ params.body | tojson }}")
    run(op, params={"body": {"amount": 7, "name": "N"}})
    assert rec.last_json == {"amount": 7, "name": "N"}


def test_python_dict_repr_string_pitfall_is_parsed() -> None:
    rec = Recorder()
    op = make_op(rec, native=False, body="{{ params.body }}")
    run(op, params={"body": {"amount": 7, "name": "N", "description": None}})
    assert isinstance(op.body, str)
    assert op.body.startswith("{'")  # the default rendering gave a Python repr...
    assert rec.last_json == {"amount": 7, "name": "N", "description": None}  # ...handled


def test_string_that_is_not_an_object_fails_with_the_fix_and_sends_nothing() -> None:
    rec = Recorder()
    op = make_op(rec, body="{{ params.body }}")
    with pytest.raises(TrutoInputError, match="tojson") as info:
        run(op, params={"body": "amount=7"})
    assert "render_template_as_native_obj" in str(info.value)
    assert rec.requests == []


@pytest.mark.parametrize("native", [False, True])
def test_xcom_pull_in_jinja(native: bool) -> None:
    rec = Recorder()
    op = make_op(rec, native=native, body="{{ ti.xcom_pull(task_ids='enrich') }}")
    run(op, FakeTI(upstream={"enrich": {"amount": 99, "custom_fields": {"score": 0.9}}}))
    assert isinstance(op.body, dict) is native
    assert rec.last_json == {"amount": 99, "custom_fields": {"score": 0.9}}


def test_xcomarg_body_and_id() -> None:
    rec = Recorder()
    with DAG("dag_a", schedule=None, start_date=START) as _dag:

        @task(multiple_outputs=True)
        def enrich() -> dict[str, Any]:
            return {}

        out = enrich()
        op = UpdateOpportunityOperator(
            task_id="update",
            opportunity_id=out["opportunity_id"],
            body=out["body"],
            hook_params={"transport": rec.transport},
        )
    assert op.upstream_task_ids == {"enrich"}

    class MultiTI(FakeTI):
        def xcom_pull(self, task_ids: str | None = None, key: str = "", **_: Any) -> Any:
            return {"opportunity_id": "opp-x", "body": {"amount": 3}}[key]

    run(op, MultiTI())
    assert rec.requests[0].url.path.endswith("/opp-x")
    assert rec.last_json == {"amount": 3}


def test_remote_query_and_exclude_fields_rendered_as_strings() -> None:
    rec = Recorder()
    op = make_op(
        rec,
        remote_query="{{ params.rq }}",
        exclude_fields="{{ params.ex | tojson }}",
        ignore_remote_data="{{ params.ign }}",
    )
    run(op, params={"rq": {"archived": False}, "ex": ["name", "tags"], "ign": True})
    assert list(rec.requests[0].url.params.multi_items())[2:] == [
        ("truto_ignore_remote_data", "true"),
        ("truto_exclude_fields[]", "name"),
        ("truto_exclude_fields[]", "tags"),
        ("remote_query[archived]", "false"),
    ]


# -- validation before any request ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"opportunity_id": ""}, "opportunity_id is empty"),
        ({"opportunity_id": None}, "opportunity_id must be a string"),
        ({"integrated_account_id": "not-a-uuid"}, "is not a UUID"),
        ({"body": {"amout": 1}}, "did you mean 'amount'"),
        ({"body": {}}, "has no fields"),
        ({"body": ["amount", 1]}, "expected a mapping"),
        ({"body": {"amount": "lots"}}, "amount"),
        ({"response_format": "xml"}, "not one of Truto's formats"),
        ({"remote_query": "[1, 2]"}, "remote_query must be a mapping"),
        ({"ignore_remote_data": "maybe"}, "true or false"),
        ({"exclude_fields": [1]}, "exclude_fields"),
    ],
)
def test_invalid_input_fails_fast_without_request(kwargs: dict[str, Any], match: str) -> None:
    rec = Recorder()
    with pytest.raises(TrutoInputError, match=match) as info:
        run(make_op(rec, **kwargs))
    assert isinstance(info.value, AirflowFailException)
    assert rec.requests == []
    assert rec.lookups == []  # not even the preflight's account lookup


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"response_format": "stream"}, "needs output_path"),
        ({"output_path": "/tmp/x.json"}, "only used with response_format='stream'"),
    ],
)
def test_stream_options_are_deprecated_and_still_checked(
    kwargs: dict[str, Any], match: str
) -> None:
    rec = Recorder()
    with pytest.warns(DeprecationWarning, match=r"removed in truto-airflow 0\.3"):
        op = make_op(rec, **kwargs)
    with pytest.raises(TrutoInputError, match=match):
        run(op)
    assert rec.requests == []


def test_missing_token_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_TRUTO_DEFAULT",
        json.dumps({"conn_type": "truto", "host": "https://api.truto.one"}),
    )
    rec = Recorder()
    with pytest.raises(TrutoConfigError, match="no API token"):
        run(make_op(rec))
    assert rec.requests == []


def test_plain_http_to_remote_host_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import truto_conn_json

    monkeypatch.setenv("AIRFLOW_CONN_TRUTO_DEFAULT", truto_conn_json("http://api.truto.one"))
    rec = Recorder()
    with pytest.raises(TrutoConfigError, match="unencrypted"):
        run(make_op(rec))
    assert rec.requests == []


# -- error classes: fail fast vs. retryable ---------------------------------------------------


def _error(status: int, message: str = "nope", **extra: Any) -> httpx2.Response:
    return httpx2.Response(
        status, json={"statusCode": status, "error": "E", "message": message, **extra}
    )


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, TrutoValidationError),
        (401, TrutoAuthError),
        (403, TrutoAuthError),
        (404, TrutoNotFoundError),
        (422, TrutoValidationError),
    ],
)
def test_client_errors_fail_the_task_without_retries(status: int, cls: type[Exception]) -> None:
    rec = Recorder(_error(status))
    with pytest.raises(cls) as info:
        run(make_op(rec))
    assert isinstance(info.value, AirflowFailException)  # Airflow will not retry the task
    assert len(rec.requests) == 1  # and the hook did not retry either


def test_missing_required_fields_are_named() -> None:
    rec = Recorder(
        _error(
            422,
            "Validation failed",
            truto_error_insight={"missing_required_body_fields": ["account"]},
        )
    )
    with pytest.raises(TrutoValidationError, match="missing required body fields: account"):
        run(make_op(rec))


@pytest.mark.parametrize("status", [429, 500, 502, 504])
def test_exhausted_transient_errors_let_airflow_retry(status: int) -> None:
    rec = Recorder(_error(status))
    with pytest.raises(AirflowException) as info:
        run(make_op(rec, retry_policy=RetryPolicy(max_retries=2, sleep=no_sleep)))
    assert not isinstance(info.value, AirflowFailException)
    assert len(rec.requests) == 3
    assert len({r.headers["idempotency-key"] for r in rec.requests}) == 1


def test_blocked_account_503_is_not_retried() -> None:
    rec = Recorder(_error(503))
    with pytest.raises(TrutoServerError) as info:
        run(make_op(rec))
    assert isinstance(info.value, AirflowFailException)
    assert len(rec.requests) == 1


def test_network_errors_are_retryable() -> None:
    rec = Recorder(httpx2.ConnectError("refused"))
    with pytest.raises(TrutoNetworkError) as info:
        run(make_op(rec, retry_policy=RetryPolicy(max_retries=1, sleep=no_sleep)))
    assert not isinstance(info.value, AirflowFailException)
    assert len(rec.requests) == 2


# -- idempotency keys ------------------------------------------------------------------------


def _key(ti: FakeTI, body: dict[str, Any] | None = None, opportunity_id: str = OPP_ID) -> str:
    rec = Recorder()
    run(make_op(rec, body=body or {"amount": 1}, opportunity_id=opportunity_id), ti)
    return str(rec.requests[0].headers["idempotency-key"])


def test_idempotency_key_is_stable_across_task_retries() -> None:
    assert _key(FakeTI(try_number=1)) == _key(FakeTI(try_number=2)) == _key(FakeTI(try_number=3))


@pytest.mark.parametrize(
    ("ti", "body", "opp"),
    [
        (FakeTI(), {"amount": 2}, OPP_ID),
        (FakeTI(run_id="manual__2024-01-02"), None, OPP_ID),
        (FakeTI(map_index=3), None, OPP_ID),
        (FakeTI(task_id="other"), None, OPP_ID),
        (FakeTI(dag_id="dag_b"), None, OPP_ID),
        (FakeTI(), None, "opp-hubspot-0002"),
    ],
)
def test_idempotency_key_changes_with_the_write(
    ti: FakeTI, body: dict[str, Any] | None, opp: str
) -> None:
    assert _key(ti, body, opp) != _key(FakeTI())


def test_idempotency_key_for_mapped_instances_differs() -> None:
    keys = {_key(FakeTI(map_index=i)) for i in range(4)}
    assert len(keys) == 4


@pytest.mark.parametrize("rendered_empty", ["", "  ", "None"])
def test_idempotency_key_template_that_renders_empty_falls_back_to_derived(
    rendered_empty: str,
) -> None:
    rec = Recorder()
    op = make_op(rec, body={"amount": 1}, idempotency_key="{{ params.key }}")
    run(op, params={"key": rendered_empty})
    assert rec.requests[0].headers["idempotency-key"] == _key(FakeTI())


# -- logging and secrets -----------------------------------------------------------------------


def test_one_info_line_with_id_fields_status_duration(capsys: pytest.CaptureFixture[str]) -> None:
    rec = Recorder()
    run(
        make_op(
            rec,
            body={
                "amount": 4321,
                "custom_fields": {"score": "custom-value-5512"},
                "remote_data": {"hs_secret_prop": "remote-value-9931"},
            },
        )
    )
    out = capsys.readouterr()
    text = out.out + out.err
    lines = [line for line in text.splitlines() if "updated:" in line]
    assert len(lines) == 1
    line = lines[0]
    assert "info" in line.lower()
    assert OPP_ID in line
    assert "fields=amount,custom_fields,remote_data" in line
    assert "status=200" in line
    assert "duration=" in line
    for value in ("4321", "custom-value-5512", "remote-value-9931", "remote-value-7731"):
        assert value not in text


def test_token_never_leaks(capsys: pytest.CaptureFixture[str]) -> None:
    # The server echoes the token back in its error message (as some CRMs do).
    rec = Recorder(_error(401, f"invalid token Bearer {TOKEN}"))
    op = make_op(rec)
    ti = FakeTI()
    with pytest.raises(TrutoAuthError) as info:
        run(op, ti)
    assert len(rec.requests) == 1
    assert rec.requests[0].headers["authorization"] == f"Bearer {TOKEN}"  # it was sent...
    assert TOKEN not in str(info.value)  # ...but is in no error text,
    assert TOKEN not in repr(info.value)
    rendered = {name: getattr(op, name) for name in op.template_fields}
    assert TOKEN not in json.dumps(rendered, default=str)  # no rendered field,

    ok = Recorder(httpx2.Response(200, json={"id": OPP_ID, "urls": []}))
    result = run(make_op(ok), ti)
    assert TOKEN not in json.dumps(result) + json.dumps(ti.pushed)  # no XCom,
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err  # and no log line.
    assert "Truto opportunity" in out.out + out.err  # (the logs were captured)


# -- streaming ---------------------------------------------------------------------------------


def _stream_response(payload: bytes) -> Callable[[httpx2.Request], httpx2.Response]:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.startswith("/integrated-account"):
            return httpx2.Response(200, json=ACCOUNT_RESPONSE)
        chunks = [payload[i : i + 1000] for i in range(0, len(payload), 1000)]
        return httpx2.Response(200, content=iter(chunks), headers={"content-type": "text/plain"})

    return handler


def _stream_op(output_path: str, handler: Any, **hook_params: Any) -> UpdateOpportunityOperator:
    """A deprecated stream-to-file operator (the deprecation warning is expected)."""
    with (
        DAG("dag_a", schedule=None, start_date=START),
        pytest.warns(DeprecationWarning, match="output_path"),
    ):
        return UpdateOpportunityOperator(
            task_id="update",
            opportunity_id=OPP_ID,
            body={"amount": 1},
            response_format="stream",
            output_path=output_path,
            hook_params={"transport": httpx2.MockTransport(handler), **hook_params},
        )


def test_stream_to_local_file(tmp_path: Path) -> None:
    payload = b"x" * 250_000 + b"end"
    rec = Recorder()
    handler = _stream_response(payload)
    rec.responses = []
    seen: list[httpx2.Request] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        if request.method == "PATCH":
            seen.append(request)
        return handler(request)

    op = _stream_op(str(tmp_path / "out" / "{{ run_id }}.bin"), record)
    ti = FakeTI()
    result = run(op, ti)
    target = tmp_path / "out" / "manual__2024-01-01.bin"
    assert result == {"path": str(target), "bytes": len(payload), "status_code": 200}
    assert target.read_bytes() == payload
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no partial file left
    assert len(seen) == 1
    assert seen[0].url.params["truto_response_format"] == "stream"
    assert ti.pushed == {}


def test_stream_to_object_storage_url(tmp_path: Path) -> None:
    payload = b'{"id": "opp"}'
    op = _stream_op(f"file://{tmp_path}/o.json", _stream_response(payload))
    result = run(op)
    assert result["bytes"] == len(payload)
    assert result["status_code"] == 200
    assert (tmp_path / "o.json").read_bytes() == payload


def test_stream_error_writes_nothing(tmp_path: Path) -> None:
    rec = Recorder(_error(404))
    with pytest.warns(DeprecationWarning, match="output_path"):
        op = make_op(rec, response_format="stream", output_path=str(tmp_path / "o.bin"))
    with pytest.raises(TrutoNotFoundError):
        run(op)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", [False, True])
def test_stream_broken_midway_leaves_no_file(tmp_path: Path, url: bool) -> None:
    """A connection lost mid-body publishes nothing, local path or storage URL alike (one
    atomic-output rule, truto_airflow.output): never a truncated file at the final path."""

    def chunks() -> Any:
        yield b"x" * (3 * STREAM_CHUNK_SIZE)
        raise httpx2.ReadError("connection lost")

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=chunks(), headers={"content-type": "text/plain"})

    target = tmp_path / "o.bin"
    op = _stream_op(
        f"file://{target}" if url else str(target),
        handler,
        retry_policy=RetryPolicy(max_retries=0, sleep=no_sleep),
    )
    op.integration = "hubspot"  # no account lookup: the PATCH is the only request
    with pytest.raises(TrutoNetworkError, match="connection lost"):
        run(op)
    assert list(tmp_path.iterdir()) == []


# -- hook lifecycle ----------------------------------------------------------------------------


def test_on_kill_closes_the_hook() -> None:
    rec = Recorder()
    op = make_op(rec)
    op.on_kill()  # before execute: nothing to close, and no hook is created
    assert "hook" not in op.__dict__
    client = op.hook.get_conn()  # as during a request
    op.on_kill()
    assert client.is_closed
    assert op.hook._client is None


@pytest.mark.parametrize("fails", [False, True])
def test_execute_closes_the_pool_afterwards(fails: bool) -> None:
    rec = Recorder(_error(404) if fails else httpx2.Response(200, json=OPP_RESPONSE))
    op = make_op(rec)
    clients: list[httpx2.Client] = []
    original = op.hook.get_conn

    def tracking_get_conn() -> httpx2.Client:
        clients.append(original())
        return clients[-1]

    op.hook.get_conn = tracking_get_conn  # type: ignore[method-assign]
    if fails:
        with pytest.raises(TrutoNotFoundError):
            run(op)
    else:
        run(op)
    assert clients
    assert all(c.is_closed for c in clients)


def test_hook_params_reach_the_hook() -> None:
    op = UpdateOpportunityOperator(
        task_id="t",
        opportunity_id="x",
        body={"amount": 1},
        truto_conn_id="other_conn",
        hook_params={"timeout": 7.5},
    )
    assert op.hook.truto_conn_id == "other_conn"
    assert op.hook._timeout_override == 7.5


# -- mapping -----------------------------------------------------------------------------------


def test_partial_expand_and_expand_kwargs_build_mapped_tasks() -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("dag_m", schedule=None, start_date=START) as dag:
        by_id = UpdateOpportunityOperator.partial(task_id="by_id", body={"amount": 1}).expand(
            opportunity_id=["a", "b"]
        )
        by_kwargs = UpdateOpportunityOperator.partial(
            task_id="by_kwargs", truto_conn_id="truto_default"
        ).expand_kwargs(
            [
                {"opportunity_id": "a", "body": {"amount": 1}},
                {"opportunity_id": "b", "body": {"stage": {"id": "s"}}},
            ]
        )
    assert by_id.is_mapped
    assert by_kwargs.is_mapped
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert set(restored.task_dict) == {"by_id", "by_kwargs"}
    for task_id in ("by_id", "by_kwargs"):
        assert restored.task_dict[task_id].operator_name == "UpdateOpportunityOperator"
