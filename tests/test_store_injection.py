"""Hostile text round-trips unchanged through the outbox and a real InfluxDB, and never
creates an extra point, tag or measurement."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sensord.store.local import LocalStore
from sensord.store.schema import SchemaError
from sensord.store.sender import Sender
from sensord.store.sinks import Influx1Sink
from tests.influx import InfluxDB, quote_str

NASTY = [
    "P,1",
    "P=1",
    'P "1"',
    "P'1",
    "P\\1",
    "P 😀",
    "a\\,b",
    "x=y,z=w",
    "P\\ 1",
    "#P1",
    "P\\\\=1",
    " lead",
]
TEXTS = [
    "kratom\nred vein",
    'say "hi"',
    "a,b=c d",
    "back\\slash\\",
    "emoji 😀🌙 ünïcödé",
    "line\r\nbreak\ttab",
    'x" y=1i\nannotation,kind=pain,participant=evil pain_nrs=10i 1',
    '\\"',
    "",
    '=,\\ "',
]


def _alphabet_strings(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = [*list(",= \"'\\\n\r\t#😀é{}[]"), "i", "1", "annotation", "kind=pain"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(n)]


def test_hostile_text_round_trips_and_creates_nothing_extra(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    t0 = 1_764_021_600_000_000_000
    texts = TEXTS + _alphabet_strings(150, seed=1)
    records = []
    with LocalStore(tmp_path / "s.sqlite") as store:
        for i, text in enumerate(texts):
            participant = NASTY[i % len(NASTY)]
            rec = {
                "id": f"id-{i}-{text[:5]}",
                "participant": participant,
                "kind": "substance",
                "t_ns": t0 + i * 60_000_000_000,
                "substance": text,
                "note": text[::-1],
                "text": text,
                "dose": 1.5,
            }
            store.add_annotation(rec)
            records.append(store.get_annotation(rec["id"]))
        # a newline cannot live in a tag: refused with a clear error, nothing queued
        before = store.stats().pending_lines
        with pytest.raises(SchemaError, match=r"annotation\.participant: .*control characters"):
            store.add_annotation({"participant": "P\n1", "kind": "pain", "t_ns": t0, "pain_nrs": 3})
        with pytest.raises(SchemaError, match=r"annotation\.participant: .*backslash"):
            store.add_annotation({"participant": "P1\\", "kind": "pain", "t_ns": t0, "pain_nrs": 3})
        assert store.stats().pending_lines == before == len(texts)
        report = Sender(store, Influx1Sink(influxdb.url, influxdb.name)).flush()
        assert report.finished and report.quarantined == 0

    assert influxdb.measurements() == ["annotation"]
    assert influxdb.tag_keys("annotation") == ["kind", "participant"]
    assert set(influxdb.field_keys("annotation")) == {
        "id",
        "substance",
        "note",
        "text",
        "dose",
        "tags",
    }
    assert influxdb.series_count() == len(NASTY)  # one series per participant, kind fixed
    rows = influxdb.rows("annotation")
    assert len(rows) == len(texts)  # no extra point
    by_id = {r["id"]: r for r in rows}
    for rec in records:
        assert rec is not None
        got = by_id[rec["id"]]
        assert got["participant"] == rec["participant"]
        assert got["substance"] == rec["substance"]
        assert got["note"] == rec["note"]
        assert got["text"] == rec["text"]
        assert got["kind"] == "substance"
    # the values are also queryable by exact match (what a dashboard variable does)
    for p in NASTY:
        n = influxdb.query(
            f"SELECT COUNT(dose) FROM annotation WHERE participant = {quote_str(p)}"
        ).rows()
        assert n and n[0]["count"] == sum(1 for r in records if r and r["participant"] == p)
