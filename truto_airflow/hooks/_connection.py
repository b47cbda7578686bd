"""The Truto connection's settings: base URL, port rules, token, timeouts and defaults.

``conn_type="truto"`` keeps the API token in *password* and the base URL in *host* (default
``https://api.truto.one``); extras ``integrated_account_id``, ``timeout`` and ``max_retries`` set
defaults, ``integration_cache: false`` keeps the preflight's account lookups out of the worker's
cache files (``truto_airflow.account_integration``). Everything is checked here, once, when the
hook first reads its connection.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2

from truto_airflow.exceptions import (
    TrutoConfigError,
    TrutoInputError,
)
from truto_airflow.get_provider_info import DEFAULT_BASE_URL
from truto_airflow.models.options import validate_integrated_account_id
from truto_airflow.redaction import redact

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "TrutoConnectionSettings",
    "normalise_base_url",
]

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 5
#: The most retries a connection may ask for (each waits; more would only hide a dead service).
MOST_RETRIES = 20


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TrutoConnectionSettings:
    """What the hook needs from the Airflow connection, validated once."""

    base_url: str
    token: str = field(repr=False)
    integrated_account_id: str | None
    timeout: float
    max_retries: int
    #: The extra ``integration_cache``: may other task processes reuse this connection's account
    #: lookups (the worker's cache files)?
    integration_cache: bool = True

    def __repr__(self) -> str:  # the token never reaches a repr, log line or traceback
        return (
            f"TrutoConnectionSettings(base_url={self.base_url!r}, "
            f"integrated_account_id={self.integrated_account_id!r}, timeout={self.timeout}, "
            f"max_retries={self.max_retries})"
        )

    @classmethod
    def from_connection(
        cls,
        *,
        host: str | None,
        password: str | None,
        extra: Mapping[str, Any],
        conn_id: str,
        port: int | str | None = None,
        login: str | None = None,
        schema: str | None = None,
    ) -> TrutoConnectionSettings:
        """Validate the connection fields; every error names the field and the fix.

        Every field that says where requests go is used or refused: a port or a URI path
        (``schema``) silently ignored would send the token somewhere the user did not mean.
        ``login`` is unused (it only feeds a hint when the token was put there by mistake).
        """
        token = (password or "").strip()
        if not token:
            hint = (
                " (a login is set: in the URI form the token goes after a colon, "
                "truto://:YOUR_TOKEN@api.truto.one)"
                if (login or "").strip()
                else ""
            )
            raise TrutoConfigError(
                f"Truto connection {conn_id!r} has no API token: put it in the connection's "
                f"password field ('API token' in the UI){hint}"
            )
        if not all(0x21 <= ord(ch) <= 0x7E for ch in token):
            # It could not travel in an Authorization header (a raw UnicodeEncodeError later).
            raise TrutoConfigError(
                f"Truto connection {conn_id!r}: the API token in the password field contains "
                "spaces, control or non-ASCII characters; paste the token exactly as Truto "
                "shows it"
            )
        try:
            return cls._checked(
                token, host=host, port=port, schema=schema, extra=extra, conn_id=conn_id
            )
        except TrutoConfigError as exc:
            # A token also pasted into another field (host, schema) must not reach the message.
            raise TrutoConfigError(redact(str(exc), token)) from None

    @classmethod
    def _checked(
        cls,
        token: str,
        *,
        host: str | None,
        port: int | str | None,
        schema: str | None,
        extra: Mapping[str, Any],
        conn_id: str,
    ) -> TrutoConnectionSettings:
        if (schema or "").strip():
            raise TrutoConfigError(
                f"Truto connection {conn_id!r} has schema {schema!r} (the path of a URI "
                "connection), which Truto does not use; put a base path in the host URL "
                "instead, e.g. https://proxy.example.com/truto"
            )
        return cls(
            base_url=normalise_base_url(host, port=port, conn_id=conn_id),
            token=token,
            integrated_account_id=_extra_account(extra, conn_id),
            timeout=_extra_number(extra, "timeout", DEFAULT_TIMEOUT, conn_id, minimum=0.001),
            max_retries=int(
                _extra_number(
                    extra,
                    "max_retries",
                    DEFAULT_MAX_RETRIES,
                    conn_id,
                    minimum=0,
                    maximum=MOST_RETRIES,
                    whole=True,
                )
            ),
            integration_cache=_extra_flag(extra, "integration_cache", True, conn_id),
        )


def normalise_base_url(
    host: str | None, *, port: int | str | None = None, conn_id: str = "truto_default"
) -> str:
    """``https://api.truto.one`` by default; plain ``http://`` only to a loopback address.

    ``port`` is the connection's port field (the URI form ``truto://:TOKEN@127.0.0.1:8765``
    puts the port there, not in the host). It is applied to the host URL; a port in both places
    must agree.
    """
    text = (host or "").strip() or DEFAULT_BASE_URL
    if "://" not in text:
        text = f"https://{text}"
    try:
        url = httpx2.URL(text)
    except httpx2.InvalidURL as exc:
        raise TrutoConfigError(
            f"connection {conn_id!r} host {text!r} is not a URL: {exc}"
        ) from None
    if url.port is not None and not 1 <= url.port <= 65535:
        raise TrutoConfigError(
            f"connection {conn_id!r} host has port {url.port}, which is not a TCP port (1 to 65535)"
        )
    if port is not None and str(port).strip() != "":
        url = _with_port(url, port, conn_id)
    if url.scheme not in {"http", "https"} or not url.host:
        raise TrutoConfigError(
            f"connection {conn_id!r} host {text!r} must be an https:// URL such as "
            f"{DEFAULT_BASE_URL}"
        )
    if url.scheme == "http" and not _is_loopback(url.host):
        raise TrutoConfigError(
            f"connection {conn_id!r} uses plain http:// to {url.host!r}; the API token would "
            "travel unencrypted. Use https:// (plain http is allowed only for loopback "
            "addresses such as a local emulator)"
        )
    if url.query or url.fragment or url.userinfo:
        raise TrutoConfigError(
            f"connection {conn_id!r} host must be a bare base URL (no query, fragment or "
            "credentials); put the token in the password field"
        )
    return str(url).rstrip("/")


def _with_port(url: httpx2.URL, port: int | str, conn_id: str) -> httpx2.URL:
    try:
        number = int(str(port).strip())
    except ValueError:
        number = -1
    if not 1 <= number <= 65535:
        raise TrutoConfigError(
            f"connection {conn_id!r} port {port!r} is not a TCP port (1 to 65535); leave it "
            "empty to use the base URL's port"
        )
    default = {"http": 80, "https": 443}.get(url.scheme)
    if url.port is not None and url.port != number:
        raise TrutoConfigError(
            f"connection {conn_id!r} gives two ports: {url.port} in the host URL and {number} "
            "in the port field; keep one of them"
        )
    return url.copy_with(port=None if number == default else number)


def _extra_account(extra: Mapping[str, Any], conn_id: str) -> str | None:
    account = extra.get("integrated_account_id") or None
    if account is None:
        return None
    try:
        return validate_integrated_account_id(
            account, source=f"connection {conn_id!r} extra 'integrated_account_id'"
        )
    except TrutoInputError as exc:
        raise TrutoConfigError(str(exc)) from None


def _extra_flag(extra: Mapping[str, Any], key: str, default: bool, conn_id: str) -> bool:
    """A true/false extra (``default`` when absent or blank); anything else is refused."""
    raw = extra.get(key)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower() if isinstance(raw, (str, int)) else None
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off"}:
        return False
    raise TrutoConfigError(
        f"connection {conn_id!r} extra {key!r} must be true or false, got {raw!r}"
    )


def _extra_number(
    extra: Mapping[str, Any],
    key: str,
    default: float,
    conn_id: str,
    *,
    minimum: float,
    maximum: float = math.inf,
    whole: bool = False,
) -> float:
    """A numeric extra (``default`` when absent or blank), refused outside its bounds."""
    raw = extra.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise TrutoConfigError(
            f"connection {conn_id!r} extra {key!r} must be a number, got {raw!r}"
        ) from None
    if whole and not (minimum <= value <= maximum and value == int(value)):
        raise TrutoConfigError(
            f"connection {conn_id!r} extra {key!r} must be a whole number from {minimum:g} to "
            f"{maximum:g}"
        )
    if not minimum <= value <= maximum:  # NaN fails this too
        raise TrutoConfigError(f"connection {conn_id!r} extra {key!r} must be >= {minimum}")
    return value
