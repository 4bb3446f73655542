"""The annotation page inside `sensord run` (a virtual strap on the bumble air, clock at 60x).

`[web] enabled = true`: while no PIN exists the daemon records, warns once and listens on
nothing; once `sensord web set-pin` has run, the page comes up without a restart, a
participant logs in and saves a pain rating into the daemon's store, and SIGTERM stops
page and daemon cleanly (exit 0, port closed). `[web] enabled = false`, and the default:
nothing listens at all, even with a PIN.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from sensord.config import load_config
from tests.bumble_env import ROOT, VirtualAirProc, virtual_air  # noqa: F401
from tests.test_daemon_cli import sensord, start_daemon, status_file, wait_status, write_config
from tests.test_security_web import PIN, client, is_login_page, login


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def web_config(tmp: Path, hci: str, web: str) -> Path:
    cfg = write_config(tmp, hci)
    cfg.write_text(cfg.read_text() + web)
    return cfg


def listening_ports(pid: int) -> set[int]:
    """TCP ports process ``pid`` listens on (its socket fds matched in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def set_pin(cfg: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-m", "sensord", "web", "set-pin", "--stdin", "-c", str(cfg)],
        input=PIN + "\n", capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )
    assert out.returncode == 0, out.stderr


async def wait_for_page(url: str, timeout_s: float) -> tuple[str, dict[str, str]]:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url + "/login") as resp:
                    return await resp.text(), dict(resp.headers)
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the page never came up at {url}") from None
                await asyncio.sleep(0.2)


async def save_pain(url: str) -> int:
    """Log in with the PIN and tap pain 6 at bedtime; the status of the save."""
    async with client() as http:
        assert (await login(http, url)).status == 303
        async with http.get(url + "/") as resp:
            home = await resp.text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', home)
        assert csrf is not None
        async with http.post(url + "/pain", allow_redirects=False,
                             data={"csrf": csrf[1], "context": "bedtime", "rating": "6"}) as r:
            return r.status


def stop(daemon: subprocess.Popen[bytes]) -> int:
    daemon.send_signal(signal.SIGTERM)
    return daemon.wait(timeout=30)


def test_enabled_page_waits_for_a_pin_then_serves_and_stops_on_sigterm(
    virtual_air: VirtualAirProc, tmp_path: Path,  # noqa: F811
) -> None:
    virtual_air.start("chest", speed=60)
    port = free_port()
    cfg = web_config(tmp_path, virtual_air.hci("central"),
                     f'[web]\nenabled = true\nbind = "127.0.0.1"\nport = {port}\n')
    status = status_file(tmp_path)
    err = tmp_path / "daemon-1.err"
    daemon = start_daemon(cfg, tmp_path, 1)
    try:
        wait_status(status, lambda st: st["devices"]["chest"]["notifications"] >= 50)
        # No PIN: recording goes on, one clear warning, no socket opened.
        assert "no PIN is set, so the annotation page is not served" in err.read_text()
        assert "sensord web set-pin" in err.read_text()
        assert listening_ports(daemon.pid) == set() and refused(port)

        set_pin(cfg)
        url = f"http://127.0.0.1:{port}"
        page, headers = asyncio.run(wait_for_page(url, timeout_s=60))
        assert is_login_page(page)
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert listening_ports(daemon.pid) == {port}
        assert asyncio.run(save_pain(url)) == 303
        before = wait_status(status, lambda st: True)["devices"]["chest"]["notifications"]
        wait_status(status, lambda st: st["devices"]["chest"]["notifications"] > before)
        assert stop(daemon) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert refused(port)
    log = err.read_text()
    assert log.count("no PIN is set") == 1  # warned once, not on every retry
    assert f"serving the annotation page on http://127.0.0.1:{port}/" in log
    assert "annotation page stopped" in log and "Traceback" not in log
    # The rating saved on the page is in the daemon's local store (and its outbox).
    notes = sensord("notes", "list", "-c", str(cfg))
    assert notes.returncode == 0, notes.stderr
    assert "pain 6/10" in notes.stdout and "bedtime" in notes.stdout, notes.stdout


def test_disabled_page_listens_on_nothing_even_with_a_pin(
    virtual_air: VirtualAirProc, tmp_path: Path,  # noqa: F811
) -> None:
    virtual_air.start("chest", speed=60)
    port = free_port()
    plain = write_config(tmp_path, virtual_air.hci("central"))
    assert load_config(plain).web.enabled is False  # the default: off unless enabled
    cfg = web_config(tmp_path, virtual_air.hci("central"),
                     f'[web]\nenabled = false\nbind = "127.0.0.1"\nport = {port}\n')
    set_pin(cfg)
    daemon = start_daemon(cfg, tmp_path, 1)
    try:
        wait_status(status_file(tmp_path), lambda st: st["devices"]["chest"]["notifications"] >= 50)
        assert listening_ports(daemon.pid) == set() and refused(port)
        assert stop(daemon) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert "annotation page" not in (tmp_path / "daemon-1.err").read_text()


def test_a_port_in_use_is_warned_once_and_retried_until_free(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In the daemon's loop, without the radio: an address that cannot be used (the port
    taken by another program, or a LAN address not assigned yet at boot) never raises; it
    is logged once and retried, and the page comes up once the port is free."""
    from sensord.web.app import pin_path
    from sensord.web.auth import PinFile
    from sensord.web.service import DaemonPage

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    (tmp_path / "c.toml").write_text(
        f'participant_id = "P07"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[web]\nenabled = true\nbind = "127.0.0.1"\nport = {port}\n'
    )
    cfg = load_config(tmp_path / "c.toml", env={})
    cfg.ensure_data_dir()
    PinFile(pin_path(cfg)).save(PIN)

    async def until(pred: object) -> None:
        while not pred():  # type: ignore[operator]
            await asyncio.sleep(0.01)

    async def main() -> None:
        page = DaemonPage(cfg, retry_s=0.02)
        try:
            await asyncio.wait_for(until(lambda: "cannot listen" in caplog.text), 30)
            await asyncio.sleep(0.2)  # several retries while the port is still taken
            assert page.server is None
            blocker.close()
            await asyncio.wait_for(until(lambda: page.server is not None), 30)
            body, _ = await wait_for_page(f"http://127.0.0.1:{port}", timeout_s=30)
            assert is_login_page(body)
        finally:
            await page.stop()
        assert page.server is None and refused(port)

    with caplog.at_level(logging.INFO, logger="sensord.web"):
        try:
            asyncio.run(main())
        finally:
            blocker.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"cannot listen on 127.0.0.1:{port}" in warnings[0]
    assert "recording continues" in warnings[0]
