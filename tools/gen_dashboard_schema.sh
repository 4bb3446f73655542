#!/usr/bin/env bash
# Regenerates dashboards/schema/<version>/ from Grafana's published TypeScript types.
#
# Grafana publishes the dashboard model and every core panel's options as TypeScript types in
# the npm package @grafana/schema. ts-json-schema-generator turns those types into JSON Schema
# (draft-07); tests/test_dashboards_schema.py validates every generated dashboard against each
# committed version with the jsonschema package, so CI needs neither node nor npm.
#
# Usage: tools/gen_dashboard_schema.sh [VERSION ...]
#   VERSION is an @grafana/schema version from the table below (GRAFANA_SCHEMA_VERSION in the
#   environment does the same for one version); without one, every version in the table is
#   generated. Each goes to dashboards/schema/<version>/ (dashboard.schema.json,
#   panels/<panel id>.schema.json, SOURCE.json). To add a Grafana line, add a row, run, commit
#   the output together with its SOURCE.json.
#
# Needs node >= 20 and npm; installs into a temporary directory, leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."

# @grafana/schema, the ts-json-schema-generator and typescript used for it. The newest row's
# Grafana minor version is the one grafana-foundation-sdk (pyproject.toml) is pinned to.
# ts-json-schema-generator 2.10 requires typescript >=5.9 <7. @grafana/schema 10.4.19 was built
# with typescript 5.3.3; generated with ts-json-schema-generator 1.5.0 + typescript 5.3.3 (the
# newest generator for 5.3) its schema equals this one but for two TimeZone descriptions
# ("utc" | "browser" | string written as plain string: the same values), so one toolchain
# serves every row and the differences between rows are Grafana's.
VERSIONS=(
  "10.4.19 2.10.0 6.0.3"   # newest 10.x on npm (the 10.4 line)
  "11.5.3 2.10.0 6.0.3"    # newest 11.5: the oldest minor with every key the dashboards use
  "11.6.0 2.10.0 6.0.3"    # Grafana 11.6 line; matches grafana-foundation-sdk 11.6.0
)

pins_of() {  # pins_of <version>: prints "<generator> <typescript>" from the table
  local row
  for row in "${VERSIONS[@]}"; do
    read -r v g t <<<"$row"
    if [ "$v" = "$1" ]; then
      echo "$g $t"
      return 0
    fi
  done
  echo "gen_dashboard_schema.sh: @grafana/schema $1 is not in the VERSIONS table" >&2
  return 1
}

# Panel options and per-field custom config of each core panel the dashboards use: one schema
# per panel plugin id, with definitions Options and FieldConfig.
panels=(
  "timeseries:timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen"
  "state-timeline:statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen"
  "table:table/panelcfg/x/TablePanelCfg_types.gen"
  "stat:stat/panelcfg/x/StatPanelCfg_types.gen"
  "barchart:barchart/panelcfg/x/BarChartPanelCfg_types.gen"
)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

generate() {  # generate <@grafana/schema version>
  local version=$1 generator typescript work out_dir gs entry id
  read -r generator typescript <<<"$(pins_of "$version")"
  out_dir=dashboards/schema/$version
  work=$tmp/$version
  mkdir "$work"

  (
    cd "$work"
    npm init -y >/dev/null
    npm install --no-audit --no-fund --save-exact --loglevel=error \
      "@grafana/schema@${version}" \
      "ts-json-schema-generator@${generator}" \
      "typescript@${typescript}" >/dev/null
  )
  gs="./node_modules/@grafana/schema/dist/esm"

  # The dashboard type: Grafana's generated Dashboard model, with the two places where
  # Grafana's own schema leaves the data source's query open ("TODO.. this should just be a
  # normal query target") filled in with the InfluxDB data source's query model.
  # @grafana/schema does not ship that model (it lives in
  # public/app/plugins/datasource/influxdb/types.ts of the Grafana repository), so the fields
  # used by InfluxQL raw queries and annotations are declared here.
  cat >"$work/sensord_dashboard.ts" <<TS
import type * as raw from '${gs}/raw/dashboard/x/dashboard_types.gen';
import type { DataQuery } from '${gs}/common/common.gen';

/** Query model of Grafana's bundled InfluxDB data source, InfluxQL raw mode. */
export interface InfluxQuery extends Omit<DataQuery, 'datasource'> {
  datasource?: raw.DataSourceRef;
  /** InfluxQL text; Grafana interpolates \$timeFilter, \$__interval and template variables. */
  query?: string;
  /** true: send 'query' as written instead of building it from the visual editor's parts. */
  rawQuery?: boolean;
  resultFormat?: 'time_series' | 'table' | 'logs';
  /** Series name pattern (\$tag_x, \$col, \$m). */
  alias?: string;
  /** Set by Grafana's annotation editor; the columns below then name text, tags, end time. */
  fromAnnotations?: boolean;
  textColumn?: string;
  tagsColumn?: string;
  titleColumn?: string;
  timeEndColumn?: string;
}

export interface InfluxPanel extends Omit<raw.Panel, 'targets'> {
  targets?: InfluxQuery[];
}

export interface InfluxRowPanel extends Omit<raw.RowPanel, 'panels'> {
  panels: InfluxPanel[];
}

export interface InfluxAnnotationQuery extends Omit<raw.AnnotationQuery, 'target'> {
  target?: InfluxQuery;
}

export interface InfluxVariableModel extends Omit<raw.VariableModel, 'query'> {
  /** InfluxQL text of a query variable, or the comma-separated values of a custom one. */
  query?: string;
}

export interface SensordDashboard
  extends Omit<raw.Dashboard, 'panels' | 'annotations' | 'templating'> {
  panels?: Array<InfluxPanel | InfluxRowPanel>;
  annotations?: { list?: InfluxAnnotationQuery[] };
  templating?: { list?: InfluxVariableModel[] };
}
TS

  gen() {  # gen <entry.ts> <type> <output>
    (cd "$work" && npx --no-install ts-json-schema-generator --path "$1" --type "$2" \
      --no-type-check --expose export --jsDoc extended -o "$3")
  }
  gen sensord_dashboard.ts SensordDashboard "$work/dashboard.schema.json"

  mkdir -p "$out_dir/panels"
  rm -f "$out_dir"/panels/*.schema.json
  cp "$work/dashboard.schema.json" "$out_dir/"
  for entry in "${panels[@]}"; do
    id=${entry%%:*}
    gen "${gs}/raw/composable/${entry#*:}.d.ts" Options "$work/options.json"
    if grep -q "export interface FieldConfig" "$work/${gs}/raw/composable/${entry#*:}.d.ts"; then
      gen "${gs}/raw/composable/${entry#*:}.d.ts" FieldConfig "$work/fieldconfig.json"
    else  # the panel has no per-field custom options (stat): allow none
      echo '{"definitions": {"FieldConfig": {"type": "object", "additionalProperties": false}}}' \
        >"$work/fieldconfig.json"
    fi
    node -e '
      const fs = require("fs");
      const [o, f, out] = process.argv.slice(1);
      const opt = JSON.parse(fs.readFileSync(o)), fc = JSON.parse(fs.readFileSync(f));
      const defs = Object.assign({}, fc.definitions, opt.definitions);
      for (const k of Object.keys(fc.definitions)) {
        if (k in opt.definitions && JSON.stringify(opt.definitions[k]) !== JSON.stringify(fc.definitions[k]))
          throw new Error("definition " + k + " differs between Options and FieldConfig");
      }
      fs.writeFileSync(out, JSON.stringify({ $schema: opt.$schema, definitions: defs }, null, 2) + "\n");
    ' "$work/options.json" "$work/fieldconfig.json" "$out_dir/panels/${id}.schema.json"
  done
  node -e '
    const fs = require("fs");
    const lock = JSON.parse(fs.readFileSync(process.argv[1] + "/package-lock.json"));
    const pick = (n) => ({ version: lock.packages["node_modules/" + n].version,
                           integrity: lock.packages["node_modules/" + n].integrity });
    const src = {
      generated_by: "tools/gen_dashboard_schema.sh",
      "@grafana/schema": pick("@grafana/schema"),
      "ts-json-schema-generator": pick("ts-json-schema-generator"),
      typescript: pick("typescript"),
      grafana_types: {
        dashboard: "dist/esm/raw/dashboard/x/dashboard_types.gen.d.ts (Dashboard, Panel, RowPanel, AnnotationQuery, VariableModel)",
        panels: "dist/esm/raw/composable/<panel>/panelcfg/x/*_types.gen.d.ts (Options, FieldConfig)",
      },
    };
    fs.writeFileSync(process.argv[2], JSON.stringify(src, null, 2) + "\n");
  ' "$work" "$out_dir/SOURCE.json"
  # Every schema file names its source itself, so a copy taken out of the tree still says
  # which Grafana types it checks against.
  node -e '
    const fs = require("fs");
    const [comment, ...files] = process.argv.slice(1);
    for (const f of files) {
      const { $comment, ...rest } = JSON.parse(fs.readFileSync(f));
      fs.writeFileSync(f, JSON.stringify({ $comment: comment, ...rest }, null, 2) + "\n");
    }
  ' "Generated by tools/gen_dashboard_schema.sh from @grafana/schema@${version} with ts-json-schema-generator@${generator} (typescript@${typescript}); do not edit." \
    "$out_dir/dashboard.schema.json" "$out_dir"/panels/*.schema.json
  echo "wrote $out_dir/dashboard.schema.json, panels/*.schema.json, SOURCE.json (@grafana/schema ${version})"
}

if [ "$#" -gt 0 ]; then
  wanted=("$@")
elif [ -n "${GRAFANA_SCHEMA_VERSION:-}" ]; then
  wanted=("$GRAFANA_SCHEMA_VERSION")
else
  wanted=()
  for row in "${VERSIONS[@]}"; do wanted+=("${row%% *}"); done
fi
for version in "${wanted[@]}"; do
  pins_of "$version" >/dev/null
done
for version in "${wanted[@]}"; do
  generate "$version"
done
