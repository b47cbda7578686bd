"""Which CRM supports (or requires) which opportunity-update field, per Truto's docs.

The data is generated from the docs page by ``scripts/generate_capabilities.py`` into
``truto_airflow/data/opportunity_update_capabilities.json`` and shipped as package data, so the
provider (pre-flight warnings) and the emulator (per-CRM behaviour) read the same facts.

Two kinds of integration matter:

* *listed* ones appear in at least one field's support table; a field missing from their list is
  silently ignored by the CRM, so callers should warn about it;
* *unlisted* ones (Salesforce, Zoho CRM) support opportunity update but the page gives no table
  for them, so nothing can be said per field: every field is assumed to be accepted.

``remote_data`` is the untransformed passthrough and is accepted for every integration.

The page's response table says, the same way, which fields each CRM *returns*
(:meth:`OpportunityCapabilities.returned_fields`); the emulator answers with exactly those.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from truto_airflow.exceptions import TrutoError

__all__ = [
    "OpportunityCapabilities",
    "UnknownIntegrationError",
    "load_opportunity_capabilities",
    "normalise_integration",
]

_DATA_FILE = "opportunity_update_capabilities.json"


class UnknownIntegrationError(TrutoError, KeyError):
    """The name matches no integration known to support opportunity update."""


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class FieldCapability:
    """Support facts for one body field; ``supported is None`` means "every integration"."""

    name: str
    type: str | None
    supported: frozenset[str] | None
    required: frozenset[str]
    passthrough: bool


class OpportunityCapabilities:
    """Typed view over the generated JSON (use :func:`load_opportunity_capabilities`)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._fields: dict[str, FieldCapability] = {
            name: FieldCapability(
                name=name,
                type=spec.get("type"),
                supported=None if spec["supported"] is None else frozenset(spec["supported"]),
                required=frozenset(spec.get("required", ())),
                passthrough=bool(spec.get("passthrough", False)),
            )
            for name, spec in data["fields"].items()
        }
        self._status: dict[str, frozenset[str]] = {
            slug: frozenset(values) for slug, values in data["status_values"].items()
        }
        self._display: dict[str, str] = dict(data["display_names"])
        self._unlisted: frozenset[str] = frozenset(data["unlisted_integrations"])
        self._returned: dict[str, frozenset[str] | None] = {
            name: None if spec["returned_by"] is None else frozenset(spec["returned_by"])
            for name, spec in data.get("response_fields", {}).items()
        }
        self._by_squashed: dict[str, str] = {}
        for slug, display in self._display.items():
            self._by_squashed[_squash(slug)] = slug
            self._by_squashed[_squash(display)] = slug
        # Per-name answers, computed once: the bulk preflight asks for every row (issue 12).
        self._slugs: dict[str, str] = {}
        self._supported: dict[str, frozenset[str]] = {}
        self._required: dict[str, frozenset[str]] = {}

    # -- names -------------------------------------------------------------------------------
    def integrations(self) -> frozenset[str]:
        """Slugs of every integration known to support opportunity update."""
        return frozenset(self._display)

    def display_name(self, integration: str) -> str:
        """``"zendesk_sell"`` -> ``"Zendesk Sell"``."""
        return self._display[self.normalise_integration(integration)]

    def normalise_integration(self, name: str) -> str:
        """Map ``"HubSpot"``, ``"hubspot"``, ``"Zendesk Sell"``, ``"zendesksell"`` to a slug."""
        slug = self._slugs.get(name)
        if slug is None:
            slug = self._by_squashed.get(_squash(name))
            if slug is None:
                raise UnknownIntegrationError(name)
            if len(self._slugs) < 4096:  # names come from accounts: bounded all the same
                self._slugs[name] = slug
        return slug

    def is_listed(self, integration: str) -> bool:
        """True when the docs give per-field support for this integration."""
        return self.normalise_integration(integration) not in self._unlisted

    # -- fields ------------------------------------------------------------------------------
    def fields(self) -> frozenset[str]:
        """Every documented body field name."""
        return frozenset(self._fields)

    def field(self, name: str) -> FieldCapability:
        return self._fields[name]

    def supported_fields(self, integration: str) -> frozenset[str]:
        """Fields this integration applies; all fields for unlisted integrations."""
        slug = self.normalise_integration(integration)
        found = self._supported.get(slug)
        if found is None:
            listed = slug not in self._unlisted
            found = self._supported[slug] = frozenset(
                name
                for name, spec in self._fields.items()
                if spec.supported is None or not listed or slug in spec.supported
            )
        return found

    def required_fields(self, integration: str) -> frozenset[str]:
        """Fields this integration requires in every update body."""
        slug = self.normalise_integration(integration)
        found = self._required.get(slug)
        if found is None:
            found = self._required[slug] = frozenset(
                name for name, spec in self._fields.items() if slug in spec.required
            )
        return found

    def integrations_supporting(self, field: str) -> frozenset[str] | None:
        """Listed integrations supporting ``field``; ``None`` for the passthrough."""
        return self._fields[field].supported

    def response_fields(self) -> frozenset[str]:
        """Every field the docs' response table lists."""
        return frozenset(self._returned)

    def returned_fields(self, integration: str) -> frozenset[str] | None:
        """Fields this integration returns per the response table; ``None`` when the page says
        nothing about the integration (unlisted: Salesforce, Zoho CRM).

        An integration that is listed for writes but appears in no response table (Teamleader)
        returns only the passthrough fields.
        """
        slug = self.normalise_integration(integration)
        if slug in self._unlisted:
            return None
        return frozenset(
            name
            for name, returned_by in self._returned.items()
            if returned_by is None or slug in returned_by
        )

    def status_values(self, integration: str) -> frozenset[str] | None:
        """Allowed ``status`` values, or ``None`` when the docs do not enumerate them."""
        return self._status.get(self.normalise_integration(integration))


@functools.cache
def load_opportunity_capabilities() -> OpportunityCapabilities:
    """Load (once) the capabilities shipped in ``truto_airflow/data``."""
    text = resources.files("truto_airflow").joinpath("data").joinpath(_DATA_FILE).read_text("utf-8")
    return OpportunityCapabilities(json.loads(text))


def normalise_integration(name: str) -> str:
    """Module-level shortcut for :meth:`OpportunityCapabilities.normalise_integration`."""
    return load_opportunity_capabilities().normalise_integration(name)
