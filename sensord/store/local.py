"""The local store on the Pi: one SQLite database in WAL mode (I/O).

* **outbox** -- line protocol waiting for the sink, in chunks of whole lines (their byte
  boundaries are stored, because a string field may contain a raw newline). The sender
  takes a :class:`Batch` (``batch``), and then ``accept`` (delivered: delete),
  ``reject`` (transient failure: keep, count the attempt) or ``settle`` (delivered except
  some lines the server refused: those go to quarantine with the server's message).
* **quarantine** -- refused lines with the server's answer and where it came from, for
  ``sensord outbox`` and for a later ``retry_quarantine`` once the cause is fixed.
* **annotations** and **nights** -- for local use (web page, reports); every change also
  queues the matching InfluxDB point, so the server gets them too.
* **meta** -- last success / error of the sender; ``PRAGMA user_version`` is the schema
  version, upgraded by :data:`MIGRATIONS` on open.

Durability: ``synchronous=FULL`` (a commit survives power loss), one transaction per
call, so a process killed at any moment leaves either all or nothing of a call.
Several processes may use one file (the daemon and ``sensord push``): SQLite's locking
and a busy timeout serialise them; a batch sent twice is harmless (same points).
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensord.errors import StoreError
from sensord.store import schema

if TYPE_CHECKING:  # numpy is imported where it is used (this module's import stays light)
    import numpy as np
    import numpy.typing as npt

CHUNK_LINES = 1000
WAL_CHECKPOINT_PAGES = 1000
"""SQLite's automatic checkpoint threshold (its default): the write-ahead log holds at most
about this many pages (4 KiB each) that the database file has not taken in yet."""
RESERVE_BYTES = 4 * 1024 * 1024
"""Disk kept in reserve (``sensord.sqlite.reserve``) so a full disk cannot stop the
outbox from draining. It must cover what a checkpoint adds to the database file, i.e. at
least ``WAL_CHECKPOINT_PAGES`` pages (1000 x 4 KiB < 4 MiB)."""
CHUNK_BYTES = 256 * 1024

MIGRATIONS: tuple[str, ...] = (
    # 1: outbox, quarantine, meta
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_ns INTEGER NOT NULL,
        n_lines INTEGER NOT NULL,
        n_bytes INTEGER NOT NULL,
        body BLOB NOT NULL,
        ends BLOB NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        source TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_ns INTEGER NOT NULL,
        line BLOB NOT NULL,
        message TEXT NOT NULL,
        status INTEGER NOT NULL,
        sink TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: local copies of annotations and night summaries
    """
    CREATE TABLE annotations (
        id TEXT PRIMARY KEY,
        participant TEXT NOT NULL,
        kind TEXT NOT NULL,
        t_ns INTEGER NOT NULL,
        record TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX annotations_by_time ON annotations (participant, t_ns);
    CREATE TABLE nights (
        participant TEXT NOT NULL,
        night TEXT NOT NULL,
        scorer TEXT NOT NULL,
        start_ns INTEGER NOT NULL,
        end_ns INTEGER NOT NULL,
        final INTEGER NOT NULL,
        summary TEXT NOT NULL,
        epochs TEXT NOT NULL,
        updated_ns INTEGER NOT NULL,
        PRIMARY KEY (participant, night, scorer)
    );
    """,
    # 3: running outbox totals kept by triggers (``stats`` every 30 s must not scan the
    # whole queue, which holds every blob during an outage), index for the oldest chunk
    """
    CREATE TABLE outbox_totals (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        n_chunks INTEGER NOT NULL,
        n_lines INTEGER NOT NULL,
        n_bytes INTEGER NOT NULL
    );
    INSERT INTO outbox_totals (id, n_chunks, n_lines, n_bytes)
        SELECT 0, COUNT(*), COALESCE(SUM(n_lines), 0), COALESCE(SUM(n_bytes), 0) FROM outbox;
    CREATE TRIGGER outbox_totals_insert AFTER INSERT ON outbox BEGIN
        UPDATE outbox_totals SET n_chunks = n_chunks + 1, n_lines = n_lines + NEW.n_lines,
            n_bytes = n_bytes + NEW.n_bytes;
    END;
    CREATE TRIGGER outbox_totals_delete AFTER DELETE ON outbox BEGIN
        UPDATE outbox_totals SET n_chunks = n_chunks - 1, n_lines = n_lines - OLD.n_lines,
            n_bytes = n_bytes - OLD.n_bytes;
    END;
    CREATE TRIGGER outbox_totals_update AFTER UPDATE OF n_lines, n_bytes ON outbox BEGIN
        UPDATE outbox_totals SET n_lines = n_lines - OLD.n_lines + NEW.n_lines,
            n_bytes = n_bytes - OLD.n_bytes + NEW.n_bytes;
    END;
    CREATE INDEX outbox_by_created ON outbox (created_ns);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def sql_statements(script: str) -> list[str]:
    """Split an SQL script at the semicolons that end statements (not those inside a
    trigger's ``BEGIN ... END``)."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        raise ValueError(f"incomplete SQL statement: {pending.strip()[:60]!r}")
    return statements


def split_lines(body: bytes) -> list[bytes]:
    """Split newline-terminated line protocol *without* string fields (the columnar
    output) into lines, each keeping its newline."""
    if not body:
        return []
    if not body.endswith(b"\n"):
        body += b"\n"
    return [line + b"\n" for line in body[:-1].split(b"\n")]


def join_lines(lines: Iterable[str | bytes]) -> tuple[bytes, list[int]]:
    """Lines (with or without their newline) -> newline-terminated bytes and line ends."""
    parts: list[bytes] = []
    ends: list[int] = []
    pos = 0
    for line in lines:
        b = line.encode("utf-8") if isinstance(line, str) else bytes(line)
        if not b:
            continue
        if not b.endswith(b"\n"):
            b += b"\n"
        parts.append(b)
        pos += len(b)
        ends.append(pos)
    return b"".join(parts), ends


def newline_ends(body: bytes) -> npt.NDArray[np.int64]:
    """Line ends of ``body`` split at every newline (no raw newline in string fields)."""
    import numpy as np

    return np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10) + 1


def _where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """`` WHERE a AND b`` of the ``(sql, value)`` conditions whose value is not None, and
    their values as arguments ("" and [] when none applies)."""
    used = [(sql, val) for sql, val in conditions if val is not None]
    clause = (" WHERE " + " AND ".join(sql for sql, _ in used)) if used else ""
    return clause, [val for _, val in used]


def _pack_ends(lengths: Sequence[int]) -> bytes:
    out, pos = [], 0
    for n in lengths:
        pos += n
        out.append(pos)
    return struct.pack(f"<{len(out)}I", *out)


def _unpack_ends(blob: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(blob) // 4}I", blob)


@dataclass(frozen=True)
class Batch:
    """Consecutive outbox chunks taken together for one request."""

    chunk_ids: tuple[int, ...]
    body: bytes
    ends: Sequence[int]
    """End offset of each line in ``body`` (a tuple, or an int array from ``send_now``)."""
    sources: tuple[str, ...] = ()
    partial: tuple[int, int, int] | None = None
    """``(chunk id, lines taken, lines the chunk had)`` when the batch is the head of one
    oversized chunk."""

    @property
    def n_lines(self) -> int:
        return len(self.ends)

    def lines(self) -> list[bytes]:
        """The batch's lines (each with its newline)."""
        out, start = [], 0
        for end in self.ends:
            out.append(self.body[start : int(end)])
            start = int(end)
        return out


@dataclass(frozen=True)
class QuarantinedLine:
    id: int
    created_ns: int
    line: bytes
    message: str
    status: int
    sink: str
    source: str


@dataclass(frozen=True)
class OutboxStats:
    pending_lines: int
    pending_bytes: int
    pending_chunks: int
    oldest_ns: int | None
    quarantined: int
    last_success_ns: int | None
    last_error: str
    last_error_ns: int | None
    sent_lines_total: int


_STATS_SQL = (
    "SELECT n_lines, n_bytes, n_chunks, (SELECT MIN(created_ns) FROM outbox), "
    "(SELECT COUNT(*) FROM quarantine), "
    + ", ".join(f"(SELECT value FROM meta WHERE key = '{key}')"
                for key in ("last_success_ns", "last_error", "last_error_ns", "sent_lines_total"))
    + " FROM outbox_totals"
)
""":meth:`LocalStore.stats` in one statement: the totals, the oldest chunk, the quarantine
count and the meta values (``NULL`` where unset)."""


@dataclass
class LocalStore:
    """The SQLite local store. Thread-safe (one connection, one lock)."""

    path: Path
    max_page_count: int | None = None
    reserve_bytes: int = RESERVE_BYTES
    """Size of the reserve file kept beside the store (0: none), see :meth:`settle`."""
    wal_checkpoint_pages: int = WAL_CHECKPOINT_PAGES
    """Automatic checkpoint threshold in pages; ``reserve_bytes`` must cover it."""
    _conn: sqlite3.Connection = field(init=False, repr=False)
    _lock: threading.RLock = field(init=False, repr=False, default_factory=threading.RLock)
    _synchronous: str = field(init=False, repr=False, default="")
    """The connection's ``PRAGMA synchronous`` as last set (set again only to change it)."""

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        try:
            # a directory made here is private to the service user (see credentials.py)
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._synchronous = "FULL"
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.execute(f"PRAGMA wal_autocheckpoint={int(self.wal_checkpoint_pages)}")
            if self.max_page_count is not None:
                self._conn.execute(f"PRAGMA max_page_count={int(self.max_page_count)}")
            self._migrate()
        except sqlite3.Error as exc:
            raise self._error("cannot open", exc) from None
        self._ensure_reserve()

    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(self.path.name + ".reserve")

    def _ensure_reserve(self) -> None:
        """Keep ``reserve_bytes`` of disk allocated beside the store, best effort."""
        if self.reserve_bytes <= 0 or self.reserve_path.exists():
            return
        tmp = self.reserve_path.with_name(self.reserve_path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, self.reserve_bytes)
            os.replace(tmp, self.reserve_path)
        except OSError:
            tmp.unlink(missing_ok=True)

    def _release_reserve(self) -> bool:
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        return True

    # -- plumbing ------------------------------------------------------------------
    def _error(self, action: str, exc: sqlite3.Error, detail: str = "") -> StoreError:
        msg = str(exc)
        if "full" in msg.lower():
            hint = "; the disk (or the store's size limit) is full: free space, then retry"
        elif "locked" in msg.lower() or "busy" in msg.lower():
            hint = "; another process holds the store: retry"
        else:
            hint = ""
        extra = f" ({detail})" if detail else ""
        return StoreError(f"local store {self.path}: {action}{extra}: {msg}{hint}")

    @contextmanager
    def _tx(
        self, action: str, detail: str = "", *, durable: bool = True
    ) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``durable=False`` skips the fsync at commit: used when
        losing the transaction to a power cut only means sending something again."""
        with self._lock:
            try:
                synchronous = "FULL" if durable else "NORMAL"
                if synchronous != self._synchronous:
                    self._conn.execute(f"PRAGMA synchronous={synchronous}")
                    self._synchronous = synchronous
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise self._error(action, exc, detail) from None

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._error("read failed", exc) from None

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"local store {self.path}: schema version {version} was written by a newer "
                f"sensord (this one knows up to {SCHEMA_VERSION}); upgrade sensord"
            )
        if version == SCHEMA_VERSION:
            return
        self._conn.execute("BEGIN IMMEDIATE")  # all steps in one transaction
        try:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in sql_statements(MIGRATIONS[target - 1]):
                    self._conn.execute(statement)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- outbox --------------------------------------------------------------------
    def add_lines(self, lines: Iterable[str | bytes], *, source: str = "") -> int:
        """Queue complete lines (no trailing newline needed; string fields may hold raw
        newlines). Returns lines queued.

        Atomic: on failure (e.g. disk full) nothing of this call is queued and a
        :class:`StoreError` names the store and the source.
        """
        data, ends = join_lines(lines)
        return self.add_ends(data, ends, source=source)

    def add_body(self, body: bytes, *, source: str = "", durable: bool = True) -> int:
        """Queue newline-terminated line protocol whose string fields hold no raw newline
        (the columnar output): lines are split at every newline. ``durable=False``: see
        :meth:`add_ends`."""
        if body and not body.endswith(b"\n"):
            body += b"\n"
        return self.add_ends(body, newline_ends(body), source=source, durable=durable)

    def add_ends(
        self, data: bytes, ends: Sequence[int] | npt.NDArray[np.int64], *, source: str = "",
        durable: bool = True,
    ) -> int:
        """Queue ``data`` whose lines end at the byte offsets ``ends`` (each line's end,
        newline included). Chunked without a Python step per line.

        ``durable=False`` commits without waiting for the disk: a power cut may then lose
        this call (whole, never part of it) -- for what is derived again anyway, such as
        provisional stages that the final ones replace. The next durable commit makes it
        durable too (one write-ahead log, in order)."""
        import numpy as np

        e = np.asarray(ends, dtype=np.int64)
        n = int(e.size)
        if n == 0:
            return 0
        now = time.time_ns()
        rows = []
        start_line = 0
        while start_line < n:  # one step per chunk of up to CHUNK_LINES lines
            base = int(e[start_line - 1]) if start_line else 0
            stop = min(n, start_line + CHUNK_LINES)
            fit = int(np.searchsorted(e[start_line:stop], base + CHUNK_BYTES, side="right"))
            stop = start_line + max(1, fit)
            rel = (e[start_line:stop] - base).astype("<u4")
            end_byte = int(e[stop - 1])
            rows.append(
                (
                    now,
                    stop - start_line,
                    end_byte - base,
                    data[base:end_byte],
                    rel.tobytes(),
                    source,
                )
            )
            start_line = stop
        self._insert_chunks(rows, n, source, durable=durable)
        return n

    def _insert_chunks(self, rows: list[tuple[Any, ...]], n_lines: int, source: str, *,
                       durable: bool = True) -> None:
        with self._tx("cannot queue lines", f"{n_lines} lines from {source or '?'}",
                      durable=durable) as c:
            c.executemany(
                "INSERT INTO outbox (created_ns, n_lines, n_bytes, body, ends, source) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def add_point(
        self,
        measurement: str,
        tags: Mapping[str, str],
        fields: Mapping[str, object],
        t_ns: int,
        *,
        source: str = "",
    ) -> None:
        """Validate one point against the schema and queue it."""
        from sensord.store.lineproto import schema_line

        self.add_lines([schema_line(measurement, tags, fields, t_ns)], source=source)

    def batch(self, max_lines: int, max_bytes: int) -> Batch | None:
        """The oldest lines that fit in ``max_lines``/``max_bytes`` (at least one line).

        Usually whole chunks; when the oldest chunk alone is over a limit, its first lines
        (``Batch.partial``), so the order of lines is always kept: a later version of a
        point (a final epoch after a provisional one) is never overtaken by an older one.
        """
        max_lines = max(1, max_lines)
        with self._lock:
            return self._batch(max_lines, max_bytes)

    def _batch(self, max_lines: int, max_bytes: int) -> Batch | None:
        # sizes first (no blobs), then the blobs of the chosen chunks only
        meta = self._read(
            "SELECT id, n_lines, n_bytes FROM outbox ORDER BY id LIMIT ?", (max_lines,)
        )
        if not meta:
            return None
        chosen = 1
        lines_sum, bytes_sum = meta[0][1], meta[0][2]
        while chosen < len(meta):
            if lines_sum + meta[chosen][1] > max_lines or bytes_sum + meta[chosen][2] > max_bytes:
                break
            lines_sum += meta[chosen][1]
            bytes_sum += meta[chosen][2]
            chosen += 1
        rows = self._read(
            "SELECT id, n_lines, n_bytes, body, ends, source FROM outbox WHERE id BETWEEN ? AND ? "
            "ORDER BY id",
            (meta[0][0], meta[chosen - 1][0]),
        )
        if not rows:  # another process took them meanwhile
            return None
        cid, nl, nb, body, e, src = rows[0]
        if nl > max_lines or nb > max_bytes:
            ends = _unpack_ends(e)
            take = 0
            while take < min(nl, max_lines) and (take == 0 or ends[take] <= max_bytes):
                take += 1
            if take < nl:
                return Batch((), body[: ends[take - 1]], ends[:take], (src,), (cid, take, nl))
        ids: list[int] = []
        bodies: list[bytes] = []
        all_ends: list[int] = []
        sources: list[str] = []
        n_lines = n_bytes = 0
        for cid, nl, nb, body, e, src in rows:
            if ids and (n_lines + nl > max_lines or n_bytes + nb > max_bytes):
                break
            ids.append(cid)
            bodies.append(body)
            all_ends.extend(x + n_bytes for x in _unpack_ends(e))
            sources.append(src)
            n_lines += nl
            n_bytes += nb
        return Batch(tuple(ids), b"".join(bodies), tuple(all_ends), tuple(sources))

    def accept(self, batch: Batch) -> None:
        """The sink stored the whole batch: forget it."""
        self.settle(batch, refused=())

    @staticmethod
    def _drop_head(c: sqlite3.Connection, cid: int, taken: int, had: int) -> None:
        row = c.execute("SELECT body, ends, n_lines FROM outbox WHERE id=?", (cid,)).fetchone()
        if row is None or row[2] != had:  # another process delivered this head meanwhile
            return
        ends = _unpack_ends(row[1])
        if taken >= len(ends):
            c.execute("DELETE FROM outbox WHERE id=?", (cid,))
            return
        cut = ends[taken - 1]
        rest = [x - cut for x in ends[taken:]]
        c.execute(
            "UPDATE outbox SET n_lines=?, n_bytes=?, body=?, ends=? WHERE id=?",
            (len(rest), rest[-1], row[0][cut:], struct.pack(f"<{len(rest)}I", *rest), cid),
        )

    def reject(self, batch: Batch, error: str) -> None:
        """Sending failed transiently: keep the batch, count the attempt, note the error."""
        ids = batch.chunk_ids + ((batch.partial[0],) if batch.partial else ())
        marks = ",".join("?" * len(ids))
        with self._tx("cannot record failure", durable=False) as c:
            if ids:
                c.execute(f"UPDATE outbox SET attempts = attempts + 1 WHERE id IN ({marks})", ids)
            self._set_meta(c, "last_error", error)
            self._set_meta(c, "last_error_ns", str(time.time_ns()))

    def settle(
        self,
        batch: Batch,
        refused: Iterable[tuple[bytes, str, int]],
        *,
        sink: str = "",
        count: bool = True,
    ) -> None:
        """Delivered, except ``refused`` lines ``(line, server message, status)``, which
        move to quarantine -- in one transaction with the removal from the outbox."""
        refused = list(refused)
        try:
            self._settle(batch, refused, sink, count)
        except StoreError as exc:
            # A full disk must not stop the outbox from draining (which is what frees
            # space): give up the reserve file, record the delivery, checkpoint the WAL
            # into the database so its space returns, then try to rebuild the reserve.
            if "full" not in str(exc) or not self._release_reserve():
                raise
            self._settle(batch, refused, sink, count)
            self.checkpoint()
            self._ensure_reserve()

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (frees disk space)."""
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise self._error("cannot checkpoint", exc) from None

    def _settle(
        self, batch: Batch, refused: list[tuple[bytes, str, int]], sink: str, count: bool
    ) -> None:
        source = ",".join(sorted(set(batch.sources) - {""}))
        marks = ",".join("?" * len(batch.chunk_ids))
        now = time.time_ns()
        # not durable: after a power cut the batch is simply sent again (same points) --
        # unless lines were quarantined, which must not be forgotten
        with self._tx(
            "cannot record delivery", f"{batch.n_lines} lines", durable=bool(refused)
        ) as c:
            if batch.chunk_ids:
                c.execute(f"DELETE FROM outbox WHERE id IN ({marks})", batch.chunk_ids)
            if batch.partial is not None:
                self._drop_head(c, *batch.partial)
            c.executemany(
                "INSERT INTO quarantine (created_ns, line, message, status, sink, source) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(now, line, msg, status, sink, source) for line, msg, status in refused],
            )
            if count:
                self._count_delivered(c, batch.n_lines - len(refused), now)

    def _count_delivered(self, c: sqlite3.Connection, n_lines: int, now: int) -> None:
        self._set_meta(c, "last_success_ns", str(now))
        total = self._get_meta(c, "sent_lines_total")
        self._set_meta(c, "sent_lines_total", str(int(total or 0) + n_lines))

    def note_delivered(self, n_lines: int) -> None:
        """Record lines delivered outside the outbox (``Sender.send_now``)."""
        with self._tx("cannot record delivery", durable=False) as c:
            self._count_delivered(c, n_lines, time.time_ns())

    def record_error(self, error: str) -> None:
        with self._tx("cannot record error") as c:
            self._set_meta(c, "last_error", error)
            self._set_meta(c, "last_error_ns", str(time.time_ns()))

    @staticmethod
    def _set_meta(c: sqlite3.Connection, key: str, value: str) -> None:
        c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @staticmethod
    def _get_meta(c: sqlite3.Connection, key: str) -> str | None:
        row = c.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def stats(self) -> OutboxStats:
        # one query (the daemon's status file reads this every 30 s): one snapshot
        (lines, size, chunks, oldest, quarantined, last_success_ns, last_error, last_error_ns,
         sent_lines_total) = self._read(_STATS_SQL)[0]
        return OutboxStats(
            pending_lines=int(lines),
            pending_bytes=int(size),
            pending_chunks=int(chunks),
            oldest_ns=None if oldest is None else int(oldest),
            quarantined=int(quarantined),
            last_success_ns=None if last_success_ns is None else int(last_success_ns),
            last_error="" if last_error is None else last_error,
            last_error_ns=None if last_error_ns is None else int(last_error_ns),
            sent_lines_total=int(sent_lines_total or 0),
        )

    def quarantined(self, limit: int = 100) -> list[QuarantinedLine]:
        rows = self._read(
            "SELECT id, created_ns, line, message, status, sink, source FROM quarantine "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [QuarantinedLine(*r) for r in rows]

    def retry_quarantine(self, ids: Sequence[int] | None = None) -> int:
        """Move quarantined lines back to the outbox (after fixing the cause)."""
        with self._lock:
            if ids is None:
                rows = self._read("SELECT id, line, source FROM quarantine ORDER BY id")
            else:
                marks = ",".join("?" * len(ids))
                rows = self._read(
                    f"SELECT id, line, source FROM quarantine WHERE id IN ({marks}) ORDER BY id",
                    tuple(ids),
                )
            if not rows:
                return 0
            now = time.time_ns()
            with self._tx("cannot re-queue quarantine") as c:
                c.executemany(
                    "INSERT INTO outbox (created_ns, n_lines, n_bytes, body, ends, source) "
                    "VALUES (?, 1, ?, ?, ?, ?)",
                    [(now, len(line), line, _pack_ends([len(line)]), src) for _, line, src in rows],
                )
                c.executemany("DELETE FROM quarantine WHERE id=?", [(r[0],) for r in rows])
            return len(rows)

    # -- annotations ---------------------------------------------------------------
    def add_annotation(self, record: Mapping[str, Any], *, queue: bool = True) -> str:
        """Store (or replace, same ``id``) an annotation and queue its InfluxDB point.

        ``record`` holds ``participant``, ``kind`` (``pain``/``substance``/``diary``/
        ``event``), ``t_ns`` (UTC ns), optionally ``id`` (a new one is made otherwise) and
        any field of :data:`sensord.store.schema.ANNOTATION` (``text``, ``pain_nrs``,
        ``substance``, ``dose``, ...). Missing ``text``/``tags`` are filled in for Grafana.
        Returns the id. Raises ``SchemaError`` naming the offending key.
        """
        rec = dict(record)
        rec.setdefault("id", uuid.uuid4().hex)
        if not isinstance(rec["id"], str) or not rec["id"]:
            raise schema.SchemaError(
                "id must be a non-empty string", measurement="annotation", key="id"
            )
        for key in ("participant", "kind", "t_ns"):
            if key not in rec:
                raise schema.SchemaError("missing", measurement="annotation", key=key)
        if not isinstance(rec["t_ns"], int) or isinstance(rec["t_ns"], bool):
            raise schema.SchemaError(
                f"expected integer ns, got {rec['t_ns']!r}", measurement="annotation", key="t_ns"
            )
        rec.setdefault("text", annotation_text(rec))
        rec.setdefault("tags", annotation_tags(rec))
        line = self._annotation_line(rec)
        now = time.time_ns()
        with self._tx("cannot store annotation", f"id {rec['id']}") as c:
            old = c.execute(
                "SELECT created_ns FROM annotations WHERE id=?", (rec["id"],)
            ).fetchone()
            c.execute(
                "INSERT OR REPLACE INTO annotations "
                "(id, participant, kind, t_ns, record, created_ns, updated_ns, deleted) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec["id"],
                    rec["participant"],
                    rec["kind"],
                    rec["t_ns"],
                    json.dumps(rec, ensure_ascii=False, sort_keys=True),
                    old[0] if old else now,
                    now,
                    int(bool(rec.get("deleted", False))),
                ),
            )
            if queue:
                data = line.encode("utf-8") + b"\n"
                c.execute(
                    "INSERT INTO outbox (created_ns, n_lines, n_bytes, body, ends, source) "
                    "VALUES (?, 1, ?, ?, ?, 'annotation')",
                    (now, len(data), data, _pack_ends([len(data)])),
                )
        return str(rec["id"])

    @staticmethod
    def _annotation_line(rec: Mapping[str, Any]) -> str:
        from sensord.store.lineproto import schema_line

        tags = {"participant": rec["participant"], "kind": rec["kind"]}
        fields = {k: v for k, v in rec.items() if k not in ("participant", "kind", "t_ns")}
        return schema_line(
            "annotation", tags, fields, schema.annotation_time_ns(rec["t_ns"], rec["id"])
        )

    def delete_annotation(self, annotation_id: str) -> None:
        """Mark deleted locally and overwrite the InfluxDB point with ``deleted=true``."""
        rows = self._read("SELECT record FROM annotations WHERE id=?", (annotation_id,))
        if not rows:
            raise StoreError(f"local store {self.path}: no annotation with id {annotation_id!r}")
        rec = json.loads(rows[0][0])
        rec["deleted"] = True
        self.add_annotation(rec)

    def get_annotation(self, annotation_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT record FROM annotations WHERE id=?", (annotation_id,))
        return json.loads(rows[0][0]) if rows else None

    def list_annotations(
        self,
        participant: str | None = None,
        *,
        kind: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        include_deleted: bool = False,
    ) -> list[dict[str, Any]]:
        """Annotations as stored (the records given to :meth:`add_annotation`), by time."""
        clause, args = _where(
            ("participant=?", participant),
            ("kind=?", kind),
            ("t_ns>=?", start_ns),
            ("t_ns<?", end_ns),
            ("deleted=?", None if include_deleted else 0),
        )
        rows = self._read(f"SELECT record FROM annotations{clause} ORDER BY t_ns, id", args)
        return [json.loads(r[0]) for r in rows]

    # -- nights ----------------------------------------------------------------------
    def put_night(
        self,
        summary: Mapping[str, Any],
        *,
        epochs: Mapping[str, Sequence[Any]] | None = None,
        queue: bool = True,
    ) -> None:
        """Store a night summary (and optionally its epoch columns) and queue its point.

        ``summary`` holds ``participant``, ``scorer``, ``night`` (label), ``start_ns``,
        ``end_ns``, ``final`` and metrics (``score_night``'s summary); the fields of
        :data:`schema.NIGHT` go to InfluxDB (type-checked), everything JSON-able is kept
        locally. ``epochs`` are
        plain lists (``t_ns``, ``stage``, ``p_wake``, ...) for reports; they are not
        queued here (the pipeline queues epochs as columns).
        """
        s = dict(summary)
        for key in ("participant", "scorer", "night", "start_ns", "end_ns"):
            if key not in s:
                raise schema.SchemaError("missing", measurement="night", key=key)
        from sensord.store.points import night_line

        line = night_line(s["participant"], s["scorer"], s)
        now = time.time_ns()
        epochs_json = json.dumps({k: list(v) for k, v in (epochs or {}).items()})
        with self._tx("cannot store night", f"{s['participant']} {s['night']}") as c:
            c.execute(
                "INSERT OR REPLACE INTO nights (participant, night, scorer, start_ns, end_ns, "
                "final, summary, epochs, updated_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    s["participant"],
                    s["night"],
                    s["scorer"],
                    int(s["start_ns"]),
                    int(s["end_ns"]),
                    int(bool(s.get("final", False))),
                    json.dumps(s, ensure_ascii=False, sort_keys=True),
                    epochs_json,
                    now,
                ),
            )
            if queue:
                data = line.encode("utf-8") + b"\n"
                c.execute(
                    "INSERT INTO outbox (created_ns, n_lines, n_bytes, body, ends, source) "
                    "VALUES (?, 1, ?, ?, ?, 'night')",
                    (now, len(data), data, _pack_ends([len(data)])),
                )

    def list_nights(
        self,
        participant: str | None = None,
        *,
        scorer: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[dict[str, Any]]:
        """Night summaries ordered by night label; ``since``/``until`` are inclusive labels."""
        clause, args = _where(
            ("participant=?", participant),
            ("scorer=?", scorer),
            ("night>=?", since),
            ("night<=?", until),
        )
        rows = self._read(f"SELECT summary FROM nights{clause} ORDER BY night, scorer", args)
        return [json.loads(r[0]) for r in rows]

    def get_night_epochs(self, participant: str, night: str, scorer: str) -> dict[str, list[Any]]:
        rows = self._read(
            "SELECT epochs FROM nights WHERE participant=? AND night=? AND scorer=?",
            (participant, night, scorer),
        )
        return json.loads(rows[0][0]) if rows else {}


def annotation_text(rec: Mapping[str, Any]) -> str:
    """A one-line summary for Grafana when the record has no ``text``."""
    kind = rec.get("kind")
    if kind == "pain":
        when = f" ({rec['pain_when']})" if rec.get("pain_when") else ""
        site = f" {rec['body_site']}" if rec.get("body_site") else ""
        return f"pain {rec.get('pain_nrs', '?')}/10{site}{when}"
    if kind == "substance":
        dose = f" {rec['dose']:g}" if isinstance(rec.get("dose"), int | float) else ""
        unit = f" {rec['dose_unit']}" if rec.get("dose_unit") else ""
        form = f" {rec['form']}" if rec.get("form") else ""
        return f"{rec.get('substance', 'substance')}{dose}{unit}{form}"
    if kind == "diary" and rec.get("sleep_quality") is not None:
        return f"sleep quality {rec['sleep_quality']}/5" + (
            f": {rec['note']}" if rec.get("note") else ""
        )
    return str(rec.get("note") or kind or "")


def annotation_tags(rec: Mapping[str, Any]) -> str:
    """Grafana tags: the kind, plus the substance name for substances (commas removed)."""
    tags = [str(rec.get("kind", ""))]
    if rec.get("kind") == "substance" and rec.get("substance"):
        tags.append(str(rec["substance"]).replace(",", " ").strip())
    return ",".join(t for t in tags if t)
