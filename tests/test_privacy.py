"""Pseudonym checks, de-identification and secrets handling (issue 8)."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from sensord.credentials import (
    RedactingFilter,
    check_url_has_no_credentials,
    ensure_private_dir,
    read_secret,
)
from sensord.errors import ConfigError
from sensord.privacy import Deidentifier, deidentify_records, validate_pseudonym

SECRET = b"study-secret-for-tests-0123456789"


@pytest.mark.parametrize("value", ["P007", "SD-0042", "KRT123"])
def test_pseudonyms_accepted(value: str) -> None:
    assert validate_pseudonym(value) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("jane.doe@example.org", "e-mail"),
        ("+44 7700 900123", "phone"),
        ("0612345678", "phone"),
        ("Jane Doe", "name"),
        ("jane_doe", "name"),
        ("p7", "pattern"),
        ("", "empty"),
    ],
)
def test_identifying_participant_ids_refused(value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_pseudonym(value)
    assert reason in str(info.value)
    assert info.value.key == "participant_id"


def _local(t_ns: int, tz: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.UTC).astimezone(ZoneInfo(tz))


def test_date_shift_keeps_weekday_and_local_time_of_day_across_dst() -> None:
    deid = Deidentifier(SECRET)
    tz = "Europe/Berlin"
    # a night every 5 days over 14 months, at 23:10 local: crosses every DST change
    start = dt.datetime(2025, 1, 3, 23, 10, tzinfo=ZoneInfo(tz))
    times = [start + dt.timedelta(days=5 * i) for i in range(85)]
    t_ns = np.array([int(t.timestamp()) * 1_000_000_000 for t in times], dtype=np.int64)
    shifted = deid.shift_t_ns("P007", t_ns, tz)
    weeks = deid.shift_weeks("P007")
    assert 52 <= weeks <= 520
    for original, moved in zip(t_ns.tolist(), shifted.tolist(), strict=True):
        a, b = _local(original, tz), _local(moved, tz)
        assert (a.weekday(), a.hour, a.minute) == (b.weekday(), b.hour, b.minute)
        assert (a.date() - b.date()).days == 7 * weeks
    assert deid.shift_date("P007", "2025-03-30") == (
        dt.date(2025, 3, 30) - dt.timedelta(weeks=weeks)
    ).isoformat()


def test_same_secret_same_mapping_other_secret_other_mapping() -> None:
    a, b = Deidentifier(SECRET), Deidentifier(SECRET)
    c = Deidentifier(b"another-study-secret-0123456789")
    assert a.pseudonym("P007") == b.pseudonym("P007")
    assert a.pseudonym("P007") != a.pseudonym("P008")
    assert a.pseudonym("P007") != c.pseudonym("P007")
    assert "P007" not in a.pseudonym("P007")


def test_short_secret_refused() -> None:
    with pytest.raises(ConfigError, match="16 bytes"):
        Deidentifier(b"short")


def test_deidentify_records_drops_text_and_names_what_it_removed() -> None:
    records = [
        {"participant": "P007", "kind": "pain", "t_ns": 1_750_000_000_000_000_000,
         "rating": 6, "note": "after the argument with Jane"},
        {"participant": "P007", "kind": "substance", "t_ns": 1_750_000_100_000_000_000,
         "name": "grandma's tea", "name_is_free_text": True, "dose": 1.0, "unit": "cups"},
        {"participant": "P008", "night": "2025-06-15", "tst_min": 401.5},
    ]
    tz = {"P007": "America/New_York", "P008": "Europe/London"}
    out, manifest = deidentify_records(records, Deidentifier(SECRET), tz_by_participant=tz)
    text = repr(out)
    for identifying in ("P007", "P008", "Jane", "grandma", "2025-06-15", "1750000000000000000"):
        assert identifying not in text
    assert out[0]["rating"] == 6 and out[2]["tst_min"] == 401.5
    assert out[1]["name"] == "other"
    assert manifest.as_dict()["dropped_fields"] == {"free-text substance name": 1, "note": 1}
    assert manifest.records == 3 and manifest.participants == 2
    again, manifest_again = deidentify_records(records, Deidentifier(SECRET), tz_by_participant=tz)
    assert again == out and manifest_again.as_dict() == manifest.as_dict()


def test_world_readable_secrets_file_refused_with_its_name(tmp_path: Path) -> None:
    secret = tmp_path / "influx.token"
    secret.write_text("tok-abcdef\n")
    os.chmod(secret, 0o644)
    with pytest.raises(ConfigError) as info:
        read_secret(file=secret)
    assert str(secret) in str(info.value) and "chmod 600" in str(info.value)
    assert "tok-abcdef" not in str(info.value)
    os.chmod(secret, 0o600)
    assert read_secret(file=secret) == "tok-abcdef"


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORD_TEST_TOKEN", "tok-env")
    assert read_secret(env="SENSORD_TEST_TOKEN") == "tok-env"
    monkeypatch.delenv("SENSORD_TEST_TOKEN")
    with pytest.raises(ConfigError, match="SENSORD_TEST_TOKEN"):
        read_secret(env="SENSORD_TEST_TOKEN")


def test_data_dir_created_private_and_open_one_refused(tmp_path: Path) -> None:
    created = ensure_private_dir(tmp_path / "data" / "sensord")
    assert created.stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    with pytest.raises(ConfigError) as info:
        ensure_private_dir(shared)
    assert str(shared) in str(info.value) and "chmod 700" in str(info.value)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create data directory") as failed:
        ensure_private_dir(blocker / "data", key="data_dir")  # (a file where a dir must go)
    assert failed.value.key == "data_dir" and str(blocker / "data") in str(failed.value)


def test_url_with_credentials_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as info:
        check_url_has_no_credentials("https://admin:hunter22@db.example:8086")
    assert "hunter22" not in str(info.value)
    assert check_url_has_no_credentials("https://db.example:8086") == "https://db.example:8086"


def test_redacting_filter_masks_secrets_in_messages_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("sensord.test.redact")
    logger.addFilter(RedactingFilter(["hunter22"]))
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("connecting with password %s", "hunter22")
        try:
            raise RuntimeError("auth failed for hunter22")
        except RuntimeError:
            logger.exception("push failed")
    assert "hunter22" not in caplog.text
    assert "***" in caplog.text
