"""Pinned facts from Truto's opportunity-update docs table, and generator reproducibility."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from truto_airflow.capabilities import (
    UnknownIntegrationError,
    load_opportunity_capabilities,
    normalise_integration,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
DOCS = SHARED / "truto-docs" / "patch-unified-crm-opportunity.txt"
REFERENCE = SHARED / "reference" / "truto_api.md"
COMMITTED = REPO / "truto_airflow" / "data" / "opportunity_update_capabilities.json"

caps = load_opportunity_capabilities()


def test_teamleader_requires_name_account_contact() -> None:
    assert caps.required_fields("Teamleader") == {"name", "account", "contact"}
    assert caps.required_fields("hubspot") == frozenset()


def test_pipedrive_status_values() -> None:
    assert caps.status_values("Pipedrive") == {"open", "won", "lost", "deleted"}
    assert caps.status_values("attio") == {"lead", "in_progress", "won", "lost"}
    assert caps.status_values("Highlevel") == {"open", "lost", "won", "abandoned", "all"}
    assert caps.status_values("insightly") == {"open", "won", "suspended", "lost", "abandoned"}
    assert caps.status_values("close") is None  # supports status, values not enumerated


def test_exactly_eight_integrations_support_description() -> None:
    assert caps.integrations_supporting("description") == {
        "capsule",
        "close",
        "hubspot",
        "insightly",
        "keap",
        "onepagecrm",
        "outreach",
        "pipeliner",
    }


def test_salesforce_is_unlisted_and_applies_everything() -> None:
    assert not caps.is_listed("Salesforce")
    assert not caps.is_listed("zoho_crm")
    assert caps.is_listed("hubspot")
    assert caps.supported_fields("salesforce") == caps.fields()


def test_remote_data_is_accepted_everywhere() -> None:
    assert caps.integrations_supporting("remote_data") is None
    for slug in caps.integrations():
        assert "remote_data" in caps.supported_fields(slug)


def test_unsupported_field_not_in_supported_fields() -> None:
    hubspot = caps.supported_fields("HubSpot")
    assert "description" in hubspot
    assert "currency" not in hubspot
    assert "close_time" in caps.supported_fields("pipedrive")


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("HubSpot", "hubspot"),
        ("hubspot", "hubspot"),
        ("Zendesk Sell", "zendesk_sell"),
        ("zendesk_sell", "zendesk_sell"),
        ("zendesksell", "zendesk_sell"),
        ("Monday CRM", "monday_crm"),
        ("OnePageCRM", "onepagecrm"),
        ("highlevel", "highlevel"),
        ("Zoho CRM", "zoho_crm"),
    ],
)
def test_normalise_integration(name: str, slug: str) -> None:
    assert normalise_integration(name) == slug


def test_unknown_integration() -> None:
    with pytest.raises(UnknownIntegrationError):
        normalise_integration("not-a-crm")
    assert caps.display_name("zendesksell") == "Zendesk Sell"


@pytest.mark.skipif(not DOCS.exists(), reason=f"docs page not found at {DOCS}")
def test_generator_reproduces_committed_json() -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_capabilities", REPO / "scripts" / "generate_capabilities.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        text = module.render(
            module.build(DOCS.read_text(encoding="utf-8"), REFERENCE.read_text(encoding="utf-8"))
        )
    finally:
        sys.modules.pop(spec.name, None)
    assert text == COMMITTED.read_text(encoding="utf-8")
