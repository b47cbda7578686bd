"""Airflow Assets for Truto: ``truto://<host>/<integrated_account_id>/crm/opportunities``.

Why: downstream DAGs want to be scheduled on "the CRM was enriched" (data-aware scheduling) and
read what happened. The operators therefore produce asset events:

* ``UpdateOpportunitiesOperator``: one event per integrated account written, on that account's
  CRM asset, with the run's counts in the event's ``extra`` (``updated``, ``unchanged``,
  ``failed``, ``invalid``); ``UpdateOpportunityOperator`` likewise, but only when given
  ``outlets`` (one PATCH per task, often mapped over many rows: by default it declares none, so
  its tasks pay no outlet check and never meet Airflow's race on an alias's first event);
* ``ExportOpportunitiesOperator``: one event on the exported file (``file:///...`` or the
  ``ObjectStoragePath`` URL), with the rows per account.

The asset depends on the connection's host and on the account, which are known only when the
task runs, so by default the bulk and export operators declare the :data:`DEFAULT_ASSET_ALIAS`
alias as their outlet and attach the concrete assets to it at run time (Airflow creates them on
first use). A consumer DAG schedules on the concrete asset (``schedule=[opportunities_asset(...)]``)
or on the alias. Pass ``outlets=[...]`` to choose yourself: declared ``truto://`` assets get the
counts of their account in ``extra``; ``outlets=[]`` turns events off.

A dry run changes nothing, so it attaches no event to an alias.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import httpx2
from airflow.sdk import Asset, AssetAlias

from truto_airflow.exceptions import TrutoInputError
from truto_airflow.models.options import validate_integrated_account_id

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset as OpenLineageDataset

__all__ = [
    "ASSET_SCHEME",
    "DEFAULT_ASSET_ALIAS",
    "DEFAULT_OUTLETS",
    "convert_asset_to_openlineage",
    "crm_authority",
    "emit_asset_events",
    "openlineage_name",
    "opportunities_asset",
    "opportunities_asset_uri",
    "sanitize_uri",
]

ASSET_SCHEME = "truto"
#: The alias every Truto operator emits to unless ``outlets`` is given.
DEFAULT_ASSET_ALIAS = "truto_crm_opportunities"
_RESOURCE = ("crm", "opportunities")


def crm_authority(base_url: str) -> str:
    """``host[:port]`` of a Truto base URL (``https://api.truto.one`` -> ``api.truto.one``)."""
    text = base_url if "://" in base_url else f"https://{base_url}"
    url = httpx2.URL(text)
    if not url.host:
        raise TrutoInputError(f"{base_url!r} has no host")
    host = url.host.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{url.port}" if url.port is not None else host


def opportunities_asset_uri(base_url: str, integrated_account_id: Any) -> str:
    """``truto://<host>/<integrated_account_id>/crm/opportunities`` (canonical account id)."""
    account = validate_integrated_account_id(integrated_account_id)
    return f"{ASSET_SCHEME}://{crm_authority(base_url)}/{account}/{'/'.join(_RESOURCE)}"


def opportunities_asset(base_url: str, integrated_account_id: Any) -> Asset:
    """The Airflow Asset of one account's CRM opportunities behind ``base_url``."""
    return Asset(uri=opportunities_asset_uri(base_url, integrated_account_id))


#: The bulk and export operators' default ``outlets`` (``default_outlets``, also applied by
#: ``.partial()``, so mapped instances emit events like plain ones); pass it as
#: ``outlets=list(DEFAULT_OUTLETS)`` to have ``UpdateOpportunityOperator`` emit them too.
#: Immutable: the operators copy it into a list.
DEFAULT_OUTLETS: tuple[AssetAlias, ...] = (AssetAlias(name=DEFAULT_ASSET_ALIAS),)


def _split(parsed: urllib.parse.SplitResult) -> tuple[str, str]:
    parts = parsed.path.strip("/").split("/")
    if len(parts) != 3 or tuple(parts[1:]) != _RESOURCE or not parsed.netloc:
        raise TrutoInputError(
            f"A truto:// asset URI must be truto://<host>/<integrated_account_id>/crm/"
            f"opportunities, got {urllib.parse.urlunsplit(parsed)!r}"
        )
    try:
        account = validate_integrated_account_id(parts[0])
    except TrutoInputError as exc:
        raise ValueError(str(exc)) from None
    return parsed.netloc.lower(), account


def sanitize_uri(parsed: urllib.parse.SplitResult) -> urllib.parse.SplitResult:
    """Airflow's URI normaliser for ``truto://`` (registered in ``get_provider_info``)."""
    netloc, account = _split(parsed)
    return parsed._replace(netloc=netloc, path=f"/{account}/{'/'.join(_RESOURCE)}")


def openlineage_name(uri: str) -> tuple[str, str]:
    """OpenLineage's ``(namespace, name)`` of a ``truto://`` asset URI: ``truto://<host>`` and
    ``<integrated_account_id>/crm/opportunities`` (scheme://authority + path, per OpenLineage's
    naming conventions). The task's own lineage uses it too, so both name one dataset."""
    netloc, account = _split(urllib.parse.urlsplit(uri))
    return f"{ASSET_SCHEME}://{netloc}", f"{account}/{'/'.join(_RESOURCE)}"


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any) -> OpenLineageDataset:
    """The OpenLineage dataset of a ``truto://`` asset (:func:`openlineage_name`)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    namespace, name = openlineage_name(asset.uri)
    return Dataset(namespace=namespace, name=name)


def emit_asset_events(
    context: Mapping[str, Any],
    outlets: Iterable[Any],
    events: Iterable[tuple[Asset, dict[str, Any]]],
    *,
    to_aliases: bool = True,
) -> int:
    """Attach ``events`` (asset, extra) to this task's outlets; returns how many were attached.

    Aliases get one event per asset (when ``to_aliases``); a declared :class:`Asset` outlet
    gets the ``extra`` of the event with the same URI. Outside a task run (no
    ``outlet_events`` in the context) nothing happens.
    """
    accessors: MutableMapping[Any, Any] | None = context.get("outlet_events")
    if accessors is None:
        return 0
    pending = list(events)
    attached = 0
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            if not to_aliases:
                continue
            for asset, extra in pending:
                accessors[outlet].add(asset, extra=extra)
                attached += 1
        elif isinstance(outlet, Asset):
            for asset, extra in pending:
                if asset.uri == outlet.uri:
                    accessors[outlet].extra.update(extra)
                    attached += 1
    return attached
