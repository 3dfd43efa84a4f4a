"""The hourly sync job over the pull's groups, and its schedule (the last complete hour)."""

from __future__ import annotations

import dagster as dg

from zk_pipelines.tenants import DEFAULT_TENANT

PULL_GROUPS = ("kaseya_extract", "settings", "staging", "zomentum_sync", "audit")
HOURLY_JOB = "hourly_sync_job"
# Run tags naming the tenant, by kind of run: a QueuedRunCoordinator limits runs per tag value
# (deploy/dagster.yaml: one pull run per tenant at a time, a few pushes).
PULL_TAG = "zk/pull"
PUSH_TAG = "zk/push"


def hourly_sync_job(tenant: str | None = DEFAULT_TENANT, tenants: dg.PartitionedConfig | None = None
                    ) -> dg.UnresolvedAssetJobDefinition:
    """The job of one tenant's assets (`tenant`: its runs' tag), or, with `tenants`, of a deployment's
    tenant-partitioned assets, whose runs get their tenant's tags from it (`defs/tenant_automation.py`)."""
    # Dagster's own in-process executor: the run's steps one after another in its one process (one Kaseya login,
    # one Zomentum token per run), the same whether the schedule launches the run, a backfill, the launchpad, or
    # `zk sync` executes it in process. Requests go out side by side inside the steps (a thread pool over the
    # run's one client), which is where a run waits.
    return dg.define_asset_job(
        HOURLY_JOB,
        selection=dg.AssetSelection.groups(*PULL_GROUPS),
        executor_def=dg.in_process_executor,
        tags={PULL_TAG: tenant} if tenant else None,
        config=tenants,
        description="Kaseya -> DuckDB staging -> validated, mapped -> Zomentum upsert, for one hour (or a range "
                    "of hours in one run). A tenant's first run syncs its whole history.",
    )


def hourly_sync_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return dg.build_schedule_from_partitioned_job(
        job, name="hourly_sync_schedule", minute_of_hour=5, default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every hour at :05, the hour that just ended.",
    )
