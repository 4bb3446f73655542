"""A small study in InfluxDB for the dashboard tests: nights, samples, devices, annotations.

Every point goes through the store's own point builders (:mod:`sensord.store.points`, the code
the daemon and ``sensord backfill`` use) or, where it has none (night summaries, annotations),
through its line-protocol encoder (``schema_line``); both validate names, tags and types
against :mod:`sensord.store.schema`. The values are synthetic but plausible (a 90-minute
sleep cycle structure, heart rate falling in deep sleep, RR = 60000 / HR), fixed by a seed, and
the clock is never read.

Study: two participants, seven nights (2026-03-01 .. 2026-03-07, evenings in UTC), the second
participant misses the night of 2026-03-04. Heart rate (1 Hz) and beats for the last night of
each participant; epochs, features, coverage, summaries, batteries, connection events,
annotations and the Pi's push status for every night.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from sensord.model import BeatStream, HeartRateStream
from sensord.store import lineproto, points
from sensord.store import schema as sch
from tests.influx import InfluxDB

S_NS = 1_000_000_000
EPOCH_NS = 30 * S_NS
PARTICIPANTS = ("p01", "p02")
SCORER = "hr-motion-lr@0.1.0"
NIGHTS = tuple(f"2026-03-0{d}" for d in range(1, 8))
MISSING = {("p02", "2026-03-04")}
SUBSTANCE_NIGHTS = {
    "kratom": ("2026-03-01", "2026-03-03", "2026-03-05", "2026-03-06", "2026-03-07")
}
"""Evenings with a dose (p01 and p02), so nights with and without exist in the range."""


@dataclass
class Study:
    """What :func:`fill` wrote, for choosing time ranges and variable values in the tests."""

    nights: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    """(participant, night label) -> (first epoch start ns, end ns)."""
    summaries: dict[tuple[str, str], dict[str, object]] = field(default_factory=dict)
    """(participant, night label) -> the night summary fields written."""
    points: int = 0

    @property
    def span_ns(self) -> tuple[int, int]:
        starts = [s for s, _ in self.nights.values()]
        ends = [e for _, e in self.nights.values()]
        return min(starts) - 12 * 3600 * S_NS, max(ends) + 12 * 3600 * S_NS


def _evening_ns(label: str, hour: float) -> int:
    day = datetime.strptime(label, "%Y-%m-%d").replace(tzinfo=UTC)
    return int(day.timestamp()) * S_NS + int(hour * 3600 * S_NS)


def hypnogram(n_epochs: int, rng: np.random.Generator) -> np.ndarray:
    """Stage codes (schema STAGE_CODES) with sleep onset, 90-min cycles, brief awakenings."""
    codes = sch.STAGE_CODES
    out = np.full(n_epochs, codes["light"], dtype=np.int64)
    onset = int(rng.integers(20, 40))
    out[:onset] = codes["wake"]
    cycle = 180  # epochs (90 min)
    for start in range(onset, n_epochs, cycle):
        k = (start - onset) // cycle
        deep = max(40 - 10 * k, 0)
        rem = 10 + 8 * k
        a = start + 30
        out[a : a + deep] = codes["deep"]
        b = min(start + cycle, n_epochs)
        out[max(b - rem, a + deep) : b] = codes["rem"]
    wakes = rng.choice(np.arange(onset + 10, n_epochs - 5), size=4, replace=False)
    for w in wakes:
        out[w : w + int(rng.integers(1, 5))] = codes["wake"]
    gap = int(rng.integers(onset + 50, n_epochs - 60))
    out[gap : gap + 6] = codes["unscored"]
    return out


def _write(db: InfluxDB, body: bytes | str, study: Study) -> None:
    data = body.encode() if isinstance(body, str) else body
    ans = db.write(data)
    if ans.status != 204:
        raise RuntimeError(f"write refused: {ans.status} {ans.text}")
    study.points += data.count(b"\n")


def fill(db: InfluxDB, *, seed: int = 7) -> Study:
    """Write the study into ``db``."""
    rng = np.random.default_rng(seed)
    study = Study()
    for p in PARTICIPANTS:
        lines: list[str] = []
        for label in NIGHTS:
            if (p, label) in MISSING:
                continue
            start = _evening_ns(label, 22.5 + float(rng.uniform(-0.4, 0.4)))
            start -= start % EPOCH_NS
            n = 960 - int(rng.integers(0, 60))
            end = start + n * EPOCH_NS
            study.nights[(p, label)] = (start, end)
            t = start + EPOCH_NS * np.arange(n, dtype=np.int64)
            stages = hypnogram(n, rng)
            scored = stages >= 0
            # probabilities: the true stage gets most of the mass
            prob = rng.dirichlet(np.ones(4), size=n) * 0.3
            prob[np.arange(n)[scored], stages[scored]] += 0.7
            prob[~scored] = np.nan
            tags_s = {sch.PARTICIPANT.name: p, sch.SCORER.name: SCORER}
            _write(
                db,
                points.epoch_lines(p, SCORER, t, stages, prob, final=True, night=label),
                study,
            )
            hr_epoch = np.where(stages == sch.STAGE_CODES["deep"], 52.0, 58.0)
            hr_epoch = hr_epoch + np.where(stages == sch.STAGE_CODES["wake"], 10.0, 0.0)
            hr_epoch += rng.normal(0, 1.5, n)
            rmssd = np.where(stages == sch.STAGE_CODES["deep"], 55.0, 40.0) + rng.normal(0, 4, n)
            counts = np.where(stages == sch.STAGE_CODES["wake"], 80.0, 2.0) * rng.uniform(
                0.5, 1.5, n
            )
            cover = np.where(scored, 1.0, 0.2)
            _write(
                db,
                points.epoch_feature_lines(
                    p,
                    SCORER,
                    t,
                    {
                        "hr_mean_bpm": np.where(scored, hr_epoch, np.nan),
                        "hr_std_bpm": np.where(scored, rng.uniform(1, 4, n), np.nan),
                        "rmssd_ms": np.where(scored, rmssd, np.nan),
                        "activity_counts": counts,
                        "acc_std_g": counts / 4000.0,
                        "coverage_frac": cover,
                    },
                ),
                study,
            )
            for role, hr_cov in (("chest", cover), ("wrist", np.minimum(cover, 0.95))):
                _write(
                    db,
                    points.coverage_lines(
                        p, role, t, {"hr_coverage_frac": hr_cov, "acc_coverage_frac": cover}
                    ),
                    study,
                )
            # summary, from the epochs (definitions as in docs/staging.md)
            sleep = np.isin(stages, [sch.STAGE_CODES[s] for s in ("light", "deep", "rem")])
            first = int(np.argmax(sleep))
            last = n - int(np.argmax(sleep[::-1]))
            wake_after = (stages[first:last] == sch.STAGE_CODES["wake"]).astype(np.int64)
            awakenings = int(np.sum(np.diff(np.concatenate([[0], wake_after])) == 1))
            rem_idx = np.flatnonzero(stages == sch.STAGE_CODES["rem"])
            summary = {
                "night": label,
                "final": True,
                "end_ns": end,
                "tib_min": n / 2,
                "tst_min": float(sleep.sum()) / 2,
                "sol_min": first / 2,
                "waso_min": float(wake_after.sum()) / 2,
                "se_pct": 100.0 * float(sleep.sum()) / n,
                "awakenings": awakenings,
                "light_min": float(np.sum(stages == sch.STAGE_CODES["light"])) / 2,
                "deep_min": float(np.sum(stages == sch.STAGE_CODES["deep"])) / 2,
                "rem_min": float(np.sum(stages == sch.STAGE_CODES["rem"])) / 2,
                "rem_latency_min": (int(rem_idx[0]) - first) / 2 if rem_idx.size else None,
                "hr_mean_bpm": float(np.mean(hr_epoch[sleep])),
                "hr_min_bpm": float(np.min(hr_epoch[sleep])),
                "rmssd_ms": float(np.mean(rmssd[sleep])),
                "scored_frac": float(scored.mean()),
            }
            lines.append(lineproto.schema_line(sch.NIGHT.name, tags_s, summary, start))
            study.summaries[(p, label)] = summary
            lines += _devices(p, label, start, end, rng)
            lines += _annotations(p, label, start, end)
            lines += _status(p, start, end, rng)
        _write(db, lineproto.join_lines(lines), study)
        last = max(lab for (q, lab) in study.nights if q == p)
        _samples(db, p, *study.nights[(p, last)], rng, study)
    return study


def _devices(p: str, label: str, start: int, end: int, rng: np.random.Generator) -> list[str]:
    out = []
    for i, role in enumerate(("chest", "wrist")):
        level = 95 - 7 * NIGHTS.index(label) - 10 * i
        for h in range(0, (end - start) // (3600 * S_NS) + 1):
            out.append(points.battery_line(p, role, start + h * 3600 * S_NS, max(level - h, 3)))
        drop = start + int(rng.integers(2, 5)) * 3600 * S_NS
        events = [
            (start - 60 * S_NS, "connected", True, ""),
            (drop, "disconnected", False, "link loss"),
            (drop + 4 * 60 * S_NS, "connected", True, ""),
            (end + 60 * S_NS, "disconnected", False, "night window closed"),
        ]
        for t_ns, ev, connected, detail in events:
            out.append(
                points.device_event_line(p, role, t_ns, ev, connected=connected, detail=detail)
            )
    return out


def _annotations(p: str, label: str, start: int, end: int) -> list[str]:
    a = sch.ANNOTATION
    out = []
    k = NIGHTS.index(label)

    def add(kind: str, t_ns: int, ident: str, fields: dict[str, object]) -> None:
        tags = {sch.PARTICIPANT.name: p, sch.KIND.name: kind}
        fields = {"id": ident, "deleted": False, **fields}
        out.append(lineproto.schema_line(a.name, tags, fields, sch.annotation_time_ns(t_ns, ident)))

    pain = 3 + (k * 5) % 6
    add(
        "pain",
        start - 20 * 60 * S_NS,
        f"{p}-{label}-pb",
        {
            "pain_nrs": pain,
            "pain_when": "bedtime",
            "body_site": "lower back",
            "text": f"Pain {pain}/10 at bedtime (lower back)",
            "tags": "pain,bedtime",
        },
    )
    add(
        "pain",
        end + 10 * 60 * S_NS,
        f"{p}-{label}-pm",
        {
            "pain_nrs": max(pain - 2, 0),
            "pain_when": "morning",
            "text": f"Pain {max(pain - 2, 0)}/10 on waking",
            "tags": "pain,morning",
        },
    )
    for substance, nights in SUBSTANCE_NIGHTS.items():
        if label in nights:
            add(
                "substance",
                start - 90 * 60 * S_NS,
                f"{p}-{label}-{substance}",
                {
                    "substance": substance,
                    "dose": 2.5,
                    "dose_unit": "g",
                    "form": "powder",
                    "text": f"{substance} 2.5 g (powder)",
                    "tags": f"substance,{substance}",
                },
            )
    if k % 3 != 2:  # coffee most mornings
        add(
            "substance",
            start - 14 * 3600 * S_NS,
            f"{p}-{label}-caffeine",
            {
                "substance": "caffeine",
                "dose": 95.0 + 10 * (k % 3),
                "dose_unit": "mg",
                "form": "coffee",
                "text": "caffeine 95 mg (coffee)",
                "tags": "substance,caffeine",
            },
        )
    add(
        "diary",
        end + 20 * 60 * S_NS,
        f"{p}-{label}-diary",
        {"sleep_quality": 2 + k % 4, "text": f"Slept {2 + k % 4}/5", "tags": "diary"},
    )
    return out


def _status(p: str, start: int, end: int, rng: np.random.Generator) -> list[str]:
    out = []
    backlog = 0
    last_ok = 0
    for h in range(0, (end - start) // (3600 * S_NS) + 2):
        t_ns = start + h * 3600 * S_NS
        backlog += int(rng.integers(3000, 6000))
        ok = bool(rng.uniform() > 0.2)
        if ok:
            backlog, last_ok = 0, t_ns
        out.append(
            points.sender_status_line(
                p,
                t_ns,
                backlog_points=backlog,
                quarantined_points=0,
                push_ok=ok,
                last_ok_ns=last_ok,
            )
        )
    return out


def _samples(
    db: InfluxDB, p: str, start: int, end: int, rng: np.random.Generator, study: Study
) -> None:
    """1-Hz heart rate and beats for one night, chest and wrist."""
    t = np.arange(start, end, S_NS, dtype=np.int64)
    minutes = (t - start) / (60 * S_NS)
    hr = 58 + 4 * np.sin(minutes / 45) - 5 * np.exp(-(((minutes - 120) / 40) ** 2))
    for role, noise in (("chest", 0.8), ("wrist", 2.0)):
        hr_dev = hr + rng.normal(0, noise, t.size)
        _write(db, points.heart_rate_lines(p, role, HeartRateStream(t, hr_dev)), study)
        rr = 60_000.0 / hr_dev + rng.normal(0, 25, t.size)
        _write(db, points.beat_lines(p, role, BeatStream(t, rr)), study)
