"""Acceleration counted as it is decoded (the scoring worker) against the whole-night path.

The oracle is the path that keeps the night's samples: ``load_session`` without
``count_acc``, then ``score_night`` (``acc_counts`` of the joined stream) and
``night_points``. The counted path must give the same bytes, and must really be taken
where it can be (else the equality would hold trivially), and give way where it cannot.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sensord.blelog import BlelogWriter, iter_events, read_header
from sensord.daemon_rescore import rescore_logs
from sensord.model import AccStream, AccTimes, RawNotification
from sensord.pipeline import DeviceStreams, _concat_streams, _CountedAcc, load_session
from sensord.simulate import SimConfig, simulate_to_files
from sensord.staging import motion
from sensord.staging.core import AccCounter, acc_counts, score_night
from sensord.staging.epochs import epoch_grid
from sensord.store.nightpoints import night_points

ROOT = Path(__file__).resolve().parents[1]
PMD_DATA = "fb005c82"
T0 = 1_795_000_000 * 10**9


def whole_night(paths: list[Path], **kw: Any) -> Any:
    """The oracle: the night's samples kept, counted at once by ``score_night``."""
    session = load_session(paths, **kw)
    assert session.night.acc_counts is None
    return night_points(session, participant="p", tz="Europe/Zurich", roles={},
                        score=score_night)


def counted(paths: list[Path], **kw: Any) -> Any:
    session = load_session(paths, count_acc=True, **kw)
    assert session.night.acc is None, "counting as decoded gave way to the whole night"
    assert session.night.acc_counts is not None and len(session.night.acc_counts.counts)
    assert all(isinstance(d.get("acc"), AccTimes) for d in session.devices.values()
               if d.get("acc") is not None)
    return night_points(session, participant="p", tz="Europe/Zurich", roles={},
                        score=score_night)


SIMS = {
    "50 Hz, dropouts and disconnects": dict(seed=21, duration_h=1.5, acc_rate_hz=50.0,
                                            dropouts_per_h=4.0, disconnects_per_night=2.0),
    "25 Hz, clock step": dict(seed=22, duration_h=1.0, acc_rate_hz=25.0, clock_step_s=90.0),
    "100 Hz": dict(seed=23, duration_h=0.75, acc_rate_hz=100.0),
    "InfiniTime 10 Hz, dropouts": dict(seed=24, duration_h=1.5, profile="infinitime",
                                       dropouts_per_h=3.0),
}


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    out = tmp_path_factory.mktemp("count_acc")
    logs = {}
    for name, kw in SIMS.items():
        _, paths = simulate_to_files(SimConfig(participant="p", **kw), out / str(kw["seed"]))
        logs[name] = paths
    _, two = simulate_to_files(SimConfig(seed=25, nights=2, duration_h=0.75,
                                         disconnects_per_night=1.0, participant="p"),
                               out / "two")
    logs["two logs of one session"] = two
    logs["tests/sessions sim-polar_h10"] = [
        ROOT / "tests/sessions/sim-polar_h10_sim-1/session.blelog"]
    logs["demo.blelog"] = [ROOT / "sensord/data/demo.blelog"]
    return logs


@pytest.mark.parametrize("name", [*SIMS, "two logs of one session",
                                  "tests/sessions sim-polar_h10", "demo.blelog"])
@pytest.mark.parametrize("batch_size", [4096, 300])  # 300: many batch boundaries to join
def test_counted_rescore_equals_the_whole_night_byte_for_byte(
    sims: dict[str, list[Path]], name: str, batch_size: int
) -> None:
    paths = sims[name]
    assert counted(paths, batch_size=batch_size) == whole_night(paths, batch_size=batch_size)


def test_the_scoring_workers_rescore_counts_as_decoded_and_equals_backfills_points(
    sims: dict[str, list[Path]]
) -> None:
    paths = sims["50 Hz, dropouts and disconnects"]
    worker = rescore_logs(paths, participant="p", tz="Europe/Zurich", roles={})
    assert worker == whole_night(paths)
    assert worker[2] is not None and worker[2]["data_quality"]["acc_dropped"] == 0


def _rewrite(src: Path, dst: Path, every: int, how: str) -> None:
    """``src`` again with every ``every``-th PMD data notification written twice
    (``how="repeat"``) or held back until after the next one (``"late"``)."""
    head = read_header(src)
    w = BlelogWriter(dst, participant="p", tz=head.tz, host="x", wall_ns=head.wall_ns,
                     mono_ns=head.mono_ns, fsync=False)
    n = 0
    held = None
    for ev in iter_events(src):
        is_acc = isinstance(ev, RawNotification) and ev.char_uuid.startswith(PMD_DATA)
        if is_acc:
            n += 1
        if is_acc and how == "late" and held is None and n % every == 0:
            held = ev
            continue
        w.write(ev)
        if is_acc and how == "repeat" and n % every == 0:
            w.write(ev)
        if is_acc and held is not None and ev is not held:
            assert isinstance(ev, RawNotification)
            w.write(dataclasses.replace(held, wall_ns=ev.wall_ns, mono_ns=ev.mono_ns))
            held = None
    w.close()


def test_repeated_notifications_fall_back_to_the_whole_night(
    sims: dict[str, list[Path]], tmp_path: Path
) -> None:
    # a repeated notification repeats its samples: cleaning drops them, so the night is
    # not countable as decoded and is loaded again keeping the samples
    log = tmp_path / "x.blelog"
    _rewrite(sims["100 Hz"][0], log, 997, "repeat")
    session = load_session([log], count_acc=True)
    assert session.night.acc_counts is None and isinstance(session.night.acc, AccStream)
    whole = load_session([log])
    assert session.report.problems.as_list() == whole.report.problems.as_list()
    assert rescore_logs([log], participant="p", tz="Europe/Zurich", roles={}) == (
        whole_night([log]))
    assert score_night(whole.night, tz="UTC").summary["data_quality"]["acc_dropped"] > 0


def test_notifications_logged_out_of_order_give_the_whole_nights_points(
    sims: dict[str, list[Path]], tmp_path: Path
) -> None:
    log = tmp_path / "x.blelog"
    _rewrite(sims["50 Hz, dropouts and disconnects"][0], log, 301, "late")
    assert rescore_logs([log], participant="p", tz="Europe/Zurich", roles={}) == (
        whole_night([log]))


# --------------------------------------------------------------------------- unit level


def _batches(seed: int, n_batches: int = 6, per: int = 9000, fs: int = 50,
             overlap_max: int = 4) -> list[AccStream]:
    """A drifting 50-Hz stream cut into decode batches, each re-timed on its own (as each
    batch maps device time to host time): neighbours overlap by 0..overlap_max samples."""
    rng = np.random.default_rng(seed)
    n = n_batches * per
    t = T0 + np.round(np.arange(n) * (1e9 / fs) * (1 + 30e-6)).astype(np.int64)
    acc = (np.sin(np.arange(n) / 40.0)[:, None] * [0.3, 0.2, 0.1] + [0.0, 0.0, 1.0]
           + rng.normal(0, 0.05, (n, 3)) * (rng.random((n, 1)) < 0.3))
    parts = []
    for k in range(n_batches):
        shift = -int(rng.integers(0, overlap_max + 1)) * 20_000_000 - int(rng.integers(0, 9000))
        sl = slice(k * per, (k + 1) * per)
        parts.append(AccStream(t[sl] + (shift if k else 0), acc[sl]))
    return parts


def _both(parts: list[AccStream], grid_from_ns: int | None = None) -> tuple[Any, Any]:
    """(counted as fed batch by batch, ``acc_counts`` of the joined stream)."""
    feed = _CountedAcc()
    for p in parts:
        feed.add(p)
    joined = _concat_streams(list(parts))
    start = int(joined.t_ns.min()) if grid_from_ns is None else grid_from_ns
    grid = epoch_grid(start, int(joined.t_ns.max()) + 1)
    return feed.finish().result(grid, joined.t_ns), acc_counts(grid, joined)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_overlapping_batches_are_joined_as_the_whole_night_joins_them(seed: int) -> None:
    parts = _batches(seed)
    assert any(b.t_ns[0] < a.t_ns[-1] for a, b in itertools.pairwise(parts))
    got, want = _both(parts)
    assert got is not None
    np.testing.assert_array_equal(got[0].t_ns, want[0].t_ns)
    np.testing.assert_array_equal(got[0].counts, want[0].counts)
    assert got[1] == want[1] == 0 and want[0].counts.sum() > 0


def test_an_overlap_reaching_past_the_neighbouring_batch_is_not_counted_as_decoded() -> None:
    parts = _batches(4)
    # the fourth batch starts before the second ended: _concat_streams reorders across
    # three batches, which batch-by-batch counting cannot follow
    parts[3] = AccStream(parts[3].t_ns - (parts[3].t_ns[0] - parts[1].t_ns[-50]),
                         parts[3].acc_g)
    feed = _CountedAcc()
    for p in parts:
        feed.add(p)
    assert not feed.finish().exact
    got, _ = _both(parts)
    assert got is None


def test_samples_to_drop_or_clip_are_not_counted_as_decoded() -> None:
    parts = _batches(5, overlap_max=0)
    assert _both(parts)[0] is not None
    # the grid starting after the first samples: the whole night clips them
    assert _both(parts, grid_from_ns=int(parts[0].t_ns[0]) + 31 * 10**9)[0] is None
    bad = parts[2].acc_g.copy()
    bad[10] = np.nan
    parts[2] = AccStream(parts[2].t_ns, bad)
    got, want = _both(parts)
    assert got is None and want[1] == 1


@given(st.lists(st.one_of(st.integers(1, 40_000_000), st.integers(-5, 0),
                          st.integers(2**31 - 3, 2**33)), max_size=60))  # long gaps
@example([2**31 - 1, 2**31 - 1, 5])
@example([1, 2**32, 3, 2**32])
def test_the_nominal_rate_is_that_of_the_median_positive_spacing(spacings_ns: list[int]
                                                                  ) -> None:
    """motion.nominal_rate (int32 spacings, int64 where they would not do) against the
    median of the positive int64 spacings, taken in plain Python."""
    t = T0 + np.cumsum(np.array([0, *spacings_ns], dtype=np.int64))
    positive = sorted(d for d in spacings_ns if d > 0)
    k = len(positive)
    if not k:
        assert motion.nominal_rate(t) == 0.0
        return
    median = (positive[(k - 1) // 2] + positive[k // 2]) / 2
    assert motion.nominal_rate(t) == 1e9 / median


def test_samples_of_the_wrong_shape_are_left_to_the_whole_night_path() -> None:
    counter = AccCounter()
    t = T0 + np.arange(500, dtype=np.int64) * 20_000_000
    counter.feed(t, np.zeros((500, 2)))
    assert not counter.exact
    assert counter.result(epoch_grid(T0, int(t[-1]) + 1), t) is None


@pytest.mark.parametrize("case", ["in order", "tie at the seam", "overlap", "empty first",
                                  "three parts"])
def test_joined_parts_hold_every_sample_sorted_by_time(case: str) -> None:
    """_concat_streams against a plain stable sort of every (time, sample) pair: in-order
    pairs (the live rolling buffer plus one batch), overlapping ones, more parts."""
    rng = np.random.default_rng(3)

    def part(t0: int, n: int) -> AccStream:
        t = t0 + np.cumsum(rng.integers(1, 40, n)).astype(np.int64)
        return AccStream(t, rng.normal(size=(n, 3)))

    a = part(0, 50)
    starts = {"in order": [int(a.t_ns[-1]) + 5], "tie at the seam": [int(a.t_ns[-1]) - 1],
              "overlap": [int(a.t_ns[-1]) - 300], "empty first": [10],
              "three parts": [int(a.t_ns[-1]) + 1, int(a.t_ns[-1]) + 3000]}[case]
    if case == "empty first":
        a = AccStream(np.zeros(0, dtype=np.int64), np.zeros((0, 3)))
    parts = [a] + [part(s, 30) for s in starts]
    if case == "tie at the seam":
        parts[1].t_ns[0] = parts[0].t_ns[-1]
    pairs = [(int(t), tuple(row)) for p in parts for t, row in zip(p.t_ns, p.acc_g, strict=True)]
    expected = sorted(pairs, key=lambda x: x[0])  # stable: earlier part first on ties
    joined = _concat_streams(list(parts))
    assert joined.t_ns.dtype == np.int64 and joined.acc_g.shape == (len(pairs), 3)
    assert [(int(t), tuple(row)) for t, row in zip(joined.t_ns, joined.acc_g, strict=True)
            ] == expected


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["add", "add", "add", "overlap", "trim",
                                                 "float32"]),
                                st.integers(1, 40), st.booleans()),
                      min_size=1, max_size=30))
def test_rolling_buffer_joined_in_its_room_as_concatenate_joins_it(steps) -> None:  # type: ignore[no-untyped-def]
    """DeviceStreams.get (batches appended after the buffer's rows, where its arrays have
    room) against the joins without room, step by step as the daemon adds, reads and
    trims; and every stream handed out earlier keeps its values."""
    rng = np.random.default_rng(len(steps))
    live = DeviceStreams("d")
    plain: list[Any] = []  # the same parts, joined as before (no room)
    handed_out: list[tuple[AccStream, AccStream]] = []
    t_end = 0
    for kind, n, read in steps:
        if kind == "trim":
            current = live.get("acc")
            if current is None:
                continue
            keep = current.t_ns >= current.t_ns[len(current) // 2]
            trimmed = AccStream(current.t_ns[keep], current.acc_g[keep])
            live._parts["acc"], live.streams["acc"] = [trimmed], trimmed
            plain = [trimmed]
            continue
        start = t_end - 50 if kind == "overlap" else t_end + 1
        t = start + np.cumsum(rng.integers(0, 30, n)).astype(np.int64)
        values = rng.normal(size=(n, 3)).astype(np.float32 if kind == "float32" else np.float64)
        t_end = max(t_end, int(t[-1]))
        batch = AccStream(t, values)
        live._add("acc", batch)
        plain.append(batch)
        if read:
            got = live.get("acc")
            want = _concat_streams(list(plain))
            plain = [want]
            assert got.t_ns.dtype == want.t_ns.dtype and got.acc_g.dtype == want.acc_g.dtype
            assert np.array_equal(got.t_ns, want.t_ns)
            assert np.array_equal(got.acc_g, want.acc_g)
            handed_out.append((got, AccStream(got.t_ns.copy(), got.acc_g.copy())))
    for got, snapshot in handed_out:
        assert np.array_equal(got.t_ns, snapshot.t_ns)
        assert np.array_equal(got.acc_g, snapshot.acc_g)
