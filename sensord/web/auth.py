"""Protection of the participant page: PIN hash file, sessions, CSRF tokens, login limits.

* The PIN is never stored: only a salted scrypt hash (RFC 7914; parameters
  N=2**14, r=8, p=1, about 16 MiB and tens of milliseconds per try on a Raspberry Pi 4)
  in a JSON file readable by its owner only.
* Sessions are random 256-bit tokens in an ``HttpOnly; SameSite=Strict`` cookie, kept in
  memory (a restart logs everyone out); each carries its own CSRF token that every form
  repeats (synchroniser-token pattern, OWASP CSRF Prevention Cheat Sheet).
* Failed logins are limited per client address and in total: after
  :attr:`LoginLimiter.max_failures` failures within the window, logins are refused for a
  lock time that doubles with every further failure (capped), even with the right PIN.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from sensord.errors import ConfigError

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_DKLEN = 32
MIN_PIN_CHARS = 6
MAX_PIN_CHARS = 64


def check_pin_text(pin: str) -> str:
    """Return ``pin`` if acceptable (6-64 characters, not all one character), else raise."""
    if not isinstance(pin, str) or not MIN_PIN_CHARS <= len(pin) <= MAX_PIN_CHARS:
        raise ConfigError(
            f"the PIN must be {MIN_PIN_CHARS}-{MAX_PIN_CHARS} characters long", key="pin"
        )
    if pin.strip() != pin:
        raise ConfigError("the PIN must not start or end with spaces", key="pin")
    if len(set(pin)) == 1:
        raise ConfigError("the PIN must not be one character repeated", key="pin")
    return pin


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=64 * 1024 * 1024
    )


def hash_pin(pin: str, salt: bytes | None = None) -> dict[str, object]:
    """The stored form of a PIN: scrypt parameters, salt and derived key (hex)."""
    check_pin_text(pin)
    salt = salt if salt is not None else secrets.token_bytes(16)
    key = _scrypt(pin, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN)
    return {
        "alg": "scrypt",
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": salt.hex(),
        "key": key.hex(),
    }


def verify_pin(pin: str, stored: dict[str, object]) -> bool:
    """Constant-time comparison of ``pin`` against a :func:`hash_pin` record."""
    try:
        salt = bytes.fromhex(str(stored["salt"]))
        want = bytes.fromhex(str(stored["key"]))
        n, r, p = (int(stored[k]) for k in ("n", "r", "p"))  # type: ignore[call-overload]
    except (KeyError, ValueError, TypeError):
        return False
    if not isinstance(pin, str) or len(pin) > MAX_PIN_CHARS:
        return False
    got = _scrypt(pin, salt, n, r, p, len(want))
    return hmac.compare_digest(got, want)


@dataclass
class PinFile:
    """The PIN hash on disk (JSON, mode 0600)."""

    path: Path

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(
                "no PIN is set; run `sensord web set-pin` first", source=str(self.path)
            ) from exc
        except (OSError, ValueError) as exc:
            raise ConfigError(f"unreadable PIN file: {exc}", source=str(self.path)) from exc
        if not isinstance(data, dict) or data.get("alg") != "scrypt":
            raise ConfigError("PIN file is not a sensord scrypt record", source=str(self.path))
        return data

    def save(self, pin: str) -> None:
        """Hash ``pin`` and replace the file atomically."""
        record = hash_pin(pin)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, self.path)


@dataclass
class Session:
    token: str
    csrf: str
    created_s: float
    seen_s: float


@dataclass
class SessionStore:
    """In-memory sessions with an idle timeout, an absolute lifetime and a cap on their number.

    A session ends ``idle_s`` after its last request, and ``max_age_s`` after the login
    however active it is (``[web] session_idle_h`` / ``session_max_h``).
    """

    idle_s: float = 24 * 3600
    max_age_s: float = 30 * 86_400
    max_sessions: int = 50
    _by_token: dict[str, Session] = field(default_factory=dict)

    def create(self, now_s: float) -> Session:
        if len(self._by_token) >= self.max_sessions:
            oldest = min(self._by_token.values(), key=lambda s: s.seen_s)
            del self._by_token[oldest.token]
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now_s, now_s)
        self._by_token[s.token] = s
        return s

    def get(self, token: str | None, now_s: float) -> Session | None:
        if not token:
            return None
        s = self._by_token.get(token)
        if s is None:
            return None
        if now_s - s.seen_s > self.idle_s or now_s - s.created_s > self.max_age_s:
            del self._by_token[token]
            return None
        s.seen_s = now_s
        return s

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)


def csrf_ok(session: Session, sent: object) -> bool:
    """Whether a form's CSRF token matches its session's (constant time)."""
    return isinstance(sent, str) and hmac.compare_digest(session.csrf.encode(), sent.encode())


@dataclass
class _Failures:
    times_s: deque[float] = field(default_factory=deque)
    locked_until_s: float = 0.0


@dataclass
class LoginLimiter:
    """Failed-login throttle per client address and across all clients.

    ``max_failures`` failures within ``window_s`` lock the client for ``base_lock_s``,
    doubling with each further failure up to ``max_lock_s``; ``global_max_failures``
    within the window lock everyone out the same way (many addresses on one LAN).
    """

    max_failures: int = 5
    global_max_failures: int = 20
    window_s: float = 900.0
    base_lock_s: float = 60.0
    max_lock_s: float = 3_600.0
    _clients: dict[str, _Failures] = field(default_factory=dict)
    _all: _Failures = field(default_factory=_Failures)

    def retry_after_s(self, client: str, now_s: float) -> float:
        """Seconds until ``client`` may try again (0 when it may try now)."""
        mine = self._clients.get(client)
        wait = max(self._all.locked_until_s, mine.locked_until_s if mine else 0.0) - now_s
        return max(0.0, wait)

    def _fail(self, f: _Failures, limit: int, now_s: float) -> None:
        f.times_s.append(now_s)
        while f.times_s and now_s - f.times_s[0] > self.window_s:
            f.times_s.popleft()
        excess = len(f.times_s) - limit
        if excess >= 0:
            lock = min(self.max_lock_s, self.base_lock_s * 2**excess)
            f.locked_until_s = max(f.locked_until_s, now_s + lock)

    def failure(self, client: str, now_s: float) -> None:
        self._fail(self._clients.setdefault(client, _Failures()), self.max_failures, now_s)
        self._fail(self._all, self.global_max_failures, now_s)
        if len(self._clients) > 10_000:  # bound memory: forget the quietest clients
            for key in sorted(self._clients, key=lambda k: self._clients[k].locked_until_s)[:5_000]:
                del self._clients[key]

    def success(self, client: str) -> None:
        self._clients.pop(client, None)
