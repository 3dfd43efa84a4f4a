"""A run that syncs a batch of tenants' hour: Dagster's cost per run paid once for K tenants.

With `ZK_TENANT_BATCH` set to K > 1 where the code location loads, the registry's tenants are taken K at a time
in the registry's order, and each batch has one hourly schedule (`hourly_sync_batch_<n>`) in place of its
tenants' own hourly schedules. It launches one run of `tenant_batch_sync_job`, whose one step executes the hourly
job for each tenant of the batch in turn, in its process (`execute_in_process` on the same instance): each
tenant's hour is a run of its own, for its tenant partition, with its tenant's tags, its own resources (its
registry entry, credentials, clients and state, read when that run starts) and its own materializations, so the
UI's asset pages, the runs list and the ledger show each tenant as with one run per tenant. What the tenants of
a batch share is the run worker's process: the interpreter, its imports, the instance and the definitions.

A tenant whose hour fails (wrong credentials, a Kaseya outage, a tenant removed from the registry) has a failed
run of its own with the reason; the batch goes on with the next tenant, and the batch run fails at its end
naming each failed tenant and why, so an alert on failed runs still fires. Why batches, and their cost:
docs/performance.md, Many tenants.
"""

# No `from __future__ import annotations`: Dagster reads the step's config class from its annotation.
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from zk_pipelines.config import ConfigurationError
from zk_pipelines.defs.jobs import PULL_TAG
from zk_pipelines.defs.kubernetes import kubernetes_run_tags
from zk_pipelines.defs.partitions import HOUR_FORMAT, HOURS_TAG, TENANT_TAG, hours_tag
from zk_pipelines.tenants import Tenant

BATCH_VARIABLE = "ZK_TENANT_BATCH"
BATCH_JOB = "tenant_batch_sync_job"
BATCH_STEP = "sync_tenant_batch"
BATCH_SCHEDULE = "hourly_sync_batch"  # + _<n>, from 01
BATCH_TAG = "zk/batch"  # a tenant's run inside a batch run: the batch run's id


def batch_size(env: Mapping[str, str]) -> int:
    """`ZK_TENANT_BATCH`: tenants per hourly run (unset or 1: one run per tenant, each with its schedule)."""
    written = (env.get(BATCH_VARIABLE) or "").strip()
    if not written:
        return 1
    if not written.isdigit() or not 1 <= int(written) <= 200:
        raise ConfigurationError(f"{BATCH_VARIABLE} is {written!r}; expected a whole number of tenants per hourly "
                                 "run, from 1 (one run per tenant) to 200")
    return int(written)


def tenant_batches(tenants: Sequence[Tenant], size: int) -> list[tuple[Tenant, ...]]:
    """The registry's tenants, `size` at a time in its order."""
    return [tuple(tenants[start:start + size]) for start in range(0, len(tenants), size)]


class TenantBatch(dg.Config):
    """Which tenants a batch run syncs, and their hours (`first...last`, or one hour key, as `zk/hours`)."""

    tenants: list[str]
    hours: str


@dataclass(frozen=True)
class TenantHour:
    """How one tenant's hour went inside a batch: its own run, and the first step error when it failed."""

    tenant: str
    run_id: str | None
    success: bool
    reason: str = ""

    def line(self) -> str:
        where = f" (run {self.run_id})" if self.run_id else ""
        return f"tenant {self.tenant}{where}: {self.reason}"


def sync_tenant_hour(job: dg.JobDefinition, instance: dg.DagsterInstance, tenant: str, hours: str,
                     batch_run_id: str) -> TenantHour:
    """One tenant's hour as a run of its own, its tags those its hourly schedule would give it."""
    tags = {TENANT_TAG: tenant, PULL_TAG: tenant, HOURS_TAG: hours, BATCH_TAG: batch_run_id}
    try:
        result = job.execute_in_process(instance=instance, partition_key=tenant, tags=tags, raise_on_error=False)
    except dg.DagsterUnknownPartitionError:  # not in the registry the code location loaded
        return TenantHour(tenant, None, False, "not synced: the code location serves no such tenant (reload it "
                                               "after editing the registry)")
    if result.success:
        return TenantHour(tenant, result.run_id, True)
    failures = result.get_step_failure_events()
    if not failures:
        return TenantHour(tenant, result.run_id, False, "the run failed before its steps")
    error = failures[0].step_failure_data.error
    return TenantHour(tenant, result.run_id, False,
                      f"{failures[0].step_key}: {error.message.strip() if error else 'failed'}")


def tenant_batch_job(hourly_job: Callable[[], dg.JobDefinition]) -> dg.JobDefinition:
    """The job of a batch run: one step that runs `hourly_job` (the deployment's) for each tenant of the batch."""

    @dg.op(name=BATCH_STEP, description="Each tenant of the batch in turn: its hour as a run of its own.")
    def sync_tenant_batch(context: dg.OpExecutionContext, config: TenantBatch) -> None:
        job = hourly_job()
        outcomes = []
        for tenant in config.tenants:
            outcome = sync_tenant_hour(job, context.instance, tenant, config.hours, context.run_id)
            if not outcome.success:  # a tenant that synced is in the step's metadata (`synced`, `runs`)
                context.log.error(outcome.line())
            outcomes.append(outcome)
        failed = [outcome for outcome in outcomes if not outcome.success]
        metadata = {"tenants": dg.MetadataValue.int(len(outcomes)),
                    "synced": dg.MetadataValue.json([o.tenant for o in outcomes if o.success]),
                    "failed": dg.MetadataValue.json([o.tenant for o in failed]),
                    "runs": dg.MetadataValue.json({o.tenant: o.run_id or "" for o in outcomes})}
        if failed:
            raise dg.Failure(description=f"{len(failed)} of {len(outcomes)} tenants failed their hour (the others "
                                         "synced):\n" + "\n".join(outcome.line() for outcome in failed),
                             metadata=metadata)
        context.add_output_metadata(metadata)

    @dg.job(name=BATCH_JOB, executor_def=dg.in_process_executor,
            description="A batch of tenants' hourly sync in one run (ZK_TENANT_BATCH): each tenant's hour a run of "
                        "its own inside it.")
    def batch_job() -> None:
        sync_tenant_batch()

    return batch_job


def batch_hourly_schedule(job: dg.JobDefinition, number: int, batch: tuple[Tenant, ...]) -> dg.ScheduleDefinition:
    """The batch's hourly schedule: one run for the hour that just ended, of the batch's tenants onboarded by
    then. Its run mounts each of the batch's tenants' Secrets (on Kubernetes) and is limited to one at a time by
    `zk/pull: batch_<n>`."""
    name = f"batch_{number:02d}"

    @dg.schedule(name=f"{BATCH_SCHEDULE}_{number:02d}", job=job, cron_schedule="5 * * * *",
                 execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Every hour at :05, the hour that just ended, for {len(batch)} tenants in one run: "
                             f"{', '.join(tenant.key for tenant in batch)}.")
    def hourly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        hour = context.scheduled_execution_time.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        hour -= timedelta(hours=1)
        onboarded = [tenant for tenant in batch
                     if datetime.strptime(tenant.partitions_start, HOUR_FORMAT).replace(tzinfo=UTC) <= hour]
        if not onboarded:
            return dg.SkipReason(f"no tenant of {name} is onboarded by {hour.strftime(HOUR_FORMAT)}")
        config = TenantBatch(tenants=[tenant.key for tenant in onboarded], hours=hours_tag(hour))
        return dg.RunRequest(run_key=hour.strftime(HOUR_FORMAT), run_config=dg.RunConfig(ops={BATCH_STEP: config}),
                             tags={PULL_TAG: name, **kubernetes_run_tags(*onboarded)})

    return hourly
