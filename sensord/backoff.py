"""Reconnect backoff as a pure policy: capped exponential delay with bounded jitter.

Pure: no clock, no randomness of its own. The caller passes the uniform draw ``u`` in
[0, 1), so tests can pin it and the bound is checkable by hand.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """``delay(n) = min(max_s, min_s * factor**n) * (1 - jitter * u)``, ``u`` in [0, 1).

    With ``jitter`` in [0, 1) the delay never exceeds ``max_s`` and never falls below
    ``(1 - jitter) * min(max_s, min_s * factor**n)``, so a device that comes back is
    retried within ``max_s`` (plus one connect timeout) of its return.
    """

    min_s: float = 1.0
    max_s: float = 120.0
    factor: float = 2.0
    jitter: float = 0.3

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(f"need 0 < min_s <= max_s, got {self.min_s}, {self.max_s}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def delay_s(self, attempt: int, u: float) -> float:
        """Delay before retry number ``attempt`` (0 = first retry) given a uniform draw ``u``."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        if not 0 <= u < 1:
            raise ValueError(f"u must be in [0, 1), got {u}")
        # Exponent capped so the power cannot overflow on very long outages.
        raw = self.min_s * self.factor ** min(attempt, 64)
        return min(self.max_s, raw) * (1.0 - self.jitter * u)
