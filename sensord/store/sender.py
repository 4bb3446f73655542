"""The one sender: outbox -> sink in bounded batches, with the policy of ``policy.py`` (I/O).

``Sender.flush`` empties the outbox or stops at the first problem it cannot solve by
itself; ``Sender.run`` is the daemon's loop around it. What happens to a batch:

* accepted: removed from the outbox;
* 413: split in halves until it fits; a single line still too big is quarantined;
* refused (400 parse error, field type conflict, 1.x ``partial write ... dropped=N``):
  the server stored the other lines, so the batch is bisected (re-sending stored points
  is harmless: same measurement, tags and time overwrite themselves) until the refused
  lines are isolated; exactly those go to quarantine with the server's message;
* 401/403: :class:`AuthError`, no retry (a wrong password stays wrong);
* 404 (database/bucket missing): :class:`StoreError`; the data stays in the outbox;
* 5xx, 429, timeouts, refused connections: the batch stays, retry after
  :class:`~sensord.store.policy.Backoff`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from sensord.errors import AuthError, StoreError
from sensord.store.local import Batch, LocalStore, join_lines, newline_ends
from sensord.store.policy import Backoff, Verdict, WriteOutcome
from sensord.store.sinks import Sink

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)


@dataclass
class FlushReport:
    """What one ``flush`` did."""

    sent_lines: int = 0
    requests: int = 0
    quarantined: int = 0
    retries: int = 0
    pending_lines: int = 0
    finished: bool = False
    """True when the outbox was empty at the end."""
    last_error: str = ""
    seconds: float = 0.0


@dataclass
class Sender:
    """Moves the outbox to a sink.

    Parameters
    ----------
    store, sink
        Where from, where to.
    batch_lines, batch_bytes
        Upper bounds of one request (uncompressed bytes).
    backoff
        Delay policy between retries of transient failures.
    sleep, clock
        Injectable for tests (default ``time.sleep``, ``time.monotonic``).
    on_progress
        Called after every delivered batch with the running :class:`FlushReport`.
    """

    store: LocalStore
    sink: Sink
    batch_lines: int = 5000
    batch_bytes: int = 1_000_000
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    on_progress: Callable[[FlushReport], None] | None = None

    def flush(self, *, max_retries: int | None = 0) -> FlushReport:
        """Send until the outbox is empty.

        ``max_retries`` bounds consecutive transient failures (``None``: retry forever,
        sleeping per the backoff; ``0``: return at the first one). Raises
        :class:`AuthError` on 401/403 and :class:`StoreError` when the database or bucket
        is missing; the unsent data stays in the outbox either way.
        """
        report = FlushReport()
        t0 = self.clock()
        failures = 0
        try:
            while True:
                batch = self.store.batch(self.batch_lines, self.batch_bytes)
                if batch is None:
                    report.finished = True
                    break
                stop = self._deliver(batch, report)
                if stop is None:
                    failures = 0
                    if self.on_progress is not None:
                        report.pending_lines = self.store.stats().pending_lines
                        self.on_progress(report)
                    continue
                report.last_error = f"{self.sink.where}: {stop.message}"
                self._raise_if_fatal(stop, report)
                # transient
                self.store.reject(batch, report.last_error)
                if max_retries is not None and failures >= max_retries:
                    break
                delay = self.backoff.delay_s(failures)
                failures += 1
                report.retries += 1
                log.warning("%s; retry %d in %.1f s", report.last_error, failures, delay)
                self.sleep(delay)
        finally:
            report.seconds = self.clock() - t0
            report.pending_lines = self.store.stats().pending_lines
        return report

    def send_now(self, body: bytes | Sequence[str | bytes], *, source: str = "") -> FlushReport:
        """Send line protocol straight to the sink, bypassing the outbox -- for
        backfills, whose source of truth is the session log. ``body`` is either bytes
        split at every newline (columnar output) or a sequence of lines (row output,
        whose string fields may hold raw newlines).

        Batches go out in order, one request at a time; with a sink that can
        ``prepare`` (gzip) and ``post`` separately, the next batch is compressed while
        the current request is in flight. Refused lines still go to quarantine. At the
        first failure that is not about the data (server down, credentials, missing
        database) everything not yet delivered is queued in the outbox instead, so
        nothing is lost; then :class:`AuthError` / :class:`StoreError` is raised as in
        :meth:`flush`, or the report says ``finished=False`` for a transient failure.
        """
        from concurrent.futures import Future, ThreadPoolExecutor

        import numpy as np

        report = FlushReport()
        t0 = self.clock()
        if isinstance(body, bytes):
            if body and not body.endswith(b"\n"):
                body += b"\n"
            ends = np.asarray(newline_ends(body), dtype=np.int64)
        else:
            body, line_ends = join_lines(body)
            ends = np.asarray(line_ends, dtype=np.int64)
        data: bytes = body
        cuts: list[tuple[int, int]] = []  # (first line, end line) of each batch
        start = 0
        while start < ends.size:
            base = int(ends[start - 1]) if start else 0
            stop = min(ends.size, start + self.batch_lines)
            fit = int(np.searchsorted(ends[start:stop], base + self.batch_bytes, side="right"))
            stop = start + max(1, fit)
            cuts.append((start, stop))
            start = stop

        def make(i: int) -> Batch:
            a, b = cuts[i]
            base = int(ends[a - 1]) if a else 0
            rel = cast(Sequence[int], ends[a:b] - base)
            return Batch((), data[base : int(ends[b - 1])], rel, (source,))

        prepare = getattr(self.sink, "prepare", None)
        post = getattr(self.sink, "post", None)
        pool = ThreadPoolExecutor(1) if prepare and post else None
        delivered = 0
        try:
            in_flight: Future[WriteOutcome] | None = None
            for i in range(len(cuts)):
                batch = make(i)
                if pool is not None and prepare is not None and post is not None:
                    if in_flight is None:
                        in_flight = pool.submit(post, prepare(batch.body))
                    nxt = make(i + 1) if i + 1 < len(cuts) else None
                    prepared_next = prepare(nxt.body) if nxt is not None else None
                    first = in_flight.result()
                    in_flight = None
                    outcome = self._deliver(batch, report, first=first, bookkeeping=False)
                    if outcome is None and prepared_next is not None:
                        in_flight = pool.submit(post, prepared_next)
                else:
                    outcome = self._deliver(batch, report, bookkeeping=False)
                if outcome is not None:
                    first_line = cuts[i][0]
                    base = int(ends[first_line - 1]) if first_line else 0
                    rest = (ends[first_line:] - base).tolist()
                    self.store.add_ends(data[base:], rest, source=source)
                    report.last_error = f"{self.sink.where}: {outcome.message}"
                    self._raise_if_fatal(outcome, report)
                    self.store.record_error(report.last_error)
                    return report
                delivered += 1
            report.finished = True
            return report
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            if delivered:
                self.store.note_delivered(report.sent_lines)
            report.seconds = self.clock() - t0
            report.pending_lines = self.store.stats().pending_lines

    def _raise_if_fatal(self, stop: WriteOutcome, report: FlushReport) -> None:
        if stop.verdict is Verdict.AUTH and stop.status == 0:  # TLS: no HTTP answer at all
            self.store.record_error(report.last_error)
            raise AuthError(
                f"{self.sink.where}: {stop.message}. Sending stopped; fix ca_bundle / "
                "verify_tls in the config, nothing is lost (data stays in the outbox)."
            )
        if stop.verdict is Verdict.AUTH:
            self.store.record_error(report.last_error)
            raise AuthError(
                f"{self.sink.where} refused the credentials (HTTP {stop.status}): "
                f"{stop.message}. Sending stopped; fix username/password or token "
                "in the config, nothing is lost (data stays in the outbox)."
            )
        if stop.verdict is Verdict.MISSING:
            self.store.record_error(report.last_error)
            raise StoreError(
                f"{self.sink.where}: {stop.message} (HTTP {stop.status}). Was the "
                "database/bucket deleted or misspelt? Sending stopped; the data "
                "stays in the outbox until it exists again."
            )

    def _deliver(
        self,
        batch: Batch,
        report: FlushReport,
        *,
        first: WriteOutcome | None = None,
        bookkeeping: bool = True,
    ) -> WriteOutcome | None:
        """Send one batch (``first``: its answer, when already sent); ``None`` when it is
        settled (delivered and/or quarantined). ``bookkeeping=False`` skips the store's
        per-batch success record when nothing was refused (the caller records once)."""
        refused: list[tuple[bytes, str, int]] = []
        outcome = self.sink.write(batch.body) if first is None else first
        report.requests += 1
        if outcome.verdict in (Verdict.TOO_LARGE, Verdict.REFUSED):
            lines = batch.lines()
            if (
                outcome.verdict is Verdict.REFUSED
                and outcome.dropped is not None
                and outcome.dropped == len(lines)
            ):
                # the server refused every line for the same reason: no need to bisect
                refused = [(line, outcome.message, outcome.status) for line in lines]
                outcome = WriteOutcome(Verdict.ACCEPTED, outcome.status, "")
            elif len(lines) == 1:
                refused = [(lines[0], outcome.message, outcome.status)]
                outcome = WriteOutcome(Verdict.ACCEPTED, outcome.status, "")
            else:
                mid = len(lines) // 2
                stop = self._bisect(lines[:mid], refused, report) or self._bisect(
                    lines[mid:], refused, report
                )
                if stop is not None:
                    return stop
                outcome = WriteOutcome(Verdict.ACCEPTED, 204, "")
        if outcome.verdict is not Verdict.ACCEPTED:
            return outcome
        by_message: dict[tuple[str, int], list[bytes]] = {}
        for line, message, status in refused:
            by_message.setdefault((message, status), []).append(line)
        for (message, status), lines in by_message.items():  # one log line per reason
            log.error(
                "%s refused %d line(s) (HTTP %d): %s -- quarantined; first: %r",
                self.sink.where,
                len(lines),
                status,
                message,
                lines[0][:200],
            )
        if bookkeeping or refused or batch.chunk_ids or batch.partial:
            self.store.settle(batch, refused, sink=self.sink.where, count=bookkeeping)
        report.sent_lines += batch.n_lines - len(refused)
        report.quarantined += len(refused)
        return None

    def _bisect(
        self, lines: list[bytes], refused: list[tuple[bytes, str, int]], report: FlushReport
    ) -> WriteOutcome | None:
        outcome = self.sink.write(b"".join(lines))
        report.requests += 1
        if outcome.verdict is Verdict.ACCEPTED:
            return None
        if outcome.verdict in (Verdict.TOO_LARGE, Verdict.REFUSED):
            if outcome.dropped is not None and outcome.dropped == len(lines):
                refused.extend((line, outcome.message, outcome.status) for line in lines)
                return None
            if len(lines) == 1:
                message = outcome.message
                if outcome.verdict is Verdict.TOO_LARGE:
                    message = f"line of {len(lines[0])} bytes is over the server's limit: {message}"
                refused.append((lines[0], message, outcome.status))
                return None
            mid = len(lines) // 2
            return self._bisect(lines[:mid], refused, report) or self._bisect(
                lines[mid:], refused, report
            )
        return outcome

    async def run(self, stop: asyncio.Event, *, interval_s: float = 10.0) -> None:
        """The daemon's sender task: flush every ``interval_s``; back off on transient
        failures; after an auth or missing-database error wait ``backoff.max_s`` (one
        loud log line per occurrence, no retry storm). Returns when ``stop`` is set."""
        import asyncio

        failures = 0
        while not stop.is_set():
            wait = interval_s
            try:
                report = await asyncio.to_thread(self.flush, max_retries=0)
                if report.finished:
                    failures = 0
                else:
                    wait = self.backoff.delay_s(failures)
                    failures += 1
            except AuthError as exc:
                log.error("SENDING STOPPED: %s", exc)
                wait = self.backoff.max_s
            except StoreError as exc:
                log.error("SENDING PAUSED: %s", exc)
                wait = self.backoff.max_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
