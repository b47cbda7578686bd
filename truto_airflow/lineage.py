"""OpenLineage for the Truto operators (``get_openlineage_facets_on_complete``).

Each operator records, while it runs, which datasets it read and wrote (:class:`LineageRef`,
plain data: nothing here imports OpenLineage until Airflow's OpenLineage provider asks). The
provider then calls ``get_openlineage_facets_on_complete`` on the same operator object and gets:

* the CRM side: namespace ``truto://<host>``, name ``<integrated_account_id>/crm/opportunities``
  (the dataset of :func:`truto_airflow.assets.convert_asset_to_openlineage`), an output of the
  write operators and an input of the export;
* the file side: a local file is namespace ``file``, name its absolute path; object storage is
  ``<scheme>://<bucket>`` and the key (OpenLineage's naming conventions, as Airflow's
  ``common.io`` provider does).

Row counts go into the standard ``outputStatistics`` / ``inputStatistics`` facets.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from truto_airflow.assets import openlineage_name, opportunities_asset_uri
from truto_airflow.bulk.rows import named_path, resolve_path
from truto_airflow.exceptions import TrutoInputError

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

__all__ = [
    "LineageRef",
    "TrutoLineageMixin",
    "crm_ref",
    "file_ref",
    "input_file_ref",
    "operator_lineage",
]

_T = TypeVar("_T")


@dataclass(frozen=True)
class LineageRef:
    """One dataset an operator touched, with what is known of its statistics, under the names
    of OpenLineage's statistics facets (``rowCount``, ``size``); none known, no facet."""

    namespace: str
    name: str
    statistics: Mapping[str, int] = field(default_factory=dict)


def _statistics(rows: int | None, size: int | None = None) -> dict[str, int]:
    known = {"rowCount": rows, "size": size}
    return {facet: value for facet, value in known.items() if value is not None}


def crm_ref(base_url: str, integrated_account_id: str, *, rows: int | None = None) -> LineageRef:
    """The CRM opportunities of one integrated account behind ``base_url`` (the dataset of its
    asset, :func:`truto_airflow.assets.openlineage_name`)."""
    uri = opportunities_asset_uri(base_url, integrated_account_id)
    return LineageRef(*openlineage_name(uri), _statistics(rows))


def file_ref(path: Any, *, rows: int | None = None, size: int | None = None) -> LineageRef:
    """A JSON Lines file: a local path or an ``ObjectStoragePath`` (or its URL), resolved as the
    operators resolve it (:func:`~truto_airflow.bulk.rows.resolve_path`)."""
    path = resolve_path(path)
    if isinstance(path, pathlib.Path):
        return LineageRef("file", str(path.absolute()), _statistics(rows, size))
    namespace = str(path.namespace)
    key = str(path.key)
    if namespace == "file":
        key = "/" + key.lstrip("/")
    return LineageRef(namespace, key, _statistics(rows, size))


def operator_lineage(
    inputs: Iterable[LineageRef], outputs: Iterable[LineageRef]
) -> OperatorLineage[Any, Any]:
    """Build the provider's ``OperatorLineage`` (imports OpenLineage only here)."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import (
        input_statistics_input_dataset,
        output_statistics_output_dataset,
    )

    def datasets(
        refs: Iterable[LineageRef], side: str, dataset: Callable[..., _T], stats: Callable[..., Any]
    ) -> list[_T]:
        """``side`` is "input" or "output": OpenLineage names both datasets' facet argument and
        statistics facet after it (``inputFacets`` / ``inputStatistics``, ...)."""
        built = []
        for ref in refs:
            facets = {}
            if ref.statistics:
                facets[f"{side}Statistics"] = stats(**ref.statistics)
            built.append(
                dataset(namespace=ref.namespace, name=ref.name, **{f"{side}Facets": facets})
            )
        return built

    input_stats = input_statistics_input_dataset.InputStatisticsInputDatasetFacet
    output_stats = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet
    return OperatorLineage(
        inputs=datasets(inputs, "input", InputDataset, input_stats),
        outputs=datasets(outputs, "output", OutputDataset, output_stats),
    )


#: Outcomes every write event reports (0 when none), so consumers can read them blindly.
WRITE_COUNTS = ("updated", "unchanged", "failed", "invalid")


def input_file_ref(updates: Any) -> LineageRef | None:
    """The JSON Lines file a write operator read, when ``updates`` named one."""
    path = named_path(updates)
    return None if path is None else file_ref(path)


class TrutoLineageMixin:
    """What the Truto operators share for Assets and OpenLineage (see module docstrings).

    ``execute`` calls :meth:`report_written` or :meth:`report_exported` once it knows the
    counts; Airflow's OpenLineage provider then calls :meth:`get_openlineage_facets_on_complete`.
    """

    outlets: Any
    _lineage: tuple[list[LineageRef], list[LineageRef]] | None = None

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """``BaseOperator.partial`` with the operator's ``default_outlets`` as a fresh list: a
        mapped task's outlets are read from here before it is unmapped (Airflow concatenates
        them with its inlets, so they must be a list, and must not be shared)."""
        if kwargs.get("outlets") is None:
            kwargs["outlets"] = list(getattr(cls, "default_outlets", ()))
        return super().partial(**kwargs)  # type: ignore[misc]

    def report_written(
        self,
        context: Any,
        *,
        base_url: str,
        accounts: Mapping[str, Mapping[str, int]],
        dry_run: bool,
        source: Any = None,
    ) -> None:
        """Lineage and asset events of a write: ``accounts`` maps account -> outcome counts."""
        from truto_airflow.assets import emit_asset_events, opportunities_asset

        events = []
        outputs = []
        for account, counts in accounts.items():
            try:
                asset = opportunities_asset(base_url, account)
            except TrutoInputError:
                continue  # rows without a valid account ("(none)"): nothing was written there
            extra: dict[str, Any] = {
                "operation": "update",
                "integrated_account_id": account,
                "dry_run": dry_run,
                **{name: int(counts.get(name, 0)) for name in WRITE_COUNTS},
            }
            if dry_run:
                extra["would_update"] = int(counts.get("would_update", 0))
            events.append((asset, extra))
            outputs.append(crm_ref(base_url, account, rows=extra["updated"]))
        source_ref = input_file_ref(source)
        self._lineage = ([source_ref] if source_ref else [], [] if dry_run else outputs)
        emit_asset_events(context, self.outlets or (), events, to_aliases=not dry_run)

    def report_exported(
        self,
        context: Any,
        *,
        base_url: str,
        accounts: Mapping[str, int],
        location: Any,
        size: int | None,
    ) -> None:
        """Lineage and the asset event of an export of ``accounts`` (account -> rows)."""
        from airflow.sdk import Asset

        from truto_airflow.assets import emit_asset_events

        rows = sum(accounts.values())
        target = file_ref(location, rows=rows, size=size)
        self._lineage = (
            [crm_ref(base_url, account, rows=count) for account, count in accounts.items()],
            [target],
        )
        uri = f"file://{target.name}" if target.namespace == "file" else str(location)
        extra = {"operation": "export", "rows": rows, "accounts": dict(accounts)}
        emit_asset_events(context, self.outlets or (), [(Asset(uri=uri), extra)])

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        """Called by Airflow's OpenLineage provider after ``execute`` (same operator object)."""
        inputs, outputs = self._lineage or ([], [])
        return operator_lineage(inputs, outputs)
