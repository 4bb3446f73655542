"""Backfill: session logs -> decode -> score -> InfluxDB (I/O: reads logs, writes the store).

Re-derives everything a night produces from its session log (the source of truth):
heart rate, beats, battery, device events, per-epoch coverage, epochs with stages and
probabilities, epoch features and the night summary. The points are the same whenever
the same log is backfilled (timestamps and tags come from the log, the scorer version
from the model), so running it twice overwrites instead of duplicating.

One log per night (what the daemon and ``sensord simulate`` write). Points go straight
to the sink (:meth:`Sender.send_now`); whatever cannot be delivered waits in the outbox.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sensord.config import Config
from sensord.errors import StoreError
from sensord.store.local import LocalStore
from sensord.store.nightpoints import CONNECTED_EVENTS, night_points
from sensord.store.sender import FlushReport, Sender

__all__ = ["CONNECTED_EVENTS", "BackfillReport", "NightBackfill", "backfill", "night_points"]


@dataclass
class NightBackfill:
    """What one log produced."""

    log: str
    participant: str
    night: str | None
    scorer: str
    points: int
    sent: FlushReport | None = None


@dataclass
class BackfillReport:
    nights: list[NightBackfill] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(n.points for n in self.nights)

    @property
    def sent(self) -> int:
        return sum(n.sent.sent_lines for n in self.nights if n.sent)

    @property
    def quarantined(self) -> int:
        return sum(n.sent.quarantined for n in self.nights if n.sent)

    @property
    def finished(self) -> bool:
        return all(n.sent is not None and n.sent.finished for n in self.nights)


def backfill(
    paths: Iterable[str | Path],
    cfg: Config,
    *,
    store: LocalStore,
    sender: Sender | None,
    participant: str | None = None,
    scoring: bool = True,
    on_night: Callable[[NightBackfill], None] | None = None,
    check_participant: Callable[[str], object] | None = None,
) -> BackfillReport:
    """Backfill each log (one night each); ``sender=None`` only queues in the outbox.

    ``check_participant`` (the CLI passes the study's pseudonym check) sees each log's
    participant before anything of that log is stored and raises to refuse it.
    """
    from sensord import pipeline

    score: Callable[..., Any] | None = None
    if scoring:
        from sensord.staging.core import score_night

        score = score_night
    roles = {d.name: d.role for d in cfg.devices}
    report = BackfillReport()
    for path in paths:
        session = pipeline.load_session([path])
        headers = session.report.headers
        who = participant or (headers[0].participant if headers else "") or cfg.participant_id
        tz = (headers[0].tz if headers else "") or cfg.timezone
        if check_participant is not None:
            check_participant(who)
        body, rows, summary, epochs = night_points(
            session, participant=who, tz=tz, roles=roles, score=score
        )
        label = summary.get("night") if summary else None
        scorer = str(summary.get("scorer", "")) if summary else ""
        if summary is not None and label:
            store.put_night(
                {k: v for k, v in summary.items() if not isinstance(v, dict)},
                epochs=epochs,
                queue=False,
            )
        item = NightBackfill(str(path), who, label, scorer, body.count(b"\n") + len(rows))
        source = f"backfill {Path(path).name}"
        if sender is None:
            store.add_body(body, source=source)
            store.add_lines(rows, source=source)
        else:
            item.sent = sender.send_now(body, source=source)
            if item.sent.finished:
                more = sender.send_now(rows, source=source)
                item.sent.sent_lines += more.sent_lines
                item.sent.quarantined += more.quarantined
                item.sent.requests += more.requests
                item.sent.finished = more.finished
                item.sent.last_error = more.last_error
            else:
                store.add_lines(rows, source=source)
        report.nights.append(item)
        if on_night is not None:
            on_night(item)
        if item.sent is not None and not item.sent.finished:
            raise StoreError(
                f"backfill of {path}: {item.sent.last_error}; the rest of this night waits in "
                "the outbox (sensord push), later logs were not started"
            )
    return report
