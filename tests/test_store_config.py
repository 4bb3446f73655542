"""TOML config < SENSORD_* environment; unknown keys and secrets in the file rejected."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from sensord.config import Config, load_config
from sensord.errors import ConfigError

FULL = """
participant_id = "P-017"
timezone = "Europe/Berlin"
data_dir = "/var/lib/sensord"

[[devices]]
name = "strap"
address = "A0:9E:1A:00:00:01"
profile = "polar_h10"
role = "chest"

[[devices]]
name = "watch"
address = "C1:00:00:00:00:02"
profile = "generic_hr"
role = "wrist"

[night]
start = "19:30"
end = "11:00"

[sink]
kind = "influxdb1"
url = "https://influx.example.org:8086"
database = "sleep"
username = "pi017"
password_file = "{pwfile}"
batch_lines = 2000
batch_bytes = 500000
ca_bundle = "/etc/ssl/certs/study.pem"
verify_tls = true

[web]
enabled = false
bind = "0.0.0.0"
port = 8181

[daemon]
watchdog_s = 20
reconnect_min_s = 0.5
reconnect_max_s = 60
log_retention_days = 30
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sensord.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_without_file_or_env() -> None:
    cfg = load_config(env={})
    assert cfg == Config()
    assert cfg.sink.kind == "none"
    assert cfg.night.start_time == time(18, 0)
    assert cfg.source == ()


def test_full_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret, 'quoted'\n", encoding="utf-8")
    pw.chmod(0o600)  # secrets files others can read are refused (issue 8)
    cfg = load_config(write(tmp_path, FULL.format(pwfile=pw)), env={})
    assert cfg.participant_id == "P-017"
    assert cfg.tz.key == "Europe/Berlin"
    assert [d.name for d in cfg.devices] == ["strap", "watch"]
    assert cfg.devices[1].role == "wrist"
    assert cfg.night.start_time == time(19, 30) and cfg.night.end_time == time(11, 0)
    assert cfg.sink.batch_lines == 2000 and cfg.sink.verify_tls is True
    assert cfg.sink.password() == "s3cret, 'quoted'"  # newline stripped, nothing else
    assert cfg.web.enabled is False and cfg.web.port == 8181
    assert cfg.daemon.watchdog_s == 20.0 and isinstance(cfg.daemon.watchdog_s, float)
    assert cfg.outbox_path == Path("/var/lib/sensord/sensord.sqlite")
    assert cfg.source == (str(tmp_path / "sensord.toml"),)


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL.format(pwfile=tmp_path / "nope"))
    env = {
        "SENSORD_PARTICIPANT_ID": "P-099",
        "SENSORD_SINK_URL": "http://127.0.0.1:9999",
        "SENSORD_SINK_BATCH_LINES": "17",
        "SENSORD_SINK_GZIP": "false",
        "SENSORD_SINK_PASSWORD": "from-env",
        "SENSORD_WEB_PORT": "9000",
        "SENSORD_DAEMON_WATCHDOG_S": "2.5",
        "PATH": "/usr/bin",  # not ours: ignored
    }
    cfg = load_config(path, env=env)
    assert cfg.participant_id == "P-099"
    assert cfg.sink.url == "http://127.0.0.1:9999"
    assert cfg.sink.batch_lines == 17
    assert cfg.sink.gzip is False
    assert cfg.sink.database == "sleep"  # untouched keys keep the file's value
    assert cfg.sink.password() == "from-env"  # env wins over the (missing) file
    assert cfg.web.port == 9000
    assert cfg.daemon.watchdog_s == 2.5
    assert cfg.source[-1] == "environment"


def test_sensord_config_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'participant_id = "X01"\n')
    assert load_config(env={"SENSORD_CONFIG": str(path)}).participant_id == "X01"


def test_token_from_named_env_var(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[sink]\nkind = "influxdb2"\norg = "lab"\nbucket = "sleep"\ntoken_env = "MY_TOKEN"\n',
    )
    cfg = load_config(path, env={})
    with pytest.raises(ConfigError, match="MY_TOKEN is not set"):
        cfg.sink.token()
    import os

    os.environ["MY_TOKEN"] = "tok=="
    try:
        assert cfg.sink.token() == "tok=="
    finally:
        del os.environ["MY_TOKEN"]


@pytest.mark.parametrize(
    ("text", "env", "key", "fragment"),
    [
        ("participant = 'x'\n", {}, "participant", "unknown key"),
        ("[sink]\nurll = 'http://x'\n", {}, "sink.urll", "unknown key"),
        ("[sink]\npassword = 'hunter2'\n", {}, "sink.password", "secrets are not allowed"),
        ("[sink]\ntoken = 'abc'\n", {}, "sink.token", "secrets are not allowed"),
        ("[sink]\npassword_from_env = 'x'\n", {}, "sink.password_from_env", "unknown key"),
        ("[web]\nport = '80'\n", {}, "web.port", "expected an integer"),
        ("[web]\nport = 70000\n", {}, "web.port", "out of range"),
        ("[web]\nenabled = 1\n", {}, "web.enabled", "expected true or false"),
        ("timezone = 'Mars/Olympus'\n", {}, "timezone", "unknown IANA timezone"),
        ("[night]\nstart = '25:00'\n", {}, "night.start", "HH:MM"),
        ("[sink]\nkind = 'influxdb9'\n", {}, "sink.kind", "unknown sink kind"),
        ("[sink]\nkind = 'influxdb2'\norg = 'o'\n", {}, "sink.bucket", "needs bucket"),
        ("[sink]\nkind = 'influxdb1'\nurl = 'influx:8086'\n", {}, "sink.url", "http(s)://"),
        ("[[devices]]\nname = 'a'\naddress = 'x'\n", {}, "devices[0].profile", "missing key"),
        (
            "[[devices]]\nname='a'\naddress='x'\nprofile='p'\nrole='knee'\n",
            {},
            "devices[0].role",
            "unknown role",
        ),
        (
            "[[devices]]\nname='a'\naddress='x'\nprofile='p'\n"
            "[[devices]]\nname='a'\naddress='y'\nprofile='p'\n",
            {},
            "devices[1].name",
            "duplicate device name",
        ),
        (
            "[[devices]]\nname='a'\naddress='x'\nprofile='p'\ncolour='red'\n",
            {},
            "devices[0].colour",
            "unknown key",
        ),
        ("", {"SENSORD_SINK_URLL": "http://x"}, "sink.urll", "unknown key"),
        ("", {"SENSORD_PARTICIPANTID": "x"}, "participantid", "unknown environment variable"),
        ("", {"SENSORD_WEB_PORT": "eighty"}, "web.port", "expected an integer"),
        ("", {"SENSORD_PARTICIPANT_ID": "a\nb"}, "participant_id", "control characters"),
        ("", {"SENSORD_PARTICIPANT_ID": "ab\\"}, "participant_id", "backslash"),
        ("", {"SENSORD_PARTICIPANT_ID": "x" * 65}, "participant_id", "1-64 printable"),
    ],
)
def test_bad_config_names_key_and_source(
    tmp_path: Path, text: str, env: dict[str, str], key: str, fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    msg = str(info.value)
    assert info.value.key == key, msg
    assert fragment in msg
    assert f"key {key!r}" in msg
    # the message says where: the file, or the env var
    env_names = [n for n in env if n.startswith("SENSORD_")]
    assert (str(path) in msg) or any(n in msg for n in env_names), msg


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'participant_id = "a"\n[sink\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path) in str(info.value) and "line 2" in str(info.value)


def test_missing_secret_file_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, f'[sink]\npassword_file = "{tmp_path / "missing"}"\n')
    cfg = load_config(path, env={})
    with pytest.raises(ConfigError, match=r"sink\.password_file"):
        cfg.sink.password()


def test_config_roles_match_schema() -> None:
    from sensord import config
    from sensord.store import schema

    assert config.DEVICE_ROLES == schema.DEVICE_ROLES


def test_docs_list_every_key() -> None:
    import dataclasses

    from sensord import config

    doc = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    for key in ("participant_id", "timezone", "data_dir"):
        assert f"`{key}`" in doc
    for section, cls in {**config.SECTIONS, "devices": config.DeviceConfig}.items():
        for f in dataclasses.fields(cls):
            if f.name.endswith("_from_env"):
                continue
            assert f"`{f.name}`" in doc, f"docs/config.md misses {section}.{f.name}"
            if f.default is not dataclasses.MISSING:
                default = f.default
                shown = (
                    str(default).lower()
                    if isinstance(default, bool)
                    else repr(default)
                    if isinstance(default, str)
                    else str(default)
                )
                assert shown.replace("'", '"') in doc, f"default of {section}.{f.name}"
