"""Offline training of the stager's per-epoch model: multinomial logistic regression.

Pure numpy/scipy (L-BFGS-B on the L2-penalised, class-weighted cross-entropy). Used by
``tools/train_stager.py`` to build the shipped model and by the leave-one-subject-out
validation (``sensord validate walch --loso``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

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


def tune_gains(proba: F64, y: I64, grid: F64 | None = None) -> F64:
    """Per-class decision gains maximising the sum of sleep/wake, 3-class and 4-class
    kappa on the given (training) data by coordinate search over ``grid``."""
    g = np.exp(np.linspace(-1.0, 1.0, 11)) if grid is None else grid
    gains = np.ones(N_CLASSES)

    def score(c: F64) -> float:
        p4 = np.argmax(proba * c, axis=1)
        return (
            cohen_kappa((y > 0).astype(np.int64), (p4 > 0).astype(np.int64), 2)
            + cohen_kappa(THREE_CLASS[y], THREE_CLASS[p4], 3)
            + cohen_kappa(y, p4, N_CLASSES)
        )

    for _ in range(2):
        for cls in range(N_CLASSES):
            trial = np.repeat(gains[None, :], g.size, axis=0)
            trial[:, cls] = g
            scores = [score(c) for c in trial]  # 11 candidates per class, not per epoch
            gains[cls] = g[int(np.argmax(scores))]
    return gains
