"""Group `reconcile`: the daily full comparison of Kaseya, Zomentum and the id map (`reconcile/run.py`), its
report asset `audit_reconciliation`, the check that warns when drift passes a threshold, the job and its
daily schedule."""

import dagster as dg

from zk_pipelines.defs.asset_keys import asset_key, step_of
from zk_pipelines.defs.jobs import PULL_TAG
from zk_pipelines.defs.partitions import now
from zk_pipelines.defs.resources import KaseyaResource, StateStoreResource, ZomentumResource
from zk_pipelines.domain.reconcile import CLASSES, DRIFT, drift_share
from zk_pipelines.reconcile.run import reconcile, reconcile_client
from zk_pipelines.tenants import DEFAULT_TENANT

GROUP = "reconcile"
RECONCILIATION_KEY = asset_key("audit", "reconciliation")
RECONCILIATION_STEP = step_of(RECONCILIATION_KEY)
RECONCILE_JOB = "reconcile_job"
DRIFT_CHECK = "drift_within_threshold"
TABLE_ROWS = 100

DIFFERENCE_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("entity", "string"), dg.TableColumn("class", "string"),
    dg.TableColumn("kaseya_id", "string"), dg.TableColumn("zomentum_id", "string"),
    dg.TableColumn("changed_in", "string", description="drift: where the value moved (zomentum, kaseya, both)"),
    dg.TableColumn("detail", "string"), dg.TableColumn("outcome", "string"),
    dg.TableColumn("kaseya_link", "string"), dg.TableColumn("zomentum_link", "string"),
])


class ReconcileConfig(dg.Config):
    """`entities`: which to compare (default all: clients, client_users, opportunities, items); `repair`: settle
    what the mode allows (the schedule repairs); `dry_run`: work out the repair's requests, send nothing;
    `max_drift_share`: drifted records per linked record above which the check warns."""

    entities: list[str] = []
    repair: bool = False
    dry_run: bool = False
    max_drift_share: float = 0.02


def reconciliation_asset(partitions: dg.PartitionsDefinition | None = None) -> dg.AssetsDefinition:
    @dg.asset(
        key=RECONCILIATION_KEY, group_name=GROUP, pool="duckdb", kinds={"duckdb", "python"},
        partitions_def=partitions,
        check_specs=[dg.AssetCheckSpec(DRIFT_CHECK, asset=RECONCILIATION_KEY,
                                       description="Warns when more than `max_drift_share` of the linked records "
                                                   "differ in Zomentum from what the pull last sent.")],
        description="The latest full comparison of Kaseya, Zomentum and the id map, entity by entity (table "
                    "audit.reconciliation): records gone from Kaseya, gone from Zomentum, drift (which system "
                    "changed which field), orphans (links to nothing), with links to both records and what was "
                    "done about each. Every difference is also in the ledger (`zk audit --entity ...`).",
    )
    def reconciliation(context: dg.AssetExecutionContext, config: ReconcileConfig, state: StateStoreResource,
                       kaseya: KaseyaResource, zomentum: ZomentumResource) -> dg.MaterializeResult:
        database = state.database()
        resolved = state.resolved_settings()
        client = reconcile_client(kaseya.credentials(), state.budget_store())
        try:
            result = reconcile(database, client, zomentum.client(), resolved, entities=config.entities or None,
                               repair=config.repair, dry_run=config.dry_run, run_id=context.run.run_id, clock=now)
            calls = client.stats.usage().data_calls
        finally:
            client.close()
        share = drift_share(result.differences, result.linked)
        drifted = sum(1 for d in result.differences if d.kind == DRIFT)
        check = dg.AssetCheckResult(
            check_name=DRIFT_CHECK, passed=share <= config.max_drift_share, severity=dg.AssetCheckSeverity.WARN,
            metadata={"drifted": drifted, "linked": result.linked, "drift_share": round(share, 4),
                      "max_drift_share": config.max_drift_share})
        counts = result.counts
        return dg.MaterializeResult(
            metadata={
                **{f"{kind}": sum(row[kind] for row in counts.values()) for kind in CLASSES},
                "counts": dg.MetadataValue.json(counts),
                "differences": dg.MetadataValue.table(schema=DIFFERENCE_COLUMNS, records=[dg.TableRecord({
                    "entity": r.entity, "class": r.kind, "kaseya_id": r.kaseya_id or "",
                    "zomentum_id": r.zomentum_id or "", "changed_in": r.changed_in or "", "detail": r.detail,
                    "outcome": r.outcome, "kaseya_link": r.kaseya_link or "", "zomentum_link": r.zomentum_link or "",
                }) for r in result.rows[:TABLE_ROWS]]),
                "repair_requests": dg.MetadataValue.json(result.requests),
                "zomentum_writes": result.zomentum_writes,
                "kaseya_calls": calls,
                "settings_fingerprint": resolved.fingerprint,
            },
            check_results=[check])

    return reconciliation


def reconcile_job(tenant: str | None = DEFAULT_TENANT, tenants: dg.PartitionedConfig | None = None
                  ) -> "dg.UnresolvedAssetJobDefinition":
    # Tagged as a pull: the queued run coordinator runs one pull-tagged run per tenant at a time, so a
    # reconciliation never compares while the hourly pull is writing (and never runs beside it).
    return dg.define_asset_job(
        RECONCILE_JOB, selection=dg.AssetSelection.assets(RECONCILIATION_KEY), executor_def=dg.in_process_executor,
        tags={PULL_TAG: tenant} if tenant else None, config=tenants,
        description="Lists Kaseya and Zomentum whole and compares them with the id map: deletions on either side, "
                    "drift, orphans; repairs what the mode allows when `repair` is set (the schedule sets it).")


def reconcile_schedule(job: "dg.UnresolvedAssetJobDefinition") -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="daily_reconcile_schedule", job=job, cron_schedule="35 3 * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        run_config={"ops": {RECONCILIATION_STEP: {"config": {"repair": True}}}},
        description="Every day at 03:35 UTC (between two hourly runs): compare and repair what the mode allows.")
