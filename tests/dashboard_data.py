"""A small study in InfluxDB for the dashboard tests, written by sensord's own code path.

Two participants, seven nights each in Europe/Berlin (evenings 2026-03-01 .. 2026-03-07); the
second participant misses the night of 2026-03-04. For every night:

* **simulate**: :mod:`sensord.simulate` (the logs area's night model; kratom evenings get
  ``NightEffects(rem_scale=0.6, waso_extra_min=40)`` on the following night). The last night
  of each participant is simulated in full: a Polar H10 (heart rate with RR, 25-Hz PMD
  accelerometer, disconnects) whose notifications go through the real
  :class:`sensord.pipeline.Pipeline` decoders. The other nights use the simulator's
  hypnogram and beat model only (no BLE payloads), to keep the test fast.
* **score**: the staging core (:mod:`sensord.staging`): epoch grid, heart rate, NN correction
  and RMSSD per epoch, ActiGraph counts, coverage, :class:`~sensord.staging.hypnogram.Hypnogram`
  and :func:`~sensord.staging.metrics.night_metrics`. The stages are the simulator's ground
  truth (scorer ``sim-truth@1``, one-hot probabilities), unscored where the heart-rate data
  cover less than half of the epoch, because the staging area's trained scorer is not merged
  yet.
* **store**: :mod:`sensord.store.points` builders, ``LocalStore.put_night``, the annotate
  area's records (:mod:`sensord.annotate` -> :class:`sensord.notebook.NoteBook`) into the
  real SQLite outbox, then the real :class:`~sensord.store.sender.Sender` with an
  :class:`~sensord.store.sinks.Influx1Sink`.

Pain ratings at bedtime and on waking, kratom on some evenings, coffee most mornings, a sleep
diary every morning. The Pi's ``sender_status`` points (which no sender writes yet) are
added to the outbox with :func:`sensord.store.points.sender_status_line`. Everything is fixed
by seeds; the clock is never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sensord import annotate as an
from sensord import simulate as sim
from sensord.model import BeatStream, DeviceEvent, RawNotification
from sensord.notebook import NoteBook
from sensord.pipeline import Pipeline
from sensord.staging import cardiac, epochs, motion
from sensord.staging.hypnogram import Hypnogram
from sensord.staging.metrics import night_metrics
from sensord.store import points
from sensord.store.local import LocalStore
from sensord.store.sender import Sender
from sensord.store.sinks import Influx1Sink
from tests.influx import InfluxDB

S_NS = 1_000_000_000
EPOCH_NS = 30 * S_NS
TZ = "Europe/Berlin"
PARTICIPANTS = ("p01", "p02")
SEEDS = {"p01": 19, "p02": 12}
SCORER = "sim-truth@1"
ROLE = "chest"
NIGHTS = tuple(f"2026-03-0{d}" for d in range(1, 8))
MISSING = {("p02", "2026-03-04")}
SUBSTANCE_NIGHTS = {
    "kratom": ("2026-03-01", "2026-03-03", "2026-03-05", "2026-03-06", "2026-03-07")
}
"""Evenings with a kratom dose (both participants)."""
KRATOM = sim.NightEffects(rem_scale=0.6, waso_extra_min=40.0)
SIM_TO_CODE = np.array([0, 1, 1, 2, 3], dtype=np.int8)
"""Simulator stages W, N1, N2, N3, R -> schema stage codes wake, light, light, deep, rem."""


@dataclass
class Study:
    """What :func:`fill` wrote, for choosing time ranges and variable values in the tests."""

    nights: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    """(participant, night label) -> (first epoch start ns, end ns)."""
    summaries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """(participant, night label) -> the night summary stored."""
    stages: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    """(participant, night label) -> stage code per epoch (schema STAGE_CODES)."""
    lines_sent: int = 0

    @property
    def span_ns(self) -> tuple[int, int]:
        starts = [s for s, _ in self.nights.values()]
        ends = [e for _, e in self.nights.values()]
        return min(starts) - 12 * 3600 * S_NS, max(ends) + 12 * 3600 * S_NS


def sim_config(p: str) -> sim.SimConfig:
    effects = tuple(KRATOM if n in SUBSTANCE_NIGHTS["kratom"] else sim.NightEffects()
                    for n in NIGHTS)  # fmt: skip
    return sim.SimConfig(
        seed=SEEDS[p], start_local=f"{NIGHTS[0]}T23:00", tz=TZ, nights=len(NIGHTS),
        profile="polar_h10", acc_rate_hz=25.0, effects=effects, disconnects_per_night=2.0,
        participant=p,
    )  # fmt: skip


def _decode(cfg: sim.SimConfig, night: sim.SimNight) -> Pipeline:
    """The night's notifications and device events through the daemon's pipeline."""
    walls, items = sim.night_events(cfg, night)
    pipe = Pipeline()
    dev = cfg.device_id()
    for wall, item in zip(walls.tolist(), items, strict=True):
        if isinstance(item, DeviceEvent):
            pipe.feed(DeviceEvent(item.device, item.kind, wall, wall, item.detail))
        else:
            pipe.feed(RawNotification(dev, item[0], wall, wall, item[1]))
    pipe.end_session()
    return pipe


def _epoch_sd(grid: epochs.EpochGrid, t_ns: np.ndarray, x: np.ndarray) -> np.ndarray:
    mean = epochs.epoch_mean(grid, t_ns, x)
    mean_sq = epochs.epoch_mean(grid, t_ns, x * x)
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


def _night(store: LocalStore, p: str, cfg: sim.SimConfig, k: int, full: bool, study: Study) -> None:
    label = NIGHTS[k]
    start = sim.night_starts_ns(cfg)[k]
    lines: list[bytes] = []
    if full:
        night = sim.simulate_night(cfg, k, start_ns=start)
        pipe = _decode(cfg, night)
        streams = pipe.night()
        truth = night.stage
        beats, hr, acc = streams.beats, streams.hr, streams.acc
        assert beats is not None and hr is not None and acc is not None
    else:
        rng = np.random.default_rng([cfg.seed, k])
        truth = sim.simulate_hypnogram(int(cfg.duration_h * 120), rng, cfg.effects_for(k))
        beat_s, _, _ = sim.simulate_beats(truth, rng, cfg.effects_for(k))
        beats = BeatStream(start + np.round(beat_s[1:] * S_NS).astype(np.int64),
                           np.diff(beat_s) * 1000.0)  # fmt: skip
        hr = acc = None
    grid = epochs.EpochGrid(start, int(truth.size))
    end = grid.end_ns
    nn = cardiac.correct_rr(beats)
    rmssd = cardiac.hrv_per_epoch(grid, nn)["rmssd_ms"]
    if hr is not None:
        hr_epoch = epochs.epoch_mean(grid, hr.t_ns, hr.hr_bpm)
        hr_cov = epochs.second_coverage(grid, hr.t_ns)
    else:
        hr_epoch = cardiac.hr_from_nn(grid, nn)
        hr_cov = epochs.interval_coverage(
            grid, beats.t_ns, np.round(beats.rr_ms * 1e6).astype(np.int64)
        )
    codes = SIM_TO_CODE[truth]
    codes[hr_cov < 0.5] = -1
    proba = np.full((grid.n, 4), np.nan)
    scored = codes >= 0
    proba[scored] = np.eye(4)[codes[scored]]
    hyp = Hypnogram(start, codes, proba, SCORER)
    m = night_metrics(hyp, hr_bpm=hr_epoch, rmssd_ms=rmssd)
    lines.append(points.epoch_lines(p, SCORER, grid.t_ns, codes, proba, final=True, night=label))
    acc_cov = hr_cov
    if full:
        assert hr is not None and acc is not None
        lines.append(points.heart_rate_lines(p, ROLE, hr))
        lines.append(points.beat_lines(p, ROLE, beats))
        counts = motion.counts_from_stream(acc)
        idx = epochs.epoch_index(grid, counts.t_ns)
        ok = idx >= 0
        act = np.bincount(idx[ok], weights=counts.counts[ok], minlength=grid.n)[: grid.n]
        acc_cov = epochs.second_coverage(grid, acc.t_ns)
        feats = {
            "hr_mean_bpm": hr_epoch,
            "rmssd_ms": rmssd,
            "activity_counts": np.where(acc_cov > 0, act, np.nan),
            "acc_std_g": _epoch_sd(grid, acc.t_ns, np.linalg.norm(acc.acc_g, axis=1)),
            "coverage_frac": hr_cov,
        }
        lines.append(points.epoch_feature_lines(p, SCORER, grid.t_ns, feats))
        for ev in pipe.device_events:
            line = points.device_event_line(
                p, ROLE, ev.wall_ns, ev.kind, connected=ev.kind != "disconnected", detail=ev.detail
            )
            lines.append(line.encode() + b"\n")
        battery = pipe.devices[cfg.device_id()].get("battery")
        for t_ns, pct in zip(battery.t_ns.tolist(), battery.battery_pct.tolist(), strict=True):
            lines.append(points.battery_line(p, ROLE, t_ns, int(pct)).encode() + b"\n")
    else:
        level = 90 - 6 * k
        for h in range(0, (end - start) // (3600 * S_NS) + 1):
            t_ns = start + h * 3600 * S_NS
            lines.append(points.battery_line(p, ROLE, t_ns, max(level - h, 3)).encode() + b"\n")
        for t_ns, kind in ((start - 60 * S_NS, "connected"), (end + 60 * S_NS, "disconnected")):
            line = points.device_event_line(p, ROLE, t_ns, kind, connected=kind == "connected")
            lines.append(line.encode() + b"\n")
    lines.append(
        points.coverage_lines(
            p, ROLE, grid.t_ns, {"hr_coverage_frac": hr_cov, "acc_coverage_frac": acc_cov}
        )
    )
    for body in lines:
        store.add_body(body, source="dashboard-study")
    summary = {
        "participant": p, "scorer": SCORER, "night": label, "start_ns": start, "end_ns": end,
        "final": True, "scored_frac": m["coverage"],
        **{k2: m[k2] for k2 in ("tib_min", "tst_min", "sol_min", "waso_min", "se_pct",
                                "awakenings", "light_min", "deep_min", "rem_min",
                                "rem_latency_min", "hr_mean_bpm", "hr_min_bpm", "rmssd_ms")
           if m.get(k2) is not None},
    }  # fmt: skip
    store.put_night(summary)
    study.nights[(p, label)] = (start, end)
    study.summaries[(p, label)] = summary
    study.stages[(p, label)] = codes
    _annotations(store, p, label, start, end)
    _status(store, p, start, end, np.random.default_rng([cfg.seed, k, 3]))


def _annotations(store: LocalStore, p: str, label: str, start: int, end: int) -> None:
    """What the participant enters, through the annotate area's model and notebook."""
    k = NIGHTS.index(label)
    now = end + 2 * 3600 * S_NS  # entered in the morning at the latest
    pain = 3 + (k * 5) % 6
    records = [
        an.pain(pain, "bedtime", now_ns=now, tz=TZ, at=start - 20 * 60 * S_NS,
                body_site="lower back"),
        an.pain(max(pain - 2, 0), "morning", now_ns=now, tz=TZ, at=end + 10 * 60 * S_NS),
        an.diary(now_ns=now, tz=TZ, night=label, in_bed="22:40", tried_sleep="22:50",
                 sol_min=15, awakenings=1, waso_min=10, final_wake="06:30", out_of_bed="06:45",
                 quality=2 + k % 4, rested=3),
    ]  # fmt: skip
    if label in SUBSTANCE_NIGHTS["kratom"]:
        records.append(an.substance("kratom", now_ns=now, tz=TZ, dose=2.5, unit="g",
                                    form="powder", at=start - 90 * 60 * S_NS))  # fmt: skip
    if k % 3 != 2:  # coffee most mornings
        coffee = an.substance("caffeine", now_ns=now, tz=TZ, dose=95 + 10 * (k % 3), unit="mg",
                              form="drink", at=start - 14 * 3600 * S_NS)  # fmt: skip
        records.append(coffee)
    book = NoteBook(store, p)
    book.append(records)
    if p == "p01" and k == len(NIGHTS) - 1:
        # entered by mistake, then deleted: must not show on any dashboard
        wrong = an.substance("alcohol", now_ns=now, tz=TZ, dose=2, unit="standard drinks",
                             at=start - 60 * 60 * S_NS)  # fmt: skip
        book.append([wrong])
        book.append([an.delete(book.history(), wrong, now_ns=now)])


def _status(store: LocalStore, p: str, start: int, end: int, rng: np.random.Generator) -> None:
    backlog, last_ok = 0, 0
    out = []
    for h in range(0, (end - start) // (3600 * S_NS) + 2):
        t_ns = start + h * 3600 * S_NS
        backlog += int(rng.integers(3000, 6000))
        ok = bool(rng.uniform() > 0.2)
        if ok:
            backlog, last_ok = 0, t_ns
        out.append(points.sender_status_line(p, t_ns, backlog_points=backlog,
                                             quarantined_points=0, push_ok=ok,
                                             last_ok_ns=last_ok))  # fmt: skip
    store.add_lines(out, source="dashboard-study")


def fill(
    db: InfluxDB, workdir: Path, *, full: bool = True, auth: tuple[str, str] = ("", "")
) -> Study:
    """Simulate, score and store the study, then push the outbox into ``db``.

    ``full=False`` skips the BLE-level simulation of the last nights (no samples stored):
    enough for the Person and Operations dashboards.
    """
    study = Study()
    with LocalStore(workdir / "outbox.sqlite") as store:
        for p in PARTICIPANTS:
            cfg = sim_config(p)
            for k, label in enumerate(NIGHTS):
                if (p, label) not in MISSING:
                    last = full and k == len(NIGHTS) - 1
                    _night(store, p, cfg, k, full=last, study=study)
        sink = Influx1Sink(db.url, db.name, username=auth[0], password=auth[1], gzip_body=False)
        try:
            report = Sender(store, sink, batch_lines=20_000, batch_bytes=4_000_000).flush()
        finally:
            sink.close()
        if not report.finished or report.quarantined:
            raise RuntimeError(f"push incomplete: {report}")
        study.lines_sent = report.sent_lines
    return study
