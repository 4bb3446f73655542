"""Annotations as InfluxDB points: one point per annotation, shaped for Grafana.

Pure mapping from the append-only records of :mod:`sensord.annotate` to
``annotation`` points of :mod:`sensord.store.schema`:

* the point's ``id`` is the id of the chain's first record, so an edit overwrites the
  point it replaces (same participant, kind and time) and a deletion overwrites it with
  ``deleted=true``; if an edit moves the time, the old point gets ``deleted=true`` too;
* time is the annotation's time (a diary: time into bed, with ``end_ns`` = out of bed, so
  Grafana draws the night as a region) plus the id-derived sub-millisecond offset of
  :func:`sensord.store.schema.annotation_time_ns`;
* ``text`` and ``tags`` are what Grafana shows; ``record`` carries the full record as
  JSON so a reader can rebuild exactly what the participant entered.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sensord import annotate as an
from sensord.store import schema
from sensord.store.lineproto import schema_line

PAIN_WHEN = {"bedtime": "bedtime", "night_waking": "night", "morning": "morning", "other": "other"}


def chain_root(by_id: dict[str, an.Annotation], record: an.Annotation) -> str:
    """Id of the first record of ``record``'s edit chain."""
    seen = set()
    while record.ref and record.ref in by_id and record.ref not in seen:
        seen.add(record.ref)
        record = by_id[record.ref]
    return record.ref or record.id


def point_time_ns(a: an.Annotation) -> int:
    """The instant a point is drawn at before the id offset (diary: time into bed)."""
    return a.payload.in_bed_ns if isinstance(a.payload, an.Diary) else a.t_ns


def record_json(a: an.Annotation) -> str:
    """The record as compact JSON (keys sorted; non-ASCII kept as is)."""
    return json.dumps(an.to_fields(a), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def parse_record(text: str) -> an.Annotation:
    """Inverse of :func:`record_json` (checks the content id)."""
    return an.from_fields(json.loads(text))


def annotation_fields(a: an.Annotation, root_id: str, *, deleted: bool) -> dict[str, Any]:
    """Schema fields of one annotation point (``None`` = field absent)."""
    p = a.payload
    f: dict[str, Any] = {
        "id": root_id,
        "text": an.summary(a),
        "night": a.night,
        "recorded_ns": a.recorded_ns,
        "record": record_json(a),
        "deleted": deleted,
    }
    if isinstance(p, an.Pain):
        f |= {
            "tags": f"pain,{p.context}",
            "pain_nrs": p.rating_nrs,
            "pain_when": PAIN_WHEN[p.context],
            "body_site": p.body_site or None,
            "descriptors": ",".join(p.descriptors) or None,
        }
    elif isinstance(p, an.Substance):
        f |= {
            "tags": f"substance,{p.category},{p.name}",
            "substance": p.name,
            "category": p.category,
            "curated": p.curated,
            "dose": p.dose,
            "dose_unit": p.unit,
            "form": p.form or None,
            "route": p.route or None,
            "note": p.note or None,
        }
    elif isinstance(p, an.Diary):
        m = an.diary_metrics(p)
        f |= {
            "tags": "diary",
            "end_ns": p.out_of_bed_ns,
            "sleep_quality": p.quality_1_5,
            "sleep_rested": p.rested_1_5,
            "sol_min": p.sol_min,
            "waso_min": p.waso_min,
            "awakenings": p.awakenings_n,
            "tst_min": m["tst_min"],
            "note": p.comments or None,
        }
    else:
        f |= {"tags": "event", "note": p.text}
    return f


def annotation_lines(
    history: Sequence[an.Annotation], new: Iterable[an.Annotation], participant: str
) -> list[str]:
    """Line-protocol lines for ``new`` records (already appended to ``history``)."""
    by_id = {a.id: a for a in history}
    for a in new:
        by_id.setdefault(a.id, a)
    lines: list[str] = []
    for a in new:
        root = chain_root(by_id, a)
        tags = {"participant": participant, "kind": a.kind}
        if a.action == "create":
            t = point_time_ns(a)
            lines.append(
                schema_line(
                    schema.ANNOTATION.name,
                    tags,
                    annotation_fields(a, root, deleted=False),
                    schema.annotation_time_ns(t, root),
                )
            )
            continue
        old = by_id.get(a.ref)
        if a.action == "delete" or (old is not None and point_time_ns(old) != point_time_ns(a)):
            gone = old if old is not None else a
            lines.append(
                schema_line(
                    schema.ANNOTATION.name,
                    tags,
                    annotation_fields(gone, root, deleted=True)
                    | {"record": record_json(a if a.action == "delete" else gone)},
                    schema.annotation_time_ns(point_time_ns(gone), root),
                )
            )
        if a.action == "edit":
            lines.append(
                schema_line(
                    schema.ANNOTATION.name,
                    tags,
                    annotation_fields(a, root, deleted=False),
                    schema.annotation_time_ns(point_time_ns(a), root),
                )
            )
    return lines
