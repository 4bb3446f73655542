"""Test fixture: the virtual air (bumble controllers on loopback TCP) and virtual wearables.

Every wearable is its own process so a test can SIGKILL it (a silent device), make it
disconnect (SIGUSR1) or vanish for a while (SIGUSR2). See :mod:`sensord.ble.virtual`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class VirtualAirProc:
    ports: dict[str, int]
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def hci(self, slot: str) -> str:
        return f"tcp-client:127.0.0.1:{self.ports[slot]}"

    def start(
        self,
        slot: str,
        *,
        profile: str = "hr",
        address: str = "F0:00:00:00:00:01",
        name: str = "Virtual HR",
        speed: float = 1.0,
        vanish_s: float = 2.0,
        flood_hz: float = 0.0,
    ) -> subprocess.Popen[bytes]:
        """Start a wearable on ``slot`` and wait until it advertises."""
        err_path = self.tmp / f"{slot}-{len(self.procs)}.err"
        err = err_path.open("wb")
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "sensord.ble.virtual", "peripheral",
                "--profile", profile, "--hci", self.hci(slot), "--address", address,
                "--name", name, "--speed", str(speed), "--vanish-s", str(vanish_s),
                "--flood-hz", str(flood_hz),
            ],
            stdout=subprocess.PIPE, stderr=err, env=_env(), cwd=ROOT,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            proc.wait(timeout=5)
            raise RuntimeError(f"virtual {profile} wearable did not start: {line!r} "
                               f"{err_path.read_text()[-2000:]}")
        return proc

    @staticmethod
    def disconnect(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGUSR1)

    @staticmethod
    def vanish(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGUSR2)

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture
def virtual_air(tmp_path: Path) -> Iterator[VirtualAirProc]:
    """An air process with slots ``central``, ``central2``, ``chest``, ``wrist``, ``junk``."""
    air = subprocess.Popen(
        [sys.executable, "-m", "sensord.ble.virtual", "air",
         "--slots", "central,central2,chest,wrist,junk", "--centrals", "central,central2"],
        stdout=subprocess.PIPE, env=_env(), cwd=ROOT,
    )
    assert air.stdout is not None
    ports = json.loads(air.stdout.readline())
    state = VirtualAirProc(ports=ports, tmp=tmp_path)
    try:
        yield state
    finally:
        for proc in [*state.procs, air]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        time.sleep(0)
