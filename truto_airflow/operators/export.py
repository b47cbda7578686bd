"""``ExportOpportunitiesOperator``: every opportunity of one or more accounts into JSON Lines.

The read half of the enrichment loop (export -> score -> partition -> write back, see
dags_examples/example_truto_enrichment_loop.py). Pages come from
:meth:`TrutoHook.iter_opportunities` (the one cycle-safe, page-capped cursor walker, with the
hook's retries), records go straight to the output file: memory holds one page, whatever the
number of rows. Accounts are read one after the other, one request in flight, so an account's
rate limit sees at most one reader; 429s wait for ``Retry-After`` in the hook.

The file is written to a temporary sibling and published only when every account was read
(:mod:`truto_airflow.output`): a failed try leaves the previous file (or none) at
``output_path``, and a retry starts over, so every record is in the file exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from truto_airflow.bulk.progress import ProgressReporter
from truto_airflow.exceptions import TrutoInputError, TrutoPaginationError
from truto_airflow.models.options import validate_integrated_account_id
from truto_airflow.operators._base import QUERY_TEMPLATE_FIELDS, TrutoBaseOperator
from truto_airflow.output import account_line, atomic_output
from truto_airflow.pagination import DEFAULT_MAX_PAGES
from truto_airflow.preflight import coerce_flag
from truto_airflow.rendered import blank_to_none, rendered_list, rendered_mapping

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["ExportOpportunitiesOperator", "parse_account_ids"]


def parse_account_ids(value: Any) -> list[str] | None:
    """A list of canonical account ids from a list, a JSON/Python list string or ``"a,b"``;
    ``None`` when unset (the connection's default applies). Duplicates are dropped."""
    value = rendered_list("integrated_account_ids", value)
    if value is None:
        return None
    if not value:
        raise TrutoInputError(
            "integrated_account_ids must be a non-empty list of integrated account ids (or "
            f"one id), got {value!r}"
        )
    accounts: list[str] = []
    for n, raw in enumerate(value):
        account = validate_integrated_account_id(raw, source=f"integrated_account_ids[{n}]")
        if account not in accounts:
            accounts.append(account)
    return accounts


def _positive(name: str, value: Any, *, allow_none: bool = True) -> int | None:
    value = blank_to_none(value)
    if value is None and allow_none:
        return None
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise TrutoInputError(f"{name} must be a whole number >= 1, got {value!r}")
    return number


class ExportOpportunitiesOperator(TrutoBaseOperator):
    """Stream every opportunity of the given accounts to a JSON Lines file.

    One line per opportunity: Truto's record with ``integrated_account_id`` added. Returns
    ``{"path", "rows", "accounts": {id: rows}, "bytes", "duration_s", "rows_per_second"}``.

    :param output_path: a local path or an ``ObjectStoragePath`` URL (``s3://...``). (templated)
    :param integrated_account_ids: the accounts to export: a list, one id, or ``"a,b"``; by
        default the connection's ``integrated_account_id``. (templated)
    :param page_size: rows per page (Truto's ``limit``; Truto's default when unset). (templated)
    :param limit: stop after this many opportunities per account. (templated)
    :param ignore_remote_data: / ``exclude_fields`` / ``remote_query`` / ``response_format``:
        Truto's list options (``truto_ignore_remote_data`` ...); ``remote_query`` is the CRM's
        own filter parameters. (templated)
    :param query_params: any other query parameters (Truto filters, ``sort_by`` ...). (templated)
    :param max_pages: pages per account before the walk is refused (a bound against a list that
        never ends); see :class:`~truto_airflow.pagination.CursorWalk`.
    :param progress_every_rows: / ``progress_every_seconds``: progress log cadence.
    :param hook_params: extra keyword arguments for :class:`TrutoHook`.
    """

    template_fields: Sequence[str] = (
        "output_path",
        "integrated_account_ids",
        "page_size",
        "limit",
        *QUERY_TEMPLATE_FIELDS,
        "query_params",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "remote_query": "json",
        "query_params": "json",
    }
    ui_color = "#e3f2e1"

    def __init__(
        self,
        *,
        output_path: Any,
        integrated_account_ids: Any = None,
        page_size: Any = None,
        limit: Any = None,
        query_params: Any = None,
        max_pages: int = DEFAULT_MAX_PAGES,
        progress_every_rows: int | None = 10_000,
        progress_every_seconds: float | None = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.output_path = output_path
        self.integrated_account_ids = integrated_account_ids
        self.page_size = page_size
        self.limit = limit
        self.query_params = query_params
        self.max_pages = max_pages
        self.progress_every_rows = progress_every_rows
        self.progress_every_seconds = progress_every_seconds

    def _options(self) -> dict[str, Any]:
        page_size = _positive("page_size", self.page_size)
        options: dict[str, Any] = {**self.response_options()}
        ignore = options["ignore_remote_data"]
        if ignore is not None:
            options["ignore_remote_data"] = coerce_flag("ignore_remote_data", ignore)
        return {
            "page_size": page_size,
            **options,
            "params": rendered_mapping("query_params", self.query_params),
        }

    def execute(self, context: Context) -> dict[str, Any]:
        output = blank_to_none(self.output_path)
        if output is None:
            raise TrutoInputError("output_path is required: a local path or an s3://... URL")
        accounts = parse_account_ids(self.integrated_account_ids) or [
            self.hook.resolve_account(None)
        ]
        options = self._options()
        limit = _positive("limit", self.limit)
        try:
            summary = self._export(output, accounts, options, limit)
        finally:
            self.hook.close()
        self.report_exported(
            context,
            base_url=self.hook.settings.base_url,
            accounts=summary["accounts"],
            location=summary["path"],
            size=summary["bytes"],
        )
        return summary

    def _export(
        self, output: Any, accounts: list[str], options: dict[str, Any], limit: int | None
    ) -> dict[str, Any]:
        counts: dict[str, int] = {}
        total = size = 0
        started = time.monotonic()
        progress = ProgressReporter(
            self.log,
            every_rows=self.progress_every_rows,
            every_seconds=self.progress_every_seconds,
            label="Export progress",
        )
        self.log.info("Exporting opportunities of %d account(s) to %s", len(accounts), output)
        with atomic_output(output) as (fh, final):
            for account in accounts:
                counts[account] = 0
                records = self.hook.iter_opportunities(
                    account, limit=limit, max_pages=self.max_pages, **options
                )
                for record in records:
                    line = _line(record, account)
                    fh.write(line)
                    size += len(line)
                    counts[account] += 1
                    total += 1
                    progress.maybe_report(total, {"accounts_done": len(counts) - 1})
                self.log.info("Account %s: %d opportunities exported", account, counts[account])
        duration = time.monotonic() - started
        summary = {
            "path": str(final),
            "rows": total,
            "accounts": counts,
            "bytes": size,
            "duration_s": round(duration, 3),
            "rows_per_second": round(total / duration, 1) if duration > 0 else 0.0,
        }
        self.log.info(
            "Exported %d opportunities (%d bytes) from %d account(s) to %s in %.1f s",
            total,
            size,
            len(accounts),
            summary["path"],
            duration,
        )
        return summary


def _line(record: Mapping[str, Any], account: str) -> bytes:
    """One JSON Lines record, tagged with its account; refuses what is not strict JSON."""
    try:
        return account_line(record, account).encode()
    except ValueError as exc:  # NaN/Infinity: not JSON; downstream parsers would choke
        raise TrutoPaginationError(
            f"opportunity {record.get('id')!r} of account {account} holds a value that is not "
            f"valid JSON ({exc}); nothing was published"
        ) from None
