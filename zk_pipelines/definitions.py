"""The code location: every asset, check, job, schedule, sensor and resource of zk_pipelines."""

from __future__ import annotations

import os

import dagster as dg

from zk_pipelines.defs.audit import audit_asset
from zk_pipelines.defs.kaseya_extract import raw_assets
from zk_pipelines.defs.jobs import hourly_sync_job, hourly_sync_schedule
from zk_pipelines.defs.partitions import DEFAULT_PARTITIONS_START, hourly_partitions
from zk_pipelines.defs.push import build_push_job, build_won_document_sensor
from zk_pipelines.defs.resources import PullTuning, TenantResource, tenant_from_env
from zk_pipelines.defs.settings_assets import settings_asset
from zk_pipelines.defs.staging import staged_assets
from zk_pipelines.defs.zomentum_sync import zomentum_assets


def build_definitions(*, partitions_start: str = DEFAULT_PARTITIONS_START, tenant: TenantResource | None = None,
                      tuning: PullTuning | None = None) -> dg.Definitions:
    partitions = hourly_partitions(partitions_start)
    job = hourly_sync_job(partitions)
    push_job = build_push_job()
    return dg.Definitions(
        assets=[*raw_assets(partitions), settings_asset(partitions), *staged_assets(partitions),
                *zomentum_assets(partitions), audit_asset(partitions)],
        jobs=[job, push_job],
        schedules=[hourly_sync_schedule(job)],
        sensors=[build_won_document_sensor(push_job)],
        resources={"tenant": tenant or tenant_from_env(), "tuning": tuning or PullTuning()},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by Dagster (workspace.yaml); `ZK_PARTITIONS_START` moves the first hourly partition."""
    return build_definitions(partitions_start=os.environ.get("ZK_PARTITIONS_START", DEFAULT_PARTITIONS_START))
