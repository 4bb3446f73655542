"""Simulated nights: hypnogram, heartbeats and motion, encoded as a real device's payloads.

Everything is seeded and deterministic: the same :class:`SimConfig` gives the same
arrays and byte-identical session logs. Night ``k`` draws from
``numpy.random.default_rng([seed, k])``, so adding nights never changes earlier ones.

Model (a plausible, not a validated, physiology; numbers chosen from the sources below)
-------------------------------------------------------------------------------------
* Architecture: sleep-onset latency (lognormal, median 12 min), cycles of about 90 min
  (normal, sd 10 min); N3 concentrated in the first cycles (about 35, 20, 6 min, then
  none), REM growing across cycles (about 8, 15, 22, 28, 32 min); brief awakenings
  (1-3 epochs) more frequent late in the night and after REM; final awakening at the
  end. Carskadon & Dement, "Normal human sleep: an overview", in Principles and
  Practice of Sleep Medicine (2011); Ohayon et al., Sleep 27(7):1255 (2004) for
  age-typical proportions.
* Heart: stage baseline (wake 66, N1 61, N2 58, N3 55, REM 62 bpm + a per-night
  offset), a slow decline over the night, a very-low-frequency random walk (large in
  REM and wake, small in N3), Mayer-wave (0.1 Hz) and respiratory sinus arrhythmia
  (RSA, at the breathing rate) modulation of the instantaneous rate. NREM: slow
  regular breathing and strong RSA (vagal dominance); REM: faster, irregular breathing,
  weaker RSA and more low-frequency variability. Beats are the integer crossings of
  the integrated rate (an integral pulse-frequency-modulation model). Trinder et al.,
  J Sleep Res 10:253 (2001); Task Force of the ESC/NASPE, Circulation 93:1043 (1996).
* Motion: posture (a gravity direction) changes at awakenings and now and then in
  light sleep, rarely in N3 and REM (REM atonia); phasic twitches mostly in REM;
  limb and trunk movement during awakenings; chest-wall breathing motion (chest
  straps); sensor noise.

``rem_scale``, ``deep_scale`` and ``waso_extra_min`` let a caller simulate effects
(``rem_scale=0.6, waso_extra_min=40`` for "less REM, more wake after sleep onset").
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from sensord.errors import ConfigError
from sensord.model import EPOCH_NS

STAGES = ("W", "N1", "N2", "N3", "R")
"""Stage codes of the ground-truth hypnogram (index = integer code)."""
W, N1, N2, N3, REM = range(5)
STAGE4 = ("wake", "light", "light", "deep", "rem")
"""Four-class mapping (wake / light / deep / REM) of each stage code."""

PROFILES = ("polar_h10", "hrs_strap", "infinitime")

_NS = 1_000_000_000
_EPOCH_S = EPOCH_NS / _NS


@dataclass(frozen=True, slots=True)
class NightEffects:
    """Per-night effect modifiers.

    Attributes
    ----------
    rem_scale
        Multiplies every REM period's length (the rest of the cycle becomes N2).
    deep_scale
        Multiplies every N3 period's length.
    waso_extra_min
        Extra minutes of wake after sleep onset, spread over 2-4 long awakenings.
    hr_offset_bpm
        Added to the heart-rate baseline (e.g. alcohol: +5).
    """

    rem_scale: float = 1.0
    deep_scale: float = 1.0
    waso_extra_min: float = 0.0
    hr_offset_bpm: float = 0.0


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate.

    Attributes
    ----------
    seed
        Seed of everything random.
    start_local
        Local bedtime of the first night, ISO ``YYYY-MM-DDTHH:MM``.
    tz
        IANA time zone of ``start_local`` (DST handled by ``zoneinfo``).
    nights
        Number of consecutive nights (bedtime the same local time each day, +-20 min).
    duration_h
        Time in bed per night.
    profile
        ``polar_h10`` (HRS with RR + PMD accelerometer), ``hrs_strap`` (HRS with RR
        only) or ``infinitime`` (HRS without RR + InfiniTime motion service, 10 Hz).
    acc_rate_hz
        Polar PMD accelerometer rate: 25, 50, 100 or 200 Hz (the H10's choices).
    effects
        One :class:`NightEffects` for all nights, or one per night.
    dropouts_per_h
        Mean rate of radio dropouts (5-90 s without notifications).
    disconnects_per_night
        Mean number of disconnects (30-300 s, logged as device events).
    clock_step_s
        The host's wall clock steps by this much 30 min into the first night (a
        Raspberry Pi without RTC whose NTP sync comes late): until then it is off by
        ``-clock_step_s``, the step (a :class:`~sensord.model.ClockEvent`, synchronised)
        sets it right; the monotonic clock and the ground truth stay true.
    rr_file
        MMASH ``RR.csv.gz``: drive heart rate and RR from these real beats instead.
    participant, device
        Header participant id and the device id used in the log.
    """

    seed: int = 1
    start_local: str = "2026-11-20T23:00"
    tz: str = "Europe/Zurich"
    nights: int = 1
    duration_h: float = 8.0
    profile: str = "polar_h10"
    acc_rate_hz: float = 50.0
    effects: NightEffects | tuple[NightEffects, ...] = NightEffects()
    dropouts_per_h: float = 0.0
    disconnects_per_night: float = 0.0
    clock_step_s: float = 0.0
    rr_file: str | None = None
    participant: str = "SIM01"
    device: str = ""

    def effects_for(self, night: int) -> NightEffects:
        if isinstance(self.effects, NightEffects):
            return self.effects
        if night >= len(self.effects):
            raise ConfigError(
                f"{len(self.effects)} effects given for {self.nights} nights", key="effects"
            )
        return self.effects[night]

    def device_id(self) -> str:
        return self.device or {"polar_h10": "polar_h10", "hrs_strap": "hrs_strap",
                               "infinitime": "pinetime"}[self.profile]


@dataclass(slots=True)
class SimNight:
    """Ground truth and signals of one simulated night (all times UTC ns).

    ``stage`` holds one code of :data:`STAGES` per 30-s epoch starting at ``epoch_t_ns``;
    ``beat_t_ns``/``rr_ms`` are the true beats (RR ending at each beat); ``acc_t_ns``/
    ``acc_g`` the motion at the profile's rate (empty for ``hrs_strap``); ``gaps_ns``
    the radio dropouts and disconnects as ``(start, end, kind)``.
    """

    index: int
    start_ns: int
    end_ns: int
    epoch_t_ns: npt.NDArray[np.int64]
    stage: npt.NDArray[np.int8]
    beat_t_ns: npt.NDArray[np.int64]
    rr_ms: npt.NDArray[np.float64]
    acc_t_ns: npt.NDArray[np.int64]
    acc_g: npt.NDArray[np.float64]
    steps_t_ns: npt.NDArray[np.int64]
    steps: npt.NDArray[np.int64]
    gaps_ns: list[tuple[int, int, str]]
    effects: NightEffects
    real_beats: bool = False

    def summary(self) -> dict[str, Any]:
        """Time in each stage (min), TST, WASO, sleep-onset latency: the truth's metrics."""
        st = self.stage
        epoch_min = _EPOCH_S / 60
        asleep = np.flatnonzero(st != W)
        out: dict[str, Any] = {
            "night": self.index,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "epochs": int(st.size),
            **{f"{name}_min": float((st == code).sum() * epoch_min)
               for code, name in enumerate(STAGES)},
        }
        if asleep.size:
            out["tst_min"] = float(asleep.size * epoch_min)
            out["sol_min"] = float(asleep[0] * epoch_min)
            seg = st[asleep[0] : asleep[-1] + 1]
            out["waso_min"] = float((seg == W).sum() * epoch_min)
        out["effects"] = asdict(self.effects)
        return out


# --------------------------------------------------------------------------- hypnogram


def simulate_hypnogram(
    n_epochs: int, rng: np.random.Generator, effects: NightEffects = NightEffects()
) -> npt.NDArray[np.int8]:
    """A plausible adult hypnogram of ``n_epochs`` 30-s epochs (codes of :data:`STAGES`)."""
    ep_min = _EPOCH_S / 60
    out: list[int] = []
    sol = float(np.clip(rng.lognormal(math.log(12.0), 0.5), 3.0, 45.0))
    out += [W] * round(sol / ep_min)
    out += [N1] * round(rng.uniform(2, 6) / ep_min)
    deep_min = (35.0, 20.0, 6.0)
    rem_min = (8.0, 15.0, 22.0, 28.0, 32.0, 32.0, 32.0)
    k = 0
    while len(out) < n_epochs:
        cyc = max(60.0, rng.normal(90.0, 10.0))
        d = (deep_min[k] if k < len(deep_min) else 0.0) * rng.uniform(0.7, 1.3)
        d *= effects.deep_scale
        r = rem_min[min(k, len(rem_min) - 1)] * rng.uniform(0.75, 1.25) * effects.rem_scale
        n1 = rng.uniform(1, 4) if k else 0.0
        n2 = max(cyc - d - r - n1, 8.0)
        n2a = n2 * rng.uniform(0.55, 0.8)
        seq = [(N1, n1), (N2, n2a), (N3, d), (N2, n2 - n2a), (REM, r)]
        for code, minutes in seq:
            out += [code] * round(minutes / ep_min)
        k += 1
    st = np.asarray(out[:n_epochs], dtype=np.int8)
    onset = int(np.argmax(st != W))
    # brief awakenings (1-3 epochs): rate rising across the night and right after REM
    t_rel = np.arange(n_epochs) / max(n_epochs, 1)
    p = 0.004 + 0.010 * t_rel
    after_rem = np.r_[False, (st[:-1] == REM) & (st[1:] != REM)]
    p = p + 0.25 * after_rem
    starts = np.flatnonzero((rng.random(n_epochs) < p) & (np.arange(n_epochs) > onset + 4))
    for s in starts.tolist():
        st[s : s + int(rng.integers(1, 4))] = W
        if s + 4 < n_epochs and st[s + 3] != W:
            st[s + 3] = N1  # re-entry through N1
    # extra WASO as 2-4 long awakenings in the second half
    extra = round(effects.waso_extra_min / ep_min)
    if extra > 0 and n_epochs - onset > 40:
        parts = int(rng.integers(2, 5))
        sizes = np.diff(np.r_[0, np.sort(rng.integers(0, extra + 1, parts - 1)), extra])
        lo = onset + (n_epochs - onset) // 3
        for size in sizes.tolist():
            if size <= 0:
                continue
            s = int(rng.integers(lo, max(lo + 1, n_epochs - size - 4)))
            st[s : s + size] = W
    # final awakening: the last 2-10 minutes in bed are wake
    st[n_epochs - round(rng.uniform(2, 10) / ep_min) :] = W
    return st


# --------------------------------------------------------------------------- heart


_HR_BASE = np.array([66.0, 61.0, 58.0, 55.0, 62.0])  # bpm by stage
_RSA_BPM = np.array([1.5, 2.0, 2.5, 3.0, 1.5])  # RSA amplitude by stage
_LF_BPM = np.array([3.0, 2.0, 1.5, 0.8, 4.0])  # 0.1 Hz Mayer-wave amplitude
_VLF_BPM = np.array([3.0, 1.2, 0.8, 0.4, 3.5])  # random-walk scale per sqrt(min)
_RESP_HZ = np.array([0.25, 0.24, 0.23, 0.22, 0.27])  # breathing rate
_RESP_IRREG = np.array([0.15, 0.08, 0.05, 0.02, 0.20])  # relative breath-to-breath jitter
_GRID_HZ = 10.0


def _smooth(x: npt.NDArray[np.float64], tau_samples: float) -> npt.NDArray[np.float64]:
    """First-order low-pass (exponential) filter, vectorised through scipy."""
    from scipy.signal import lfilter

    a = 1.0 / max(tau_samples, 1.0)
    y: npt.NDArray[np.float64] = lfilter([a], [1.0, a - 1.0], x, zi=[x[0] * (1 - a)])[0]
    return y


def _stage_at(stage: npt.NDArray[np.int8], t_s: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    idx = np.minimum((t_s // _EPOCH_S).astype(np.intp), stage.size - 1)
    return stage[np.maximum(idx, 0)].astype(np.intp)


def simulate_beats(
    stage: npt.NDArray[np.int8], rng: np.random.Generator, effects: NightEffects = NightEffects()
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Beat times (s from night start) and the breathing phase on a 10-Hz grid.

    Returns ``(beat_s, resp_t_s, resp_phase_rad)``.
    """
    dur = stage.size * _EPOCH_S
    t = np.arange(0.0, dur, 1.0 / _GRID_HZ)
    s = _stage_at(stage, t)
    base = _smooth(_HR_BASE[s], 40 * _GRID_HZ) + rng.normal(0, 3) + effects.hr_offset_bpm
    base -= 3.0 * t / dur  # slow decline across the night
    wake_surge = _smooth((s == W) * rng.uniform(6, 12), 15 * _GRID_HZ)
    vlf_step = rng.normal(0, 1, t.size) * _VLF_BPM[s] / math.sqrt(60 * _GRID_HZ)
    vlf = _smooth(np.cumsum(vlf_step), 30 * _GRID_HZ)
    vlf -= _smooth(vlf, 600 * _GRID_HZ)  # keep the walk from wandering off
    lf = _smooth(_LF_BPM[s], 20 * _GRID_HZ) * np.sin(
        2 * np.pi * np.cumsum(0.1 * (1 + 0.1 * rng.normal(0, 1, t.size))) / _GRID_HZ
        + rng.uniform(0, 2 * np.pi)
    )
    f_resp = _RESP_HZ[s] * (1 + _RESP_IRREG[s] * _smooth(rng.normal(0, 1, t.size), 4 * _GRID_HZ)
                            * math.sqrt(8 * _GRID_HZ))
    resp_phase = 2 * np.pi * np.cumsum(f_resp) / _GRID_HZ
    rsa = _smooth(_RSA_BPM[s], 20 * _GRID_HZ) * np.sin(resp_phase)
    hr = np.clip(base + wake_surge + vlf + lf + rsa, 38.0, 160.0)
    beats_phase = np.cumsum(hr / 60.0) / _GRID_HZ  # integral pulse frequency modulation
    n = int(beats_phase[-1])
    k = np.arange(1, n + 1, dtype=np.float64)
    beat_s = np.interp(k, beats_phase, t)
    return beat_s, t, resp_phase


def load_mmash_beats(
    path: str | os.PathLike[str], max_s: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Real beats from an MMASH ``RR.csv.gz``: ``(beat_s, rr_ms)``.

    Uses the night in the file: beats from 23:00 on day 1 on (or from the first beat if
    there is no such night), at most ``max_s`` seconds; ``beat_s`` counts from 1 s before
    the first beat. Intervals outside 0.3-2.0 s are artefacts or dropouts: time advances
    by them but no beat is produced (a strap would not report them either), so every
    returned ``rr_ms`` is an interval exactly as recorded in the file.
    """
    p = Path(path)
    try:
        with gzip.open(p, "rt", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, EOFError) as exc:
        raise ConfigError(f"cannot read MMASH RR file: {exc}", key="rr_file",
                          source=str(p)) from exc
    try:
        ibi = np.array([float(r["ibi_s"]) for r in rows])
        day = np.array([int(r["day"]) for r in rows])
        hms = np.array([sum(int(x) * m for x, m in zip(r["time"].split(":"), (3600, 60, 1),
                                                         strict=True)) for r in rows])
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"not an MMASH RR file ({exc})", key="rr_file", source=str(p)) from exc
    clock_s = (day - 1) * 86400 + hms
    start = int(np.searchsorted(clock_s, 23 * 3600))
    if start >= ibi.size - 100:
        start = 0
    ibi = ibi[start:]
    t = np.cumsum(ibi)
    ok = (ibi >= 0.3) & (ibi <= 2.0)
    t -= t[np.argmax(ok)] - 1.0
    keep = ok & (t <= max_s)
    if keep.sum() < 100:
        raise ConfigError("fewer than 100 usable beats in the night", key="rr_file", source=str(p))
    return t[keep], ibi[keep] * 1000.0


# --------------------------------------------------------------------------- motion


_POSTURES = np.array(
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]
)  # supine, left, right, prone: gravity direction in the sensor frame


def simulate_motion(
    stage: npt.NDArray[np.int8],
    rate_hz: float,
    rng: np.random.Generator,
    *,
    resp_t_s: npt.NDArray[np.float64] | None = None,
    resp_phase: npt.NDArray[np.float64] | None = None,
    wrist: bool = False,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Acceleration (g, shape (n, 3)) at ``rate_hz`` from night start; returns (t_s, acc_g)."""
    dur = stage.size * _EPOCH_S
    n = int(dur * rate_hz)
    t = np.arange(n) / rate_hz
    # posture changes: per-epoch probability by stage, plus at most awakenings
    p_change = np.array([0.08, 0.02, 0.008, 0.002, 0.002]) * (3.0 if wrist else 1.0)
    ep_change = rng.random(stage.size) < p_change[stage]
    wake_start = np.flatnonzero(np.r_[False, (stage[1:] == W) & (stage[:-1] != W)])
    ep_change[wake_start] |= rng.random(wake_start.size) < 0.6
    change_ep = np.flatnonzero(ep_change)
    change_t = (change_ep + rng.random(change_ep.size)) * _EPOCH_S
    postures = rng.integers(0, 4, change_t.size + 1)
    tilt = rng.normal(0, 0.15, (change_t.size + 1, 3))
    grav = _POSTURES[postures] + tilt
    grav /= np.linalg.norm(grav, axis=1, keepdims=True)
    seg = np.searchsorted(change_t, t)
    acc = grav[seg].copy()
    # 2-s transitions between postures, with a movement burst
    ramp_n = int(2 * rate_hz)
    for ct, k in zip(change_t.tolist(), range(change_t.size), strict=True):
        i0 = int(ct * rate_hz)
        i1 = min(i0 + ramp_n, n)
        if i1 <= i0:
            continue
        w = np.linspace(0, 1, i1 - i0)[:, None]
        acc[i0:i1] = (1 - w) * grav[k] + w * grav[k + 1]
        acc[i0:i1] += rng.normal(0, 0.15, (i1 - i0, 3))
    # movement during wake: band-limited noise with a per-epoch envelope
    env = np.where(stage == W, rng.gamma(1.5, 0.04 if not wrist else 0.08, stage.size), 0.0)
    env_s = np.repeat(env, int(_EPOCH_S * rate_hz))[:n]
    if env_s.size < n:
        env_s = np.r_[env_s, np.zeros(n - env_s.size)]
    move = rng.normal(0, 1, (n, 3))
    move = _smooth_cols(move, 0.15 * rate_hz)
    acc += move * env_s[:, None] * 3.0
    # twitches: 0.1-0.4 s bursts, mostly in REM
    rate_per_min = np.array([0.5, 0.6, 0.3, 0.1, 3.0])
    n_tw = rng.poisson(rate_per_min[stage] / 2)
    tw_ep = np.repeat(np.arange(stage.size), n_tw)
    tw_i = ((tw_ep + rng.random(tw_ep.size)) * _EPOCH_S * rate_hz).astype(np.int64)
    tw_len = max(int(0.25 * rate_hz), 2)
    shape = np.hanning(tw_len + 2)[1:-1]
    amp = rng.uniform(0.01, 0.05, (tw_i.size, 3)) * (3.0 if wrist else 1.0)
    idx = (tw_i[:, None] + np.arange(tw_len)[None, :]).clip(0, n - 1)
    for axis in range(3):
        np.add.at(acc[:, axis], idx.ravel(), (amp[:, axis : axis + 1] * shape).ravel())
    # chest-wall breathing motion (straps only)
    if not wrist and resp_t_s is not None and resp_phase is not None:
        ph = np.interp(t, resp_t_s, resp_phase)
        acc[:, 0] += 0.004 * np.sin(ph)
    acc += rng.normal(0, 0.003, acc.shape)
    return t, acc


def _smooth_cols(x: npt.NDArray[np.float64], tau: float) -> npt.NDArray[np.float64]:
    from scipy.signal import lfilter

    a = 1.0 / max(tau, 1.0)
    y: npt.NDArray[np.float64] = lfilter([a], [1.0, a - 1.0], x, axis=0)
    return y * math.sqrt(2 * tau)  # keep unit variance roughly


# --------------------------------------------------------------------------- nights


def night_starts_ns(cfg: SimConfig) -> list[int]:
    """UTC start of every night (local bedtime + deterministic jitter), epoch-aligned."""
    try:
        zone = ZoneInfo(cfg.tz)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"unknown IANA time zone {cfg.tz!r}", key="tz") from exc
    try:
        first = datetime.fromisoformat(cfg.start_local)
    except ValueError as exc:
        raise ConfigError(f"start must be ISO YYYY-MM-DDTHH:MM, got {cfg.start_local!r}",
                          key="start") from exc
    if first.tzinfo is not None:
        raise ConfigError("start is local time; give the zone with tz", key="start")
    out = []
    for k in range(cfg.nights):
        jitter_min = float(np.random.default_rng([cfg.seed, k, 7]).uniform(-20, 20))
        local = (first + timedelta(days=k, minutes=jitter_min)).replace(tzinfo=zone)
        ns = int(local.timestamp()) * _NS
        out.append(ns - ns % EPOCH_NS)
    return out


def simulate_night(cfg: SimConfig, k: int, start_ns: int | None = None) -> SimNight:
    """Simulate night ``k`` of ``cfg`` (arrays only; nothing written)."""
    if cfg.profile not in PROFILES:
        raise ConfigError(f"unknown profile {cfg.profile!r}; choose one of {PROFILES}",
                          key="profile")
    if not 0.5 <= cfg.duration_h <= 16:
        raise ConfigError("duration must be 0.5-16 h", key="duration_h")
    eff = cfg.effects_for(k)
    rng = np.random.default_rng([cfg.seed, k])
    if start_ns is None:
        start_ns = night_starts_ns(replace(cfg, nights=k + 1))[k]
    n_ep = int(cfg.duration_h * 3600 / _EPOCH_S)
    real = cfg.rr_file is not None
    if cfg.rr_file is not None:
        real_s, real_rr = load_mmash_beats(cfg.rr_file, cfg.duration_h * 3600)
        n_ep = min(n_ep, int(real_s[-1] // _EPOCH_S))
    stage = simulate_hypnogram(n_ep, rng, eff)
    sim_beats, resp_t, resp_ph = simulate_beats(stage, rng, eff)
    if cfg.rr_file is not None:
        inside = real_s < n_ep * _EPOCH_S
        beat_s, rr_ms = real_s[inside], real_rr[inside]
    else:
        sim_beats = sim_beats[sim_beats < n_ep * _EPOCH_S]
        beat_s, rr_ms = sim_beats[1:], np.diff(sim_beats) * 1000.0
    beat_t = start_ns + np.round(beat_s * _NS).astype(np.int64)
    if cfg.profile == "polar_h10":
        if cfg.acc_rate_hz not in (25.0, 50.0, 100.0, 200.0):
            raise ConfigError("Polar ACC rate must be 25, 50, 100 or 200 Hz", key="acc_rate_hz")
        acc_rate = cfg.acc_rate_hz
    elif cfg.profile == "infinitime":
        acc_rate = 10.0
    else:
        acc_rate = 0.0
    if acc_rate:
        t_acc, acc = simulate_motion(stage, acc_rate, rng, resp_t_s=resp_t,
                                     resp_phase=resp_ph, wrist=cfg.profile == "infinitime")
        acc_t = start_ns + np.round(t_acc * _NS).astype(np.int64)
    else:
        acc_t, acc = np.zeros(0, np.int64), np.zeros((0, 3))
    steps_t = np.zeros(0, np.int64)
    steps = np.zeros(0, np.int64)
    if cfg.profile == "infinitime":
        # the step counter ticks only when the wearer walks: a few steps at long awakenings
        steps_t = start_ns + np.arange(0, n_ep * 30, 60, dtype=np.int64) * _NS
        walk = np.zeros(steps_t.size, np.int64)
        ep = (np.arange(steps_t.size) * 2).clip(0, n_ep - 1)
        long_wake = (stage[ep] == W) & (rng.random(steps_t.size) < 0.15)
        walk[long_wake] = rng.integers(5, 40, int(long_wake.sum()))
        steps = int(rng.integers(3000, 12000)) + np.cumsum(walk)
    gaps = _gaps(cfg, n_ep * _EPOCH_S, rng)
    return SimNight(
        index=k,
        start_ns=start_ns,
        end_ns=start_ns + n_ep * EPOCH_NS,
        epoch_t_ns=start_ns + np.arange(n_ep, dtype=np.int64) * EPOCH_NS,
        stage=stage,
        beat_t_ns=beat_t,
        rr_ms=rr_ms,
        acc_t_ns=acc_t,
        acc_g=acc,
        steps_t_ns=steps_t,
        steps=steps,
        gaps_ns=[(start_ns + int(a * _NS), start_ns + int(b * _NS), kind) for a, b, kind in gaps],
        effects=eff,
        real_beats=real,
    )


def _gaps(cfg: SimConfig, dur_s: float, rng: np.random.Generator) -> list[tuple[float, float, str]]:
    out: list[tuple[float, float, str]] = []
    n_drop = rng.poisson(cfg.dropouts_per_h * dur_s / 3600) if cfg.dropouts_per_h > 0 else 0
    for a in np.sort(rng.uniform(60, dur_s - 120, n_drop)).tolist():
        out.append((a, a + float(rng.uniform(5, 90)), "dropout"))
    n_disc = rng.poisson(cfg.disconnects_per_night) if cfg.disconnects_per_night > 0 else 0
    for a in np.sort(rng.uniform(600, dur_s - 600, n_disc)).tolist():
        out.append((a, a + float(rng.uniform(30, 300)), "disconnect"))
    out.sort()
    # merge overlaps (a disconnect swallows a dropout inside it)
    merged: list[tuple[float, float, str]] = []
    for a, b, kind in out:
        if merged and a <= merged[-1][1]:
            pa, pb, pk = merged[-1]
            merged[-1] = (pa, max(pb, b), "disconnect" if "disconnect" in (pk, kind) else pk)
        else:
            merged.append((a, b, kind))
    return merged


@dataclass(slots=True)
class Simulation:
    """All nights of a :class:`SimConfig`, as arrays (see :func:`simulate`)."""

    config: SimConfig
    nights: list[SimNight] = field(default_factory=list)


def simulate(cfg: SimConfig) -> Simulation:
    """Simulate every night of ``cfg`` and return ground truth + signals as arrays."""
    if cfg.nights < 1:
        raise ConfigError("nights must be >= 1", key="nights")
    starts = night_starts_ns(cfg)
    return Simulation(cfg, [simulate_night(cfg, k, starts[k]) for k in range(cfg.nights)])


def write_truth(night: SimNight, path: str | os.PathLike[str]) -> None:
    """Write a night's ground-truth hypnogram as CSV (``t_ns,utc,stage,stage4``)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["t_ns", "utc", "stage", "stage4"])
        utc = night.epoch_t_ns.astype("datetime64[ns]").astype("datetime64[s]").astype(str)
        for t, u, s in zip(night.epoch_t_ns.tolist(), utc.tolist(), night.stage.tolist(),
                           strict=True):
            w.writerow([t, u + "Z", STAGES[s], STAGE4[s]])


def read_truth(path: str | os.PathLike[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8]]:
    """Read a hypnogram CSV written by :func:`write_truth`: ``(epoch_t_ns, stage codes)``."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    t = np.array([int(r["t_ns"]) for r in rows], dtype=np.int64)
    s = np.array([STAGES.index(r["stage"]) for r in rows], dtype=np.int8)
    return t, s


def write_summary(sim: Simulation, nights: Sequence[SimNight], path: str | os.PathLike[str],
                  logs: Sequence[str]) -> None:
    """Write the simulation's settings and each night's true metrics as JSON."""
    cfg = asdict(sim.config)
    doc = {"config": cfg, "logs": list(logs), "nights": [n.summary() for n in nights]}
    Path(path).write_text(json.dumps(doc, indent=1, default=str) + "\n")


# --------------------------------------------------------------------------- payloads


@dataclass(slots=True)
class _Events:
    """Columns of the events of one night before they are merged and written."""

    wall: list[npt.NDArray[np.int64]] = field(default_factory=list)
    order: list[npt.NDArray[np.int64]] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)

    def add(self, wall_ns: npt.NDArray[np.int64], items: Sequence[Any], prio: int = 1) -> None:
        if len(items) != wall_ns.size:
            raise AssertionError("one time per item")
        self.wall.append(np.asarray(wall_ns, dtype=np.int64))
        self.order.append(np.full(wall_ns.size, prio, dtype=np.int64))
        self.items.extend(items)

    def merged(self) -> tuple[npt.NDArray[np.int64], list[Any]]:
        if not self.wall:
            return np.zeros(0, np.int64), []
        w = np.concatenate(self.wall)
        o = np.concatenate(self.order)
        idx = np.lexsort((o, w))
        items = self.items
        return w[idx], [items[i] for i in idx.tolist()]


def _latency_ns(rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
    """Air + host latency: a 7.5-30 ms connection-interval wait plus a small tail."""
    lat = rng.uniform(7.5e6, 30e6, n) + rng.exponential(3e6, n)
    return lat.astype(np.int64)


def _in_gaps(
    t: npt.NDArray[np.int64], gaps: Sequence[tuple[int, int, str]]
) -> npt.NDArray[np.bool_]:
    bad = np.zeros(t.size, dtype=bool)
    for a, b, _ in gaps:
        bad |= (t >= a) & (t < b)
    return bad


def _hrm_payloads(
    night: SimNight, rng: np.random.Generator, *, with_rr: bool, contact: bool | None
) -> tuple[npt.NDArray[np.int64], list[bytes]]:
    """Heart Rate Measurements at the strap's ~1 Hz tick, with the RR of the beats since
    the previous tick; HR is the mean of the last up to 4 intervals (as straps smooth)."""
    from sensord.devices import heart_rate as hrs

    start, end = night.start_ns, night.end_ns
    n_tick = int((end - start) // _NS)
    tick = start + np.arange(1, n_tick + 1, dtype=np.int64) * _NS
    tick += rng.integers(-3_000_000, 3_000_000, n_tick)  # device tick jitter
    beats = night.beat_t_ns
    rr = night.rr_ms
    hi = np.searchsorted(beats, tick, side="right")
    lo = np.r_[0, hi[:-1]]
    rr_1024 = hrs.rr_ms_to_1024(rr).tolist()
    csum = np.r_[0.0, np.cumsum(rr)]
    k4 = np.maximum(hi - 4, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_rr = (csum[hi] - csum[k4]) / np.maximum(hi - k4, 1)
    hr = np.where(hi > 0, np.rint(60000.0 / np.where(mean_rr > 0, mean_rr, 1000.0)), 0)
    hr = np.clip(hr, 0, 255).astype(np.int64).tolist()
    lo_l, hi_l = lo.tolist(), hi.tolist()
    first = int(np.argmax(hi > 0)) if (hi > 0).any() else n_tick  # no report before a beat
    pays = [
        hrs.encode_hrm(hr[i], rr_1024[lo_l[i] : hi_l[i]] if with_rr else (), contact=contact)
        for i in range(first, n_tick)
    ]
    return tick[first:], pays


_ACC_PER_FRAME = 36  # 16-bit x/y/z samples in one PMD frame at the H10's usual MTU (232)
_H10_DRIFT = 20e-6  # sensor clock runs 20 ppm fast


def _pmd_acc_frames(
    night: SimNight, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], list[bytes]]:
    from sensord.devices import polar_pmd as pmd

    n = night.acc_t_ns.size // _ACC_PER_FRAME
    t_last = night.acc_t_ns[_ACC_PER_FRAME - 1 :: _ACC_PER_FRAME][:n]
    mg = np.clip(np.rint(night.acc_g[: n * _ACC_PER_FRAME] * 1000), -32768, 32767)
    content = mg.astype("<i2").reshape(n, _ACC_PER_FRAME * 3)
    offset0 = int(rng.uniform(-5, 5) * _NS)
    rel = (t_last - night.start_ns).astype(np.float64)
    sensor = (night.start_ns - pmd.POLAR_EPOCH_UNIX_NS + offset0
              + np.rint(rel * (1 + _H10_DRIFT)).astype(np.int64))
    sensor_l = sensor.tolist()
    pays = [
        pmd.encode_data_frame(pmd.MeasurementType.ACC, sensor_l[i], 1, content[i].tobytes())
        for i in range(n)
    ]
    return t_last, pays


def _device_info(profile: str) -> dict[str, str]:
    if profile == "polar_h10":
        return {"manufacturer_name": "Polar Electro Oy", "model_number": "H10",
                "firmware_revision": "3.1.1"}
    if profile == "infinitime":
        return {"manufacturer_name": "PINE64", "model_number": "PineTime",
                "firmware_revision": "1.14.0"}
    return {"manufacturer_name": "Generic", "model_number": "HRS strap",
            "firmware_revision": "1.0"}


def _setup_events(cfg: SimConfig, t0: int, ev: _Events, battery: int) -> None:
    """Connect, discover, read, subscribe (and start the PMD ACC stream) at ``t0``."""
    from sensord.devices import heart_rate as hrs
    from sensord.devices import infinitime as itm
    from sensord.devices import polar_pmd as pmd
    from sensord.model import DeviceEvent

    dev = cfg.device_id()
    step = 20_000_000
    t = t0
    services = [hrs.HEART_RATE_SERVICE, hrs.BATTERY_SERVICE, hrs.DEVICE_INFORMATION_SERVICE]
    if cfg.profile == "polar_h10":
        services.append(pmd.PMD_SERVICE)
    if cfg.profile == "infinitime":
        services.append(itm.MOTION_SERVICE)
    out: list[tuple[int, Any]] = []
    out.append((t, DeviceEvent(dev, "connected", t, 0, f"address {_address(cfg)}")))
    t += step
    out.append((t, DeviceEvent(dev, "services", t, 0, " ".join(services))))
    by_name = {v: k for k, v in hrs.DEVICE_INFORMATION_STRINGS.items()}
    for name, value in _device_info(cfg.profile).items():
        t += step
        out.append((t, (by_name[name], value.encode())))
    t += step
    out.append((t, (hrs.BATTERY_LEVEL, hrs.encode_battery_level(battery))))
    t += step
    out.append((t, (hrs.BODY_SENSOR_LOCATION, hrs.encode_body_sensor_location(
        "wrist" if cfg.profile == "infinitime" else "chest"))))
    subs = [hrs.BATTERY_LEVEL, hrs.HEART_RATE_MEASUREMENT]
    if cfg.profile == "polar_h10":
        subs += [pmd.PMD_CONTROL_POINT, pmd.PMD_DATA]
    if cfg.profile == "infinitime":
        subs += [itm.STEP_COUNT, itm.MOTION_VALUES]
    for s in subs:
        t += step
        out.append((t, DeviceEvent(dev, "subscribed", t, 0, s)))
    if cfg.profile == "polar_h10":
        req = pmd.request_start(pmd.MeasurementType.ACC, sample_rate_hz=int(cfg.acc_rate_hz),
                                resolution_bits=16, range_g=8)
        t += step
        out.append((t, (pmd.PMD_CONTROL_POINT, req)))
        t += step
        resp = pmd.encode_control_point_response(
            pmd.Op.REQUEST_MEASUREMENT_START, pmd.MeasurementType.ACC, 0,
            parameters=pmd.encode_settings({pmd.SettingType.FACTOR: [1.0]}))
        out.append((t, (pmd.PMD_CONTROL_POINT, resp)))
        t += step
        out.append((t, DeviceEvent(dev, "setup", t, 0,
                                   f"PMD ACC {cfg.acc_rate_hz:g} Hz 16 bit 8 g started")))
    ev.add(np.array([w for w, _ in out], dtype=np.int64), [x for _, x in out], prio=0)


def _address(cfg: SimConfig) -> str:
    h = np.random.default_rng([cfg.seed, 99]).integers(0, 256, 6).tolist()
    return ":".join(f"{b:02X}" for b in h)


def night_events(cfg: SimConfig, night: SimNight) -> tuple[npt.NDArray[np.int64], list[Any]]:
    """Everything the daemon would log for ``night``: ``(wall_ns, items)`` in time order.

    Items are :class:`~sensord.model.DeviceEvent` or ``(char_uuid, payload)`` pairs.
    """
    from sensord.devices import heart_rate as hrs
    from sensord.devices import infinitime as itm
    from sensord.devices import polar_pmd as pmd
    from sensord.model import DeviceEvent

    rng = np.random.default_rng([cfg.seed, night.index, 1])
    ev = _Events()
    dev = cfg.device_id()
    battery = int(rng.integers(60, 100))
    _setup_events(cfg, night.start_ns - 2 * _NS, ev, battery)
    series: list[tuple[str, npt.NDArray[np.int64], list[bytes]]] = []
    if cfg.profile == "infinitime":
        t, p = _hrm_payloads(night, rng, with_rr=False, contact=None)
    else:
        t, p = _hrm_payloads(night, rng, with_rr=True, contact=True)
    series.append((hrs.HEART_RATE_MEASUREMENT, t, p))
    if cfg.profile == "polar_h10":
        t, p = _pmd_acc_frames(night, rng)
        series.append((pmd.PMD_DATA, t, p))
    if cfg.profile == "infinitime":
        raw = np.clip(np.rint(night.acc_g * itm.LSB_PER_G), -32768, 32767).astype(np.int64)
        changed = np.r_[True, (np.diff(raw, axis=0) != 0).any(axis=1)]
        idx = np.flatnonzero(changed)
        rows = raw[idx].tolist()
        series.append((itm.MOTION_VALUES, night.acc_t_ns[idx],
                       [itm.encode_motion_values(*r) for r in rows]))
        ch = np.r_[True, np.diff(night.steps) != 0]
        series.append((itm.STEP_COUNT, night.steps_t_ns[ch],
                       [itm.encode_step_count(int(s)) for s in night.steps[ch].tolist()]))
    # battery: -1 % every 40-80 min
    bt = night.start_ns + np.cumsum(rng.uniform(40, 80, 16) * 60 * _NS).astype(np.int64)
    bt = bt[bt < night.end_ns]
    series.append((hrs.BATTERY_LEVEL, bt,
                   [hrs.encode_battery_level(max(battery - k - 1, 0)) for k in range(bt.size)]))
    for char, t, pays in series:
        recv = t + _latency_ns(rng, t.size)
        keep = ~_in_gaps(recv, night.gaps_ns)
        idx = np.flatnonzero(keep)
        ev.add(recv[idx], [(char, pays[i]) for i in idx.tolist()])
    for a, b, kind in night.gaps_ns:
        if kind != "disconnect":
            continue
        ev.add(np.array([a + 4 * _NS], dtype=np.int64),
               [DeviceEvent(dev, "disconnected", 0, 0, "supervision timeout (0x08)")], prio=0)
        _setup_events(cfg, b, ev, battery)
    return ev.merged()


def write_night_log(
    cfg: SimConfig, night: SimNight, path: str | os.PathLike[str], *, boot_wall_ns: int,
    host: str = "sim-pi",
) -> int:
    """Append ``night`` as one writer session to the log at ``path``; returns events written.

    ``boot_wall_ns`` is the simulated host's boot time: ``mono_ns = true time - boot``.
    """
    from sensord.blelog import BlelogWriter
    from sensord.model import ClockEvent, DeviceEvent

    walls, items = night_events(cfg, night)
    dev = cfg.device_id()
    first = int(walls[0]) if walls.size else night.start_ns
    extra = {"simulated": True, "seed": cfg.seed, "profile": cfg.profile, "night": night.index}
    step_ns = round(cfg.clock_step_s * 1e9) if night.index == 0 else 0
    step_at = night.start_ns + 1800 * _NS if step_ns else None
    offset = -step_ns  # host wall clock minus true time: wrong until the NTP step sets it
    w = BlelogWriter(path, participant=cfg.participant, tz=cfg.tz, host=host,
                     wall_ns=first + offset, mono_ns=first - boot_wall_ns, fsync=False,
                     extra=extra)
    try:
        for true_ns, item in zip(walls.tolist(), items, strict=True):
            mono = true_ns - boot_wall_ns
            if step_at is not None and true_ns >= step_at:
                offset = 0
                w.write(ClockEvent(step_at, step_at - boot_wall_ns, step_ns, True))
                step_at = None
            wall = true_ns + offset
            if isinstance(item, DeviceEvent):
                w.write(DeviceEvent(item.device, item.kind, wall, mono, item.detail))
            else:
                w.write_notification(dev, item[0], wall, mono, item[1])
    finally:
        w.close()
    return len(items)


def simulate_to_files(
    cfg: SimConfig, out_dir: str | os.PathLike[str], *, one_file: bool = False
) -> tuple[Simulation, list[Path]]:
    """Simulate ``cfg`` and write session logs, ground-truth hypnograms and a summary.

    One ``<participant>_<local date>.blelog`` per night (or, with ``one_file``, every
    night appended to ``<participant>.blelog`` as successive writer sessions), each
    night's ``<log stem>[_nN].hypnogram.csv`` and ``<participant>.truth.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sim = simulate(cfg)
    boot = sim.nights[0].start_ns - 3600 * _NS
    zone = ZoneInfo(cfg.tz)
    logs: list[Path] = []
    for night in sim.nights:
        local = datetime.fromtimestamp(night.start_ns / _NS, zone).date().isoformat()
        if one_file:
            log = out / f"{cfg.participant}.blelog"
            if night.index == 0 and log.exists():
                log.unlink()
            truth = out / f"{cfg.participant}_{local}.hypnogram.csv"
        else:
            log = out / f"{cfg.participant}_{local}.blelog"
            if log.exists():
                log.unlink()
            truth = log.with_suffix(".hypnogram.csv")
        write_night_log(cfg, night, log, boot_wall_ns=boot)
        write_truth(night, truth)
        if log not in logs:
            logs.append(log)
    write_summary(sim, sim.nights, out / f"{cfg.participant}.truth.json", [str(p) for p in logs])
    return sim, logs
