"""Property tests for every decoder: arbitrary bytes never raise anything but DecodeError;
every frame type the simulator writes round-trips; the vectorised batch path agrees with
the plain-Python one-payload path."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensord import devices
from sensord.devices import _common
from sensord.devices import infinitime as itm
from sensord.devices import polar_pmd as pmd
from sensord.errors import ControlPointError, DecodeError

ALL_CHARS = sorted(devices.CHARACTERISTICS)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- arbitrary input --------------------------------------------------------------------------

# PMD data payloads that get past the header into every content parser
pmd_headers = st.builds(
    lambda m, t, f, c: bytes([m]) + t.to_bytes(8, "little") + bytes([f]) + c,
    st.sampled_from([0, 1, 2, 3, 5, 6, 7, 11, 12, 0x40, 0x82]),
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1, 2, 3, 0x80, 0x81, 0x82, 0x7F]),
    st.binary(max_size=80),
)
any_payload = st.binary(max_size=64) | pmd_headers


@given(st.sampled_from(ALL_CHARS), any_payload)
@FAST
def test_any_bytes_to_decode_one_gives_values_or_decode_error(char: str, payload: bytes) -> None:
    try:
        out = devices.decode_one(char, payload)
    except DecodeError as exc:
        assert exc.payload == payload and exc.reason and exc.profile and exc.characteristic
    else:
        assert isinstance(out, dict) and out["characteristic"]
        json.loads(json.dumps(out, allow_nan=False))  # JSON-able as promised


@given(st.sampled_from(ALL_CHARS), st.lists(any_payload, max_size=12),
       st.lists(st.integers(0, 2**62), min_size=12, max_size=12))
@FAST
def test_any_bytes_to_decode_batch_gives_streams_or_indexed_errors(
    char: str, payloads: list[bytes], times: list[int]
) -> None:
    recv = np.sort(np.array(times[: len(payloads)], dtype=np.int64))
    res = devices.decode_batch(char, payloads, recv)
    assert all(isinstance(e, DecodeError) for e in res.errors)
    bad = {e.index for e in res.errors}
    assert bad <= set(range(len(payloads)))
    assert res.n_decoded == len(payloads) - len(bad)
    for e in res.errors:
        assert e.payload == payloads[e.index]
    for stream in res.streams.values():
        assert stream.t_ns.dtype == np.int64


@given(st.lists(pmd_headers, min_size=1, max_size=12))
@FAST
def test_pmd_batch_and_single_agree_on_which_frames_are_bad(payloads: list[bytes]) -> None:
    res = devices.decode_batch(pmd.PMD_DATA, payloads, np.arange(len(payloads)) * 10**9)
    single_bad = set()
    for i, p in enumerate(payloads):
        try:
            v = pmd.parse_data_frame(p)
        except DecodeError:
            single_bad.add(i)
        else:
            if not {"ecg_uv", "acc_g", "ppi_ms"} & v.keys():  # decoded, but has no stream
                single_bad.add(i)
    assert {e.index for e in res.errors} == single_bad


def test_unknown_characteristic_and_bad_uuid() -> None:
    with pytest.raises(DecodeError, match="no decoder"):
        devices.decode_one("2a99", b"\x00")
    with pytest.raises(DecodeError, match="no decoder"):
        devices.decode_batch("not-a-uuid", [b""], np.array([0]))
    assert not devices.is_known("2a99") and not devices.is_known("zz")
    assert devices.is_known("2A37") and devices.is_known("0x2a37")
    assert devices.is_known(pmd.PMD_DATA.upper())


# --- round trips ------------------------------------------------------------------------------

sensor_ns = st.integers(10**9, 2**62)


@given(st.sampled_from([0, 1, 2]), st.data(), sensor_ns)
@FAST
def test_acc_raw_round_trip(ftype: int, data: st.DataObject, ts: int) -> None:
    lim = 1 << (8 * pmd.ACC_RAW_SAMPLE_BYTES[ftype] - 1)
    n = data.draw(st.integers(1, 40))
    mg = data.draw(st.lists(st.integers(-lim, lim - 1), min_size=3 * n, max_size=3 * n))
    frame = pmd.encode_acc_raw(np.array(mg).reshape(n, 3), ts, ftype)
    one = pmd.parse_data_frame(frame)
    assert np.rint(np.array(one["acc_g"]) * 1000).astype(int).ravel().tolist() == mg
    res = pmd.decode_data_batch([frame], None)
    assert np.rint(res.streams["acc"].acc_g * 1000).astype(int).ravel().tolist() == mg
    assert res.streams["acc"].t_ns[-1] == ts + pmd.POLAR_EPOCH_UNIX_NS


@given(st.sampled_from([0, 1]), st.data(), sensor_ns, st.integers(1, 255))
@FAST
def test_acc_delta_round_trip(ftype: int, data: st.DataObject, ts: int, block: int) -> None:
    n = data.draw(st.integers(1, 60))
    vals = data.draw(st.lists(st.integers(-32768, 32767), min_size=3 * n, max_size=3 * n))
    samples = np.array(vals).reshape(n, 3)
    frame = pmd.encode_acc_delta(samples, ts, ftype, block_samples=block)
    factor = 2.44e-4 if ftype == 0 else 1.0
    scale = factor if ftype == 0 else 1 / 1000
    assert pmd.parse_delta_frame(frame[10:], 3, 16) == samples.tolist()
    ctx = devices.DecodeContext(pmd_factor={2: factor})
    acc = pmd.decode_data_batch([frame], None, ctx).streams["acc"]
    assert np.rint(acc.acc_g / scale).astype(int).tolist() == samples.tolist()


@given(st.lists(st.integers(-(1 << 23), (1 << 23) - 1), min_size=1, max_size=80), sensor_ns)
@FAST
def test_ecg_round_trip(uv: list[int], ts: int) -> None:
    frame = pmd.encode_ecg(uv, ts)
    assert pmd.parse_data_frame(frame)["ecg_uv"] == uv
    assert pmd.decode_data_batch([frame], None).streams["ecg"].ecg_uv.tolist() == uv


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
                          st.integers(0, 7)), min_size=1, max_size=20))
@FAST
def test_ppi_round_trip(rows: list[tuple[int, int, int, int]]) -> None:
    hr, ppi, err, fl = (list(c) for c in zip(*rows, strict=True))
    frame = pmd.encode_ppi(ppi, hr_bpm=hr, error_ms=err, flags=fl)
    v = pmd.parse_data_frame(frame)
    assert (v["hr_bpm"], v["ppi_ms"], v["ppi_error_ms"]) == (hr, ppi, err)
    assert v["blocker"] == [bool(f & 1) for f in fl]
    s = devices.decode_batch(pmd.PMD_DATA, [frame], np.array([10**15])).streams["ppi"]
    assert s.ppi_ms.tolist() == ppi and s.skin_contact.tolist() == [bool(f & 2) for f in fl]


settings_values = st.fixed_dictionaries({}, optional={
    pmd.SettingType.SAMPLE_RATE: st.lists(st.integers(1, 0x7FFF), min_size=1, max_size=4),
    pmd.SettingType.RESOLUTION: st.lists(st.integers(1, 24), min_size=1, max_size=2),
    pmd.SettingType.RANGE: st.lists(st.integers(1, 16), min_size=1, max_size=4),
    pmd.SettingType.CHANNELS: st.lists(st.integers(1, 3), min_size=1, max_size=1),
    pmd.SettingType.FACTOR: st.lists(st.sampled_from([1.0, 2.44e-4, 0.5]), min_size=1,
                                     max_size=1),
})


@given(st.sampled_from(list(pmd.Op)), st.sampled_from(list(pmd.MeasurementType)),
       st.integers(0, 14), st.booleans(), settings_values)
@FAST
def test_control_point_response_round_trip(op: pmd.Op, mtype: pmd.MeasurementType, status: int,
                                           more: bool, values: dict) -> None:
    params = pmd.encode_settings(values)
    payload = pmd.encode_control_point_response(op, mtype, status, more=more, parameters=params)
    resp = pmd.parse_control_point(payload)
    assert isinstance(resp, pmd.ControlPointResponse)
    assert (resp.op, resp.measurement_type, resp.status) == (op, mtype, status)
    if status:
        with pytest.raises(ControlPointError) as info:
            devices.decode_one(pmd.PMD_CONTROL_POINT, payload)
        assert info.value.status == status
        return
    assert resp.more is more and resp.parameters == params
    parsed = pmd.parse_settings(params)
    expected = {pmd.SettingType(k).name.lower(): v for k, v in values.items()}
    if len(params) <= 1:
        expected = {}
    assert parsed.keys() == expected.keys()
    for k, v in expected.items():
        assert parsed[k] == pytest.approx(v, rel=1e-6)


@given(st.integers(0, 2**32 - 1), st.tuples(*[st.integers(-32768, 32767)] * 3))
def test_infinitime_round_trip(steps: int, xyz: tuple[int, int, int]) -> None:
    assert devices.decode_one(itm.STEP_COUNT, itm.encode_step_count(steps))["steps"] == steps
    v = devices.decode_one(itm.MOTION_VALUES, itm.encode_motion_values(*xyz))
    assert v["raw"] == list(xyz)
    assert v["acc_g"] == [c / 1024 for c in xyz]


# --- batch path == plain-Python path ----------------------------------------------------------


frame_specs = st.one_of(
    st.tuples(st.just("acc_raw"), st.sampled_from([0, 1, 2]), st.integers(1, 30)),
    st.tuples(st.just("acc_delta"), st.sampled_from([0, 1]), st.integers(1, 30)),
    st.tuples(st.just("ecg"), st.just(0), st.integers(1, 80)),
)


@given(st.lists(frame_specs, min_size=1, max_size=15), st.integers(0, 2**32))
@settings(max_examples=80, deadline=None)
def test_vectorised_batch_equals_plain_python(specs: list, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frames, ts = [], 10**12
    for kind, ftype, n in specs:
        ts += int(rng.integers(10**7, 10**9))
        if kind == "acc_raw":
            lim = 1 << (8 * pmd.ACC_RAW_SAMPLE_BYTES[ftype] - 1)
            frames.append(pmd.encode_acc_raw(rng.integers(-lim, lim, (n, 3)), ts, ftype))
        elif kind == "acc_delta":
            walk = np.cumsum(rng.integers(-300, 300, (n, 3)), axis=0).clip(-32768, 32767)
            frames.append(pmd.encode_acc_delta(walk, ts, ftype,
                                               block_samples=int(rng.integers(1, 40))))
        else:
            frames.append(pmd.encode_ecg(rng.integers(-5000, 5000, n), ts))
    res = pmd.decode_data_batch(frames, None)
    singles = [pmd.parse_data_frame(f) for f in frames]
    acc = [s for f in singles if "acc_g" in f for s in f["acc_g"]]
    ecg = [s for f in singles if "ecg_uv" in f for s in f["ecg_uv"]]
    if acc:
        np.testing.assert_allclose(res.streams["acc"].acc_g, np.array(acc), rtol=1e-12)
    if ecg:
        assert res.streams["ecg"].ecg_uv.tolist() == ecg
    for s in res.streams.values():
        assert np.all(np.diff(s.t_ns) > 0)


# --- batch cuts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["hrs_strap", "polar_h10", "infinitime"])
def test_where_a_batch_is_cut(profile: str, tmp_path: Path) -> None:
    """A simulated hour decoded in one batch and cut as the live daemon cuts it (every 64
    notifications and at arbitrary epoch ticks). Heart rate, contact, battery and
    InfiniTime motion do not depend on the cuts (the daemon exports exactly these live);
    RR beat times and Polar PMD sample times do (each batch reconstructs them from its own
    receive times), but not their values or number: those streams are exported from the
    session log, decoded the way ``load_session`` cuts it."""
    from sensord import blelog
    from sensord.simulate import SimConfig, simulate_to_files

    cfg = SimConfig(seed=8, profile=profile, duration_h=1.0, dropouts_per_h=2,
                    disconnects_per_night=0)
    _, logs = simulate_to_files(cfg, tmp_path)
    channels = blelog.load(str(logs[0]), blelog.Problems()).channels
    rng = np.random.default_rng(4)
    exact = {"hr", "contact", "battery", "energy", "steps"} | (
        {"acc"} if profile == "infinitime" else set())
    seen = set()
    for (_dev, char), ch in channels.items():
        if not devices.is_known(char):
            continue
        n = len(ch.payloads)
        whole = devices.decode_batch(char, ch.payloads, ch.wall_ns)
        cuts = sorted({0, n} | set(range(0, n, 64)) | set(rng.integers(1, max(n, 2),
                                                                          n // 40).tolist()))
        parts = [devices.decode_batch(char, ch.payloads[a:b], ch.wall_ns[a:b])
                 for a, b in itertools.pairwise(cuts)]
        for name, stream in whole.streams.items():
            seen.add(name)
            pieces = [p.streams[name] for p in parts if name in p.streams]
            for f in stream.__dataclass_fields__:
                got = np.concatenate([getattr(s, f) for s in pieces])
                if f == "t_ns" and name not in exact:
                    assert got.size == stream.t_ns.size
                    continue
                np.testing.assert_array_equal(got, getattr(stream, f), err_msg=f"{name}.{f}")
    assert {"hr", "beats"} <= seen or profile == "infinitime"
    assert "acc" in seen or profile == "hrs_strap"


# --- helpers the batch decoders share ----------------------------------------------------------


@given(st.lists(st.integers(-10**15, 10**15), min_size=1, max_size=60) | st.lists(
    st.floats(-1e12, 1e12, allow_nan=False), min_size=1, max_size=60))
@FAST
def test_median_and_distinct_equal_numpys(values: list) -> None:
    x = np.array(values)
    assert _common.median(x) == float(np.median(x))
    assert _common.distinct(x) == np.unique(x).tolist()
    same = np.full(7, x[0])
    assert _common.distinct(same) == np.unique(same).tolist()
    assert _common.distinct(x[:0]) == []
