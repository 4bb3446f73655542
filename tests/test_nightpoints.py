"""The night's points: the epoch columns' JSON values."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sensord.store.nightpoints import _nan_to_none


@given(hnp.arrays(st.sampled_from([np.float64, np.float32, np.int64, np.int8, np.bool_]),
                  st.integers(0, 40)))
def test_nan_to_none_is_nan_by_isnan(values: np.ndarray) -> None:
    listed = values.tolist()
    want = [None if (isinstance(v, float) and np.isnan(v)) else v for v in listed]
    got = _nan_to_none(listed)
    assert repr(got) == repr(want)
    assert [type(v) for v in got] == [type(v) for v in want]


def test_nan_to_none_keeps_what_is_not_a_float() -> None:
    assert _nan_to_none([1, True, None, "nan", float("inf"), float("nan")]) == [
        1, True, None, "nan", float("inf"), None]
