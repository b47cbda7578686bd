"""Example: a DAG scheduled on "the CRM was enriched" (Airflow Assets produced by truto-airflow).

Every bulk write task (``UpdateOpportunitiesOperator``; ``UpdateOpportunityOperator`` when given
``outlets``) emits an asset event per integrated account it wrote to, on
``truto://<host>/<integrated_account_id>/crm/opportunities``, with the run's counts in the
event's ``extra`` (``updated``, ``unchanged``, ``failed``, ``invalid``). This DAG runs when any
of the listed accounts was written (``AssetAny``) and reports what changed, e.g. to refresh a
dashboard only when something was actually updated.

Set ``TRUTO_BASE_URL`` and ``TRUTO_ENRICHED_ACCOUNTS`` (comma-separated integrated account ids)
to the values your writer DAG uses.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import pendulum
from airflow.sdk import DAG, AssetAny, task

from truto_airflow.assets import opportunities_asset

TRUTO_BASE_URL = os.environ.get("TRUTO_BASE_URL", "https://api.truto.one")
ACCOUNTS = [
    account.strip()
    for account in os.environ.get(
        "TRUTO_ENRICHED_ACCOUNTS", "62f44730-dd91-461e-bd6a-aedd9e0ad79d"
    ).split(",")
    if account.strip()
]
CRM_ASSETS = [opportunities_asset(TRUTO_BASE_URL, account) for account in ACCOUNTS]


def enrichment_report(events: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, Any]:
    """Sum the counts of the triggering events (``{asset uri: [event extra, ...]}``)."""
    accounts: dict[str, dict[str, int]] = {}
    for extras in events.values():
        for extra in extras:
            if extra.get("operation") != "update" or extra.get("dry_run"):
                continue  # an export's file event, or a plan: nothing was written
            account = str(extra.get("integrated_account_id"))
            counts = accounts.setdefault(account, {})
            for outcome in ("updated", "unchanged", "failed", "invalid"):
                counts[outcome] = counts.get(outcome, 0) + int(extra.get(outcome, 0))
    changed = sum(c["updated"] for c in accounts.values())
    return {"accounts": accounts, "updated": changed}


# [START howto_asset_truto_consumer]
with DAG(
    dag_id="example_truto_enrichment_consumer",
    schedule=AssetAny(*CRM_ASSETS),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "truto", "assets"],
    doc_md=__doc__,
) as dag:

    @task
    def report(triggering_asset_events: Any = None) -> dict[str, Any]:
        """Read what the writer reported: the counts travel in each event's ``extra``."""
        events = {
            asset.uri: [event.extra for event in asset_events]
            for asset, asset_events in (triggering_asset_events or {}).items()
        }
        summary = enrichment_report(events)
        print(f"CRM enrichment: {summary['updated']} opportunities updated; {summary}")
        return summary

    report()
# [END howto_asset_truto_consumer]
