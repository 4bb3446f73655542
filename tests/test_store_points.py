"""Epoch and epoch-feature points against influxdb-client's Point (the oracle)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sensord.store import schema
from sensord.store.points import epoch_feature_lines, epoch_lines
from sensord.store.schema import SchemaError
from tests.point_oracle import point_line

STAGE_BY_CODE = {code: name for name, code in schema.STAGE_CODES.items()}
PROBA = st.one_of(st.floats(0, 1), st.just(np.nan))


def _expected(measurement: str, tags: dict[str, str], rows: list[dict[str, object]],
              t_ns: np.ndarray) -> bytes:
    lines = (point_line(measurement, tags, dict(sorted(row.items())), int(t))
             for row, t in zip(rows, t_ns.tolist(), strict=True))
    return "".join(line + "\n" for line in lines if line).encode()


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.sampled_from([0, 1, 2, 5, 300]), final=st.booleans(),
       with_proba=st.booleans())
def test_epoch_lines_match_influxdb_client(data, n, final, with_proba) -> None:  # type: ignore[no-untyped-def]
    codes = data.draw(hnp.arrays(np.int64, n, elements=st.integers(-1, 3)))
    proba = data.draw(hnp.arrays(np.float64, (n, 4), elements=PROBA)) if with_proba else None
    t = np.arange(n, dtype=np.int64) * 30_000_000_000 + 1_700_000_000_000_000_000
    rows: list[dict[str, object]] = []
    for j, code in enumerate(codes.tolist()):
        row: dict[str, object] = {"stage": STAGE_BY_CODE[code], "stage_code": code,
                                  "final": final, "night": "2026-11-20"}
        if proba is not None:
            row.update(zip(("p_wake", "p_light", "p_deep", "p_rem"), proba[j].tolist(),
                           strict=True))
        rows.append(row)
    tags = {"participant": "p1", "scorer": "live"}
    out = epoch_lines("p1", "live", t, codes, proba, final=final, night="2026-11-20")
    assert out == _expected("epoch", tags, rows, t)


@pytest.mark.parametrize("bad", [-2, 4, -(2**63), 2**63 - 1])
@pytest.mark.parametrize("n", [1, 3])
def test_epoch_lines_refuse_unknown_stage_codes(bad: int, n: int) -> None:
    codes = np.zeros(n, dtype=np.int64)
    codes[n - 1] = bad
    with pytest.raises(SchemaError, match=rf"^epoch\.stage_code: unknown stage code {bad}$"):
        epoch_lines("p1", "live", np.arange(n), codes, None, final=False, night="n")


@settings(max_examples=100, deadline=None)
@given(data=st.data(), n=st.sampled_from([1, 2, 300]))
def test_epoch_feature_lines_match_influxdb_client(data, n) -> None:  # type: ignore[no-untyped-def]
    features: dict[str, np.ndarray] = {"t_ns": np.zeros(n, dtype=np.int64)}  # not a field
    for spec in schema.EPOCH_FEATURES.fields:
        if spec.type is schema.FieldType.FLOAT:
            features[spec.name] = data.draw(hnp.arrays(np.float64, n, elements=PROBA))
        elif spec.type is schema.FieldType.INTEGER:
            features[spec.name] = data.draw(hnp.arrays(np.int8, n))
        else:
            features[spec.name] = data.draw(hnp.arrays(np.bool_, n))
    t = np.arange(n, dtype=np.int64) * 30_000_000_000
    rows = [{key: values[j].item() for key, values in features.items() if key != "t_ns"}
            for j in range(n)]
    tags = {"participant": "p1", "scorer": "live"}
    assert epoch_feature_lines("p1", "live", t, features) == _expected("epoch_features", tags,
                                                                       rows, t)
