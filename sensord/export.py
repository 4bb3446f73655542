"""Export epochs, nights and annotations as CSV or JSON lines for analysis elsewhere.

Three files per export: ``annotations``, ``nights`` and ``epochs`` (``.csv`` or
``.jsonl``). Annotations are the whole append-only history (``action``/``ref`` tell edits
and deletions) with an ``in_force`` column, so an analysis can use the current view or
audit the changes. CSV cells hold text exactly (newlines quoted per RFC 4180); JSON lines
keep non-ASCII characters as they are.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sensord import annotate as an
from sensord.errors import ConfigError
from sensord.privacy import Deidentifier, deidentify_records

FORMATS = ("csv", "jsonl")


def annotation_rows(history: Sequence[an.Annotation]) -> list[dict[str, Any]]:
    """Flat rows of every record, oldest entry first, with ``in_force``."""
    live = {a.id for a in an.current(history)}
    rows = []
    for a in sorted(history, key=lambda r: (r.recorded_ns, r.id)):
        row = an.to_fields(a)
        row["in_force"] = a.id in live
        rows.append(row)
    return rows


def epoch_rows(
    night: Mapping[str, Any], epochs: Mapping[str, Sequence[Any]]
) -> list[dict[str, Any]]:
    """One row per epoch from a night's stored epoch columns."""
    cols = {k: list(v) for k, v in epochs.items()}
    n = max((len(v) for v in cols.values()), default=0)
    base = {
        "participant": night.get("participant"),
        "night": night["night"],
        "scorer": night.get("scorer"),
    }
    return [base | {k: (v[i] if i < len(v) else None) for k, v in cols.items()} for i in range(n)]


def _cell(v: object) -> object:
    if isinstance(v, list | tuple):
        return ",".join(str(x) for x in v)
    if v is None:
        return ""
    return v


def write_rows(rows: Iterable[Mapping[str, Any]], path: Path, fmt: str) -> int:
    """Write rows as CSV (union of keys as header, first-seen order) or JSON lines."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected csv or jsonl", key="format")
    rows = list(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        with path.open("w", encoding="utf-8", newline="\n") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n")
        return len(rows)
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(keys))
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in r.items()})
    return len(rows)


def deidentify_tables(
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    deid: Deidentifier,
    *,
    participant: str,
    tz: str,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """De-identify each export table (see :func:`sensord.privacy.deidentify_records`).

    Rows without a ``participant`` (annotations) get the exporting participant's first.
    Returns the tables and the manifest: per table what was dropped, plus the method;
    never the secret, the offsets or an original value.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    per_table: dict[str, Any] = {}
    method: dict[str, str] = {}
    for name, rows in tables.items():
        full = [{"participant": participant, **r} for r in rows]
        clean, manifest = deidentify_records(full, deid, tz_by_participant={participant: tz})
        out[name] = clean
        summary = manifest.as_dict()
        method = summary.pop("method")
        per_table[name] = summary
    return out, {"deidentified": True, "method": method, "tables": per_table}
