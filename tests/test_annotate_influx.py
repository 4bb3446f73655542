"""Annotations as InfluxDB points, written to and read back from a real influxd."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sensord import annotate as an
from sensord.notebook import NoteBook, parse_record
from sensord.store.local import LocalStore
from sensord.store.sender import Sender
from sensord.store.sinks import Influx1Sink
from tests.influx import InfluxDB

TZ = "Europe/Berlin"
NOW = int(dt.datetime(2026, 11, 25, 7, 0, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
TRICKY = 'he said "no"\nsecond line, comma, = sign \\ backslash 😴🌙'


def all_kinds() -> list[an.Annotation]:
    return [
        an.pain(
            7, "bedtime", at="22:40", body_site=TRICKY, descriptors="burning", now_ns=NOW, tz=TZ
        ),
        an.substance(
            "kratom", dose=3, unit="g", form="powder", at="21:30", note=TRICKY, now_ns=NOW, tz=TZ
        ),
        an.substance("Blue lotus tea", dose=1, unit="cups", note="", now_ns=NOW, tz=TZ),
        an.diary(
            in_bed="22:50",
            tried_sleep="23:10",
            sol_min=25,
            awakenings=2,
            waso_min=40,
            final_wake="06:20",
            out_of_bed="06:45",
            quality=2,
            rested=3,
            comments=TRICKY,
            now_ns=NOW,
            tz=TZ,
        ),
        an.event(TRICKY, at="03:05", now_ns=NOW, tz=TZ),
    ]


def ship(book: NoteBook, influxdb: InfluxDB) -> None:
    """Send the outbox to the test database the way the daemon does."""
    sink = Influx1Sink(influxdb.url, influxdb.name, gzip_body=False)
    report = Sender(book.store, sink).flush()
    assert report.finished, report.last_error
    assert book.store.stats().quarantined == 0


def read_back(influxdb: InfluxDB) -> tuple[list[an.Annotation], list[dict[str, object]]]:
    rows = influxdb.rows("annotation")
    live = [parse_record(str(r["record"])) for r in rows if not r["deleted"]]
    return sorted(live, key=lambda a: a.id), rows


def test_every_kind_round_trips_through_influxdb(influxdb: InfluxDB, tmp_path: Path) -> None:
    records = all_kinds()
    book = NoteBook(LocalStore(tmp_path / "s.sqlite"), "P07 ü", owns_store=True)
    book.append(records)
    assert sorted(book.history(), key=lambda a: a.id) == sorted(records, key=lambda a: a.id)
    ship(book, influxdb)
    back, rows = read_back(influxdb)
    assert back == sorted(records, key=lambda a: a.id)
    by_kind = {r["kind"]: r for r in rows}
    assert set(by_kind) == {"pain", "substance", "diary", "event"}
    assert {r["participant"] for r in rows} == {"P07 ü"}
    # Grafana's columns: text and tags; the diary is a region into bed -> out of bed.
    assert by_kind["event"]["note"] == TRICKY
    assert by_kind["pain"]["pain_nrs"] == 7 and by_kind["pain"]["pain_when"] == "bedtime"
    diary = records[3].payload
    assert isinstance(diary, an.Diary)
    assert by_kind["diary"]["end_ns"] == diary.out_of_bed_ns
    assert by_kind["diary"]["time"] // 1_000_000 == diary.in_bed_ns // 1_000_000
    assert by_kind["diary"]["tst_min"] == 365.0  # 430 min window - 25 SOL - 40 WASO
    free = [r for r in rows if r["kind"] == "substance" and r["curated"] is False]
    assert [r["substance"] for r in free] == ["blue lotus tea"]


def test_edits_and_deletions_take_points_out_of_force(influxdb: InfluxDB, tmp_path: Path) -> None:
    history = all_kinds()
    book = NoteBook(LocalStore(tmp_path / "s.sqlite"), "p1", owns_store=True)
    book.append(history)
    later = NOW + 60_000_000_000
    pain = history[0]
    edited = an.edit(history, pain, {"rating": 5}, now_ns=later)  # same time: same point
    history.append(edited)
    moved = an.edit(history, history[1], {"at": "20:15"}, now_ns=later)  # new time
    history.append(moved)
    gone = an.delete(history, history[4], now_ns=later)
    history.append(gone)
    book.append([edited, moved, gone])
    ship(book, influxdb)
    assert book.history() == sorted(history, key=lambda a: (a.recorded_ns, a.id))
    back, rows = read_back(influxdb)
    assert back == sorted(an.current(history), key=lambda a: a.id)
    deleted = sorted((r["kind"], r["id"]) for r in rows if r["deleted"])
    # the pain rating and the substance were replaced, the event withdrawn
    assert deleted == sorted(
        [("pain", pain.id), ("substance", history[1].id), ("event", history[4].id)]
    )
    live = [r for r in rows if not r["deleted"]]
    assert len(live) == 4 and {r["id"] for r in live} == {a.id for a in an.current(history)}
    # the local store's own "deleted" column agrees with the folded history
    in_force = book.store.list_annotations("p1")
    assert sorted(r["id"] for r in in_force) == sorted(a.id for a in an.current(history))


def test_the_documented_grafana_annotation_query(influxdb: InfluxDB, tmp_path: Path) -> None:
    """docs/annotate.md's InfluxQL annotation query returns the records in force."""
    history = all_kinds()
    book = NoteBook(LocalStore(tmp_path / "s.sqlite"), "P 1", owns_store=True)
    book.append(history)
    gone = an.delete(history, history[4], now_ns=NOW + 10**9)
    book.append([gone])
    ship(book, influxdb)
    q = (
        'SELECT "text", "tags" FROM "annotation" '
        'WHERE "participant" = \'P 1\' AND "deleted" = false '
        "AND time > '2026-11-24T00:00:00Z' AND time < '2026-11-26T00:00:00Z'"
    )
    rows = influxdb.query(q).rows()
    live = an.current([*history, gone])
    assert sorted(r["text"] for r in rows) == sorted(an.summary(a) for a in live)
    assert {r["tags"] for r in rows} == {
        "pain,bedtime", "substance,kratom", "substance,other,blue lotus tea", "diary"
    }  # fmt: skip
