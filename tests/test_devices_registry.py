"""Device registry: profiles for scanning, setup sequences, InfiniTime decoding."""

from __future__ import annotations

import numpy as np
import pytest

from sensord import devices
from sensord.devices import infinitime as itm
from sensord.devices import polar_pmd as pmd
from sensord.errors import DecodeError


def test_profile_for_services_prefers_the_most_specific() -> None:
    hrs = "0000180d-0000-1000-8000-00805f9b34fb"
    assert devices.profile_for_services([hrs, "180f"]) == "heart_rate"
    assert devices.profile_for_services(["180D", pmd.PMD_SERVICE.upper()]) == "polar_pmd"
    assert devices.profile_for_services([hrs, itm.MOTION_SERVICE]) == "infinitime_motion"
    assert devices.profile_for_services(["180d", pmd.PMD_SERVICE], name="Polar H10 A1B2C3D4") == (
        "polar_pmd")
    assert devices.profile_for_services(["180d", pmd.PMD_SERVICE], name="Polar Sense 1A2B3C4D") == (
        "polar_optical")
    assert devices.profile_for_services(["180f", "garbage"]) is None
    assert devices.profile_for_services([]) is None


def test_setup_sequences_are_plain_data_the_decoders_understand() -> None:
    for profile in devices.PROFILES.values():
        assert profile.setup, profile.name
        for step in profile.setup:
            assert step.action in {"read", "subscribe", "write"}
            assert devices.is_known(step.char_uuid), (profile.name, step.char_uuid)
            if step.action == "write":
                assert step.value and step.response_char is not None
                assert "request" in pmd.parse_request(step.value)
    polar = devices.PROFILES["polar_pmd"].setup
    start = next(s for s in polar if s.action == "write" and not s.optional)
    assert devices.decode_one(start.char_uuid, start.value) == {
        "characteristic": "pmd_control_point", "profile": "polar_pmd",
        "request": "request_measurement_start", "measurement_type": "acc",
        "settings": {"sample_rate": [50], "resolution": [16], "range": [8]}}
    subscribed = [s.char_uuid for s in polar if s.action == "subscribe"]
    # indications and data must be enabled before the start request is written
    assert polar.index(start) > max(polar.index(s) for s in polar if s.action == "subscribe")
    assert pmd.PMD_CONTROL_POINT in subscribed and pmd.PMD_DATA in subscribed


def test_infinitime_motion_and_steps_hand_computed() -> None:
    # x = 0x0400 = 1024 -> 1 g, y = 0xfe00 = -512 -> -0.5 g, z = 0x0000
    v = devices.decode_one(itm.MOTION_VALUES, bytes.fromhex("000400fe0000"))
    assert v["acc_g"] == [1.0, -0.5, 0.0]
    assert devices.decode_one(itm.STEP_COUNT, bytes.fromhex("39300000"))["steps"] == 12345
    res = devices.decode_batch(itm.MOTION_VALUES,
                               [bytes.fromhex("000400fe0000"), b"\x00\x04", bytes(6)],
                               np.array([5, 6, 7]))
    assert res.streams["acc"].acc_g.tolist() == [[1.0, -0.5, 0.0], [0.0, 0.0, 0.0]]
    assert res.streams["acc"].t_ns.tolist() == [5, 7]
    assert [e.index for e in res.errors] == [1]
    assert "expected 6 bytes" in res.errors[0].reason
    steps = devices.decode_batch(itm.STEP_COUNT, [bytes.fromhex("39300000")], np.array([9]))
    assert steps.streams["steps"].steps.tolist() == [12345]
    with pytest.raises(DecodeError, match="expected 4 bytes"):
        devices.decode_one(itm.STEP_COUNT, b"\x01")


def test_decode_batch_rejects_mismatched_times() -> None:
    with pytest.raises(ValueError, match="shape"):
        devices.decode_batch("2a37", [b"\x00\x3c"], np.array([1, 2]))
