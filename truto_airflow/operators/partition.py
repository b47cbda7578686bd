"""``PartitionByAccountOperator``: :func:`truto_airflow.partition.partition_by_account` as a task.

The XCom return value feeds ``UpdateOpportunitiesOperator.partial(...).expand_kwargs(...)``
directly; see docs/scaling.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from truto_airflow.partition import DEFAULT_MAX_ROWS, partition_by_account
from truto_airflow.rendered import blank_to_none

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["PartitionByAccountOperator"]


class PartitionByAccountOperator(BaseOperator):
    """Split rows into per-account JSON Lines chunks of at most ``max_rows`` rows.

    :param rows: a list of rows, a JSON array string, or the path/URL of a JSON Lines file
        (e.g. the export's or a scoring task's output). (templated)
    :param output_dir: local directory or ``ObjectStoragePath`` URL for the chunks; use one per
        DAG run. (templated)
    :param max_rows: rows per chunk; ``None`` for exactly one chunk per account. (templated)
    :param integrated_account_id: account for rows that do not name one. (templated)
    """

    template_fields: Sequence[str] = ("rows", "output_dir", "max_rows", "integrated_account_id")
    template_ext: Sequence[str] = ()
    ui_color = "#f3ead8"

    def __init__(
        self,
        *,
        rows: Any,
        output_dir: Any,
        max_rows: Any = DEFAULT_MAX_ROWS,
        integrated_account_id: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rows = rows
        self.output_dir = output_dir
        self.max_rows = max_rows
        self.integrated_account_id = integrated_account_id

    def execute(self, context: Context) -> list[dict[str, str]]:
        max_rows = blank_to_none(self.max_rows)
        chunks = partition_by_account(
            self.rows,
            self.output_dir,
            max_rows=max_rows,
            integrated_account_id=blank_to_none(self.integrated_account_id),
        )
        accounts = {chunk["integrated_account_id"] for chunk in chunks}
        self.log.info(
            "Partitioned into %d chunk(s) for %d account(s) (at most %s rows each) under %s",
            len(chunks),
            len(accounts),
            max_rows if max_rows is not None else "all",
            self.output_dir,
        )
        return chunks
