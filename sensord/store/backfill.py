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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sensord.config import Config
from sensord.errors import StoreError
from sensord.store import points
from sensord.store.lineproto import schema_columns, schema_line
from sensord.store.local import LocalStore
from sensord.store.sender import FlushReport, Sender

CONNECTED_EVENTS = frozenset({"connected", "services", "subscribed", "setup"})


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


def night_points(
    session: Any,
    *,
    participant: str,
    tz: str,
    roles: Mapping[str, str],
    score: Callable[..., Any] | None = None,
) -> tuple[bytes, list[str], dict[str, Any] | None, dict[str, list[Any]]]:
    """All points of one decoded session: the columnar lines (split at newlines), the
    row lines (device events, the night; their string fields may hold raw newlines),
    the night summary (``None`` without scoring) and the epoch columns for the local
    store."""
    # scored first: the sample lines need not be held while the night's arrays are at
    # their peak (they come first in the body all the same)
    result = score(session.night, tz=tz) if score is not None else None
    body: list[bytes] = []
    report = session.report
    for name, dev in sorted(report.devices.items()):
        role = roles.get(name, "other")
        tags = {"participant": participant, "device_role": role}
        hr = dev.get("hr")
        if hr is not None and len(hr):
            body.append(points.heart_rate_lines(participant, role, hr))
        beats = dev.get("beats")
        if beats is not None and len(beats):
            body.append(points.beat_lines(participant, role, beats))
        battery = dev.get("battery")
        if battery is not None and len(battery):
            pct = np.asarray(battery.battery_pct, dtype=np.float64)
            ok = np.isfinite(pct)
            body.append(
                schema_columns(
                    "device_battery",
                    tags,
                    battery.t_ns[ok],
                    {"battery_pct": np.rint(pct[ok]).astype(np.int64)},
                )
            )
    events = []
    last_t: dict[str, int] = {}
    for ev in report.device_events:
        role = roles.get(ev.device, "other")
        # events of one device in the same nanosecond would overwrite each other: keep them
        # apart by 1 ns each, in log order (deterministic, so backfills stay idempotent)
        t = max(int(ev.wall_ns), last_t.get(role, -1) + 1)
        last_t[role] = t
        events.append(
            schema_line(
                "device_event",
                {"participant": participant, "device_role": role},
                {
                    "event": ev.kind,
                    "connected": ev.kind in CONNECTED_EVENTS,
                    "detail": ev.detail or None,
                },
                t,
            )
        )

    if result is None:
        return b"".join(body), events, None, {}
    hyp = result.hypnogram
    scorer = hyp.scorer
    t_ep = np.asarray(result.features["t_ns"], dtype=np.int64)
    summary = dict(result.summary)
    label = summary.get("night") or ""
    if t_ep.size:
        body.append(
            points.epoch_lines(
                participant, scorer, t_ep, hyp.stages, hyp.probabilities, final=True, night=label
            )
        )
        body.append(points.epoch_feature_lines(participant, scorer, t_ep, result.features))
        for name, dev in sorted(report.devices.items()):
            cols = {}
            for stream, key in (("hr", "hr_coverage_frac"), ("acc", "acc_coverage_frac")):
                s = dev.get(stream)
                if s is not None and len(s):
                    cols[key] = points.coverage_per_epoch(s.t_ns, t_ep)
            if cols:
                body.append(
                    points.coverage_lines(participant, roles.get(name, "other"), t_ep, cols)
                )
        summary.update(participant=participant, scorer=scorer, final=True)
        events.append(points.night_line(participant, scorer, summary))
    epochs = {
        "t_ns": t_ep.tolist(),
        "stage": np.asarray(hyp.stages, dtype=np.int64).tolist(),
        **{
            f"p_{name}": [None if np.isnan(v) else float(v) for v in col.tolist()]
            for name, col in zip(
                ("wake", "light", "deep", "rem"), np.asarray(hyp.probabilities).T, strict=True
            )
        },
        **{
            key: [None if (isinstance(v, float) and np.isnan(v)) else v for v in arr.tolist()]
            for key, arr in result.features.items()
            if key != "t_ns"
        },
    }
    return b"".join(body), events, summary, epochs


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
