"""Group `staging`: raw payloads validated into `stg.*`; rejects to `audit.rejects`, with a blocking check
that stops the load when too many rows of a run are rejected."""


import dagster as dg

from zk_pipelines.defs.asset_keys import staged_key
from zk_pipelines.defs.kaseya_extract import api_usage, raw_key
from zk_pipelines.defs.partitions import now, run_partitions
from zk_pipelines.defs.resources import KaseyaResource, PullTuning, StateStoreResource
from zk_pipelines.domain.entities import STAGED_SOURCES, KaseyaSource
from zk_pipelines.domain.staging_schemas import REFERENCE_CHECK_PREFIX
from zk_pipelines.pull.extract import read_held_back
from zk_pipelines.pull.stage import stage_entity
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import count_rows

GROUP = "staging"
SAMPLE_ROWS = 200  # every reject of a run that blocks, as a rule: the limit blocks from a few dozen

_DEFAULTS = PullTuning()
BLOCKING_CHECK_DESCRIPTION = (
    f"Fails, and stops this entity's load and what depends on it, when more than the limit's share of this "
    f"run's rows ({_DEFAULTS.max_reject_share:.0%} by default, once {_DEFAULTS.min_rejects_to_block} are) is "
    "rejected by validation; its metadata lists the rejects that count (records waiting for a parent do not).")

REJECT_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("kaseya_id", "string"), dg.TableColumn("check", "string"), dg.TableColumn("column", "string"),
    dg.TableColumn("value", "string"), dg.TableColumn("reason", "string"),
])


def reject_table(rejects, limit: int = SAMPLE_ROWS) -> dg.MetadataValue:
    """The rejects that count against the limit (records waiting for a parent do not), up to `limit` rows."""
    counted = rejects[~rejects["check"].astype(str).str.startswith(REFERENCE_CHECK_PREFIX)] if len(rejects) else rejects
    records = [dg.TableRecord({name: str(value if value is not None else "")[:300] for name, value in zip(
        ("kaseya_id", "check", "column", "value", "reason"), row, strict=True)})
        for row in counted[["kaseya_id", "check", "column", "value", "reason"]].head(limit).itertuples(index=False)]
    if len(counted) > limit:
        records.append(dg.TableRecord({"kaseya_id": "...", "check": "", "column": "", "value": "",
                                       "reason": f"{len(counted) - limit} more in audit.rejects"}))
    return dg.MetadataValue.table(records=records, schema=REJECT_COLUMNS)


def raw_dependency(source: KaseyaSource, tenant_partitioned: bool = False) -> dg.AssetDep:
    """Staging reads what is pending in raw, whatever hours brought it: as a dependency on an hourly-partitioned
    raw asset, the latest hour. (Dagster's default, every partition, would make each staging step enumerate all
    the hours since the first: a second per step after five years of them.) Partitioned by tenant, both sides
    are: the tenant's own partition."""
    if source.incremental and not tenant_partitioned:
        return dg.AssetDep(raw_key(source), partition_mapping=dg.LastPartitionMapping())
    return dg.AssetDep(raw_key(source))


def _read_held_back(context: dg.AssetExecutionContext, source: KaseyaSource, state: StateStoreResource,
                    kaseya: KaseyaResource, tuning: PullTuning) -> dict[str, object]:
    """The entity's rejected and waiting records read again by id from Kaseya before staging (a fix made after
    their hour), within `tuning.held_back_reads_per_run` and the endpoint's hourly budget; the figures for the
    metadata (none for an entity Kaseya cannot read by id, no calls when nothing is held back)."""
    if source.by_id_endpoint is None:
        return {}
    client = kaseya.client(state)
    with client.step_usage() as calls:
        held = read_held_back(client, state.database(), source, limit=tuning.held_back_reads_per_run,
                              run_id=context.run.run_id, now=now(), concurrency=tuning.kaseya_concurrency)
    if held.stopped:
        context.log.warning(f"reading held-back {source.name} again stopped after {held.read}: {held.stopped}")
    figures: dict[str, object] = {"held_back_read_again": held.read, "held_back_changed": held.changed,
                                  "held_back_gone_from_kaseya": len(held.gone)}
    if held.wanted:
        figures |= api_usage(client, calls.usage())
    return figures


def build_staged_asset(source: KaseyaSource, partitions: dg.PartitionsDefinition | None = None
                       ) -> dg.AssetsDefinition:
    assert source.staging is not None
    entity, description, upstream = source.name, source.staging.description, source.staging.upstream
    key = staged_key(entity)
    check_specs = ([dg.AssetCheckSpec("reject_share_within_limit", asset=key, blocking=True,
                                      description=BLOCKING_CHECK_DESCRIPTION)]
                   if source.staging.checked else [])

    @dg.asset(
        key=key, group_name=GROUP, pool="duckdb", partitions_def=partitions,
        kinds={"duckdb", "pandera"}, check_specs=check_specs,
        deps=[raw_dependency(source, partitions is not None), *(staged_key(u) for u in upstream)],
        description=f"{description} Table stg.kaseya_{entity}; rows failing validation go to audit.rejects "
                    "with the record's Kaseya id, the failed check and the offending value. Not partitioned: each "
                    "run stages what is pending in raw (new or changed since staging last read it, whichever run "
                    "extracted it) and what waits for a parent"
                    + (", after reading the records it rejected or held back again by id from Kaseya (a fix made "
                       "after their hour)." if source.by_id_endpoint else "."),
    )
    def staged(context: dg.AssetExecutionContext, state: StateStoreResource, kaseya: KaseyaResource,
               tuning: PullTuning) -> dg.MaterializeResult:
        held_back = _read_held_back(context, source, state, kaseya, tuning)
        report = stage_entity(state.database(), entity, run_id=context.run.run_id,
                              partition_key=run_partitions(context.run.tags), now=now())
        with connect(state.database(), read_only=True) as connection:
            table_rows = count_rows(connection, f"stg.kaseya_{entity}")
        metadata = {"dagster/row_count": table_rows, "rows_read": report.read, "rows_staged": report.staged,
                    "records_rejected": report.rejected_records, "records_waiting_for_parent": report.waiting_records,
                    "reject_share": round(report.reject_share, 4),
                    "rejects": reject_table(report.rejects), **held_back}
        checks = []
        if check_specs:
            passed = (report.reject_share <= tuning.max_reject_share
                      or report.rejected_records < tuning.min_rejects_to_block)
            checks.append(dg.AssetCheckResult(
                check_name="reject_share_within_limit", passed=passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=(f"{report.rejected_records} of {report.read - report.waiting_records} rows rejected "
                             f"({report.reject_share:.1%}); the limit: more than {tuning.max_reject_share:.0%} "
                             f"of a run's rows, once at least {tuning.min_rejects_to_block} are rejected. "
                             f"{report.waiting_records} more wait for their account or status (not counted)."),
                metadata={"records_rejected": report.rejected_records, "rows_read": report.read,
                          "reject_share": dg.MetadataValue.float(round(report.reject_share, 4)),
                          "limit_share": dg.MetadataValue.float(tuning.max_reject_share),
                          "limit_min_rejects": tuning.min_rejects_to_block,
                          "records_waiting_for_parent": report.waiting_records,
                          "rejects": reject_table(report.rejects)},
            ))
        return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return staged


def staged_assets(partitions: dg.PartitionsDefinition | None = None) -> list[dg.AssetsDefinition]:
    return [build_staged_asset(source, partitions) for source in STAGED_SOURCES]
