"""Simulator: determinism, sleep architecture, stage-dependent heart and motion, effects,
real MMASH beats, multi-night time zones, ground truth beside the log."""

from __future__ import annotations

import csv
import gzip
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from sensord import simulate as sim
from sensord.pipeline import load_session

DATA = Path(__file__).parents[1] / "../shared/data"
EP_MIN = 0.5


def _hypnograms(n: int = 30, **effects: float) -> list[np.ndarray]:
    eff = sim.NightEffects(**effects)
    return [sim.simulate_hypnogram(960, np.random.default_rng([s, 0]), eff) for s in range(n)]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    cfg = sim.SimConfig(seed=3, duration_h=0.6, dropouts_per_h=2)
    _, a = sim.simulate_to_files(cfg, tmp_path / "a")
    _, b = sim.simulate_to_files(cfg, tmp_path / "b")
    _, c = sim.simulate_to_files(sim.SimConfig(seed=4, duration_h=0.6), tmp_path / "c")
    assert a[0].read_bytes() == b[0].read_bytes()
    assert a[0].read_bytes() != c[0].read_bytes()
    one = sim.simulate(sim.SimConfig(seed=3, duration_h=1, nights=1)).nights[0]
    first_of_two = sim.simulate(sim.SimConfig(seed=3, duration_h=1, nights=2)).nights[0]
    assert np.array_equal(one.stage, first_of_two.stage)
    assert np.array_equal(one.beat_t_ns, first_of_two.beat_t_ns)


def test_architecture_cycles_deep_early_rem_late() -> None:
    """Carskadon & Dement: N3 in the first third, REM in the last, ~90-min cycles."""
    n3_first, n3_last, rem_first, rem_last, spacing, sol = [], [], [], [], [], []
    for st in _hypnograms():
        third = st.size // 3
        n3_first.append((st[:third] == sim.N3).sum())
        n3_last.append((st[-third:] == sim.N3).sum())
        rem_first.append((st[:third] == sim.REM).sum())
        rem_last.append((st[-third:] == sim.REM).sum())
        # REM periods: starts of REM runs separated by >= 20 min of non-REM
        rem = np.flatnonzero(st == sim.REM)
        starts = rem[np.r_[True, np.diff(rem) > 40]]
        spacing.extend(np.diff(starts) * EP_MIN)
        sol.append(np.argmax(st != sim.W) * EP_MIN)
        tst = (st != sim.W).sum()
        assert 0.40 < (st == sim.N2).sum() / tst < 0.70
        assert 0.08 < (st == sim.N3).sum() / tst < 0.30
        assert 0.12 < (st == sim.REM).sum() / tst < 0.32
        assert st[-1] == sim.W
        assert ((st[1:] == sim.W) & (st[:-1] != sim.W)).sum() >= 3, "brief awakenings"
    assert np.mean(n3_first) > 4 * np.mean(n3_last)
    assert np.mean(rem_last) > 2 * np.mean(rem_first)
    assert 75 <= np.median(spacing) <= 110
    assert 3 <= np.median(sol) <= 30


def test_effect_modifiers_change_rem_deep_and_waso() -> None:
    def mean_min(hyps: list[np.ndarray], code: int) -> float:
        return float(np.mean([(h == code).sum() * EP_MIN for h in hyps]))

    def waso(h: np.ndarray) -> float:
        s = np.flatnonzero(h != sim.W)
        return float((h[s[0] : s[-1] + 1] == sim.W).sum() * EP_MIN)

    base = _hypnograms()
    assert 0.35 < mean_min(_hypnograms(rem_scale=0.5), sim.REM) / mean_min(base, sim.REM) < 0.65
    assert 1.2 < mean_min(_hypnograms(deep_scale=1.5), sim.N3) / mean_min(base, sim.N3) < 1.6
    extra = np.mean([waso(h) for h in _hypnograms(waso_extra_min=60)])
    assert 40 <= extra - np.mean([waso(h) for h in base]) <= 70


@pytest.fixture(scope="module")
def night() -> sim.SimNight:
    return sim.simulate_night(sim.SimConfig(seed=2, duration_h=8), 0,
                              start_ns=1_790_000_000 * 10**9)


def _per_stage(night: sim.SimNight) -> np.ndarray:
    ep = (night.beat_t_ns - night.start_ns) // (30 * 10**9)
    return night.stage[np.clip(ep, 0, night.stage.size - 1)]


def test_heart_rate_and_variability_depend_on_stage(night: sim.SimNight) -> None:
    st = _per_stage(night)
    rr = night.rr_ms
    hr = {c: 60000 / rr[st == c].mean() for c in (sim.W, sim.N2, sim.N3, sim.REM)}
    assert hr[sim.N3] < hr[sim.N2] < hr[sim.W]
    assert hr[sim.N3] < hr[sim.REM]
    # beat-to-beat (RSA-driven) variability: largest in N3; slow variability: larger in REM
    rmssd = {c: np.sqrt(np.mean(np.diff(rr[st == c]) ** 2)) for c in (sim.N3, sim.REM)}
    assert rmssd[sim.N3] > rmssd[sim.REM]
    t_s = (night.beat_t_ns - night.start_ns) / 1e9
    win = (t_s // 300).astype(int)
    sd = {c: np.median([rr[(win == w) & (st == c)].std() for w in np.unique(win[st == c])
                        if ((win == w) & (st == c)).sum() > 200]) for c in (sim.N3, sim.REM)}
    assert sd[sim.REM] > sd[sim.N3]


def test_respiratory_sinus_arrhythmia_dominates_nrem(night: sim.SimNight) -> None:
    """HF (0.15-0.4 Hz) share of the RR tachogram's LF+HF power: higher in N3 than REM
    (Trinder et al. 2001: vagal dominance in NREM)."""
    t_s = (night.beat_t_ns - night.start_ns) / 1e9
    grid = np.arange(t_s[0], t_s[-1], 0.25)
    tach = np.interp(grid, t_s, night.rr_ms)
    stage = night.stage[np.clip((grid // 30).astype(int), 0, night.stage.size - 1)]

    def hf_share(code: int) -> float:
        shares = []
        for k in range(0, grid.size - 1200, 1200):  # 5-min windows wholly in one stage
            if (stage[k : k + 1200] == code).all():
                x = tach[k : k + 1200] - tach[k : k + 1200].mean()
                p = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
                f = np.fft.rfftfreq(x.size, 0.25)
                lf = p[(f >= 0.04) & (f < 0.15)].sum()
                hf = p[(f >= 0.15) & (f < 0.4)].sum()
                shares.append(hf / (lf + hf))
        assert shares, f"no 5-min window of stage {code}"
        return float(np.median(shares))

    assert hf_share(sim.N3) > hf_share(sim.REM) + 0.1


def test_motion_depends_on_stage(night: sim.SimNight) -> None:
    acc = night.acc_g
    assert acc.shape == (night.stage.size * 30 * 50, 3)
    g = np.linalg.norm(acc, axis=1)
    assert abs(np.median(g) - 1.0) < 0.02, "gravity is 1 g"
    # share of samples more than 10 mg away from their epoch's median (movement, twitches)
    ep = acc.reshape(night.stage.size, 1500, 3)
    moving = (np.abs(ep - np.median(ep, axis=1, keepdims=True)) > 0.010).any(axis=2).mean(axis=1)
    m = {c: np.mean(moving[night.stage == c]) for c in (sim.W, sim.N2, sim.N3, sim.REM)}
    assert m[sim.W] > m[sim.N2]
    assert m[sim.REM] > m[sim.N3], "twitches in REM"


def test_decoded_log_has_the_truth_and_the_gaps(tmp_path: Path) -> None:
    cfg = sim.SimConfig(seed=8, duration_h=1.5, dropouts_per_h=2, disconnects_per_night=1)
    result, logs = sim.simulate_to_files(cfg, tmp_path)
    truth = result.nights[0]
    session = load_session(logs)
    night = session.night
    assert night.beats is not None and night.acc is not None and night.hr is not None
    # every decoded RR is a true interval rounded to 1/1024 s, in order
    rounded = np.rint(truth.rr_ms * 1.024) / 1.024
    idx = np.searchsorted(truth.beat_t_ns, night.beats.t_ns - 200_000_000)
    assert np.allclose(night.beats.rr_ms, rounded[np.clip(idx, 0, rounded.size - 1)]) or \
        np.isin(np.round(night.beats.rr_ms, 6), np.round(rounded, 6)).all()
    # decoded acceleration = truth at milli-g resolution, frame by frame (whole frames are
    # lost in dropouts); times within 250 ms (the sensor clock drifts 20 ppm and the
    # decoder maps it with one offset per connection)
    truth_mg = np.rint(truth.acc_g * 1000).astype(np.int64)
    dec = np.rint(night.acc.acc_g * 1000).astype(np.int64)
    assert np.abs(night.acc.acc_g * 1000 - dec).max() < 1e-6
    assert dec.shape[0] % 36 == 0 and dec.shape[0] > 0.8 * truth_mg.shape[0]
    j = np.searchsorted(truth.acc_t_ns, night.acc.t_ns)
    cand = np.clip(j[:, None] + np.arange(-13, 14)[None, :], 0, truth_mg.shape[0] - 1)
    match = (truth_mg[cand] == dec[:, None, :]).all(axis=2).any(axis=1)
    assert match.all(), f"{(~match).sum()} decoded samples match no true sample within 260 ms"
    # every simulated gap longer than the report's threshold shows as a gap
    gaps = [g for s in session.report.streams if s.name == "hr" for g in s.gaps]
    for a, b, _kind in truth.gaps_ns:
        if b - a > 12 * 10**9:
            assert any(ga <= a + 2 * 10**9 and gb >= b - 2 * 10**9 for ga, gb in gaps)
    t, stage = sim.read_truth(logs[0].with_suffix(".hypnogram.csv"))
    assert np.array_equal(t, truth.epoch_t_ns) and np.array_equal(stage, truth.stage)
    assert (t % (30 * 10**9) == 0).all(), "epochs aligned to 30 s since the Unix epoch"


def test_real_mmash_beats_drive_the_log(tmp_path: Path) -> None:
    rr_file = DATA / "mmash/user_2/RR.csv.gz"
    cfg = sim.SimConfig(seed=1, profile="hrs_strap", duration_h=1.0, rr_file=str(rr_file))
    _, logs = sim.simulate_to_files(cfg, tmp_path)
    decoded = load_session(logs).night.beats
    assert decoded is not None
    with gzip.open(rr_file, "rt") as fh:
        rows = list(csv.DictReader(fh))
    day = np.array([int(r["day"]) for r in rows])
    hms = np.array([sum(int(x) * m for x, m in zip(r["time"].split(":"), (3600, 60, 1),
                                                     strict=True)) for r in rows])
    start = int(np.searchsorted((day - 1) * 86400 + hms, 23 * 3600))
    ibi_ms = np.array([float(r["ibi_s"]) for r in rows])[start:] * 1000
    ibi_ms = ibi_ms[(ibi_ms >= 300) & (ibi_ms <= 2000)]
    n = decoded.rr_ms.size
    assert n > 3000
    # the intervals are the file's, to the 1/1024 s a strap sends
    assert np.abs(decoded.rr_ms - ibi_ms[:n]).max() <= 1000 / 1024 / 2 + 1e-9


def test_nights_keep_local_bedtime_across_dst() -> None:
    cfg = sim.SimConfig(start_local="2026-03-27T23:00", tz="Europe/Zurich", nights=4)
    zone = ZoneInfo("Europe/Zurich")
    starts = sim.night_starts_ns(cfg)
    for k, ns in enumerate(starts):
        local = datetime.fromtimestamp(ns / 1e9, zone)
        minutes = (local.hour * 60 + local.minute - 23 * 60 + 720) % 1440 - 720
        assert abs(minutes) <= 21, (k, local)
        assert ns % (30 * 10**9) == 0
    utc_hours = [datetime.fromtimestamp(ns / 1e9, ZoneInfo("UTC")).hour for ns in starts]
    assert utc_hours[0] in (21, 22) and utc_hours[-1] in (20, 21), "CET -> CEST on 29 March"


def test_bad_config_is_a_clear_error() -> None:
    from sensord.errors import ConfigError

    with pytest.raises(ConfigError, match="profile"):
        sim.simulate(sim.SimConfig(profile="fitbit"))
    with pytest.raises(ConfigError, match="time zone"):
        sim.simulate(sim.SimConfig(tz="Mars/Olympus"))
    with pytest.raises(ConfigError, match="effects"):
        sim.simulate(sim.SimConfig(nights=2, effects=(sim.NightEffects(),)))


def test_clock_step_is_logged_and_sets_the_wall_clock_right(tmp_path: Path) -> None:
    from sensord import blelog
    from sensord.model import ClockEvent, RawNotification

    cfg = sim.SimConfig(seed=4, profile="hrs_strap", duration_h=1.0, clock_step_s=-7.5)
    result, logs = sim.simulate_to_files(cfg, tmp_path)
    events = list(blelog.iter_events(logs[0]))
    clocks = [e for e in events if isinstance(e, ClockEvent)]
    assert len(clocks) == 1 and clocks[0].step_ns == -7_500_000_000
    step_mono = clocks[0].mono_ns
    notes = [e for e in events if isinstance(e, RawNotification)]
    before = [e.wall_ns - e.mono_ns for e in notes if e.mono_ns < step_mono]
    after = [e.wall_ns - e.mono_ns for e in notes if e.mono_ns >= step_mono]
    assert len(set(before)) == 1 and len(set(after)) == 1
    assert after[0] - before[0] == -7_500_000_000
    assert result.nights[0].start_ns % (30 * 10**9) == 0  # the truth stays in true UTC
    # the step (NTP) sets the clock right: from it on, wall times are true UTC
    first_after = min(e.wall_ns for e in notes if e.mono_ns >= step_mono)
    assert 0 <= first_after - (result.nights[0].start_ns + 1800 * 10**9) < 5 * 10**9
