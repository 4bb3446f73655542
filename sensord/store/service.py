"""Store operations behind the CLI and the daemon: push, outbox report, doctor (I/O)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sensord.config import Config
from sensord.errors import StoreError
from sensord.store.local import LocalStore
from sensord.store.policy import Backoff
from sensord.store.sender import FlushReport, Sender
from sensord.store.sinks import Health, Sink, make_sink, transport_warnings


def open_store(cfg: Config) -> LocalStore:
    """The local store in the data directory (created private; refused if others can read it)."""
    cfg.ensure_data_dir()
    return LocalStore(cfg.outbox_path)


def make_sender(
    cfg: Config,
    store: LocalStore,
    sink: Sink,
    *,
    on_progress: Callable[[FlushReport], None] | None = None,
) -> Sender:
    return Sender(
        store,
        sink,
        batch_lines=cfg.sink.batch_lines,
        batch_bytes=cfg.sink.batch_bytes,
        backoff=Backoff(cfg.sink.retry_initial_s, cfg.sink.retry_max_s),
        on_progress=on_progress,
    )


def push(
    cfg: Config, *, retries: int = 3, on_progress: Callable[[FlushReport], None] | None = None
) -> FlushReport:
    """Flush the outbox now (``sensord push``)."""
    sink = make_sink(cfg.sink)
    if sink is None:
        raise StoreError('sink.kind is "none": nothing to push to (set [sink] in the config)')
    with open_store(cfg) as store:
        try:
            return make_sender(cfg, store, sink, on_progress=on_progress).flush(max_retries=retries)
        finally:
            sink.close()


def _when(t_ns: int | None) -> str:
    if t_ns is None:
        return "never"
    dt = datetime.fromtimestamp(t_ns / 1e9, tz=UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC")


def outbox_report(store: LocalStore, *, limit: int = 20, now_ns: int | None = None) -> str:
    """Text for ``sensord outbox``: backlog, last success/error, quarantine."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    s = store.stats()
    age = ""
    if s.oldest_ns is not None:
        age = f", oldest queued {(now_ns - s.oldest_ns) / 60e9:.1f} min ago"
    out = [
        f"local store: {store.path}",
        f"backlog: {s.pending_lines} lines, {s.pending_bytes} bytes "
        f"in {s.pending_chunks} chunks{age}",
        f"sent in total: {s.sent_lines_total} lines; last success: {_when(s.last_success_ns)}",
    ]
    if s.last_error:
        out.append(f"last error ({_when(s.last_error_ns)}): {s.last_error}")
    out.append(f"quarantine: {s.quarantined} lines refused by the server")
    for q in store.quarantined(limit):
        line = q.line.decode("utf-8", "replace").rstrip("\n")
        if len(line) > 160:
            line = line[:157] + "..."
        out.append(f"  #{q.id} {_when(q.created_ns)} HTTP {q.status} from {q.sink}")
        out.append(f"      why:  {q.message}")
        out.append(f"      line: {line}")
    if s.quarantined > limit:
        out.append(f"  ... {s.quarantined - limit} more")
    return "\n".join(out)


@dataclass(frozen=True)
class DoctorReport:
    ok: bool
    lines: tuple[str, ...]


def doctor(cfg: Config) -> DoctorReport:
    """Check the sink: reachable, version, credentials, database/bucket."""
    lines = [f"config: {', '.join(cfg.source) or 'defaults'}", f"sink: {cfg.sink.kind}"]
    lines += [f"WARNING: {w}" for w in transport_warnings(cfg.sink)]
    sink = make_sink(cfg.sink)
    if sink is None:
        lines.append("no sink configured: data stays in the local outbox")
        return DoctorReport(True, tuple(lines))
    try:
        h: Health = sink.health()
    finally:
        sink.close()
    lines.append(f"target: {sink.where}")
    lines.append(f"reachable: {'yes' if h.reachable else 'NO'}")
    if h.version:
        lines.append(f"server version: {h.version}")
    if h.reachable:
        lines.append(f"credentials: {'ok' if h.auth_ok else 'REFUSED'}")
        lines.append(f"database/bucket: {'ok' if h.target_ok else 'MISSING'}")
    if h.detail and h.detail != "ok":
        lines.append(f"detail: {h.detail}")
    return DoctorReport(h.reachable and h.auth_ok and h.target_ok, tuple(lines))
