"""The measuring instruments, checked independently of the code that uses them.

``cohen_kappa``, ``agreement`` and ``vendor_style_summary`` (sensord/staging/validate.py)
against small tables computed by hand (the arithmetic is written out beside each table);
the HMM's vectorised forward-backward and Viterbi (sensord/staging/hmm.py) against plain
Python: brute-force enumeration of every state path on tiny cases, and the textbook
recursions (Rabiner 1989) as naive loops on longer ones.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from sensord.staging.hmm import forward_backward, viterbi
from sensord.staging.validate import agreement, cohen_kappa, vendor_style_summary


def labels(cm: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Label arrays whose confusion matrix (rows truth, columns prediction) is ``cm``."""
    truth, pred = [], []
    for i, row in enumerate(cm):
        for j, count in enumerate(row):
            truth += [i] * count
            pred += [j] * count
    # a fixed shuffle: order must not matter
    order = np.random.default_rng(0).permutation(len(truth))
    return np.array(truth)[order], np.array(pred)[order]


# --- kappa and agreement -----------------------------------------------------------------------


def test_two_class_table_by_hand() -> None:
    # truth \ pred   wake  sleep
    #   wake          20     5      row 25
    #   sleep         10    15      row 25
    #   columns       30    20      n = 50
    # p_o = (20 + 15) / 50 = 0.7
    # p_e = (25 * 30 + 25 * 20) / 50^2 = (750 + 500) / 2500 = 0.5
    # kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    # wake: sensitivity 20 / 25 = 0.8; specificity (true sleep not called wake) 15 / 25 = 0.6
    # sleep: sensitivity 15 / 25 = 0.6; specificity 20 / 25 = 0.8
    t, p = labels([[20, 5], [10, 15]])
    assert cohen_kappa(t, p, 2) == pytest.approx(0.4, abs=1e-12)
    a = agreement(t, p, ("wake", "sleep"))
    assert a == {
        "epochs": 50, "accuracy": 0.7, "kappa": 0.4,
        "wake": {"sensitivity": 0.8, "specificity": 0.6},
        "sleep": {"sensitivity": 0.6, "specificity": 0.8},
    }


def test_three_class_table_by_hand() -> None:
    # truth \ pred   0   1   2   row
    #   0            4   1   0    5
    #   1            2   6   2   10
    #   2            0   1   4    5
    #   column       6   8   6   n = 20
    # p_o = (4 + 6 + 4) / 20 = 0.7
    # p_e = (5 * 6 + 10 * 8 + 5 * 6) / 400 = 140 / 400 = 0.35
    # kappa = 0.35 / 0.65 = 7 / 13 = 0.538461... -> 0.5385
    # class 0: sens 4 / 5 = 0.8; spec: rows 1-2 x cols 1-2 = 6 + 2 + 1 + 4 = 13 of 15 -> 0.8667
    # class 1: sens 6 / 10 = 0.6; spec: rows 0, 2 x cols 0, 2 = 4 + 0 + 0 + 4 = 8 of 10 -> 0.8
    # class 2: sens 4 / 5 = 0.8; spec: rows 0-1 x cols 0-1 = 4 + 1 + 2 + 6 = 13 of 15 -> 0.8667
    t, p = labels([[4, 1, 0], [2, 6, 2], [0, 1, 4]])
    assert cohen_kappa(t, p, 3) == pytest.approx(7 / 13, abs=1e-12)
    a = agreement(t, p, ("wake", "nrem", "rem"))
    assert (a["epochs"], a["accuracy"], a["kappa"]) == (20, 0.7, 0.5385)
    assert a["wake"] == {"sensitivity": 0.8, "specificity": 0.8667}
    assert a["nrem"] == {"sensitivity": 0.6, "specificity": 0.8}
    assert a["rem"] == {"sensitivity": 0.8, "specificity": 0.8667}


def test_kappa_limits_by_hand() -> None:
    # perfect: p_o = 1, p_e = (3*3 + 2*2) / 25 = 0.52 -> kappa = 0.48 / 0.48 = 1
    t = np.array([0, 0, 0, 1, 1])
    assert cohen_kappa(t, t, 2) == 1.0
    # chance: [[1, 1], [1, 1]]: p_o = 0.5, p_e = (2*2 + 2*2) / 16 = 0.5 -> 0
    t, p = labels([[1, 1], [1, 1]])
    assert cohen_kappa(t, p, 2) == 0.0
    # complete disagreement [[0, 2], [2, 0]]: p_o = 0, p_e = 0.5 -> (0 - 0.5) / 0.5 = -1
    t, p = labels([[0, 2], [2, 0]])
    assert cohen_kappa(t, p, 2) == -1.0
    # one class on both sides: p_e = 1, kappa undefined; the convention is 0
    assert cohen_kappa(np.zeros(4, int), np.zeros(4, int), 2) == 0.0
    # a class that never occurs in the truth has no sensitivity; every epoch is "not it"
    # and none was called it: specificity 4 / 4 = 1
    a = agreement(np.zeros(4, int), np.zeros(4, int), ("wake", "sleep"))
    assert a["sleep"] == {"sensitivity": None, "specificity": 1.0}
    assert a["wake"] == {"sensitivity": 1.0, "specificity": None}


# --- vendor-style (ActiLife) in-bed summary ---------------------------------------------------


def test_vendor_summary_by_hand() -> None:
    # minute:  0 1 2 3 4 5 6 7 8 9
    # call:    W W S W S S W W S S     (S = 1 sleep, W = 0 wake); TIB = 10
    s = np.array([0, 0, 1, 0, 1, 1, 0, 0, 1, 1], dtype=np.int8)
    # onset = first sleep minute = 2 -> latency 2; after onset: S W S S W W S S
    # TST = 5, WASO = 3, wake runs after onset: [3], [6, 7] -> 2; SE = 5 / 10 = 50 %
    assert vendor_style_summary(s) == {"latency_min": 2.0, "tst_min": 5.0, "waso_min": 3.0,
                                       "awakenings": 2.0, "se_pct": 50.0, "tib_min": 10.0}
    # onset needs 2 consecutive sleep minutes: first at minute 4 -> latency 4;
    # after: S S W W S S -> TST 4, WASO 2, 1 awakening, SE 40 %
    assert vendor_style_summary(s, onset_run_min=2) == {
        "latency_min": 4.0, "tst_min": 4.0, "waso_min": 2.0, "awakenings": 1.0,
        "se_pct": 40.0, "tib_min": 10.0}


def test_vendor_summary_fills_unscored_minutes_by_hand() -> None:
    # minute 0 unscored (no earlier call: takes the first scored call, W); minutes 3-4
    # unscored: take minute 2's S -> W W S S S W S; onset 2, after: S S S W S
    # TST 4, WASO 1, 1 awakening, TIB 7, SE = 400 / 7 = 57.142... -> 57.14
    s = np.array([-1, 0, 1, -1, -1, 0, 1], dtype=np.int8)
    assert vendor_style_summary(s) == {"latency_min": 2.0, "tst_min": 4.0, "waso_min": 1.0,
                                       "awakenings": 1.0, "se_pct": 57.14, "tib_min": 7.0}
    # never asleep: no onset
    assert vendor_style_summary(np.array([0, 0, -1], dtype=np.int8)) == {
        "latency_min": None, "tst_min": 0.0, "waso_min": 0.0, "awakenings": 0.0,
        "se_pct": 0.0, "tib_min": 3.0}


# --- HMM: plain-Python references -------------------------------------------------------------


def _case(rng: np.random.Generator, n: int, k: int, spread: float = 1.0
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    trans = rng.random((k, k)) + 0.05
    trans /= trans.sum(axis=1, keepdims=True)
    initial = rng.random(k) + 0.05
    initial /= initial.sum()
    # emission likelihoods on very different scales per epoch (only ratios matter)
    emission = rng.random((n, k)) ** 3 + 1e-3
    emission *= 10.0 ** rng.uniform(-spread, spread, (n, 1))
    return emission, trans, initial


def _path_weight(path: tuple[int, ...], e: list[list[float]], a: list[list[float]],
                 pi: list[float]) -> float:
    w = pi[path[0]] * e[0][path[0]]
    for t in range(1, len(path)):
        w *= a[path[t - 1]][path[t]] * e[t][path[t]]
    return w


def _brute_posteriors(e: list[list[float]], a: list[list[float]], pi: list[float]
                      ) -> list[list[float]]:
    n, k = len(e), len(pi)
    post = [[0.0] * k for _ in range(n)]
    for path in itertools.product(range(k), repeat=n):
        w = _path_weight(path, e, a, pi)
        for t, s in enumerate(path):
            post[t][s] += w
    return [[x / sum(row) for x in row] for row in post]


def _loop_posteriors(e: list[list[float]], a: list[list[float]], pi: list[float]
                     ) -> list[list[float]]:
    """Rabiner's scaled alpha/beta recursions, one epoch and one state at a time."""
    n, k = len(e), len(pi)
    alpha = [[pi[j] * e[0][j] for j in range(k)]]
    scale = [sum(alpha[0])]
    alpha[0] = [x / scale[0] for x in alpha[0]]
    for t in range(1, n):
        row = [sum(alpha[t - 1][i] * a[i][j] for i in range(k)) * e[t][j] for j in range(k)]
        scale.append(sum(row))
        alpha.append([x / scale[t] for x in row])
    beta = [[1.0] * k for _ in range(n)]
    for t in range(n - 2, -1, -1):
        row = [sum(a[i][j] * e[t + 1][j] * beta[t + 1][j] for j in range(k)) for i in range(k)]
        beta[t] = [x / scale[t + 1] for x in row]
    out = []
    for t in range(n):
        g = [alpha[t][j] * beta[t][j] for j in range(k)]
        out.append([x / sum(g) for x in g])
    return out


def _brute_viterbi(e: list[list[float]], a: list[list[float]], pi: list[float]
                   ) -> tuple[list[int], float]:
    """The best path and how much better it is than the runner-up (log ratio)."""
    n, k = len(e), len(pi)
    scored = sorted((math.log(_path_weight(p, e, a, pi)), p)
                    for p in itertools.product(range(k), repeat=n))
    return list(scored[-1][1]), scored[-1][0] - scored[-2][0]


def _loop_viterbi(e: list[list[float]], a: list[list[float]], pi: list[float]) -> list[int]:
    """Textbook Viterbi: log scores and back-pointers, then backtracking."""
    n, k = len(e), len(pi)
    delta = [[math.log(pi[j]) + math.log(e[0][j]) for j in range(k)]]
    back: list[list[int]] = []
    for t in range(1, n):
        row, ptr = [], []
        for j in range(k):
            best = max(range(k), key=lambda i: delta[t - 1][i] + math.log(a[i][j]))
            ptr.append(best)
            row.append(delta[t - 1][best] + math.log(a[best][j]) + math.log(e[t][j]))
        delta.append(row)
        back.append(ptr)
    path = [max(range(k), key=lambda j: delta[-1][j])]
    for ptr in reversed(back):
        path.append(ptr[path[-1]])
    return path[::-1]


@pytest.mark.parametrize(("n", "k", "seed"), [(1, 4, 0), (2, 2, 1), (3, 3, 2), (5, 4, 3),
                                              (6, 4, 4), (7, 3, 5)])
def test_forward_backward_equals_brute_force_enumeration(n: int, k: int, seed: int) -> None:
    e, a, pi = _case(np.random.default_rng(seed), n, k)
    want = _brute_posteriors(e.tolist(), a.tolist(), pi.tolist())
    np.testing.assert_allclose(forward_backward(e, a, pi), want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("n", "k", "seed"), [(40, 4, 10), (129, 4, 11), (300, 3, 12)])
def test_forward_backward_equals_the_plain_recursion(n: int, k: int, seed: int) -> None:
    e, a, pi = _case(np.random.default_rng(seed), n, k, spread=30.0)
    want = _loop_posteriors(e.tolist(), a.tolist(), pi.tolist())
    np.testing.assert_allclose(forward_backward(e, a, pi), want, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("seed", range(12))
def test_viterbi_equals_brute_force_enumeration(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n, k = int(rng.integers(1, 8)), int(rng.integers(2, 5))
    if k ** n > 5000:
        n = 5
    e, a, pi = _case(rng, n, k)
    best, margin = _brute_viterbi(e.tolist(), a.tolist(), pi.tolist())
    assert margin > 1e-9  # unique optimum (the vectorised decoder's stated condition)
    assert viterbi(e, a, pi).tolist() == best


@pytest.mark.parametrize(("n", "k", "seed"), [(60, 4, 20), (257, 4, 21), (500, 3, 22)])
def test_viterbi_equals_the_plain_recursion(n: int, k: int, seed: int) -> None:
    e, a, pi = _case(np.random.default_rng(seed), n, k, spread=30.0)
    assert viterbi(e, a, pi).tolist() == _loop_viterbi(e.tolist(), a.tolist(), pi.tolist())


def test_viterbi_and_posteriors_of_a_sticky_chain_by_hand() -> None:
    # two states, staying is 9x likelier than switching; emissions favour state 1 only at
    # epoch 1, weakly (2:1): switching 0 -> 1 -> 0 costs 0.1 * 0.1 against 0.9 * 0.9 and
    # gains a factor 2 only: the best path stays in 0 (0.81 * 1 vs 0.01 * 2 = 0.02)
    a = np.array([[0.9, 0.1], [0.1, 0.9]])
    pi = np.array([0.5, 0.5])
    e = np.array([[3.0, 1.0], [1.0, 2.0], [3.0, 1.0]])
    assert viterbi(e, a, pi).tolist() == [0, 0, 0]
    # posterior of state 1 at epoch 1 by enumeration of the 8 paths (weights / 0.5):
    # 000: 3*.9*1*.9*3 = 7.29   001: 3*.9*1*.1*1 = 0.27   010: 3*.1*2*.1*3 = 0.18
    # 011: 3*.1*2*.9*1 = 0.54   100: 1*.1*1*.9*3 = 0.27   101: 1*.1*1*.1*1 = 0.01
    # 110: 1*.9*2*.1*3 = 0.54   111: 1*.9*2*.9*1 = 1.62   total 10.72
    # state 1 at epoch 1: 0.18 + 0.54 + 0.54 + 1.62 = 2.88 -> 2.88 / 10.72
    post = forward_backward(e, a, pi)
    assert post[1, 1] == pytest.approx(2.88 / 10.72, rel=1e-12)
