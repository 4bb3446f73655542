"""Hidden Markov model smoothing and decoding, vectorised with associative scans.

Forward-backward (Rabiner 1989, Proc IEEE 77:257) written as prefix products of the
per-epoch matrices ``M_t = A diag(e_t)`` (``A`` transition matrix, ``e_t`` emission
likelihoods). Matrix products are associative, so all prefix (and suffix) products are
computed in ``ceil(log2 n)`` batched steps (Hillis-Steele scan; Särkkä & García-Fernández
2021, IEEE TAC 66:299) instead of a Python loop over epochs. Each partial product is
rescaled by its largest entry, which leaves normalised posteriors unchanged.

Viterbi decoding uses the same scan in the max-plus semiring: the most probable path
passes, at each epoch, through the state maximising forward max-score plus backward
max-score (max-marginals), which equals the Viterbi path when it is unique.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def _scan(mats: F64, *, reverse: bool, maxplus: bool) -> F64:
    """Inclusive prefix products of ``mats`` (n, K, K); suffix products if ``reverse``."""
    out = mats.copy()
    n = out.shape[0]
    step = 1
    while step < n:
        if not reverse:
            left, right = out[:-step], out[step:]
        else:
            left, right = out[step:], out[:-step]
        # forward: P_t = P_{t-step} @ P_t ; reverse: S_t = S_t @ S_{t+step}
        a, b = (left, right) if not reverse else (right, left)
        if maxplus:
            prod = np.max(a[:, :, :, None] + b[:, None, :, :], axis=2)
            prod -= prod.max(axis=(1, 2), keepdims=True)
        else:
            prod = a @ b
            prod /= prod.max(axis=(1, 2), keepdims=True)
        if not reverse:
            out[step:] = prod
        else:
            out[:-step] = prod
        step *= 2
    return out


def forward_backward(emission: F64, trans: F64, initial: F64) -> F64:
    """Posterior state probabilities ``(n, K)`` given per-epoch emission likelihoods
    ``(n, K)`` (any positive scale), transition matrix ``(K, K)`` (rows sum to 1) and the
    initial distribution ``(K,)``."""
    e = np.asarray(emission, dtype=np.float64)
    n, k = e.shape
    if n == 0:
        return np.zeros((0, k))
    e = e / e.max(axis=1, keepdims=True)
    m = trans[None, :, :] * e[:, None, :]  # M_t[i, j] = A[i, j] e_t[j]
    m[0] = np.diag(initial * e[0])
    fwd = _scan(m, reverse=False, maxplus=False)
    alpha = fwd.sum(axis=1)  # row vector (1..1) @ diag(initial e_0) @ ... : sum over i
    if n > 1:
        bwd = _scan(m[1:], reverse=True, maxplus=False)
        beta = np.vstack((bwd.sum(axis=2), np.ones((1, k))))
    else:
        beta = np.ones((1, k))
    post = alpha * beta
    return post / post.sum(axis=1, keepdims=True)


def viterbi(emission: F64, trans: F64, initial: F64) -> I64:
    """Most probable state sequence (see module docstring)."""
    e = np.asarray(emission, dtype=np.float64)
    n, k = e.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    with np.errstate(divide="ignore"):
        le = np.log(e / e.max(axis=1, keepdims=True))
        la = np.log(trans)
        li = np.log(initial)
    m = la[None, :, :] + le[:, None, :]
    first = np.full((k, k), -np.inf)
    np.fill_diagonal(first, li + le[0])
    m[0] = first
    fwd = _scan(m, reverse=False, maxplus=True).max(axis=1)
    if n > 1:
        bwd = _scan(m[1:], reverse=True, maxplus=True).max(axis=2)
        bwd = np.vstack((bwd, np.zeros((1, k))))
    else:
        bwd = np.zeros((1, k))
    return np.argmax(fwd + bwd, axis=1).astype(np.int64)


def forward_step(alpha: F64 | None, emission: F64, trans: F64, initial: F64) -> F64:
    """One step of the forward recursion (Rabiner 1989, eq. 19-20), normalised.

    ``alpha`` is the filtered distribution of the previous epoch (``None`` before the
    first), ``emission`` this epoch's likelihoods ``(K,)`` (any positive scale). The result
    is ``P(state_t | emissions up to t)``: the posterior :func:`forward_backward` gives
    the last epoch of the chain that ends here.
    """
    e = np.asarray(emission, dtype=np.float64)
    prior = initial if alpha is None else alpha @ trans
    a = prior * (e / e.max())
    return np.asarray(a / a.sum(), dtype=np.float64)
