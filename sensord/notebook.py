"""The participant's notebook: annotation records in the local store and InfluxDB.

Every append-only record of :mod:`sensord.annotate` (create, edit, delete) is one row of
the local store's ``annotations`` table, keyed by the record's id, holding the schema
fields of an ``annotation`` point plus ``record``, the full record as JSON, from which
the history is rebuilt exactly. Storing a row also queues its InfluxDB point in the
outbox (same transaction), so annotations reach InfluxDB the way everything else does.

Shape in InfluxDB (see ``docs/annotate.md``): one point per record in force; when an edit
or a deletion takes a record out of force, its row and point are rewritten with
``deleted=true`` (``LocalStore.delete_annotation``). The deletion record itself is kept
locally only. A diary point is drawn from time into bed with ``end_ns`` = out of bed, so
Grafana shows the night as a region. The row's ``deleted`` column therefore means "not in
force"; the history itself never depends on it (``annotate.current`` folds the records).

Edits touch two rows in two transactions (new record, then the old one marked deleted):
a crash in between leaves both points live in InfluxDB until the next edit, but the local
history, and everything computed from it, is still right.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sensord import annotate as an
from sensord.config import Config
from sensord.store.local import LocalStore

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
            "tags": ",".join(dict.fromkeys(("substance", p.category, p.name.replace(",", " ")))),
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


def store_row(a: an.Annotation, participant: str, *, deleted: bool = False) -> dict[str, Any]:
    """The local-store row (and InfluxDB point fields) of one record."""
    row = annotation_fields(a, a.id, deleted=deleted)
    row |= {"participant": participant, "kind": a.kind, "t_ns": point_time_ns(a)}
    return {k: v for k, v in row.items() if v is not None}


class NoteBook:
    """A participant's annotations in a :class:`~sensord.store.local.LocalStore`."""

    def __init__(self, store: LocalStore, participant: str, *, owns_store: bool = False):
        self.store = store
        self.participant = participant
        self._owns = owns_store

    def history(self) -> list[an.Annotation]:
        """Every record ever appended (creates, edits, deletions), in entry order."""
        rows = self.store.list_annotations(self.participant, include_deleted=True)
        records = [parse_record(str(r["record"])) for r in rows if "record" in r]
        return sorted(records, key=lambda a: (a.recorded_ns, a.id))

    def append(self, records: Sequence[an.Annotation]) -> None:
        """Store new records; take replaced or withdrawn ones out of force."""
        for a in records:
            if a.action == "create":
                self.store.add_annotation(store_row(a, self.participant))
            elif a.action == "edit":
                self.store.add_annotation(store_row(a, self.participant))
                self.store.delete_annotation(a.ref)
            else:
                self.store.add_annotation(store_row(a, self.participant, deleted=True), queue=False)
                self.store.delete_annotation(a.ref)

    def close(self) -> None:
        if self._owns:
            self.store.close()


def open_book(cfg: Config) -> NoteBook:
    """The notebook of the configured participant in the configured local store."""
    cfg.ensure_data_dir()
    return NoteBook(LocalStore(cfg.outbox_path), cfg.participant_id, owns_store=True)
