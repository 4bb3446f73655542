"""The line-protocol oracle: influxdb-client's own ``Point`` serialisation, for tests only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from influxdb_client import Point


def point_line(measurement: str, tags: Mapping[str, Any], fields: Mapping[str, Any],
               t_ns: int | None) -> str:
    """One point as influxdb-client writes it (tags and fields in the order given)."""
    p = Point(measurement)
    for k, v in tags.items():
        p.tag(k, v)
    for k, v in fields.items():
        p.field(k, v)
    if t_ns is not None:
        p.time(t_ns)
    return str(p.to_line_protocol())
