"""Pydantic models of Truto objects and request options."""

from __future__ import annotations

from truto_airflow.models.opportunity import (
    IdRef,
    Opportunity,
    OpportunityUpdate,
    StageRef,
    TagRef,
    UrlRef,
    parse_update_body,
)
from truto_airflow.models.options import ResponseFormat

__all__ = [
    "IdRef",
    "Opportunity",
    "OpportunityUpdate",
    "ResponseFormat",
    "StageRef",
    "TagRef",
    "UrlRef",
    "parse_update_body",
]
