"""The few signal filters staging needs, in numpy alone. Pure.

The live scoring worker used to import ``scipy.signal`` and ``scipy.ndimage`` for four
functions; those imports alone cost a Raspberry Pi class machine about 2 CPU-seconds and
80 MB of resident memory at every worker start. What is here replaces them:

* :func:`iir_filter` and :func:`iir_steady_state` -- a linear recursive (IIR) filter with
  carried state, in the transposed direct form II that ``scipy.signal.lfilter`` and
  ``lfilter_zi`` define (same coefficients, same state vector), computed block-wise: the
  response to each block's input is a lower-triangular Toeplitz product with the impulse
  response, the state carried from block to block is a linear recursion solved by a
  parallel prefix scan (Hillis & Steele 1986, "Data parallel algorithms", CACM 29:1170;
  Blelloch 1990, "Prefix sums and their applications", CMU-CS-90-190). The result equals a
  sample-by-sample run up to floating-point rounding (relative differences around 1e-15
  for stable filters; tests compare it with scipy);
* :func:`running_mean_nearest` and :func:`running_max_nearest` -- centred moving mean
  and maximum with the edges extended by the first / last value (``ndimage``'s
  ``uniform_filter1d`` / ``maximum_filter1d`` with ``mode="nearest"``; the mean is
  accumulated in the same order, so its values are the same to the last bit);
* :func:`periodic_hann` -- the periodic Hann window (Blackman & Tukey 1958), computed
  as ``scipy.signal.get_window("hann", n)`` computes it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord.errors import StagingError

F64 = npt.NDArray[np.float64]

_BLOCK = 64
"""Samples per block: large enough that few scan steps remain, small enough that the
Toeplitz product (``_BLOCK`` multiply-adds per sample) stays cheap."""


def windows(x: npt.NDArray[Any], w: int) -> npt.NDArray[Any]:
    """Read-only view of every run of ``w`` consecutive samples along the last axis, shape
    ``(..., n - w + 1, w)``: ``sliding_window_view(x, w)`` without its argument handling,
    which costs more than the work on the short series the live stager handles every 30 s.
    """
    xx = np.asarray(x)
    n = xx.shape[-1]
    if not 1 <= w <= n:
        raise StagingError(f"window of {w} samples does not fit {n}")
    step = xx.strides[-1]
    shape, strides = (*xx.shape[:-1], n - w + 1, w), (*xx.strides[:-1], step, step)
    if not xx.flags.c_contiguous:
        return np.lib.stride_tricks.as_strided(xx, shape, strides, writeable=False)
    # a view on the same buffer, built directly: a quarter of as_strided's cost
    view: npt.NDArray[Any] = np.ndarray(shape, xx.dtype, xx, 0, strides)
    view.flags.writeable = False
    return view


def _normalised(b: npt.ArrayLike, a: npt.ArrayLike) -> tuple[F64, F64]:
    bb = np.atleast_1d(np.asarray(b, dtype=np.float64))
    aa = np.atleast_1d(np.asarray(a, dtype=np.float64))
    if bb.ndim != 1 or aa.ndim != 1 or bb.size == 0 or aa.size == 0 or aa[0] == 0:
        raise StagingError("IIR filter needs 1-D coefficients with a[0] != 0")
    n = max(aa.size, bb.size)
    bb = np.concatenate((bb, np.zeros(n - bb.size))) / aa[0]
    aa = np.concatenate((aa, np.zeros(n - aa.size))) / aa[0]
    return bb, aa


def _state_space(bb: F64, aa: F64) -> tuple[F64, F64]:
    """Transition ``A`` (order x order) and input vector ``B`` of the transposed direct
    form II: ``s' = A s + B x`` and ``y = s[0] + b0 x``."""
    order = bb.size - 1
    trans = np.zeros((order, order))
    trans[:, 0] = -aa[1:]
    trans[np.arange(order - 1), np.arange(1, order)] = 1.0
    return trans, bb[1:] - aa[1:] * bb[0]


def _impulse_response(bb: F64, aa: F64, length: int) -> F64:
    """The first ``length`` samples of the impulse response, by the recursion itself
    (transposed direct form II, sample by sample, as ``lfilter``)."""
    order = bb.size - 1
    s = np.zeros(order)
    h = np.empty(length)
    for k in range(length):
        x = 1.0 if k == 0 else 0.0
        out = s[0] + bb[0] * x
        s[:-1] = s[1:] + bb[1:-1] * x - aa[1:-1] * out
        s[-1] = bb[-1] * x - aa[-1] * out
        h[k] = out
    return h


@functools.lru_cache(maxsize=16)
def _modes(b: tuple[float, ...], a: tuple[float, ...]) -> tuple[npt.NDArray[np.complex128], ...]:
    """The filter in its modal basis: poles ``lam``, the eigenvector matrix ``V`` of the
    transition and its inverse; ``C V`` (a mode's share of the output) and ``V^-1 B``
    (the input's drive of each mode).

    The carried state of the direct form has entries a hundred times the signal that
    cancel; advanced by whole blocks in that basis it would lose some five digits. In the
    modal basis each mode is a first-order recursion ``s' = lam s + drive``: powers of
    ``lam`` never grow, and the state is converted back only at the ends of a call."""
    bb, aa = np.asarray(b), np.asarray(a)
    trans, inp = _state_space(bb, aa)
    lam, vec = np.linalg.eig(trans)
    if np.linalg.cond(vec) > 1e8:
        raise StagingError("IIR filter with repeated poles: no modal form (not supported)")
    inv = np.linalg.inv(vec)
    mats = (lam.astype(np.complex128), vec.astype(np.complex128), inv.astype(np.complex128),
            vec[0].astype(np.complex128), (inv @ inp).astype(np.complex128))
    for m in mats:
        m.setflags(write=False)
    return mats


@functools.lru_cache(maxsize=8)
def _block_matrices(b: tuple[float, ...], a: tuple[float, ...],
                    length: int) -> tuple[F64, F64, F64, npt.NDArray[np.complex128]]:
    """For blocks of ``length`` samples, as real matrices for one matrix product each:
    the Toeplitz matrix of the impulse response (zero state; ``length`` x ``length``,
    transposed); each sample's drive of each mode at the block's end (``length`` x
    2 order: real parts, then imaginary); the modes' effect on each output (2 order x
    ``length``: from the real and the imaginary parts of the modal state); and
    ``lam ** length``."""
    lam, _vec, _inv, out_share, drive = _modes(b, a)
    impulse = _impulse_response(np.asarray(b), np.asarray(a), length)
    lag = np.arange(length)[:, None] - np.arange(length)[None, :]
    toeplitz_t = np.ascontiguousarray(np.where(lag >= 0, impulse[np.maximum(lag, 0)], 0.0).T)
    steps = np.arange(length)
    to_state = drive[:, None] * lam[:, None] ** (length - 1 - steps)[None, :]  # order x L
    from_state = out_share[None, :] * lam[None, :] ** steps[:, None]  # L x order: C V lam^j
    to_state_ri = np.ascontiguousarray(np.concatenate((to_state.real, to_state.imag)).T)
    # Re(s @ F.T) = Re(s) @ Re(F).T - Im(s) @ Im(F).T
    from_state_ri = np.ascontiguousarray(np.concatenate((from_state.real.T,
                                                         -from_state.imag.T)))
    mats = (toeplitz_t, to_state_ri, from_state_ri, lam**length)
    for mat in mats:
        mat.setflags(write=False)
    return mats


def _as_complex(ri: F64, order: int) -> npt.NDArray[np.complex128]:
    """Real and imaginary halves of the last axis as one complex array."""
    return ri[..., :order] + 1j * ri[..., order:]


def _as_ri(z: npt.NDArray[np.complex128]) -> F64:
    return np.concatenate((z.real, z.imag), axis=-1)


def iir_filter(b: npt.ArrayLike, a: npt.ArrayLike, x: F64, zi: F64) -> tuple[F64, F64]:
    """Filter each row of ``x`` with the IIR filter ``(b, a)``, starting from state ``zi``.

    Parameters
    ----------
    b, a
        Numerator and denominator coefficients (``a[0] != 0``), as for
        ``scipy.signal.lfilter``.
    x
        ``(rows, n)`` input; filtered along the last axis.
    zi
        ``(rows, order)`` initial state, ``order = max(len(a), len(b)) - 1``, in
        ``lfilter``'s convention (zeros: the filter at rest).

    Returns
    -------
    y : ndarray, shape ``(rows, n)``
    zf : ndarray, shape ``(rows, order)``
        The final state: passing it as ``zi`` with the next piece of input gives the
        output of one call over both pieces.
    """
    return IirFilter(b, a)(x, zi)


class IirFilter:
    """:func:`iir_filter` with its coefficients checked and normalised once: a caller that
    filters many pieces with the same coefficients (the live counts, every 30 s) calls
    the instance, ``IirFilter(b, a)(x, zi)``, which computes what :func:`iir_filter`
    computes, operation for operation, without redoing the coefficient work per call."""

    def __init__(self, b: npt.ArrayLike, a: npt.ArrayLike) -> None:
        bb, aa = _normalised(b, a)
        self.order = bb.size - 1
        self._b0 = bb[0]
        self._key = (tuple(bb.tolist()), tuple(aa.tolist()))
        self._mats: tuple[tuple[npt.NDArray[np.complex128], ...],
                          tuple[F64, F64, F64, npt.NDArray[np.complex128]]] | None = None
        self._lam_powers: dict[int, npt.NDArray[np.complex128]] = {}  # lam**rest
        self._jump_powers: list[npt.NDArray[np.complex128]] = []  # jump**(2**k), by squaring

    def __call__(self, x: F64, zi: F64) -> tuple[F64, F64]:
        """Filter each row of ``x`` from state ``zi``: ``(y, zf)`` as :func:`iir_filter`."""
        order = self.order
        xx = np.asarray(x, dtype=np.float64)
        if xx.ndim != 2:
            raise StagingError(f"iir_filter needs (rows, n) input, got shape {xx.shape}")
        rows, n = xx.shape
        state = np.asarray(zi, dtype=np.float64).reshape(rows, order)
        if order == 0 or n == 0:
            return self._b0 * xx, state.copy()
        if self._mats is None:  # the first call (raises for a filter with no modal form)
            self._mats = (_modes(*self._key), _block_matrices(*self._key, _BLOCK))
        (_lam, vec, inv, _out, _drive), (toeplitz_t, to_state, from_state, jump) = self._mats
        modal = state @ inv.T  # (rows, order), complex
        y = np.empty_like(xx)
        n_full = n // _BLOCK
        if n_full:
            blocks = xx[:, : n_full * _BLOCK].reshape(rows * n_full, _BLOCK)
            # carry[k] = modal state at the end of block k = jump * carry[k-1] + drive[k]
            carry = _as_complex(blocks @ to_state, order).reshape(rows, n_full, order)
            carry[:, 0] += modal * jump
            n_steps = (n_full - 1).bit_length()
            powers = self._jump_powers
            if len(powers) < n_steps:  # a new list, whole when stored (threads may share it)
                powers = [jump]
                while len(powers) < n_steps:
                    powers.append(powers[-1] * powers[-1])
                self._jump_powers = powers
            for k in range(n_steps):  # inclusive prefix scan of the first-order recursions
                step = 1 << k
                carry[:, step:] += carry[:, :-step] * powers[k]
            starts = np.concatenate((modal[:, None, :], carry[:, :-1]), axis=1)
            out = blocks @ toeplitz_t
            out += _as_ri(starts).reshape(rows * n_full, 2 * order) @ from_state
            y[:, : n_full * _BLOCK] = out.reshape(rows, -1)
            modal = carry[:, -1]
        rest = n - n_full * _BLOCK
        if rest:  # a shorter block: the same matrices, cut to its length
            tail = xx[:, n_full * _BLOCK :]
            y[:, n_full * _BLOCK :] = (tail @ toeplitz_t[:rest, :rest]
                                       + _as_ri(modal) @ from_state[:, :rest])
            lam_rest = self._lam_powers.get(rest)
            if lam_rest is None:
                lam_rest = self._lam_powers[rest] = _lam**rest
            modal = modal * lam_rest + _as_complex(tail @ to_state[_BLOCK - rest :], order)
        return y, np.ascontiguousarray((modal @ vec.T).real)


def iir_steady_state(b: npt.ArrayLike, a: npt.ArrayLike) -> F64:
    """State of the filter after a unit step has settled (``scipy.signal.lfilter_zi``):
    scaled by the first sample, it starts a filter without a transient."""
    bb, aa = _normalised(b, a)
    trans, inp = _state_space(bb, aa)
    return np.asarray(np.linalg.solve(np.eye(trans.shape[0]) - trans, inp), dtype=np.float64)


def _extended(x: F64, w: int) -> F64:
    """``x`` (along axis 0) extended by ``w // 2`` copies of its first row and
    ``w - w // 2 - 1`` of its last (the centred window of ``ndimage``)."""
    before = w // 2
    after = w - before - 1
    return np.concatenate((np.repeat(x[:1], before, axis=0), x,
                           np.repeat(x[-1:], after, axis=0)), axis=0)


def running_mean_nearest(x: F64, w: int) -> F64:
    """Centred moving mean over ``w`` samples along axis 0, the edges extended by the
    first / last value.

    Accumulated as ``ndimage.uniform_filter1d`` does (the first window summed in order,
    then a running sum updated by ``entering - leaving``, each output that sum over
    ``w``), so the values agree with it bit for bit."""
    xx = np.asarray(x, dtype=np.float64)
    if w < 1:
        raise StagingError(f"running mean needs a window of at least 1, got {w}")
    if xx.shape[0] == 0:
        return xx.copy()
    ext = _extended(xx, w)
    steps = np.empty_like(xx)
    steps[0] = np.cumsum(ext[:w], axis=0)[-1]
    np.subtract(ext[w:], ext[: xx.shape[0] - 1], out=steps[1:])
    return np.asarray(np.cumsum(steps, axis=0) / float(w), dtype=np.float64)


def running_max_nearest(x: F64, w: int) -> F64:
    """Centred moving maximum over ``w`` samples of a 1-D series, the edges extended by
    the first / last value (``ndimage.maximum_filter1d(x, w, mode="nearest")``)."""
    xx = np.asarray(x, dtype=np.float64)
    if xx.size == 0:
        return xx.copy()
    ext = _extended(xx, w)
    return np.asarray(windows(ext, w).max(axis=1), dtype=np.float64)


def periodic_hann(n: int) -> F64:
    """Periodic Hann window of ``n`` points, ``0.5 + 0.5 cos(phi)`` for ``phi`` spaced
    evenly from ``-pi`` over one period (as ``scipy.signal.get_window("hann", n)``)."""
    if n <= 1:
        return np.ones(max(n, 0))
    phi = np.linspace(-np.pi, np.pi, n + 1)[:n]
    win = np.zeros(n)
    win += 0.5 * np.cos(0.0 * phi)
    win += 0.5 * np.cos(1.0 * phi)
    return win
