"""Build the golden session folders from their sources (run by hand, not by pytest).

Each folder ``tests/sessions/<device>_<firmware>/`` holds ``session.blelog``,
``expected.json`` and ``expected.lp``. The expected values never come from sensord's
decoders: they are the values the source states (Polar H7 capture), a plain-Python hand
decoding written here (Polar H10 ECG int24 samples), or the simulator's own input
(simulated sessions).

    PYTHONPATH=. python tests/sessions/build_golden.py [../shared/data]
    PYTHONPATH=. python tests/sessions/build_golden.py ../shared/data --line-protocol-only

``expected.lp`` (the line protocol the folder's log must store) is built with
influxdb-client's ``Point`` from ``expected.json`` and a plain reading of the log's lines;
``--line-protocol-only`` rebuilds just those files from the folders as they are.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sensord.blelog import BlelogWriter
from sensord.devices import heart_rate as hrs
from sensord.devices import polar_pmd as pmd
from sensord.model import DeviceEvent, RawNotification
from sensord.simulate import SimConfig, night_events, simulate_night

HERE = Path(__file__).parent
T0 = 1_673_606_407_000_000_000  # 2023-01-13T10:40:07Z (the H10 session's start, UTC)
BOOT = T0 - 3_600_000_000_000


def _writer(folder: Path, participant: str, host: str, extra: dict[str, Any]) -> BlelogWriter:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return BlelogWriter(folder / "session.blelog", participant=participant, tz="Europe/Zurich",
                        host=host, wall_ns=T0, mono_ns=T0 - BOOT, fsync=False, extra=extra)


def _connect(w: BlelogWriter, dev: str, t: int, services: str) -> None:
    w.write(DeviceEvent(dev, "connected", t, t - BOOT, "address recorded"))
    w.write(DeviceEvent(dev, "services", t + 1, t + 1 - BOOT, services))


def _save(folder: Path, expected: dict[str, Any]) -> None:
    (folder / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


def polar_h7(data: Path) -> None:
    """Three real Polar H7 Heart Rate Measurements (gatttool), one second apart."""
    src = json.loads((data / "ble/polar_h7/notifications.json").read_text())
    folder = HERE / "polar_h7_unknown-fw"
    w = _writer(folder, "golden", "gatttool", {"source": src["source"]})
    _connect(w, "h7", T0, hrs.HEART_RATE_SERVICE)
    hr, rr, contact = [], [], []
    for k, fr in enumerate(src["frames"]):
        t = T0 + (k + 1) * 1_000_000_000
        w.write(RawNotification("h7", hrs.HEART_RATE_MEASUREMENT, t, t - BOOT,
                                bytes.fromhex(fr["hex"])))
        hr.append(fr["heart_rate_bpm"])
        contact.append(fr["sensor_contact"])
        rr.extend(v * 1000 / 1024 for v in fr["rr_1024"])  # HRS spec: RR unit 1/1024 s
    w.close()
    _save(folder, {
        "source": src["source"] + "; receive times assigned 1 s apart",
        "expected_from": "the values stated with each captured frame; RR = rr_1024 / 1.024",
        "devices": {"h7": {
            "hr": {"samples": 3, "hr_bpm": hr, "t_ns": [T0 + k * 10**9 for k in (1, 2, 3)]},
            "beats": {"samples": len(rr), "rr_ms": rr, "strictly_increasing": True},
            "contact": {"samples": 3, "contact": contact},
        }},
        "problems": {},
    })


def _int24(b: bytes) -> int:
    v = b[0] | (b[1] << 8) | (b[2] << 16)
    return v - (1 << 24) if v & 0x800000 else v


def _ecg_by_hand(frame: bytes) -> list[int]:
    """Polar PMD ECG frame type 0: 10-byte header, then int24 LE microvolts."""
    assert frame[0] == 0 and frame[9] == 0, "ECG raw frame type 0"
    body = frame[10:]
    return [_int24(body[i : i + 3]) for i in range(0, len(body), 3)]


def polar_h10_gatttool(data: Path) -> None:
    """The real gatttool capture: control-point indications + ECG notifications."""
    lines = (data / "ble/polar_h10_ecg/gatttool_notifications.txt").read_text().splitlines()
    folder = HERE / "polar_h10_unknown-fw_gatttool"
    w = _writer(folder, "golden", "gatttool", {"source": "phdiethelm/h10_ecg gatttool capture"})
    _connect(w, "h10", T0, pmd.PMD_SERVICE)
    handle_char = {"0x0047": pmd.PMD_CONTROL_POINT, "0x004a": pmd.PMD_DATA}
    ecg: list[int] = []
    t = T0 + 10**9
    n_frames = 0
    for ln in lines:
        handle, *hexes = ln.split()
        payload = bytes.fromhex("".join(hexes))
        char = handle_char[handle]
        if char == pmd.PMD_DATA:
            ecg.extend(_ecg_by_hand(payload))
            n_frames += 1
            t += 561_538_462  # 73 samples at 130 Hz
        else:
            t += 50_000_000
        w.write(RawNotification("h10", char, t, t - BOOT, payload))
    w.close()
    _save(folder, {
        "source": "phdiethelm/h10_ecg gatttool_notifications.txt (handle 0x0047 = PMD control "
                  "point, 0x004a = PMD data); receive times assigned 73/130 s apart",
        "expected_from": "hand decoding (int24 LE after the 10-byte header); the two failure "
                         "responses f0 00 01 0a (status 10) and f0 02 00 05 00 (status 5) "
                         "are errors",
        "devices": {"h10": {
            "ecg": {"samples": len(ecg), "ecg_uv": ecg, "strictly_increasing": True,
                    "median_interval_ms": [1000 / 130 * 0.9, 1000 / 130 * 1.1]},
        }},
        "problems": {"control-point-error": 2},
    })


def polar_h10_bin(data: Path, frames: int = 240) -> None:
    """The first ``frames`` ECG frames of the real 115-minute H10 recording."""
    raw = next((data / "ble/polar_h10_ecg").glob("hr_data_*.bin")).read_bytes()
    magic = b"H10 ECG v1.0 binary data"
    assert raw.startswith(magic)
    pos = len(magic)
    folder = HERE / "polar_h10_unknown-fw_ecg"
    w = _writer(folder, "golden", "h10_ecg", {"source": "phdiethelm/h10_ecg hr_data_*.bin"})
    _connect(w, "h10", T0, pmd.PMD_SERVICE)
    ecg: list[int] = []
    first_ts = None
    n = 0
    while n < frames:
        (length,) = struct.unpack_from("<I", raw, pos)
        frame = raw[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if frame[0] != 0:
            continue
        ts = int.from_bytes(frame[1:9], "little")
        first_ts = ts if first_ts is None else first_ts
        t = T0 + 10**9 + (ts - first_ts) + 25_000_000  # sensor time + 25 ms "latency"
        w.write(RawNotification("h10", pmd.PMD_DATA, t, t - BOOT, frame))
        ecg.extend(_ecg_by_hand(frame))
        n += 1
    w.close()
    _save(folder, {
        "source": f"phdiethelm/h10_ecg: the first {frames} ECG frames of hr_data_*.bin; "
                  "receive time = sensor time offset + 25 ms",
        "expected_from": "hand decoding (int24 LE after the 10-byte header)",
        "devices": {"h10": {
            "ecg": {"samples": len(ecg), "ecg_uv": ecg, "strictly_increasing": True,
                    "median_interval_ms": [1000 / 130 * 0.95, 1000 / 130 * 1.05]},
        }},
        "problems": {},
    })


def simulated(profile: str, folder_name: str, minutes: float = 3.0) -> None:
    """A short simulated session; expected = the simulator's input, quantised as sent."""
    cfg = SimConfig(seed=11, profile=profile, duration_h=minutes / 60 + 0.5,
                    participant="golden")
    night = simulate_night(cfg, 0, start_ns=T0)
    walls, items = night_events(cfg, night)
    end = T0 + int(minutes * 60e9)
    keep = walls < end
    folder = HERE / folder_name
    w = _writer(folder, "golden", "sim", {"simulated": True, "profile": profile, "seed": 11})
    dev = cfg.device_id()
    kept = [(int(t), it) for t, it, k in zip(walls.tolist(), items, keep.tolist(), strict=True)
            if k]
    for t, it in kept:
        if isinstance(it, DeviceEvent):
            w.write(DeviceEvent(it.device, it.kind, t, t - BOOT, it.detail))
        else:
            w.write(RawNotification(dev, it[0], t, t - BOOT, it[1]))
    w.close()
    hrm = [(t, it[1]) for t, it in kept if not isinstance(it, DeviceEvent)
           and it[0] == hrs.HEART_RATE_MEASUREMENT]
    # what the simulator put in: the HR byte of each notification, and the true RR
    # intervals rounded to the 1/1024-s unit the strap sends (as many as were sent)
    hr_sent = [p[1] for _, p in hrm]
    n_rr = sum((len(p) - 2) // 2 for _, p in hrm if p[0] & 0x10)
    rr_sent = np.rint(night.rr_ms[:n_rr] * 1.024) / 1.024
    by_hand = [v / 1.024 for _, p in hrm if p[0] & 0x10
               for v in struct.unpack(f"<{(len(p) - 2) // 2}H", p[2:])]
    assert np.allclose(by_hand, rr_sent), "payloads carry the simulator's beats"
    streams: dict[str, Any] = {
        "hr": {"samples": len(hrm), "hr_bpm": hr_sent, "t_ns": [t for t, _ in hrm]},
    }
    if profile != "infinitime":
        streams["beats"] = {"samples": int(rr_sent.size), "rr_ms": rr_sent.tolist(),
                            "strictly_increasing": True}
    if profile == "polar_h10":
        frames = [t for t, it in kept if not isinstance(it, DeviceEvent)
                  and it[0] == pmd.PMD_DATA]
        n = len(frames) * 36
        acc = np.rint(night.acc_g[:n] * 1000) / 1000
        streams["acc"] = {"samples": n, "acc_g": acc.tolist(), "strictly_increasing": True,
                          "t_ns_close_to": night.acc_t_ns[:n].tolist(), "t_tolerance_ms": 60}
    _save(folder, {
        "source": f"sensord.simulate profile {profile}, seed 11, first {minutes} min",
        "expected_from": "the simulator's input: HR byte sent, true RR rounded to 1/1024 s, "
                         "acceleration rounded to the milli-g sent",
        "devices": {dev: streams},
        "problems": {},
    })


# --- expected line protocol ---------------------------------------------------------------------

ROLE = "chest"
"""The device role every golden device is stored under (the test maps it the same way)."""
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"
CONNECTED_KINDS = {"connected", "services", "subscribed", "setup"}
"""Device event kinds stored with ``connected=true`` (docs/storage.md, ``device_event``)."""
LP_HEADER = """\
# Expected line protocol of session.blelog, built by build_golden.py with influxdb-client's
# Point from expected.json (heart rate, RR) and from a plain reading of the log's text lines
# (device events, battery levels); participant from the log header, device_role chest.
# beat lines carry no timestamp: beat times are reconstructed from receive times and have
# no independent value; the test compares sensord's beat lines without theirs.
"""


def _log_records(path: Path) -> list[tuple[str, int, str]]:
    """``(type, wall_ns, rest)`` of every line of a session log, read without sensord: gzip
    members of text lines ``crc type wall_ns mono_ns rest``."""
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        out = []
        for line in fh.read().splitlines():
            _crc, kind, wall, _mono, rest = line.split(" ", 4)
            out.append((kind, int(wall), rest))
    return out


def line_protocol(folder: Path) -> None:
    """Write ``expected.lp``: the points ``sensord backfill`` must derive from the folder's
    log, without scoring (samples and device events), built with influxdb-client's Point."""
    from tests.point_oracle import point_line

    expected = json.loads((folder / "expected.json").read_text())
    records = _log_records(folder / "session.blelog")
    participant = json.loads(records[0][2])["participant"]
    tags = {"participant": participant, "device_role": ROLE}

    def point(measurement: str, fields: dict[str, Any], t_ns: int | None) -> str:
        return point_line(measurement, tags, fields, t_ns)

    lines = []
    for streams in expected["devices"].values():
        hr = streams.get("hr")
        if hr is not None:
            lines += [point("heart_rate", {"hr_bpm": float(v)}, int(t))
                      for v, t in zip(hr["hr_bpm"], hr["t_ns"], strict=True)]
        beats = streams.get("beats")
        if beats is not None:
            lines += [point("beat", {"rr_ms": float(v)}, None) for v in beats["rr_ms"]]
    channels: dict[str, str] = {}
    last = -1  # events of a role in the same ns are kept apart by 1 ns each, in log order
    for kind, wall, rest in records:
        if kind == "K":
            decl = json.loads(rest)
            channels[decl["ch"]] = decl["char"]
        elif kind == "N":
            ch, payload = rest.split(" ")
            if channels[ch] == BATTERY_LEVEL:  # Battery Level: one uint8, percent
                lines.append(point("device_battery", {"battery_pct": bytes.fromhex(payload)[0]},
                                   wall))
        elif kind == "E":
            ev = json.loads(rest)
            last = max(wall, last + 1)
            lines.append(point("device_event", {
                "event": ev["kind"], "connected": ev["kind"] in CONNECTED_KINDS,
                "detail": ev.get("detail") or None}, last))
    (folder / "expected.lp").write_text(LP_HEADER + "\n".join(sorted(lines)) + "\n")


def main() -> None:
    data = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[1] / "../shared/data")
    if "--line-protocol-only" not in sys.argv:
        polar_h7(data)
        polar_h10_gatttool(data)
        polar_h10_bin(data)
        simulated("polar_h10", "sim-polar_h10_sim-1", minutes=1.0)
        simulated("hrs_strap", "sim-hrs_strap_sim-1")
    for folder in sorted(p for p in HERE.iterdir() if (p / "session.blelog").exists()):
        line_protocol(folder)


if __name__ == "__main__":
    main()
