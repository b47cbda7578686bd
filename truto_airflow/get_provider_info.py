"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

Kept import-light (no Airflow import): Airflow calls this while it is itself importing, and a
broken dict here makes ``import airflow`` fail for everyone, so a unit test validates it against
Airflow's own schemas.
"""

from __future__ import annotations

from typing import Any

DEFAULT_BASE_URL = "https://api.truto.one"


def get_provider_info() -> dict[str, Any]:
    """Describe the provider, its hook, operators, extra link and the ``truto`` connection type."""
    return {
        "package-name": "truto-airflow",
        "name": "Truto",
        "description": "Update CRM records (HubSpot, Pipedrive, Salesforce, ...) through Truto's "
        "Unified CRM API.",
        # Released versions, newest first (provider.yaml's schema); the first is __version__ and
        # each has a CHANGELOG.md section (tests/unit/test_get_provider_info.py checks both).
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "Truto",
                "external-doc-url": "https://truto.one/docs/api-reference/unified-crm-api/opportunities/update",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Truto", "python-modules": ["truto_airflow.hooks.truto"]}],
        "operators": [
            {
                "integration-name": "Truto",
                "python-modules": [
                    "truto_airflow.operators.opportunities",
                    "truto_airflow.operators.bulk",
                    "truto_airflow.operators.export",
                    "truto_airflow.operators.partition",
                ],
            }
        ],
        "extra-links": ["truto_airflow.links.TrutoOpportunityLink"],
        # truto://<host>/<integrated_account_id>/crm/opportunities (truto_airflow.assets)
        "asset-uris": [
            {
                "schemes": ["truto"],
                "handler": "truto_airflow.assets.sanitize_uri",
                "to_openlineage_converter": "truto_airflow.assets.convert_asset_to_openlineage",
            }
        ],
        "connection-types": [
            {
                "connection-type": "truto",
                "hook-class-name": "truto_airflow.hooks.truto.TrutoHook",
                "hook-name": "Truto",
                # The port is shown: the hook honours it, and Airflow 3.3's Test button only
                # works for a connection whose stored port is set (it sends port 0 otherwise and
                # the API refuses: "host or port to test differs").
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login"],
                    "relabeling": {"host": "Base URL", "password": "API token"},
                    "placeholders": {
                        "host": DEFAULT_BASE_URL,
                        "port": "443 (needed by the Test button)",
                        "password": "Truto API token (Settings > API tokens)",
                        "integrated_account_id": "62f44730-dd91-461e-bd6a-aedd9e0ad79d",
                    },
                },
                "conn-fields": {
                    "integrated_account_id": {
                        "label": "Default integrated account id",
                        "description": "UUID of the customer's connected CRM, used when a task "
                        "does not pass integrated_account_id.",
                        "schema": {"type": ["string", "null"], "default": None},
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Per-request read timeout; CRM calls are synchronous, "
                        "so allow for the slowest CRM.",
                        "schema": {"type": ["number", "null"], "minimum": 1, "default": 60},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries for 429, 500/502/504 and network errors "
                        "(0 disables).",
                        "schema": {
                            "type": ["integer", "null"],
                            "minimum": 0,
                            "maximum": 20,
                            "default": 5,
                        },
                    },
                },
            }
        ],
    }
