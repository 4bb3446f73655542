"""PIN hashing (RFC 7914 test vector), PIN file, login limiter and sessions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sensord.errors import ConfigError
from sensord.web.auth import (
    LoginLimiter,
    PinFile,
    SessionStore,
    check_pin_text,
    hash_pin,
    verify_pin,
)

# RFC 7914 section 12, third vector: scrypt("pleaseletmein", "SodiumChloride", N=16384,
# r=8, p=1, dkLen=64).
RFC_KEY = (
    "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
    "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"
)


def test_verify_against_the_rfc_7914_vector() -> None:
    record = {"alg": "scrypt", "n": 16384, "r": 8, "p": 1,
              "salt": b"SodiumChloride".hex(), "key": RFC_KEY}  # fmt: skip
    assert verify_pin("pleaseletmein", record)
    assert not verify_pin("pleaseletmeout", record)
    assert not verify_pin("pleaseletmein", record | {"salt": b"SodiumChloridf".hex()})


def test_hash_is_salted_and_checks_pin_text(tmp_path: Path) -> None:
    a, b = hash_pin("482915"), hash_pin("482915")
    assert a["salt"] != b["salt"] and a["key"] != b["key"]
    assert verify_pin("482915", a) and not verify_pin("482916", a)
    for bad in ("12345", "111111", " 123456", "x" * 65):
        with pytest.raises(ConfigError) as e:
            check_pin_text(bad)
        assert e.value.key == "pin"
    pin = PinFile(tmp_path / "d" / "web-pin.json")
    assert not pin.exists()
    pin.save("482915")
    assert stat.S_IMODE((tmp_path / "d" / "web-pin.json").stat().st_mode) == 0o600
    assert "482915" not in pin.path.read_text()
    assert verify_pin("482915", pin.load())


def test_limiter_locks_doubles_and_forgets() -> None:
    lim = LoginLimiter(max_failures=5, window_s=900, base_lock_s=60, max_lock_s=3600)
    for i in range(4):
        lim.failure("10.0.0.2", 100.0 + i)
        assert lim.retry_after_s("10.0.0.2", 100.0 + i) == 0
    lim.failure("10.0.0.2", 104.0)  # fifth failure: 60 s
    assert lim.retry_after_s("10.0.0.2", 104.0) == 60
    assert lim.retry_after_s("10.0.0.3", 104.0) == 0  # other clients unaffected
    lim.failure("10.0.0.2", 170.0)  # sixth: 120 s
    assert lim.retry_after_s("10.0.0.2", 170.0) == 120
    assert lim.retry_after_s("10.0.0.2", 290.0) == 0
    lim.success("10.0.0.2")
    lim.failure("10.0.0.2", 300.0)
    assert lim.retry_after_s("10.0.0.2", 300.0) == 0
    # failures older than the window do not count
    slow = LoginLimiter(max_failures=3, window_s=10)
    for t in (0.0, 20.0, 40.0, 60.0):
        slow.failure("c", t)
    assert slow.retry_after_s("c", 60.0) == 0


def test_limiter_global_lock_across_addresses() -> None:
    lim = LoginLimiter(max_failures=5, global_max_failures=20, base_lock_s=60)
    for i in range(20):
        lim.failure(f"10.0.1.{i}", 1000.0)
    assert lim.retry_after_s("10.9.9.9", 1000.0) == 60


def test_sessions_expire_and_are_capped() -> None:
    store = SessionStore(idle_s=100, max_sessions=2)
    a = store.create(0.0)
    assert store.get(a.token, 50.0) is a
    assert store.get(a.token, 149.0) is a  # seen at 50, idle 99 s
    assert store.get(a.token, 250.0) is None
    b, c, d = store.create(300.0), store.create(301.0), store.create(302.0)
    assert store.get(b.token, 303.0) is None  # oldest dropped at the cap
    assert store.get(c.token, 303.0) is c and store.get(d.token, 303.0) is d
    assert c.csrf != d.csrf and len(c.token) >= 43
    assert store.get(None, 0.0) is None and store.get("forged", 0.0) is None
