"""Participant privacy: pseudonym checks and de-identification for sharing. Pure.

Nothing here reads files, the network or the clock. The study secret is passed in
as bytes by the caller (``cli.py`` reads it with :mod:`sensord.secrets`).

De-identification (``sensord export --deidentify``)
--------------------------------------------------
* Pseudonyms are re-keyed with HMAC-SHA-256 under the study secret, so the same
  secret gives the same mapping every time (exports can be merged) and the mapping
  cannot be reversed or recomputed without the secret.
* Every timestamp of a participant is moved back by the same whole number of weeks
  (derived from the secret and the pseudonym, between 52 and 520 weeks), applied to
  *local* wall-clock time in the participant's time zone: the weekday and the local
  time of day are preserved, even when the two dates fall on different sides of a
  daylight-saving change. Intervals inside a night keep their length except across
  a DST change in the shifted calendar (at most one hour, and only for points inside
  the changeover night).
* Free-text fields are dropped unless explicitly kept, and a manifest records what
  was removed and how dates were shifted (never the secret or the offsets).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from sensord.errors import ConfigError

DEFAULT_PSEUDONYM_PATTERN = r"[A-Z]{1,4}-?[0-9]{2,6}"
"""Default study pseudonym: a short upper-case study prefix and a number (``P007``, ``SD-0042``)."""

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_PHONE = re.compile(r"^\+?[\d\s().\-/]{7,}$")
_NAME_LIKE = re.compile(r"^[A-Za-z\u00C0-\u024F'\-]{2,}([ ._][A-Za-z\u00C0-\u024F'\-]{2,})+$")

NS_PER_S = 1_000_000_000
NS_PER_WEEK = 7 * 86_400 * NS_PER_S
MIN_SHIFT_WEEKS = 52
MAX_SHIFT_WEEKS = 520

FREE_TEXT_KEYS = frozenset({
    "note", "comment", "comments", "text", "detail", "free_text",
    "body_site", "name_entered",
})
"""Record keys that hold participants' own words; dropped by default on export
(``name_entered`` is the substance name as typed, ``body_site`` where it hurts)."""

RECORD_ID_KEYS = frozenset({"id", "ref"})
"""Record ids (content hashes of the original record): re-keyed on export."""

_DATE_IN_TEXT = re.compile(r"(?<!\d)\d{4}-\d{2}-\d{2}(?!\d)")


def validate_pseudonym(value: str, pattern: str = DEFAULT_PSEUDONYM_PATTERN) -> str:
    """Return ``value`` if it is a study pseudonym, else raise :class:`ConfigError`.

    A value that looks like an e-mail address, a phone number or a personal name is
    refused with a message saying so, even when the configured pattern would allow it.

    Raises
    ------
    ConfigError
        With ``key='participant_id'`` and the reason.
    """
    if not isinstance(value, str) or not value:
        raise ConfigError("participant id is empty", key="participant_id")
    if _EMAIL.search(value):
        raise ConfigError(
            "participant id looks like an e-mail address; use the study pseudonym instead",
            key="participant_id",
        )
    digits = sum(ch.isdigit() for ch in value)
    if _PHONE.match(value) and digits >= 7:
        raise ConfigError(
            "participant id looks like a phone number; use the study pseudonym instead",
            key="participant_id",
        )
    if _NAME_LIKE.match(value) and digits == 0:
        raise ConfigError(
            "participant id looks like a personal name; use the study pseudonym instead",
            key="participant_id",
        )
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"pseudonym pattern is not a valid regex: {exc}",
                          key="pseudonym_pattern") from exc
    if not compiled.fullmatch(value):
        raise ConfigError(
            f"participant id {value!r} does not match the study's pseudonym pattern {pattern!r}",
            key="participant_id",
        )
    return value


@dataclass(frozen=True, slots=True)
class Deidentifier:
    """Keyed, repeatable de-identification of one study's records.

    Parameters
    ----------
    secret
        The per-study secret (at least 16 bytes). Keep it out of exports.
    keep_free_text
        Keep participants' free-text notes (off by default).
    """

    secret: bytes
    keep_free_text: bool = False

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ConfigError("the study secret must be at least 16 bytes long",
                              key="deidentify secret")

    def _digest(self, label: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{label}\x00{value}".encode(), hashlib.sha256).digest()

    def pseudonym(self, participant: str) -> str:
        """The shared pseudonym for ``participant``: ``S`` + 12 hex digits of an HMAC."""
        return "S" + self._digest("pseudonym", participant).hex()[:12].upper()

    def shift_weeks(self, participant: str) -> int:
        """Whole weeks this participant's dates move back (52 to 520)."""
        span = MAX_SHIFT_WEEKS - MIN_SHIFT_WEEKS + 1
        draw = int.from_bytes(self._digest("shift", participant)[:8], "big")
        return MIN_SHIFT_WEEKS + draw % span

    def shift_t_ns(self, participant: str, t_ns: npt.ArrayLike, tz: str) -> npt.NDArray[np.int64]:
        """Shift UTC-ns times back by whole weeks of local time in ``tz``.

        Weekday and local time of day are kept; see the module docstring for DST.
        """
        times = np.asarray(t_ns, dtype=np.int64)
        shifted = times - self.shift_weeks(participant) * NS_PER_WEEK
        zone = ZoneInfo(tz)
        # local wall time = utc + offset(utc); keep wall time: new_utc = shifted_wall - offset(new)
        offset_before = _utc_offsets_ns(times, zone)
        guess = shifted + offset_before - _utc_offsets_ns(shifted, zone)
        # one refinement settles points whose guess crossed a DST change in the new calendar
        return shifted + offset_before - _utc_offsets_ns(guess, zone)

    def record_id(self, record_id: str) -> str:
        """A record id re-keyed under the secret (12 hex digits, like the originals)."""
        return self._digest("record", record_id).hex()[:12]

    def shift_local_iso(self, participant: str, value: str, tz: str) -> str:
        """Shift an ISO local date-time with offset (``2026-11-20T22:51:00+01:00``)."""
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(f"not an ISO date-time: {value!r}", key="export") from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=ZoneInfo(tz))
        t_ns = int(when.timestamp()) * NS_PER_S + when.microsecond * 1000
        moved = int(self.shift_t_ns(participant, [t_ns], tz)[0])
        local = dt.datetime.fromtimestamp(moved // NS_PER_S, tz=ZoneInfo(tz))
        return local.replace(microsecond=(moved % NS_PER_S) // 1000).isoformat()

    def shift_date(self, participant: str, night: str) -> str:
        """Shift an ISO date label (``YYYY-MM-DD``) by the participant's whole weeks."""
        day = dt.date.fromisoformat(night)
        return (day - dt.timedelta(weeks=self.shift_weeks(participant))).isoformat()


def _utc_offsets_ns(t_ns: npt.NDArray[np.int64], zone: ZoneInfo) -> npt.NDArray[np.int64]:
    """UTC offset of ``zone`` at each instant, in ns (computed once per distinct hour)."""
    if t_ns.size == 0:
        return np.zeros(0, dtype=np.int64)
    hour_ns = 3600 * NS_PER_S
    hours, inverse = np.unique(t_ns // hour_ns, return_inverse=True)
    offsets = np.empty(hours.size, dtype=np.int64)
    for i, hour in enumerate(hours.tolist()):  # one zoneinfo lookup per distinct hour
        instant = dt.datetime.fromtimestamp(hour * 3600, tz=dt.UTC).astimezone(zone)
        delta = instant.utcoffset() or dt.timedelta(0)
        offsets[i] = int(delta.total_seconds()) * NS_PER_S
    return offsets[inverse.reshape(t_ns.shape)]


@dataclass(slots=True)
class Manifest:
    """What a de-identified export removed or changed (never the secret or offsets)."""

    records: int = 0
    participants: int = 0
    dropped_fields: Counter[str] = field(default_factory=Counter)
    method: dict[str, str] = field(
        default_factory=lambda: {
            "pseudonyms": "HMAC-SHA-256 of the original under the study secret, 12 hex digits",
            "dates": (
                f"shifted back by a per-participant whole number of weeks "
                f"({MIN_SHIFT_WEEKS}-{MAX_SHIFT_WEEKS}) in local time: weekday and time of day kept"
            ),
            "free_text": "dropped",
        }
    )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, keys sorted so two exports compare byte for byte."""
        return {
            "records": self.records,
            "participants": self.participants,
            "dropped_fields": dict(sorted(self.dropped_fields.items())),
            "method": dict(sorted(self.method.items())),
        }


def _is_free_text_name(record: Mapping[str, Any]) -> bool:
    """A substance name the participant typed outside the curated list."""
    return bool(record.get("name_is_free_text")) or record.get("curated") is False


def deidentify_records(
    records: Iterable[Mapping[str, Any]],
    deidentifier: Deidentifier,
    *,
    tz_by_participant: Mapping[str, str],
) -> tuple[list[dict[str, Any]], Manifest]:
    """De-identify export records (dicts from ``sensord export``).

    Each record must have ``participant``. What happens to each key:

    * ``participant``: re-keyed (:meth:`Deidentifier.pseudonym`);
    * ``id``, ``ref`` (record ids, content hashes of the original): re-keyed the same way,
      so edits still point at the records they replace;
    * keys ending in ``_ns`` (UTC-ns times): shifted, all of a participant's at once;
      ``night`` (ISO date) and keys ending in ``_local`` (ISO date-times with offset)
      by the same whole weeks;
    * keys in :data:`FREE_TEXT_KEYS`: dropped unless the deidentifier keeps free text; a
      substance name outside the curated list (``curated`` false or
      ``name_is_free_text``) becomes ``"other"``;
    * any other text that still holds a date (``YYYY-MM-DD``) is dropped and counted, so
      no original date can leave through a field this function does not know.

    Raises
    ------
    ConfigError
        If a record has no participant or the participant's time zone is unknown.
    """
    manifest = Manifest()
    if deidentifier.keep_free_text:
        manifest.method["free_text"] = "kept on request"
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    times: dict[str, list[tuple[dict[str, Any], str, int]]] = {}
    for index, record in enumerate(records):
        participant = record.get("participant")
        if not isinstance(participant, str):
            raise ConfigError(f"export record #{index} has no participant", key="participant")
        tz = tz_by_participant.get(participant)
        if tz is None:
            raise ConfigError(f"no time zone known for participant of record #{index}",
                              key="timezone")
        seen.add(participant)
        clean: dict[str, Any] = {}
        for key, value in record.items():
            if key == "participant":
                clean[key] = deidentifier.pseudonym(participant)
            elif key in RECORD_ID_KEYS and isinstance(value, str):
                clean[key] = deidentifier.record_id(value) if value else value
            elif key.endswith("_ns") and isinstance(value, int) and not isinstance(value, bool):
                clean[key] = None  # filled below, one vectorised shift per participant
                times.setdefault(participant, []).append((clean, key, value))
            elif key == "night" and isinstance(value, str):
                clean[key] = deidentifier.shift_date(participant, value)
            elif key.endswith("_local") and isinstance(value, str) and value:
                clean[key] = deidentifier.shift_local_iso(participant, value, tz)
            elif key in FREE_TEXT_KEYS and not deidentifier.keep_free_text:
                if value not in (None, "", [], ()):
                    manifest.dropped_fields[key] += 1
            elif key == "name" and _is_free_text_name(record) and not deidentifier.keep_free_text:
                clean[key] = "other"
                manifest.dropped_fields["free-text substance name"] += 1
            elif isinstance(value, str) and _DATE_IN_TEXT.search(value):
                manifest.dropped_fields[f"{key} (held a date)"] += 1
            else:
                clean[key] = value
        out.append(clean)
    for participant, slots in times.items():
        tz = tz_by_participant[participant]
        shifted = deidentifier.shift_t_ns(participant, [t for _, _, t in slots], tz)
        for (clean, key, _), moved in zip(slots, shifted.tolist(), strict=True):
            clean[key] = moved
    manifest.records = len(out)
    manifest.participants = len(seen)
    return out, manifest
