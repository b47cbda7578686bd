"""What the Truto operators share, declared once: the connection, the hook, Truto's response
options and, for the two write operators, the data-safety options (docs/data_safety.md).

Base classes, as Airflow's SQL providers have ``BaseSQLOperator``: Airflow wraps each class's
``__init__``, so ``default_args``, ``partial()`` and ``expand()`` know these parameters on every
subclass. A subclass lists its own template fields around :data:`QUERY_TEMPLATE_FIELDS` and
:data:`SAFETY_TEMPLATE_FIELDS`, so the UI shows them in the order its docstring documents them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

from airflow.sdk import BaseOperator

from truto_airflow.assets import DEFAULT_OUTLETS
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.idempotency import RunIdentity
from truto_airflow.lineage import TrutoLineageMixin
from truto_airflow.models.options import ResponseShapeArgs
from truto_airflow.preflight import (
    Preflight,
    UnsupportedFieldsPolicy,
    coerce_flag,
    validate_policy,
)
from truto_airflow.rendered import blank_to_none, rendered_mapping

__all__ = [
    "QUERY_TEMPLATE_FIELDS",
    "SAFETY_TEMPLATE_FIELDS",
    "SafetyOptions",
    "TrutoBaseOperator",
    "TrutoWriteOperator",
]

#: Truto's response options, templated on every operator.
QUERY_TEMPLATE_FIELDS = ("response_format", "ignore_remote_data", "exclude_fields", "remote_query")
#: The data-safety options of the write operators (``plan_only`` is the ``dry_run`` argument).
SAFETY_TEMPLATE_FIELDS = ("unsupported_fields", "integration", "skip_unchanged", "plan_only")


class TrutoBaseOperator(TrutoLineageMixin, BaseOperator):
    """An operator on one ``truto`` connection, with Truto's response options.

    :param truto_conn_id: the ``truto`` Airflow connection.
    :param response_format: / ``ignore_remote_data`` / ``exclude_fields`` / ``remote_query``:
        Truto's response options (``truto_response_format`` ...); ``remote_query`` is passed to
        the CRM untouched. Not sent when ``None``. (templated)
    :param hook_params: extra keyword arguments for :class:`TrutoHook` (``timeout``,
        ``max_retries``, ``retry_policy``, ``transport`` ...).
    """

    template_fields: Sequence[str] = QUERY_TEMPLATE_FIELDS
    template_ext: Sequence[str] = ()
    #: ``outlets`` when none are given (also for ``.partial()``): the asset alias, whose events
    #: carry each account's counts (:mod:`truto_airflow.assets`). ``()`` for an operator whose
    #: tasks should not produce events unless asked to.
    default_outlets: ClassVar[tuple[Any, ...]] = DEFAULT_OUTLETS

    def __init__(
        self,
        *,
        truto_conn_id: str = TrutoHook.default_conn_name,
        response_format: Any = None,
        ignore_remote_data: Any = None,
        exclude_fields: Any = None,
        remote_query: Any = None,
        hook_params: Mapping[str, Any] | None = None,
        outlets: Any = None,  # asset events; None: default_outlets
        **kwargs: Any,
    ) -> None:
        if outlets is None:
            outlets = list(self.default_outlets)
        super().__init__(outlets=outlets, **kwargs)
        self.truto_conn_id = truto_conn_id
        self.response_format = response_format
        self.ignore_remote_data = ignore_remote_data
        self.exclude_fields = exclude_fields
        self.remote_query = remote_query
        self.hook_params = dict(hook_params or {})

    @cached_property
    def hook(self) -> TrutoHook:
        """The hook this task uses (override :meth:`get_hook` to customise it)."""
        return self.get_hook()

    def get_hook(self) -> TrutoHook:
        """Build the :class:`TrutoHook` (no I/O happens here)."""
        return TrutoHook(truto_conn_id=self.truto_conn_id, **self.hook_params)

    def on_kill(self) -> None:
        """Close the hook's connection pool so an in-flight request is abandoned."""
        hook = self.__dict__.get("hook")
        if hook is not None:
            hook.close()

    def response_options(self) -> ResponseShapeArgs:
        """The rendered response options, unset ones as ``None`` (validated by the hook)."""
        return {
            "response_format": blank_to_none(self.response_format),
            "ignore_remote_data": blank_to_none(self.ignore_remote_data),
            "exclude_fields": blank_to_none(self.exclude_fields),
            "remote_query": rendered_mapping("remote_query", self.remote_query),
        }


@dataclass(frozen=True)
class SafetyOptions:
    """The rendered data-safety options of one write task, and its preflight."""

    policy: UnsupportedFieldsPolicy
    skip_unchanged: bool
    dry_run: bool
    preflight: Preflight


class TrutoWriteOperator(TrutoBaseOperator):
    """An operator that writes opportunities: a default account and the data-safety options.

    :param integrated_account_id: the account to write to (rows may name their own); defaults to
        the connection's ``integrated_account_id`` extra. (templated)
    :param unsupported_fields: what to do with a field the account's CRM does not apply (per
        Truto's docs): ``"error"`` (default: refuse before writing), ``"warn"`` (log and write)
        or ``"ignore"``. See docs/data_safety.md. (templated)
    :param integration: the CRM (``"hubspot"``, ``"Pipedrive"`` ...); by default read from
        ``GET /integrated-account/{id}``. (templated)
    :param skip_unchanged: read the current state first and send only the fields that differ.
        (templated)
    :param dry_run: validate, preflight, read and diff, send no write. Stored as
        :attr:`plan_only`, because ``BaseOperator.dry_run()`` is a method. (templated)
    """

    def __init__(
        self,
        *,
        integrated_account_id: Any = None,
        unsupported_fields: Any = "error",
        integration: Any = None,
        skip_unchanged: Any = False,
        dry_run: Any = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.integrated_account_id = integrated_account_id
        self.unsupported_fields = unsupported_fields
        self.integration = integration
        self.skip_unchanged = skip_unchanged
        self.plan_only = dry_run

    def run_identity(self, context: Mapping[str, Any]) -> RunIdentity:
        """Where this task's writes happen, for their Idempotency-Keys (``idempotency.py``)."""
        return RunIdentity.from_context(context, dag_id=self.dag_id, task_id=self.task_id)

    def dry_run_flag(self) -> bool:
        """The rendered ``dry_run`` option (a value that is not a flag is refused)."""
        return coerce_flag("dry_run", blank_to_none(self.plan_only))

    def safety_options(self) -> SafetyOptions:
        """Read the rendered data-safety options (refusing bad ones) and build the preflight."""
        policy = validate_policy(blank_to_none(self.unsupported_fields) or "error")
        integration = blank_to_none(self.integration)
        return SafetyOptions(
            policy=policy,
            skip_unchanged=coerce_flag("skip_unchanged", blank_to_none(self.skip_unchanged)),
            dry_run=self.dry_run_flag(),
            preflight=Preflight(
                policy=policy,
                integration=None if integration is None else str(integration),
                hook=self.hook,
                logger=self.log,
            ),
        )
