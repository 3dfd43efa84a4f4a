"""A deployment serving the tenants of a registry (`ZK_TENANTS`): one code location, every tenant a partition.

Every asset is partitioned by tenant (a static partition per registry entry): the UI keeps its 18 asset pages,
each showing every tenant's status, and the code location builds one asset graph whatever the number of tenants
(measured in benchmarks/tenant_load.py and docs/performance.md). Each tenant gets its own hourly schedule, daily
reconciliation schedule and Won-document sensor, named with its key, which launch its runs for its partition; the
jobs give every run for a tenant partition the tenant's tags, however it is launched (`tenant_run_config`); the
resources resolve the run's tenant from the registry when the run starts (`defs/deployment_resources.py`). Adding
or removing a tenant is an edit of the registry and a reload of the code location. With `ZK_TENANT_BATCH` > 1, a
schedule per batch of tenants replaces their hourly schedules, and its run runs each tenant's hour as a run of its
own in one process (`defs/tenant_batch.py`).

Concurrency: a run is one tenant's, and the queued run coordinator allows one pull run (`zk/pull`) and a few push
runs (`zk/push`) per tenant at a time (deploy/dagster.yaml). The step pools (`kaseya_api`, `zomentum_api`,
`duckdb`) are sized for the deployment there, never 1: a pool is named on the step, the same step for every
tenant, so a pool of 1 would make every tenant's extraction wait for one tenant's (a slow or rate-limited tenant
would hold every other back). Within a tenant, one pull run at a time keeps its steps in turn.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from zk_pipelines.defs.audit import audit_asset
from zk_pipelines.defs.catalogue import catalogued
from zk_pipelines.defs.deployment_resources import deployment_resources
from zk_pipelines.defs.jobs import HOURLY_JOB, PULL_TAG, PUSH_TAG, hourly_sync_job
from zk_pipelines.defs.kaseya_extract import kaseya_assets
from zk_pipelines.defs.loggers import code_location_loggers
from zk_pipelines.defs.partitions import HOUR_FORMAT, HOURS_TAG, hourly_partitions, hours_tag, tenant_partitions
from zk_pipelines.defs.push import build_push_job, build_won_document_sensor, pushed_documents_asset
from zk_pipelines.defs.reconcile import RECONCILIATION_STEP, reconcile_job, reconciliation_asset
from zk_pipelines.defs.resources import PullTuning
from zk_pipelines.defs.settings_assets import settings_asset
from zk_pipelines.defs.staging import staged_assets
from zk_pipelines.defs.tenant_automation import TenantAutomation, tenant_run_config
from zk_pipelines.defs.tenant_batch import batch_hourly_schedule, tenant_batch_job, tenant_batches
from zk_pipelines.defs.zomentum_sync import zomentum_assets
from zk_pipelines.tenants import Tenant

HOURLY_SCHEDULE = "hourly_sync"  # + _<tenant>
RECONCILE_SCHEDULE = "daily_reconcile"  # + _<tenant>


def tenant_hourly_schedule(job: dg.UnresolvedAssetJobDefinition, tenant: TenantAutomation) -> dg.ScheduleDefinition:
    onboarded = datetime.strptime(tenant.tenant.partitions_start, HOUR_FORMAT).replace(tzinfo=UTC)

    @dg.schedule(name=f"{HOURLY_SCHEDULE}_{tenant.key}", job=job, cron_schedule="5 * * * *",
                 execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Tenant {tenant.key}: every hour at :05, the hour that just ended (a tenant's first "
                             "run syncs its whole history).")
    def hourly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        hour = context.scheduled_execution_time.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        hour -= timedelta(hours=1)
        if hour < onboarded:
            return dg.SkipReason(f"tenant {tenant.key} is onboarded at {tenant.tenant.partitions_start}")
        return dg.RunRequest(run_key=hour.strftime(HOUR_FORMAT), partition_key=tenant.key,
                             tags={HOURS_TAG: hours_tag(hour)})  # the tenant's tags come with its partition

    return hourly


def tenant_reconcile_schedule(job: dg.UnresolvedAssetJobDefinition, tenant: TenantAutomation
                              ) -> dg.ScheduleDefinition:
    @dg.schedule(name=f"{RECONCILE_SCHEDULE}_{tenant.key}", job=job, cron_schedule="35 3 * * *",
                 execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Tenant {tenant.key}: every day at 03:35 UTC (between two hourly runs), compare and "
                             "repair what the mode allows.")
    def daily(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(partition_key=tenant.key,
                             run_config={"ops": {RECONCILIATION_STEP: {"config": {"repair": True}}}})

    return daily


def deployment_definitions(tenants: tuple[Tenant, ...], registry: Path, *, tuning: PullTuning | None = None,
                           batch: int = 1) -> dg.Definitions:
    """Every tenant of the registry at `registry`, from one asset graph partitioned by tenant; with `batch` > 1
    (`ZK_TENANT_BATCH`), the hourly sync runs `batch` tenants per run (`defs/tenant_batch.py`)."""
    tenant_keys = tenant_partitions([tenant.key for tenant in tenants])
    earliest = min(tenant.partitions_start for tenant in tenants)
    automations = [TenantAutomation(tenant, registry) for tenant in tenants]
    job = hourly_sync_job(None, tenant_run_config(tenant_keys, automations, PULL_TAG))
    push_job = build_push_job(None, tenant_run_config(tenant_keys, automations, PUSH_TAG))
    reconcile = reconcile_job(None, tenant_run_config(tenant_keys, automations, PULL_TAG))
    # A batch run executes the hourly job of these very definitions, resolved once per batch run.
    batch_job = tenant_batch_job(lambda: definitions.resolve_job_def(HOURLY_JOB))
    if batch > 1:
        hourly = [batch_hourly_schedule(batch_job, number, members)
                  for number, members in enumerate(tenant_batches(tenants, batch), start=1)]
    else:
        hourly = [tenant_hourly_schedule(job, tenant) for tenant in automations]
    definitions = dg.Definitions(
        assets=catalogued([*kaseya_assets(hourly_partitions(earliest), tenant_keys), settings_asset(tenant_keys),
                           *staged_assets(tenant_keys), *zomentum_assets(tenant_keys), audit_asset(tenant_keys),
                           reconciliation_asset(tenant_keys), pushed_documents_asset(tenant_keys)]),
        jobs=[job, push_job, reconcile, batch_job],
        schedules=[*hourly, *(tenant_reconcile_schedule(reconcile, tenant) for tenant in automations)],
        sensors=[build_won_document_sensor(push_job, tenant=tenant) for tenant in automations],
        resources={**deployment_resources(registry), "tuning": tuning or PullTuning()},
        loggers=code_location_loggers(),
    )
    return definitions
