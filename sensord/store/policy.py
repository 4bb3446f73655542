"""Pure decisions of the sender: how to read a write response, how long to back off.

No I/O and no clock: the sinks turn HTTP answers and network errors into
:class:`WriteOutcome` with :func:`classify_response` / :func:`network_failure`, and the
sender asks :class:`Backoff` for the next delay with a random source it injects.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum


class Verdict(Enum):
    """What the sender does with a batch after one write request."""

    ACCEPTED = "accepted"
    """2xx: the server stored every line. Delete from the outbox."""
    TOO_LARGE = "too_large"
    """413: split the batch and send the halves; a single line this big is refused."""
    REFUSED = "refused"
    """400/422 and other 4xx about the data (parse error, field type conflict, partial
    write): the other lines may be stored; find the refused lines by bisection and
    quarantine only those."""
    AUTH = "auth"
    """401/403: stop sending, report loudly; retrying with the same credentials is useless."""
    MISSING = "missing"
    """404: database/bucket/org does not exist (deleted?). Stop and report; keep the data."""
    RETRY = "retry"
    """5xx, 429, timeouts, refused connections: keep the batch and retry after a backoff."""


@dataclass(frozen=True)
class WriteOutcome:
    """One write request's result, with the server's own words."""

    verdict: Verdict
    status: int
    """HTTP status, 0 when no answer came (network error)."""
    message: str
    dropped: int | None = None
    """InfluxDB 1.x partial write: how many points the server refused (``dropped=N``)."""

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.ACCEPTED


_DROPPED = re.compile(r"dropped=(\d+)")


def server_message(body: bytes | str) -> str:
    """The error text of an InfluxDB answer: 1.x ``{"error": ...}``, 2.x/3.x
    ``{"code": ..., "message": ...}``, or the raw body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:2000]
    if isinstance(data, dict):
        for key in ("error", "message"):
            if isinstance(data.get(key), str):
                code = data.get("code")
                prefix = f"{code}: " if isinstance(code, str) and key == "message" else ""
                return prefix + data[key]
    return text[:2000]


def classify_response(status: int, body: bytes | str) -> WriteOutcome:
    """Classify an HTTP answer to a write request."""
    message = server_message(body) if status >= 300 else ""
    if 200 <= status < 300:
        return WriteOutcome(Verdict.ACCEPTED, status, message)
    if status == 413:
        return WriteOutcome(Verdict.TOO_LARGE, status, message or "request entity too large")
    if status in (401, 403):
        return WriteOutcome(Verdict.AUTH, status, message or "unauthorized")
    if status == 404:
        return WriteOutcome(Verdict.MISSING, status, message or "not found")
    if status in (408, 429) or status >= 500:
        return WriteOutcome(Verdict.RETRY, status, message or f"HTTP {status}")
    if 400 <= status < 500:
        m = _DROPPED.search(message)
        return WriteOutcome(
            Verdict.REFUSED, status, message or f"HTTP {status}", int(m.group(1)) if m else None
        )
    # 1xx/3xx: unexpected for a write; treat as transient
    return WriteOutcome(Verdict.RETRY, status, message or f"unexpected HTTP {status}")


def network_failure(what: str) -> WriteOutcome:
    """No HTTP answer (refused connection, timeout, DNS, reset): retry later."""
    return WriteOutcome(Verdict.RETRY, 0, what)


V1_PRECISION = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}
"""Precision names of the InfluxDB 1.x ``/write`` API. 1.x silently reads anything else
(including ``us`` and ``ns``-like typos) as nanoseconds; ``n`` is explicit."""

V2_PRECISION = {"ns": "ns", "us": "us", "ms": "ms", "s": "s"}
"""Precision names of the 2.x/3.x ``/api/v2/write`` API."""


def v1_precision(precision: str) -> str:
    """The 1.x ``precision=`` value for ``ns``/``us``/``ms``/``s``; anything else raises."""
    try:
        return V1_PRECISION[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; expected ns, us, ms or s") from None


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter.

    Delay before retry ``attempt`` (0-based) is
    ``min(max_s, initial_s * factor**attempt) * (1 - jitter + jitter * u)`` with
    ``u`` uniform in [0, 1) from ``rand`` -- "equal jitter" when ``jitter=0.5``: never
    less than half the nominal delay, so a fleet of Pis that lost the server at the same
    moment spreads out instead of returning together.
    """

    initial_s: float = 1.0
    max_s: float = 300.0
    factor: float = 2.0
    jitter: float = 0.5
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if not (0 < self.initial_s <= self.max_s):
            raise ValueError("need 0 < initial_s <= max_s")
        if self.factor < 1 or not (0 <= self.jitter <= 1):
            raise ValueError("need factor >= 1 and 0 <= jitter <= 1")

    def nominal_s(self, attempt: int) -> float:
        """Delay without jitter."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # cap the exponent so huge attempt numbers do not overflow
        exp = min(attempt, 1024)
        try:
            return min(self.max_s, self.initial_s * self.factor**exp)
        except OverflowError:
            return self.max_s

    def delay_s(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (0 = first retry)."""
        u = self.rand()
        return self.nominal_s(attempt) * (1.0 - self.jitter + self.jitter * u)
