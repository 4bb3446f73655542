"""The SQLite local store: outbox order and atomicity, quarantine, migrations, full disk,
annotations and nights for local use."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sensord.errors import StoreError
from sensord.store import local
from sensord.store.local import LocalStore
from sensord.store.schema import SchemaError


def lines(n: int, start: int = 0) -> list[str]:
    return [f"m,p=a v={i}i {i}" for i in range(start, start + n)]


def drain(store: LocalStore, max_lines: int, max_bytes: int = 10**9) -> list[bytes]:
    out = []
    while (b := store.batch(max_lines, max_bytes)) is not None:
        out += b.lines()
        store.accept(b)
    return out


def test_fifo_and_batch_limits(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s.sqlite") as store:
        assert store.add_lines(lines(1200)) == 1200
        assert local.CHUNK_LINES == 1000
        assert store.stats().pending_chunks == 2  # 1000 + 200
        b = store.batch(1100, 10**9)
        assert b is not None and b.n_lines == 1000  # whole chunks only: 1000 + 200 > 1100
        assert b.lines()[0] == b"m,p=a v=0i 0\n"
        store.reject(b, "server down")
        assert store.stats().pending_lines == 1200  # reject keeps everything
        assert store.stats().last_error == "server down"
        got = drain(store, 300)
        assert got == [(s + "\n").encode() for s in lines(1200)]  # order kept, nothing lost
        assert store.stats().pending_lines == 0
        assert store.stats().sent_lines_total == 1200


def test_add_body_chunks_by_lines_and_bytes(tmp_path: Path) -> None:
    body = "".join(s + "\n" for s in lines(2500)).encode()
    with LocalStore(tmp_path / "s.sqlite") as store:
        assert store.add_body(body, source="cols") == 2500
        assert store.stats().pending_chunks == 3
        assert drain(store, 777) == body.splitlines(keepends=True)
        big = b"m s=" + b"x" * (local.CHUNK_BYTES - 10) + b" 1\n"
        assert store.add_body(big + b"m v=1 2\n" + big) == 3
        assert store.stats().pending_chunks == 3  # a chunk never exceeds CHUNK_BYTES...
        assert drain(store, 10) == [big, b"m v=1 2\n", big]  # ...unless one line does
        assert store.add_body(b"m v=1 3") == 1  # missing final newline is added
        assert drain(store, 10) == [b"m v=1 3\n"]


def test_oversized_chunk_is_sent_in_order_by_heads(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s.sqlite") as store:
        store.add_lines(lines(500))
        store.add_lines(lines(10, start=500))
        b = store.batch(7, 10**9)
        assert b is not None and b.partial is not None and b.n_lines == 7
        # byte bound too: "m,p=a v=0i 0\n" is 13 bytes, so 40 bytes hold 3 lines
        b2 = store.batch(100, 40)
        assert b2 is not None and b2.n_lines == 3
        assert drain(store, 7) == [(s + "\n").encode() for s in lines(510)]


def test_two_processes_settling_the_same_head_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with LocalStore(path) as a, LocalStore(path) as b:
        a.add_lines(lines(50))
        ba, bb = a.batch(10, 10**9), b.batch(10, 10**9)
        assert ba is not None and bb is not None and ba.lines() == bb.lines()
        a.accept(ba)
        b.accept(bb)  # the same head: must not drop the next 10 lines
        assert a.stats().pending_lines == 40
        assert drain(a, 100) == [(s + "\n").encode() for s in lines(40, start=10)]


def test_lines_with_raw_newlines_keep_their_boundaries(tmp_path: Path) -> None:
    weird = 'annotation,kind=event,participant=p note="two\nlines, a=b \\"q\\"" 5'
    with LocalStore(tmp_path / "s.sqlite") as store:
        store.add_lines([weird, "m v=1 6"])
        b = store.batch(10, 10**9)
        assert b is not None
        assert b.lines() == [weird.encode() + b"\n", b"m v=1 6\n"]


def test_settle_quarantines_only_refused_and_retry(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s.sqlite") as store:
        store.add_lines(lines(5), source="test")
        b = store.batch(10, 10**9)
        assert b is not None
        store.settle(b, [(b.lines()[2], "field type conflict", 400)], sink="influx x")
        s = store.stats()
        assert (s.pending_lines, s.quarantined, s.sent_lines_total) == (0, 1, 4)
        (q,) = store.quarantined()
        assert (q.line, q.message, q.status, q.sink, q.source) == (
            b"m,p=a v=2i 2\n",
            "field type conflict",
            400,
            "influx x",
            "test",
        )
        assert store.retry_quarantine() == 1
        assert store.stats().quarantined == 0
        assert drain(store, 10) == [b"m,p=a v=2i 2\n"]


def test_full_disk_is_a_clear_error_and_loses_nothing_queued(tmp_path: Path) -> None:
    path = tmp_path / "small.sqlite"
    # SQLite's max_page_count gives the same SQLITE_FULL a full file system gives
    with LocalStore(path, max_page_count=40) as store:
        queued = 0
        with pytest.raises(StoreError) as info:
            for i in range(1000):
                queued += store.add_lines(lines(100, start=i * 100), source="night-1")
        msg = str(info.value)
        assert str(path) in msg and "full" in msg and "night-1" in msg
        assert queued > 0
        assert store.stats().pending_lines == queued  # the failed call added nothing
        # sending frees pages; then new data fits again
        got = drain(store, 1000)
        assert got == [(s + "\n").encode() for s in lines(queued)]
        assert store.add_lines(lines(100, start=10**6)) == 100


def test_migrates_old_store_and_refuses_newer(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(local.MIGRATIONS[0] + "PRAGMA user_version=1;")
    conn.execute(
        "INSERT INTO outbox (created_ns, n_lines, n_bytes, body, ends) VALUES (1, 1, 8, ?, ?)",
        (b"m v=1 1\n", (8).to_bytes(4, "little")),
    )
    conn.commit()
    conn.close()
    with LocalStore(path) as store:
        assert store.schema_version == local.SCHEMA_VERSION == 3
        assert store.stats().pending_lines == 1  # data of version 1 kept
        assert store.stats().pending_bytes == 8  # running totals start from what was there
        assert store.list_annotations() == []  # version-2 table exists
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer sensord"):
        LocalStore(path)


def scanned_totals(path: Path) -> tuple[int, int, int]:
    """Chunks, lines and bytes counted from the outbox rows themselves (an independent
    count, not the trigger-kept totals)."""
    conn = sqlite3.connect(path)
    try:
        n_lines = n_bytes = 0
        rows = conn.execute("SELECT body, ends FROM outbox").fetchall()
        for body, ends in rows:
            n_lines += len(ends) // 4
            n_bytes += len(body)
        return len(rows), n_lines, n_bytes
    finally:
        conn.close()


def test_stats_totals_follow_every_change_from_any_connection(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with LocalStore(path) as store, LocalStore(path) as other:

        def check() -> None:
            s = store.stats()
            assert (s.pending_chunks, s.pending_lines, s.pending_bytes) == scanned_totals(path)

        check()
        store.add_lines(lines(2300))
        check()
        other.add_body("".join(s + "\n" for s in lines(500, start=9000)).encode())
        check()
        big = b"m s=" + b"x" * (local.CHUNK_BYTES - 10) + b" 1\n"
        store.add_body(big + big + big)  # one chunk per line
        check()
        b = store.batch(700, 10**9)  # head of the first chunk only: an UPDATE of its row
        assert b is not None and b.partial is not None
        store.accept(b)
        check()
        b = other.batch(1000, 10**9)
        assert b is not None
        other.reject(b, "down")
        check()
        b = store.batch(1000, 10**9)
        assert b is not None
        store.settle(b, refused=[(b.lines()[0], "bad field", 400)])  # delete + quarantine
        check()
        assert store.stats().quarantined == 1
        store.retry_quarantine()
        check()
        drain(other, 10**6)
        check()
        assert store.stats().pending_lines == 0 and store.stats().oldest_ns is None


def test_sql_statements_keeps_trigger_bodies_whole() -> None:
    script = ("CREATE TABLE t (a); CREATE TRIGGER tr AFTER INSERT ON t BEGIN "
              "UPDATE t SET a = 1; DELETE FROM t WHERE a = 2; END;\n  ")
    assert local.sql_statements(script) == [
        "CREATE TABLE t (a);",
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET a = 1; DELETE FROM t WHERE "
        "a = 2; END;",
    ]
    with pytest.raises(ValueError, match="incomplete"):
        local.sql_statements("CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET a = 1;")


def test_annotations_local_api(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s.sqlite") as store:
        t = 1_700_000_000_000_000_000
        a = store.add_annotation(
            {
                "participant": "P1",
                "kind": "substance",
                "t_ns": t,
                "substance": "kratom",
                "dose": 2,
                "dose_unit": "g",
                "form": "powder",
            }
        )
        p = store.add_annotation(
            {
                "id": "pain-1",
                "participant": "P1",
                "kind": "pain",
                "t_ns": t + 10,
                "pain_nrs": 6,
                "pain_when": "bedtime",
            }
        )
        store.add_annotation({"participant": "P2", "kind": "event", "t_ns": t, "note": "x"})
        got = store.list_annotations("P1")
        assert [r["id"] for r in got] == [a, p]
        assert got[0]["text"] == "kratom 2 g powder" and got[0]["tags"] == "substance,kratom"
        assert got[1]["text"] == "pain 6/10 (bedtime)"
        assert store.list_annotations("P1", kind="pain", start_ns=t + 1)[0]["id"] == "pain-1"
        # edit = same id; delete keeps a tombstone locally and in InfluxDB
        store.add_annotation({**got[1], "pain_nrs": 7, "text": "pain 7/10"})
        assert store.get_annotation("pain-1")["pain_nrs"] == 7  # type: ignore[index]
        store.delete_annotation("pain-1")
        assert [r["id"] for r in store.list_annotations("P1")] == [a]
        assert len(store.list_annotations("P1", include_deleted=True)) == 2
        assert store.stats().pending_lines == 5  # 3 adds + edit + delete, each queued
        with pytest.raises(SchemaError, match=r"annotation\.pain_nrs: expected integer"):
            store.add_annotation({"participant": "P1", "kind": "pain", "t_ns": t, "pain_nrs": "6"})
        with pytest.raises(SchemaError, match=r"annotation\.mood: unknown field"):
            store.add_annotation({"participant": "P1", "kind": "diary", "t_ns": t, "mood": 3})
        with pytest.raises(SchemaError, match=r"annotation\.t_ns"):
            store.add_annotation({"participant": "P1", "kind": "diary", "t_ns": 1.5})
        assert store.stats().pending_lines == 5  # refused ones queue nothing
        with pytest.raises(StoreError, match="no annotation with id 'nope'"):
            store.delete_annotation("nope")


def test_nights_local_api(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s.sqlite") as store:
        base = {"participant": "P1", "scorer": "cole-kripke@1.0", "final": False}
        store.put_night(
            {**base, "night": "2026-11-23", "start_ns": 1, "end_ns": 2, "tst_min": 400.0}
        )
        store.put_night(
            {**base, "night": "2026-11-24", "start_ns": 3, "end_ns": 4, "tst_min": 380.5},
            epochs={"t_ns": [3], "stage": ["wake"]},
        )
        store.put_night(
            {
                **base,
                "night": "2026-11-23",
                "start_ns": 1,
                "end_ns": 2,
                "tst_min": 401.0,
                "final": True,
            }
        )
        nights = store.list_nights("P1")
        assert [(n["night"], n["tst_min"], n["final"]) for n in nights] == [
            ("2026-11-23", 401.0, True),
            ("2026-11-24", 380.5, False),
        ]
        assert store.list_nights("P1", since="2026-11-24")[0]["night"] == "2026-11-24"
        assert store.get_night_epochs("P1", "2026-11-24", "cole-kripke@1.0") == {
            "t_ns": [3],
            "stage": ["wake"],
        }
        assert store.stats().pending_lines == 3
        with pytest.raises(SchemaError, match=r"night\.tst_min: expected float"):
            store.put_night({**base, "night": "x", "start_ns": 1, "end_ns": 2, "tst_min": "7"})


def test_reserve_file_beside_the_store(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s.sqlite", reserve_bytes=123_456) as store:
        assert store.reserve_path == tmp_path / "s.sqlite.reserve"
        assert store.reserve_path.stat().st_size == 123_456
        assert store.reserve_path.stat().st_blocks * 512 >= 123_456  # really allocated
    with LocalStore(tmp_path / "t.sqlite", reserve_bytes=0) as store:
        assert not store.reserve_path.exists()


def _stats_table_by_table(path: Path) -> local.OutboxStats:
    """What ``stats`` reads, one table at a time (as it did before its single statement)."""
    c = sqlite3.connect(path)
    try:
        lines, size, chunks = c.execute("SELECT n_lines, n_bytes, n_chunks FROM outbox_totals"
                                        ).fetchone()
        oldest = c.execute("SELECT MIN(created_ns) FROM outbox").fetchone()[0]
        quarantined = c.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
    finally:
        c.close()
    return local.OutboxStats(
        pending_lines=lines, pending_bytes=size, pending_chunks=chunks, oldest_ns=oldest,
        quarantined=quarantined,
        last_success_ns=int(meta["last_success_ns"]) if "last_success_ns" in meta else None,
        last_error=meta.get("last_error", ""),
        last_error_ns=int(meta["last_error_ns"]) if "last_error_ns" in meta else None,
        sent_lines_total=int(meta.get("sent_lines_total", 0)))


def test_stats_in_one_statement_as_read_table_by_table(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with LocalStore(path) as store:
        assert store.stats() == _stats_table_by_table(path)  # empty: no meta, no chunk
        store.add_lines(lines(5), source="test")
        store.record_error("server down")
        assert store.stats() == _stats_table_by_table(path)
        b = store.batch(3, 10**9)
        assert b is not None
        store.settle(b, [(b.lines()[1], "field type conflict", 400)], sink="influx x")
        s = store.stats()
        assert s == _stats_table_by_table(path)
        assert (s.pending_lines, s.quarantined, s.sent_lines_total) == (2, 1, 2)
        assert s.last_error == "server down" and s.last_success_ns is not None


def test_each_transaction_runs_at_its_own_durability(tmp_path: Path) -> None:
    # PRAGMA synchronous is set only when it changes: FULL (2) or NORMAL (1) as asked
    with LocalStore(tmp_path / "s.sqlite") as store:
        for durable in (False, False, True, True, False, True):
            store.add_body(b"m v=1 1\n", durable=durable)
            assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == (2 if durable
                                                                               else 1)


@pytest.mark.parametrize("body", [b"", b"m v=1 1\n", b"a\nbb\n\nccc\n", b"x" * 70 + b"\n" * 3])
def test_newline_ends_after_every_newline(body: bytes) -> None:
    assert local.newline_ends(body).tolist() == [i + 1 for i, b in enumerate(body) if b == 10]
