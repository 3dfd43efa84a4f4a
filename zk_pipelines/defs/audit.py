"""Group `audit`: the entity-level audit log (`audit.sync_events`, validation rejects counted as errors),
summarised after every hourly sync. The run-level audit log is the materialization history of the load and
push assets; `zk audit` and `zk history` list the entries behind these counts."""


from datetime import timedelta

import dagster as dg

from zk_pipelines.defs.asset_keys import asset_key
from zk_pipelines.defs.partitions import now
from zk_pipelines.defs.resources import StateStoreResource
from zk_pipelines.defs.zomentum_sync import PRIORITY_TAG
from zk_pipelines.storage.audit_store import EntityOutcomes, entity_outcomes, has_ledger
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import count_rows

GROUP = "audit"
AUDIT_KEY = asset_key("audit", "sync_events")
RECENT = timedelta(days=1)

OUTCOME_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("direction", "string", description="pull (Kaseya -> Zomentum) or push (Zomentum -> Kaseya)"),
    dg.TableColumn("entity", "string"),
    dg.TableColumn("last_run", "string", description="the last run that recorded an outcome for the entity"),
    dg.TableColumn("last_run_at", "string", description="UTC"),
    dg.TableColumn("last_run_succeeded", "int"),
    dg.TableColumn("last_run_errors", "int", description="failed writes and validation rejects"),
    dg.TableColumn("last_run_waiting", "int", description="deferred: waiting for a parent record or pricing"),
    dg.TableColumn("last_day_succeeded", "int"),
    dg.TableColumn("last_day_errors", "int"),
    dg.TableColumn("last_day_waiting", "int"),
])


def outcome_table(outcomes: list[EntityOutcomes]) -> dg.MetadataValue:
    return dg.MetadataValue.table(schema=OUTCOME_COLUMNS, records=[dg.TableRecord({
        "direction": o.direction, "entity": o.entity, "last_run": o.last_run_id or "",
        "last_run_at": o.last_run_at.strftime("%Y-%m-%d %H:%M:%S"),
        "last_run_succeeded": o.last_run_succeeded, "last_run_errors": o.last_run_errors,
        "last_run_waiting": o.last_run_waiting,
        "last_day_succeeded": o.recent_succeeded, "last_day_errors": o.recent_errors,
        "last_day_waiting": o.recent_waiting,
    }) for o in outcomes])


def audit_asset(partitions: dg.PartitionsDefinition | None = None) -> dg.AssetsDefinition:
    @dg.asset(
        key=AUDIT_KEY, group_name=GROUP, pool="duckdb", kinds={"duckdb"}, partitions_def=partitions,
        # Not downstream of the loads: Dagster does not run a step whose upstream failed, and the run with the most
        # errors is the one the audit must count. The lowest priority makes it the run's last step whatever failed.
        op_tags={PRIORITY_TAG: "-100"},
        description="The ledger: every outcome of every record the pull or the push touched (created, matched, "
                    "updated, unchanged, deferred while waiting for a parent, failed with its reason, skipped), "
                    "with run id, ids in both systems, changed fields and links; validation rejects "
                    "(audit.rejects) count as errors of the pull. Materialized after each hourly sync with, per "
                    "entity, the successes, errors and waiting records of the last run and of the last 24 hours, as "
                    "the hourly sync's last step, also when a load failed or a check blocked. "
                    "`zk audit` lists the entries, `zk history` follows one record.",
    )
    def sync_events(context: dg.AssetExecutionContext, state: StateStoreResource) -> dg.MaterializeResult:
        with connect(state.database(), read_only=True) as connection:
            outcomes = entity_outcomes(connection, now() - RECENT) if has_ledger(connection) else []
            entries = count_rows(connection, "audit.sync_events") if has_ledger(connection) else 0
        this_run = context.run.run_id
        return dg.MaterializeResult(metadata={
            "dagster/row_count": entries,
            "outcomes": outcome_table(outcomes),
            "errors_this_run": sum(o.last_run_errors for o in outcomes if o.last_run_id == this_run),
            "succeeded_this_run": sum(o.last_run_succeeded for o in outcomes if o.last_run_id == this_run),
            "errors_last_day": sum(o.recent_errors for o in outcomes),
            "succeeded_last_day": sum(o.recent_succeeded for o in outcomes),
            "details": dg.MetadataValue.md(
                f"`zk audit --run {this_run[:8]} --status error` lists this run's errors; "
                "`zk history client|contact|opportunity|item ID` follows one record."),
        })

    return sync_events
