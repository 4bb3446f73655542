"""Heart Rate Service, Battery and Device Information decoders.

Expected values come from the Polar BLE SDK's own unit tests (BleHrClientTest.kt, as
extracted in ../shared/data/ble/polar_sdk), from real Polar H7 notifications
(../shared/data/ble/polar_h7) and from hand computation of the Bluetooth SIG layouts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensord import devices
from sensord.devices import heart_rate as hrs
from sensord.errors import DecodeError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ble"
HRM = "2a37"


def _sdk_cases() -> dict[str, dict]:
    cases = json.loads((DATA / "polar_sdk" / "hr_0x2a37_BleHrClientTest.json").read_text())
    return {c["test"]: c for c in cases}


def _frames(case: dict) -> list[bytes]:
    return [bytes.fromhex(a["hex"]) for a in case["arrays"] if a["name"].startswith("measurement")]


def _ms_truncated(rr_1024: int) -> int:
    """Polar SDK's RR in ms: floor(rr * 1000 / 1024)."""
    return rr_1024 * 1000 // 1024


SDK = _sdk_cases()


def test_sdk_hr_format_uint8_and_uint16() -> None:
    for name in ("hr format uint8", "hr format uint16"):
        case = SDK[name]
        exp = case["expected"]
        values = [devices.decode_one(HRM, f) for f in _frames(case)]
        assert len(values) == 2
        assert values[0]["hr_bpm"] == int(exp["expectedHeartRate1"])
        assert values[1]["hr_bpm"] == int(exp["expectedHeartRate2"])


def test_sdk_sensor_contact() -> None:
    v0, v1 = (devices.decode_one(HRM, f) for f in _frames(SDK["sensor contact supported"]))
    assert v0["contact_supported"] and v0["contact"] is True
    assert v1["contact_supported"] and v1["contact"] is False
    for v in (devices.decode_one(HRM, f) for f in _frames(SDK["sensor contact not supported"])):
        assert v["contact_supported"] is False and v["contact"] is None


def test_sdk_energy_expended() -> None:
    case = SDK["energy expended"]
    exp = case["expected"]
    v1, v2 = (devices.decode_one(HRM, f) for f in _frames(case))
    assert (v1["hr_bpm"], v1["energy_kj"]) == (int(exp["expectedHeartRate1"]),
                                               int(exp["energyExpended1"]))
    assert (v2["hr_bpm"], v2["energy_kj"]) == (int(exp["expectedHeartRate2"]),
                                               int(exp["energyExpended2"]))


def test_sdk_rr_intervals_full_precision_and_sdk_truncation() -> None:
    case = SDK["rr interval"]
    exp = {k: int(v) for k, v in case["expected"].items()}
    d1, d2, d3 = (devices.decode_one(HRM, f) for f in _frames(case))
    assert d1["hr_bpm"] == exp["expectedHeartRate1"]
    assert d1["rr_1024"] == [exp["sample1ExpectedRRin1024Unit"]]
    assert d2["rr_1024"] == [exp["sample2ExpectedRRin1024Unit"], exp["sample3ExpectedRRin1024Unit"]]
    assert d3["rr_1024"] == [exp["sample4ExpectedRRin1024Unit"]]
    assert d3["hr_bpm"] == exp["expectedHeartRate3"]
    # our ms are full precision; flooring them gives the SDK's truncated values
    sdk_ms = [exp["sample1ExpectedRRinMsUnit"], exp["sample2ExpectedRRinMsUnit"],
              exp["sample3ExpectedRRinMsUnit"], exp["sample4ExpectedRRinMsUnit"]]
    ours = d1["rr_ms"] + d2["rr_ms"] + d3["rr_ms"]
    assert [math.floor(x) for x in ours] == sdk_ms
    assert ours[0] == pytest.approx(65535 * 1000 / 1024)  # 63999.0234375, not 63999


def test_sdk_frames_batch_agrees() -> None:
    frames = _frames(SDK["rr interval"])
    res = devices.decode_batch(HRM, frames, np.array([1, 2, 3]) * 10**9)
    assert not res.errors
    assert res.streams["hr"].hr_bpm.tolist() == [0, 0, 0]
    assert res.streams["beats"].rr_ms.tolist() == pytest.approx(
        [65535 * 1000 / 1024, 65535 * 1000 / 1024, 32895 * 1000 / 1024, 0.0])


def test_real_polar_h7_notifications() -> None:
    rec = json.loads((DATA / "polar_h7" / "notifications.json").read_text())
    frames = [bytes.fromhex(f["hex"]) for f in rec["frames"]]
    for f, exp in zip(frames, rec["frames"], strict=True):
        v = devices.decode_one(HRM, f)
        assert v["hr_bpm"] == exp["heart_rate_bpm"]
        assert v["contact"] is exp["sensor_contact"]
        assert v["rr_1024"] == exp["rr_1024"]
    res = devices.decode_batch(HRM, frames, np.array([0, 1, 2]) * 10**9)
    assert res.streams["hr"].hr_bpm.tolist() == [60, 60, 60]
    assert res.streams["contact"].contact.tolist() == [True, True, True]
    # 1041/1024 s and 1013/1024 s, by hand
    assert res.streams["beats"].rr_ms.tolist() == pytest.approx([1016.6015625, 989.2578125])


def test_hand_computed_layout_with_every_flag() -> None:
    # flags 0x1f: uint16 HR, contact supported + detected, energy, RR; HR 0x0104 = 260,
    # energy 0x0302 = 770 kJ, RR 0x0400 = 1024 -> 1000 ms, 0x0200 = 512 -> 500 ms
    payload = bytes.fromhex("1f 0401 0203 0004 0002".replace(" ", ""))
    v = devices.decode_one(HRM, payload)
    assert v["hr_bpm"] == 260 and v["energy_kj"] == 770 and v["contact"] is True
    assert v["rr_ms"] == [1000.0, 500.0]


@pytest.mark.parametrize(
    ("hexstr", "why"),
    [("", "shorter than the minimum"), ("00", "shorter than the minimum"),
     ("01 3c", "uint16 heart rate"), ("08 3c 01", "energy expended"),
     ("10 3c", "RR field of 0 bytes"), ("10 3c 01 02 03", "RR field of 3 bytes")],
)
def test_malformed_payloads_raise_decode_error_with_context(hexstr: str, why: str) -> None:
    payload = bytes.fromhex(hexstr.replace(" ", ""))
    with pytest.raises(DecodeError) as info:
        devices.decode_one(HRM, payload)
    err = info.value
    assert why in err.reason
    assert err.profile == "heart_rate" and err.characteristic == "heart_rate_measurement"
    assert err.payload == payload and (payload.hex() or "<empty>") in str(err)


def test_one_bad_payload_never_loses_the_others() -> None:
    good = hrs.encode_hrm(61, [1000], contact=True)
    batch = [good, b"\x10\x3c\x01", good, b"", good]
    res = devices.decode_batch(HRM, batch, np.arange(5) * 10**9)
    assert [e.index for e in res.errors] == [1, 3]
    assert res.streams["hr"].t_ns.tolist() == [0, 2 * 10**9, 4 * 10**9]
    assert res.n_decoded == 3
    assert "notification #1" in str(res.errors[0])


def test_body_sensor_location_battery_and_device_information() -> None:
    assert devices.decode_one("2a38", b"\x01")["body_sensor_location"] == "chest"
    assert devices.decode_one("2a38", b"\x02")["body_sensor_location"] == "wrist"
    with pytest.raises(DecodeError, match="reserved"):
        devices.decode_one("2a38", b"\x07")
    assert devices.decode_one("2a19", b"\x64")["battery_pct"] == 100
    with pytest.raises(DecodeError, match="above 100"):
        devices.decode_one("2a19", b"\x65")
    assert devices.decode_one("2a29", b"Polar Electro Oy\x00")["manufacturer_name"] == (
        "Polar Electro Oy")
    assert devices.decode_one("2a26", b"3.0.35")["firmware_revision"] == "3.0.35"
    with pytest.raises(DecodeError, match="UTF-8"):
        devices.decode_one("2a24", b"\xff\xfe")
    res = devices.decode_batch("2a19", [b"\x50", b"\x4f\x00", b"\x4e"], np.array([1, 2, 3]))
    assert res.streams["battery"].battery_pct.tolist() == [80, 78]
    assert [e.index for e in res.errors] == [1]
    info = devices.decode_batch("2a24", [b"H10", b"\xff"], np.array([1, 2]))
    assert info.info == {"model_number": "H10"} and [e.index for e in info.errors] == [1]


# --- round trips ----------------------------------------------------------------------------

hrm_args = st.tuples(
    st.integers(0, 0xFFFF),
    st.lists(st.integers(0, 0xFFFF), max_size=9),
    st.none() | st.booleans(),
    st.none() | st.integers(0, 0xFFFF),
    st.booleans(),
)


@given(hrm_args)
def test_hrm_round_trip_every_flag_combination(args: tuple) -> None:
    hr, rr, contact, energy, force16 = args
    payload = hrs.encode_hrm(hr, rr, contact=contact, energy_kj=energy,
                             uint16=True if force16 or hr > 255 else None)
    v = devices.decode_one(HRM, payload)
    assert v["hr_bpm"] == hr
    assert v["rr_1024"] == rr
    assert v["contact"] is contact
    assert v["energy_kj"] == energy


@given(st.lists(hrm_args, min_size=1, max_size=30))
@settings(max_examples=60)
def test_batch_matches_one_by_one(batch: list) -> None:
    payloads = [hrs.encode_hrm(h, r, contact=c, energy_kj=e, uint16=True if f or h > 255 else None)
                for h, r, c, e, f in batch]
    res = devices.decode_batch(HRM, payloads, np.arange(len(payloads)) * 10**9)
    singles = [devices.decode_one(HRM, p) for p in payloads]
    assert res.streams["hr"].hr_bpm.tolist() == [s["hr_bpm"] for s in singles]
    assert res.streams["beats"].rr_ms.tolist() == [x for s in singles for x in s["rr_ms"]]
    contact = [s["contact"] for s in singles if s["contact_supported"]]
    got = res.streams["contact"].contact.tolist() if "contact" in res.streams else []
    assert got == contact
    energy = [s["energy_kj"] for s in singles if s["energy_kj"] is not None]
    got_e = res.streams["energy"].energy_kj.tolist() if "energy" in res.streams else []
    assert got_e == energy


@given(st.integers(0, 100))
def test_battery_round_trip(pct: int) -> None:
    assert devices.decode_one("2a19", hrs.encode_battery_level(pct))["battery_pct"] == pct


# --- beat times ----------------------------------------------------------------------------


def _simulated_strap(seed: int, *, stalls: float = 0.0, gap_s: tuple[float, float] | None = None):
    """True beat times and the 1-Hz notifications a strap would send about them.

    Each notification at tick ``k`` carries the intervals of the beats since the previous
    tick (quantised to 1/1024 s) and is received after a BLE latency of 5-60 ms; with
    probability ``stalls`` the link stalls for 0.2-2 s (retransmissions) and the queued
    notifications then arrive in order, back to back. BLE acknowledges notifications, so
    they are lost only with the connection: ``gap_s`` drops all in a span (a disconnect).
    """
    rng = np.random.default_rng(seed)
    rr = np.clip(rng.normal(900, 60, 2000), 400, 1600)  # ms
    beats = 1_000_000_000 * 3600 + np.cumsum(rr * 1e6).astype(np.int64)
    t0 = beats[0]
    ticks = t0 + np.arange(1, int((beats[-1] - t0) / 1e9)) * 1_000_000_000
    which = np.searchsorted(beats, ticks, side="right")  # beats before each tick
    payloads, recv, truth = [], [], []
    last_recv = 0
    for k in range(1, ticks.size):
        lo, hi = which[k - 1], which[k]
        if gap_s is not None and gap_s[0] <= (ticks[k] - t0) / 1e9 < gap_s[1]:
            continue
        rr_1024 = [round(x * 1.024) for x in rr[lo:hi]]
        payloads.append(hrs.encode_hrm(int(60000 / rr[max(hi - 1, 0)]), rr_1024, contact=True))
        latency = rng.uniform(5e6, 60e6) + (rng.uniform(2e8, 2e9) if rng.random() < stalls else 0)
        last_recv = max(int(ticks[k] + latency), last_recv + 1_000_000)
        recv.append(last_recv)
        truth.extend(beats[lo:hi].tolist())
    return payloads, np.array(recv, dtype=np.int64), np.array(truth, dtype=np.int64)


@pytest.mark.parametrize(
    ("stalls", "gap"), [(0.0, None), (0.05, None), (0.0, (600.0, 660.0))],
    ids=["steady", "5pct-stalls", "60s-disconnect"],
)
def test_reconstructed_beat_times_match_truth(stalls: float, gap: tuple | None) -> None:
    payloads, recv, truth = _simulated_strap(7, stalls=stalls, gap_s=gap)
    res = devices.decode_batch(HRM, payloads, recv)
    t = res.streams["beats"].t_ns
    assert t.size == truth.size
    assert np.all(np.diff(t) > 0)
    err_ms = np.abs(t - truth) / 1e6
    # the anchor is the least-delayed notification in a window: what is left is its
    # latency plus the time from its last beat to its send tick (tens of ms)
    assert np.median(err_ms) < 40
    assert np.max(err_ms) < 150
    # anchoring each notification's last beat to its own receive time instead is off
    # by the whole wait for the next 1-Hz tick
    counts = [len(devices.decode_one(HRM, p)["rr_1024"]) for p in payloads]
    naive_last = np.repeat(recv, counts)[np.cumsum(counts)[np.array(counts) > 0] - 1]
    naive_err = np.abs(naive_last - truth[np.cumsum(counts)[np.array(counts) > 0] - 1]) / 1e6
    assert np.median(naive_err) > 5 * np.median(err_ms)


def test_beat_times_never_after_reception_and_skip_empty_notifications() -> None:
    # no RR in the middle notification (HR below 60 bpm): the chain continues
    payloads = [hrs.encode_hrm(50, [1229]), hrs.encode_hrm(50, []), hrs.encode_hrm(50, [1229])]
    recv = np.array([10, 11, 12], dtype=np.int64) * 10**9
    res = devices.decode_batch(HRM, payloads, recv)
    t = res.streams["beats"].t_ns
    assert t.size == 2
    assert t[0] <= recv[0] and t[1] <= recv[2]
    assert (t[1] - t[0]) / 1e6 == pytest.approx(1229 * 1000 / 1024, abs=1e-3)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=300),
    st.integers(1, 400),
)
def test_forward_min_equals_scipy_forward_minimum_filter(values: list[float], window: int) -> None:
    # scipy.ndimage's minimum filter, shifted to look forward, is the independent reference
    from scipy.ndimage import minimum_filter1d

    x = np.asarray(values)
    want = minimum_filter1d(x, size=window, mode="nearest", origin=-(window // 2))
    np.testing.assert_array_equal(hrs.forward_min(x, window), want)
    brute = [min(values[i:i + window]) for i in range(len(values))]
    np.testing.assert_array_equal(hrs.forward_min(x, window), brute)
