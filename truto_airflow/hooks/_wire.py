"""Requests: the validated :class:`PreparedRequest`, the opportunity path rule, Truto's query
options and the PATCH a write sends (the hook mixes in :class:`_RequestBuilding`). Answers are
read in :mod:`truto_airflow.hooks._answers`.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, cast
from urllib.parse import quote

import httpx2

from truto_airflow.exceptions import (
    TrutoInputError,
)
from truto_airflow.idempotency import RunIdentity, validate_idempotency_key
from truto_airflow.json_values import JsonValueError, compact_encoder, json_value
from truto_airflow.models.opportunity import (
    OpportunityUpdate,
    flat_update_body,
    parse_update_body,
)
from truto_airflow.models.options import (
    OpportunityListOptions,
    TrutoQueryArgs,
    TrutoQueryOptions,
    list_query_options,
    validate_integrated_account_id,
)
from truto_airflow.query import QueryEncodingError, encode_query

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from truto_airflow.hooks._connection import TrutoConnectionSettings

__all__ = [
    "MAX_ID_LENGTH",
    "OPPORTUNITIES_PATH",
    "PreparedRequest",
    "RequestArgs",
    "UpdateArgs",
    "UpdateQuery",
    "opportunity_path",
]

OPPORTUNITIES_PATH = "/unified/crm/opportunities"
#: The encoder of every request body: ``json.dumps(body, separators=(",", ":"),
#: ensure_ascii=False)`` exactly, built once (``json.dumps`` builds one per call with these
#: arguments, and ``JSONEncoder.encode`` its C encoder per call: ``compact_encoder``).
_encode_body = compact_encoder(ensure_ascii=False)
_NOT_ENCODED = object()

#: Longest opportunity id accepted. Known CRM ids are short (Salesforce 18 characters, Dynamics
#: GUIDs 36, Close ids about 50); 512 is 10x the longest, and even 512 four-byte characters
#: percent-encode to 6 KB, inside the 8 KB request line of common servers (nginx's default).
MAX_ID_LENGTH = 512


#: Characters no id contains and no transport carries faithfully: control (Cc), format (Cf:
#: zero-width, bidi overrides), surrogates (Cs: not Unicode), line/paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def opportunity_path(opportunity_id: Any) -> str:
    """``/unified/crm/opportunities/{id}`` with the id as exactly one percent-encoded segment.

    Every character but ``A-Z a-z 0-9 - . _ ~`` is percent-encoded (``/``, ``?``, ``#``, ``%``
    included). ``"."`` and ``".."`` are refused: URL normalisers (yarl under aiohttp, WHATWG
    parsers, proxies) treat them, and their encoded forms ``%2E``/``%2E%2E``, as dot-segments
    and climb out of the route (aiohttp sent ``..`` as ``PATCH /unified/crm/``). The transports
    are told the URL is already encoded, so whatever is accepted arrives as exactly that id.
    """
    if isinstance(opportunity_id, bool) or not isinstance(opportunity_id, (str, int)):
        raise TrutoInputError(
            f"opportunity_id must be a string (or an integer id), got "
            f"{type(opportunity_id).__name__}"
        )
    text = str(opportunity_id)
    if not text.strip():
        raise TrutoInputError("opportunity_id is empty; check the XCom or param that provides it")
    if len(text) > MAX_ID_LENGTH:
        raise TrutoInputError(
            f"opportunity_id is {len(text)} characters long ({text[:40]!r}...); CRM ids are "
            f"at most a few dozen, the limit is {MAX_ID_LENGTH}. Check the column it comes from"
        )
    # Printable ASCII holds no forbidden character (ASCII's only ones are Cc, which
    # isprintable() refuses), so only other text needs the per-character look-up.
    bad = (
        None
        if text.isascii() and text.isprintable()
        else next((ch for ch in text if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES), None)
    )
    if bad is not None:
        raise TrutoInputError(
            f"opportunity_id {text[:80]!r} contains control characters ({bad!r}, "
            f"U+{ord(bad):04X}); no CRM id does"
        )
    if text in {".", ".."}:
        raise TrutoInputError(
            f"opportunity_id {text!r} is not an id: as a URL path segment it means 'this' or "
            "'parent' route, so it cannot be sent as one"
        )
    return f"{OPPORTUNITIES_PATH}/{quote(text, safe='')}"


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request, ready for either client. Building it sends nothing."""

    method: str
    path: str
    params: list[tuple[str, str]]
    json_body: Any = None
    idempotency_key: str | None = None
    #: Body field names, for logs (values are never logged).
    fields: tuple[str, ...] = ()

    @property
    def query(self) -> httpx2.QueryParams:
        """The encoded query, in order."""
        return httpx2.QueryParams(
            cast("list[tuple[str, str | int | float | bool | None]]", self.params)
        )

    @property
    def headers(self) -> dict[str, str]:
        """Per-request headers (the bearer token is a client default, never stored here)."""
        headers: dict[str, str] = {}
        if self.idempotency_key:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers

    @property
    def content(self) -> bytes | None:
        """The JSON body as bytes (compact, UTF-8), or ``None`` for body-less requests.

        Encoded once per request (the bulk path encodes while preparing, to refuse a body that
        cannot go on the wire, and sends the same bytes); a changed body is a new request
        (``dataclasses.replace``), never an edit of this one's ``json_body``. Kept in the
        instance's ``__dict__`` by hand: ``functools.cached_property`` takes a lock on each
        first access before Python 3.12, once per bulk row."""
        memo = self.__dict__
        encoded = memo.get("_content", _NOT_ENCODED)
        if encoded is _NOT_ENCODED:
            body = self.json_body
            encoded = memo["_content"] = None if body is None else _encode_body(body).encode()
        return cast("bytes | None", encoded)

    @property
    def what(self) -> str:
        """``METHOD /path`` for logs and errors (no query string: it may hold customer data)."""
        return f"{self.method} {self.path}"

    def build(self, client: httpx2.Client | httpx2.AsyncClient) -> httpx2.Request:
        """This request for ``client`` (its base URL, timeouts and default headers apply): how a
        prepared request goes on the wire, for every sending method of the hook."""
        return client.build_request(
            self.method, self.path, params=self.query, content=self.content, headers=self.headers
        )

    def url(self, base_url: httpx2.URL | str) -> str:
        """The absolute URL under ``base_url``: the same bytes on the wire as
        ``client.request(method, path, params=query)``, built once (merging base URL and params
        in httpx2 parses the URL three times, a measurable share of CPU per row in bulk)."""
        url = f"{str(base_url).rstrip('/')}{self.path}"
        query = str(self.query)
        return f"{url}?{query}" if query else url


def _encoded_query(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``params`` encoded with Truto's convention; an encoding problem is bad input."""
    try:
        return encode_query(params)
    except QueryEncodingError as exc:
        raise TrutoInputError(str(exc)) from None


def _checked_body(json_body: Any) -> Any:
    """A request body as JSON-native values (:func:`json_value`), or bad input naming where."""
    try:
        return json_value(json_body, ("json",), free_form=False)
    except JsonValueError as exc:
        raise TrutoInputError(f"request body: {exc}") from None


@dataclass(frozen=True)
class UpdateQuery:
    """An opportunity update's query, validated and encoded: the resolved account and the
    ``(key, value)`` pairs sent. Immutable, so one serves every write to that account."""

    account: str
    params: tuple[tuple[str, str], ...]


class RequestArgs(TypedDict, total=False):
    """Keyword arguments of any Truto request (``prepare``, ``request``)."""

    #: The query, encoded with Truto's convention (:mod:`truto_airflow.query`).
    params: Mapping[str, Any] | None
    #: The ``Idempotency-Key`` header, sent as given (validated).
    idempotency_key: str | None


class UpdateArgs(TrutoQueryArgs, total=False):
    """Keyword arguments of an opportunity update (``prepare_update``, ``update_opportunity``,
    ``aupdate_opportunity``): Truto's query options and the ``Idempotency-Key``."""

    #: A key sent as given; or the :class:`~truto_airflow.idempotency.RunIdentity` the hook
    #: derives it from once the write is validated; ``None``: a fresh key for this one call.
    idempotency_key: str | RunIdentity | None


class _RequestBuilding:
    """Building and validating requests (mixed into the hook); sends nothing."""

    truto_conn_id: str

    if TYPE_CHECKING:

        @property
        def settings(self) -> TrutoConnectionSettings: ...

    def resolve_account(self, integrated_account_id: str | None) -> str:
        """The argument, else the connection's default, as a canonical UUID string."""
        if integrated_account_id is not None and str(integrated_account_id).strip():
            return validate_integrated_account_id(integrated_account_id)
        default = self.settings.integrated_account_id
        if default is None:
            raise TrutoInputError(
                "integrated_account_id is required: pass it to the task/hook call, or set "
                f"'integrated_account_id' in the extra of connection {self.truto_conn_id!r}"
            )
        return default

    def prepare(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        fields: Sequence[str] = (),
        **args: Unpack[RequestArgs],
    ) -> PreparedRequest:
        """Encode the query with Truto's convention; any encoding problem is raised here."""
        if not path.startswith("/"):
            raise TrutoInputError(f"path must start with '/', got {path!r}")
        pairs = _encoded_query(args.get("params") or {})
        if json_body is not None:
            json_body = _checked_body(json_body)
        idempotency_key = args.get("idempotency_key")
        return PreparedRequest(
            method=method.upper(),
            path=path,
            params=pairs,
            json_body=json_body,
            idempotency_key=None
            if idempotency_key is None
            else validate_idempotency_key(idempotency_key),
            fields=tuple(fields),
        )

    def prepare_update(
        self,
        opportunity_id: str,
        body: Mapping[str, Any] | OpportunityUpdate,
        *,
        idempotency_key: str | RunIdentity | None = None,
        **options: Unpack[TrutoQueryArgs],
    ) -> PreparedRequest:
        """Validate everything about an opportunity update and build the PATCH; sends nothing.

        ``options`` are Truto's query options (:class:`TrutoQueryOptions`). The
        ``Idempotency-Key`` is ``idempotency_key`` as given, or derived from a
        :class:`~truto_airflow.idempotency.RunIdentity` (the one rule, ``idempotency.py``) from
        the body as validated and the resolved account; without one, this call's own fresh key.
        """
        return self.build_update(
            opportunity_id,
            body,
            lambda: self.update_query(**options),
            idempotency_key=idempotency_key,
        )

    def update_query(self, **options: Unpack[TrutoQueryArgs]) -> UpdateQuery:
        """The validated, encoded query of an opportunity update with these options (its account
        resolved against the connection); the same for every write to that account."""
        query = self._query(TrutoQueryOptions(**options))
        return UpdateQuery(query["integrated_account_id"], tuple(_encoded_query(query)))

    def build_update(
        self,
        opportunity_id: str,
        body: Mapping[str, Any] | OpportunityUpdate,
        query: Callable[[], UpdateQuery],
        *,
        idempotency_key: str | RunIdentity | None = None,
    ) -> PreparedRequest:
        """:meth:`prepare_update` with its query from ``query()`` (called after the id and body
        are validated, so a row's reason is the same either way): the bulk preparer passes the
        one it keeps per account instead of rebuilding it for every row."""
        path = opportunity_path(opportunity_id)
        flat = flat_update_body(body)  # a flat body is read without the model, and JSON already
        payload = parse_update_body(body).to_body() if flat is None else flat
        if not payload:
            raise TrutoInputError(
                f"the update for opportunity {opportunity_id!r} has no fields; give at least one "
                "field (or skip the row upstream)"
            )
        encoded = query()
        json_body = _checked_body(payload) if flat is None else flat
        if isinstance(idempotency_key, RunIdentity):  # from the write as validated
            key = idempotency_key.key(
                account=encoded.account, opportunity_id=str(opportunity_id), body=json_body
            )
        elif idempotency_key is None:  # a direct call: one fresh key for every attempt
            key = f"truto-airflow-{uuid.uuid4()}"
        else:
            key = validate_idempotency_key(idempotency_key)
        return PreparedRequest(
            method="PATCH",
            path=path,
            params=list(encoded.params),
            json_body=json_body,
            idempotency_key=key,
            fields=tuple(payload),  # update.field_names: the set fields, in declaration order
        )

    def _query(
        self, options: TrutoQueryOptions, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The unified query of ``options``, its account resolved against the connection."""
        return options.query(self.resolve_account(options.integrated_account_id), extra=extra)

    def _prepare_get(self, opportunity_id: str, options: TrutoQueryOptions) -> PreparedRequest:
        return self.prepare("GET", opportunity_path(opportunity_id), params=self._query(options))

    def opportunity_list_query(
        self,
        integrated_account_id: str | None = None,
        **options: Unpack[OpportunityListOptions],
    ) -> dict[str, Any]:
        """The query of ``GET /unified/crm/opportunities`` (validated; sends nothing)."""
        query_options, extra = list_query_options(integrated_account_id, options)
        return self._query(query_options, extra)
