"""The README's Raspberry Pi guide matches the code: its config loads, its unit runs what it says.

The config block is taken from the README text itself (between ``<<'TOML'`` and ``TOML``), with
only the paths moved into a temporary directory, so a guide that drifts from the config
loader (a renamed key, a refused participant id, a secret in the wrong place) fails here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from sensord.config import load_config
from sensord.daemon_ops import status_path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
GUIDE = README[README.index("## Raspberry Pi install (bookworm)"):]
GUIDE = GUIDE[: GUIDE.index("\n## ", 1)]


def test_guide_config_loads_and_its_password_file_is_read(tmp_path: Path) -> None:
    (toml,) = re.findall(r"<<'TOML'[^\n]*\n(.*?)\nTOML\n", GUIDE, flags=re.S)
    data = tmp_path / "var-lib-sensord"
    data.mkdir(mode=0o700)
    secret = tmp_path / "influx-password"
    secret.write_text("hunter2-not-real\n")
    secret.chmod(0o600)
    text = (toml.replace('"/var/lib/sensord"', f'"{data}"')
            .replace('"/etc/sensord/influx-password"', f'"{secret}"'))
    assert text != toml
    cfg_path = tmp_path / "sensord.toml"
    cfg_path.write_text(text)
    cfg = load_config(cfg_path, env={})
    assert cfg.sink.kind == "influxdb1"
    assert cfg.sink.url.startswith("https://")  # the guide shows the safe default
    assert cfg.sink.password() == "hunter2-not-real"
    assert cfg.data_path == data
    assert status_path(cfg) == Path("/run/sensord/status.json")


def test_guide_and_unit_agree_on_paths() -> None:
    unit = (ROOT / "tools" / "sensord.service").read_text()
    exec_start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    binary, _run, _flag, config = exec_start.removeprefix("ExecStart=").split()
    assert f"python3 -m venv {Path(binary).parents[1]}" in GUIDE
    assert f"tee {config}" in GUIDE
    assert "install -m 0644 /opt/sensord/tools/sensord.service /etc/systemd/system/" in GUIDE
    user = next(ln for ln in unit.splitlines() if ln.startswith("User=")).removeprefix("User=")
    assert f"--groups bluetooth {user}" in GUIDE
    # the status file goes to the tmpfs directory the unit has systemd create (off the SD card)
    runtime = next(ln for ln in unit.splitlines() if ln.startswith("RuntimeDirectory="))
    (status_file,) = re.findall(r'^status_file = "(.+?)"', GUIDE, flags=re.M)
    assert Path(status_file).parent == Path("/run") / runtime.removeprefix("RuntimeDirectory=")
    for doc in re.findall(r"file://(\S+)", unit):
        rel = Path(doc).relative_to("/opt/sensord")
        assert (ROOT / rel).exists(), doc


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own parser reads the unit without a complaint (a misspelt key or a bad
    value is only a warning to systemd, which then ignores the line: here it fails).
    The binary is the one thing moved: /opt/sensord does not exist on a test machine."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze missing: tools/test.sh installs it (systemd)"
    unit = (ROOT / "tools" / "sensord.service").read_text()
    text = unit.replace("ExecStart=/opt/sensord/.venv/bin/sensord",
                        f"ExecStart={Path(sys.executable).resolve()}")
    assert text != unit
    path = tmp_path / "sensord.service"
    path.write_text(text)
    res = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), res.stdout + res.stderr
