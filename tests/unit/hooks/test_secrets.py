"""The API token never survives an echo, however the server encodes it (issue 8, section E).

Echoes are produced with real encoders (``json.dumps``, ``urllib.parse.quote``, HTML character
references) and with a per-character mixer, then looked for after every decoding a reader could
apply (URL-decoding once or twice, JSON unescaping, HTML unescaping).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import httpx2
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.conftest import ACCOUNT_ID
from truto_airflow.exceptions import (
    TrutoAPIError,
    TrutoConfigError,
    TrutoNetworkError,
    TrutoResponseError,
)
from truto_airflow.hooks.truto import TrutoConnectionSettings, TrutoHook
from truto_airflow.redaction import redact, redact_data
from truto_airflow.retry import RetryPolicy

# -- echo encoders ------------------------------------------------------------------------------

_JSON_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\n": "\\n", "\t": "\\t"}


def _char_forms(ch: str) -> list[str]:
    code = ord(ch)
    forms = [ch]
    if code <= 0xFFFF:
        forms += [f"\\u{code:04x}", f"\\u{code:04X}"]
    else:
        raw = json.dumps(ch)[1:-1]  # surrogate pair, lower case
        forms += [raw, raw.upper().replace("\\U", "\\u")]
    if ch in _JSON_SHORT:
        forms.append(_JSON_SHORT[ch])
    pct = "".join(f"%{b:02x}" for b in ch.encode())
    forms += [pct, pct.upper(), pct.replace("%", "%25"), pct.replace("%", "\\u0025")]
    forms += [f"&#{code};", f"&#x{code:x};", f"&#X{code:X};"]
    return forms


def _mixed(token: str, choices: list[int]) -> str:
    out = []
    for i, ch in enumerate(token):
        forms = _char_forms(ch)
        out.append(forms[choices[i % len(choices)] % len(forms)])
    return "".join(out)


WHOLE: dict[str, Callable[[str], str]] = {
    "raw": lambda t: t,
    "json": lambda t: json.dumps(t)[1:-1],
    "json_ascii_slash": lambda t: json.dumps(t, ensure_ascii=True)[1:-1].replace("/", "\\/"),
    "json_upper_hex": lambda t: re.sub(
        r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(), json.dumps(t)[1:-1]
    ),
    "quote": lambda t: quote(t, safe=""),
    "quote_lower": lambda t: re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(t, "")),
    "quote_plus": lambda t: quote_plus(t),
    "double_quote": lambda t: quote(quote(t, safe=""), safe=""),
    "html": lambda t: t.encode("ascii", "xmlcharrefreplace").decode(),
    "html_all": lambda t: "".join(f"&#{ord(c)};" for c in t),
    "json_of_quote": lambda t: json.dumps(quote(t, safe=""), ensure_ascii=True)[1:-1],
}


def _json_unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        esc = match.group(0)
        if esc.startswith("\\u"):
            return chr(int(esc[2:], 16))
        return {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(esc[1], esc[1])

    text = re.sub(r"\\u[0-9a-fA-F]{4}|\\.", one, text)
    # Re-pair surrogates the way a JSON parser would.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def readings(text: str) -> list[str]:
    """Every decoding a reader might apply, alone and chained."""
    out = {text}
    for _ in range(3):
        for t in list(out):
            out |= {unquote(t), unquote_plus(t), html.unescape(t), _json_unescape(t)}
    return list(out)


def assert_no_token(text: str, token: str) -> None:
    for reading in readings(text):
        assert token not in reading, f"token recoverable from {text!r}"


# Tokens that can travel in an Authorization header (the hook refuses others). The "Q7" prefix
# keeps a generated token from being a word of the error text around it ("raw_resp").
header_tokens = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=6, max_size=40
).map(lambda t: "Q7" + t)
any_tokens = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=6, max_size=30
).filter(lambda t: t.strip() == t and len(set(t)) > 2)


# -- the function ---------------------------------------------------------------------------------


@given(token=any_tokens, encoder=st.sampled_from(sorted(WHOLE)), pad=st.text(max_size=5))
def test_whole_string_encodings_never_survive(token: str, encoder: str, pad: str) -> None:
    echo = f"before {pad}{WHOLE[encoder](token)}{pad} after"
    assert_no_token(redact(echo, token), token)


@given(token=any_tokens, choices=st.lists(st.integers(0, 50), min_size=1, max_size=8))
def test_per_character_mixed_encodings_never_survive(token: str, choices: list[int]) -> None:
    echo = "x=" + _mixed(token, choices) + "&y=1"
    redacted = redact(echo, token)
    assert "***" in redacted
    assert_no_token(redacted, token)


@given(token=any_tokens)
def test_parsed_json_is_redacted_in_keys_and_values(token: str) -> None:
    data = {
        token: [token, {"url": "https://x.example/?t=" + quote(token, safe="")}],
        "n": 1,
        "ok": True,
    }
    out = redact_data(data, token)
    assert_no_token(json.dumps(out), token)
    assert out["n"] == 1 and out["ok"] is True


def test_clean_data_is_returned_as_is() -> None:
    data = {"a": [1, "two", {"b": None}]}
    assert redact_data(data, "s3cr3t-token") is data
    assert redact("nothing here", "s3cr3t-token") == "nothing here"


def test_an_all_digit_token_echoed_as_a_json_number() -> None:
    assert redact_data({"id": 123456789}, "123456789") == {"id": "***"}


# -- the hook: errors, headers, bodies ----------------------------------------------------------


def _hook(token: str, handler: Callable[[httpx2.Request], httpx2.Response]) -> TrutoHook:
    hook = TrutoHook(
        "unused",
        transport=httpx2.MockTransport(handler),
        async_transport=httpx2.MockTransport(handler),
        retry_policy=RetryPolicy(max_retries=0),
    )
    hook.__dict__["settings"] = TrutoConnectionSettings(
        base_url="https://api.truto.one",
        token=token,
        integrated_account_id=ACCOUNT_ID,
        timeout=5.0,
        max_retries=0,
    )
    return hook


def _echoing_error(token: str, encoder: str, status: int) -> httpx2.Response:
    echo = WHOLE[encoder](token)
    body = (
        '{"statusCode": STATUS, "error": "Nope", "message": "bad token ECHO",'
        ' "raw_response": {"echo": "ECHO", "list": ["ECHO"]},'
        ' "truto_error_insight": {"remote_error": {"value": "ECHO"}}}'
    )
    body = body.replace("STATUS", str(status)).replace("ECHO", echo)
    headers = [
        ("content-type", "application/json"),
        ("www-authenticate", f'Bearer error="invalid_token", token="{quote(token, safe="")}"'),
        ("x-echo", echo.encode("ascii", "backslashreplace").decode()),
    ]
    return httpx2.Response(status, content=body.encode(), headers=headers)


def _everything(exc: BaseException) -> str:
    parts = [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
    if isinstance(exc, TrutoAPIError):
        parts.append(json.dumps(exc.to_dict(), default=str))
    return "\n".join(parts)


JSON_SAFE = ["raw", "json", "json_ascii_slash", "json_upper_hex", "quote", "quote_lower"]
JSON_SAFE += ["quote_plus", "double_quote", "json_of_quote"]


@given(
    token=header_tokens.filter(lambda t: '"' not in t and "\\" not in t),
    encoder=st.sampled_from(JSON_SAFE),
    status=st.sampled_from([400, 401, 403, 404, 422, 429, 500, 503]),
)
def test_error_responses_never_keep_the_token(token: str, encoder: str, status: int) -> None:
    hook = _hook(token, lambda request: _echoing_error(token, encoder, status))
    with pytest.raises(TrutoAPIError) as info:
        hook.update_opportunity("opp-1", {"amount": 1})
    err = info.value
    assert err.status_code == status
    assert_no_token(_everything(err), token)
    assert_no_token(json.dumps(err.headers), token)
    assert_no_token(json.dumps(err.raw_response, default=str), token)
    assert_no_token(json.dumps(err.error_insight, default=str), token)


@given(token=header_tokens, encoder=st.sampled_from(sorted(WHOLE)))
def test_non_json_error_pages_never_keep_the_token(token: str, encoder: str) -> None:
    page = f"<html><body>Forbidden for {WHOLE[encoder](token)}</body></html>"
    hook = _hook(
        token,
        lambda request: httpx2.Response(502, text=page, headers={"content-type": "text/html"}),
    )
    with pytest.raises(TrutoAPIError) as info:
        hook.update_opportunity("opp-1", {"amount": 1})
    assert_no_token(_everything(info.value), token)


@given(token=header_tokens, encoder=st.sampled_from(JSON_SAFE))
def test_success_bodies_never_return_the_token(token: str, encoder: str) -> None:
    """A 2xx body goes to XCom (operator return value, dry-run plans read current state)."""
    echo = WHOLE[encoder](token).replace("\\", "\\\\").replace('"', '\\"')
    body = '{"id": "opp-1", "name": "ECHO", "remote_data": {"auth": "ECHO"}}'
    body = body.replace("ECHO", echo)
    hook = _hook(
        token,
        lambda request: httpx2.Response(
            200, content=body.encode(), headers={"content-type": "application/json"}
        ),
    )
    assert_no_token(json.dumps(hook.update_opportunity("opp-1", {"amount": 1})), token)
    assert_no_token(json.dumps(hook.get_opportunity("opp-1")), token)


def test_text_success_bodies_never_return_the_token() -> None:
    token = "tok/en+with=signs"
    hook = _hook(
        token,
        lambda request: httpx2.Response(
            200, text=f"ok {quote(token, safe='')}", headers={"content-type": "text/plain"}
        ),
    )
    # A text 2xx is no successful update (TrutoResponseError); its message quotes the body.
    with pytest.raises(TrutoResponseError) as info:
        hook.update_opportunity("opp-1", {"amount": 1})
    assert_no_token(str(info.value), token)
    assert_no_token(json.dumps(info.value.headers), token)


def test_network_error_text_never_keeps_the_token() -> None:
    token = "tok/en+with=signs"

    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"proxy refused Bearer%20{quote(token, safe='')}")

    hook = _hook(token, handler)
    with pytest.raises(TrutoNetworkError) as info:
        hook.update_opportunity("opp-1", {"amount": 1})
    assert_no_token(_everything(info.value), token)


def test_redact_text_masks_every_encoding() -> None:
    token = "tok/en+with=signs"
    hook = _hook(token, lambda request: httpx2.Response(200))
    for encoder in WHOLE.values():
        assert_no_token(hook.redact_text(f"[{encoder(token)}]"), token)


@pytest.mark.parametrize("token", ["tök€n-unicode", "tok en", "tok\ten", "tok\x00en"])
def test_tokens_that_cannot_travel_in_a_header_are_refused(token: str) -> None:
    with pytest.raises(TrutoConfigError, match="password") as info:
        TrutoConnectionSettings.from_connection(
            host=None, password=token, extra={}, conn_id="truto_default"
        )
    assert token not in str(info.value)


# -- operators: what reaches XCom ----------------------------------------------------------------


def test_operator_return_value_and_dry_run_plan_have_no_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.conftest import truto_conn_json
    from truto_airflow.operators.opportunities import UpdateOpportunityOperator

    token = "tok/en+with=signs-91"
    monkeypatch.setenv("AIRFLOW_CONN_TRUTO_DEFAULT", truto_conn_json(token=token))
    echo = json.dumps(token, ensure_ascii=True)[1:-1].replace("/", "\\/")
    opp = '{"id": "opp-1", "name": "ECHO", "amount": 5, "urls": []}'.replace("ECHO", echo)

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.startswith("/integrated-account"):
            return httpx2.Response(200, json={"id": ACCOUNT_ID, "integration": {"name": "hubspot"}})
        return httpx2.Response(
            200, content=opp.encode(), headers={"content-type": "application/json"}
        )

    def op(**kwargs: Any) -> Any:
        return UpdateOpportunityOperator(
            task_id="t",
            opportunity_id="opp-1",
            body={"name": "New name"},
            hook_params={"transport": httpx2.MockTransport(handler)},
            **kwargs,
        ).execute({})  # type: ignore[arg-type]

    assert_no_token(json.dumps(op()), token)
    assert_no_token(json.dumps(op(skip_unchanged=True, dry_run=True)), token)


def test_bulk_rejected_rows_have_no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from tests.conftest import truto_conn_json
    from tests.unit.operators.test_bulk import operator as bulk_operator
    from tests.unit.operators.test_bulk import rows

    token = "tok/en+with=signs-92"
    monkeypatch.setenv("AIRFLOW_CONN_TRUTO_DEFAULT", truto_conn_json(token=token))
    echo = json.dumps(token, ensure_ascii=True)[1:-1].replace("/", "\\/")

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = '{"statusCode": 422, "message": "rejected ECHO", "raw_response": "ECHO"}'
        body = body.replace("ECHO", echo)
        return httpx2.Response(
            422,
            content=body.encode(),
            headers={"content-type": "application/json", "x-token": quote(token, safe="")},
        )

    target = tmp_path / "rejected.jsonl"
    op = bulk_operator(handler, rows(3), rejected_rows_path=str(target), max_failed=10)
    summary = op.execute({})  # type: ignore[arg-type]
    assert summary["outcomes"]["failed"] == 3
    assert_no_token(json.dumps(summary), token)
    assert_no_token(target.read_text(), token)


@given(token=any_tokens, upper=st.booleans())
@example(token="00001\u1f98", upper=False)  # a titlecase letter: swapcase() keeps it as is
def test_an_echo_in_another_case_never_survives(token: str, upper: bool) -> None:
    echo = token.upper() if upper else token.lower()
    if len(echo) != len(token):  # a character whose case mapping has another length
        return
    assert echo.lower() not in redact(f"host {echo}.example", token).lower()


def test_airflow_log_masker_knows_the_usual_encodings(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk._shared.secrets_masker import redact as airflow_redact

    from tests.conftest import truto_conn_json

    token = "tok/en+with=signs-93"
    monkeypatch.setenv("AIRFLOW_CONN_T", truto_conn_json(token=token))
    _ = TrutoHook("t").settings
    for name in ("raw", "json_ascii_slash", "quote", "quote_lower", "quote_plus"):
        line = airflow_redact(f"log line {WHOLE[name](token)} end")
        assert_no_token(str(line), token)


@pytest.mark.parametrize("body", [b"", b"<html>denied</html>", b'{"message": "denied"}'])
def test_a_reason_phrase_echoing_the_token_is_masked(body: bytes) -> None:
    """The status line's reason phrase is kept as the error's ``error`` when the body has none;
    a proxy can put anything there, so it is a server echo like any other."""
    token = "tok/en+with=signs"

    def handler(request: httpx2.Request) -> httpx2.Response:
        reason = f"Unauthorized {quote(token, safe='')}".encode()
        return httpx2.Response(401, content=body, extensions={"reason_phrase": reason})

    hook = _hook(token, handler)
    with pytest.raises(TrutoAPIError) as info:
        hook.update_opportunity("opp-1", {"amount": 1})
    assert info.value.status_code == 401
    assert "Unauthorized" in _everything(info.value)
    assert_no_token(_everything(info.value), token)
