"""Validate dashboard JSON against the schemas generated from Grafana's TypeScript types.

``dashboards/schema/<version>/`` holds one schema set per ``@grafana/schema`` version (which
package versions it came from, with npm integrity hashes, in its ``SOURCE.json``):
``dashboard.schema.json`` is Grafana's ``Dashboard`` type with the InfluxDB query model filled
in where Grafana leaves the query open; ``panels/<type>.schema.json`` holds each core panel's
``Options`` and ``FieldConfig`` types. Regenerate them with ``tools/gen_dashboard_schema.sh``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_ROOT = Path(__file__).resolve().parent / "schema"


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def versions() -> list[str]:
    """``@grafana/schema`` versions with a committed schema set, oldest first."""
    found = [d.name for d in SCHEMA_ROOT.iterdir() if (d / "SOURCE.json").is_file()]
    return sorted(found, key=version_key)


def schema_dir(version: str | None = None) -> Path:
    """The schema set of ``version``; the newest one (the SDK's Grafana line) by default."""
    return SCHEMA_ROOT / (version or versions()[-1])


@cache
def _validator(path: Path, ref: str) -> jsonschema.Draft7Validator:
    schema = json.loads(path.read_text(encoding="utf-8"))
    if ref:
        schema = {**schema, "$ref": f"#/definitions/{ref}"}
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def panel_types(version: str | None = None) -> list[str]:
    """Panel plugin ids that have an options schema in ``version``'s schema set."""
    panels = schema_dir(version) / "panels"
    return sorted(p.name.removesuffix(".schema.json") for p in panels.iterdir())


def _where(path: Any) -> str:
    return "/" + "/".join(str(p) for p in path)


def _leaves(err: jsonschema.ValidationError) -> Iterator[jsonschema.ValidationError]:
    """For an ``anyOf`` failure (a panel is a Panel or a RowPanel), the errors of the branch
    that came closest, so messages point at the offending key instead of the whole panel."""
    if not err.context:
        yield err
        return
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in err.context:
        branches.setdefault(sub.schema_path[0] if sub.schema_path else None, []).append(sub)
    closest = min(branches.values(), key=len)
    for sub in closest:
        yield from _leaves(sub)


def errors(doc: dict[str, Any], version: str | None = None) -> Iterator[str]:
    """Every violation of ``doc`` against ``version``'s schema as ``"<json path>: <message>"``.

    Checks the whole dashboard, then each panel's ``options`` and
    ``fieldConfig.defaults.custom`` against its panel type's schema. A panel type without a
    schema is itself an error (the schema would not be checking it).
    """
    root = schema_dir(version)
    for top in _validator(root / "dashboard.schema.json", "").iter_errors(doc):
        for err in _leaves(top):
            yield f"{_where(err.absolute_path)}: {err.message}"
    known = set(panel_types(version))
    for i, panel in enumerate(doc.get("panels", [])):
        ptype = panel.get("type")
        if ptype == "row":
            continue
        if ptype not in known:
            yield f"/panels/{i}: panel type {ptype!r} has no schema in {root / 'panels'}"
            continue
        path = root / "panels" / f"{ptype}.schema.json"
        for err in _validator(path, "Options").iter_errors(panel.get("options", {})):
            yield f"/panels/{i}/options{_where(err.absolute_path)}: {err.message}"
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
        for err in _validator(path, "FieldConfig").iter_errors(custom):
            yield (
                f"/panels/{i}/fieldConfig/defaults/custom{_where(err.absolute_path)}: {err.message}"
            )
