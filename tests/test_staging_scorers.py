"""Sleep/wake scorers against hand computations and plain-Python references."""

from __future__ import annotations

import math

import numpy as np

from sensord.staging.scorers import cole_kripke, hdcza_spt, sadeh, van_hees_sib


def ck_reference(counts: list[float]) -> list[int]:
    """Cole-Kripke written out from the paper's formula, one epoch at a time."""
    w = {-4: 106, -3: 54, -2: 58, -1: 76, 0: 230, 1: 74, 2: 67}
    e = [min(c / 100.0, 300.0) for c in counts]
    out = []
    for t in range(len(e)):
        d = 0.001 * sum(wk * e[t + k] for k, wk in w.items() if 0 <= t + k < len(e))
        out.append(1 if d < 1 else 0)
    return out


def sadeh_reference(counts: list[float]) -> list[int]:
    c = [min(x, 300.0) for x in counts]
    n = len(c)

    def at(i: int) -> float:
        return c[i] if 0 <= i < n else 0.0

    out = []
    for t in range(n):
        win = [at(i) for i in range(t - 5, t + 6)]
        mean = sum(win) / 11
        nat = sum(1 for x in win if 50 <= x < 100)
        six = [at(i) for i in range(t - 5, t + 1)]
        m6 = sum(six) / 6
        sd = math.sqrt(sum((x - m6) ** 2 for x in six) / 5)
        ps = 7.601 - 0.065 * mean - 1.08 * nat - 0.056 * sd - 0.703 * math.log(c[t] + 1)
        out.append(1 if ps >= 0 else 0)
    return out


def test_cole_kripke_by_hand() -> None:
    # 1000 counts -> e = 10 -> D = W / 100: wake only where the weight is >= 100, i.e. at
    # the epoch itself (230) and 4 epochs later (106 on epoch t-4)
    counts = np.zeros(12)
    counts[5] = 1000
    assert list(np.flatnonzero(cole_kripke(counts) == 0)) == [5, 9]
    counts[5] = 500  # D = 1.15 at the epoch itself, 0.53 four epochs later
    assert list(np.flatnonzero(cole_kripke(counts) == 0)) == [5]


def test_sadeh_by_hand() -> None:
    counts = np.zeros(11)
    counts[5] = 300
    # epoch 5: MEAN 300/11, NAT 0, SD of [0,0,0,0,0,300] (ddof 1) = sqrt(15000), LG ln 301
    ps5 = 7.601 - 0.065 * 300 / 11 - 0.056 * math.sqrt(15000) - 0.703 * math.log(301)
    assert ps5 < 0
    got = sadeh(counts)
    assert got[5] == 0
    # epoch 4: the six-epoch SD window (-1..4) is all zero -> PS = 7.601 - 0.065*300/11 > 0
    assert got[4] == 1
    assert list(sadeh(np.zeros(20))) == [1] * 20


def test_scorers_match_plain_references_on_random_counts() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        counts = rng.choice([0, 0, 0, 20, 60, 80, 150, 400, 2000], size=n).astype(float)
        assert list(cole_kripke(counts)) == ck_reference(list(counts))
        assert list(sadeh(counts)) == sadeh_reference(list(counts))


def test_missing_counts_are_unscored() -> None:
    counts = np.array([0, np.nan, 0, np.inf, 0], dtype=float)
    assert list(cole_kripke(counts)) == [1, -1, 1, -1, 1]
    assert list(sadeh(counts)) == [1, -1, 1, -1, 1]
    assert cole_kripke(np.zeros(0)).size == 0 and sadeh(np.zeros(0)).size == 0


def test_van_hees_sustained_inactivity() -> None:
    # 5-s steps: 59 still steps (< 5 min) then a move, then 60 still steps (= 5 min)
    d = np.concatenate((np.full(59, 1.0), [20.0], np.full(60, 2.0), [30.0]))
    sib = van_hees_sib(d)
    assert sib[:59].sum() == 0 and sib[59] == 0
    assert sib[60:120].all() and sib[120] == 0


def test_hdcza_finds_the_long_quiet_block() -> None:
    step = 5
    day = np.full(int(6 * 3600 / step), 30.0)  # 6 h active (angle changing a lot)
    night = np.full(int(8 * 3600 / step), 0.2)  # 8 h quiet
    d = np.concatenate((day, night, day))
    spt = hdcza_spt(d)
    assert spt is not None
    first, last = spt
    # the rolling median shifts the edges by at most half its 5-min window
    assert abs(first - day.size) <= 30 and abs(last - (day.size + night.size)) <= 30
    assert hdcza_spt(np.full(10, np.nan)) is None
