#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian 12 machine and runs it.
# System packages: influxdb (a real InfluxDB 1.x the tests start on loopback),
# chromium (the participant web page is tested in a real browser), dbus (BlueZoo's bus),
# systemd (its systemd-analyze checks the service unit; nothing is started),
# python3-venv (Debian's python3 lacks ensurepip, so `python3 -m venv` fails without it;
# a pyenv or python.org python has it).
# A new .venv is made with Debian's own /usr/bin/python3 where it is 3.11 or newer: the
# interpreter Raspberry Pi OS runs the daemon with (Debian's optimised build; a pyenv build
# without --enable-optimizations first on PATH costs the daemon's bench about 12 % more
# CPU, docs/daemon.md). An existing .venv is kept whatever made it (with a note).
set -euo pipefail
cd "$(dirname "$0")/.."

python=python3
if /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  python=/usr/bin/python3
fi

missing=()
command -v influxd >/dev/null || missing+=(influxdb)
command -v chromium >/dev/null || missing+=(chromium)
command -v dbus-daemon >/dev/null || missing+=(dbus)
command -v systemd-analyze >/dev/null || missing+=(systemd)
[ -x .venv/bin/python ] || "$python" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "tools/test.sh: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
venv_python=$(readlink -f .venv/bin/python)
if [ "$python" = /usr/bin/python3 ] && [ "$venv_python" != "$(readlink -f /usr/bin/python3)" ]; then
  echo "tools/test.sh: note: .venv runs $venv_python, not Debian's /usr/bin/python3" \
    "(the daemon's interpreter on Raspberry Pi OS; bench figures differ): remove .venv to remake it"
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

echo "tools/test.sh: ruff"
.venv/bin/ruff check sensord dashboards tests bench tools
echo "tools/test.sh: mypy"
.venv/bin/mypy
echo "tools/test.sh: pytest"
exec .venv/bin/python -m pytest "$@"
