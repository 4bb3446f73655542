"""Crash tolerance and bad input: truncation, corruption, junk, unknown devices and
characteristics are counted once with file and line, and everything else is kept."""

from __future__ import annotations

import asyncio
import gzip
import os
import stat
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensord import blelog
from sensord.ble.replay import replay
from sensord.devices.heart_rate import encode_hrm
from sensord.errors import LogFormatError
from sensord.model import DeviceEvent, RawNotification, sig_uuid
from sensord.pipeline import Pipeline, load_session

HRM = sig_uuid(0x2A37)
T0 = 1_780_000_000_000_000_000


def _note(i: int, device: str = "strap", char: str = HRM) -> RawNotification:
    return RawNotification(device, char, T0 + i * 10**9, 10 + i * 10**9,
                           encode_hrm(55 + i % 20, [1000 + i % 50], contact=True))


def _writer(path: Path, **kw: object) -> blelog.BlelogWriter:
    return blelog.BlelogWriter(path, participant="p", tz="UTC", host="h", wall_ns=T0,
                               mono_ns=10, fsync=False, **kw)  # type: ignore[arg-type]


def _write_member(path: Path, text: bytes) -> None:
    """``path`` becomes a log of one member holding ``text`` (whatever its lines are)."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    trailer = zlib.crc32(text).to_bytes(4, "little") + len(text).to_bytes(4, "little")
    path.write_bytes(blelog.MEMBER_MARKER + z.compress(text) + z.flush() + trailer)


@pytest.fixture(scope="module")
def flushed_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, list[int]]:
    """300 notifications, the file size recorded after each one's sync flush."""
    path = tmp_path_factory.mktemp("crash") / "f.blelog"
    events = [DeviceEvent("strap", "connected", T0, 10, "")] + [_note(i) for i in range(300)]
    w = _writer(path, sync_interval_s=3600, full_flush_interval_s=60)
    sizes = [path.stat().st_size]  # the header, flushed when the writer opens
    for ev in events:
        w.write(ev)
        w.flush()
        sizes.append(path.stat().st_size)
    w.close()
    return path, events, sizes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frac=st.floats(0.0, 1.0))
def test_power_cut_anywhere_keeps_every_flushed_record(
    flushed_log: tuple[Path, list, list[int]], frac: float, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path, events, sizes = flushed_log
    data = path.read_bytes()
    cut = max(len(blelog.MEMBER_MARKER), int(len(data) * frac))
    cut_path = tmp_path_factory.mktemp("cut") / "c.blelog"
    cut_path.write_bytes(data[:cut])
    probs = blelog.Problems()
    if cut < sizes[0]:
        # Cut inside the header's member: either the header is lost (a clear error) or only
        # the sync-flush trailer after it was cut and the header still decodes whole, with
        # nothing after it to recover.
        try:
            got_early = list(blelog.iter_events(cut_path, probs))
        except LogFormatError as exc:
            assert "header" in str(exc)
        else:
            assert got_early == []
        return
    got = list(blelog.iter_events(cut_path, probs))
    assert got == events[: len(got)], "recovered records are a prefix of what was written"
    flushed = sum(1 for s in sizes[1:] if s <= cut)
    assert len(got) >= flushed, "every record flushed before the cut survives"
    if cut < len(data):
        assert probs.total("truncated-member") == 1
    batch_probs = blelog.Problems()
    c = blelog.load(cut_path, batch_probs)
    n_batch = sum(len(ch) for ch in c.channels.values()) + len(c.device_events)
    assert n_batch == len(got)
    assert {p.kind for p in batch_probs} == {p.kind for p in probs}


def test_reopen_after_power_cut_appends_a_readable_session(tmp_path: Path) -> None:
    path = tmp_path / "a.blelog"
    w = _writer(path)
    w.write(DeviceEvent("strap", "connected", T0, 10, ""))
    for i in range(100):
        w.write(_note(i))
    w.flush()
    size = path.stat().st_size
    w.write(_note(100))  # written but never flushed: lost in the "power cut"
    path.write_bytes(path.read_bytes()[: size + 3])  # cut: the unflushed tail is half there
    w2 = _writer(path)  # the daemon restarts and appends
    w2.write(DeviceEvent("strap", "connected", T0 + 10**12, 10, ""))
    for i in range(200, 250):
        w2.write(_note(i))
    w2.close()
    probs = blelog.Problems()
    got = [e for e in blelog.iter_events(path, probs) if isinstance(e, RawNotification)]
    assert got == [_note(i) for i in range(100)] + [_note(i) for i in range(200, 250)]
    assert [p.kind for p in probs] == ["truncated-member"]
    assert len(blelog.iter_headers(path)) == 2


def test_corrupt_compressed_bytes_resync_at_the_next_full_flush(tmp_path: Path) -> None:
    path = tmp_path / "z.blelog"
    w = _writer(path, sync_interval_s=1, full_flush_interval_s=30)
    w.write(DeviceEvent("strap", "connected", T0, 10, ""))
    events = [_note(i) for i in range(600)]
    for ev in events:
        w.write(ev)
    w.close()
    data = bytearray(path.read_bytes())
    pos = len(data) // 2
    data[pos : pos + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    probs = blelog.Problems()
    got = [e for e in blelog.iter_events(path, probs) if isinstance(e, RawNotification)]
    kinds = [p.kind for p in probs]
    assert kinds.count("corrupt-compressed") == 1
    assert "resynced" in next(p.message for p in probs if p.kind == "corrupt-compressed")
    lost = [e for e in events if e not in got]
    assert 0 < len(lost) <= 31 + 1, "at most one full-flush interval (30 s = 30 records) lost"
    assert got[-1] == events[-1], "records after the damage are kept"
    c = blelog.load(path)
    assert c.channels[("strap", HRM)].payloads == [e.payload for e in got]


def _relog(path: Path, edit: dict[int, bytes]) -> None:
    """Rewrite a log's text with some lines replaced (valid compression, bad content)."""
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    for i, new in edit.items():
        lines[i] = new
    text = b"\n".join(lines)
    _write_member(path, text)


def test_corrupt_lines_are_counted_once_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "l.blelog"
    w = _writer(path)
    w.write(DeviceEvent("strap", "connected", T0, 10, ""))
    events = [_note(i) for i in range(50)]
    for ev in events:
        w.write(ev)
    w.close()
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    # line numbers are 1-based: header 1, event 2, declaration 3, notes from 4
    bad = lines[9][:-1] + (b"0" if lines[9][-1:] != b"0" else b"1")  # CRC mismatch
    _relog(path, {9: bad, 20: lines[20][:30]})  # and a short (cut) line
    for loader in ("stream", "batch"):
        probs = blelog.Problems()
        if loader == "stream":
            got = [e for e in blelog.iter_events(path, probs) if isinstance(e, RawNotification)]
            payloads = [e.payload for e in got]
        else:
            payloads = blelog.load(path, probs).channels[("strap", HRM)].payloads
        assert payloads == [e.payload for k, e in enumerate(events) if k + 4 not in (10, 21)]
        (p,) = list(probs)
        assert (p.kind, p.path, p.line, p.count) == ("corrupt-line", str(path), 10, 2)
        assert str(p).startswith(f"{path}:10: corrupt-line")


def test_zero_filled_tail_is_reported_and_data_kept(tmp_path: Path) -> None:
    path = tmp_path / "zero.blelog"
    w = _writer(path)
    w.write(DeviceEvent("strap", "connected", T0, 10, ""))
    for i in range(20):
        w.write(_note(i))
    w.close()
    path.write_bytes(path.read_bytes() + b"\x00" * 4096)
    probs = blelog.Problems()
    got = [e for e in blelog.iter_events(path, probs) if isinstance(e, RawNotification)]
    assert got == [_note(i) for i in range(20)]
    assert [p.kind for p in probs] == ["junk-after-member"]


def test_unknown_device_and_characteristic_counted_once_and_rest_decoded(tmp_path: Path) -> None:
    path = tmp_path / "u.blelog"
    unknown_char = "12345678-0000-1000-8000-00805f9b34fb"
    w = _writer(path)
    w.write(_note(0, device="ghost"))  # line 3 (after its declaration): never announced
    w.write(DeviceEvent("strap", "connected", T0, 10, ""))  # line 4
    for i in range(1, 30):
        w.write(_note(i))
        w.write(_note(i, device="ghost"))
        w.write(RawNotification("strap", unknown_char, T0 + i * 10**9, 10, b"\x01\x02"))
    w.close()
    session = load_session([path])
    pipe = Pipeline()
    asyncio.run(replay([path], pipe))
    for probs, devs in ((session.report.problems, session.devices), (pipe.problems, pipe.devices)):
        by_kind = {p.kind: p for p in probs}
        assert set(by_kind) == {"unknown-device", "unknown-characteristic"}
        assert (by_kind["unknown-device"].line, by_kind["unknown-device"].count) == (3, 30)
        assert by_kind["unknown-characteristic"].count == 29
        assert by_kind["unknown-characteristic"].path == str(path)
        assert len(devs["strap"].get("hr")) == 29
        assert "ghost" not in devs
    a = sorted(session.report.problems.as_list(), key=lambda p: p["kind"])
    assert a == sorted(pipe.problems.as_list(), key=lambda p: p["kind"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), min_size=1,
                      max_size=6))
def test_streaming_and_batch_readers_agree_on_any_damaged_text(
    flips: list[tuple[float, int]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Random byte damage inside the text: both readers keep and report the same."""
    path = tmp_path_factory.mktemp("fuzz") / "f.blelog"
    w = _writer(path)
    w.write(DeviceEvent("strap", "connected", T0, 10, ""))
    for i in range(40):
        w.write(_note(i))
        if i % 10 == 0:
            w.write(RawNotification("watch", sig_uuid(0x2A19), T0 + i, 10 + i, bytes([i])))
    w.close()
    text = bytearray(gzip.decompress(path.read_bytes()))
    for frac, xor in flips:
        pos = min(int(frac * len(text)), len(text) - 2)
        text[pos] ^= xor
    _write_member(path, bytes(text))
    p_stream, p_batch = blelog.Problems(), blelog.Problems()
    try:
        streamed = list(blelog.iter_records(path, p_stream))
    except LogFormatError:  # the header itself was hit: both readers must refuse
        with pytest.raises(LogFormatError):
            blelog.load(path, p_batch)
        return
    c = blelog.load(path, p_batch)
    notes = sorted((ln, e.device, e.char_uuid, e.payload) for ln, e in streamed
                   if isinstance(e, RawNotification))
    batch = sorted((int(ln), ch.device, ch.char_uuid, p) for ch in c.channels.values()
                   for ln, p in zip(ch.line.tolist(), ch.payloads, strict=True))
    assert notes == batch
    assert [e for _, e in c.device_events] == [e for _, e in streamed
                                               if isinstance(e, DeviceEvent)]
    assert {(p.kind, p.line, p.count) for p in p_stream} == \
        {(p.kind, p.line, p.count) for p in p_batch}


def test_pipeline_logs_before_it_judges(tmp_path: Path) -> None:
    """Session log first: even events the pipeline skips are in the log."""
    path = tmp_path / "first.blelog"
    pipe = Pipeline(writer=_writer(path))
    odd = RawNotification("ghost", "12345678-0000-1000-8000-00805f9b34fb", T0, 11, b"\x00")
    pipe.feed(odd)
    pipe.feed(DeviceEvent("strap", "connected", T0, 12, ""))
    pipe.feed(RawNotification("strap", HRM, T0, 13, b"\x16"))  # malformed HRM
    pipe.close()
    logged = list(blelog.iter_events(path))
    assert logged[0] == odd and logged[2].payload == b"\x16"  # type: ignore[union-attr]
    assert {p.kind for p in pipe.problems} == {"unknown-device", "decode-error"}


def test_flushes_every_sync_interval_and_fsyncs_every_fsync_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a killed process leaves (the file) is at most 5 s behind; what a power cut
    leaves (fsync'd) at most 30 s; device events are fsync'd at once."""
    synced: list[int] = []
    real_sync = blelog.os.fdatasync

    def counting_sync(fd: int) -> None:
        synced.append(len(events_written))
        real_sync(fd)

    monkeypatch.setattr(blelog.os, "fdatasync", counting_sync)
    path = tmp_path / "f.blelog"
    events_written: list[RawNotification | DeviceEvent] = []
    w = blelog.BlelogWriter(path, participant="p", tz="UTC", host="h", wall_ns=T0, mono_ns=10,
                            fsync=True, sync_interval_s=5, fsync_interval_s=30,
                            full_flush_interval_s=3600)
    assert synced == [0]  # the header
    behind_s = []
    for i in range(120):  # one notification a second for two minutes
        ev = _note(i)
        w.write(ev)
        events_written.append(ev)
        on_disk = list(blelog.iter_events(path, blelog.Problems()))  # what a SIGKILL leaves
        behind_s.append(len(events_written) - len(on_disk))
    assert max(behind_s) <= 5
    # fsyncs in the writes of notifications 30, 60 and 90 (30 s of monotonic time apart)
    assert synced == [0, 30, 60, 90]
    ev = DeviceEvent("strap", "disconnected", T0 + 200 * 10**9, 10 + 200 * 10**9, "")
    events_written.append(ev)
    w.write(ev)
    assert synced[4:] == [len(events_written)]  # one fsync, within the write of the event
    w.close()


def test_a_new_log_syncs_its_directory_once_an_appended_one_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's own syncs make its bytes durable, not its name: a log the writer creates
    also has its directory fsync'd (once); appending a session to an existing log adds no
    directory entry, so no directory sync."""
    real_fsync = blelog.os.fsync
    synced_dirs: list[bool] = []

    def recording_fsync(fd: int) -> None:
        synced_dirs.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(blelog.os, "fsync", recording_fsync)
    path = tmp_path / "night" / "f.blelog"
    path.parent.mkdir()
    for _session in range(2):
        w = blelog.BlelogWriter(path, participant="p", tz="UTC", host="h", wall_ns=T0,
                                mono_ns=10, fsync=True)
        w.write(_note(0))
        w.close()
    assert synced_dirs == [True]  # the first session created the file; the second appended
    assert len(list(blelog.iter_events(path))) == 2


@pytest.mark.parametrize("payload_hex", ["0a0b0c", "0A0B0C", "0a 0b0c", "0a0b0", "0a0\xe9",
                                         "", "zz", "0a\t0b"])
def test_batch_and_streaming_readers_agree_on_any_crc_valid_payload_hex(
    flushed_log: tuple[Path, list, list[int]], tmp_path: Path, payload_hex: str
) -> None:
    # the batch loader's unhexlify of a channel's payloads falls back line by line to
    # what the streaming reader does (bytes.fromhex) on anything but plain hex digits
    path = tmp_path / "h.blelog"
    text = gzip.decompress(flushed_log[0].read_bytes())
    ch = blelog.channel_id("strap", HRM)
    _write_member(path, text + blelog._line("N", T0 + 5, 15, f"{ch} {payload_hex}"))
    p_stream, p_batch = blelog.Problems(), blelog.Problems()
    streamed = [(ln, e.payload) for ln, e in blelog.iter_records(path, p_stream)
                if isinstance(e, RawNotification)]
    c = blelog.load(path, p_batch)
    batch = [(int(ln), p) for ch_ in c.channels.values()
             for ln, p in zip(ch_.line.tolist(), ch_.payloads, strict=True)]
    assert batch == streamed
    assert [(p.kind, p.line) for p in p_stream] == [(p.kind, p.line) for p in p_batch]
