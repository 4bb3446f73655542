"""Offline training of the stager's per-epoch model: multinomial logistic regression.

Pure numpy/scipy (L-BFGS-B on the L2-penalised, class-weighted cross-entropy). Used by
``tools/train_stager.py`` to build the shipped model and by the leave-one-subject-out
validation (``sensord validate walch --loso``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from sensord.staging import features
from sensord.staging.stager import FEATURE_SETS, EpochClassifier, StagerModel

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

N_CLASSES = 4


@dataclass(frozen=True, slots=True)
class LinearModel:
    """``softmax(((x - mean) / scale) @ weights[:-1] + weights[-1]) * class_gain``."""

    mean: F64
    scale: F64
    weights: F64  # (p + 1, K)
    class_gain: F64  # (K,) decision gains applied to probabilities before argmax

    def proba(self, x: F64) -> F64:
        """Class probabilities ``(n, K)`` (rows sum to 1, before decision gains)."""
        z = ((x - self.mean) / self.scale) @ self.weights[:-1] + self.weights[-1]
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)


def fit_logistic(
    x: F64,
    y: I64,
    *,
    l2: float = 1.0,
    class_weight_power: float = 0.5,
    init: F64 | None = None,
    max_iter: int = 500,
) -> LinearModel:
    """Fit the multinomial model; samples are weighted by ``prior[y] ** -power``.

    Rows of ``x`` holding ``NaN`` are dropped. Returns the model with unit class gains.
    """
    ok = np.isfinite(x).all(axis=1)
    x, y = x[ok], y[ok]
    k = N_CLASSES
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-9
    xs = np.column_stack([(x - mean) / scale, np.ones(len(x))])
    n, p1 = xs.shape
    prior = np.bincount(y, minlength=k) / max(len(y), 1)
    w = (1.0 / np.maximum(prior, 1e-9))[y] ** class_weight_power
    w = w / w.sum()
    onehot = np.eye(k)[y]
    reg = np.ones((p1, 1))
    reg[-1] = 0.0

    def loss(theta: F64) -> tuple[float, F64]:
        wmat = theta.reshape(p1, k)
        z = xs @ wmat
        z -= z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
        logp = z - lse
        val = -(w * (onehot * logp).sum(axis=1)).sum() + l2 * (reg * wmat**2).sum() / n
        grad = xs.T @ ((np.exp(logp) - onehot) * w[:, None]) + 2 * l2 * reg * wmat / n
        return float(val), grad.ravel()

    theta0 = np.zeros(p1 * k) if init is None else np.asarray(init, dtype=np.float64).ravel()
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return LinearModel(mean, scale, res.x.reshape(p1, k), np.ones(k))


def cohen_kappa(truth: I64, pred: I64, k: int) -> float:
    """Cohen's kappa of two label arrays with classes ``0..k-1``."""
    cm = np.zeros((k, k))
    np.add.at(cm, (truth, pred), 1)
    n = cm.sum()
    if n == 0:
        return float("nan")
    po = np.trace(cm) / n
    pe = (cm.sum(axis=0) * cm.sum(axis=1)).sum() / n**2
    return float((po - pe) / (1 - pe)) if pe < 1 else 0.0


THREE_CLASS = np.array([0, 1, 1, 2])
"""wake/light/deep/REM -> wake/NREM/REM."""


def fit_mlp(
    x: F64,
    y: I64,
    *,
    hidden: int = 16,
    l2: float = 30.0,
    class_weight_power: float = 0.5,
    max_iter: int = 300,
    seed: int = 0,
) -> tuple[F64, F64, tuple[F64, ...], F64]:
    """One-hidden-layer tanh perceptron, class-weighted cross-entropy, L2 on weights,
    L-BFGS-B from a seeded Glorot-style start. Returns ``(mean, scale, layers, prior_w)``
    with ``prior_w`` the class distribution under the sample weights."""
    ok = np.isfinite(x).all(axis=1)
    x, y = x[ok], y[ok]
    k = N_CLASSES
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-9
    xs = (x - mean) / scale
    n, p = xs.shape
    prior = np.bincount(y, minlength=k) / max(n, 1)
    w = (1.0 / np.maximum(prior, 1e-9))[y] ** class_weight_power
    prior_w = np.bincount(y, weights=w, minlength=k) / w.sum()
    w = w / w.sum()
    onehot = np.eye(k)[y]
    shapes = [(p, hidden), (hidden,), (hidden, k), (k,)]
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.cumsum([0, *sizes])

    def unpack(theta: F64) -> list[F64]:
        return [theta[offsets[i] : offsets[i + 1]].reshape(shapes[i]) for i in range(4)]

    def loss(theta: F64) -> tuple[float, F64]:
        w1, b1, w2, b2 = unpack(theta)
        a = np.tanh(xs @ w1 + b1)
        z = a @ w2 + b2
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        val = -(w * (onehot * logp).sum(axis=1)).sum() + l2 * (
            (w1**2).sum() + (w2**2).sum()
        ) / n
        g = (np.exp(logp) - onehot) * w[:, None]
        gw2 = a.T @ g + 2 * l2 * w2 / n
        ga = (g @ w2.T) * (1 - a * a)
        gw1 = xs.T @ ga + 2 * l2 * w1 / n
        grad = np.concatenate([gw1.ravel(), ga.sum(axis=0), gw2.ravel(), g.sum(axis=0)])
        return float(val), grad

    rng = np.random.default_rng(seed)
    theta0 = np.concatenate([
        rng.normal(0, 1 / np.sqrt(p), p * hidden), np.zeros(hidden),
        rng.normal(0, 1 / np.sqrt(hidden), hidden * k), np.zeros(k),
    ])
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return mean, scale, tuple(unpack(res.x)), prior_w


@contextlib.contextmanager
def single_thread_blas() -> Iterator[None]:
    """Run the block with one BLAS thread (``threadpoolctl``, a dev dependency).

    The training matrices are small (about 9000 x 44): a multi-threaded BLAS gains
    nothing on them and, with several fold workers on a busy 2-core machine, its
    spinning threads made training 20-30x slower. One thread also makes the fitted
    numbers independent of the machine's core count. Without ``threadpoolctl`` the
    block runs unchanged (same results up to rounding, possibly much slower).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with the dev extra
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@dataclass(frozen=True, slots=True)
class WalchNight:
    """One Walch subject: precomputed features and PSG stages (0..3) per epoch."""

    subject: str
    count: F64
    hr: F64
    time_h: F64
    cosine: F64
    stages: I64


def walch_design(night: WalchNight, feature_set: str) -> F64:
    """Design matrix of a Walch night for one feature set, built exactly as
    :func:`sensord.staging.core.score_night` builds it from live streams."""
    count_n, hr_n = features.normalise_night(night.count, night.hr)
    n = night.stages.size
    if feature_set == "hr+motion":
        return features.design_matrix(count_n, hr_n, n)
    if feature_set == "hr":
        return features.design_matrix(None, hr_n, n)
    if feature_set == "motion":
        return features.design_matrix(count_n, None, n)
    raise ValueError(f"unknown feature set {feature_set!r}")


def transition_counts(nights: list[WalchNight]) -> F64:
    """Transition matrix from consecutive PSG epochs, add-one smoothed, rows sum to 1."""
    counts = np.ones((N_CLASSES, N_CLASSES))
    for night in nights:
        np.add.at(counts, (night.stages[:-1], night.stages[1:]), 1)
    return counts / counts.sum(axis=1, keepdims=True)


def train_stager(
    nights: list[WalchNight],
    *,
    version: str,
    feature_sets: tuple[str, ...] = FEATURE_SETS,
    hidden: int = 16,
    l2_mlp: float = 30.0,
    l2_linear: float = 1.0,
    max_iter: int = 300,
    row_step: int = 2,
    class_weight_power: float = 1.0,
) -> StagerModel:
    """Fit, per feature set, a class-weighted logistic regression and perceptron (their
    probabilities are averaged) on every ``row_step``-th epoch (neighbouring epochs share
    most of their context, so this halves the cost and loses little), with sample
    weights ``prior[class] ** -class_weight_power`` (1: balanced classes), and the transition
    matrix and class prior from the training hypnograms. Nothing is fitted per subject.
    BLAS runs single-threaded (:func:`single_thread_blas`)."""
    with single_thread_blas():
        return _train_stager(nights, version=version, feature_sets=feature_sets,
                             hidden=hidden, l2_mlp=l2_mlp, l2_linear=l2_linear,
                             max_iter=max_iter, row_step=row_step,
                             class_weight_power=class_weight_power)


def _train_stager(
    nights: list[WalchNight], *, version: str, feature_sets: tuple[str, ...], hidden: int,
    l2_mlp: float, l2_linear: float, max_iter: int, row_step: int, class_weight_power: float,
) -> StagerModel:
    trans = transition_counts(nights)
    y_all = np.concatenate([n.stages for n in nights])
    initial = np.bincount(y_all, minlength=N_CLASSES) / y_all.size
    classifiers: dict[str, EpochClassifier] = {}
    for name in feature_sets:
        x = np.vstack([walch_design(n, name) for n in nights])[::row_step]
        y = y_all[::row_step]
        mean, scale, layers, prior_w = fit_mlp(x, y, hidden=hidden, l2=l2_mlp,
                                               class_weight_power=class_weight_power,
                                               max_iter=max_iter)
        lin = fit_logistic(x, y, l2=l2_linear, class_weight_power=class_weight_power,
                           max_iter=max_iter)
        linear = (lin.weights[:-1], lin.weights[-1])
        classifiers[name] = EpochClassifier(mean, scale, (layers, linear), prior_w)
    subjects = ",".join(n.subject for n in nights)
    return StagerModel(version, classifiers, trans, initial, True,
                       f"walch2019 {len(nights)} subjects: {subjects}")
