"""The schema: names, vocabularies, validation and the generated table in docs/storage.md."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from sensord.store import schema
from sensord.store.schema import SchemaError, annotation_time_ns, check_point

ROOT = Path(__file__).resolve().parents[1]


def test_docs_table_in_sync_with_schema() -> None:
    doc = (ROOT / "docs" / "storage.md").read_text(encoding="utf-8")
    assert schema.render_into(doc) == doc, "run: python tools/schema_doc.py"
    for m in schema.MEASUREMENTS:
        assert f"### `{m.name}`" in doc
        for name in m.tag_names + m.field_names:
            assert f"| `{name}` |" in doc


def test_names_are_plain_snake_case_and_unambiguous() -> None:
    plain = re.compile(r"[a-z][a-z0-9_]*")
    assert len({m.name for m in schema.MEASUREMENTS}) == len(schema.MEASUREMENTS)
    for m in schema.MEASUREMENTS:
        assert plain.fullmatch(m.name)
        keys = m.tag_names + m.field_names
        assert len(set(keys)) == len(keys), m.name  # no tag/field key used twice
        assert "time" not in keys  # InfluxDB reserves it
        for k in keys:
            assert plain.fullmatch(k), k


def test_tags_are_only_the_low_cardinality_ones() -> None:
    allowed = {"participant", "device_role", "scorer", "kind"}
    for m in schema.MEASUREMENTS:
        assert set(m.tag_names) <= allowed, m.name
    # free text lives in fields
    assert schema.ANNOTATION.field("note").type is schema.FieldType.STRING
    assert schema.ANNOTATION.field("substance").type is schema.FieldType.STRING


def test_check_point_accepts_valid_point() -> None:
    m = check_point(
        "epoch",
        {"participant": 'P 01, "x"=y', "scorer": "hr-motion-lr@0.3.1"},
        {"stage": "rem", "stage_code": 3, "p_rem": 0.7, "final": False},
    )
    assert m is schema.EPOCH
    # numpy scalars are numbers too
    check_point(
        "heart_rate",
        {"participant": "p1", "device_role": "chest"},
        {"hr_bpm": np.float64(61.0), "contact": np.bool_(True)},
    )
    check_point(
        "device_battery",
        {"participant": "p", "device_role": "wrist"},
        {"battery_pct": np.int64(80)},
    )


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "where", "fragment"),
    [
        ("hr", {}, {"x": 1.0}, "hr", "unknown measurement"),
        (
            "heart_rate",
            {"participant": "p"},
            {"hr_bpm": 1.0},
            "heart_rate.device_role",
            "missing tag",
        ),
        (
            "heart_rate",
            {"participant": "p", "device_role": "knee"},
            {"hr_bpm": 1.0},
            "heart_rate.device_role",
            "must be one of",
        ),
        (
            "heart_rate",
            {"participant": "p", "device_role": "chest", "note": "x"},
            {"hr_bpm": 1.0},
            "heart_rate.note",
            "unknown tag",
        ),
        (
            "heart_rate",
            {"participant": "p", "device_role": "chest"},
            {"bpm": 1.0},
            "heart_rate.bpm",
            "unknown field",
        ),
        (
            "heart_rate",
            {"participant": "p", "device_role": "chest"},
            {"hr_bpm": "60"},
            "heart_rate.hr_bpm",
            "expected float",
        ),
        (
            "heart_rate",
            {"participant": "p", "device_role": "chest"},
            {"hr_bpm": float("nan")},
            "heart_rate.hr_bpm",
            "non-finite",
        ),
        (
            "heart_rate",
            {"participant": "p", "device_role": "chest"},
            {"hr_bpm": True},
            "heart_rate.hr_bpm",
            "expected float",
        ),
        (
            "device_battery",
            {"participant": "p", "device_role": "chest"},
            {"battery_pct": 2.5},
            "device_battery.battery_pct",
            "expected integer",
        ),
        (
            "device_battery",
            {"participant": "p", "device_role": "chest"},
            {"battery_pct": 2**63},
            "device_battery.battery_pct",
            "int64",
        ),
        (
            "epoch",
            {"participant": "p", "scorer": "bad scorer"},
            {"stage": "rem"},
            "epoch.scorer",
            "must match",
        ),
        (
            "epoch",
            {"participant": "p\nq", "scorer": "s"},
            {"stage": "rem"},
            "epoch.participant",
            "control characters",
        ),
        (
            "epoch",
            {"participant": "p\\", "scorer": "s"},
            {"stage": "rem"},
            "epoch.participant",
            "end with a backslash",
        ),
        (
            "epoch",
            {"participant": "", "scorer": "s"},
            {"stage": "rem"},
            "epoch.participant",
            "non-empty",
        ),
        ("epoch", {"participant": "p", "scorer": "s"}, {}, "epoch", "at least one field"),
    ],
)
def test_check_point_names_what_and_where(measurement, tags, fields, where, fragment) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SchemaError) as info:
        check_point(measurement, tags, fields)
    assert str(info.value).startswith(where + ":")
    assert fragment in str(info.value)


def test_annotation_time_uses_fnv1a_test_vectors() -> None:
    # FNV-1a 64-bit published vectors (Fowler/Noll/Vo test suite):
    #   "" -> 0xcbf29ce484222325, "a" -> 0xaf63dc4c8601ec8c, "foobar" -> 0x85944171f73967e8
    t = 1_700_000_000_123_456_789
    base = 1_700_000_000_123_000_000
    assert annotation_time_ns(t, "") == base + 0xCBF29CE484222325 % 1_000_000
    assert annotation_time_ns(t, "a") == base + 0xAF63DC4C8601EC8C % 1_000_000
    assert annotation_time_ns(t, "foobar") == base + 0x85944171F73967E8 % 1_000_000
    # same id -> same point; another id at the same instant -> another point, same ms
    assert annotation_time_ns(t, "x1") == annotation_time_ns(t + 5, "x1")
    assert annotation_time_ns(t, "x1") != annotation_time_ns(t, "x2")
    assert annotation_time_ns(t, "x1") // 1_000_000 == t // 1_000_000


def test_stage_codes_cover_stages() -> None:
    assert set(schema.STAGE_CODES) == set(schema.STAGES)
    assert len(set(schema.STAGE_CODES.values())) == len(schema.STAGES)
