"""The one source of InfluxDB names: measurements, tags, fields, types, units. Pure.

Everything sensord writes to InfluxDB is described here, and nothing else is written.
The dashboards, the reports and the docs (``docs/storage.md``, generated from
:func:`markdown_table`) take their names from this module.

Rules
-----
* Timestamps are UTC nanoseconds since the Unix epoch and go on the wire with the
  explicit precision :data:`WIRE_PRECISION` (``ns``) for every API (InfluxDB 1.x
  ``/write?precision=ns``, 2.x/3.x ``WritePrecision.NS``).
* Tags are low-cardinality only: participant, device role, scorer, annotation kind.
  Free text (annotation notes, substance names, event details) is always a *field*.
* A point is identified by measurement + tag set + timestamp; writing it again
  overwrites it, so re-sending and backfilling are idempotent. Provisional epochs are
  overwritten by final ones because ``final`` is a field, not a tag.
* Field types never change once written (InfluxDB refuses a second type per shard).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

WIRE_PRECISION = "ns"
"""Timestamp precision of every write (all APIs). Never ``us``: see ``docs/storage.md``."""

SCHEMA_VERSION = 1
"""Bumped whenever a measurement, tag or field changes meaning or type."""


class FieldType(StrEnum):
    """InfluxDB field types (the names ``SHOW FIELD KEYS`` reports)."""

    FLOAT = "float"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    STRING = "string"


@dataclass(frozen=True, slots=True)
class TagSpec:
    """A tag key. ``values`` is the closed vocabulary when there is one."""

    name: str
    description: str
    values: tuple[str, ...] = ()
    pattern: str = ""

    def check(self, value: str) -> str | None:
        """Return a reason why ``value`` is not allowed, or ``None``."""
        if not isinstance(value, str) or value == "":
            return "must be a non-empty string"
        if _CONTROL.search(value):
            # line protocol has no escape for control characters in tags: InfluxDB would
            # store a newline as the two characters backslash-n
            return "must not contain control characters (newline, tab, ...)"
        if value.endswith("\\"):
            return "must not end with a backslash (line protocol cannot carry it in a tag)"
        if self.values and value not in self.values:
            return f"must be one of {', '.join(self.values)}"
        if self.pattern and not re.fullmatch(self.pattern, value):
            return f"must match {self.pattern}"
        if len(value.encode("utf-8")) > MAX_TAG_VALUE_BYTES:
            return f"is longer than {MAX_TAG_VALUE_BYTES} bytes"
        return None


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A field key with its type and unit (``""`` when dimensionless)."""

    name: str
    type: FieldType
    unit: str
    description: str


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measurement: its tags, its fields and what its timestamp means."""

    name: str
    description: str
    time: str
    tags: tuple[TagSpec, ...]
    fields: tuple[FieldSpec, ...]

    @property
    def tag_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tags)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def tag(self, name: str) -> TagSpec:
        for t in self.tags:
            if t.name == name:
                return t
        raise KeyError(name)


MAX_TAG_VALUE_BYTES = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_STRING_FIELD_BYTES = 16_000
"""Our own limit for string fields (InfluxDB 1.x allows 64 KiB); notes are short."""

# --------------------------------------------------------------------------------------
# Vocabularies
# --------------------------------------------------------------------------------------

DEVICE_ROLES = ("chest", "wrist", "upper_arm", "finger", "ankle", "bed", "other")
"""Where a device is worn or placed (config ``[[devices]] role``)."""

STAGES = ("wake", "light", "deep", "rem", "unscored")
"""Sleep stages as stored. ``light`` = N1+N2, ``deep`` = N3 (AASM)."""

STAGE_CODES = {"wake": 0, "light": 1, "deep": 2, "rem": 3, "unscored": -1}
"""Integer codes for plotting hypnograms (``stage_code`` field)."""

DEVICE_EVENTS = (
    "connecting",
    "connected",
    "services",
    "subscribed",
    "setup",
    "disconnected",
    "watchdog",
    "error",
)
"""Same vocabulary as :class:`sensord.model.DeviceEvent` ``kind``."""

ANNOTATION_KINDS = ("pain", "substance", "diary", "event")

PAIN_WHEN = ("bedtime", "night", "morning", "other")
"""When a pain rating was given: at bedtime, at a night waking, on waking in the morning,
or at another time."""

PARTICIPANT_PATTERN = r"[^\x00-\x1f\x7f]{1,64}"
"""Participant ids: 1-64 characters, any printable Unicode (escaped on the wire)."""

SCORER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+@-]{0,63}"
"""Scorer ids carry their version, e.g. ``cole-kripke@1.0`` or ``hr-motion-lr@0.3.1``."""

# --------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------

PARTICIPANT = TagSpec(
    "participant", "Study participant id (config participant_id)", pattern=PARTICIPANT_PATTERN
)
DEVICE_ROLE = TagSpec("device_role", "Where the device is worn", values=DEVICE_ROLES)
SCORER = TagSpec("scorer", "Scorer name@version that produced the result", pattern=SCORER_PATTERN)
KIND = TagSpec("kind", "Annotation kind", values=ANNOTATION_KINDS)

F, INT, B, S = FieldType.FLOAT, FieldType.INTEGER, FieldType.BOOLEAN, FieldType.STRING


def _f(name: str, ftype: FieldType, unit: str, description: str) -> FieldSpec:
    return FieldSpec(name, ftype, unit, description)


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------

HEART_RATE = Measurement(
    "heart_rate",
    "Heart rate as reported by the device (Heart Rate Measurement 0x2A37 or vendor stream)",
    "reception time of the notification (clock-step repaired), UTC",
    (PARTICIPANT, DEVICE_ROLE),
    (
        _f("hr_bpm", F, "bpm", "Heart rate"),
        _f("contact", B, "", "Sensor skin contact detected (absent if not supported)"),
    ),
)

BEAT = Measurement(
    "beat",
    "Beat-to-beat (RR) intervals",
    "reconstructed time of the beat that ends the interval, UTC",
    (PARTICIPANT, DEVICE_ROLE),
    (_f("rr_ms", F, "ms", "Interval between this beat and the previous one"),),
)

DEVICE_BATTERY = Measurement(
    "device_battery",
    "Battery level read from the device (Battery Level 0x2A19)",
    "time of the read, UTC",
    (PARTICIPANT, DEVICE_ROLE),
    (_f("battery_pct", INT, "%", "Battery level 0-100"),),
)

DEVICE_EVENT = Measurement(
    "device_event",
    "Connection events of a device (connect, disconnect, watchdog, ...)",
    "time of the event, UTC",
    (PARTICIPANT, DEVICE_ROLE),
    (
        _f("event", S, "", "One of: " + ", ".join(DEVICE_EVENTS)),
        _f("connected", B, "", "Whether the device is connected after this event"),
        _f("detail", S, "", "Free text: disconnect reason, error message"),
    ),
)

DEVICE_COVERAGE = Measurement(
    "device_coverage",
    "How much of each 30-s epoch a device delivered data for",
    "epoch start, multiple of 30 s since the Unix epoch, UTC",
    (PARTICIPANT, DEVICE_ROLE),
    (
        _f("hr_coverage_frac", F, "1", "Fraction of the epoch covered by heart-rate samples"),
        _f("acc_coverage_frac", F, "1", "Fraction of the epoch covered by motion samples"),
    ),
)

EPOCH = Measurement(
    "epoch",
    "Sleep stage of each 30-s epoch with class probabilities",
    "epoch start, multiple of 30 s since the Unix epoch, UTC",
    (PARTICIPANT, SCORER),
    (
        _f("stage", S, "", "One of: " + ", ".join(STAGES)),
        _f(
            "stage_code",
            INT,
            "",
            "; ".join(f"{k}={v}" for k, v in STAGE_CODES.items()),
        ),
        _f("p_wake", F, "1", "Probability of wake"),
        _f("p_light", F, "1", "Probability of light sleep (N1+N2)"),
        _f("p_deep", F, "1", "Probability of deep sleep (N3)"),
        _f("p_rem", F, "1", "Probability of REM sleep"),
        _f("final", B, "", "false while the night is running (provisional), true once final"),
        _f("night", S, "", "Night label: local date of the evening, YYYY-MM-DD"),
    ),
)

EPOCH_FEATURES = Measurement(
    "epoch_features",
    "Per-epoch inputs of the scorer, named as sensord.staging.score_night returns them "
    "(definitions in docs/staging.md)",
    "epoch start, multiple of 30 s since the Unix epoch, UTC",
    (PARTICIPANT, SCORER),
    (
        _f("hr_bpm", F, "bpm", "Mean heart rate in the epoch"),
        _f("counts", F, "counts", "Activity counts summed over the epoch"),
        _f("hr_cover", F, "1", "Fraction of the epoch covered by heart-rate data"),
        _f("motion_cover", F, "1", "Fraction of the epoch covered by motion data"),
        _f("off_body", B, "", "The device reported it was off the body"),
        _f("rr_flags", INT, "", "RR intervals flagged as artefacts in the epoch"),
        _f("count_feature", F, "", "Walch et al. 2019 activity feature"),
        _f("hr_feature", F, "", "Walch et al. 2019 heart-rate feature"),
        _f("feature_set", INT, "", "Inputs used: 0 none, 1 hr+motion, 2 hr, 3 motion"),
        _f("rmssd_ms", F, "ms", "RMSSD, 5-min window centred on the epoch"),
        _f("sdnn_ms", F, "ms", "SDNN, 5-min window centred on the epoch"),
        _f("pnn50_pct", F, "%", "pNN50, 5-min window centred on the epoch"),
        _f("lf_ms2", F, "ms2", "Low-frequency HRV power (0.04-0.15 Hz)"),
        _f("hf_ms2", F, "ms2", "High-frequency HRV power (0.15-0.4 Hz)"),
        _f("lf_hf", F, "1", "LF/HF ratio"),
        _f("hrv_cover", F, "1", "Fraction of the HRV window covered by accepted beats"),
    ),
)

NIGHT = Measurement(
    "night",
    "Night summary, named as sensord.staging.score_night returns it "
    "(definitions in docs/staging.md)",
    "start of the night's recording (first epoch start), UTC",
    (PARTICIPANT, SCORER),
    (
        _f("night", S, "", "Night label: local date of the evening, YYYY-MM-DD"),
        _f("final", B, "", "false for a provisional summary, true once final"),
        _f("end_ns", INT, "ns", "End of the night's recording, UTC ns"),
        _f("tz", S, "", "IANA time zone used for the night label"),
        _f("epochs", INT, "", "Number of 30-s epochs"),
        _f("tib_min", F, "min", "Time in bed (recording span)"),
        _f("tst_min", F, "min", "Total sleep time"),
        _f("se_pct", F, "%", "Sleep efficiency, 100 * TST / TIB"),
        _f("sol_min", F, "min", "Sleep onset latency"),
        _f("spt_min", F, "min", "Sleep period time, onset to final awakening"),
        _f("waso_min", F, "min", "Wake after sleep onset"),
        _f("awakenings", INT, "", "Number of awakenings after sleep onset"),
        _f("awakening_mean_min", F, "min", "Mean length of an awakening"),
        _f("rem_latency_min", F, "min", "Sleep onset to first REM epoch"),
        _f("sfi_per_h", F, "1/h", "Sleep fragmentation index"),
        _f("wake_min", F, "min", "Time awake"),
        _f("light_min", F, "min", "Time in light sleep"),
        _f("deep_min", F, "min", "Time in deep sleep"),
        _f("rem_min", F, "min", "Time in REM sleep"),
        _f("wake_pct", F, "%", "Wake, % of time in bed"),
        _f("light_pct", F, "%", "Light sleep, % of TST"),
        _f("deep_pct", F, "%", "Deep sleep, % of TST"),
        _f("rem_pct", F, "%", "REM sleep, % of TST"),
        _f("hr_mean_bpm", F, "bpm", "Mean heart rate during sleep"),
        _f("hr_min_bpm", F, "bpm", "Lowest epoch-mean heart rate during sleep"),
        _f("rmssd_ms", F, "ms", "Median RMSSD over sleep epochs"),
        _f("coverage", F, "1", "Fraction of epochs that could be scored"),
        _f("hr_coverage", F, "1", "Fraction of epochs with enough heart-rate data"),
        _f("motion_coverage", F, "1", "Fraction of epochs with enough motion data"),
        _f("off_body_epochs", INT, "", "Epochs the device reported off the body"),
    ),
)

ANNOTATION = Measurement(
    "annotation",
    "Participant annotations; Grafana draws them with text='text' and tags='tags' columns",
    "time the annotation refers to (UTC), plus a sub-millisecond offset from its id "
    "so two annotations never share a timestamp (see annotation_time_ns)",
    (PARTICIPANT, KIND),
    (
        _f(
            "id",
            S,
            "",
            "Annotation record id (content hash); an edit is a new record and the point of "
            "the one it replaces is rewritten with deleted=true",
        ),
        _f("text", S, "", "Human-readable one-line summary (Grafana annotation text)"),
        _f("tags", S, "", "Comma-separated Grafana tags, e.g. 'substance,caffeine'"),
        _f("end_ns", INT, "ns", "End time for a span (UTC ns), absent for an instant"),
        _f("pain_nrs", INT, "NRS 0-10", "Pain intensity, numeric rating scale"),
        _f("pain_when", S, "", "One of: " + ", ".join(PAIN_WHEN)),
        _f("body_site", S, "", "Where it hurts (free text)"),
        _f("substance", S, "", "Substance name (free text, e.g. kratom, caffeine)"),
        _f("dose", F, "dose_unit", "Amount taken"),
        _f("dose_unit", S, "", "Unit of dose (mg, g, ml, standard drinks, ...)"),
        _f("form", S, "", "Form taken (capsule, powder, tea, ...)"),
        _f("sleep_quality", INT, "1-5", "Diary: sleep quality, 1 very poor to 5 very good"),
        _f("note", S, "", "Free text"),
        _f("deleted", B, "", "true when the participant deleted the annotation"),
        # added by the annotate area (sensord/annotate.py, sensord/notebook.py)
        _f("night", S, "", "Night label the annotation belongs to: YYYY-MM-DD"),
        _f("recorded_ns", INT, "ns", "When the participant entered it, UTC ns"),
        _f("category", S, "", "Substance class (opioid, gabapentinoid, kratom, ..., other)"),
        _f("curated", B, "", "Substance name is in sensord's curated list (false: free text)"),
        _f("route", S, "", "Route taken (oral, smoked, sublingual, ...)"),
        _f("descriptors", S, "", "Neuropathic pain descriptors, comma-separated (DN4 items)"),
        _f("sleep_rested", INT, "1-5", "Diary: feeling rested, 1 not at all to 5 very well"),
        _f("sol_min", F, "min", "Diary: sleep-onset latency"),
        _f("waso_min", F, "min", "Diary: total duration of night awakenings"),
        _f("awakenings", INT, "", "Diary: number of awakenings before the final one"),
        _f("tst_min", F, "min", "Diary: total sleep time (Carney et al. 2012 definition)"),
        _f("record", S, "", "The record the point shows, as JSON (sensord.annotate.to_fields)"),
    ),
)

# Added by the dashboards area (issue 7): the operations dashboard shows each Pi's outbox
# backlog and last successful push, which only the Pi knows. The daemon queues one point
# as every push attempt starts; it reaches InfluxDB with that push or the next good one.
SENDER_STATUS = Measurement(
    "sender_status",
    "Delivery health of a participant's Pi: one point as each push of the outbox starts",
    "time of the push attempt, UTC",
    (PARTICIPANT,),
    (
        _f("backlog_points", INT, "points", "Points waiting in the outbox as the push starts"),
        _f("quarantined_points", INT, "points", "Points the server refused, kept in quarantine"),
        _f("push_ok", B, "", "Whether the previous attempt delivered (false before any)"),
        _f("last_ok_ns", INT, "ns", "End of the last successful push, UTC ns (0 before the first)"),
    ),
)

MEASUREMENTS: tuple[Measurement, ...] = (
    HEART_RATE,
    BEAT,
    DEVICE_BATTERY,
    DEVICE_EVENT,
    DEVICE_COVERAGE,
    EPOCH,
    EPOCH_FEATURES,
    NIGHT,
    ANNOTATION,
    SENDER_STATUS,
)
BY_NAME: dict[str, Measurement] = {m.name: m for m in MEASUREMENTS}


# --------------------------------------------------------------------------------------
# Validation (pure; raises SchemaError naming measurement, key and value)
# --------------------------------------------------------------------------------------


class SchemaError(ValueError):
    """A point does not fit the schema. ``where`` names measurement and key."""

    def __init__(self, message: str, *, measurement: str, key: str | None = None):
        self.measurement = measurement
        self.key = key
        where = measurement + (f".{key}" if key else "")
        super().__init__(f"{where}: {message}")


def _is_bool(value: object) -> bool:
    # numpy's bool scalar without importing numpy (this module stays light)
    return isinstance(value, bool) or (
        type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
    )


def _type_ok(ftype: FieldType, value: object) -> bool:
    if ftype is FieldType.BOOLEAN:
        return _is_bool(value)
    if _is_bool(value):
        return False
    if ftype is FieldType.FLOAT:
        return isinstance(value, numbers.Real)
    if ftype is FieldType.INTEGER:
        return isinstance(value, numbers.Integral)
    return isinstance(value, str)


def check_point(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, object],
) -> Measurement:
    """Validate one point against the schema; return its :class:`Measurement`.

    Raises
    ------
    SchemaError
        Unknown measurement, missing or unknown tag, tag value outside its vocabulary,
        unknown field, wrong field type, non-finite float or no field at all.
    """
    m = BY_NAME.get(measurement)
    if m is None:
        raise SchemaError("unknown measurement", measurement=measurement)
    for key in tags:
        if key not in m.tag_names:
            raise SchemaError("unknown tag", measurement=measurement, key=key)
    for spec in m.tags:
        if spec.name not in tags:
            raise SchemaError("missing tag", measurement=measurement, key=spec.name)
        reason = spec.check(tags[spec.name])
        if reason:
            raise SchemaError(
                f"tag value {tags[spec.name]!r} {reason}", measurement=measurement, key=spec.name
            )
    if not fields:
        raise SchemaError("a point needs at least one field", measurement=measurement)
    for key, value in fields.items():
        try:
            spec_f = m.field(key)
        except KeyError:
            raise SchemaError("unknown field", measurement=measurement, key=key) from None
        _check_field(m.name, spec_f, value)
    return m


def _check_field(measurement: str, spec: FieldSpec, value: object) -> None:
    if not _type_ok(spec.type, value):
        raise SchemaError(
            f"expected {spec.type.value}, got {type(value).__name__} {value!r}",
            measurement=measurement,
            key=spec.name,
        )
    if spec.type is FieldType.FLOAT and not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise SchemaError(
            f"non-finite float {value!r} cannot be stored", measurement=measurement, key=spec.name
        )
    if spec.type is FieldType.INTEGER and not (-(2**63) <= int(value) < 2**63):  # type: ignore[call-overload]
        raise SchemaError("integer out of int64 range", measurement=measurement, key=spec.name)
    if spec.type is FieldType.STRING and len(str(value).encode("utf-8")) > MAX_STRING_FIELD_BYTES:
        raise SchemaError(
            f"string longer than {MAX_STRING_FIELD_BYTES} bytes",
            measurement=measurement,
            key=spec.name,
        )


def annotation_time_ns(t_ns: int, annotation_id: str) -> int:
    """Timestamp of an annotation point: ``t_ns`` truncated to the millisecond plus a
    deterministic sub-millisecond offset (FNV-1a of the id, mod 10**6 ns).

    Two annotations of one participant and kind at the same minute therefore stay two
    points, and an edited annotation (same id, same time) overwrites its own point.
    """
    h = 0xCBF29CE484222325
    for byte in annotation_id.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return (t_ns // 1_000_000) * 1_000_000 + h % 1_000_000


# --------------------------------------------------------------------------------------
# Documentation
# --------------------------------------------------------------------------------------

DOC_BEGIN = "<!-- schema:begin (generated by tools/schema_doc.py) -->"
DOC_END = "<!-- schema:end -->"


def markdown_table() -> str:
    """The schema as Markdown (one table per measurement), as embedded in docs/storage.md."""
    out = [
        f"Schema version {SCHEMA_VERSION}. Timestamp precision on the wire: "
        f"`{WIRE_PRECISION}` for every measurement and API.",
        "",
    ]
    for m in MEASUREMENTS:
        out += [f"### `{m.name}`", "", m.description + ".", "", f"Timestamp: {m.time}.", ""]
        out += ["| key | kind | type | unit | meaning |", "|---|---|---|---|---|"]
        for t in m.tags:
            allowed = f" ({', '.join(t.values)})" if t.values else ""
            out.append(f"| `{t.name}` | tag | string | | {t.description}{allowed} |")
        for fs in m.fields:
            out.append(f"| `{fs.name}` | field | {fs.type.value} | {fs.unit} | {fs.description} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_into(doc: str) -> str:
    """Replace the generated block between :data:`DOC_BEGIN` and :data:`DOC_END`."""
    start = doc.index(DOC_BEGIN) + len(DOC_BEGIN)
    end = doc.index(DOC_END)
    return doc[:start] + "\n\n" + markdown_table() + "\n" + doc[end:]
