"""Issue 8 A: a corpus of bad inputs, each refused with a TrutoInputError before anything is sent.

Every entry runs through the three entry points that share one validation path: the hook
(``update_opportunity``), the single-row operator (``prepare``) and the bulk row preparer (an
``invalid`` row). Each must be refused, name the field, and leave the transport untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from airflow.sdk.exceptions import AirflowFailException
from hypothesis import assume, given
from hypothesis import strategies as st

from truto_airflow.bulk.outcomes import Outcome, RowResult
from truto_airflow.bulk.prepare import RowPreparer, RunIdentity
from truto_airflow.bulk.rows import RawRow
from truto_airflow.exceptions import TrutoInputError
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.json_values import NON_FINITE_TEXT
from truto_airflow.models import parse_update_body
from truto_airflow.models.options import TrutoQueryOptions
from truto_airflow.operators.opportunities import UpdateOpportunityOperator

#: The largest integer a JavaScript double holds exactly (Number.MAX_SAFE_INTEGER).
MAX_SAFE_INTEGER = 2**53 - 1
NAN = float("nan")
INF = float("inf")


class _Odd:
    def __repr__(self) -> str:
        return "<odd>"


class _NaT(dt.datetime):
    """What ``pandas.NaT`` is to this code: a ``datetime`` subclass unequal to itself whose
    methods return ``NaT`` (``replace``) or ``"NaT"`` (``isoformat``) and whose offset raises."""

    def __new__(cls) -> _NaT:
        return super().__new__(cls, 1970, 1, 1)

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = dt.datetime.__hash__

    def replace(self, *args: Any, **kwargs: Any) -> _NaT:  # type: ignore[override]
        return self

    def isoformat(self, *args: Any, **kwargs: Any) -> str:
        return "NaT"

    def utcoffset(self) -> dt.timedelta:
        raise ValueError("NaTType does not support utcoffset")

    def __repr__(self) -> str:
        return "NaT"


#: A zone offset no place has (Python's timezone allows up to 23:59).
_FAR = dt.timezone(dt.timedelta(hours=23))


def _nested(depth: int) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for _ in range(depth):
        tree = {"a": tree}
    return tree


def _self_referential() -> dict[str, Any]:
    tree: dict[str, Any] = {}
    tree["a"] = tree
    return tree


#: (label, body, fragment the message must contain). Fragments name the field path.
BAD_BODIES: list[tuple[str, Any, str]] = [
    # non-finite numbers, anywhere
    ("nan amount", {"amount": NAN}, "amount"),
    ("inf amount", {"amount": INF}, "amount"),
    ("-inf amount", {"amount": -INF}, "amount"),
    ("nan custom field", {"custom_fields": {"score": NAN}}, "custom_fields.score"),
    ("inf custom field", {"custom_fields": {"score": INF}}, "custom_fields.score"),
    ("nested nan", {"custom_fields": {"a": {"b": [1, NAN]}}}, "custom_fields.a.b.1"),
    ("nan remote_data", {"remote_data": {"properties": {"p": NAN}}}, "remote_data.properties.p"),
    ("Decimal NaN cf", {"custom_fields": {"x": Decimal("NaN")}}, "custom_fields.x"),
    ("Decimal sNaN cf", {"custom_fields": {"x": Decimal("sNaN")}}, "custom_fields.x"),
    ("Decimal Infinity", {"amount": Decimal("Infinity")}, "amount"),
    ("string NaN amount", {"amount": "NaN"}, "amount"),
    ("string Infinity amount", {"amount": "-Infinity"}, "amount"),
    ("string nan cf", {"custom_fields": {"score": "nan"}}, "custom_fields.score"),
    ("string NaN cf", {"custom_fields": {"score": "NaN"}}, "custom_fields.score"),
    ("string Infinity rd", {"remote_data": {"x": "Infinity"}}, "remote_data.x"),
    ("string -inf cf", {"custom_fields": {"x": "-inf"}}, "custom_fields.x"),
    ("json NaN", '{"custom_fields": {"score": NaN}}', "custom_fields.score"),
    ("json Infinity", '{"amount": Infinity}', "amount"),
    ("json -Infinity", '{"remote_data": {"a": [-Infinity]}}', "remote_data.a.0"),
    ("bytes json NaN", b'{"custom_fields": {"s": NaN}}', "custom_fields.s"),
    # numbers that do not survive Truto's JSON (JavaScript doubles)
    ("1e400 amount", {"amount": 1e400}, "amount"),
    ("10**400 amount", {"amount": 10**400}, "amount"),
    ("10**400 cf", {"custom_fields": {"big": 10**400}}, "custom_fields.big"),
    ("2**53 amount", {"amount": 2**53}, "amount"),
    ("-(2**53) cf", {"custom_fields": {"n": -(2**53)}}, "custom_fields.n"),
    ("2**63 rd", {"remote_data": {"id": 2**63}}, "remote_data.id"),
    ("string 1e400 amount", {"amount": "1e400"}, "amount"),
    ("string 1e-400 amount", {"amount": "1e-400"}, "amount"),
    ("Decimal 1e-400", {"amount": Decimal("1e-400")}, "amount"),
    ("Decimal 1e400 cf", {"custom_fields": {"x": Decimal("1e400")}}, "custom_fields.x"),
    ("Decimal 1e999999999", {"amount": Decimal("1e999999999")}, "amount"),
    ("Decimal lossy", {"amount": Decimal("12345678901234.56789")}, "amount"),
    (
        "Decimal lossy cf",
        {"custom_fields": {"r": Decimal("0.1000000000000000055")}},
        "custom_fields.r",
    ),
    ("json 1e400", '{"custom_fields": {"x": 1e400}}', "custom_fields.x"),
    ("json 1e-400", '{"custom_fields": {"x": 1e-400}}', "custom_fields.x"),
    ("json big int", '{"custom_fields": {"x": 123456789012345678901}}', "custom_fields.x"),
    ("repr 1e400", "{'amount': 1e400}", "amount"),
    ("repr 1e-400", "{'custom_fields': {'x': 1e-400}}", "custom_fields.x"),
    ("amount beyond money", {"amount": 1e300}, "amount"),
    # date-times: ISO 8601 only
    ("date 5", {"close_date": "5"}, "close_date"),
    ("date 10:00", {"close_date": "10:00"}, "close_date"),
    ("date Monday", {"close_date": "Monday"}, "close_date"),
    ("date now", {"close_date": "now"}, "close_date"),
    ("date today", {"close_date": "today"}, "close_date"),
    ("date us", {"close_date": "01/02/2026"}, "close_date"),
    ("date eu", {"close_date": "02.01.2026"}, "close_date"),
    ("date words", {"close_date": "Jan 2 2026"}, "close_date"),
    ("date week", {"close_date": "2026-W01-1"}, "close_date"),
    ("date ordinal", {"close_date": "2026-032"}, "close_date"),
    ("date 2-digit year", {"close_date": "26-01-02"}, "close_date"),
    ("date no dashes", {"close_date": "20260102"}, "close_date"),
    ("date feb 30", {"close_date": "2026-02-30"}, "close_date"),
    ("date hour 24", {"close_date": "2026-01-02T24:00:00Z"}, "close_date"),
    ("offset +99:00", {"close_date": "2026-01-02T10:00:00+99:00"}, "close_date"),
    ("offset +24:00", {"close_date": "2026-01-02T10:00:00+24:00"}, "close_date"),
    ("offset +15:00", {"created_at": "2026-01-02T10:00:00+15:00"}, "created_at"),
    ("offset minutes 75", {"close_date": "2026-01-02T10:00:00+01:75"}, "close_date"),
    ("created_at now", {"created_at": "now"}, "created_at"),
    ("created_at timestamp", {"created_at": "1767225600"}, "created_at"),
    ("date int", {"close_date": 1767225600}, "close_date"),
    ("close_time word", {"close_time": "noon"}, "close_time"),
    ("close_time 5", {"close_time": "5"}, "close_time"),
    ("close_time 25:00", {"close_time": "25:00"}, "close_time"),
    ("close_time date", {"close_time": "01/02/2026"}, "close_time"),
    ("close_time now", {"close_time": "now"}, "close_time"),
    # values that are not JSON
    ("bytes name", {"name": b"Deal"}, "name"),
    ("bytes cf", {"custom_fields": {"blob": b"\x00\xff"}}, "custom_fields.blob"),
    ("set cf", {"custom_fields": {"tags": {"a", "b"}}}, "custom_fields.tags"),
    ("object cf", {"custom_fields": {"o": _Odd()}}, "custom_fields.o"),
    ("object rd", {"remote_data": {"deep": [{"o": _Odd()}]}}, "remote_data.deep.0.o"),
    ("object name", {"name": _Odd()}, "name"),
    ("complex cf", {"custom_fields": {"c": 1j}}, "custom_fields.c"),
    ("int key cf", {"custom_fields": {1: "x"}}, "custom_fields"),
    ("tuple key", {"remote_data": {("a", "b"): 1}}, "remote_data"),
    ("surrogate name", {"name": "\ud800"}, "name"),
    ("surrogate cf", {"custom_fields": {"x": "a\udcff"}}, "custom_fields.x"),
    ("surrogate cf key", {"custom_fields": {"\ud800": 1}}, "custom_fields"),
    ("function cf", {"custom_fields": {"f": print}}, "custom_fields.f"),
    ("type cf", {"custom_fields": {"t": int}}, "custom_fields.t"),
    ("nested bytes in contact", {"contact": [{"id": b"c1"}]}, "contact.0.id"),
    # audit: reference ids from a numeric column with gaps (pandas makes it float64)
    ("float owner id", {"owner": {"id": 5.0}}, "owner.id"),
    ("nan owner id", {"owner": {"id": NAN}}, "owner.id"),
    ("inf account id", {"account": {"id": INF}}, "account.id"),
    ("float contact id", {"contact": [{"id": 1e20}]}, "contact.0.id"),
    ("nan stage name", {"stage": {"name": NAN}}, "stage.name"),
    ("Decimal tag id", {"tags": [{"id": Decimal("5.5")}]}, "tags.0.id"),
    ("Decimal NaN stage id", {"stage": {"id": Decimal("NaN")}}, "stage.id"),
    # audit: a blank cell is no reference (some CRMs read a blank owner as "unassign")
    ("blank owner id", {"owner": {"id": " "}}, "owner.id"),
    ("tab account id", {"account": {"id": "\t"}}, "account.id"),
    ("blank stage name", {"stage": {"name": "  "}}, "stage.name"),
    ("blank tag name", {"tags": [{"name": "\u00a0"}]}, "tags.0.name"),
    # audit: missing date-times (pandas.NaT) and impossible offsets on datetime objects
    ("NaT close_date", {"close_date": _NaT()}, "close_date"),
    ("NaT created_at", {"created_at": _NaT()}, "created_at"),
    ("NaT cf", {"custom_fields": {"d": _NaT()}}, "custom_fields.d"),
    ("NaT rd", {"remote_data": {"l": [_NaT()]}}, "remote_data.l.0"),
    (
        "+23:00 object cf",
        {"custom_fields": {"d": dt.datetime(2026, 1, 2, tzinfo=_FAR)}},
        "custom_fields.d",
    ),
    # audit: amounts in digits other than ASCII (dates refuse them too)
    ("full-width amount", {"amount": "\uff11\uff12\uff13"}, "amount"),
    ("arabic-indic amount", {"amount": "\u0661\u0662\u0663"}, "amount"),
    ("mixed-script amount", {"amount": "1\u0662.5"}, "amount"),
]

#: Opportunity ids that cannot travel as exactly one path segment on every transport.
BAD_IDS: list[tuple[str, Any, str]] = [
    ("dot", ".", "opportunity_id"),
    ("dotdot", "..", "opportunity_id"),
    ("newline", "a\nb", "opportunity_id"),
    ("cr", "a\rb", "opportunity_id"),
    ("nul", "a\x00b", "opportunity_id"),
    ("tab", "\t1", "opportunity_id"),
    ("del", "a\x7fb", "opportunity_id"),
    ("c1 control", "a\x85b", "opportunity_id"),
    ("line separator", "a\u2028b", "opportunity_id"),
    ("bidi override", "a\u202eb", "opportunity_id"),
    ("zero width", "\u200b", "opportunity_id"),
    ("surrogate", "a\ud800", "opportunity_id"),
    ("100 KB", "x" * 100_000, "opportunity_id"),
    ("513 chars", "x" * 513, "opportunity_id"),
    ("bool", True, "opportunity_id"),
    ("bytes", b"123", "opportunity_id"),
    ("float", 1.5, "opportunity_id"),
    ("none", None, "opportunity_id"),
    ("empty", "", "opportunity_id"),
]

#: Idempotency keys that cannot travel as one header value.
BAD_KEYS: list[tuple[str, Any, str]] = [
    ("cr lf", "abc\r\nX-Injected: 1", "idempotency_key"),
    ("lf", "abc\n", "idempotency_key"),
    ("nul", "a\x00b", "idempotency_key"),
    ("non-ascii", "clé-1", "idempotency_key"),
    ("emoji", "key-\U0001f600", "idempotency_key"),
    ("too long", "k" * 256, "idempotency_key"),
    ("1 MB", "k" * 1_000_000, "idempotency_key"),
    ("blank", "   ", "idempotency_key"),
    ("padded", " key ", "idempotency_key"),
    ("tab", "a\tb", "idempotency_key"),
]

#: remote_query values that Truto's bracket form cannot carry unambiguously.
BAD_REMOTE_QUERIES: list[tuple[str, Any, str]] = [
    ("open bracket key", {"a[b": 1}, "remote_query"),
    ("close bracket key", {"a]": 1}, "remote_query"),
    ("pre-bracketed key", {"filter[name]": "x"}, "remote_query"),
    ("nested bracket key", {"f": {"x]y": 1}}, "remote_query"),
    ("empty key", {"": 1}, "remote_query"),
    ("empty nested key", {"f": {"": 1}}, "remote_query"),
    ("int key", {1: "x"}, "remote_query"),
    ("digit-only keys", {"f": {"0": "a", "1": "b"}}, "remote_query"),
    ("nan value", {"x": NAN}, "remote_query"),
    ("surrogate value", {"x": "\ud800"}, "remote_query"),
    ("surrogate key", {"\ud800": "x"}, "remote_query"),
    ("bytes value", {"x": b"y"}, "remote_query"),
    ("object value", {"x": _Odd()}, "remote_query"),
    # audit
    ("nested beyond any filter", _nested(80), "remote_query"),
    ("NaT value", {"x": _NaT()}, "remote_query"),
    ("+23:00 datetime value", {"x": dt.datetime(2026, 1, 2, tzinfo=_FAR)}, "remote_query"),
]

ACCOUNT = "62f44730-dd91-461e-bd6a-aedd9e0ad79d"


def _no_request(request: httpx2.Request) -> httpx2.Response:
    raise AssertionError(f"a request was sent: {request.method} {request.url}")


@pytest.fixture
def hook(truto_conn: str) -> TrutoHook:
    return TrutoHook(truto_conn, transport=httpx2.MockTransport(_no_request))


def _refused_by_hook(hook: TrutoHook, fragment: str, **kwargs: Any) -> TrutoInputError:
    args: dict[str, Any] = {"opportunity_id": "opp-1", "body": {"amount": 1}, **kwargs}
    with pytest.raises(TrutoInputError) as info:
        hook.update_opportunity(args.pop("opportunity_id"), args.pop("body"), **args)
    assert fragment in str(info.value), str(info.value)
    assert isinstance(info.value, AirflowFailException)
    return info.value


def _refused_by_operator(fragment: str, **kwargs: Any) -> None:
    kwargs.setdefault("opportunity_id", "opp-1")
    kwargs.setdefault("body", {"amount": 1})
    op = UpdateOpportunityOperator(
        task_id="t", hook_params={"transport": httpx2.MockTransport(_no_request)}, **kwargs
    )
    with pytest.raises(TrutoInputError) as info:
        op.prepare({})
    assert fragment in str(info.value), str(info.value)


def _bulk_row(hook: TrutoHook, row: dict[str, Any], **options: Any) -> RowResult:
    identity = RunIdentity("dag", "task", "run")
    preparer = RowPreparer(hook=hook, identity=identity, options=TrutoQueryOptions(**options))
    result = preparer.prepare(RawRow(0, row))
    assert isinstance(result, RowResult), "the row was accepted"
    assert result.outcome is Outcome.INVALID
    return result


@pytest.mark.parametrize(("label", "body", "fragment"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_are_refused_everywhere_before_sending(
    hook: TrutoHook, label: str, body: Any, fragment: str
) -> None:
    _refused_by_hook(hook, fragment, body=body)
    _refused_by_operator(fragment, body=body)
    result = _bulk_row(hook, {"id": "opp-1", "body": body})
    assert fragment in (result.message or "")


@pytest.mark.parametrize(("label", "opp", "fragment"), BAD_IDS, ids=[b[0] for b in BAD_IDS])
def test_bad_ids_are_refused_everywhere_before_sending(
    hook: TrutoHook, label: str, opp: Any, fragment: str
) -> None:
    error = _refused_by_hook(hook, fragment, opportunity_id=opp)
    assert len(str(error)) < 1000  # a 100 KB id is not echoed back whole
    _refused_by_operator(fragment, opportunity_id=opp)
    _bulk_row(hook, {"id": opp, "body": {"amount": 1}})


@pytest.mark.parametrize(("label", "key", "fragment"), BAD_KEYS, ids=[b[0] for b in BAD_KEYS])
def test_bad_idempotency_keys_are_refused_before_sending(
    hook: TrutoHook, label: str, key: Any, fragment: str
) -> None:
    error = _refused_by_hook(hook, fragment, idempotency_key=key)
    assert len(str(error)) < 1000
    if key.strip():  # the operator reads a blank rendered key as unset (derived key)
        _refused_by_operator(fragment, idempotency_key=key)


@pytest.mark.parametrize(
    ("label", "query", "fragment"), BAD_REMOTE_QUERIES, ids=[b[0] for b in BAD_REMOTE_QUERIES]
)
def test_bad_remote_queries_are_refused_before_sending(
    hook: TrutoHook, label: str, query: Any, fragment: str
) -> None:
    _refused_by_hook(hook, fragment, remote_query=query)
    _refused_by_operator(fragment, remote_query=query)
    _bulk_row(hook, {"id": "opp-1", "body": {"amount": 1}}, remote_query=query)


@pytest.mark.parametrize(
    "query", [_self_referential(), _nested(2000)], ids=["self-referential", "2000 levels"]
)
def test_remote_query_without_end_is_refused_not_a_recursion_error(
    hook: TrutoHook, query: Any
) -> None:
    """Hook and bulk only: Airflow's own operator constructor walks templated fields first."""
    _refused_by_hook(hook, "remote_query", remote_query=query)
    _bulk_row(hook, {"id": "opp-1", "body": {"amount": 1}}, remote_query=query)


def test_corpus_size() -> None:
    """The report quotes this figure: every entry above is refused before sending."""
    total = len(BAD_BODIES) + len(BAD_IDS) + len(BAD_KEYS) + len(BAD_REMOTE_QUERIES)
    assert total >= 120


# -- the fix: messages say what to do ------------------------------------------------------


def test_non_finite_message_says_use_none_to_clear() -> None:
    with pytest.raises(TrutoInputError) as info:
        parse_update_body({"custom_fields": {"score": NAN}})
    text = str(info.value)
    assert "custom_fields.score" in text and "None" in text and "null" in text


def test_large_integer_message_says_send_a_string() -> None:
    with pytest.raises(TrutoInputError, match="string") as info:
        parse_update_body({"custom_fields": {"ext_id": 2**60}})
    assert "custom_fields.ext_id" in str(info.value)


def test_offset_message_names_the_offset() -> None:
    with pytest.raises(TrutoInputError, match=r"\+99:00"):
        parse_update_body({"close_date": "2026-01-02T10:00:00+99:00"})


def test_datetime_object_with_impossible_offset_is_an_input_error() -> None:
    class Far(dt.tzinfo):
        def utcoffset(self, _: dt.datetime | None) -> dt.timedelta:
            return dt.timedelta(hours=20)

        def dst(self, _: dt.datetime | None) -> dt.timedelta:
            return dt.timedelta(0)

    with pytest.raises(TrutoInputError, match="close_date"):
        parse_update_body({"close_date": dt.datetime(2026, 1, 2, tzinfo=Far())})


# -- what must still pass, unchanged -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"amount": MAX_SAFE_INTEGER}, {"amount": MAX_SAFE_INTEGER}),
        ({"amount": Decimal("1200.50")}, {"amount": 1200.5}),
        ({"amount": Decimal("0.1")}, {"amount": 0.1}),
        ({"amount": "0.30"}, {"amount": 0.3}),
        ({"amount": 5e-324}, {"amount": 5e-324}),
        ({"custom_fields": {"x": Decimal("2.50")}}, {"custom_fields": {"x": 2.5}}),
        ({"custom_fields": {"x": Decimal("7")}}, {"custom_fields": {"x": 7}}),
        ({"custom_fields": {"x": 1e300}}, {"custom_fields": {"x": 1e300}}),
        ({"custom_fields": {"name": "Nan"}}, {"custom_fields": {"name": "Nan"}}),
        ({"custom_fields": {"t": "Infinity War"}}, {"custom_fields": {"t": "Infinity War"}}),
        ({"name": "NaN"}, {"name": "NaN"}),  # a text field: text, as typed
        ({"custom_fields": {"d": dt.date(2026, 1, 2)}}, {"custom_fields": {"d": "2026-01-02"}}),
        (
            {"custom_fields": {"t": dt.datetime(2026, 1, 2, 3, 4)}},
            {"custom_fields": {"t": "2026-01-02T03:04:00+00:00"}},
        ),
        ({"remote_data": {"l": (1, 2)}}, {"remote_data": {"l": [1, 2]}}),
        ({"close_time": "10:30"}, {"close_time": "10:30"}),
        ({"close_time": "10:30:15"}, {"close_time": "10:30:15"}),
        ({"close_time": dt.time(9, 5)}, {"close_time": "09:05:00"}),
        ('{"custom_fields": {"r": 0.10000000000000001}}', {"custom_fields": {"r": 0.1}}),
        # audit: what the new refusals must leave alone
        ({"owner": {"id": 12345}}, {"owner": {"id": "12345"}}),
        ({"owner": {"id": 2**64}}, {"owner": {"id": str(2**64)}}),
        ({"stage": {"name": "nan"}}, {"stage": {"name": "nan"}}),
        ({"amount": " 1_000.50 "}, {"amount": 1000.5}),
        (
            {
                "custom_fields": {
                    "t": dt.datetime(2026, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=14)))
                }
            },
            {"custom_fields": {"t": "2026-01-02T00:00:00+14:00"}},
        ),
    ],
)
def test_good_values_still_pass(body: Any, expected: dict[str, Any]) -> None:
    assert parse_update_body(body).to_body() == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02", "2026-01-02T00:00:00+00:00"),
        ("2026-01-02T10:00", "2026-01-02T10:00:00+00:00"),
        ("2026-01-02T10:00:05", "2026-01-02T10:00:05+00:00"),
        ("2026-01-02 10:00:05", "2026-01-02T10:00:05+00:00"),
        ("2026-01-02T10:00:05Z", "2026-01-02T10:00:05+00:00"),
        ("2026-01-02t10:00:05z", "2026-01-02T10:00:05+00:00"),
        ("2026-01-02T10:00:05.5+05:30", "2026-01-02T10:00:05.500000+05:30"),
        ("2026-01-02T10:00:05.123456789-08:00", "2026-01-02T10:00:05.123456-08:00"),
        ("2026-01-02T10:00:05+0530", "2026-01-02T10:00:05+05:30"),
        ("2026-01-02T10:00:05-03", "2026-01-02T10:00:05-03:00"),
        ("2026-01-02T10:00:05+14:00", "2026-01-02T10:00:05+14:00"),
        ("2026-01-02T10:00:05-12:00", "2026-01-02T10:00:05-12:00"),
        (" 2026-01-02 ", "2026-01-02T00:00:00+00:00"),
    ],
)
def test_iso_8601_forms_are_accepted(text: str, expected: str) -> None:
    assert parse_update_body({"close_date": text}).to_body()["close_date"] == expected


@given(st.text(max_size=30))
def test_any_accepted_date_string_is_an_iso_calendar_date(text: str) -> None:
    try:
        sent = parse_update_body({"close_date": text}).to_body()["close_date"]
    except TrutoInputError:
        return
    stripped = text.strip()
    assert stripped[:10] == sent[:10]  # the date is the one written, never the clock's
    assert dt.datetime.fromisoformat(sent).date().isoformat() == stripped[:10]


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
)
json_tree = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=12,
).filter(lambda v: not (isinstance(v, str) and v.strip() in {"nan", "NaN", "inf", "Infinity"}))
poison = st.sampled_from([NAN, INF, -INF, Decimal("NaN"), b"x", {1}, _Odd(), 2**53, "\udc80"])


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


def _clean(tree: Any) -> bool:
    def ok(v: Any) -> bool:
        if isinstance(v, str):
            return v.strip() not in NON_FINITE_TEXT  # the validator's own list ('sNaN' too)
        if isinstance(v, dict):
            return all(ok(x) for x in v.values())
        if isinstance(v, list):
            return all(ok(x) for x in v)
        return True

    return ok(tree)


@given(st.dictionaries(st.text(min_size=1, max_size=5), json_tree, max_size=4), st.data())
def test_poison_anywhere_in_custom_fields_is_found_and_named(
    tree: dict[str, Any], data: st.DataObject
) -> None:
    assume(_clean(tree))
    field = data.draw(st.sampled_from(["custom_fields", "remote_data"]))
    # clean JSON goes through unchanged (what JSON would carry anyway)
    sent = parse_update_body({field: tree}).to_body()[field]
    assert json.loads(json.dumps(sent, allow_nan=False)) == json.loads(json.dumps(tree))
    containers = [p for p in _paths(tree) if isinstance(_get(tree, p), (dict, list))]
    where = data.draw(st.sampled_from(containers))
    bad = data.draw(poison)
    target = _get(tree, where)
    if isinstance(target, dict):
        target["poisoned"] = bad
        leaf = (*where, "poisoned")
    else:
        target.append(bad)
        leaf = (*where, len(target) - 1)
    with pytest.raises(TrutoInputError) as info:
        parse_update_body({field: tree})
    assert ".".join(str(p) for p in (field, *leaf)) in str(info.value)


def _get(tree: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.decimals())
def test_every_number_either_survives_javascript_or_is_refused(number: Any) -> None:
    try:
        sent = parse_update_body({"custom_fields": {"n": number}}).to_body()["custom_fields"]["n"]
    except TrutoInputError as exc:
        message = str(exc)
        assert "custom_fields.n" in message
        return
    assert isinstance(sent, (int, float)) and not isinstance(sent, bool)
    if isinstance(sent, int):
        assert abs(sent) <= MAX_SAFE_INTEGER
    else:
        assert math.isfinite(sent)
    # a double round-trips through JSON text unchanged, and equals what was given
    assert json.loads(json.dumps(sent, allow_nan=False)) == sent
    assert Decimal(repr(sent)) == Decimal(str(number)) or float(number) == sent
    if sent == 0:
        assert number == 0  # nothing silently underflowed to zero


# -- the whole class: nothing but TrutoInputError escapes, and what passes is clean JSON -------

anything_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.decimals(),
    st.text(max_size=6),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2),
    st.binary(max_size=4),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.sampled_from([_Odd(), 1j, print, int, frozenset({1}), {"a"}, Ellipsis]),
    st.sampled_from(["NaN", "now", "2026-01-02", "10:00", "..", "1e400", " x "]),
)
anything = st.recursive(
    anything_leaf,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.tuples(kids),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), kids, max_size=3),
    ),
    max_leaves=8,
)
body_fields = [
    "name",
    "amount",
    "close_date",
    "close_time",
    "owner",
    "contact",
    "stage",
    "tags",
    "custom_fields",
    "remote_data",
]


@given(
    st.dictionaries(st.sampled_from(body_fields), anything, min_size=1, max_size=4),
    st.one_of(anything, st.text(max_size=8)),
    st.one_of(st.none(), anything),
    st.one_of(st.none(), anything),
    st.one_of(st.none(), anything),
)
def test_nothing_but_input_errors_escape_and_what_passes_is_clean_json(
    body: dict[str, Any], opp: Any, key: Any, remote_query: Any, exclude: Any
) -> None:
    hook = TrutoHook("truto_fuzz", transport=httpx2.MockTransport(_no_request))
    hook.__dict__["settings"] = _SETTINGS
    try:
        request = hook.prepare_update(
            opp,
            body,
            integrated_account_id=ACCOUNT,
            idempotency_key=key,
            remote_query=remote_query,
            exclude_fields=exclude,
        )
    except TrutoInputError:
        return
    encoded = json.dumps(request.json_body, allow_nan=False, ensure_ascii=False).encode("utf-8")
    assert json.loads(encoded) == request.json_body
    assert request.query  # the query encodes too
    assert request.headers["Idempotency-Key"].isascii()


def _settings() -> Any:
    from truto_airflow.hooks.truto import TrutoConnectionSettings

    return TrutoConnectionSettings(
        base_url="https://api.truto.one",
        token="t",
        integrated_account_id=ACCOUNT,
        timeout=5.0,
        max_retries=0,
    )


_SETTINGS = _settings()
