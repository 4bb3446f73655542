"""Polar Measurement Data (PMD): control point, data frames, sample times.

Expected values come from the unit tests of Polar's BLE SDK
(polarofficial/polar-ble-sdk, Android ``.../gatt/client/pmd/**Test.kt`` at commit
8fb5311c), as extracted with their byte arrays in
../shared/data/ble/polar_sdk/pmd_model_tests.json; where a test states a value only in
its Kotlin source (not in the extracted ``expected`` map) the value is copied here with
the test's name. Real device data: ../shared/data/ble/polar_h10_ecg.
"""

from __future__ import annotations

import json
import math
import statistics
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from sensord import devices
from sensord.devices import polar_pmd as pmd
from sensord.errors import ControlPointError, DecodeError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ble"
CP, DATA_CHAR = pmd.PMD_CONTROL_POINT, pmd.PMD_DATA
EPOCH = pmd.POLAR_EPOCH_UNIX_NS


def _cases() -> dict[str, dict]:
    cases = json.loads((DATA / "polar_sdk" / "pmd_model_tests.json").read_text())
    return {c["test"]: c for c in cases}


SDK = _cases()


def arr(test: str, name: str) -> bytes:
    for a in SDK[test]["arrays"]:
        if a.get("name") == name:
            return bytes.fromhex(a["hex"])
    raise KeyError(name)


def exp(test: str, key: str) -> int:
    text = SDK[test]["expected"][key].removesuffix("uL").removesuffix("f")
    if "." not in text:
        return int(text)
    value = float(text)  # e.g. "-22.0f"
    assert value.is_integer(), (key, text)
    return int(value)


# --- control point ----------------------------------------------------------------------------


def test_sdk_success_response_for_acc_settings() -> None:
    t = "success control point response for acc stream settings"
    resp = pmd.parse_control_point(arr(t, "cpResponse"))
    assert isinstance(resp, pmd.ControlPointResponse)
    # source test: response code 0xF0, op GET_MEASUREMENT_SETTINGS, type 2, SUCCESS, no more
    assert (resp.op, resp.measurement_type, resp.status, resp.more) == (1, 2, 0, False)
    assert len(resp.parameters) == exp(t, "expectedParamsSize")
    assert resp.parameters == arr(t, "expectedParamsContent")


def test_sdk_failing_response_for_mag_settings_raises_typed_error() -> None:
    t = "failing control point response for mag stream settings"
    payload = arr(t, "cpResponse")
    resp = pmd.parse_control_point(payload)
    assert isinstance(resp, pmd.ControlPointResponse)
    assert (resp.op, resp.measurement_type, resp.status, resp.more) == (1, 6, 7, False)
    assert len(resp.parameters) == exp(t, "expectedParamsSize") == 0
    with pytest.raises(ControlPointError) as info:
        devices.decode_one(CP, payload)
    assert info.value.status == 7 and "invalid resolution" in str(info.value)
    assert info.value.profile == "polar_pmd" and info.value.payload == payload


def test_sdk_client_control_point_frames() -> None:
    ok = devices.decode_one(CP, arr("process control point response when status is success",
                                    "controlPointResponse"))
    assert ok["status"] == "success" and ok["response_to"] == "get_measurement_settings"
    # device-initiated stop of PPG (1) and ACC (2); PPI stays running in the source test
    stop = devices.decode_one(CP, arr("process measurement stop control point command",
                                      "controlPointResponse"))
    assert stop["stopped_by_device"] == ["ppg", "acc"]
    empty = devices.decode_one(CP, arr(
        "process measurement stop control point command from service no content",
        "controlPointResponse"))
    assert empty["stopped_by_device"] == []


def test_sdk_settings_with_range() -> None:
    t = "testPmdSettingsWithRange"
    s = pmd.parse_settings(arr(t, "bytes"))
    assert len(s) == exp(t, "numberOfSettings")
    assert s["sample_rate"] == [exp(t, "sampleRate")]
    assert s["resolution"] == [exp(t, "resolution")]
    assert sorted(s["range"]) == [exp(t, k) for k in ("range1", "range2", "range3", "range4")]
    assert s["channels"] == [exp(t, "channels")]
    assert "range_milliunit" not in s and "factor" not in s


def test_sdk_settings_with_range_milliunit() -> None:
    # PmdSettingTest.testPmdSettingWithRangeMilliUnit: RANGE_MILLIUNIT x2 (FF FF FF FF,
    # FF 00 00 00) and RESOLUTION 0x000E; expects {-1, 0xFF} and 14
    raw = bytes([3, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 1, 0x0E, 0])
    s = pmd.parse_settings(raw)
    assert s == {"range_milliunit": [-1, 0xFF], "resolution": [14]}


def test_real_h10_control_point_indications() -> None:
    lines = (DATA / "polar_h10_ecg" / "gatttool_notifications.txt").read_text().splitlines()
    cp = [bytes.fromhex(ln.split(maxsplit=1)[1]) for ln in lines if ln.startswith("0x0047")]
    # 1: MTU too small for PMD (status 10); 2: ECG settings 130 Hz / 14 bit;
    # 3: start refused (status 5, invalid parameter); 4: start accepted
    with pytest.raises(ControlPointError, match="invalid MTU"):
        devices.decode_one(CP, cp[0])
    assert devices.decode_one(CP, cp[1])["settings"] == {"sample_rate": [130], "resolution": [14]}
    with pytest.raises(ControlPointError) as info:
        devices.decode_one(CP, cp[2])
    assert info.value.status == 5
    assert devices.decode_one(CP, cp[3])["status"] == "success"
    res = devices.decode_batch(CP, cp, np.arange(4))
    assert [e.index for e in res.errors] == [0, 2]
    assert [m["index"] for m in res.messages] == [1, 3]


def test_request_builders_hand_computed() -> None:
    # op 2 start, type 2 ACC, [type, count, u16 LE]: rate 50, resolution 16, range 8
    assert pmd.request_start(pmd.MeasurementType.ACC, sample_rate_hz=50, resolution_bits=16,
                             range_g=8) == bytes.fromhex("0202" "00013200" "01011000" "02010800")
    assert pmd.request_start(pmd.MeasurementType.ECG, sample_rate_hz=130,
                             resolution_bits=14) == bytes.fromhex("0200" "00018200" "01010e00")
    assert pmd.request_settings(pmd.MeasurementType.ECG) == b"\x01\x00"
    assert pmd.request_stop(pmd.MeasurementType.PPI) == b"\x03\x03"
    assert pmd.parse_request(pmd.request_start(2, sample_rate_hz=52))["settings"] == {
        "sample_rate": [52]}


def test_start_response_factor_reaches_the_data_decoder() -> None:
    start = pmd.encode_control_point_response(
        pmd.Op.REQUEST_MEASUREMENT_START, pmd.MeasurementType.ACC,
        parameters=pmd.encode_settings({pmd.SettingType.FACTOR: [2.44e-4]}))
    cpres = devices.decode_batch(CP, [pmd.request_start(2, sample_rate_hz=52), start],
                                 np.array([1, 2]))
    assert cpres.context.pmd_factor[2] == pytest.approx(2.44e-4)
    assert cpres.context.pmd_sample_rate_hz[2] == 52
    frame = pmd.encode_acc_delta([[1000, -1000, 4096]], 10**9, frame_type=0)
    data = devices.decode_batch(DATA_CHAR, [frame], np.array([2 * 10**9]),
                                context=cpres.context)
    assert data.streams["acc"].acc_g[0].tolist() == pytest.approx(
        [0.244, -0.244, 4096 * 2.44e-4], rel=1e-6)


# --- delta compression -----------------------------------------------------------------------


def test_sdk_reference_samples() -> None:
    t = "parse reference sample when resolution16 and type is unsigned int"
    s = pmd.parse_delta_frame(arr(t, "dataBytes"), 4, 16)
    assert s == [[exp(t, f"expectedRefSample{k}") for k in range(4)]]
    t = "parse reference sample when resolution32 and type is decimal IEEE 754"
    s = pmd.parse_delta_frame(arr(t, "dataBytes"), 3, 32, signed=False)
    # source: 0x00000000, 0xFFFFFFFF.toInt(), 0x80000000.toInt()
    assert s == [[0, -1, -(1 << 31)]]


def _i32(v: int) -> int:
    return ((v + (1 << 31)) % (1 << 32)) - (1 << 31)


@pytest.mark.parametrize("vectorised", [False, True])
def test_sdk_delta_frames(vectorised: bool) -> None:
    def decode(content: bytes, channels: int, resolution: int) -> list[list[int]]:
        if not vectorised:
            return pmd.parse_delta_frame(content, channels, resolution)
        rg = pmd.Ragged.from_payloads([content])
        db = pmd._decode_delta_batch(rg, np.array([0]), np.array([len(content)]),
                                     channels, resolution)
        assert db.ok.all(), db.reason
        return db.values.tolist()

    # test_parseDeltaFrameAllSamples_withResolution32_realVector1 (values from the source)
    s = decode(arr("test_parseDeltaFrameAllSamples_withResolution32_realVector1",
                   "deltaCodedDataFrame"), 3, 32)
    assert len(s) == 1 + 6 + 3 + 6 + 3
    assert s[0] == [0x3F800000, 0x41200000, 0x41A00000]
    assert s[1] == [0x3F800000 + 0x1A00000, 0x41200000 + 0x0800000, _i32(0x41A00000 + 0xFDECCCCD)]
    # test_parseDeltaFrameAllSamples_withResolution32
    s = decode(arr("test_parseDeltaFrameAllSamples_withResolution32", "measurementFrame"), 3, 32)
    assert len(s) == 18
    s0 = [2, _i32(0xE9993219), _i32(0xFFFEDA00)]
    assert s[0] == s0
    assert s[1] == [_i32(s0[0] + 0xE9993217), _i32(s0[1] + 0x1665A7E7), _i32(s0[2] + 0x4606DB38)]
    # test_parseDeltaFrameAllSamples_multipleDeltas
    t = "test_parseDeltaFrameAllSamples_multipleDeltas"
    s = decode(arr(t, "dataFrame"), 3, 16)
    assert len(s) == 1 + 9 + 30 + 10 + 20 + 10 + 30 + 10 + 10 + 10
    assert s[0] == [exp(t, f"refSample0Channel{c}") for c in range(3)]
    assert s[1] == [exp(t, f"refSample1Channel{c}") for c in range(3)]


def test_delta_frame_hand_computed() -> None:
    # ref (1, -1) as int16; block width 2, count 2: deltas (+1, -2), (-1, +1) packed LSB
    # first: 01 | 10 | 11 | 01 -> 0b01_11_10_01 = 0x79
    content = bytes.fromhex("0100ffff" "0202" "79")
    assert pmd.parse_delta_frame(content, 2, 16) == [[1, -1], [2, -3], [1, -2]]
    # then a zero-width block of 2 samples (unchanged) and a 1-bit block: delta -1, 0
    content += bytes.fromhex("0002" "0101" "01")
    expected = [[1, -1], [2, -3], [1, -2], [1, -2], [1, -2], [0, -2]]
    assert pmd.parse_delta_frame(content, 2, 16) == expected
    rg = pmd.Ragged.from_payloads([content, content])
    db = pmd._decode_delta_batch(rg, np.array([0, len(content)]),
                                 np.array([len(content), 2 * len(content)]), 2, 16)
    assert db.values.tolist() == expected + expected


# --- data frames ----------------------------------------------------------------------------


def test_sdk_acc_raw_frame_type_1() -> None:
    t = "process acc raw data frame type 1"
    frame = arr(t, "accDataFrameHeader") + arr(t, "accDataFrameContent")
    one = pmd.parse_data_frame(frame)
    n = len(arr(t, "accDataFrameContent")) // 2 // 3
    assert len(one["acc_g"]) == n
    assert [round(v * 1000) for v in one["acc_g"][0]] == [exp(t, "xValue1"), exp(t, "yValue1"),
                                                         exp(t, "zValue1")]
    assert [round(v * 1000) for v in one["acc_g"][1]] == [exp(t, "xValue2"), exp(t, "yValue2"),
                                                         exp(t, "zValue2")]
    res = pmd.decode_data_batch([frame], None, devices.DecodeContext(
        pmd_sample_rate_hz={2: exp(t, "sampleRate")}))
    acc = res.streams["acc"]
    assert len(acc) == n
    assert acc.t_ns[-1] == exp(t, "timeStamp") + EPOCH  # last sample carries the frame time
    assert np.diff(acc.t_ns) == pytest.approx(1e9 / 52, abs=1)


def test_sdk_acc_compressed_type_0_with_factor_and_previous_timestamp() -> None:
    t = "process acc compressed data type 0"
    content = arr(t, "accDataFrameContent")
    frame = arr(t, "accDataFrameHeader") + content
    previous = pmd.encode_acc_delta([[0, 0, 0]], exp(t, "previousTimeStamp"), frame_type=0)
    factor = float(np.float32(2.44e-4))  # source: factor = 2.44E-4f, range = 8
    res = pmd.decode_data_batch([previous, frame], None,
                                devices.DecodeContext(pmd_factor={2: factor}))
    acc = res.streams["acc"]
    mine = acc.acc_g[1:]  # drop the one sample of the previous frame
    n = 1 + 56
    assert len(mine) == n
    s0 = [exp(t, "sample0Channel0"), exp(t, "sample0Channel1"), exp(t, "sample0Channel2")]
    s1 = [s0[0] + 190, s0[1] - 105, s0[2] - 85]  # source: deltas of sample 1
    f32 = np.float32

    def sdk_mg(v: int) -> int:  # (factor * sample * 1000f).toInt() in float32
        return int(f32(f32(factor) * f32(v)) * f32(1000))

    assert [math.trunc(round(x * 1000, 6)) for x in mine[0]] == [sdk_mg(v) for v in s0]
    assert [math.trunc(round(x * 1000, 6)) for x in mine[1]] == [sdk_mg(v) for v in s1]
    assert np.all(np.abs(mine) <= 8)
    prev, ts = exp(t, "previousTimeStamp"), exp(t, "timeStamp")
    first = round(prev + (ts - prev) / n)
    assert acc.t_ns[1] - EPOCH == first and acc.t_ns[-1] - EPOCH == ts


def test_sdk_acc_compressed_type_1() -> None:
    t = "process acc compressed data type 1"
    frame = arr(t, "accDataFrameHeader") + arr(t, "accDataFrameContent")
    previous = pmd.encode_acc_delta([[0, 0, 0]], 100, frame_type=1)  # previous time 100
    acc = pmd.decode_data_batch([previous, frame], None).streams["acc"]
    mg = np.rint(acc.acc_g[1:] * 1000).astype(int).tolist()
    s0 = [exp(t, "sample0channel0"), exp(t, "sample0channel1"), exp(t, "sample0channel2")]
    assert mg == [s0, [s0[0] - 5, s0[1] - 3, s0[2]]]
    assert (acc.t_ns[1:] - EPOCH).tolist() == [100, 101]
    # the file's short type-0 vector: reference sample -163 (stated in its comments); the
    # vector itself ends inside a delta block, which must be reported, not guessed
    short = arr(t, "measurementFrameAccType0Short")
    assert pmd.parse_delta_frame(short[:6], 3, 16)[0][0] == exp(t, "accShortSample0Channel0")
    with pytest.raises(DecodeError, match="needs 90 bytes, only 22 left"):
        pmd.parse_delta_frame(short, 3, 16)


@pytest.mark.parametrize("ftype", [0, 1, 2, 3])
def test_sdk_ecg_frames(ftype: int) -> None:
    t = f"process raw ecg data type {ftype}"
    frame = arr(t, "ecgDataFrameHeader") + arr(t, "ecgDataFrameContent")
    v = pmd.parse_data_frame(frame)
    if ftype == 3:
        assert v["data0"] == [exp(t, "ecgValue1"), exp(t, "ecgValue2")]
        assert v["data1"] == [exp(t, "data1"), exp(t, "data2")]
        assert v["status"] == [0, 0xFF]  # source: status1 = 0, status2 = 0xFF
        return
    assert v["ecg_uv"] == [exp(t, "ecgValue1"), exp(t, "ecgValue2")]
    if ftype == 1:  # source: sample bits 0xFF and 0x00
        assert v["oversampling"] == [True, False]
        assert v["skin_contact"] == [(0xFF & 0x06) >> 1, 0]
        assert v["contact_impedance"] == [(0xFF & 0x18) >> 3, 0]
    if ftype == 2:  # source: sample bits 0xFC and 0x03
        assert v["ecg_data_tag"] == [(0xFC & 0x1C) >> 2, (0x03 & 0x1C) >> 2]
        assert v["pace_data_tag"] == [(0xFC & 0xE0) >> 5, (0x03 & 0xE0) >> 5]
    res = pmd.decode_data_batch([frame], None)
    assert res.streams["ecg"].ecg_uv.tolist() == v["ecg_uv"]
    assert res.streams["ecg"].t_ns[-1] - EPOCH == 2_000_000_000


def test_sdk_ppi_frame() -> None:
    t = "process ppi raw data type 0"
    frame = arr(t, "ppiDataFrameHeader") + arr(t, "ppiDataFrameContent")
    v = pmd.parse_data_frame(frame)
    assert v["hr_bpm"] == [exp(t, "heartRate"), exp(t, "heartRate2")]
    assert v["ppi_ms"] == [exp(t, "intervalInMs"), exp(t, "intervalInMs2")]
    assert v["ppi_error_ms"] == [exp(t, "errorEstimate"), exp(t, "errorEstimate2")]
    # source: flags 0xFF then 0x00
    assert v["blocker"] == [True, False]
    assert v["skin_contact"] == [True, False]
    assert v["skin_contact_supported"] == [True, False]
    ppi = devices.decode_batch(DATA_CHAR, [frame], np.array([10**12])).streams["ppi"]
    assert ppi.ppi_ms.tolist() == [32896, 1] and ppi.hr_bpm.tolist() == [128, 0]
    assert ppi.t_ns[-1] <= 10**12 and ppi.t_ns[-1] - ppi.t_ns[0] == 1_000_000


@pytest.mark.parametrize(
    ("test", "header", "content", "mtype", "ftype", "compressed"),
    [
        ("process ecg data", "ecgDataHeaderFromService", "ecgDataFromService", 0, 3, False),
        ("process ppg data", "ppgDataHeaderFromService", "ppgDataPartFromService", 1, 0, True),
        ("process acc data", "accDataHeaderFromService", "accDataPartFromService", 2, 3, True),
        ("process ppi data", "ppiDataHeaderFromService", "ppiDataPartFromService", 3, 0, False),
        ("process gyro data", "gyroDataHeaderFromService", "gyroDataPartFromService", 5, 0, True),
        ("process magnetometer data", "magDataHeaderFromService", "magDataPartFromService", 6, 0,
         True),
    ],
)
def test_sdk_client_frame_headers(test: str, header: str, content: str, mtype: int, ftype: int,
                                  compressed: bool) -> None:
    h = pmd.parse_header(arr(test, header) + arr(test, content))
    assert (h.measurement_type, h.frame_type, h.compressed) == (mtype, ftype, compressed)
    assert h.sensor_ns == exp(test, "expectedTimeStamp")


def test_sdk_unsupported_frame_type_is_a_decode_error() -> None:
    frame = arr("process not supported frame type", "locationDataFromService")
    with pytest.raises(DecodeError, match="frame type 127 is not supported"):
        devices.decode_one(DATA_CHAR, frame)
    res = devices.decode_batch(DATA_CHAR, [frame], np.array([1]))
    assert len(res.errors) == 1 and res.errors[0].index == 0


# --- real Polar H10 ECG --------------------------------------------------------------------


def _h10_frames() -> tuple[list[bytes], int]:
    path = next((DATA / "polar_h10_ecg").glob("hr_data_*.bin"))
    raw = path.read_bytes()
    magic = b"H10 ECG v1.0 binary data"
    assert raw.startswith(magic)
    pos, frames, truncated = len(magic), [], 0
    while pos + 4 <= len(raw):
        n = int.from_bytes(raw[pos:pos + 4], "little")
        if pos + 4 + n > len(raw):  # the recording stopped mid-record
            truncated += 1
            break
        frames.append(raw[pos + 4:pos + 4 + n])
        pos += 4 + n
    return frames, truncated


def test_real_h10_ecg_stream_decodes_completely() -> None:
    frames, truncated = _h10_frames()
    assert len(frames) == 12_355 and truncated == 1  # the last length has no payload
    res = pmd.decode_data_batch(frames, None)
    assert res.errors == [] and res.n_decoded == 12_355
    ecg = res.streams["ecg"]
    assert len(ecg) == 901_915 == 12_355 * 73
    assert np.all(np.diff(ecg.t_ns) > 0)
    rate = (len(ecg) - 1) / ((ecg.t_ns[-1] - ecg.t_ns[0]) / 1e9)
    assert rate == pytest.approx(130, rel=0.002)
    assert (ecg.t_ns[-1] - ecg.t_ns[0]) / 60e9 == pytest.approx(115.6, abs=0.1)
    # a chest ECG: typical R peaks of a few hundred to a few thousand microvolts
    assert 300 < np.percentile(ecg.ecg_uv, 99.9) < 5000
    # host mapping: with receive times 20-80 ms after each frame's last sample the
    # samples land at most that much early, never late
    rng = np.random.default_rng(3)
    ts = np.array([int.from_bytes(f[1:9], "little") for f in frames])
    host0 = 1_673_606_407 * 10**9  # 2023-01-13T11:40:07Z, the file name's time
    recv = host0 + (ts - ts[0]) + rng.integers(20_000_000, 80_000_000, ts.size)
    mapped = devices.decode_batch(DATA_CHAR, frames, recv).streams["ecg"]
    truth = host0 + (ecg.t_ns - ecg.t_ns[0]) + (ecg.t_ns[0] - EPOCH - ts[0])
    err = mapped.t_ns - truth
    assert err.min() >= 20_000_000 and err.max() < 20_100_000


def test_real_h10_gatttool_ecg_notifications() -> None:
    lines = (DATA / "polar_h10_ecg" / "gatttool_notifications.txt").read_text().splitlines()
    frames = [bytes.fromhex(ln.split(maxsplit=1)[1]) for ln in lines if ln.startswith("0x004a")]
    res = devices.decode_batch(DATA_CHAR, frames, np.arange(len(frames)) * 561_000_000)
    assert not res.errors
    assert len(res.streams["ecg"]) == 73 * len(frames)
    # first sample, by hand: bytes 7a 00 00 -> 122 uV
    assert res.streams["ecg"].ecg_uv[0] == 122


# --- host time mapping ------------------------------------------------------------------------


def test_sensor_to_host_mapping_across_a_device_reset() -> None:
    rng = np.random.default_rng(5)
    per, hz = 36, 52
    dt = 1e9 / hz
    frames, recv, truth = [], [], []
    host = 1_700_000_000 * 10**9
    for stretch, sensor0 in enumerate((5 * 10**17, 10**12)):  # clock restarts after a reset
        base = host + stretch * 3600 * 10**9
        for k in range(200):
            last = sensor0 + int((k + 1) * per * dt)
            frames.append(pmd.encode_acc_raw(rng.integers(-900, 900, (per, 3)), last, 1))
            t_true = base + np.rint((np.arange(per) + k * per + 1) * dt).astype(np.int64)
            truth.append(t_true)
            recv.append(int(t_true[-1] + rng.integers(8_000_000, 90_000_000)))
    res = devices.decode_batch(DATA_CHAR, frames, np.array(recv))
    acc = res.streams["acc"]
    t_true = np.concatenate(truth)
    err = acc.t_ns - t_true
    assert np.all(np.diff(acc.t_ns) > 0)
    assert err.min() >= 8_000_000 - 2 and err.max() <= 10_000_000  # min latency, both stretches


# --- measurements decoded one payload at a time (no streams) -----------------------------------


def _f32(bits: int) -> float:
    """intBitsToFloat, as the SDK tests state their expected values."""
    import struct

    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


def _frame(test: str, prefix: str) -> bytes:
    return arr(test, f"{prefix}DataFrameHeader") + arr(test, f"{prefix}DataFrameContent")


def test_sdk_gyro_frames() -> None:
    t = "process gyro compressed data type 0"
    v = pmd.parse_data_frame(_frame(t, "gyro"))
    s0 = [exp(t, f"sample0channel{c}") for c in range(3)]
    assert v["gyro_dps"] == [s0, [s0[0] - 1, s0[1] + 3, s0[2] + 3]]  # source: -0x1, +0x3, +0x3
    assert v["sensor_ns"] == exp(t, "timeStamp")
    s0f = [_f32(0x3F800000), _f32(0x41200000), _f32(0x41A00000)]
    s1f = [_f32(0x3F800000 + 0x1A00000), _f32(0x41200000 + 0x0800000),
           _f32(0x41A00000 + 0xFDECCCCD)]
    for t, factor in (("process gyro compressed data type 1", 1.0),
                      ("process gyro compressed data type 1 with factor", 0.5)):
        v = pmd.parse_data_frame(_frame(t, "gyro"), factor=factor)
        assert v["gyro_dps"] == [[x * factor for x in s0f], [x * factor for x in s1f]]


def test_sdk_magnetometer_frames() -> None:
    t = "process magnetometer compressed data type 0"
    content = arr(t, "magDataFrameContent")
    v = pmd.parse_data_frame(arr(t, "magDataFrameHeader") + content)
    s0 = [exp(t, f"sample0channel{c}") for c in range(3)]
    assert v["mag_gauss"] == [s0, [s0[0] - 1, s0[1] + 1, s0[2] + 2]]
    for t, factor in (("process magnetometer compressed data type 1", 1.0),
                      ("process magnetometer compressed data type 1 with factor", 1.1)):
        v = pmd.parse_data_frame(_frame(t, "mag"), factor=factor)
        # source: (-201, -687, -2452) mG then (+0, -1, +3); status 0 (unknown) then 1 (poor)
        exp0 = [-201 * factor / 1000, -687 * factor / 1000, -2452 * factor / 1000]
        exp1 = [-201 * factor / 1000, -688 * factor / 1000, -2449 * factor / 1000]
        assert v["mag_gauss"][0] == pytest.approx(exp0, abs=1e-5)
        assert v["mag_gauss"][1] == pytest.approx(exp1, abs=1e-5)
        assert v["calibration"] == ["unknown", "poor"]


def test_sdk_pressure_and_temperature_frames() -> None:
    for t, factor in (("process compressed pressure data type 0", 1.0),
                      ("process compressed pressure data type 0 with factor", 2.0)):
        v = pmd.parse_data_frame(_frame(t, "pressure"), factor=factor)
        assert v["pressure_bar"] == [_f32(0x448087C2) * factor, _f32(0x448087C2 - 0xE1) * factor]
    t = "process raw pressure data type 0"
    v = pmd.parse_data_frame(_frame(t, "pressure"))
    assert v["pressure_bar"] == [_f32(0x447B27AE)] and exp(t, "expectedSamplesSize") == 1
    v = pmd.parse_data_frame(_frame("process compressed temperature data type 0", "temperature"))
    assert v["temperature_c"] == [_f32(0x41DC51EC)] * 3
    v = pmd.parse_data_frame(_frame("process raw temperature data type 0", "temperature"))
    assert v["temperature_c"] == [_f32(0x41C028F6)]
    # a NaN bit pattern (0x7FC00000) becomes null: decode_one promises strict JSON
    nan = pmd.encode_data_frame(pmd.MeasurementType.TEMPERATURE, 1, 0, bytes.fromhex("0000c07f"))
    assert pmd.parse_data_frame(nan)["temperature_c"] == [None]


def test_sdk_skin_temperature_frames() -> None:
    t = "dataFromRawType0_parse-data_with-not-compresed-data"
    v = pmd.parse_data_frame(arr(t, "temperatureDataFrame"))
    assert v["skin_temperature_c"] == [29.796875] and v["sensor_ns"] == exp(t, "timeStamp")
    t = "dataFromCompressedType0_parse-data_with-compressed-data"
    v = pmd.parse_data_frame(arr(t, "temperatureDataFrame"))
    assert v["skin_temperature_c"] == pytest.approx([27.54] * 3, abs=1e-5)  # 27.54f
    # in a batch they are reported (no stream) without costing the ACC frame beside them
    acc = pmd.encode_acc_raw([[1, 2, 3]], 10**9, 1)
    res = devices.decode_batch(DATA_CHAR, [arr(t, "temperatureDataFrame"), acc], np.array([1, 2]))
    assert [e.index for e in res.errors] == [0] and "one by one" in res.errors[0].reason
    assert len(res.streams["acc"]) == 1


# --- BlePmdClientTest cases: failure status, previous time stamp, reset, start factor --------


def test_sdk_control_point_response_when_status_is_fail() -> None:
    # The SDK test hands its client the frame F0 01 00 00 00 00 00 00 70 FF together with a
    # failure status 0x11 ("someRandomFailureStatusCode") and asserts that status and the
    # frame's bytes both come through unchanged. sensord's transports pass no ATT status
    # beside a notification: a PMD failure is the status byte (index 3) of the frame itself,
    # so the same frame with byte 3 = 0x11 must come out as status 17, the bytes untouched.
    t = "process control point response when status is fail"
    sdk_frame = arr(t, "controlPointResponse")
    assert sdk_frame == bytes.fromhex("f001000000000000 70ff")
    failing = sdk_frame[:3] + bytes([0x11]) + sdk_frame[4:]
    resp = pmd.parse_control_point(failing)
    assert isinstance(resp, pmd.ControlPointResponse)
    assert (resp.op, resp.measurement_type, resp.status, resp.ok) == (1, 0, 0x11, False)
    assert resp.status_name == "unknown status"  # 17 is beyond the SDK's codes 0-14
    with pytest.raises(ControlPointError) as info:
        devices.decode_one(CP, failing)
    assert info.value.status == 0x11 and info.value.payload == failing
    # in a batch the failure is reported with its index; the success frame beside it stays
    res = devices.decode_batch(CP, [failing, sdk_frame], np.array([1, 2]))
    assert [e.index for e in res.errors] == [0] and res.errors[0].payload == failing
    assert [m["index"] for m in res.messages] == [1]
    assert res.messages[0]["status"] == "success"


def _acc4(sensor_ns: int) -> bytes:
    """An ACC raw type-1 frame of 4 samples whose last sample is at ``sensor_ns``."""
    return pmd.encode_acc_raw([[1, 2, 3]] * 4, sensor_ns, 1)


def test_sdk_previous_timestamp_is_kept_per_measurement_type() -> None:
    t = "test previous timestamp"
    first, second = arr(t, "accDataFromServiceFirst"), arr(t, "accDataFromServiceSecond")
    other, third = arr(t, "randomDataFromService"), arr(t, "accDataFromServiceThird")
    hdr = [pmd.parse_header(f) for f in (first, other, second, other, third)]
    big = 0x0FFFFFFFFFFFFFFF  # source: expectedTimeStampAfterSecondProcess
    assert [h.measurement_type for h in hdr] == [2, 3, 2, 3, 2]  # ACC, PPI between
    assert [h.sensor_ns for h in hdr[::2]] == [exp(t, "expectedTimeStampAfterFirstProcess"),
                                               big,
                                               exp(t, "expectedTimeStampAfterThirdProcess")]
    assert hdr[1].sensor_ns == 0x0FFFFFFFFFFFFF01
    # The SDK test mocks the sample parser (its frames carry one byte of content, frame
    # type 0x83, which sensord does not stream); here the same headers' times carry four
    # real ACC samples each, and the PPI frames one interval, in the SDK's order.
    ppi = pmd.encode_data_frame(3, hdr[1].sensor_ns, 0, bytes.fromhex("3c e803 0a00 06"))
    frames = [_acc4(1), ppi, _acc4(big), ppi, _acc4(3)]
    res = pmd.decode_data_batch(frames, None)
    assert res.errors == []
    sensor = np.sort(res.streams["acc"].t_ns - EPOCH)
    # second ACC frame: previous time stamp 1 (expectedPreviousTimeStampAfterSecondProcess),
    # not the PPI frame's 0x0FFFFFFFFFFFFF01 that arrived in between: by hand, samples at
    # 1 + (k + 1) s with s = (big - 1) / 4 (counted from the PPI frame they would lie
    # within 254 ns of big)
    s = (big - 1) / 4
    second = [1 + (k + 1) * s for k in range(4)]
    # first ACC frame: no previous frame (the SDK's 0): the batch's typical spacing s back
    # from its own time stamp 1. Third: its own time stamp 3 is its last sample
    # (expectedTimeStampAfterThirdProcess). Deliberate difference: the SDK still counts from
    # the previous 0x0FFF...F; sensord reads a sensor clock that runs backwards as a device
    # reset and spreads the samples back from 3 with the typical spacing, like the first.
    first = [1 - (3 - k) * s for k in range(4)]
    third = [3 - (3 - k) * s for k in range(4)]
    assert sensor.tolist() == pytest.approx(sorted(first + second + third), abs=256)
    assert sensor[-1] == big and 1 in sensor and 3 in sensor


def test_sdk_previous_timestamp_reset_on_reconnect() -> None:
    # source: previous time stamp 0 at the beginning, 1 after processing the frame
    # (expectedTimeStampAfterFirstProcess), 0 again after blePmdClient.reset(), which the
    # SDK calls on disconnect. sensord keeps no decoder state between batches and cuts a
    # batch at every disconnect, so the first frame after a reconnect counts nothing from
    # the frame before it.
    from sensord.model import DeviceEvent, RawNotification
    from sensord.pipeline import Pipeline

    t = "test previous timestamp reset"
    sdk = pmd.parse_header(arr(t, "accDataFromService"))
    assert sdk.measurement_type == 2
    assert sdk.sensor_ns == exp(t, "expectedTimeStampAfterFirstProcess")
    ms = 10**6
    a = _acc4(sdk.sensor_ns)
    b = _acc4(sdk.sensor_ns + 40 * ms)  # 40 ms later: 10 ms per sample if counted from a

    def run(events: list) -> np.ndarray:
        pipe = Pipeline(batch_size=100)
        for ev in events:
            pipe.feed(ev)
        pipe.end_session()
        return pipe.devices["d"].get("acc").t_ns - EPOCH

    def note(frame: bytes) -> RawNotification:  # received without delay: host = sensor time
        at = EPOCH + pmd.parse_header(frame).sensor_ns
        return RawNotification("d", DATA_CHAR, at, at, frame)

    con = DeviceEvent("d", "connected", EPOCH, 0)
    # requested 50 Hz: 20 ms per sample wherever a frame has no previous frame
    start = RawNotification("d", CP, EPOCH, 0, pmd.request_start(2, sample_rate_hz=50))
    one_run = run([con, start, note(a), note(b)])
    # one connection: b's samples at 1 + 10, 20, 30, 40 ms (counted from a's time stamp)
    assert one_run[4:].tolist() == [1 + k * 10 * ms for k in (1, 2, 3, 4)]
    gone = DeviceEvent("d", "disconnected", EPOCH, 0)
    again = run([con, start, note(a), gone, con, note(b)])
    # (a, without a previous frame, takes the batch's typical spacing: 10 ms)
    assert one_run[:4].tolist() == [1 - k * 10 * ms for k in (3, 2, 1, 0)]
    # after a reconnect: no previous frame, so the requested rate's 20 ms spacing back
    # from b's own time stamp: 1 + 40 - 60, - 40, - 20, + 0 ms; a, alone in its batch,
    # likewise 1 - 60 ... 1 ms (the stream is sorted by time)
    a_t = [1 - k * 20 * ms for k in (3, 2, 1, 0)]
    assert again.tolist() == sorted(a_t + [1 + 40 * ms - k * 20 * ms for k in (3, 2, 1, 0)])


def test_sdk_start_success_response_updates_factor() -> None:
    # source: startMeasurement(PPG, {SAMPLE_RATE 200, RESOLUTION 16}); the device answers
    # F0 | REQUEST_MEASUREMENT_START (2) | PPG (1) | SUCCESS 0 | more 0 | FACTOR (5), count 1,
    # floatToIntBits(2.5f) = 0x40200000 little-endian; the stored factor is that value.
    # Bytes written out by hand from the test's buildStartMeasurementSuccessResponse.
    response = bytes.fromhex("f0 02 01 00 00" "05 01 00002040")
    request = bytes.fromhex("02 01" "00 01 c800" "01 01 1000")  # start PPG, 200 Hz, 16 bit
    assert pmd.parse_request(request)["settings"] == {"sample_rate": [200], "resolution": [16]}
    res = devices.decode_batch(CP, [request, response], np.array([1, 2]))
    assert res.errors == []
    assert res.context.pmd_factor == {1: 2.5}
    assert res.context.pmd_sample_rate_hz == {1: 200.0}
    assert res.messages[1]["settings"] == {"factor": [2.5]}
    assert res.messages[1]["response_to"] == "request_measurement_start"


# --- sample times of a live batch, by the rule in the module docstring -------------------------


def _documented_times(ts: list[int], counts: list[int], recv: list[int],
                      stretch: list[int]) -> list[list[int]]:
    """Host times of each frame's samples by the module docstring, in exact arithmetic:
    samples spread evenly from the previous frame's time stamp (same measurement, same
    stretch), the first frame of a stretch counting back from its own with the median
    spacing; sensor time plus the stretch's least ``recv - ts``. (Frames here are regular:
    no gaps.)"""
    spacing = [Fraction(ts[i] - ts[i - 1], counts[i]) for i in range(1, len(ts))
               if stretch[i] == stretch[i - 1]]
    typical = statistics.median(spacing)
    offset = {s: min(r - t for r, t, s2 in zip(recv, ts, stretch, strict=True) if s2 == s)
              for s in set(stretch)}
    out = []
    for i, (t, n) in enumerate(zip(ts, counts, strict=True)):
        if i and stretch[i] == stretch[i - 1]:
            dt = Fraction(t - ts[i - 1], n)
            sensor = [ts[i - 1] + round((k + 1) * dt) for k in range(n)]
        else:
            sensor = [t - round((n - 1 - k) * typical) for k in range(n)]
        out.append([x + offset[stretch[i]] for x in sensor])
    return out


def _check_batch(frames: list[bytes], recv: list[int], kind: str, field: str,
                 expected_t: list[list[int]]) -> None:
    res = devices.decode_batch(DATA_CHAR, frames, np.array(recv, dtype=np.int64))
    assert res.errors == []
    _check_batch_stream(res.streams[kind], frames, field, expected_t)


def test_live_acc_batch_times_follow_the_documented_rule() -> None:
    """A 30-s batch as the daemon decodes it: ACC raw frames of 36 samples, one measurement,
    one stretch of sensor clock, receive times with varying latency."""
    rng = np.random.default_rng(11)
    n_frames, per = 42, 36
    ts, recv, frames = [], [], []
    t = 7 * 10**17
    for _ in range(n_frames):
        t += int(per * 20_000_000 + rng.integers(-40_000, 40_000))  # 50 Hz, a jittery clock
        ts.append(t)
        recv.append(t + 1_700_000_000 * 10**9 - EPOCH + int(rng.integers(5 * 10**6, 6 * 10**7)))
        frames.append(pmd.encode_acc_raw(rng.integers(-2000, 2000, (per, 3)), t, 1))
    expected = _documented_times(ts, [per] * n_frames, recv, [0] * n_frames)
    _check_batch(frames, recv, "acc", "acc_g", expected)


def test_interleaved_measurements_and_a_clock_restart_follow_the_documented_rule() -> None:
    """ACC and ECG frames interleaved (in time stamp order, as sent), the sensor clock
    restarting halfway (a reset): each measurement counts from its own previous frame
    within its stretch; each stretch has one offset."""
    rng = np.random.default_rng(12)
    host0 = 1_700_000_000 * 10**9
    sent = []  # (stretch, sensor time, kind, frame, receive time)
    for stretch, (sensor0, host) in enumerate(((9 * 10**17, host0), (10**12, host0 + 60 * 10**9))):
        ta = te = sensor0
        for _ in range(12):
            ta += 36 * 20_000_000 + int(rng.integers(-30_000, 30_000))  # 50 Hz
            te += 73 * 7_692_308 + int(rng.integers(-30_000, 30_000))  # 130 Hz
            acc = pmd.encode_acc_raw(rng.integers(-900, 900, (36, 3)), ta, 1)
            ecg = pmd.encode_ecg(rng.integers(-3000, 3000, 73), te)
            for t, kind, frame in ((ta, "acc", acc), (te, "ecg", ecg)):
                sent.append((stretch, t, kind, frame,
                             host + (t - sensor0) + int(rng.integers(5 * 10**6, 5 * 10**7))))
    sent.sort(key=lambda x: (x[0], x[1]))
    offsets = {s: min(r - t for s2, t, _, _, r in sent if s2 == s) for s in (0, 1)}
    res = devices.decode_batch(DATA_CHAR, [x[3] for x in sent],
                               np.array([x[4] for x in sent], dtype=np.int64))
    assert res.errors == []
    assert set(res.streams) == {"acc", "ecg"}
    for kind, n, field in (("acc", 36, "acc_g"), ("ecg", 73, "ecg_uv")):
        own = [x for x in sent if x[2] == kind]
        ts, recv, stretch = [x[1] for x in own], [x[4] for x in own], [x[0] for x in own]
        # the offset is the stretch's over both kinds: shift this kind's own to it
        exp_t = _documented_times(ts, [n] * len(ts), recv, stretch)
        own_off = {s: min(r - t for r, t, s2 in zip(recv, ts, stretch, strict=True) if s2 == s)
                   for s in (0, 1)}
        exp_t = [[x - own_off[s] + offsets[s] for x in row] for row, s
                 in zip(exp_t, stretch, strict=True)]
        _check_batch_stream(res.streams[kind], [x[3] for x in own], field, exp_t)


def _check_batch_stream(stream: object, frames: list[bytes], field: str,
                        expected_t: list[list[int]]) -> None:
    values = [v for f in frames for v in pmd.parse_data_frame(f)[field]]
    t_exp = [t for ts in expected_t for t in ts]
    order = sorted(range(len(t_exp)), key=lambda j: t_exp[j])
    diff = stream.t_ns - np.array([t_exp[j] for j in order], dtype=np.int64)
    assert np.abs(diff).max() <= 1, diff  # rounding of the float spacing
    np.testing.assert_allclose(getattr(stream, field), [values[j] for j in order], rtol=1e-12)
