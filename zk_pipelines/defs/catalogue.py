"""What the Dagster catalogue says of every asset, in one place: the owner, the layer and system as tags, the
DuckDB table each asset is (its name and its columns, as the DDL makes them), freshness where a schedule
promises it, and where its code is.

Applied over the assets the other modules define (`catalogued`), so that each of them stays about what its
assets do.
"""

from collections.abc import Sequence
from datetime import timedelta

import dagster as dg

from zk_pipelines.defs.asset_keys import layer_of, table_of_key
from zk_pipelines.defs.jobs import PULL_GROUPS
from zk_pipelines.defs.kaseya_extract import CHANGES_KEY
from zk_pipelines.domain.entities import INCREMENTAL_SOURCES, ZOMENTUM_TARGETS
from zk_pipelines.storage.pull_store import table_columns

OWNER = "team:integrations"

# Each layer (`asset_keys.LAYERS`) as a tag, and the system whose records it holds.
LAYER_TAGS: dict[str, tuple[str, str | None]] = {
    "raw": ("raw", "kaseya"), "settings": ("settings", None), "stg": ("staging", "kaseya"),
    "mapped": ("mapped", "zomentum"), "zomentum": ("load", "zomentum"), "audit": ("audit", None),
    "push": ("push", "kaseya"),
}

# The hourly schedule runs at :05 for the hour that ended: an unpartitioned pull asset not materialized for
# two hours means the sync is not running (a failed run, the daemon down).
HOURLY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2),
                                                  warn_window=timedelta(minutes=75))

# Assets whose table is not named by their key.
CHANGES_TABLES = tuple(f"raw.{source.raw_table}" for source in INCREMENTAL_SOURCES)
ID_MAP_TABLE = "zomentum.id_map"


def table_of(key: dg.AssetKey) -> str | None:
    """The DuckDB table an asset is: its key's, or for the loads the id map (their rows by entity), for
    raw_kaseya_changes the first of its lists' tables (all have one layout)."""
    if key == CHANGES_KEY:
        return CHANGES_TABLES[0]
    if layer_of(key) == "zomentum":
        return ID_MAP_TABLE
    return table_of_key(key)


def column_schema(columns: Sequence[tuple[str, str]]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, kind.lower()) for name, kind in columns])


def _catalogue(tables: dict[str, list[tuple[str, str]]]):
    def entry(spec: dg.AssetSpec) -> dg.AssetSpec:
        layer, system = LAYER_TAGS[layer_of(spec.key)]
        table = table_of(spec.key)
        metadata: dict[str, object] = {}
        if table in tables:
            metadata["dagster/table_name"] = (", ".join(CHANGES_TABLES) if table == CHANGES_TABLES[0]
                                              else table)
            metadata["dagster/column_schema"] = column_schema(tables[table])
        tags = {"layer": layer, **({"system": system} if system else {})}
        changes: dict = {}
        if spec.partitions_def is None and spec.group_name in PULL_GROUPS and layer != "settings" and \
                spec.group_name != "kaseya_extract":
            changes["freshness_policy"] = HOURLY_FRESHNESS
        return spec.replace_attributes(owners=[OWNER], **changes).merge_attributes(metadata=metadata, tags=tags)
    return entry


def catalogued(assets: Sequence[dg.AssetsDefinition | dg.AssetSpec]) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """The assets with their catalogue entries and references to their code."""
    tables = table_columns([target.name for target in ZOMENTUM_TARGETS])
    entry = _catalogue(tables)
    mapped = [a.map_asset_specs(entry) if isinstance(a, dg.AssetsDefinition) else entry(a) for a in assets]
    return list(dg.with_source_code_references(mapped))
