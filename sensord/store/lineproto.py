"""InfluxDB line protocol. Pure: values in, bytes out.

Two paths produce the same bytes:

* :func:`encode_line` for one point from Python values. Its output is byte-identical to
  ``influxdb_client.Point(...).to_line_protocol()`` for the same measurement, tags,
  fields and integer timestamp (tags and fields sorted by key, ``None`` and non-finite
  floats dropped, whole floats written without ``.0``, integers with ``i``).
* :func:`encode_columns` for a numpy batch with constant tags (one heart-rate stream,
  one night of epochs): the same bytes, assembled with array operations, or for up to
  :data:`SMALL_BATCH` points column by column in Python (keys escaped once per batch).

Escaping (InfluxDB line protocol reference, "Special characters"): measurement: comma,
space; tag keys, tag values and field keys: comma, equals sign, space; string field
values: double quote and backslash. Newline, tab and carriage return in names are written
as ``\\n``, ``\\t``, ``\\r`` like influxdb-client does (InfluxDB then stores them as two
characters, which is why :mod:`sensord.store.schema` refuses control characters in tags).

:func:`schema_line` / :func:`schema_columns` validate against :mod:`sensord.store.schema`
and convert values to the schema's field type first (an integer dose becomes a float, so
a field never changes type).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord.store import schema
from sensord.store.schema import FieldType, SchemaError

_ESC_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESC_KEY = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_ESC_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


def escape_measurement(name: str) -> str:
    """Escape a measurement name."""
    return name.translate(_ESC_MEASUREMENT)


def escape_key(key: str) -> str:
    """Escape a tag key, tag value or field key."""
    return key.translate(_ESC_KEY)


def escape_tag_value(value: str) -> str:
    """Escape a tag value; a trailing backslash gets a space appended (as influxdb-client)."""
    out = value.translate(_ESC_KEY)
    return out + " " if out.endswith("\\") else out


def escape_string(value: str) -> str:
    """Escape the inside of a double-quoted string field value."""
    return value.translate(_ESC_STRING)


def format_float(value: float) -> str:
    """Shortest round-trip ``repr``, without a trailing ``.0`` (``60.0`` -> ``60``)."""
    return repr(float(value)).removesuffix(".0")


_NON_FINITE = frozenset(("nan", "inf", "-inf"))
"""``repr`` of the floats that are left out."""


def _field_texts(prefix: str, values: list[Any], kind: str) -> list[str | None]:
    """``prefix`` + the text of each value of one column (``None`` where it is absent).

    ``values`` are Python values of one :func:`_kind_of` kind: floats (non-finite ones
    absent), ints, bools, or strs and ``None``. ``prefix`` is the escaped key and ``=``.
    """
    if kind == "f":
        return [
            None if s in _NON_FINITE else prefix + s.removesuffix(".0") for s in map(repr, values)
        ]
    if kind == "i":
        return [f"{prefix}{v}i" for v in values]
    if kind == "b":
        yes, no = prefix + "true", prefix + "false"
        return [yes if v else no for v in values]
    return [None if v is None else f'{prefix}"{escape_string(v)}"' for v in values]


def _is_float(value: object) -> bool:
    return isinstance(value, float | np.floating)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def format_field(key: str, value: object) -> str | None:
    """``key=value`` with the value typed by its Python type; ``None`` if it is skipped."""
    if value is None:
        return None
    if _is_float(value):
        kind, value = "f", float(value)  # type: ignore[arg-type]
    elif _is_int(value):
        kind, value = "i", int(value)  # type: ignore[call-overload]
    elif isinstance(value, bool | np.bool_):
        kind = "b"
    elif isinstance(value, str):
        kind = "s"
    else:
        raise SchemaError(
            f"unsupported field type {type(value).__name__}", measurement="?", key=key
        )
    return _field_texts(escape_key(key) + "=", [value], kind)[0]


def _head(measurement: str, tags: Mapping[str, str | None]) -> str:
    """Escaped measurement and tags sorted by key (``None`` and empty tags dropped)."""
    parts = [escape_measurement(measurement)]
    for key, tag_value in sorted(tags.items()):
        if tag_value is None:
            continue
        k, v = escape_key(key), escape_tag_value(tag_value)
        if k and v:
            parts.append(f"{k}={v}")
    return ",".join(parts)


def encode_line(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, object],
    t_ns: int | None,
) -> str:
    """One point as a line (no trailing newline); ``""`` when no field is left.

    Tags and fields are sorted by key; ``None`` tags/fields, empty tag values and
    non-finite floats are dropped -- exactly what influxdb-client's ``Point`` does.
    """
    field_parts = []
    for key, field_value in sorted(fields.items()):
        part = format_field(key, field_value)
        if part is not None:
            field_parts.append(part)
    if not field_parts:
        return ""
    line = f"{_head(measurement, tags)} {','.join(field_parts)}"
    return line if t_ns is None else f"{line} {int(t_ns)}"


# --------------------------------------------------------------------------------------
# Columnar path
# --------------------------------------------------------------------------------------

_BOOL_TEXT = np.array([b"false", b"true"], dtype="S5")


def _matrix(values: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """An ``S`` array as a writable (n, itemsize) uint8 matrix, NUL-padded on the right."""
    width = values.dtype.itemsize
    return np.frombuffer(values.tobytes(), dtype=np.uint8).reshape(values.size, width).copy()


def _constant(text: bytes, n: int) -> npt.NDArray[np.uint8]:
    return np.tile(np.frombuffer(text, dtype=np.uint8), (n, 1))


_POW10 = 10 ** np.arange(19, dtype=np.int64)
_FRAC_DIGITS = 6
"""Decimals tried by the fast float path; values needing more use numpy's repr."""


def _digits(magnitude: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.uint8]:
    """ASCII digits of non-negative ints, right-aligned in ``width`` columns, NUL-padded."""
    n = magnitude.size
    digits = np.empty((width, n), dtype=np.uint8)
    v = magnitude.copy()
    for row in range(width - 1, -1, -1):
        v, r = np.divmod(v, 10)
        digits[row] = r
    digits += 48
    ndig = np.maximum(np.searchsorted(_POW10, magnitude, side="right"), 1)
    digits[np.arange(width)[:, None] < (width - ndig)[None, :]] = 0
    return digits.T


def _int_text(values: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """Decimal text of int64 values as a NUL-padded byte matrix (sign column + 19 digits)."""
    v = np.asarray(values, dtype=np.int64)
    if v.size and v.min() == np.iinfo(np.int64).min:  # |min| does not fit: slow path
        return _matrix(v.astype("S21"))
    if v.size and v.min() >= 0:
        return _digits(v, 19)
    sign = np.where(v < 0, ord("-"), 0).astype(np.uint8)[:, None]
    return np.concatenate([sign, _digits(np.abs(v), 19)], axis=1)


def _float_text(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """Python ``repr`` of each float (``.0`` dropped) as a NUL-padded byte matrix.

    Values that are exactly the double nearest to a decimal with at most six decimals
    (sensor readings: 58.9 bpm, 812 ms) are written from integer digits: their shortest
    round-trip repr is that decimal, because any other decimal of equal or fewer digits
    differs by at least 1e-6, far more than the spacing of doubles below 2**50 * 1e-6.
    Everything else (and magnitudes where repr switches to exponent notation, below 1e-4
    or from 1e16) goes through numpy's shortest-repr conversion.
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    ax = np.abs(x)
    scale = 10.0**_FRAC_DIGITS
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.rint(ax * scale)
    fast = (((ax >= 1e-4) & (q < 2.0**50)) | (x == 0)) & (q / scale == ax)
    width = 1 + 16 + 1 + _FRAC_DIGITS
    if fast.all():
        out = np.empty((n, width), dtype=np.uint8)
        qi = q.astype(np.int64)
        xs = x
    else:
        out = np.zeros((n, max(width, 32)), dtype=np.uint8)
        qi = q[fast].astype(np.int64)
        xs = x[fast]
    if qi.size:
        int_part, frac = np.divmod(qi, _POW10[_FRAC_DIGITS])
        block = out if fast.all() else np.empty((qi.size, width), dtype=np.uint8)
        block[:, 0] = np.where(np.signbit(xs), ord("-"), 0)
        block[:, 1:17] = _digits(int_part, 16)
        fd = np.empty((_FRAC_DIGITS, qi.size), dtype=np.uint8)
        for row in range(_FRAC_DIGITS - 1, -1, -1):
            frac, r = np.divmod(frac, 10)
            fd[row] = r
        # trailing zeros of the fraction go (and the point with them if nothing is left)
        trailing = np.cumprod(fd[::-1] == 0, axis=0, dtype=np.uint8)[::-1].astype(bool)
        fd += 48
        fd[trailing] = 0
        block[:, 17] = np.where(trailing[0], 0, ord("."))
        block[:, 18:] = fd.T
        if not fast.all():
            out[fast, :width] = block
    slow = ~fast
    if slow.any():
        text = _matrix(x[slow].astype("S32"))
        lens = np.count_nonzero(text, axis=1)
        rows = np.arange(text.shape[0])
        last2 = np.maximum(lens - 2, 0)
        whole = (text[rows, last2] == ord(".")) & (text[rows, np.maximum(lens - 1, 0)] == ord("0"))
        whole &= lens >= 2
        text[rows[whole], last2[whole]] = 0  # "60.0" -> "60"
        text[rows[whole], last2[whole] + 1] = 0
        out[slow, : text.shape[1]] = text
    return out


def _field_blocks(
    key: str, values: npt.NDArray[Any], kind: str
) -> tuple[list[npt.NDArray[np.uint8]], npt.NDArray[np.bool_]]:
    """Byte blocks ``,key=`` | value | suffix for one column, and the mask of present values."""
    n = values.size
    if kind == "f":
        arr = np.asarray(values, dtype=np.float64)
        present = np.isfinite(arr)
        blocks = [_float_text(np.where(present, arr, 0.0))]
    elif kind == "i":
        present = np.ones(n, dtype=bool)
        blocks = [_int_text(np.asarray(values, dtype=np.int64)), _constant(b"i", n)]
    elif kind == "s":
        present = np.array([v is not None for v in values.tolist()], dtype=bool)
        labels, codes = np.unique(np.where(present, values, "").astype(str), return_inverse=True)
        quoted = np.array([f'"{escape_string(str(v))}"'.encode() for v in labels.tolist()])
        blocks = [_matrix(quoted[codes.ravel()])]
    else:
        present = np.ones(n, dtype=bool)
        blocks = [_matrix(_BOOL_TEXT[np.asarray(values, dtype=bool).astype(np.int64)])]
    blocks.insert(0, _constant(("," + escape_key(key) + "=").encode(), n))
    if not present.all():
        for block in blocks:
            block[~present] = 0
    return blocks, present


_KIND_OF_DTYPE_KIND = {"b": "b", "i": "i", "u": "i", "f": "f", "U": "s", "O": "s"}
"""Column kind (``f``, ``i``, ``b``, ``s``) of each numpy dtype kind code that a column may have."""


def _kind_of(values: npt.NDArray[Any], key: str, measurement: str) -> str:
    kind = _KIND_OF_DTYPE_KIND.get(values.dtype.kind)
    if kind is None:
        raise SchemaError(
            f"columnar fields must be float, integer, bool or string arrays, got {values.dtype}",
            measurement=measurement,
            key=key,
        )
    return kind


def encode_columns(
    measurement: str,
    tags: Mapping[str, str],
    t_ns: npt.ArrayLike,
    fields: Mapping[str, npt.ArrayLike],
) -> bytes:
    """Many points with the same tags as newline-terminated lines, without a per-point loop.

    Each row is laid out in a fixed-width byte matrix whose unused bytes are NUL (line
    protocol text never contains NUL); dropping the NULs yields the lines.

    Parameters
    ----------
    measurement, tags
        Shared by every point.
    t_ns
        Timestamps, int64 ns, shape ``(n,)``.
    fields
        Column per field key, each shape ``(n,)``: float (NaN = absent), integer, bool,
        or str / object (``None`` = absent; meant for few distinct values such as stage
        names: each distinct value is escaped once). The dtype decides the type.

    Returns
    -------
    bytes
        The same bytes as joining :func:`encode_line` of each point with ``"\\n"`` plus a
        final newline; points whose fields are all absent are left out.
    """
    t = np.asarray(t_ns, dtype=np.int64).ravel()  # first: bad timestamps raise before bad tags
    return _encode_columns(measurement, _head(measurement, tags), t, fields)


def _encode_columns(
    measurement: str, head: str, t: npt.NDArray[np.int64], fields: Mapping[str, npt.ArrayLike]
) -> bytes:
    """:func:`encode_columns` with the line head (:func:`_head`) and the timestamps as a
    flat int64 array given."""
    n = t.size
    if "\x00" in head:
        raise SchemaError("NUL byte in measurement or tags", measurement=measurement)
    columns: list[tuple[str, npt.NDArray[Any], str]] = []
    for key in sorted(fields):
        values = np.asarray(fields[key])
        if values.shape != (n,):
            raise SchemaError(
                f"column has shape {values.shape}, timestamps have ({n},)",
                measurement=measurement,
                key=key,
            )
        kind = _kind_of(values, key, measurement)
        if kind == "s" and any(v is not None and "\x00" in str(v) for v in values.tolist()):
            raise SchemaError("NUL byte in a string value", measurement=measurement, key=key)
        columns.append((key, values, kind))
    if n <= SMALL_BATCH:
        return _encode_rows(head, t, columns)
    blocks: list[npt.NDArray[np.uint8]] = [_constant(head.encode(), n)]
    keep = np.zeros(n, dtype=bool)
    for key, values, kind in columns:
        field_blocks, present = _field_blocks(key, values, kind)
        # the first present field's "," is the space between tags and fields
        first = present & ~keep
        field_blocks[0][first, 0] = ord(" ")
        blocks += field_blocks
        keep |= present
    if n == 0 or not keep.any():
        return b""
    blocks += [_constant(b" ", n), _int_text(t), _constant(b"\n", n)]
    rows = np.concatenate(blocks, axis=1)
    if not keep.all():
        rows[~keep] = 0
    flat = rows.ravel()
    return flat[flat != 0].tobytes()


SMALL_BATCH = 256
"""Batches up to this many points are encoded row by row (:func:`_encode_rows`). The byte
matrices cost a fixed 0.15-0.4 ms or so per field, the rows about 0.5-0.9 us per value:
at 256 points the rows took 0.38-0.63 of the matrices' time, at 512 0.74-0.95, at 1024
0.8-1.5 (best of 7, twice, on the shared 2-core dev machine, for one float column, the
epoch's 8 columns and the 16 feature columns). The daemon exports 30 heart-rate points
per tick and one or two provisional epochs. Both paths give the same bytes (tested
against influxdb-client's ``Point`` on either side)."""


def _encode_rows(
    head: str, t_ns: npt.NDArray[np.int64], columns: list[tuple[str, npt.NDArray[Any], str]]
) -> bytes:
    """:func:`encode_columns` for a few points: each key escaped once, each column turned
    into Python values and texts in one pass, then one string per line."""
    texts = [
        _field_texts(_field_prefix(key), _python_values(values, kind), kind)
        for key, values, kind in columns
    ]
    if not texts:
        return b""
    lead = head + " "
    times = t_ns.tolist()
    rows = zip(*texts, strict=True)
    if any(None in column_texts for column_texts in texts):
        kept = ([part for part in parts if part is not None] for parts in rows)
        lines = [f"{lead}{','.join(p)} {t}\n" for p, t in zip(kept, times, strict=True) if p]
    else:
        lines = [f"{lead}{','.join(p)} {t}\n" for p, t in zip(rows, times, strict=True)]
    return "".join(lines).encode()


_FLOAT64 = np.dtype(np.float64)
_INT64 = np.dtype(np.int64)


def _python_values(values: npt.NDArray[Any], kind: str) -> list[Any]:
    """A column of kind ``kind`` (:func:`_kind_of`) as the Python values :func:`_field_texts`
    takes: floats and ints through float64 and int64 (an already cast column is not cast
    again), bools as they are, strings with ``None`` kept."""
    if kind == "f":
        return (values if values.dtype == _FLOAT64 else values.astype(np.float64)).tolist()
    if kind == "i":
        return (values if values.dtype == _INT64 else values.astype(np.int64)).tolist()
    if kind == "b":
        return values.tolist()  # kind "b" is numpy's bool dtype: Python bools already
    return [None if v is None else str(v) for v in values.tolist()]


_FIELD_PREFIXES: dict[str, str] = {}
"""``escape_key(key) + "="`` of the field keys seen (the daemon writes the same few)."""


def _field_prefix(key: str) -> str:
    prefix = _FIELD_PREFIXES.get(key)
    if prefix is None:
        if len(_FIELD_PREFIXES) >= 1024:
            _FIELD_PREFIXES.clear()
        prefix = _FIELD_PREFIXES[key] = escape_key(key) + "="
    return prefix


# --------------------------------------------------------------------------------------
# Schema-aware entry points
# --------------------------------------------------------------------------------------


def _coerce(spec: schema.FieldSpec, value: object) -> object:
    if spec.type is FieldType.FLOAT:
        return float(value)  # type: ignore[arg-type]
    if spec.type is FieldType.INTEGER:
        return int(value)  # type: ignore[call-overload]
    if spec.type is FieldType.BOOLEAN:
        return bool(value)
    return value


def schema_line(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, object], t_ns: int
) -> str:
    """Validate one point against the schema, coerce field types, encode it.

    ``None`` fields are left out before validation (an absent value, not an error).
    """
    present = {k: v for k, v in fields.items() if v is not None}
    m = schema.check_point(measurement, tags, present)
    if not isinstance(t_ns, int | np.integer) or isinstance(t_ns, bool):
        raise SchemaError(f"timestamp must be integer ns, got {t_ns!r}", measurement=measurement)
    typed = {k: _coerce(m.field(k), v) for k, v in present.items()}
    return encode_line(measurement, tags, typed, int(t_ns))


def schema_columns(
    measurement: str,
    tags: Mapping[str, str],
    t_ns: npt.ArrayLike,
    fields: Mapping[str, npt.ArrayLike],
) -> bytes:
    """Validate names/tags against the schema, cast columns to the schema types, encode.

    Float columns may hold NaN for absent values; ``+-inf`` is refused.
    """
    m = schema.BY_NAME.get(measurement)
    if m is None:
        raise SchemaError("unknown measurement", measurement=measurement)
    types = _field_types(measurement, m)
    cast: dict[str, npt.NDArray[Any]] = {}
    for key, col in fields.items():
        ftype = types.get(key)
        if ftype is None:
            raise SchemaError("unknown field", measurement=measurement, key=key)
        arr = np.asarray(col)
        if ftype is FieldType.FLOAT:
            if arr.dtype != _FLOAT64:  # (astype's copy=False costs more than this test)
                arr = arr.astype(np.float64)
            if _has_inf(arr):
                raise SchemaError(
                    f"infinite value at index {int(np.flatnonzero(np.isinf(arr))[0])}",
                    measurement=measurement,
                    key=key,
                )
        elif ftype is FieldType.INTEGER:
            if arr.dtype.kind not in "iu":
                raise SchemaError(
                    f"expected an integer array, got {arr.dtype}", measurement=measurement, key=key
                )
            arr = arr.astype(np.int64, copy=False)
        elif ftype is FieldType.BOOLEAN:
            arr = arr.astype(bool, copy=False)
        else:
            if arr.dtype.kind not in "UO":
                raise SchemaError(
                    f"expected a string array, got {arr.dtype}", measurement=measurement, key=key
                )
            bad = [v for v in arr.tolist() if v is not None and not isinstance(v, str)]
            if bad:
                raise SchemaError(
                    f"expected strings, got {bad[0]!r}", measurement=measurement, key=key
                )
        cast[key] = arr
    head = _checked_head(measurement, m, tags)  # tags before timestamps, as before
    return _encode_columns(measurement, head, np.asarray(t_ns, dtype=np.int64).ravel(), cast)


_FIELD_TYPES: dict[str, tuple[schema.Measurement, dict[str, FieldType]]] = {}
"""Field types by key of each measurement's schema entry (kept with the entry, whose
identity is checked: a replaced entry is read anew)."""


def _field_types(measurement: str, m: schema.Measurement) -> dict[str, FieldType]:
    hit = _FIELD_TYPES.get(measurement)
    if hit is None or hit[0] is not m:
        hit = _FIELD_TYPES[measurement] = (m, {spec.name: spec.type for spec in m.fields})
    return hit[1]


_INFINITIES = (np.inf, -np.inf)


def _has_inf(values: npt.NDArray[np.float64]) -> bool:
    """Whether a float64 array holds ``+-inf``; a small one is looked through as a Python
    list (a fraction of the ufunc's fixed cost)."""
    if values.size > SMALL_BATCH:
        return bool(np.count_nonzero(np.isinf(values)))
    listed = values.ravel().tolist()
    return _INFINITIES[0] in listed or _INFINITIES[1] in listed


_CHECKED_HEADS: dict[tuple[Any, ...], tuple[schema.Measurement, str]] = {}
"""Line heads of tag sets that passed the schema, by measurement name, schema entry
(identity) and tags: the daemon writes the same few tag sets all night."""


def _checked_head(measurement: str, m: schema.Measurement, tags: Mapping[str, str]) -> str:
    """:func:`_head` of tags that :func:`schema.check_point` accepts (``m`` is the
    measurement's schema entry); raises :class:`SchemaError` otherwise."""
    key = (measurement, id(m), tuple(tags.items()))
    try:
        hit = _CHECKED_HEADS.get(key)
    except TypeError:  # an unhashable tag value: the check refuses it
        hit = None
    if hit is not None and hit[0] is m:
        return hit[1]
    # tags checked with a dummy field: check_point needs one
    schema.check_point(measurement, tags, {m.fields[0].name: _dummy(m.fields[0].type)})
    head = _head(measurement, tags)
    if len(_CHECKED_HEADS) >= 256:
        _CHECKED_HEADS.clear()
    _CHECKED_HEADS[key] = (m, head)
    return head


def _dummy(ftype: FieldType) -> object:
    return {FieldType.FLOAT: 0.0, FieldType.INTEGER: 0, FieldType.BOOLEAN: False}.get(ftype, "")


def join_lines(lines: Iterable[str]) -> bytes:
    """Newline-terminated UTF-8 bytes of non-empty lines."""
    return b"".join(line.encode("utf-8") + b"\n" for line in lines if line)
