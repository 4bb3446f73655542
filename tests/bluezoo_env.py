"""Test fixture: a private D-Bus system bus with BlueZoo (emulated BlueZ) and virtual peripherals.

Nothing here touches the host's real bus: ``dbus-daemon`` (Debian package ``dbus``) runs
with its own configuration on a unix socket in a temporary directory, ``bluezoo`` serves
``org.bluez`` on it with two adapters (hci0 for bleak, hci1 for the virtual peripheral),
and ``DBUS_SYSTEM_BUS_ADDRESS`` points bleak at it for the duration of the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CENTRAL_ADDRESS = "00:5E:00:00:00:01"
PERIPHERAL_ADDRESS = "00:5E:00:00:00:02"

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


def _wait_for(predicate: object, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


@dataclass
class BlueZooBus:
    """A running private bus with BlueZoo; ``address`` is its D-Bus address."""

    address: str
    tmp: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_hr_peripheral(
        self, *, name: str = "HR Sim", frames: list[bytes], interval_s: float = 0.02
    ) -> subprocess.Popen[bytes]:
        """Start the heart-rate peripheral on hci1 and wait until it has registered."""
        out = self.tmp / f"peripheral-{len(self.procs)}.log"
        fh = out.open("wb")
        proc = subprocess.Popen(
            [
                sys.executable, str(HERE / "bluezoo_peripheral.py"),
                "--adapter", "/org/bluez/hci1", "--name", name,
                "--frames", ",".join(f.hex() for f in frames),
                "--interval-s", str(interval_s),
            ],
            env=self.env, stdout=fh, stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        _wait_for(lambda: b"ready" in out.read_bytes() or proc.poll() is not None,
                  "the virtual peripheral to register")
        if proc.poll() is not None:
            raise RuntimeError(f"virtual peripheral exited: {out.read_text()}")
        return proc


@pytest.fixture
def bluezoo_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BlueZooBus]:
    """A private system bus with BlueZoo serving two powered adapters."""
    sock = tmp_path / "system_bus_socket"
    conf = tmp_path / "bus.conf"
    conf.write_text(_BUS_CONFIG.format(socket=sock))
    procs: list[subprocess.Popen[bytes]] = []
    bus = subprocess.Popen(
        ["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    procs.append(bus)
    address = f"unix:path={sock}"
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address)
    try:
        _wait_for(sock.exists, "dbus-daemon's socket")
        zoo_log = (tmp_path / "bluezoo.log").open("wb")
        zoo = subprocess.Popen(
            [
                sys.executable, "-c", "from bluezoo.bluezoo import main; main()",
                "--auto-enable", "--scan-interval", "1",
                "-a", CENTRAL_ADDRESS, "-a", PERIPHERAL_ADDRESS,
            ],
            env=env, stdout=zoo_log, stderr=subprocess.STDOUT,
        )
        procs.append(zoo)
        _wait_for(
            lambda: b"Adding adapter[1]" in (tmp_path / "bluezoo.log").read_bytes()
            or zoo.poll() is not None,
            "bluezoo to start",
        )
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        state = BlueZooBus(address=address, tmp=tmp_path, env=env)
        yield state
        procs.extend(state.procs)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
