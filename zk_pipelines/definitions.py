"""The code location: every asset, check, job, schedule, sensor and resource of zk_pipelines."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import dagster as dg

from zk_pipelines.config import TENANT_VARIABLES, TenantVariables
from zk_pipelines.defs.audit import audit_asset
from zk_pipelines.defs.catalogue import catalogued
from zk_pipelines.defs.jobs import hourly_sync_job, hourly_sync_schedule
from zk_pipelines.defs.kaseya_extract import kaseya_assets
from zk_pipelines.defs.loggers import code_location_loggers
from zk_pipelines.defs.partitions import DEFAULT_PARTITIONS_START, hourly_partitions
from zk_pipelines.defs.push import build_push_job, build_won_document_sensor, pushed_documents_asset
from zk_pipelines.defs.reconcile import reconcile_job, reconcile_schedule, reconciliation_asset
from zk_pipelines.defs.resources import PullTuning, tenant_resources
from zk_pipelines.defs.settings_assets import settings_asset
from zk_pipelines.defs.staging import staged_assets
from zk_pipelines.defs.tenant_batch import batch_size
from zk_pipelines.defs.tenants import deployment_definitions
from zk_pipelines.defs.zomentum_sync import zomentum_assets
from zk_pipelines.tenants import PARTITIONS_START_VARIABLE, REGISTRY_VARIABLE, load_registry


def build_definitions(*, partitions_start: str = DEFAULT_PARTITIONS_START,
                      variables: TenantVariables = TENANT_VARIABLES, tuning: PullTuning | None = None,
                      env: dict[str, str] | None = None) -> dg.Definitions:
    """The definitions of one tenant, its resources bound to the environment variables `variables` names."""
    job = hourly_sync_job()
    push_job = build_push_job()
    reconcile = reconcile_job()
    return dg.Definitions(
        assets=catalogued([*kaseya_assets(hourly_partitions(partitions_start)), settings_asset(), *staged_assets(),
                           *zomentum_assets(), audit_asset(), reconciliation_asset(), pushed_documents_asset()]),
        jobs=[job, push_job, reconcile],
        schedules=[hourly_sync_schedule(job), reconcile_schedule(reconcile)],
        sensors=[build_won_document_sensor(push_job)],
        resources={**tenant_resources(variables, env), "tuning": tuning or PullTuning()},
        loggers=code_location_loggers(),
    )


def freeze_loaded_objects() -> None:
    """The modules and definitions just loaded live as long as the process (a run worker, the code server): out
    of the cyclic garbage collector's sight (`gc.freeze`), a run's collections do not walk them again and again,
    and the process does not spend its last ~0.7 s collecting them at exit (measured: a quiet hour's run worker,
    2.5 s to 1.8 s). Objects made later are collected as usual."""
    gc.collect()
    gc.freeze()


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by Dagster (workspace.yaml). With `ZK_TENANTS`, the registry's tenants (README "Tenants"; a tenant
    added or removed there appears or goes at the next reload); without it, the one tenant of the environment,
    `ZK_PARTITIONS_START` setting the first hourly partition (the tenant's onboarding hour: its first run syncs
    the whole history, whichever hour it is for)."""
    registry = (os.environ.get(REGISTRY_VARIABLE) or "").strip()
    if registry:  # a deployment of several tenants: every registry entry a partition (defs/tenants.py)
        definitions = deployment_definitions(load_registry(Path(registry)), Path(registry),
                                             batch=batch_size(os.environ))
    else:
        definitions = build_definitions(partitions_start=os.environ.get(PARTITIONS_START_VARIABLE)
                                        or DEFAULT_PARTITIONS_START)
    freeze_loaded_objects()
    return definitions
