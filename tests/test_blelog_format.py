"""Session log format: round trip, header, sessions, gzip compatibility, line layout."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensord import __version__, blelog
from sensord.errors import LogFormatError
from sensord.model import ClockEvent, DeviceEvent, RawNotification, sig_uuid

HRM = sig_uuid(0x2A37)
PMD_DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"
T0 = 1_780_000_000_000_000_000


def _events(n: int = 50) -> list[DeviceEvent | RawNotification | ClockEvent]:
    out: list[DeviceEvent | RawNotification | ClockEvent] = [
        DeviceEvent("strap", "connected", T0, 5, "address AA:BB")
    ]
    for i in range(n):
        out.append(RawNotification("strap", HRM, T0 + i * 10**9, 5 + i * 10**9,
                                   bytes([0x10, 60 + i % 7, i % 256, 4])))
    out.append(ClockEvent(T0 + n * 10**9, 5 + n * 10**9, -2_000_000, True))
    out.append(DeviceEvent("strap", "disconnected", T0 + n * 10**9, 6 + n * 10**9, "0x08"))
    return out


def _write(path: Path, events: list, **kw: object) -> None:
    with blelog.BlelogWriter(path, participant="p01", tz="Europe/Zurich", host="pi",
                             wall_ns=T0, mono_ns=5, fsync=False, **kw) as w:  # type: ignore[arg-type]
        for ev in events:
            w.write(ev)


def test_round_trip_streaming_and_batch(tmp_path: Path) -> None:
    path = tmp_path / "a.blelog"
    events = _events()
    _write(path, events)
    probs = blelog.Problems()
    assert list(blelog.iter_events(path, probs)) == events
    assert len(probs) == 0
    c = blelog.load(path)
    ch = c.channels[("strap", HRM)]
    notes = [e for e in events if isinstance(e, RawNotification)]
    assert ch.payloads == [e.payload for e in notes]
    assert ch.wall_ns.tolist() == [e.wall_ns for e in notes]
    assert ch.mono_ns.tolist() == [e.mono_ns for e in notes]
    assert [e for _, e in c.device_events] == [e for e in events if isinstance(e, DeviceEvent)]
    assert [e for _, e in c.clock_events] == [e for e in events if isinstance(e, ClockEvent)]


def test_header_fields(tmp_path: Path) -> None:
    path = tmp_path / "h.blelog"
    _write(path, _events(2), extra={"seed": 4})
    h = blelog.read_header(path)
    assert (h.format_version, h.sensord_version, h.participant, h.tz, h.host) == (
        blelog.FORMAT_VERSION, __version__, "p01", "Europe/Zurich", "pi")
    assert h.extra == {"seed": 4}
    assert h.wall_ns == T0


def test_file_is_plain_multi_member_gzip_with_the_documented_lines(tmp_path: Path) -> None:
    """An independent reader (Python's gzip module + a hand-written line check)."""
    path = tmp_path / "g.blelog"
    _write(path, _events(3))
    _write(path, _events(2))  # appended second session
    text = gzip.decompress(path.read_bytes()).decode()
    lines = text.splitlines()
    assert sum(ln[9] == "H" for ln in lines) == 2
    for ln in lines:
        crc, kind, wall, mono = ln[:8], ln[9], ln[11:30], ln[31:50]
        assert int(crc, 16) == zlib.crc32(ln[9:].encode())
        assert kind in "HKNEC" and wall.isdigit() and mono.isdigit()
    n = next(ln for ln in lines if ln[9] == "N")
    ch, payload = n[51:59], n[60:]
    k = json.loads(next(ln for ln in lines if ln[9] == "K")[51:])
    assert k == {"ch": ch, "device": "strap", "char": HRM}
    assert bytes.fromhex(payload) == bytes([0x10, 60, 0, 4])
    assert int(n[11:30]) == T0


def test_appending_sessions_keeps_both(tmp_path: Path) -> None:
    path = tmp_path / "two.blelog"
    _write(path, _events(3))
    _write(path, _events(4))
    assert len(blelog.iter_headers(path)) == 2
    c = blelog.load(path)
    assert c.members == 2
    assert len(c.channels[("strap", HRM)]) == 7


def test_not_a_log_and_future_version_are_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.blelog"
    junk.write_bytes(b"hello")
    with pytest.raises(LogFormatError, match="not a sensord session log"):
        blelog.load(junk)
    empty = tmp_path / "empty.blelog"
    empty.write_bytes(b"")
    with pytest.raises(LogFormatError, match="empty"):
        list(blelog.iter_events(empty))
    future = tmp_path / "future.blelog"
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = b'H 0000000000000000001 0000000000000000001 {"format":"sensord.blelog","version":99}'
    line = b"%08x %s\n" % (zlib.crc32(body), body)
    future.write_bytes(blelog.MEMBER_MARKER + z.compress(line) + z.flush())
    with pytest.raises(LogFormatError, match="version 99 is not supported"):
        blelog.load(future)


def test_writer_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="participant"):
        blelog.BlelogWriter(tmp_path / "x.blelog", participant="a\tb", tz="UTC", host="h",
                            wall_ns=0, mono_ns=0, fsync=False)
    w = blelog.BlelogWriter(tmp_path / "y.blelog", participant="p", tz="UTC", host="h",
                            wall_ns=0, mono_ns=0, fsync=False)
    with pytest.raises(LogFormatError, match="device id"):
        w.write(RawNotification("bad\nname", HRM, 1, 1, b"\x00\x3c"))
    with pytest.raises(LogFormatError, match="wall_ns"):
        w.write(RawNotification("ok", HRM, -1, 1, b"\x00\x3c"))
    w.close()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "strap 2", "ü-dev"]),
                          st.sampled_from([HRM, sig_uuid(0x2A19), PMD_DATA]),
                          st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1),
                          st.binary(max_size=300)), max_size=40))
def test_any_notifications_round_trip(tmp_path_factory: pytest.TempPathFactory,
                                      rows: list[tuple[str, str, int, int, bytes]]) -> None:
    path = tmp_path_factory.mktemp("rt") / "p.blelog"
    events = [RawNotification(*r) for r in rows]
    _write(path, events)  # type: ignore[arg-type]
    assert list(blelog.iter_events(path)) == events
    c = blelog.load(path)
    for (dev, char), ch in c.channels.items():
        want = [e for e in events if (e.device, e.char_uuid) == (dev, char)]
        assert ch.payloads == [e.payload for e in want]
        assert np.array_equal(ch.wall_ns, [e.wall_ns for e in want])
    assert sum(len(ch) for ch in c.channels.values()) == len(events)


def test_a_log_of_many_decompression_pieces_loads_as_it_streams() -> None:
    # the demo night (3.8 MB compressed) is decompressed and parsed in many pieces, most
    # of them ending inside a line: the same notifications, in order, as record by record
    path = Path(__file__).resolve().parents[1] / "sensord/data/demo.blelog"
    assert path.stat().st_size > 8 * blelog._BATCH_CHUNK
    streamed: dict[tuple[str, str], list[tuple[int, RawNotification]]] = {}
    for line, ev in blelog.iter_records(path):
        if isinstance(ev, RawNotification):
            streamed.setdefault((ev.device, ev.char_uuid), []).append((line, ev))
    c = blelog.load(path)
    assert set(c.channels) == set(streamed)
    for key, ch in c.channels.items():
        assert ch.payloads == [e.payload for _, e in streamed[key]]
        assert ch.wall_ns.tolist() == [e.wall_ns for _, e in streamed[key]]
        assert ch.line.tolist() == [line for line, _ in streamed[key]]


def test_problems_of_decompressing_a_member_come_before_those_of_its_lines(
    tmp_path: Path,
) -> None:
    # a flipped byte in the compressed data: the stream's check fails at the member's end
    # (reported first, as when the member's whole text was parsed at once), the lines
    # decompressed from the bad data fail their CRC (reported after it)
    path = tmp_path / "a.blelog"
    _write(path, _events(3000))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    probs = blelog.Problems()
    blelog.load(path, probs)
    kinds = [p.kind for p in probs]
    assert kinds[0] == "corrupt-compressed" and "corrupt-line" in kinds[1:]
