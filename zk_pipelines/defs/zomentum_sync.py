"""Group `zomentum_sync`: staged rows mapped to Zomentum payloads, then upserted into
Zomentum in dependency order (clients before client users and opportunities)."""


import dagster as dg

from zk_pipelines.defs.asset_keys import asset_key, staged_key
from zk_pipelines.defs.kaseya_extract import API_STEP_RETRIES, NOT_RETRIED, final_failure
from zk_pipelines.defs.partitions import now, run_partitions
from zk_pipelines.defs.resources import PullTuning, StateStoreResource, ZomentumResource
from zk_pipelines.defs.settings_assets import RESOLVED_SETTINGS_KEY
from zk_pipelines.domain.entities import KASEYA_LINK_ENTITY, ZOMENTUM_TARGETS, ZomentumTarget
from zk_pipelines.domain.links import kaseya_link
from zk_pipelines.pull.load import load_target
from zk_pipelines.pull.map import map_target
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import count_mapped, count_rows

TABLE_ROWS = 25
# One group for the mapping and the load: each target's mapping reads its parents' loads, so two groups (mapped,
# then loaded) would interleave in the asset graph instead of reading left to right.
GROUP = "zomentum_sync"
PRIORITY_TAG = "dagster/priority"


def step_priority(target: ZomentumTarget, load: bool) -> dict[str, str]:
    """The run's one process executes the highest-priority step that is ready: extraction, settings and staging
    (priority 0) first, then each target's mapping and load in `ZOMENTUM_TARGETS` order (parents first), the
    audit last (defs/audit.py)."""
    index = ZOMENTUM_TARGETS.index(target)
    return {PRIORITY_TAG: str(-10 - 2 * index - (1 if load else 0))}


def _mapped_key(target: ZomentumTarget) -> dg.AssetKey:
    return asset_key("mapped", f"zomentum_{target.name}")


def _load_key(target: ZomentumTarget) -> dg.AssetKey:
    return asset_key("zomentum", target.name)


def build_mapped_asset(target: ZomentumTarget, partitions: dg.PartitionsDefinition | None = None
                       ) -> dg.AssetsDefinition:
    # A parent that records only wait for (an opportunity whose contact is not in Zomentum yet is deferred until
    # it is) is no edge: its blocking check must not stop this target, which step priority orders after it.
    parents = [_load_key(t) for t in ZOMENTUM_TARGETS
               if t.name in target.parents and t.name not in target.ordering_only_parents]

    @dg.asset(
        key=_mapped_key(target), group_name=GROUP, pool="duckdb", kinds={"duckdb", "python"},
        partitions_def=partitions,
        op_tags=step_priority(target, load=False),
        deps=[staged_key(target.source), RESOLVED_SETTINGS_KEY, *parents],
        description=f"Zomentum {target.label} payloads mapped field by field from stg.kaseya_{target.source} "
                    f"(the spec's entity mapping), references resolved through the id map. Table "
                    f"mapped.zomentum_{target.name}: the desired state, with a payload hash; a record whose "
                    "parent is not in Zomentum yet carries the reason and is mapped again every run.",
    )
    def mapped(context: dg.AssetExecutionContext, state: StateStoreResource) -> dg.MaterializeResult:
        database = state.database()
        resolved = state.resolved_settings()
        enabled = resolved.settings.sync.covers(target.family)
        if not enabled:
            return dg.MaterializeResult(metadata={"skipped": f"sync.{target.family} is off in the settings"})
        report = map_target(database, target, resolved, run_id=context.run.run_id, now=now())
        with connect(database, read_only=True) as connection:
            table_rows = count_mapped(connection, target.name)
        return dg.MaterializeResult(metadata={"dagster/row_count": table_rows,
                                              "mapped": report.mapped, "waiting": report.problems,
                                              "settings_fingerprint": resolved.fingerprint})

    return mapped


FAILURE_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("entity", "string"), dg.TableColumn("kaseya_id", "string"),
    dg.TableColumn("zomentum_id", "string"), dg.TableColumn("reason", "string"),
])


def _failure_table(target: ZomentumTarget, events, run_id: str) -> dg.MetadataValue:
    # A table (not markdown): the Dagster UI shows it inline on the asset page, however long.
    records = [dg.TableRecord({"entity": event.entity, "kaseya_id": event.kaseya_id or "",
                               "zomentum_id": event.zomentum_id or "", "reason": event.reason or ""})
               for event in events[:TABLE_ROWS]]
    if len(events) > TABLE_ROWS:
        records.append(dg.TableRecord({"entity": target.name, "kaseya_id": "...", "zomentum_id": "",
                                       "reason": f"{len(events) - TABLE_ROWS} more: zk audit --run {run_id[:8]} "
                                                 f"--entity {target.name} --status error"}))
    return dg.MetadataValue.table(records=records, schema=FAILURE_COLUMNS)


CREATED_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("kaseya_id", "string"), dg.TableColumn("zomentum_id", "string"),
    dg.TableColumn("zomentum_link", "string", description="the Zomentum record"),
    dg.TableColumn("kaseya_link", "string", description="the Kaseya record it came from"),
])
LINKS_SHOWN = 3  # created records whose links are also UrlMetadata (opening in a new tab)


def _created_records(target: ZomentumTarget, events, resolved) -> dict[str, dg.MetadataValue]:
    """The records this run created: a table with both links (as text: the UI does not link table cells), and
    for the first few, links that open the records in a new tab."""
    kaseya_entity = KASEYA_LINK_ENTITY[target.name]
    rows = [(event.kaseya_id or "", event.zomentum_id or "", event.link or "",
             kaseya_link(resolved, target.name, event.kaseya_id) if event.kaseya_id else "")
            for event in events]
    records = [dg.TableRecord(dict(zip(("kaseya_id", "zomentum_id", "zomentum_link", "kaseya_link"), row,
                                       strict=True))) for row in rows[:TABLE_ROWS]]
    if len(rows) > TABLE_ROWS:
        records.append(dg.TableRecord({"kaseya_id": "...", "zomentum_id": f"{len(rows) - TABLE_ROWS} more in "
                                       "audit.sync_events", "zomentum_link": "", "kaseya_link": ""}))
    metadata: dict[str, dg.MetadataValue] = {
        "created_records": dg.MetadataValue.table(records=records, schema=CREATED_COLUMNS)}
    for kaseya_id, _, zomentum_url, kaseya_url in rows[:LINKS_SHOWN]:
        if zomentum_url:
            metadata[f"Go to {target.label} (Kaseya {kaseya_entity} {kaseya_id})"] = dg.MetadataValue.url(zomentum_url)
        if kaseya_url:
            metadata[f"Go to Kaseya {kaseya_entity} {kaseya_id}"] = dg.MetadataValue.url(kaseya_url)
    return metadata


def build_load_asset(target: ZomentumTarget, partitions: dg.PartitionsDefinition | None = None
                     ) -> dg.AssetsDefinition:
    @dg.asset(
        key=_load_key(target), group_name=GROUP, pool="zomentum_api", kinds={"zomentum", "duckdb"},
        partitions_def=partitions,
        op_tags=step_priority(target, load=True),
        retry_policy=API_STEP_RETRIES,
        deps=[_mapped_key(target)],
        description=f"Zomentum {target.label}s upserted from mapped.zomentum_{target.name}: created, matched to "
                    f"an existing record, updated, or left alone when unchanged (no call). The id map "
                    "(zomentum.id_map) pairs the records; every outcome is in audit.sync_events.",
    )
    def loaded(context: dg.AssetExecutionContext, state: StateStoreResource, zomentum: ZomentumResource,
               tuning: PullTuning) -> dg.MaterializeResult:
        resolved = state.resolved_settings()
        if not resolved.settings.sync.covers(target.family):
            return dg.MaterializeResult(metadata={"skipped": f"sync.{target.family} is off in the settings"})
        client = zomentum.client()
        at_start = client.usage()
        try:
            report = load_target(state.database(), client, target, resolved, run_id=context.run.run_id,
                                 partition_key=run_partitions(context.run.tags), clock=now,
                                 concurrency=tuning.zomentum_concurrency)
        except NOT_RETRIED as exc:
            raise final_failure(exc) from None
        sent = client.usage().since(at_start)
        with connect(state.database(), read_only=True) as connection:  # the id map's pairs of this entity
            paired = count_rows(connection, "zomentum.id_map", "WHERE entity = ?", [target.name])
        counts = {action: report.counts.get(action, 0)
                  for action in ("created", "updated", "unchanged", "matched", "deferred", "failed", "conflict",
                                 "skipped", "deactivated", "reactivated")}
        return dg.MaterializeResult(metadata={
            "dagster/row_count": paired,
            **counts,
            "zomentum_writes": report.zomentum_writes,
            "zomentum_calls": sent.sent,
            # Zomentum publishes no quota: what its rate limit cost is the retries and the time waited.
            "zomentum_retries": sent.retries,
            "zomentum_retry_wait_seconds": round(sent.waited_seconds, 1),
            "failures": _failure_table(target, report.failures, context.run.run_id),
            **_created_records(target, report.created, resolved),
            "settings_fingerprint": resolved.fingerprint,
        })

    return loaded


def zomentum_assets(partitions: dg.PartitionsDefinition | None = None) -> list[dg.AssetsDefinition]:
    return [build(target, partitions) for target in ZOMENTUM_TARGETS
            for build in (build_mapped_asset, build_load_asset)]
