#!/usr/bin/env python3
"""Generate ``truto_airflow/data/opportunity_update_capabilities.json`` from Truto's docs page.

The page ``PATCH /unified/crm/opportunities/{id}`` carries, per body field, a table of the CRMs
that support it (and the ones that *require* it) plus, for ``status``, each CRM's allowed values.
That table is the only documented source of per-CRM write behaviour, so it is parsed rather than
retyped: re-running this script on the same page must reproduce the committed JSON byte for byte
(a unit test checks it), and a docs change shows up as a reviewable diff.

The stored page is text scraped from HTML, so adjacent elements are glued together
(``accountobject``, ``14 supported1 required``, ``openwonlostdeleted``). The parser therefore:

* reads only the "Request Body" section (up to "Response Body");
* treats a line ``<snake_name><type>`` as a field header; plain ``string`` headers without a
  support count are sub-fields (``account.id``, ``stage.name``) and are skipped;
* checks every parsed support list against the page's own "N supported / M required" counts;
* splits glued ``status`` values with a small vocabulary (:data:`STATUS_VOCABULARY`) and fails if a
  value cannot be split, or if the total differs from the page's "Possible values ... + N more".

Integrations that support opportunity update but appear in no field list (Salesforce, Zoho CRM)
are read from the reference notes (``reference/truto_api.md`` section 3.3) as
``unlisted_integrations``.

The "Response Body" section (up to the code samples) has the same per-field tables, saying which
CRMs *return* each field; it is parsed the same way into ``response_fields`` (the emulator
answers with exactly these fields per CRM).

Usage: ``python scripts/generate_capabilities.py [DOCS_PAGE] [--reference REF] [--output OUT]``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
DEFAULT_DOCS = SHARED / "truto-docs" / "patch-unified-crm-opportunity.txt"
DEFAULT_REFERENCE = SHARED / "reference" / "truto_api.md"
DEFAULT_OUTPUT = REPO_ROOT / "truto_airflow" / "data" / "opportunity_update_capabilities.json"

#: Words used only to split glued status values ("openwonlostdeleted"); the per-CRM mapping
#: itself comes from the page. An unknown word makes the generator fail loudly.
STATUS_VOCABULARY = (
    "abandoned",
    "all",
    "closed",
    "deleted",
    "in_progress",
    "lead",
    "lost",
    "open",
    "pending",
    "suspended",
    "won",
)

_TYPE_SUFFIX = (
    r"(object\[\]|object|number|boolean|integer|string\[\]|string(?: · date-time)?|Record<[^>]*>)?"
)
_HEADER_RE = re.compile(rf"^([a-z][a-z0-9_]*?){_TYPE_SUFFIX}$")
_COUNT_RE = re.compile(r"^(\d+) supported(?:(\d+) required)?$")
_MARKERS = {"supported", "required"}
_UPDATE_LIST_RE = re.compile(
    r"Integrations supporting opportunity update[^:]*:(?P<names>.*?)\.\s*(?:The older|$)",
    re.DOTALL,
)


class DocsFormatError(ValueError):
    """The docs page no longer has the shape this parser understands."""


def slugify(display_name: str) -> str:
    """``"Zendesk Sell"`` -> ``"zendesk_sell"``, ``"OnePageCRM"`` -> ``"onepagecrm"``."""
    return re.sub(r"[^a-z0-9]+", "_", display_name.strip().lower()).strip("_")


def split_status_values(glued: str) -> list[str]:
    """Split ``"leadin_progresswonlost"`` into words of :data:`STATUS_VOCABULARY` (fewest words)."""
    best: list[list[str] | None] = [None] * (len(glued) + 1)
    best[0] = []
    for end in range(1, len(glued) + 1):
        for word in STATUS_VOCABULARY:
            start = end - len(word)
            prefix = best[start] if start >= 0 else None
            if prefix is not None and glued[start:end] == word:
                candidate = [*prefix, word]
                current = best[end]
                if current is None or len(candidate) < len(current):
                    best[end] = candidate
    result = best[len(glued)]
    if result is None:
        raise DocsFormatError(
            f"cannot split status values {glued!r}; extend STATUS_VOCABULARY if the docs added one"
        )
    return result


def _request_body_lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    try:
        start = lines.index("Request Body")
        end = lines.index("Response Body", start)
    except ValueError as exc:
        raise DocsFormatError("page has no 'Request Body' ... 'Response Body' section") from exc
    return [line for line in lines[start + 1 : end] if line]


def _response_body_lines(text: str) -> list[str]:
    """From "Response Body" up to the first code sample (``curl -X ...``)."""
    lines = [line.strip() for line in text.splitlines()]
    try:
        start = lines.index("Response Body")
    except ValueError as exc:
        raise DocsFormatError("page has no 'Response Body' section") from exc
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("curl ")), None)
    if end is None:
        raise DocsFormatError("cannot find the end of the 'Response Body' section")
    return [line for line in lines[start + 1 : end] if line]


def _split_blocks(lines: list[str]) -> list[tuple[str, str, list[str]]]:
    """Group lines into ``(name, type, body_lines)`` blocks, one per header line."""
    blocks: list[tuple[str, str, list[str]]] = []
    for line in lines:
        match = _HEADER_RE.match(line)
        if match and line not in _MARKERS and not _looks_like_status_values(line, blocks):
            blocks.append((match.group(1), match.group(2) or "", []))
        elif blocks:
            blocks[-1][2].append(line)
    return blocks


def _looks_like_status_values(line: str, blocks: list[tuple[str, str, list[str]]]) -> bool:
    # Inside the ``status`` table a CRM's glued values ("openwonlostdeleted") follow its
    # "supported" marker and look like a type-less header; a real next field has a type.
    match = _HEADER_RE.match(line)
    return (
        bool(blocks)
        and blocks[-1][0] == "status"
        and blocks[-1][2][-1:] == ["supported"]
        and match is not None
        and not match.group(2)
    )


#: (supported, required, status values per CRM, display names) of one field's table.
_Support = tuple[list[str], list[str], dict[str, list[str]], dict[str, str]]


def _parse_support(name: str, body: list[str]) -> _Support | None:
    count_index = next((i for i, line in enumerate(body) if _COUNT_RE.match(line)), None)
    if count_index is None:
        return None
    count = _COUNT_RE.match(body[count_index])
    assert count is not None
    n_supported, n_required = int(count.group(1)), int(count.group(2) or 0)
    supported: list[str] = []
    required: list[str] = []
    status_values: dict[str, list[str]] = {}
    display: dict[str, str] = {}
    rest = body[count_index + 1 :]
    i = 0
    while i + 1 < len(rest) and rest[i + 1] in _MARKERS:
        display_name, marker = rest[i], rest[i + 1]
        slug = slugify(display_name)
        display[slug] = display_name
        supported.append(slug)
        if marker == "required":
            required.append(slug)
        i += 2
        # In the status table a CRM may be followed by its glued values line; the next CRM's
        # name is recognisable because a marker line follows it.
        is_values = i < len(rest) and (i + 1 >= len(rest) or rest[i + 1] not in _MARKERS)
        if name == "status" and is_values and rest[i] not in _MARKERS:
            status_values[slug] = split_status_values(rest[i])
            i += 1
    if len(supported) != n_supported or len(required) != n_required:
        raise DocsFormatError(
            f"field {name!r}: page says {n_supported} supported / {n_required} required, "
            f"parsed {len(supported)} / {len(required)}"
        )
    return supported, required, status_values, display


def _check_status_total(body: list[str], status_values: dict[str, list[str]]) -> None:
    try:
        start = body.index("Possible values:")
    except ValueError:
        return
    more = re.search(r"\+ (\d+) more$", body[start + 1])
    shown = body[start + 1].split("+")[0]
    total = sum(len(v) for v in status_values.values())
    expected = len(split_status_values(shown)) + (int(more.group(1)) if more else 0)
    if total != expected:
        raise DocsFormatError(f"status: page lists {expected} values in total, parsed {total}")


def _field_tables(lines: list[str]) -> Iterator[tuple[str, str, list[str], _Support | None]]:
    """``(name, type, body, support)`` per top-level field of a section; ``support`` is None
    for a field without a table (the passthrough). Sub-fields (``account.id``) are skipped."""
    for name, type_, body in _split_blocks(lines):
        parsed = _parse_support(name, body)
        if parsed is None and type_ in ("", "string"):
            continue  # a sub-field such as account.id, stage.name or urls.url
        yield name, type_, body, parsed


def parse_response(text: str) -> dict[str, Any]:
    """Per response field: the CRMs that return it (``None``: every CRM, the passthrough)."""
    fields: dict[str, Any] = {}
    for name, type_, _, parsed in _field_tables(_response_body_lines(text)):
        returned_by = None if parsed is None else sorted(parsed[0])
        fields[name] = {"type": type_ or None, "returned_by": returned_by}
    if "id" not in fields:
        raise DocsFormatError("no 'id' field in the Response Body section")
    return fields


def parse_docs(text: str) -> dict[str, Any]:
    """Parse the page text into the capabilities document (see module docstring)."""
    fields: dict[str, Any] = {}
    status_values: dict[str, list[str]] = {}
    display: dict[str, str] = {}
    for name, type_, body, parsed in _field_tables(_request_body_lines(text)):
        if parsed is None:
            # A top-level field without a support table: the remote_data passthrough.
            fields[name] = {"type": type_, "supported": None, "required": [], "passthrough": True}
            continue
        supported, required, values, names = parsed
        fields[name] = {
            "type": type_ or None,
            "supported": sorted(supported),
            "required": sorted(required),
            "passthrough": False,
        }
        display.update(names)
        if name == "status":
            status_values = values
            _check_status_total(body, values)
    if not fields:
        raise DocsFormatError("no body fields found")
    return {
        "fields": fields,
        "status_values": status_values,
        "display_names": display,
        "response_fields": parse_response(text),
    }


def parse_unlisted(reference_text: str, listed: set[str]) -> dict[str, str]:
    """Integrations the reference says support update but that no field list mentions."""
    match = _UPDATE_LIST_RE.search(reference_text)
    if match is None:
        raise DocsFormatError("reference has no 'Integrations supporting opportunity update' list")
    names = [n.strip().strip("*").strip() for n in match.group("names").split(",")]
    return {slugify(n): n for n in names if n and slugify(n) not in listed}


def build(docs_text: str, reference_text: str) -> dict[str, Any]:
    doc = parse_docs(docs_text)
    listed = set(doc["display_names"])
    unlisted = parse_unlisted(reference_text, listed)
    doc["display_names"].update(unlisted)
    doc["unlisted_integrations"] = sorted(unlisted)
    doc["source"] = {
        "docs": "truto-docs/patch-unified-crm-opportunity.txt (Request and Response Body)",
        "unlisted": "reference/truto_api.md section 3.3",
    }
    return doc


def render(doc: dict[str, Any]) -> str:
    """Deterministic JSON: sorted keys, indent 2, trailing newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("docs", nargs="?", type=Path, default=DEFAULT_DOCS)
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if OUTPUT is out of date")
    args = parser.parse_args(argv)
    text = render(
        build(args.docs.read_text(encoding="utf-8"), args.reference.read_text(encoding="utf-8"))
    )
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; re-run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
