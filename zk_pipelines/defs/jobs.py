"""The hourly sync job over the pull's groups, and its schedule (the last complete hour)."""

from __future__ import annotations

import dagster as dg

from zk_pipelines.defs.executor import concurrent_in_process_executor

PULL_GROUPS = ("kaseya_extract", "settings", "staging", "mapped", "zomentum_load", "audit")


def hourly_sync_job(partitions: dg.PartitionsDefinition) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "hourly_sync_job",
        selection=dg.AssetSelection.groups(*PULL_GROUPS),
        partitions_def=partitions,
        executor_def=concurrent_in_process_executor,
        description="Kaseya -> DuckDB staging -> validated, mapped -> Zomentum upsert, for one hour (or a "
                    "range of hours in one run).",
    )


def hourly_sync_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return dg.build_schedule_from_partitioned_job(
        job, name="hourly_sync_schedule", minute_of_hour=5, default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every hour at :05, the hour that just ended.",
    )
