"""Transport security and secrets on the real path (issue 8).

One real ``influxd`` (Debian's) with ``auth-enabled`` and HTTPS on a throw-away self-signed
certificate, started for this module on loopback. Through the CLI as a participant's Pi
runs it, with every log record captured at DEBUG:

* TLS: verification is on by default, so the unknown certificate is refused; the
  configured CA (``ca_bundle``) makes it pass; ``verify_tls = false`` works but is logged
  as a WARNING and printed by ``sensord doctor``;
* a simulated night (``sensord simulate``) -> ``sensord backfill`` -> InfluxDB with the
  password from a secrets file, then ``push``, ``outbox``, ``doctor``: the password (and
  its Basic-auth encoding) appears in no output, log line, exception text or file the run
  wrote; a wrong password's errors do not contain it either;
* secrets files and data directories others can read are refused, naming the file.
"""

from __future__ import annotations

import base64
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sensord.cli import app
from sensord.config import load_config
from sensord.credentials import registered_secrets
from sensord.errors import ConfigError, SensordError
from sensord.store import service
from tests.bumble_env import virtual_air  # noqa: F401
from tests.daemon_helpers import midnight_tz
from tests.influx import InfluxServer, running_server, self_signed_cert

USER = "pi_p07"
PASSWORD = "Tq7-nightly-S3cret!x"
WRONG = "Wr0ng-guess-Zz81"
DB = "sleep"
runner = CliRunner()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxServer, Path]]:
    certs = tmp_path_factory.mktemp("certs")
    cert, key = self_signed_cert(certs)
    with running_server(auth=True, tls=(cert, key)) as server:
        server.create_database(DB)
        server.create_user(USER, PASSWORD, db=DB, privilege="WRITE")
        yield server, cert


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log record of every logger, at DEBUG, formatted with tracebacks."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    try:
        yield buf
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)


def write_config(
    root: Path,
    url: str,
    *,
    password: str = PASSWORD,
    extra: str = "",
    mode: int = 0o600,
    hci: str = "tcp-client:127.0.0.1:9",
) -> Path:
    secret = root / "influx.secret"
    secret.write_text(password + "\n", encoding="utf-8")
    os.chmod(secret, mode)
    cfg = root / "sensord.toml"
    cfg.write_text(
        f'participant_id = "P07"\ntimezone = "{midnight_tz()}"\ndata_dir = "{root / "data"}"\n'
        '[[devices]]\nname = "polar_h10"\naddress = "A0:00"\nprofile = "polar_h10"\n'
        f'[sink]\nkind = "influxdb1"\nurl = "{url}"\ndatabase = "{DB}"\n'
        f'username = "{USER}"\npassword_file = "{secret}"\ngzip = false\n{extra}'
        # `doctor` checks the radio too; a bumble transport skips BlueZ (no test host has it)
        + f'[daemon]\ntransport = "bumble:{hci}"\nconnect_timeout_s = 2\n',
        encoding="utf-8",
    )
    return cfg


def cli(*args: str, input: str | None = None) -> tuple[int, str]:
    """Run the CLI; returns (exit code, stdout + stderr + any exception's text)."""
    res = runner.invoke(app, list(args), input=input)
    text = res.output
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        text += f"\n{type(res.exception).__name__}: {res.exception}"
    return res.exit_code, text


def files_text(root: Path) -> str:
    """Everything the run wrote under ``root`` (the secrets file itself excluded)."""
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != "influx.secret" and path.suffix != ".reserve":
            out.append(path.read_bytes().decode("latin-1"))
    return "\n".join(out)


def leaks(text: str, secret: str) -> list[str]:
    basic = base64.b64encode(f"{USER}:{secret}".encode()).decode()
    return [s for s in (secret, basic, secret[:12]) if s in text]


def test_tls_verification_on_by_default_and_the_configured_ca_passes(
    tls_server: tuple[InfluxServer, Path], tmp_path: Path, captured_logs: io.StringIO
) -> None:
    server, cert = tls_server
    assert server.url.startswith("https://127.0.0.1:")
    default = write_config(tmp_path, server.url)
    code, out = cli("doctor", "-c", str(default))
    assert code == 1 and "certificate verify failed" in out and "reachable: NO" in out, out
    assert "WARNING" not in out  # nothing unsafe configured
    code, out = cli("note", "pain", "4", "--context", "bedtime", "-c", str(default))
    assert code == 0, out
    code, out = cli("push", "-c", str(default), "--retries", "0")
    assert code != 0 and "certificate verify failed" in out, out
    assert server.query('SELECT COUNT(*) FROM "annotation"', db=DB).rows() == []

    trusted = write_config(tmp_path, server.url, extra=f'ca_bundle = "{cert}"\n')
    code, out = cli("doctor", "-c", str(trusted))
    assert code == 0 and "credentials: ok" in out, out
    code, out = cli("push", "-c", str(trusted))
    assert code == 0 and "pushed 1 lines" in out, out
    assert server.query('SELECT COUNT(*) FROM "annotation"', db=DB).rows() != []

    insecure = write_config(tmp_path, server.url, extra="verify_tls = false\n")
    captured_logs.truncate(0)
    code, out = cli("doctor", "-c", str(insecure))
    assert code == 0 and "WARNING: TLS certificate verification is OFF" in out, out
    assert "WARNING sensord.store: TLS certificate verification is OFF" in captured_logs.getvalue()
    assert not leaks(out + captured_logs.getvalue(), PASSWORD)


def test_no_secret_in_any_output_log_or_file_of_a_simulated_night(
    tls_server: tuple[InfluxServer, Path], tmp_path: Path, captured_logs: io.StringIO
) -> None:
    server, cert = tls_server
    cfg = write_config(tmp_path, server.url, extra=f'ca_bundle = "{cert}"\nbatch_lines = 2000\n')
    outputs: list[str] = []

    def run(*args: str, expect: int = 0) -> str:
        code, out = cli(*args)
        assert code == expect, out
        outputs.append(out)
        return out

    run("simulate", "--out", str(tmp_path / "sim"), "--nights", "1", "--duration-h", "1.5",
        "--participant", "P07", "--tz", "Europe/Berlin", "--disconnects", "1")  # fmt: skip
    logs = sorted(str(p) for p in (tmp_path / "sim").glob("*.blelog"))
    out = run("backfill", "-c", str(cfg), *logs)
    assert "0 quarantined" in out and "backfilled 1 night(s)" in out
    assert server.query('SELECT COUNT(*) FROM "heart_rate"', db=DB).rows()[0]["count_hr_bpm"] > 0
    run("note", "event", "woke up, heart racing", "-c", str(cfg))
    run("push", "-c", str(cfg))
    run("outbox", "-c", str(cfg))
    assert "credentials: ok" in run("doctor", "-c", str(cfg))
    # the set-up masks a secret even where code would log it by mistake
    assert PASSWORD in registered_secrets()
    logging.getLogger("sensord.test").debug("oops, the password is %s", PASSWORD)
    try:
        raise RuntimeError(f"connection string had {PASSWORD}")
    except RuntimeError:
        logging.getLogger("sensord.test").exception("and in a traceback")

    # the wrong password: refused, and its error texts do not carry it either
    wrong_root = tmp_path / "wrong"
    wrong_root.mkdir(mode=0o700)
    wrong = write_config(wrong_root, server.url, password=WRONG,
                         extra=f'ca_bundle = "{cert}"\n')  # fmt: skip
    run("note", "pain", "3", "-c", str(wrong))
    out = run("push", "-c", str(wrong), "--retries", "0", expect=2)
    assert "authorization failed" in out or "401" in out, out
    out = run("doctor", "-c", str(wrong), expect=1)
    assert "credentials: REFUSED" in out
    run("backfill", "-c", str(wrong), *logs, expect=2)
    try:
        service.push(load_config(wrong, env={}), retries=0)
    except SensordError as exc:
        outputs.append(f"{exc!r} {exc}")
    else:
        raise AssertionError("a wrong password was accepted")

    text = "\n".join(outputs)
    logged = captured_logs.getvalue()
    assert "oops, the password is ***" in logged and "connection string had ***" in logged
    assert "DEBUG urllib3" in logged  # requests really were logged at DEBUG
    for secret in (PASSWORD, WRONG):
        assert not leaks(text, secret), f"output: {leaks(text, secret)}"
        assert not leaks(logged, secret), f"logs: {leaks(logged, secret)}"
        assert not leaks(files_text(tmp_path), secret), "a file the run wrote"


def test_world_readable_secrets_file_and_data_dir_refused(
    tls_server: tuple[InfluxServer, Path], tmp_path: Path
) -> None:
    server, cert = tls_server
    cfg = write_config(tmp_path, server.url, mode=0o644, extra=f'ca_bundle = "{cert}"\n')
    secret = tmp_path / "influx.secret"
    for command in (["push"], ["doctor"]):
        code, out = cli(*command, "-c", str(cfg))
        assert code == 2, out
        assert f"secrets file {secret} is accessible to other users (mode 0644)" in out
        assert f"chmod 600 {secret}" in out and not leaks(out, PASSWORD)
    os.chmod(secret, 0o600)
    # the data directory: created private, refused once others can enter it
    code, out = cli("outbox", "-c", str(cfg))
    assert code == 0, out
    data = tmp_path / "data"
    assert data.stat().st_mode & 0o777 == 0o700
    os.chmod(data, 0o755)
    for command in (["outbox"], ["note", "pain", "2"], ["push"], ["web", "set-pin", "--stdin"]):
        code, out = cli(*command, "-c", str(cfg), input="482915\n")
        assert code == 2, (command, out)
        assert f"data directory {data} is accessible to other users" in out, (command, out)
        assert f"chmod 700 {data}" in out
    os.chmod(data, 0o700)


def test_credentials_in_the_url_refused_without_repeating_them(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'participant_id = "P07"\n[sink]\nkind = "influxdb1"\n'
        f'url = "https://{USER}:{PASSWORD}@db.example.org:8086"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    assert info.value.key == "sink.url" and not leaks(str(info.value), PASSWORD)
    code, out = cli("doctor", "-c", str(cfg))
    assert code == 2 and "must not contain credentials" in out and not leaks(out, PASSWORD)


@pytest.mark.parametrize(
    ("participant", "reason"),
    [
        ("jane.doe@example.org", "e-mail"),
        ("+41 79 555 01 23", "phone"),
        ("Jane Doe", "personal name"),
        ("p07", "pseudonym pattern"),
    ],
)
def test_identifying_participant_ids_refused_in_config_and_backfill(
    tmp_path: Path, participant: str, reason: str
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'participant_id = "{participant}"\ndata_dir = "{tmp_path / "d"}"\n')
    with pytest.raises(ConfigError, match=reason) as info:
        load_config(cfg, env={})
    assert info.value.key == "participant_id"
    # a study with its own pattern
    cfg.write_text(
        'participant_id = "study7-a"\npseudonym_pattern = "study[0-9]-[a-z]"\n'
        f'data_dir = "{tmp_path / "d"}"\n'
    )
    assert load_config(cfg, env={}).participant_id == "study7-a"
    # backfill checks the id in each log header (and --participant) the same way
    code, out = cli("simulate", "--out", str(tmp_path / "sim"), "--nights", "1",
                    "--duration-h", "0.5", "--profile", "hrs_strap",
                    "--participant", participant)  # fmt: skip
    assert code == 0, out
    logs = [str(p) for p in (tmp_path / "sim").glob("*.blelog")]
    code, out = cli("backfill", "-c", str(cfg), "--queue-only", "--no-scoring", *logs)
    assert code == 2 and "participant id" in out, out
    code, out = cli("backfill", "-c", str(cfg), "--queue-only", "--no-scoring",
                    "--participant", "study7-b", *logs)  # fmt: skip
    assert code == 0, out


# --------------------------------------------------------------------------- the daemon
DAEMON_SPEED = 600  # the daemon's clock and the virtual strap, times real time


def daemon_config(root: Path, url: str, cert: Path, hci: str, password: str) -> Path:
    cfg = write_config(
        root,
        url,
        password=password,
        extra=f'ca_bundle = "{cert}"\nflush_interval_s = 60\n',
        hci=hci,
    )
    text = cfg.read_text().replace(
        '[[devices]]\nname = "polar_h10"\naddress = "A0:00"\nprofile = "polar_h10"\n', ""
    )
    cfg.write_text(
        text + '[[devices]]\nname = "chest"\naddress = "F0:00:00:00:00:01"\n'
        'profile = "heart_rate"\nrole = "chest"\n'
    )
    return cfg


def run_daemon_for(cfg: Path, root: Path, sim_hours: float) -> tuple[str, str]:
    """``sensord run --verbose`` for ``sim_hours`` of its clock, then SIGTERM; returns
    (its stderr: every log line at DEBUG, the output of ``sensord status --json`` and
    ``sensord status`` while it ran)."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from tests.bumble_env import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    err_path = root / "daemon.err"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sensord", "run", "-c", str(cfg), "--verbose",
             "--time-scale", str(DAEMON_SPEED)],
            env=env, cwd=ROOT, stdout=err, stderr=err,
        )  # fmt: skip
        try:
            time.sleep(sim_hours * 3600 / DAEMON_SPEED)
            status = ""
            for args in (["--json"], []):
                res = subprocess.run(
                    [sys.executable, "-m", "sensord", "status", "-c", str(cfg), *args],
                    capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
                )  # fmt: skip
                status += res.stdout + res.stderr
            st = json.loads((root / "data" / "status.json").read_text())
            assert st["devices"]["chest"]["notifications"] > 0.5 * sim_hours * 3600, st
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, err_path.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return err_path.read_text(encoding="utf-8", errors="replace"), status


def session_logs_text(root: Path) -> str:
    """The session logs decompressed (gzip members) plus every other file, as text."""
    import gzip

    logs = sorted((root / "data" / "logs").glob("*.blelog*"))
    assert logs, "the daemon wrote no session log"
    return "\n".join(gzip.decompress(p.read_bytes()).decode("latin-1") for p in logs)


def test_daemon_night_keeps_secrets_out_of_logs_status_and_session_logs(
    tls_server: tuple[InfluxServer, Path], tmp_path: Path,
    virtual_air: Any,  # noqa: F811
) -> None:
    """``sensord run`` as systemd starts it (DEBUG logging on), a virtual strap on the
    bumble air, the daemon's clock at 600x: two hours of a night pushed to the HTTPS +
    auth influxd, then a run with a wrong password. Grepped: the daemon's whole stderr,
    ``sensord status`` (text and JSON), status.json, the outbox and the session logs."""
    server, cert = tls_server
    virtual_air.start("chest", speed=DAEMON_SPEED)
    good_root = tmp_path / "good"
    good_root.mkdir(mode=0o700)
    cfg = daemon_config(good_root, server.url, cert, virtual_air.hci("central"), PASSWORD)
    before = server.query('SELECT COUNT(hr_bpm) FROM "heart_rate"', db=DB).rows()
    stderr, status = run_daemon_for(cfg, good_root, sim_hours=2.0)
    after = server.query('SELECT COUNT(hr_bpm) FROM "heart_rate"', db=DB).rows()
    sent = after[0]["count"] - (before[0]["count"] if before else 0)
    # pushes really went through with the password (how many depends on the host's load)
    assert sent > 300, (sent, stderr[-2000:])
    assert "debug" in stderr and "daemon: running" in status
    text = stderr + status + session_logs_text(good_root) + files_text(good_root)
    assert "P07" in session_logs_text(good_root)  # the grep does see the logs' contents
    assert not leaks(text, PASSWORD), leaks(text, PASSWORD)

    wrong_root = tmp_path / "wrong"
    wrong_root.mkdir(mode=0o700)
    cfg = daemon_config(wrong_root, server.url, cert, virtual_air.hci("central"), WRONG)
    stderr, status = run_daemon_for(cfg, wrong_root, sim_hours=0.5)
    assert "authorization failed" in stderr + status, (stderr[-3000:], status)
    text = stderr + status + session_logs_text(wrong_root) + files_text(wrong_root)
    assert not leaks(text, WRONG), leaks(text, WRONG)


def test_cli_errors_mask_every_secret_read(tmp_path: Path) -> None:
    """Defence in depth: were a secret ever part of an error, the CLI prints it masked."""
    from sensord.credentials import read_secret

    secret = tmp_path / "s"
    secret.write_text("Zx9-only-in-this-test\n")
    os.chmod(secret, 0o600)
    value = read_secret(file=secret)
    missing = tmp_path / f"{value}.toml"  # an error message that names this path
    for command in (["push"], ["note", "pain", "3"], ["run"]):
        code, out = cli(*command, "-c", str(missing))
        assert code == 2 and "cannot read config file" in out and "***.toml" in out, out
        assert value not in out
