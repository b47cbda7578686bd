"""Masking the API token wherever a server may echo it back.

A server (Truto, the CRM behind it, a proxy) can echo the bearer token in an error message, a
header, an HTML page or a 2xx body, and rarely as the raw string: JSON encoders escape ``/`` as
``\\/`` and any character as ``\\u00XX`` (either hex case), URL encoders percent-encode bytes
(again either case, sometimes twice) and turn spaces into ``+``, HTML pages use ``&#NN;``.
Any mix of these can occur within one echo, so the pattern allows every representation for every
character of the token independently.

:func:`redact` masks text; :func:`redact_data` masks parsed JSON (keys and string values). Both
share one compiled pattern per secret. Everything the provider keeps from a response (exception
messages, ``raw_response``, headers, bodies returned to XCom) goes through one of them, so there is
one rule for what counts as "the token".
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "common_encodings", "redact", "redact_data", "secret_pattern"]

MASK = "***"

#: JSON's two-character escapes (RFC 8259 section 7), without their backslash.
_JSON_SHORT = {'"': '"', "\\": "\\", "/": "/", "\b": "b", "\f": "f", "\n": "n", "\r": "r"}
_JSON_SHORT["\t"] = "t"

#: The backslash opening a JSON escape; JSON text embedded in a JSON string (a vendor body kept
#: as ``raw_response`` text) doubles it, once per level of nesting. Every alternative below starts
#: with a literal character, which lets ``re`` skip ahead quickly on clean text.
_BACKSLASH = r"\\\\*"


def _hex(value: int, width: int) -> str:
    """A case-insensitive pattern for ``value`` as (at least) ``width`` hex digits."""
    digits = f"{value:0{width}x}"
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in digits)


def _percent(byte: int) -> str:
    """One byte percent-encoded: ``%2F``, ``%2f``, twice (``%252F``) or with a JSON-escaped
    percent sign (``\\u00252F``)."""
    return rf"(?:%(?:25)?|{_BACKSLASH}u0025){_hex(byte, 2)}"


def _literal(ch: str) -> str:
    # swapcase alone misses titlecase letters ("ᾘ" swaps to itself but lowers to "ᾐ").
    cases = dict.fromkeys((ch, ch.swapcase(), ch.lower(), ch.upper()))
    return "|".join(re.escape(c) for c in cases if len(c) == 1)


def _char(ch: str) -> str:
    """Every way one character of the secret may be written in an echo."""
    code = ord(ch)
    # Letters match in either case: URL parsers lowercase host names, some servers upper-case
    # what they echo, and a token that differs only in case is still the token. (Two literal
    # alternatives, not re.IGNORECASE or a class, which make every search several times slower.)
    options = [_BACKSLASH if ch == "\\" else _literal(ch)]
    if ch in _JSON_SHORT:
        options.append(_BACKSLASH + re.escape(_JSON_SHORT[ch]))
    if code > 0xFFFF:  # JSON writes astral characters as a UTF-16 surrogate pair
        high = 0xD800 + ((code - 0x10000) >> 10)
        low = 0xDC00 + ((code - 0x10000) & 0x3FF)
        options.append(rf"{_BACKSLASH}u{_hex(high, 4)}{_BACKSLASH}u{_hex(low, 4)}")
    else:
        options.append(rf"{_BACKSLASH}u{_hex(code, 4)}")
    utf8 = ch.encode("utf-8")
    options.append(rf"%(?:25)?{_hex(utf8[0], 2)}" + "".join(_percent(b) for b in utf8[1:]))
    options.append(rf"{_BACKSLASH}u0025{_hex(utf8[0], 2)}" + "".join(_percent(b) for b in utf8[1:]))
    if ch == " ":
        options.append(r"\+")
    options.append(rf"&#0*{code};")
    options.append(rf"&#[xX]0*{_hex(code, 0)};")
    return "(?:" + "|".join(options) + ")"


@functools.lru_cache(maxsize=16)
def secret_pattern(secret: str) -> re.Pattern[str]:
    """The compiled pattern matching ``secret`` in any (mixed) encoding."""
    return re.compile("".join(_char(ch) for ch in secret))


def common_encodings(secret: str) -> list[str]:
    """The secret as the usual encoders write it, for maskers that only match exact strings
    (Airflow's log masker): raw, JSON-escaped (also ``\\/`` and ``\\uXXXX``), URL-encoded."""
    from urllib.parse import quote, quote_plus

    variants = [
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),
        json.dumps(secret, ensure_ascii=True)[1:-1],
        quote(secret, safe=""),
        quote(secret, safe="").lower(),
        quote_plus(secret),
    ]
    return list(dict.fromkeys(variants))


def redact(text: str, secret: str | None) -> str:
    """``text`` with every echo of ``secret`` replaced by ``***``."""
    if not secret or not text:
        return text
    return secret_pattern(secret).sub(MASK, text)


def redact_data(data: Any, secret: str | None) -> Any:
    """Parsed JSON with the secret masked in every key and string (containers are copied only
    when something changed, so clean bodies cost one walk and no allocation)."""
    if not secret:
        return data
    pattern = secret_pattern(secret)
    return _walk(data, pattern)


def _walk(data: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(data, str):
        return data if pattern.search(data) is None else pattern.sub(MASK, data)
    if isinstance(data, Mapping):
        items = [(_walk(k, pattern), _walk(v, pattern)) for k, v in data.items()]
        if all(nk is k and nv is v for (nk, nv), (k, v) in zip(items, data.items(), strict=True)):
            return data
        return dict(items)
    if isinstance(data, (list, tuple)):
        walked = [_walk(item, pattern) for item in data]
        if all(new is old for new, old in zip(walked, data, strict=True)):
            return data
        return tuple(walked) if isinstance(data, tuple) else walked
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        # An all-digit token echoed as a JSON number.
        return MASK if pattern.fullmatch(str(data)) else data
    return data
