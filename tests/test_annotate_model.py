"""Annotation model: validation, time handling, night assignment, append-only history.

Expected instants are computed independently with ``datetime`` on fixed UTC offsets
(Europe/Berlin is UTC+1 in November, UTC+2 in summer), not with the code under test.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from sensord import annotate as an
from sensord.errors import AnnotationError

TZ = "Europe/Berlin"
UTC = dt.UTC


def ns(*args: int) -> int:
    """UTC ns of a UTC wall time."""
    return int(dt.datetime(*args, tzinfo=UTC).timestamp()) * 1_000_000_000


# Wednesday 2026-11-25 08:00 in Berlin (CET, UTC+1) = 07:00 UTC.
NOW = ns(2026, 11, 25, 7, 0)


def field_of(excinfo: pytest.ExceptionInfo[AnnotationError]) -> str:
    return excinfo.value.field


# ----------------------------------------------------------------------------- time
def test_clock_time_resolves_to_its_latest_past_occurrence() -> None:
    # 22:40 Berlin on the 24th = 21:40 UTC; 07:30 Berlin today = 06:30 UTC.
    assert an.resolve_time("22:40", now_ns=NOW, tz=TZ) == ns(2026, 11, 24, 21, 40)
    assert an.resolve_time("7:30", now_ns=NOW, tz=TZ) == ns(2026, 11, 25, 6, 30)
    # 08:01 is within the grace of a phone clock that runs a minute ahead.
    assert an.resolve_time("08:01", now_ns=NOW, tz=TZ) == ns(2026, 11, 25, 7, 1)
    # 09:00 has not happened today, so it means yesterday 09:00.
    assert an.resolve_time("09:00", now_ns=NOW, tz=TZ) == ns(2026, 11, 24, 8, 0)
    assert an.resolve_time(None, now_ns=NOW, tz=TZ) == NOW
    assert an.resolve_time("now", now_ns=NOW, tz=TZ) == NOW


def test_full_local_and_offset_times() -> None:
    assert an.resolve_time("2026-11-24 21:30", now_ns=NOW, tz=TZ) == ns(2026, 11, 24, 20, 30)
    assert an.resolve_time("2026-11-24T21:30", now_ns=NOW, tz=TZ) == ns(2026, 11, 24, 20, 30)
    assert an.resolve_time("2026-11-24T21:30:00Z", now_ns=NOW, tz=TZ) == ns(2026, 11, 24, 21, 30)
    # Summer time: 2026-07-01 12:00 Berlin is CEST = 10:00 UTC.
    assert an.resolve_time("2026-07-01 12:00", now_ns=NOW, tz=TZ) == ns(2026, 7, 1, 10, 0)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2026-11-25 09:00", "future"),
        ("2026-12-01T00:00:00Z", "future"),
        ("2024-11-24 21:30", "days ago"),
        ("25:00", "not a valid time"),
        ("half past ten", "expected a time"),
        # Clocks went from 02:00 to 03:00 on 2026-03-29 in Berlin.
        ("2026-03-29 02:30", "does not exist"),
    ],
)
def test_bad_times_name_the_field(text: str, fragment: str) -> None:
    with pytest.raises(AnnotationError) as e:
        an.resolve_time(text, now_ns=NOW, tz=TZ, field="at")
    assert e.value.field == "at"
    assert fragment in str(e.value)


def test_ambiguous_fall_back_time_is_the_first_occurrence() -> None:
    # 2026-10-25 02:30 happens twice in Berlin; the first is CEST (UTC+2) = 00:30 UTC.
    assert an.resolve_time("2026-10-25 02:30", now_ns=NOW, tz=TZ) == ns(2026, 10, 25, 0, 30)


def test_unknown_time_zone() -> None:
    with pytest.raises(AnnotationError) as e:
        an.pain(3, "bedtime", now_ns=NOW, tz="Mars/Olympus")
    assert e.value.field == "tz"


def test_night_assignment() -> None:
    # 23:30 Berlin on the 24th -> night of the 24th; 03:00 on the 25th -> still the 24th.
    assert an.night_of(ns(2026, 11, 24, 22, 30), TZ) == "2026-11-24"
    assert an.night_of(ns(2026, 11, 25, 2, 0), TZ) == "2026-11-24"
    assert an.night_of(ns(2026, 11, 25, 10, 59), TZ) == "2026-11-24"  # 11:59 local
    assert an.night_of(ns(2026, 11, 25, 11, 0), TZ) == "2026-11-25"  # 12:00 local
    # Substances: days start at 06:00, a 10:00 dose belongs to the coming night.
    s = an.substance("caffeine", at="2026-11-25 10:00", now_ns=ns(2026, 11, 25, 12), tz=TZ)
    assert s.night == "2026-11-25"
    s = an.substance("kratom", at="2026-11-25 03:00", now_ns=NOW, tz=TZ)
    assert s.night == "2026-11-24"
    p = an.pain(4, "morning", at="07:45", now_ns=NOW, tz=TZ)
    assert p.night == "2026-11-24"


# ----------------------------------------------------------------------------- pain
def test_pain_record() -> None:
    a = an.pain(
        "6",
        "Night waking",
        at="03:10",
        now_ns=NOW,
        tz=TZ,
        body_site=" left foot ",
        descriptors="Shooting, burning,pins and needles",
    )
    assert a.kind == "pain" and a.action == "create" and a.ref == ""
    assert a.t_ns == ns(2026, 11, 25, 2, 10)
    assert a.recorded_ns == NOW
    assert a.night == "2026-11-24"
    assert a.payload == an.Pain(
        6, "night_waking", "left foot", ("burning", "tingling", "electric_shooting")
    )


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"rating": 11}, "rating", "0-10"),
        ({"rating": -1}, "rating", "0-10"),
        ({"rating": "6.5"}, "rating", "whole number"),
        ({"rating": 6.5}, "rating", "whole number"),
        ({"rating": ""}, "rating", "required"),
        ({"rating": "six"}, "rating", "whole number"),
        ({"rating": True}, "rating", "required"),
        ({"context": "lunchtime"}, "context", "bedtime, night_waking, morning, other"),
        ({"descriptors": "itchy"}, "descriptors", "not one of"),
        ({"body_site": "x" * 81}, "body_site", "at most 80"),
        ({"at": "2026-11-26 01:00"}, "at", "future"),
    ],
)
def test_pain_rejects(kwargs: dict[str, object], field: str, fragment: str) -> None:
    args: dict[str, object] = {"rating": 5, "context": "bedtime"} | kwargs
    with pytest.raises(AnnotationError) as e:
        an.pain(args.pop("rating"), args.pop("context"), now_ns=NOW, tz=TZ, **args)  # type: ignore[arg-type]
    assert e.value.field == field
    assert fragment in str(e.value)
    assert str(e.value).startswith(field + ":")


# ----------------------------------------------------------------------------- substance
def test_substance_aliases_and_free_text() -> None:
    a = an.substance("Coffee", dose="2", unit="cup", form="drink", at="07:00", now_ns=NOW, tz=TZ)
    assert a.payload == an.Substance(
        name="caffeine",
        name_entered="Coffee",
        curated=True,
        category="caffeine",
        dose=2.0,
        unit="cups",
        form="drink",
    )
    k = an.substance(
        "Mitragyna speciosa", dose="3,5", unit="grams", form="powder", now_ns=NOW, tz=TZ
    )
    assert (k.payload.name, k.payload.dose, k.payload.unit) == ("kratom", 3.5, "g")  # type: ignore[union-attr]
    f = an.substance("Ashwagandha", dose=600, unit="mg", route="oral", now_ns=NOW, tz=TZ)
    assert f.payload.curated is False  # type: ignore[union-attr]
    assert f.payload.name == "ashwagandha" and f.payload.category == "other"  # type: ignore[union-attr]
    assert "(not in list)" in an.describe(f)
    assert an.lookup_substance("LYRICA").name == "pregabalin"  # type: ignore[union-attr]
    assert an.lookup_substance("z-drug") is None
    assert an.lookup_substance("Zolpidem").category == "z-drug"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"name": "  "}, "name", "empty"),
        ({"dose": -1, "unit": "g"}, "dose", "greater than 0"),
        ({"dose": 0, "unit": "g"}, "dose", "greater than 0"),
        ({"dose": "lots", "unit": "g"}, "dose", "not a number"),
        ({"dose": "nan", "unit": "g"}, "dose", "finite"),
        ({"dose": 300, "unit": "g"}, "dose", "implausible"),
        ({"dose": 60, "unit": "g"}, "dose", "50000 mg"),  # kratom-specific ceiling
        ({"dose": 3}, "unit", "required"),
        ({"unit": "g"}, "dose", "required"),
        ({"dose": 3, "unit": "bushels"}, "unit", "not a known unit"),
        ({"form": "gas"}, "form", "not one of"),
        ({"route": "ear"}, "route", "not one of"),
        ({"note": "a\x00b"}, "note", "control character"),
        ({"at": "2026-11-25 10:00"}, "at", "future"),
    ],
)
def test_substance_rejects(kwargs: dict[str, object], field: str, fragment: str) -> None:
    args: dict[str, object] = {"name": "kratom"} | kwargs
    with pytest.raises(AnnotationError) as e:
        an.substance(args.pop("name"), now_ns=NOW, tz=TZ, **args)  # type: ignore[arg-type]
    assert e.value.field == field
    assert fragment in str(e.value)


def test_every_unit_bound_is_enforced_and_inclusive() -> None:
    for unit, limit in an.UNITS.items():
        ok = an.substance("ashwagandha", dose=limit, unit=unit, now_ns=NOW, tz=TZ)
        assert ok.payload.dose == limit  # type: ignore[union-attr]
        with pytest.raises(AnnotationError) as e:
            an.substance("ashwagandha", dose=limit * 1.01, unit=unit, now_ns=NOW, tz=TZ)
        assert e.value.field == "dose"


# ----------------------------------------------------------------------------- diary
DIARY = {
    "in_bed": "22:50",
    "tried_sleep": "23:10",
    "sol_min": "25",
    "awakenings": "2",
    "waso_min": "40",
    "final_wake": "06:20",
    "out_of_bed": "06:45",
    "quality": "2",
    "rested": "3",
    "comments": 'woke twice, "burning" feet\nsecond line 😴',
}


def test_diary_record_and_metrics() -> None:
    a = an.diary(now_ns=NOW, tz=TZ, **DIARY)
    assert a.night == "2026-11-24"  # default: last night
    p = a.payload
    assert isinstance(p, an.Diary)
    assert p.in_bed_ns == ns(2026, 11, 24, 21, 50)
    assert p.tried_sleep_ns == ns(2026, 11, 24, 22, 10)
    assert p.final_wake_ns == ns(2026, 11, 25, 5, 20)
    assert p.out_of_bed_ns == ns(2026, 11, 25, 5, 45) == a.t_ns
    assert p.comments == 'woke twice, "burning" feet\nsecond line 😴'
    m = an.diary_metrics(p)
    # TIB 22:50 -> 06:45 = 475 min; window 23:10 -> 06:20 = 430 min; TST = 430 - 25 - 40 = 365.
    assert m["tib_min"] == 475
    assert m["tst_min"] == 365
    assert m["se_pct"] == pytest.approx(100 * 365 / 475)


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"night": "2026-11-25"}, "night", "has not happened yet"),
        ({"night": "yesterday"}, "night", "YYYY-MM-DD"),
        ({"tried_sleep": "22:40"}, "tried_sleep", "before time into bed"),
        ({"out_of_bed": "06:00"}, "out_of_bed", "before final awakening"),
        ({"final_wake": "08:30", "out_of_bed": "08:40"}, "final_wake", "future"),
        ({"sol_min": "500"}, "sol_min", "longer than"),
        ({"sol_min": "-5"}, "sol_min", "negative"),
        ({"waso_min": "420"}, "waso_min", "more than"),
        ({"awakenings": "0"}, "awakenings", "0 awakenings"),
        ({"awakenings": "-1"}, "awakenings", "0-60"),
        ({"quality": "6"}, "quality", "1-5"),
        ({"quality": ""}, "quality", "required"),
        ({"rested": "0"}, "rested", "1-5"),
        ({"in_bed": ""}, "in_bed", "required"),
        ({"in_bed": "23:61"}, "in_bed", "not a valid time"),
    ],
)
def test_diary_rejects(changes: dict[str, str], field: str, fragment: str) -> None:
    with pytest.raises(AnnotationError) as e:
        an.diary(now_ns=NOW, tz=TZ, **(DIARY | changes))  # type: ignore[arg-type]
    assert e.value.field == field
    assert fragment in str(e.value)


def test_diary_for_an_earlier_night() -> None:
    a = an.diary(now_ns=NOW, tz=TZ, **(DIARY | {"night": "2026-11-20"}))
    assert a.night == "2026-11-20"
    assert a.payload.in_bed_ns == ns(2026, 11, 20, 21, 50)  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- event
def test_event_keeps_text_exactly() -> None:
    text = 'woke from pain — "electric" jolts\nthen bathroom 🚽'
    a = an.event(text, at="03:05", now_ns=NOW, tz=TZ)
    assert a.payload == an.Event(text)
    assert a.night == "2026-11-24"
    with pytest.raises(AnnotationError) as e:
        an.event("   ", now_ns=NOW, tz=TZ)
    assert e.value.field == "text"
    with pytest.raises(AnnotationError) as e:
        an.event("x" * 2001, now_ns=NOW, tz=TZ)
    assert e.value.field == "text"


# ----------------------------------------------------------------------------- history
def test_append_only_edit_and_delete() -> None:
    p1 = an.pain(5, "bedtime", at="22:40", now_ns=NOW, tz=TZ)
    e1 = an.event("bathroom", at="02:00", now_ns=NOW, tz=TZ)
    history = [p1, e1]
    later = NOW + 60 * 1_000_000_000
    p2 = an.edit(history, p1, {"rating": "7", "descriptors": "burning"}, now_ns=later)
    assert p2.action == "edit" and p2.ref == p1.id and p2.id != p1.id
    assert p2.payload == an.Pain(7, "bedtime", "", ("burning",))
    assert p2.t_ns == p1.t_ns and p2.recorded_ns == later
    history.append(p2)
    assert an.current(history) == [p2, e1]
    # The replaced record cannot be edited or deleted again.
    with pytest.raises(AnnotationError) as e:
        an.edit(history, p1, {"rating": 1}, now_ns=later)
    assert e.value.field == "id" and p2.id in str(e.value)
    d = an.delete(history, e1, now_ns=later)
    assert d.action == "delete" and d.ref == e1.id and d.payload == e1.payload
    history.append(d)
    assert an.current(history) == [p2]
    with pytest.raises(AnnotationError) as e:
        an.delete(history, e1, now_ns=later)
    assert "deleted" in str(e.value)
    # Nothing was lost: all four records are still there.
    assert len(history) == 4


def test_edit_validates_and_refuses_unknown_or_empty_changes() -> None:
    s = an.substance("kratom", dose=3, unit="g", form="powder", at="21:30", now_ns=NOW, tz=TZ)
    for changes, field in (
        ({"dose": "-2"}, "dose"),
        ({"rating": 3}, "rating"),
        ({}, "changes"),
        ({"dose": 3}, "changes"),
    ):
        with pytest.raises(AnnotationError) as e:
            an.edit([s], s, changes, now_ns=NOW)
        assert e.value.field == field
    moved = an.edit([s], s, {"at": "20:00"}, now_ns=NOW)
    assert moved.t_ns == ns(2026, 11, 24, 19, 0)
    d = an.diary(now_ns=NOW, tz=TZ, **DIARY)
    fixed = an.edit([d], d, {"sol_min": "10", "comments": ""}, now_ns=NOW)
    assert fixed.payload.sol_min == 10 and fixed.payload.comments == ""  # type: ignore[union-attr]
    assert fixed.payload.in_bed_ns == d.payload.in_bed_ns  # type: ignore[union-attr]


def test_ids_are_content_hashes_and_records_round_trip_through_json() -> None:
    a = an.pain(3, "morning", now_ns=NOW, tz=TZ)
    assert a.id == an.pain(3, "morning", now_ns=NOW, tz=TZ).id
    assert a.id != an.pain(4, "morning", now_ns=NOW, tz=TZ).id
    records = [
        a,
        an.substance("alcohol", dose=2, unit="drinks", note='"wine"\n🍷', now_ns=NOW, tz=TZ),
        an.diary(now_ns=NOW, tz=TZ, **DIARY),
        an.event("nightmare 😱", now_ns=NOW, tz=TZ),
    ]
    for r in records:
        back = an.from_fields(json.loads(json.dumps(an.to_fields(r), ensure_ascii=False)))
        assert back == r
    tampered = an.to_fields(a) | {"rating_nrs": 9}
    with pytest.raises(AnnotationError) as e:
        an.from_fields(tampered)
    assert e.value.field == "id"


def test_find_by_prefix() -> None:
    a = an.pain(3, "morning", now_ns=NOW, tz=TZ)
    b = an.pain(4, "morning", now_ns=NOW, tz=TZ)
    assert an.find([a, b], a.id[:6]) == a
    assert an.find([a, b], a.id.upper()) == a
    for bad, fragment in (("zz", "not an annotation id"), ("ffffffff", "no annotation")):
        with pytest.raises(AnnotationError) as e:
            an.find([a, b], bad)
        assert e.value.field == "id" and fragment in str(e.value)


def test_last_doses_for_one_tap_entries() -> None:
    h = [
        an.substance(
            "kratom", dose=3, unit="g", form="powder", at="2026-11-20 21:00", now_ns=NOW, tz=TZ
        ),
        an.substance(
            "kratom", dose=4, unit="g", form="powder", at="2026-11-23 21:00", now_ns=NOW, tz=TZ
        ),
        an.substance("beer", dose=2, unit="drinks", at="2026-11-22 20:00", now_ns=NOW, tz=TZ),
        an.pain(3, "bedtime", now_ns=NOW, tz=TZ),
    ]
    doses = [a.payload for a in an.last_doses(h)]
    assert [(d.name, d.dose) for d in doses] == [("kratom", 4.0), ("alcohol", 2.0)]  # type: ignore[union-attr]


def test_repeated_entry_is_recognised_only_within_seconds() -> None:
    first = an.pain(6, "bedtime", now_ns=NOW, tz=TZ)
    again = an.pain(6, "bedtime", now_ns=NOW + 3 * 10**9, tz=TZ)
    later = an.pain(6, "bedtime", now_ns=NOW + 60 * 10**9, tz=TZ)
    other = an.pain(7, "bedtime", now_ns=NOW + 3 * 10**9, tz=TZ)
    assert again.id != first.id
    assert an.repeated_entry([first], again) == first
    assert an.repeated_entry([first], later) is None
    assert an.repeated_entry([first], other) is None
