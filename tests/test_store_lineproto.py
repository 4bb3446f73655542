"""Line protocol: byte-identical to influxdb-client's Point (the oracle), columnar == rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sensord.store import lineproto
from sensord.store.lineproto import encode_columns, encode_line, schema_columns, schema_line
from sensord.store.schema import SchemaError
from tests.point_oracle import point_line

SPECIAL = st.sampled_from(list(",= \"\\\n\r\t'😀é#"))
TEXT = st.lists(st.one_of(SPECIAL, st.characters(codec="utf-8")), max_size=12).map("".join)
NAME = TEXT.filter(lambda s: s != "")
FIELD_VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    TEXT,
    st.none(),
)


oracle = point_line


@settings(max_examples=400, deadline=None)
@given(
    measurement=NAME.filter(lambda s: not s.startswith("#")),
    tags=st.dictionaries(TEXT, st.one_of(TEXT, st.none()), max_size=4),
    fields=st.dictionaries(NAME, FIELD_VALUE, max_size=5),
    t_ns=st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
)
def test_encode_line_is_byte_identical_to_influxdb_client(measurement, tags, fields, t_ns) -> None:  # type: ignore[no-untyped-def]
    assert encode_line(measurement, tags, fields, t_ns) == oracle(measurement, tags, fields, t_ns)


def test_escaping_by_hand() -> None:
    # Expected strings written by hand from the line protocol reference's escaping rules.
    line = encode_line(
        "my meas,x",
        {"ta g": "v,a=l ue", "k=": "back\\slash"},
        {"f ,=": 'say "hi" \\ ok\nnext', "n": 3, "b": True, "x": 60.0, "y": 0.25},
        1_700_000_000_000_000_001,
    )
    assert line == (
        "my\\ meas\\,x,k\\==back\\slash,ta\\ g=v\\,a\\=l\\ ue "
        'b=true,f\\ \\,\\=="say \\"hi\\" \\\\ ok\nnext",n=3i,x=60,y=0.25 1700000000000000001'
    )
    assert encode_line("m", {}, {"a": None, "b": math.nan}, 5) == ""


FLOATS = hnp.arrays(
    np.float64,
    st.integers(0, 40),
    elements=st.one_of(
        st.floats(allow_nan=True, allow_infinity=False),
        st.floats(-300, 300).map(lambda v: round(v, 1)),
        st.integers(-(10**6), 10**6).map(lambda i: i / 1000),
        st.sampled_from([0.0, -0.0, 1e-4, 9.9999e-5, 1e16, 9999999999999998.0, 5e-324, 0.1 + 0.2]),
    ),
)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), floats=FLOATS)
def test_columns_match_point_rows(data, floats) -> None:  # type: ignore[no-untyped-def]
    n = floats.size
    ints = data.draw(hnp.arrays(np.int64, n, elements=st.integers(-(2**63), 2**63 - 1)))
    bools = data.draw(hnp.arrays(np.bool_, n))
    t = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, 2**63 - 1)))
    no_nul = NAME.filter(lambda s: "\x00" not in s)  # the columnar path refuses NUL (tested below)
    tags = data.draw(
        st.dictionaries(no_nul, no_nul.filter(lambda s: not s.endswith("\\")), max_size=3)
    )
    strings = data.draw(
        st.lists(
            st.one_of(st.none(), TEXT.filter(lambda s: "\x00" not in s)), min_size=n, max_size=n
        )
    )
    which = data.draw(st.sets(st.sampled_from(["f", "i", "b", "s"]), min_size=1))
    cols = {"f": floats, "i": ints, "b": bools, "s": np.array(strings, dtype=object)}
    fields = {k: cols[k] for k in which}
    expected = "".join(
        line + "\n"
        for line in (
            oracle("heart_rate", tags, {k: _item(v[j]) for k, v in fields.items()}, int(t[j]))
            for j in range(n)
        )
        if line
    ).encode()
    default = lineproto.SMALL_BATCH
    try:  # both paths: byte matrices (any n) and point by point (any n)
        for small in (-1, n):
            lineproto.SMALL_BATCH = small
            assert encode_columns("heart_rate", tags, t, fields) == expected
    finally:
        lineproto.SMALL_BATCH = default


def _item(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v


def test_columns_fast_float_path_against_repr() -> None:
    # sensor-like values take the integer-digit path; Python's repr is the reference
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            np.round(rng.normal(60, 15, 5000), 1),
            np.round(rng.normal(900, 150, 5000)),
            np.round(rng.uniform(-2, 2, 5000), 6),
            rng.normal(0, 1e6, 1000),
        ]
    )
    t = np.arange(values.size, dtype=np.int64)
    out = encode_columns("m", {}, t, {"v": values}).decode().splitlines()
    want = [lineproto.format_float(v) for v in values.tolist()]
    assert [line.split(" ")[1][2:] for line in out] == want


def test_columns_skip_rows_without_fields_and_validate_shapes() -> None:
    nan = np.nan
    out = encode_columns("m", {"p": "a"}, [1, 2, 3], {"x": [nan, 1.5, nan], "y": [nan, nan, 2.0]})
    assert out == b"m,p=a x=1.5 2\nm,p=a y=2 3\n"
    assert encode_columns("m", {}, [], {"x": np.zeros(0)}) == b""
    with pytest.raises(SchemaError, match=r"m\.x: column has shape"):
        encode_columns("m", {}, [1, 2], {"x": [1.0]})
    with pytest.raises(SchemaError, match="NUL byte"):
        encode_columns("m", {"p": "a\x00"}, [1], {"x": [1.0]})
    for n in (1, lineproto.SMALL_BATCH + 1):  # point by point, byte matrices
        with pytest.raises(SchemaError, match=r"m\.s: NUL byte in a string"):
            strings = np.array(["ok"] * (n - 1) + ["a\x00b"], dtype=object)
            encode_columns("m", {}, np.arange(n), {"s": strings})
    with pytest.raises(SchemaError, match=r"m\.s: columnar fields must be"):
        encode_columns("m", {}, [1], {"s": np.array([b"a"])})


def test_schema_line_coerces_to_schema_types() -> None:
    tags = {"participant": "P,1 =x", "kind": "substance"}
    line = schema_line(
        "annotation",
        tags,
        {"dose": 2, "substance": 'kratom "red"\nvein', "id": "a1", "note": None},
        1_700_000_000_000_000_000,
    )
    # an integer dose is written as a float so the field type never changes
    assert line == oracle(
        "annotation",
        tags,
        {"dose": 2.0, "substance": 'kratom "red"\nvein', "id": "a1"},
        1_700_000_000_000_000_000,
    )
    assert " dose=2," in line and "2i" not in line
    with pytest.raises(SchemaError, match=r"annotation\.dose: expected float"):
        schema_line("annotation", tags, {"dose": "2"}, 1)
    with pytest.raises(SchemaError, match="timestamp must be integer ns"):
        schema_line("annotation", tags, {"dose": 2.0}, 1.5)  # type: ignore[arg-type]


def test_schema_columns_refuses_unknown_and_infinite() -> None:
    tags = {"participant": "p1", "device_role": "chest"}
    out = schema_columns("heart_rate", tags, [10, 20], {"hr_bpm": np.array([60, 61])})
    assert out == b"heart_rate,device_role=chest,participant=p1 hr_bpm=60 10\n" + (
        b"heart_rate,device_role=chest,participant=p1 hr_bpm=61 20\n"
    )
    with pytest.raises(SchemaError, match=r"heart_rate\.bpm: unknown field"):
        schema_columns("heart_rate", tags, [1], {"bpm": [1.0]})
    with pytest.raises(SchemaError, match=r"heart_rate\.hr_bpm: infinite value at index 1"):
        schema_columns("heart_rate", tags, [1, 2], {"hr_bpm": [1.0, np.inf]})
    with pytest.raises(SchemaError, match=r"heart_rate\.device_role"):
        schema_columns(
            "heart_rate", {"participant": "p1", "device_role": "x"}, [1], {"hr_bpm": [1.0]}
        )
    with pytest.raises(SchemaError, match=r"device_battery\.battery_pct: expected an integer"):
        schema_columns("device_battery", tags, [1], {"battery_pct": [1.5]})


NO_NUL = TEXT.filter(lambda s: "\x00" not in s)  # the columnar path refuses NUL in names
EDGE_FLOATS = [0.0, -0.0, 60.0, 58.9, 1e-4, 9.9999e-5, 1e16, 1e22, 5e-324, 1.7976931348623157e308]
COLUMN_KINDS = st.sampled_from(["f8", "f4", "i8", "i4", "u1", "b", "O", "U"])


def _column(data: st.DataObject, kind: str, n: int) -> np.ndarray:
    if kind == "f8":
        elements = st.one_of(st.floats(), st.sampled_from(EDGE_FLOATS))
        return data.draw(hnp.arrays(np.float64, n, elements=elements))
    if kind == "f4":
        return data.draw(hnp.arrays(np.float32, n, elements=st.floats(width=32)))
    if kind in ("i8", "i4", "u1"):
        return data.draw(hnp.arrays(np.dtype(kind), n))
    if kind == "b":
        return data.draw(hnp.arrays(np.bool_, n))
    if kind == "O":
        values = data.draw(st.lists(st.one_of(st.none(), NO_NUL), min_size=n, max_size=n))
        return np.array(values, dtype=object)
    return np.array(data.draw(st.lists(NO_NUL, min_size=n, max_size=n)), dtype=str).reshape(n)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_row_and_matrix_paths_match_influxdb_client_at_any_size(data) -> None:  # type: ignore[no-untyped-def]
    # sizes on both sides of the 64 of old and of SMALL_BATCH; the row encoder and the byte
    # matrices each run on every batch and must give the oracle's bytes
    small = lineproto.SMALL_BATCH
    n = data.draw(st.sampled_from([0, 1, 2, 63, 64, 65, small - 1, small, small + 1]))
    measurement = data.draw(NAME.filter(lambda s: "\x00" not in s and not s.startswith("#")))
    tags = data.draw(st.dictionaries(NO_NUL, st.one_of(NO_NUL, st.none()), max_size=4))
    kinds = data.draw(st.dictionaries(NO_NUL.filter(bool), COLUMN_KINDS, max_size=5))
    fields = {key: _column(data, kind, n) for key, kind in kinds.items()}
    t = data.draw(hnp.arrays(np.int64, n, elements=st.integers(-(2**63), 2**63 - 1)))
    expected = "".join(
        line + "\n"
        for line in (
            oracle(measurement, tags, {k: _item(v[j]) for k, v in fields.items()}, int(t[j]))
            for j in range(n)
        )
        if line
    ).encode()
    assert encode_columns(measurement, tags, t, fields) == expected
    try:
        for threshold in (n, -1):  # point by point, byte matrices
            lineproto.SMALL_BATCH = threshold
            assert encode_columns(measurement, tags, t, fields) == expected
    finally:
        lineproto.SMALL_BATCH = small


def test_schema_columns_checks_tags_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # the checked tag sets are remembered: a refused set stays refused, and a changed
    # schema entry is checked anew
    import dataclasses

    from sensord.store import schema

    good = {"participant": "p1", "device_role": "chest"}
    first = schema_columns("heart_rate", good, [1], {"hr_bpm": [60.0]})
    assert first == b"heart_rate,device_role=chest,participant=p1 hr_bpm=60 1\n"
    swapped = {"device_role": "chest", "participant": "p1"}
    assert schema_columns("heart_rate", swapped, [1], {"hr_bpm": [60.0]}) == first
    for _ in range(2):
        with pytest.raises(SchemaError, match=r"heart_rate\.device_role"):
            schema_columns("heart_rate", {**good, "device_role": "x"}, [1], {"hr_bpm": [1.0]})
    with pytest.raises(SchemaError, match=r"epoch\.device_role: unknown tag"):
        schema_columns("epoch", good, [1], {"p_wake": [0.5]})
    role = dataclasses.replace(schema.DEVICE_ROLE, values=("wrist",))
    entry = dataclasses.replace(schema.HEART_RATE, tags=(schema.PARTICIPANT, role))
    monkeypatch.setitem(schema.BY_NAME, "heart_rate", entry)
    with pytest.raises(SchemaError, match=r"heart_rate\.device_role: .* must be one of wrist"):
        schema_columns("heart_rate", good, [1], {"hr_bpm": [60.0]})


@settings(max_examples=200, deadline=None)
@given(
    values=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=0, max_dims=2, max_side=lineproto.SMALL_BATCH + 2),
        elements=st.one_of(st.floats(), st.sampled_from([np.inf, -np.inf, np.nan, -0.0])),
    )
)
def test_has_inf_agrees_with_isinf_on_either_side_of_small_batch(values) -> None:  # type: ignore[no-untyped-def]
    # small arrays are looked through as lists, larger ones with the ufunc
    assert lineproto._has_inf(values) == bool(np.isinf(values).any())


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
@pytest.mark.parametrize("n", [1, 3, lineproto.SMALL_BATCH + 1])
def test_schema_columns_names_the_first_infinity(bad: float, n: int) -> None:
    values = np.full(n, 60.0)
    values[n - 1] = bad
    tags = {"participant": "p1", "device_role": "chest"}
    with pytest.raises(SchemaError, match=rf"heart_rate\.hr_bpm: infinite value at index {n - 1}$"):
        schema_columns("heart_rate", tags, np.arange(n), {"hr_bpm": values})
    with pytest.raises(SchemaError, match=r"heart_rate\.hr_bpm: infinite value at index 0$"):
        schema_columns("heart_rate", tags, [1], {"hr_bpm": np.array([bad], dtype=np.float32)})
