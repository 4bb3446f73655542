"""Participants' annotations: pain, substances, sleep diary, events. Pure: no I/O, no clock.

Every function that needs "now" takes ``now_ns`` (UTC ns); local times are entered in the
participant's IANA time zone and stored as UTC ns. The model is append-only: an edit or a
deletion is a *new* record whose ``ref`` names the record it replaces, so the history of
what a participant said, and when, is never lost. :func:`current` folds a history into the
annotations that are in force.

Inputs are accepted loosely typed (the strings a CLI or web form delivers, or Python
values) and validated here, once, for both edges. Every problem raises
:class:`sensord.errors.AnnotationError` whose ``field`` names the offending input.

Instruments
-----------
* Pain: 0-10 numeric rating scale (NRS), 0 = no pain, 10 = worst pain imaginable
  (Hawker et al. 2011, Arthritis Care Res 63(S11):S240-S252). Neuropathic descriptors are
  the sensory items of the DN4 questionnaire that a participant can judge alone
  (Bouhassira et al. 2005, Pain 114(1-2):29-36): burning, tingling (pins and needles),
  electric/shooting, numbness, pain to light touch (brushing, allodynia).
* Sleep diary: the core items of the Consensus Sleep Diary (Carney et al. 2012, SLEEP
  35(2):287-302): time into bed, time tried to sleep, sleep-onset latency, number and total
  duration of awakenings, final awakening, time out of bed, sleep quality (1 very poor -
  5 very good), feeling rested (1 not at all - 5 very well rested), comments.

Nights
------
A night is labelled by the local date of the evening it starts (``2026-11-24`` is the
night from the evening of 24 November into the morning of the 25th). Pain, events and
diaries belong to the night whose noon-to-noon window contains them
(:data:`NIGHT_CUTOFF_H`): a morning pain rating describes the night just ended. A
substance acts on the sleep *after* it is taken, so its night is the one that starts on
the local day of intake, with days running from :data:`SUBSTANCE_DAY_START_H` (06:00):
a dose at 10:00 or 21:30 counts for that evening's night, a dose at 03:00 for the night
in progress.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
import re
import unicodedata
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from sensord import clock
from sensord.errors import AnnotationError

NS_PER_S = 1_000_000_000
NIGHT_CUTOFF_H = 12
"""Local hour at which one night's window ends and the next begins (pain, events, diary)."""
SUBSTANCE_DAY_START_H = 6
"""Local hour from which a substance dose counts for the coming night rather than the last."""
FUTURE_GRACE_S = 120
"""How far past ``now`` an entered time may lie (clocks of phone and Pi differ a little)."""
MAX_AGE_DAYS = 366
"""Entries older than this are refused as implausible (a mistyped year)."""

KINDS = ("pain", "substance", "diary", "event")
ACTIONS = ("create", "edit", "delete")
SOURCES = ("cli", "web", "import")

PAIN_CONTEXTS = ("bedtime", "night_waking", "morning", "other")
_PAIN_CONTEXT_ALIASES = {
    "bedtime": "bedtime",
    "bed": "bedtime",
    "evening": "bedtime",
    "night_waking": "night_waking",
    "night waking": "night_waking",
    "waking": "night_waking",
    "night": "night_waking",
    "awake": "night_waking",
    "morning": "morning",
    "am": "morning",
    "other": "other",
}
PAIN_DESCRIPTORS = ("burning", "tingling", "electric_shooting", "numbness", "touch_pain")
_DESCRIPTOR_ALIASES = {
    "burning": "burning",
    "tingling": "tingling",
    "pins and needles": "tingling",
    "electric_shooting": "electric_shooting",
    "electric shooting": "electric_shooting",
    "electric/shooting": "electric_shooting",
    "electric": "electric_shooting",
    "shooting": "electric_shooting",
    "electric shocks": "electric_shooting",
    "numbness": "numbness",
    "numb": "numbness",
    "touch_pain": "touch_pain",
    "touch pain": "touch_pain",
    "pain to light touch": "touch_pain",
    "light touch": "touch_pain",
    "allodynia": "touch_pain",
}
DESCRIPTOR_LABELS = {
    "burning": "burning",
    "tingling": "tingling / pins and needles",
    "electric_shooting": "electric / shooting",
    "numbness": "numbness",
    "touch_pain": "pain to light touch",
}
CONTEXT_LABELS = {
    "bedtime": "bedtime",
    "night_waking": "night waking",
    "morning": "morning",
    "other": "other",
}


# --------------------------------------------------------------------------- substances
@dataclass(frozen=True, slots=True)
class SubstanceInfo:
    """One entry of the curated substance list.

    ``max_mg`` is a typo-catching ceiling for one dose given in a mass unit (mg, g, mcg):
    well above any usual single dose, so only slips such as "300 g" for "3 g" trip it. It
    is not clinical guidance.
    """

    name: str
    category: str
    aliases: tuple[str, ...] = ()
    max_mg: float | None = None


SUBSTANCES: tuple[SubstanceInfo, ...] = (
    SubstanceInfo(
        "kratom", "kratom", ("mitragyna", "mitragyna speciosa", "ketum", "kratum"), 50_000
    ),
    SubstanceInfo(
        "alcohol",
        "alcohol",
        ("beer", "wine", "spirits", "liquor", "ethanol", "booze", "whisky", "whiskey", "vodka"),
    ),
    SubstanceInfo(
        "caffeine",
        "caffeine",
        ("coffee", "espresso", "energy drink", "cola", "black tea", "green tea"),
        2_000,
    ),
    SubstanceInfo(
        "cannabis", "cannabis", ("marijuana", "weed", "thc", "pot", "hash", "hashish"), 5_000
    ),
    SubstanceInfo("cbd", "cannabis", ("cannabidiol",), 5_000),
    SubstanceInfo("gabapentin", "gabapentinoid", ("neurontin",), 5_000),
    SubstanceInfo("pregabalin", "gabapentinoid", ("lyrica",), 1_200),
    SubstanceInfo("oxycodone", "opioid", ("oxycontin", "percocet", "oxy"), 400),
    SubstanceInfo("hydrocodone", "opioid", ("vicodin", "norco"), 400),
    SubstanceInfo("morphine", "opioid", ("ms contin",), 1_000),
    SubstanceInfo("codeine", "opioid", (), 1_000),
    SubstanceInfo("tramadol", "opioid", ("ultram",), 800),
    SubstanceInfo("tapentadol", "opioid", ("nucynta",), 1_000),
    SubstanceInfo("buprenorphine", "opioid", ("suboxone", "subutex"), 64),
    SubstanceInfo("methadone", "opioid", (), 500),
    SubstanceInfo("hydromorphone", "opioid", ("dilaudid",), 200),
    SubstanceInfo("fentanyl", "opioid", (), 5),
    SubstanceInfo("opioid (other)", "opioid", ("opioid", "opiate", "painkiller")),
    SubstanceInfo("melatonin", "melatonin", (), 100),
    SubstanceInfo(
        "diphenhydramine", "antihistamine", ("benadryl", "zzzquil", "nytol", "sominex"), 500
    ),
    SubstanceInfo("doxylamine", "antihistamine", ("unisom",), 200),
    SubstanceInfo("hydroxyzine", "antihistamine", ("atarax", "vistaril"), 400),
    SubstanceInfo("promethazine", "antihistamine", ("phenergan",), 200),
    SubstanceInfo("antihistamine (other)", "antihistamine", ("antihistamine",)),
    SubstanceInfo("diazepam", "benzodiazepine", ("valium",), 100),
    SubstanceInfo("lorazepam", "benzodiazepine", ("ativan",), 20),
    SubstanceInfo("alprazolam", "benzodiazepine", ("xanax",), 20),
    SubstanceInfo("clonazepam", "benzodiazepine", ("klonopin", "rivotril"), 20),
    SubstanceInfo("temazepam", "benzodiazepine", ("restoril",), 100),
    SubstanceInfo("benzodiazepine (other)", "benzodiazepine", ("benzodiazepine", "benzo")),
    SubstanceInfo("zolpidem", "z-drug", ("ambien", "stilnox"), 40),
    SubstanceInfo("zopiclone", "z-drug", ("imovane", "zimovane"), 40),
    SubstanceInfo("eszopiclone", "z-drug", ("lunesta",), 20),
    SubstanceInfo("zaleplon", "z-drug", ("sonata",), 60),
    SubstanceInfo("trazodone", "antidepressant", ("desyrel",), 600),
    SubstanceInfo("amitriptyline", "antidepressant", ("elavil",), 300),
    SubstanceInfo("mirtazapine", "antidepressant", ("remeron",), 100),
    SubstanceInfo("duloxetine", "antidepressant", ("cymbalta",), 240),
    SubstanceInfo("quetiapine", "antipsychotic", ("seroquel",), 1_000),
    SubstanceInfo("cyclobenzaprine", "muscle relaxant", ("flexeril",), 100),
    SubstanceInfo(
        "nicotine",
        "nicotine",
        ("cigarette", "cigarettes", "tobacco", "vape", "snus", "nicotine pouch"),
    ),
    SubstanceInfo("ibuprofen", "analgesic", ("advil", "nurofen", "motrin"), 3_200),
    SubstanceInfo("paracetamol", "analgesic", ("acetaminophen", "tylenol", "panadol"), 4_000),
    SubstanceInfo("naproxen", "analgesic", ("aleve",), 1_500),
    SubstanceInfo("kava", "herbal", ("kava kava",), 20_000),
    SubstanceInfo("valerian", "herbal", ("valerian root",), 20_000),
    SubstanceInfo("magnesium", "supplement", (), 5_000),
)


def _norm(text: str) -> str:
    """Lower case, runs of spaces, underscores and dashes made one space."""
    return re.sub(r"[\s_\-]+", " ", text.lower()).strip()


_SUBSTANCE_BY_KEY: dict[str, SubstanceInfo] = {
    _norm(alias): info for info in SUBSTANCES for alias in (info.name, *info.aliases)
}

UNITS: dict[str, float] = {
    "mg": 10_000,
    "mcg": 10_000,
    "g": 100,
    "ml": 3_000,
    "drinks": 40,
    "shots": 40,
    "cups": 20,
    "tablets": 20,
    "capsules": 20,
    "puffs": 500,
    "cigarettes": 100,
    "drops": 200,
    "pouches": 50,
    "patches": 5,
    "servings": 20,
}
"""Canonical dose units and the largest plausible single dose in each (typo catching)."""
_UNIT_ALIASES = {
    "milligram": "mg",
    "milligrams": "mg",
    "µg": "mcg",
    "ug": "mcg",
    "microgram": "mcg",
    "micrograms": "mcg",
    "gram": "g",
    "grams": "g",
    "gr": "g",
    "milliliter": "ml",
    "milliliters": "ml",
    "millilitre": "ml",
    "millilitres": "ml",
    "drink": "drinks",
    "standard drink": "drinks",
    "standard drinks": "drinks",
    "shot": "shots",
    "cup": "cups",
    "tablet": "tablets",
    "tab": "tablets",
    "tabs": "tablets",
    "pill": "tablets",
    "pills": "tablets",
    "capsule": "capsules",
    "cap": "capsules",
    "caps": "capsules",
    "puff": "puffs",
    "hit": "puffs",
    "hits": "puffs",
    "cigarette": "cigarettes",
    "cig": "cigarettes",
    "cigs": "cigarettes",
    "drop": "drops",
    "pouch": "pouches",
    "patch": "patches",
    "serving": "servings",
}
_MG_PER_UNIT = {"mg": 1.0, "g": 1_000.0, "mcg": 0.001}

FORMS = (
    "leaf",
    "powder",
    "capsule",
    "tablet",
    "extract",
    "tea",
    "liquid",
    "drink",
    "edible",
    "flower",
    "oil",
    "tincture",
    "cigarette",
    "vape",
    "patch",
    "spray",
    "gum",
    "pouch",
    "injection",
    "other",
)
_FORM_ALIASES = {"capsules": "capsule", "tablets": "tablet", "pill": "tablet", "beverage": "drink"}
ROUTES = (
    "oral",
    "sublingual",
    "smoked",
    "vaped",
    "inhaled",
    "nasal",
    "transdermal",
    "injected",
    "rectal",
    "other",
)
_ROUTE_ALIASES = {"mouth": "oral", "swallowed": "oral", "smoking": "smoked", "vaping": "vaped"}

MAX_NAME_CHARS = 80
MAX_TEXT_CHARS = 2_000


# --------------------------------------------------------------------------- payloads
@dataclass(frozen=True, slots=True)
class Pain:
    """A pain rating: ``rating_nrs`` 0-10, ``context`` one of :data:`PAIN_CONTEXTS`."""

    rating_nrs: int
    context: str
    body_site: str = ""
    descriptors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Substance:
    """A substance taken. ``curated`` is False for free text outside :data:`SUBSTANCES`.

    ``dose`` and ``unit`` are both set or both None; ``unit`` is one of :data:`UNITS`.
    """

    name: str
    name_entered: str
    curated: bool
    category: str
    dose: float | None = None
    unit: str | None = None
    form: str = ""
    route: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class Diary:
    """Consensus Sleep Diary core items (Carney et al. 2012) for one night.

    Times are UTC ns; ``sol_min`` is the sleep-onset latency and ``waso_min`` the total
    duration of the ``awakenings_n`` awakenings before the final awakening, in minutes.
    """

    in_bed_ns: int
    tried_sleep_ns: int
    sol_min: float
    awakenings_n: int
    waso_min: float
    final_wake_ns: int
    out_of_bed_ns: int
    quality_1_5: int
    rested_1_5: int
    comments: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, in the participant's words ("woke from pain")."""

    text: str


Payload = Pain | Substance | Diary | Event
_PAYLOAD_BY_KIND: dict[str, type] = {
    "pain": Pain,
    "substance": Substance,
    "diary": Diary,
    "event": Event,
}


@dataclass(frozen=True, slots=True)
class Annotation:
    """One append-only record.

    Attributes
    ----------
    id
        Content hash (12 hex digits) of every other attribute: the same entry made twice
        gets the same id, so retries cannot duplicate it.
    kind
        ``pain``, ``substance``, ``diary`` or ``event``.
    action
        ``create``; ``edit`` (this record replaces ``ref``); ``delete`` (``ref`` is
        withdrawn; the payload repeats the withdrawn one so the record stands alone).
    ref
        Id of the record replaced or withdrawn; empty for ``create``.
    t_ns
        When it happened, UTC ns (diary: time out of bed).
    recorded_ns
        When it was entered, UTC ns.
    night
        Night label, ISO date of the evening the night starts.
    tz
        IANA time zone the participant entered local times in.
    source
        ``cli``, ``web`` or ``import``.
    payload
        The kind's content.
    """

    id: str
    kind: str
    action: str
    ref: str
    t_ns: int
    recorded_ns: int
    night: str
    tz: str
    source: str
    payload: Payload


# --------------------------------------------------------------------------- time
def zone(tz: str) -> zoneinfo.ZoneInfo:
    """The :class:`zoneinfo.ZoneInfo` for an IANA name, or AnnotationError(field='tz')."""
    if not isinstance(tz, str) or not tz.strip():
        raise AnnotationError(
            "time zone is empty; give an IANA name like Europe/Berlin", field="tz"
        )
    try:
        return zoneinfo.ZoneInfo(tz.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise AnnotationError(
            f"unknown time zone {tz!r}; give an IANA name like Europe/Berlin", field="tz"
        ) from exc


def _to_local(t_ns: int, tz: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_ns // NS_PER_S, tz=zone(tz))


def local_wall_to_ns(day: dt.date, clock: dt.time, tz: str, *, field: str) -> int:
    """UTC ns of a local wall-clock time; refuses times skipped by a DST change.

    An ambiguous time (the repeated hour when clocks go back) means its first occurrence.
    """
    z = zone(tz)
    wall = dt.datetime.combine(day, clock.replace(tzinfo=None))
    aware = wall.replace(tzinfo=z, fold=0)
    utc = aware.astimezone(dt.UTC)
    if utc.astimezone(z).replace(tzinfo=None) != wall:
        raise AnnotationError(
            f"{wall:%Y-%m-%d %H:%M} does not exist in {tz} (clocks skipped forward)", field=field
        )
    return int(utc.timestamp()) * NS_PER_S + clock.microsecond * 1_000


def night_of(t_ns: int, tz: str, cutoff_h: int = NIGHT_CUTOFF_H) -> str:
    """Night label (ISO date) of a UTC time: the local date ``cutoff_h`` hours earlier.

    Delegates to :func:`sensord.clock.night_of`, the project's one night assignment.
    """
    zone(tz)
    return clock.night_of(t_ns, tz, boundary_hour=cutoff_h).isoformat()


def latest_complete_night(now_ns: int, tz: str) -> str:
    """The most recent night whose morning has begun: yesterday's local date."""
    return (_to_local(now_ns, tz).date() - dt.timedelta(days=1)).isoformat()


def parse_night(value: object, *, field: str = "night") -> dt.date:
    """Parse a night label ``YYYY-MM-DD``."""
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        raise AnnotationError(f"expected a date YYYY-MM-DD, got {value!r}", field=field)
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise AnnotationError(f"expected a date YYYY-MM-DD, got {value!r}", field=field) from exc


_CLOCK_RE = re.compile(r"^(\d{1,2})[:.h](\d{2})(?::(\d{2}))?$")
_DATETIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{1,2}:\d{2}(?::\d{2})?)$")


def _parse_clock(text: str, field: str) -> dt.time:
    m = _CLOCK_RE.match(text)
    if not m:
        raise AnnotationError(f"expected a time like 22:40, got {text!r}", field=field)
    hh, mm, ss = int(m[1]), int(m[2]), int(m[3] or 0)
    if hh > 23 or mm > 59 or ss > 59:
        raise AnnotationError(f"{text!r} is not a valid time of day", field=field)
    return dt.time(hh, mm, ss)


def _check_not_future(t_ns: int, now_ns: int, tz: str, field: str) -> None:
    if t_ns > now_ns + FUTURE_GRACE_S * NS_PER_S:
        raise AnnotationError(
            f"{_to_local(t_ns, tz):%Y-%m-%d %H:%M} is in the future "
            f"(now {_to_local(now_ns, tz):%Y-%m-%d %H:%M} {tz})",
            field=field,
        )
    if t_ns < now_ns - MAX_AGE_DAYS * 86_400 * NS_PER_S:
        raise AnnotationError(
            f"{_to_local(t_ns, tz):%Y-%m-%d %H:%M} is more than {MAX_AGE_DAYS} days ago",
            field=field,
        )


def resolve_time(value: object, *, now_ns: int, tz: str, field: str = "at") -> int:
    """UTC ns of a participant-entered time.

    Accepts ``None``/``""``/``"now"`` (now), an ``int`` (UTC ns, passed through),
    ``"HH:MM[:SS]"`` (its most recent occurrence, allowing :data:`FUTURE_GRACE_S`),
    ``"YYYY-MM-DD HH:MM"`` or ``"YYYY-MM-DDTHH:MM"`` (local), or ISO 8601 with an offset.
    Times in the future or more than :data:`MAX_AGE_DAYS` ago are refused.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "now")):
        return now_ns
    if isinstance(value, bool):
        raise AnnotationError(f"expected a time, got {value!r}", field=field)
    if isinstance(value, int):
        t_ns = value
    elif isinstance(value, str):
        text = value.strip()
        if _CLOCK_RE.match(text):
            clock = _parse_clock(text, field)
            today = _to_local(now_ns, tz).date()
            t_ns = local_wall_to_ns(today, clock, tz, field=field)
            if t_ns > now_ns + FUTURE_GRACE_S * NS_PER_S:
                t_ns = local_wall_to_ns(today - dt.timedelta(days=1), clock, tz, field=field)
        elif m := _DATETIME_RE.match(text):
            day = parse_night(m[1], field=field)
            t_ns = local_wall_to_ns(day, _parse_clock(m[2], field), tz, field=field)
        else:
            try:
                parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError as exc:
                raise AnnotationError(
                    f"expected a time like 22:40 or 2026-11-24 22:40, got {value!r}", field=field
                ) from exc
            if parsed.tzinfo is None:
                t_ns = local_wall_to_ns(parsed.date(), parsed.time(), tz, field=field)
            else:
                t_ns = int(parsed.timestamp()) * NS_PER_S + parsed.microsecond * 1_000
    else:
        raise AnnotationError(f"expected a time, got {value!r}", field=field)
    _check_not_future(t_ns, now_ns, tz, field)
    return t_ns


def resolve_night_time(value: object, *, night: dt.date, tz: str, field: str) -> int:
    """UTC ns of a diary time: ``HH:MM`` from noon on belongs to the night's evening,
    before noon to the next morning; full date-times and ints are taken as given."""
    if isinstance(value, bool) or value is None:
        raise AnnotationError("a time is required (like 23:15)", field=field)
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value.strip():
        raise AnnotationError("a time is required (like 23:15)", field=field)
    text = value.strip()
    if _CLOCK_RE.match(text):
        clock = _parse_clock(text, field)
        day = night if clock.hour >= NIGHT_CUTOFF_H else night + dt.timedelta(days=1)
        return local_wall_to_ns(day, clock, tz, field=field)
    if m := _DATETIME_RE.match(text):
        return local_wall_to_ns(
            parse_night(m[1], field=field), _parse_clock(m[2], field), tz, field=field
        )
    raise AnnotationError(f"expected a time like 23:15, got {value!r}", field=field)


# --------------------------------------------------------------------------- field parsers
def _text(value: object, *, field: str, max_chars: int, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise AnnotationError(f"expected text, got {type(value).__name__}", field=field)
    text = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    bad = [c for c in text if unicodedata.category(c) == "Cc" and c not in "\n\t"]
    if bad:
        raise AnnotationError(
            f"contains a control character (U+{ord(bad[0]):04X}); remove it", field=field
        )
    if required and not text:
        raise AnnotationError("must not be empty", field=field)
    if len(text) > max_chars:
        raise AnnotationError(f"is {len(text)} characters long; at most {max_chars}", field=field)
    return text


def _choice(
    value: object, *, field: str, choices: Sequence[str], aliases: Mapping[str, str]
) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    if not isinstance(value, str):
        raise AnnotationError(f"expected one of {', '.join(choices)}", field=field)
    key = _norm(value)
    for cand in (key, key.replace(" ", "_")):
        if cand in choices:
            return cand
        if cand in aliases:
            return aliases[cand]
    raise AnnotationError(f"{value!r} is not one of {', '.join(choices)}", field=field)


def _integer(value: object, *, field: str, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or value is None:
        raise AnnotationError(f"{what} is required: a whole number {lo}-{hi}", field=field)
    if isinstance(value, float):
        if not value.is_integer():
            raise AnnotationError(f"{value!r} is not a whole number {lo}-{hi}", field=field)
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d+", text):
            raise AnnotationError(
                f"{value!r} is not a whole number {lo}-{hi}" if text else f"{what} is required",
                field=field,
            )
        value = int(text)
    if not isinstance(value, int):
        raise AnnotationError(f"expected a whole number {lo}-{hi}", field=field)
    if not lo <= value <= hi:
        raise AnnotationError(f"{value} is out of range: {what} must be {lo}-{hi}", field=field)
    return value


def _number(value: object, *, field: str) -> float:
    if isinstance(value, bool) or value is None:
        raise AnnotationError("a number is required", field=field)
    if isinstance(value, str):
        text = value.strip().replace(",", ".")
        try:
            value = float(text)
        except ValueError as exc:
            raise AnnotationError(f"{value!r} is not a number", field=field) from exc
    if not isinstance(value, int | float):
        raise AnnotationError("expected a number", field=field)
    out = float(value)
    if not math.isfinite(out):
        raise AnnotationError(f"{value!r} is not a finite number", field=field)
    return out


def _minutes(value: object, *, field: str, hi: float) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise AnnotationError("minutes are required (0 if none)", field=field)
    out = _number(value, field=field)
    if out < 0:
        raise AnnotationError(f"{out:g} min is negative", field=field)
    if out > hi:
        raise AnnotationError(f"{out:g} min is more than {hi:g} min", field=field)
    return out


def pain_descriptors(value: object) -> tuple[str, ...]:
    """Canonical neuropathic descriptors from a list or a comma-separated string."""
    if value is None:
        return ()
    items: Iterable[object]
    items = value.split(",") if isinstance(value, str) else value  # type: ignore[assignment]
    if not isinstance(items, Iterable):
        raise AnnotationError("expected a list of descriptors", field="descriptors")
    found: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise AnnotationError(f"{item!r} is not a descriptor", field="descriptors")
        if not item.strip():
            continue
        found.add(
            _choice(
                item, field="descriptors", choices=PAIN_DESCRIPTORS, aliases=_DESCRIPTOR_ALIASES
            )
        )
    return tuple(d for d in PAIN_DESCRIPTORS if d in found)


def lookup_substance(name: str) -> SubstanceInfo | None:
    """The curated entry for a name or alias (case, spaces, dashes ignored), else None."""
    return _SUBSTANCE_BY_KEY.get(_norm(name))


def unit_of(value: object) -> str:
    """Canonical dose unit from a name or alias, or AnnotationError(field='unit')."""
    if not isinstance(value, str) or not value.strip():
        raise AnnotationError(
            f"a unit is required with a dose: one of {', '.join(UNITS)}", field="unit"
        )
    key = _norm(value).replace(".", "")
    if key in UNITS:
        return key
    if key in _UNIT_ALIASES:
        return _UNIT_ALIASES[key]
    raise AnnotationError(f"{value!r} is not a known unit: one of {', '.join(UNITS)}", field="unit")


# --------------------------------------------------------------------------- records
def _serialise(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    return value


def to_fields(a: Annotation) -> dict[str, Any]:
    """Flat JSON-ready dict of a record: common attributes plus the payload's fields."""
    out: dict[str, Any] = {
        f.name: getattr(a, f.name) for f in fields(Annotation) if f.name != "payload"
    }
    for f in fields(a.payload):
        out[f.name] = _serialise(getattr(a.payload, f.name))
    return out


def from_fields(d: Mapping[str, Any]) -> Annotation:
    """Inverse of :func:`to_fields`; checks the id still matches the content."""
    try:
        kind = d["kind"]
        cls = _PAYLOAD_BY_KIND[kind]
        payload_kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in d:
                v = d[f.name]
                payload_kw[f.name] = tuple(v) if isinstance(v, list) else v
        payload = cls(**payload_kw)
        common = {f.name: d[f.name] for f in fields(Annotation) if f.name != "payload"}
    except KeyError as exc:
        raise AnnotationError(f"record lacks {exc.args[0]!r}", field=str(exc.args[0])) from exc
    except TypeError as exc:
        raise AnnotationError(f"record is malformed: {exc}", field="payload") from exc
    a = Annotation(payload=payload, **common)
    if _content_id(a) != a.id:
        raise AnnotationError(f"record {a.id} does not match its content", field="id")
    return a


def _content_id(a: Annotation) -> str:
    body = to_fields(a)
    body.pop("id")
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def _record(
    kind: str,
    payload: Payload,
    *,
    t_ns: int,
    night: str,
    now_ns: int,
    tz: str,
    source: str,
    action: str = "create",
    ref: str = "",
) -> Annotation:
    if source not in SOURCES:
        raise AnnotationError(f"{source!r} is not one of {', '.join(SOURCES)}", field="source")
    a = Annotation(
        id="",
        kind=kind,
        action=action,
        ref=ref,
        t_ns=int(t_ns),
        recorded_ns=int(now_ns),
        night=night,
        tz=tz,
        source=source,
        payload=payload,
    )
    return replace(a, id=_content_id(a))


# --------------------------------------------------------------------------- builders
def pain(
    rating: object,
    context: object = "other",
    *,
    now_ns: int,
    tz: str,
    at: object = None,
    body_site: object = None,
    descriptors: object = None,
    source: str = "cli",
) -> Annotation:
    """A pain rating (0-10 NRS) with its context, optional body site and descriptors."""
    zone(tz)
    rating_nrs = _integer(rating, field="rating", lo=0, hi=10, what="pain rating")
    ctx = _choice(context, field="context", choices=PAIN_CONTEXTS, aliases=_PAIN_CONTEXT_ALIASES)
    t_ns = resolve_time(at, now_ns=now_ns, tz=tz)
    payload = Pain(
        rating_nrs=rating_nrs,
        context=ctx or "other",
        body_site=_text(body_site, field="body_site", max_chars=MAX_NAME_CHARS),
        descriptors=pain_descriptors(descriptors),
    )
    return _record(
        "pain", payload, t_ns=t_ns, night=night_of(t_ns, tz), now_ns=now_ns, tz=tz, source=source
    )


def substance(
    name: object,
    *,
    now_ns: int,
    tz: str,
    dose: object = None,
    unit: object = None,
    form: object = None,
    route: object = None,
    at: object = None,
    note: object = None,
    source: str = "cli",
) -> Annotation:
    """A substance taken; dose and unit together or neither, within :data:`UNITS` bounds."""
    zone(tz)
    entered = _text(name, field="name", max_chars=MAX_NAME_CHARS, required=True)
    info = lookup_substance(entered)
    has_dose = dose is not None and not (isinstance(dose, str) and not dose.strip())
    has_unit = unit is not None and not (isinstance(unit, str) and not unit.strip())
    dose_v: float | None = None
    unit_v: str | None = None
    if has_dose:
        dose_v = _number(dose, field="dose")
        if dose_v <= 0:
            raise AnnotationError(
                f"{dose_v:g} is not a dose: it must be greater than 0", field="dose"
            )
        unit_v = unit_of(unit)
        limit = UNITS[unit_v]
        if dose_v > limit:
            raise AnnotationError(
                f"{dose_v:g} {unit_v} is implausible (more than {limit:g} {unit_v}); check the "
                "number and the unit",
                field="dose",
            )
        if info is not None and info.max_mg is not None and unit_v in _MG_PER_UNIT:
            mg = dose_v * _MG_PER_UNIT[unit_v]
            if mg > info.max_mg:
                raise AnnotationError(
                    f"{dose_v:g} {unit_v} of {info.name} is implausible (more than "
                    f"{info.max_mg:g} mg in one dose); check the number and the unit",
                    field="dose",
                )
    elif has_unit:
        unit_of(unit)
        raise AnnotationError("a dose is required when a unit is given", field="dose")
    t_ns = resolve_time(at, now_ns=now_ns, tz=tz)
    payload = Substance(
        name=info.name if info else _norm(entered),
        name_entered=entered,
        curated=info is not None,
        category=info.category if info else "other",
        dose=dose_v,
        unit=unit_v,
        form=_choice(form, field="form", choices=FORMS, aliases=_FORM_ALIASES),
        route=_choice(route, field="route", choices=ROUTES, aliases=_ROUTE_ALIASES),
        note=_text(note, field="note", max_chars=MAX_TEXT_CHARS),
    )
    return _record(
        "substance",
        payload,
        t_ns=t_ns,
        night=night_of(t_ns, tz, SUBSTANCE_DAY_START_H),
        now_ns=now_ns,
        tz=tz,
        source=source,
    )


def diary(
    *,
    now_ns: int,
    tz: str,
    night: object = None,
    in_bed: object,
    tried_sleep: object,
    sol_min: object,
    awakenings: object = 0,
    waso_min: object = 0,
    final_wake: object,
    out_of_bed: object,
    quality: object,
    rested: object,
    comments: object = None,
    source: str = "cli",
) -> Annotation:
    """A Consensus Sleep Diary entry for ``night`` (default: last night).

    Checks: the night has happened; in bed <= tried to sleep <= final awakening <= out of
    bed, none in the future; latency plus awake time fit between trying to sleep and the
    final awakening; awake time needs at least one awakening.
    """
    zone(tz)
    latest = dt.date.fromisoformat(latest_complete_night(now_ns, tz))
    night_d = latest if night is None or night == "" else parse_night(night)
    if night_d > latest:
        raise AnnotationError(
            f"night {night_d} has not happened yet (the latest night is {latest})", field="night"
        )
    times = {}
    for fname, raw in (
        ("in_bed", in_bed),
        ("tried_sleep", tried_sleep),
        ("final_wake", final_wake),
        ("out_of_bed", out_of_bed),
    ):
        times[fname] = resolve_night_time(raw, night=night_d, tz=tz, field=fname)
    labels = {
        "in_bed": "time into bed",
        "tried_sleep": "time tried to sleep",
        "final_wake": "final awakening",
        "out_of_bed": "time out of bed",
    }
    order = list(times)
    for earlier, later in itertools.pairwise(order):
        if times[later] < times[earlier]:
            raise AnnotationError(
                f"{labels[later]} ({_to_local(times[later], tz):%H:%M}) is before "
                f"{labels[earlier]} ({_to_local(times[earlier], tz):%H:%M})",
                field=later,
            )
    if times["out_of_bed"] - times["in_bed"] > 24 * 3_600 * NS_PER_S:
        raise AnnotationError("more than 24 hours after time into bed", field="out_of_bed")
    for fname in order:
        _check_not_future(times[fname], now_ns, tz, fname)
    window_min = (times["final_wake"] - times["tried_sleep"]) / (60 * NS_PER_S)
    sol = _minutes(sol_min, field="sol_min", hi=24 * 60)
    if sol > window_min:
        raise AnnotationError(
            f"{sol:g} min to fall asleep is longer than the {window_min:g} min between trying "
            "to sleep and the final awakening",
            field="sol_min",
        )
    n_awake = _integer(
        0 if awakenings is None or awakenings == "" else awakenings,
        field="awakenings",
        lo=0,
        hi=60,
        what="number of awakenings",
    )
    waso = _minutes(
        0 if waso_min is None or waso_min == "" else waso_min, field="waso_min", hi=24 * 60
    )
    if sol + waso > window_min:
        raise AnnotationError(
            f"{sol:g} min to fall asleep plus {waso:g} min awake is more than the "
            f"{window_min:g} min between trying to sleep and the final awakening",
            field="waso_min",
        )
    if waso > 0 and n_awake == 0:
        raise AnnotationError(
            f"{waso:g} min awake during the night but 0 awakenings", field="awakenings"
        )
    payload = Diary(
        in_bed_ns=times["in_bed"],
        tried_sleep_ns=times["tried_sleep"],
        sol_min=sol,
        awakenings_n=n_awake,
        waso_min=waso,
        final_wake_ns=times["final_wake"],
        out_of_bed_ns=times["out_of_bed"],
        quality_1_5=_integer(quality, field="quality", lo=1, hi=5, what="sleep quality"),
        rested_1_5=_integer(rested, field="rested", lo=1, hi=5, what="feeling rested"),
        comments=_text(comments, field="comments", max_chars=MAX_TEXT_CHARS),
    )
    return _record(
        "diary",
        payload,
        t_ns=times["out_of_bed"],
        night=night_d.isoformat(),
        now_ns=now_ns,
        tz=tz,
        source=source,
    )


def event(
    text: object, *, now_ns: int, tz: str, at: object = None, source: str = "cli"
) -> Annotation:
    """A free-text event ("woke from pain", "bathroom") at ``at`` (default now)."""
    zone(tz)
    payload = Event(text=_text(text, field="text", max_chars=MAX_TEXT_CHARS, required=True))
    t_ns = resolve_time(at, now_ns=now_ns, tz=tz)
    return _record(
        "event", payload, t_ns=t_ns, night=night_of(t_ns, tz), now_ns=now_ns, tz=tz, source=source
    )


# --------------------------------------------------------------------------- history
def current(history: Iterable[Annotation]) -> list[Annotation]:
    """Annotations in force: drop every record a later edit or delete refers to, and the
    deletions themselves. Sorted by ``t_ns`` then ``recorded_ns``."""
    records = list(history)
    replaced = {a.ref for a in records if a.ref}
    live = [a for a in records if a.id not in replaced and a.action != "delete"]
    return sorted(live, key=lambda a: (a.t_ns, a.recorded_ns, a.id))


def find(history: Sequence[Annotation], id_prefix: str) -> Annotation:
    """The record whose id starts with ``id_prefix`` (at least 4 hex digits, unique)."""
    prefix = id_prefix.strip().lower() if isinstance(id_prefix, str) else ""
    if not re.fullmatch(r"[0-9a-f]{4,12}", prefix):
        raise AnnotationError(
            f"{id_prefix!r} is not an annotation id (4-12 hex digits; see `sensord notes list`)",
            field="id",
        )
    hits = [a for a in history if a.id.startswith(prefix)]
    if not hits:
        raise AnnotationError(f"no annotation with id {prefix}", field="id")
    if len({a.id for a in hits}) > 1:
        raise AnnotationError(f"id {prefix} is ambiguous; give more digits", field="id")
    return hits[0]


def _check_live(history: Sequence[Annotation], target: Annotation) -> None:
    if target.action == "delete":
        raise AnnotationError(f"{target.id} is a deletion record, not an annotation", field="id")
    for a in history:
        if a.ref == target.id:
            if a.action == "delete":
                raise AnnotationError(f"{target.id} was deleted by {a.id}", field="id")
            raise AnnotationError(
                f"{target.id} was replaced by {a.id}; edit or delete {a.id} instead", field="id"
            )


def _inputs_of(a: Annotation) -> dict[str, object]:
    """Builder keyword arguments that rebuild ``a``'s payload."""
    p = a.payload
    if isinstance(p, Pain):
        return {
            "rating": p.rating_nrs,
            "context": p.context,
            "at": a.t_ns,
            "body_site": p.body_site,
            "descriptors": list(p.descriptors),
        }
    if isinstance(p, Substance):
        return {
            "name": p.name_entered,
            "dose": p.dose,
            "unit": p.unit,
            "form": p.form,
            "route": p.route,
            "at": a.t_ns,
            "note": p.note,
        }
    if isinstance(p, Diary):
        return {
            "night": a.night,
            "in_bed": p.in_bed_ns,
            "tried_sleep": p.tried_sleep_ns,
            "sol_min": p.sol_min,
            "awakenings": p.awakenings_n,
            "waso_min": p.waso_min,
            "final_wake": p.final_wake_ns,
            "out_of_bed": p.out_of_bed_ns,
            "quality": p.quality_1_5,
            "rested": p.rested_1_5,
            "comments": p.comments,
        }
    return {"text": p.text, "at": a.t_ns}


EDITABLE = {
    "pain": ("rating", "context", "at", "body_site", "descriptors"),
    "substance": ("name", "dose", "unit", "form", "route", "at", "note"),
    "diary": (
        "night",
        "in_bed",
        "tried_sleep",
        "sol_min",
        "awakenings",
        "waso_min",
        "final_wake",
        "out_of_bed",
        "quality",
        "rested",
        "comments",
    ),
    "event": ("text", "at"),
}
"""Fields :func:`edit` accepts for each kind."""


def build(
    kind: str, inputs: Mapping[str, object], *, now_ns: int, tz: str, source: str
) -> Annotation:
    """Create a record of ``kind`` from builder keyword arguments (:data:`EDITABLE` names)."""
    if kind not in EDITABLE:
        raise AnnotationError(f"{kind!r} is not one of {', '.join(KINDS)}", field="kind")
    unknown = [k for k in inputs if k not in EDITABLE[kind]]
    if unknown:
        raise AnnotationError(
            f"a {kind} annotation has no field {unknown[0]!r}; fields: {', '.join(EDITABLE[kind])}",
            field=unknown[0],
        )
    kw = dict(inputs)
    if kind == "pain":
        rating = kw.pop("rating", None)
        return pain(rating, kw.pop("context", "other"), now_ns=now_ns, tz=tz, source=source, **kw)
    if kind == "substance":
        return substance(kw.pop("name", None), now_ns=now_ns, tz=tz, source=source, **kw)
    if kind == "diary":
        return diary(now_ns=now_ns, tz=tz, source=source, **kw)
    return event(kw.pop("text", None), now_ns=now_ns, tz=tz, source=source, **kw)


def edit(
    history: Sequence[Annotation],
    target: Annotation,
    changes: Mapping[str, object],
    *,
    now_ns: int,
    source: str = "cli",
) -> Annotation:
    """A new record replacing ``target`` with ``changes`` applied (validated afresh).

    Times given as ``HH:MM`` resolve as on entry; unchanged fields keep their values.
    """
    _check_live(history, target)
    allowed = EDITABLE[target.kind]
    unknown = [k for k in changes if k not in allowed]
    if unknown:
        raise AnnotationError(
            f"a {target.kind} annotation has no field {unknown[0]!r}; editable: "
            f"{', '.join(allowed)}",
            field=unknown[0],
        )
    if not changes:
        raise AnnotationError("nothing to change", field="changes")
    inputs = _inputs_of(target)
    inputs.update(changes)
    if target.kind == "diary" and "night" in changes:
        for k in ("in_bed", "tried_sleep", "final_wake", "out_of_bed"):
            if k not in changes:
                raise AnnotationError(
                    f"moving a diary to another night needs all four times; {k} is missing",
                    field=k,
                )
    fresh = build(target.kind, inputs, now_ns=now_ns, tz=target.tz, source=source)
    if fresh.payload == target.payload and fresh.t_ns == target.t_ns:
        raise AnnotationError("the edit changes nothing", field="changes")
    return _revision(fresh, "edit", target, now_ns=now_ns, source=source)


def _revision(
    content: Annotation, action: str, target: Annotation, *, now_ns: int, source: str
) -> Annotation:
    """A record of ``action`` on ``target`` carrying ``content``'s kind, payload and times."""
    return _record(
        content.kind,
        content.payload,
        t_ns=content.t_ns,
        night=content.night,
        now_ns=now_ns,
        tz=content.tz,
        source=source,
        action=action,
        ref=target.id,
    )


def delete(
    history: Sequence[Annotation], target: Annotation, *, now_ns: int, source: str = "cli"
) -> Annotation:
    """A record withdrawing ``target`` (which stays in the history)."""
    _check_live(history, target)
    return _revision(target, "delete", target, now_ns=now_ns, source=source)


# --------------------------------------------------------------------------- views
def diary_metrics(d: Diary) -> dict[str, float]:
    """Sleep variables derived from a diary as defined by Carney et al. (2012).

    ``tib_min`` time in bed = out of bed - into bed; ``tst_min`` total sleep time =
    (final awakening - tried to sleep) - SOL - WASO; ``se_pct`` sleep efficiency =
    100 * TST / TIB.
    """
    tib = (d.out_of_bed_ns - d.in_bed_ns) / (60 * NS_PER_S)
    tst = (d.final_wake_ns - d.tried_sleep_ns) / (60 * NS_PER_S) - d.sol_min - d.waso_min
    return {
        "tib_min": tib,
        "tst_min": tst,
        "se_pct": 100.0 * tst / tib if tib > 0 else float("nan"),
        "sol_min": d.sol_min,
        "waso_min": d.waso_min,
        "awakenings_n": float(d.awakenings_n),
        "quality_1_5": float(d.quality_1_5),
        "rested_1_5": float(d.rested_1_5),
    }


def last_doses(history: Iterable[Annotation], limit: int = 6) -> list[Annotation]:
    """The participant's most recently used substances, newest first, one per
    (name, unit, form), each its latest record: the web page's one-tap entries."""
    seen: set[tuple[str, str | None, str]] = set()
    out: list[Annotation] = []
    for a in sorted(current(history), key=lambda a: (a.t_ns, a.recorded_ns), reverse=True):
        p = a.payload
        if not isinstance(p, Substance):
            continue
        key = (p.name, p.unit, p.form)
        if key in seen:
            continue
        seen.add(key)
        out.append(a)
        if len(out) >= limit:
            break
    return out


def repeated_entry(
    history: Iterable[Annotation], record: Annotation, window_s: float = 10.0
) -> Annotation | None:
    """A record in force with the same kind, content and time that was entered less than
    ``window_s`` before ``record``: a double tap or a re-sent form, not a new entry."""
    for a in current(history):
        if (
            a.kind == record.kind
            and a.payload == record.payload
            and abs(a.t_ns - record.t_ns) <= window_s * NS_PER_S
            and 0 <= record.recorded_ns - a.recorded_ns <= window_s * NS_PER_S
        ):
            return a
    return None


def summary(a: Annotation) -> str:
    """Short text of the content alone (no id, no time): Grafana's annotation text."""
    p = a.payload
    if isinstance(p, Pain):
        text = f"Pain {p.rating_nrs}/10, {CONTEXT_LABELS[p.context]}"
        if p.body_site:
            text += f", {p.body_site}"
        if p.descriptors:
            text += " (" + ", ".join(DESCRIPTOR_LABELS[d] for d in p.descriptors) + ")"
        return text
    if isinstance(p, Substance):
        text = p.name_entered + (f" {p.dose:g} {p.unit}" if p.dose is not None else "")
        return text + "".join(f" {x}" for x in (p.form, p.route) if x)
    if isinstance(p, Diary):
        tst = diary_metrics(p)["tst_min"]
        return (
            f"Diary for the night of {a.night}: quality {p.quality_1_5}/5, "
            f"rested {p.rested_1_5}/5, slept {tst:.0f} min"
        )
    return p.text


def describe(a: Annotation) -> str:
    """One human-readable line (local time, kind, content)."""
    when = _to_local(a.t_ns, a.tz).strftime("%Y-%m-%d %H:%M")
    p = a.payload
    if isinstance(p, Pain):
        body = f"pain {p.rating_nrs}/10 ({CONTEXT_LABELS[p.context]})"
        if p.body_site:
            body += f" at {p.body_site}"
        if p.descriptors:
            body += ": " + ", ".join(DESCRIPTOR_LABELS[d] for d in p.descriptors)
    elif isinstance(p, Substance):
        body = f"{p.name_entered}" + ("" if p.curated else " (not in list)")
        if p.dose is not None:
            body += f" {p.dose:g} {p.unit}"
        body += "".join(f" {x}" for x in (p.form, p.route) if x)
        if p.note:
            body += f" - {p.note}"
    elif isinstance(p, Diary):
        m = diary_metrics(p)
        tz = a.tz
        body = (
            f"diary: bed {_to_local(p.in_bed_ns, tz):%H:%M}, lights out "
            f"{_to_local(p.tried_sleep_ns, tz):%H:%M}, asleep after {p.sol_min:g} min, "
            f"{p.awakenings_n} awakenings ({p.waso_min:g} min), woke "
            f"{_to_local(p.final_wake_ns, tz):%H:%M}, up {_to_local(p.out_of_bed_ns, tz):%H:%M}; "
            f"quality {p.quality_1_5}/5, rested {p.rested_1_5}/5, TST {m['tst_min']:.0f} min"
        )
        if p.comments:
            body += f" - {p.comments}"
    else:
        body = f"event: {p.text}"
    tag = {"create": "", "edit": f" [edit of {a.ref}]", "delete": f" [deletes {a.ref}]"}[a.action]
    return f"{a.id}  {when}  night {a.night}  {body}{tag}"
