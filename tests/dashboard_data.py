"""A small study in InfluxDB for the dashboard tests, written by sensord's own code path.

Two participants, seven nights each in Europe/Berlin (evenings 2026-03-01 .. 2026-03-07); the
second participant misses the night of 2026-03-04. Kratom evenings get
``NightEffects(rem_scale=0.6, waso_extra_min=40)`` on the following night.

* **Last night of each participant, the production path**: :mod:`sensord.simulate` writes a
  session log of a Polar H10 (heart rate with RR, 25-Hz PMD accelerometer, disconnects) and
  :func:`sensord.store.backfill.backfill` replays it exactly as ``sensord backfill`` does:
  pipeline decoding, :func:`sensord.staging.core.score_night` with the shipped model, the
  store's point builders, the local outbox.
* **The other nights, a lighter path** to keep the test fast: the simulator's hypnogram and
  beat model (no BLE payloads) scored by the same ``score_night`` and written with the same
  point builders; battery and connection events are synthetic.
* **Annotations** as participants enter them: :mod:`sensord.annotate` records (pain at bedtime
  and on waking, kratom on some evenings, coffee most mornings, a sleep diary, one mistaken
  entry deleted) through :class:`sensord.notebook.NoteBook` into the same outbox.
* The Pi's ``sender_status`` points (the daemon queues them before each push; this study
  writes them directly, the daemon's own are checked in tests/test_daemon_night.py) via
  :func:`sensord.store.points.sender_status_line`.

Then the real :class:`~sensord.store.sender.Sender` pushes the outbox through an
:class:`~sensord.store.sinks.Influx1Sink`. Everything is fixed by seeds; the clock is never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sensord import annotate as an
from sensord import simulate as sim
from sensord.config import Config, DeviceConfig
from sensord.model import BeatStream, NightStreams
from sensord.notebook import NoteBook
from sensord.staging.core import score_night
from sensord.store import points
from sensord.store.backfill import backfill
from sensord.store.local import LocalStore
from sensord.store.sender import Sender
from sensord.store.sinks import Influx1Sink
from tests.influx import InfluxDB

S_NS = 1_000_000_000
EPOCH_NS = 30 * S_NS
TZ = "Europe/Berlin"
PARTICIPANTS = ("p01", "p02")
SEEDS = {"p01": 19, "p02": 12}
ROLE = "chest"
NIGHTS = tuple(f"2026-03-0{d}" for d in range(1, 8))
MISSING = {("p02", "2026-03-04")}
SUBSTANCE_NIGHTS = {
    "kratom": ("2026-03-01", "2026-03-03", "2026-03-05", "2026-03-06", "2026-03-07")
}
"""Evenings with a kratom dose (both participants)."""
KRATOM = sim.NightEffects(rem_scale=0.6, waso_extra_min=40.0)


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
    scorer: str = ""

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


def _app_config(p: str) -> Config:
    return Config(
        participant_id=p,
        timezone=TZ,
        devices=(DeviceConfig("polar_h10", "A0:C0:00:00:00:01", "polar_h10", ROLE),),
    )


def _full_night(store: LocalStore, p: str, cfg: sim.SimConfig, k: int, workdir: Path) -> None:
    """The production path: a session log of Polar H10 notifications, then ``backfill``
    (load_session -> score_night -> points), queued in the outbox."""
    night = sim.simulate_night(cfg, k)
    log = workdir / f"{p}_{NIGHTS[k]}.blelog"
    sim.write_night_log(cfg, night, log, boot_wall_ns=night.start_ns - 3600 * S_NS)
    report = backfill([log], _app_config(p), store=store, sender=None)
    (item,) = report.nights
    if item.night != NIGHTS[k]:
        raise RuntimeError(f"{log}: scored as night {item.night}, expected {NIGHTS[k]}")


def _history_night(store: LocalStore, p: str, cfg: sim.SimConfig, k: int) -> None:
    """A lighter path for the other nights: the simulator's hypnogram and beats scored by
    ``score_night`` (no BLE payloads), the same point builders, and device status."""
    start = sim.night_starts_ns(cfg)[k]
    rng = np.random.default_rng([cfg.seed, k])
    truth = sim.simulate_hypnogram(int(cfg.duration_h * 120), rng, cfg.effects_for(k))
    beat_s, _, _ = sim.simulate_beats(truth, rng, cfg.effects_for(k))
    beats = BeatStream(start + np.round(beat_s[1:] * S_NS).astype(np.int64),
                       np.diff(beat_s) * 1000.0)  # fmt: skip
    end = start + truth.size * EPOCH_NS
    result = score_night(NightStreams(start, end, beats=beats), tz=TZ)
    hyp = result.hypnogram
    t_ep = np.asarray(result.features["t_ns"], dtype=np.int64)
    summary = dict(result.summary)
    summary.update(participant=p, scorer=hyp.scorer, final=True)
    if summary.get("night") != NIGHTS[k]:
        raise RuntimeError(f"{p} night {k}: labelled {summary.get('night')}, not {NIGHTS[k]}")
    cover = points.coverage_per_epoch(beats.t_ns, t_ep)
    bodies = [
        points.epoch_lines(p, hyp.scorer, t_ep, hyp.stages, hyp.probabilities, final=True,
                           night=NIGHTS[k]),
        points.epoch_feature_lines(p, hyp.scorer, t_ep, result.features),
        points.coverage_lines(p, ROLE, t_ep, {"hr_coverage_frac": cover}),
    ]  # fmt: skip
    lines = [points.night_line(p, hyp.scorer, summary)]
    level = 90 - 6 * k
    for h in range(0, (end - start) // (3600 * S_NS) + 1):
        lines.append(points.battery_line(p, ROLE, start + h * 3600 * S_NS, max(level - h, 3)))
    for t_ns, kind in ((start - 60 * S_NS, "connected"), (end + 60 * S_NS, "disconnected")):
        lines.append(points.device_event_line(p, ROLE, t_ns, kind, connected=kind == "connected"))
    for body in bodies:
        store.add_body(body, source="dashboard-study")
    store.add_lines(lines, source="dashboard-study")
    store.put_night(
        {key: v for key, v in summary.items() if not isinstance(v, dict)},
        epochs={"t_ns": t_ep.tolist(), "stage": np.asarray(hyp.stages).tolist()},
        queue=False,
    )


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

    ``full=False`` takes the lighter path for the last nights too (no samples, no session
    log): enough for the Person and Operations dashboards.
    """
    study = Study()
    with LocalStore(workdir / "outbox.sqlite") as store:
        for p in PARTICIPANTS:
            cfg = sim_config(p)
            for k, label in enumerate(NIGHTS):
                if (p, label) in MISSING:
                    continue
                if full and k == len(NIGHTS) - 1:
                    _full_night(store, p, cfg, k, workdir)
                else:
                    _history_night(store, p, cfg, k)
                (summary,) = [r for r in store.list_nights(p) if r["night"] == label]
                scorer = str(summary["scorer"])
                study.scorer = scorer
                start, end = int(summary["start_ns"]), int(summary["end_ns"])
                study.nights[(p, label)] = (start, end)
                study.summaries[(p, label)] = summary
                stages = store.get_night_epochs(p, label, scorer)["stage"]
                study.stages[(p, label)] = np.asarray(stages, dtype=np.int64)
                _annotations(store, p, label, start, end)
                _status(store, p, start, end, np.random.default_rng([cfg.seed, k, 3]))
        sink = Influx1Sink(db.url, db.name, username=auth[0], password=auth[1], gzip_body=False)
        try:
            report = Sender(store, sink, batch_lines=20_000, batch_bytes=4_000_000).flush()
        finally:
            sink.close()
        if not report.finished or report.quarantined:
            raise RuntimeError(f"push incomplete: {report}")
        study.lines_sent = report.sent_lines
    return study
