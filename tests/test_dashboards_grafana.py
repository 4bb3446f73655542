"""The Grafana emulation: expected values worked out by hand from Grafana's documented rules
(rangeutil.roundInterval's table, secondsToHms, the InfluxDB backend's $timeFilter)."""

from __future__ import annotations

import pytest

from dashboards import grafana as g

# 2026-03-07 20:00:00 UTC and 2026-03-08 08:00:00 UTC in ms (1772913600 s, + 12 h)
FROM_MS = 1_772_913_600_000
TO_MS = FROM_MS + 12 * 3_600_000


@pytest.mark.parametrize(
    ("raw_ms", "nice_ms"),
    [
        (9.9, 1),  # below 10 ms -> 1 ms
        (12_499, 10_000),  # < 12.5 s -> 10 s
        (12_500, 15_000),  # the bound itself belongs to the next step
        (17_499, 15_000),
        (17_500, 20_000),
        (44_999, 30_000),
        (86_399_999, 43_200_000),  # just under a day -> 12 h
        (86_400_000, 86_400_000),  # a day -> 1 d
        (604_800_000, 604_800_000),  # a week -> 1 w
        (4e9, 31_536_000_000),  # beyond six weeks -> 1 y
    ],
)
def test_round_interval_follows_grafanas_table(raw_ms: float, nice_ms: int) -> None:
    assert g.round_interval_ms(raw_ms) == nice_ms


def test_calculate_interval_by_hand() -> None:
    # 12 h over 1600 px: 43_200_000 / 1600 = 27_000 ms -> (25 s .. 45 s) -> 30 s
    assert g.calculate_interval(FROM_MS, TO_MS, 1600) == (30_000, "30s")
    # the same over 200 px: 216_000 ms -> (210 s .. 450 s) -> 5 min
    assert g.calculate_interval(FROM_MS, TO_MS, 200) == (300_000, "5m")
    # 90 days over 800 px: 7_776_000_000 / 800 = 9_720_000 ms -> (9 ms e6 .. 16.2e6) -> 3 h
    ninety = 90 * 86_400_000
    assert g.calculate_interval(0, ninety, 800) == (10_800_000, "3h")
    # a panel's min interval wins when larger: 1 h over 1600 px = 2250 ms -> 2 s < 30 s
    assert g.calculate_interval(0, 3_600_000, 1600, "30s") == (30_000, "30s")
    # ... and not when smaller
    assert g.calculate_interval(0, 3_600_000, 1600, "1s") == (2_000, "2s")
    with pytest.raises(g.GrafanaEmulationError):
        g.calculate_interval(0, 1, 0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "500ms"),
        (30, "30s"),
        (90, "1m"),
        (3600, "1h"),
        (86_400, "1d"),
        (604_800, "7d"),
        (2 * 31_536_000, "2y"),
    ],
)
def test_seconds_to_hms_keeps_the_largest_unit(seconds: float, text: str) -> None:
    assert g.seconds_to_hms(seconds) == text


def test_interval_to_ms() -> None:
    assert g.interval_to_ms("30s") == 30_000
    assert g.interval_to_ms("1d") == 86_400_000
    assert g.interval_to_ms("1w") == 604_800_000
    assert g.interval_to_ms("5") == 5_000  # a bare number means seconds
    with pytest.raises(g.GrafanaEmulationError, match="invalid interval 'soon'"):
        g.interval_to_ms("soon")


def test_time_filter_is_inclusive_in_ms() -> None:
    assert g.time_filter(FROM_MS, TO_MS) == ("time >= 1772913600000ms and time <= 1772956800000ms")


QUERY = (
    'SELECT mean("hr_bpm") AS "HR" FROM "heart_rate" WHERE "participant" = '
    "'$participant' AND $timeFilter GROUP BY time($__interval), \"device_role\" fill(none)"
)


def test_interpolate_a_panel_query() -> None:
    out = g.interpolate(
        QUERY, {"participant": "p01"}, from_ms=FROM_MS, to_ms=TO_MS, interval_ms=30_000
    )
    assert out == (
        'SELECT mean("hr_bpm") AS "HR" FROM "heart_rate" WHERE "participant" = \'p01\' '
        "AND time >= 1772913600000ms and time <= 1772956800000ms GROUP BY time(30s), "
        '"device_role" fill(none)'
    )


def test_interpolate_every_variable_syntax() -> None:
    kw = {"from_ms": 1000, "to_ms": 2000, "interval_ms": 60_000}
    v = {"p": "p01", "day": "6h"}
    assert g.interpolate("$p [[p]] ${p} ${p:raw}", v, **kw) == "p01 p01 p01 p01"
    assert g.interpolate("time(1d, $day)", v, **kw) == "time(1d, 6h)"
    assert g.interpolate("$__interval_ms $__interval $interval", v, **kw) == "60000 1m 1m"
    assert g.interpolate("$__from-$__to", v, **kw) == "1000-2000"
    # '$participant_x' is one (unknown) variable name, not $participant followed by '_x'
    with pytest.raises(g.GrafanaEmulationError, match=r"\$p_x is not a variable"):
        g.interpolate("$p_x", v, **kw)


def test_interpolate_multi_value_as_escaped_regex() -> None:
    kw = {"from_ms": 0, "to_ms": 1, "interval_ms": 1}
    out = g.interpolate("=~ /^$s$/", {"s": ["kratom", "a.b", "x|y"]}, **kw)
    assert out == r"=~ /^(kratom|a\.b|x\|y)$/"
    assert g.interpolate("$s", {"s": ["one(1)"]}, **kw) == r"one\(1\)"


def test_interpolate_refuses_values_grafana_would_break() -> None:
    kw = {"from_ms": 0, "to_ms": 1, "interval_ms": 1}
    with pytest.raises(g.GrafanaEmulationError, match="quote or backslash"):
        g.interpolate("'$p'", {"p": "o'brien"}, **kw)
    with pytest.raises(g.GrafanaEmulationError, match="no value selected"):
        g.interpolate("$s", {"s": []}, **kw)
    with pytest.raises(g.GrafanaEmulationError, match="format 'csv'"):
        g.interpolate("${p:csv}", {"p": "a"}, **kw)


def test_variable_values_take_the_value_column() -> None:
    show_tags = {
        "results": [
            {
                "series": [
                    {
                        "columns": ["key", "value"],
                        "values": [["participant", "p01"], ["participant", "p02"]],
                    }
                ]
            }
        ]
    }
    assert g.variable_values(show_tags, "SHOW TAG VALUES WITH KEY = participant") == ["p01", "p02"]
    distinct = {
        "results": [
            {
                "series": [
                    {
                        "columns": ["time", "distinct"],
                        "values": [[0, "kratom"], [0, "kratom"], [0, "tea"]],
                    }
                ]
            }
        ]
    }
    assert g.variable_values(distinct, "SELECT DISTINCT(x) FROM y") == ["kratom", "tea"]
    fields = {
        "results": [
            {"series": [{"columns": ["fieldKey", "fieldType"], "values": [["hr_bpm", "float"]]}]}
        ]
    }
    assert g.variable_values(fields, "SHOW FIELD KEYS") == ["hr_bpm"]
    with pytest.raises(g.GrafanaEmulationError, match="database not found"):
        g.variable_values({"results": [{"error": "database not found"}]}, "SHOW TAG VALUES")


ANSWER = {
    "results": [
        {
            "series": [
                {
                    "name": "heart_rate",
                    "tags": {"device_role": "chest"},
                    "columns": ["time", "HR"],
                    "values": [[1000, 60.0], [2000, None]],
                },
                {
                    "name": "heart_rate",
                    "tags": {"device_role": "wrist"},
                    "columns": ["time", "HR"],
                    "values": [[1000, 62.5]],
                },
            ]
        }
    ]
}


def test_time_series_frames_are_named_by_alias() -> None:
    frames = g.frames_from_influx(
        ANSWER, ref_id="A", result_format="time_series", alias="$col $tag_device_role"
    )
    assert [f.name for f in frames] == ["HR chest", "HR wrist"]
    assert frames[0].field("Value").values == [60.0, None]
    assert frames[0].field("Value").labels == {"device_role": "chest"}
    plain = g.frames_from_influx(ANSWER, ref_id="A", result_format="time_series", alias=None)
    assert plain[1].name == "heart_rate.HR { device_role: wrist }"


def test_table_frames_put_tags_before_values() -> None:
    (frame,) = g.frames_from_influx(ANSWER, ref_id="A", result_format="table", alias=None)
    assert frame.names() == ["Time", "device_role", "HR"]
    assert frame.field("device_role").values == ["chest", "chest", "wrist"]
    assert frame.field("HR").values == [60.0, None, 62.5]


def _frame(**cols: list[object]) -> g.Frame:
    return g.Frame("f", [g.Field(k, v) for k, v in cols.items()])


def test_join_group_organize_like_the_with_without_table() -> None:
    nights = _frame(Time=[1, 2, 3, 4], TST=[400.0, 420.0, 380.0, 360.0])
    taken = _frame(Time=[0, 1, 2, 3, 4, 5], taken=[0, 1, 0, 1, 1, 0])
    out = g.apply_transformations(
        [nights, taken],
        [
            {"id": "joinByField", "options": {"byField": "Time", "mode": "inner"}},
            {
                "id": "groupBy",
                "options": {
                    "fields": {
                        "taken": {"operation": "groupby"},
                        "TST": {"operation": "aggregate", "aggregations": ["count", "mean"]},
                    }
                },
            },
            # indexByName, like excludeByName, names fields before renaming (as in Grafana)
            {
                "id": "organize",
                "options": {
                    "renameByName": {"TST (mean)": "TST"},
                    "indexByName": {"TST (mean)": 0},
                },
            },
        ],
    )
    (frame,) = out
    assert frame.names() == ["TST", "taken", "TST (count)"]
    # with a dose (taken=1): nights 1, 3, 4 -> (400 + 380 + 360) / 3 = 380; without: 420
    assert dict(zip(frame.field("taken").values, frame.field("TST").values, strict=True)) == {
        1: 380.0,
        0: 420.0,
    }
    assert frame.field("TST (count)").values == [3, 1]


def test_filter_and_merge_like_the_participants_table() -> None:
    a = _frame(Time=[5, 6], participant=["p01", "p02"], last=["2026-03-07", "2026-03-06"])
    b = _frame(Time=[0], participant=["p02"], backlog=[120])
    out = g.apply_transformations(
        [a, b],
        [
            {"id": "filterFieldsByName", "options": {"exclude": {"names": ["Time"]}}},
            {"id": "merge", "options": {}},
        ],
    )
    (frame,) = out
    assert frame.names() == ["participant", "last", "backlog"]
    assert frame.field("backlog").values == [None, 120]
    assert frame.field("last").values == ["2026-03-07", "2026-03-06"]
    with pytest.raises(g.GrafanaEmulationError, match="'reduce' is not emulated"):
        g.apply_transformations([a], [{"id": "reduce"}])
