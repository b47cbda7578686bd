"""Field-support preflight: catch, before any write, an update the target CRM would not apply.

Truto's docs list, per CRM, which opportunity-update fields are applied, which are required and
which ``status`` values exist (``truto_airflow.capabilities``). A field the CRM does not apply is
accepted by Truto and silently dropped: the DAG goes green and the data is lost. This module
checks an :class:`~truto_airflow.models.OpportunityUpdate` against that table.

Three kinds of issue:

* ``unsupported_field``: the integration does not apply the field. Governed by the policy
  ``unsupported_fields="error" | "warn" | "ignore"`` (default ``"error"``).
* ``missing_required``: the integration requires the field in every update (Teamleader: ``name``,
  ``account``, ``contact``) and it is absent or ``null``.
* ``invalid_status``: ``status`` is not one of the integration's documented values.

The last two are **always errors**, whatever the policy: the CRM would reject the write (or
apply something else than asked), so sending it can only fail later or do harm. The escape hatch
for a value the docs do not know is ``remote_data``, which preflight never inspects: it is sent to
the CRM as is and is accepted by every integration.

An integration the docs table does not list (Salesforce, Zoho CRM), or that the table does not
know at all, gets no preflight and one warning per :class:`Preflight` (one per task): nothing can
be said per field, and a whole integration is never blocked on missing data.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

from truto_airflow.account_integration import (
    INTEGRATIONS,
    IntegrationCache,
    ResolvedIntegration,
    integration_from_account,
    lookup_key,
    resolved_from_account,
)
from truto_airflow.capabilities import (
    OpportunityCapabilities,
    UnknownIntegrationError,
    load_opportunity_capabilities,
)
from truto_airflow.exceptions import (
    TrutoAPIError,
    TrutoClientError,
    TrutoConfigError,
    TrutoInputError,
)
from truto_airflow.models.opportunity import OpportunityUpdate, update_body

__all__ = [
    "INTEGRATIONS",
    "IntegrationCache",
    "IssueKind",
    "Preflight",
    "PreflightIssue",
    "PreflightReport",
    "ResolvedIntegration",
    "UnsupportedFieldsPolicy",
    "check_update",
    "coerce_flag",
    "integration_from_account",
    "validate_policy",
]

UnsupportedFieldsPolicy = Literal["error", "warn", "ignore"]
IssueKind = Literal["unsupported_field", "missing_required", "invalid_status"]

POLICIES: tuple[UnsupportedFieldsPolicy, ...] = ("error", "warn", "ignore")

#: Fields never checked: the passthrough goes to the CRM untouched.
PASSTHROUGH_FIELDS = frozenset({"remote_data"})

log = logging.getLogger(__name__)


def validate_policy(value: Any) -> UnsupportedFieldsPolicy:
    """``"error"``, ``"warn"`` or ``"ignore"`` (case-insensitive), else a fail-fast error."""
    text = str(value).strip().lower() if isinstance(value, str) else value
    if text not in POLICIES:
        raise TrutoInputError(
            f"unsupported_fields={value!r} is not a policy: use 'error' (default: fail before "
            "writing a field the CRM would drop), 'warn' (log it and write) or 'ignore'"
        )
    return cast("UnsupportedFieldsPolicy", text)


@dataclass(frozen=True)
class PreflightIssue:
    """One problem with one field, phrased so a DAG author can act on it."""

    kind: IssueKind
    integration: str
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class PreflightReport:
    """What preflight found for one update.

    ``checked`` is False when the integration has no per-field data (unlisted or unknown); then
    ``issues`` is empty and ``note`` says why.
    """

    integration: str | None
    display_name: str | None
    checked: bool
    issues: tuple[PreflightIssue, ...] = ()
    note: str | None = None
    #: Fields the integration requires in every update body (kept by skip-unchanged minimising).
    required_fields: frozenset[str] = field(default_factory=frozenset)

    @property
    def unsupported_fields(self) -> list[str]:
        return [i.field for i in self.issues if i.kind == "unsupported_field"]

    def errors(self, policy: UnsupportedFieldsPolicy = "error") -> list[PreflightIssue]:
        """Issues that stop the write under ``policy``."""
        return [i for i in self.issues if i.kind != "unsupported_field" or policy == "error"]

    def warnings(self, policy: UnsupportedFieldsPolicy = "error") -> list[PreflightIssue]:
        """Issues that are logged but do not stop the write under ``policy``."""
        return [i for i in self.issues if i.kind == "unsupported_field" and policy == "warn"]

    def ok(self, policy: UnsupportedFieldsPolicy = "error") -> bool:
        return not self.errors(policy)

    def error_message(self, policy: UnsupportedFieldsPolicy = "error") -> str:
        """One line naming every blocking issue (empty when there is none)."""
        errors = self.errors(policy)
        if not errors:
            return ""
        return f"preflight refused the update for {self.display_name}: " + "; ".join(
            i.message for i in errors
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable, for XCom and the bulk outcome report."""
        return {
            "integration": self.integration,
            "checked": self.checked,
            "issues": [i.to_dict() for i in self.issues],
            "note": self.note,
        }


def _unsupported_message(display: str, name: str, caps: OpportunityCapabilities) -> str:
    supporting = caps.integrations_supporting(name) or frozenset()
    if not supporting:
        where = "no CRM in Truto's docs applies it"
    else:
        names = sorted(caps.display_name(s) for s in supporting)
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        where = f"it is applied by {shown}"
    return (
        f"{display} does not apply field {name!r} on opportunity update (per Truto's docs; "
        f"{where}), so the value would be silently lost. Fix: send the CRM's own field in "
        f"'remote_data' (passed to {display} as is), leave {name!r} out, or choose "
        f"unsupported_fields='warn' (log and write) or 'ignore'"
    )


def _required_message(display: str, name: str, present_as_null: bool) -> str:
    state = "is null" if present_as_null else "is missing"
    return (
        f"{display} requires field {name!r} in every opportunity update and it {state}. Fix: "
        f"include {name!r} (its current value if it does not change) in the body; "
        "unsupported_fields does not relax this"
    )


def _status_message(display: str, value: str, allowed: Iterable[str]) -> str:
    choices = sorted(allowed)
    close = difflib.get_close_matches(value.lower(), choices, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"{display} does not accept status {value!r}{hint}; its opportunity status is one of "
        f"{', '.join(choices)}. Fix: map the value to one of these, or send the CRM's own value "
        "in 'remote_data'; unsupported_fields does not relax this"
    )


@dataclass(frozen=True)
class _Rules:
    """What one integration's preflight needs, worked out once per integration name (the bulk
    preflight checks every row against the same few): an integration without per-field data
    has one constant report; a checked one its tables and the report of a row with no issue."""

    report: PreflightReport
    supported: frozenset[str] = frozenset()
    required: tuple[str, ...] = ()
    statuses: frozenset[str] | None = None


@functools.lru_cache(maxsize=1024)
def _rules(caps: OpportunityCapabilities, integration: str | None) -> _Rules:
    if integration is None or not str(integration).strip():
        return _Rules(
            PreflightReport(
                integration=None,
                display_name=None,
                checked=False,
                note="the integration is unknown, so no field-support preflight was run; pass "
                "integration='...' to enable it",
            )
        )
    try:
        slug = caps.normalise_integration(str(integration))
    except UnknownIntegrationError:
        return _Rules(
            PreflightReport(
                integration=str(integration),
                display_name=str(integration),
                checked=False,
                note=f"{integration!r} is not in Truto's opportunity-update support table, so no "
                "field-support preflight was run (fields are sent as given)",
            )
        )
    display = caps.display_name(slug)
    if not caps.is_listed(slug):
        return _Rules(
            PreflightReport(
                integration=slug,
                display_name=display,
                checked=False,
                note=f"Truto's docs give no per-field support for {display}, so no field-support "
                "preflight was run (fields are sent as given)",
            )
        )
    required = caps.required_fields(slug)
    clean = PreflightReport(
        integration=slug, display_name=display, checked=True, required_fields=frozenset(required)
    )
    supported = caps.supported_fields(slug)
    statuses = caps.status_values(slug) if "status" in supported else None
    return _Rules(clean, supported, tuple(sorted(required)), statuses)


def check_update(
    integration: str | None,
    update: OpportunityUpdate | Mapping[str, Any],
    *,
    capabilities: OpportunityCapabilities | None = None,
) -> PreflightReport:
    """Check one update against one integration's documented support (pure, no I/O).

    ``integration`` is a name or slug (``"HubSpot"``, ``"zendesk_sell"``); ``None`` means it is
    unknown, which gives an unchecked report.
    """
    caps = capabilities or load_opportunity_capabilities()
    body = update_body(update)  # validated first, whatever the integration: the write's fields
    if integration is None or isinstance(integration, str):
        rules = _rules(caps, integration)  # remembered per integration name
    else:  # not a name (perhaps not hashable): worked out each time
        rules = _rules.__wrapped__(caps, integration)
    report = rules.report
    if not report.checked:
        return report
    display = str(report.display_name)
    issues: list[PreflightIssue] = []
    for name in body:  # the set fields, in declaration order (tested)
        if name in PASSTHROUGH_FIELDS or name in rules.supported:
            continue
        issues.append(
            PreflightIssue(
                "unsupported_field", display, name, _unsupported_message(display, name, caps)
            )
        )
    for name in rules.required:
        if body.get(name) in (None, [], {}, ""):
            issues.append(
                PreflightIssue(
                    "missing_required",
                    display,
                    name,
                    _required_message(display, name, present_as_null=name in body),
                )
            )
    status = body.get("status")
    allowed = rules.statuses
    if status is not None and allowed is not None and str(status) not in allowed:
        issues.append(
            PreflightIssue(
                "invalid_status", display, "status", _status_message(display, status, allowed)
            )
        )
    if not issues:
        return report  # the same for every row without an issue (frozen)
    return dataclasses.replace(report, issues=tuple(issues))


class Preflight:
    """Preflight for one task: resolves integrations (cached per account), checks, logs once.

    :param policy: ``unsupported_fields``: "error", "warn" or "ignore".
    :param integration: the integration name for every account (skips the account lookup).
    :param hook: a :class:`~truto_airflow.hooks.truto.TrutoHook` (anything with
        ``get_integrated_account``); required unless ``integration`` is given.
    :param logger: where warnings go (the operator's ``self.log``).
    """

    def __init__(
        self,
        *,
        policy: UnsupportedFieldsPolicy | str = "error",
        integration: str | None = None,
        hook: Any = None,
        logger: logging.Logger | Any = None,
    ) -> None:
        self.policy: UnsupportedFieldsPolicy = validate_policy(policy)
        self.integration = integration.strip() if isinstance(integration, str) else None
        self.hook = hook
        self.log: Any = logger or log
        self._resolved: dict[str | None, ResolvedIntegration] = {}
        self._failed: dict[str | None, TrutoAPIError] = {}
        self._warned: set[str] = set()

    # -- which integration --------------------------------------------------------------------

    def resolve(self, integrated_account_id: str | None = None) -> ResolvedIntegration:
        """The integration for an account: explicit, else ``integration.name`` of the account.

        A 4xx on the lookup fails the task with that error (and a hint): a refused token or an
        unknown account would fail the PATCH too, and writing unchecked is never the fallback.
        The failure is cached like a success, so a bulk task asks once per account. An answer
        that is not an account object leaves it unresolved (no preflight, one warning);
        transient errors propagate so the task retries rather than writing unchecked.
        """
        key = integrated_account_id
        known = self.known(key)
        if known is not None:
            return known
        if self.hook is None:
            unresolved = ResolvedIntegration(None, "unresolved", "no hook to look the account up")
            return self._settle(key, unresolved)
        try:
            account = self.hook.get_integrated_account(integrated_account_id)
        except (TrutoClientError, TrutoInputError) as exc:
            return self._settle(key, self._lookup_error(key, exc))
        return self._settle(key, self._remember(key, resolved_from_account(account)))

    async def aresolve(self, integrated_account_id: str | None = None) -> ResolvedIntegration:
        """:meth:`resolve` over the hook's async client (same cache, same error handling)."""
        key = integrated_account_id
        known = self.known(key)
        if known is not None:
            return known
        hook = self.hook
        if hook is None or not hasattr(hook, "aget_integrated_account"):
            return self.resolve(integrated_account_id)
        try:
            account = await hook.aget_integrated_account(integrated_account_id)
        except (TrutoClientError, TrutoInputError) as exc:
            return self._settle(key, self._lookup_error(key, exc))
        return self._settle(key, self._remember(key, resolved_from_account(account)))

    def known(self, key: str | None) -> ResolvedIntegration | None:
        """What needs no lookup: ``integration=``, this task's answer, or this process's; a
        lookup that already failed for this task fails again (raises). ``None``: resolving
        ``key`` needs a lookup (the bulk step awaits :meth:`aresolve` only then)."""
        if self.integration:
            return ResolvedIntegration(self.integration, "explicit")
        self._raise_if_failed(key)
        if key in self._resolved:
            return self._resolved[key]
        remembered = self._remembered(key)
        return None if remembered is None else self._settle(key, remembered)

    def _settle(self, key: str | None, resolved: ResolvedIntegration) -> ResolvedIntegration:
        self._resolved[key] = resolved
        return resolved

    def _lookup_error(
        self, key: str | None, exc: TrutoClientError | TrutoInputError
    ) -> ResolvedIntegration:
        """A refused lookup fails the task (with a hint); a config error propagates; any other
        input error (an answer that is not an account) leaves the integration unresolved."""
        if isinstance(exc, TrutoClientError):
            raise self._lookup_failed(key, exc) from None
        if isinstance(exc, TrutoConfigError):
            raise exc
        return ResolvedIntegration(None, "unresolved", str(exc))

    def _remembered(self, account: str | None) -> ResolvedIntegration | None:
        """The integration an earlier task in this process resolved (:data:`INTEGRATIONS`)."""
        cache_key = lookup_key(self.hook, account)
        name = INTEGRATIONS.get(cache_key) if cache_key else None
        return ResolvedIntegration(name, "account") if name else None

    def _remember(self, account: str | None, resolved: ResolvedIntegration) -> ResolvedIntegration:
        cache_key = lookup_key(self.hook, account)
        if cache_key and resolved.source == "account" and resolved.name:
            INTEGRATIONS.put(cache_key, resolved.name)
        return resolved

    def _raise_if_failed(self, key: str | None) -> None:
        failed = self._failed.get(key)
        if failed is not None:
            raise failed

    def _lookup_failed(self, account: str | None, exc: TrutoClientError) -> TrutoAPIError:
        """The lookup's own error, with what it means for the write and how to proceed."""
        which = f"integrated account {account}" if account else "the integrated account"
        if exc.status_code == 401:
            hint = (
                f"The preflight's lookup of {which} was refused: the API token is invalid or "
                "expired, so the PATCH would be refused too. Fix the token in the connection"
            )
        elif exc.status_code == 403:
            hint = (
                f"The token may not read {which} (an integrated-account token can only call "
                "/unified/* routes). Use an API token, or pass integration='<crm>' so the "
                "preflight needs no lookup"
            )
        elif exc.status_code == 404:
            hint = (
                f"{which[0].upper()}{which[1:]} does not exist or is not visible to this token "
                "(another environment?), so the PATCH would fail too. Check integrated_account_id"
            )
        else:
            hint = (
                f"The preflight's lookup of {which} failed, so nothing was sent. Fix the cause, "
                "or pass integration='<crm>' so the preflight needs no lookup"
            )
        failed = exc.with_hint(hint)
        self._failed[account] = failed
        return failed

    # -- checking -----------------------------------------------------------------------------

    def check(
        self,
        update: OpportunityUpdate | Mapping[str, Any],
        *,
        integrated_account_id: str | None = None,
        resolved: ResolvedIntegration | None = None,
    ) -> PreflightReport:
        """Check one update; warns (once per integration) when no preflight is possible."""
        resolved = resolved or self.resolve(integrated_account_id)
        report = check_update(resolved.name, update)
        if not report.checked:
            key = report.integration or f"unresolved:{integrated_account_id}"
            if key not in self._warned:
                self._warned.add(key)
                detail = f" ({resolved.detail})" if resolved.detail else ""
                self.log.warning("Preflight skipped: %s%s", report.note, detail)
        return report


def coerce_flag(name: str, value: Any) -> bool:
    """A boolean operator option that may have been rendered from a template (``"True"``)."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0", ""}:
        return value.strip().lower() in {"true", "1"}
    raise TrutoInputError(f"{name} must be true or false, got {value!r}")
