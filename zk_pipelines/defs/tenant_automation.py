"""What a registry tenant's schedules and sensor need: its key, its runs' tags, and its own resources; and the
partitioned config that gives a deployment job's runs their tenant's tags, however they are launched."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from zk_pipelines.defs.deployment_resources import deployment_resources
from zk_pipelines.defs.kubernetes import kubernetes_run_tags
from zk_pipelines.defs.partitions import TENANT_TAG
from zk_pipelines.tenants import Tenant


@dataclass(frozen=True)
class TenantAutomation:
    tenant: Tenant
    registry: Path  # the registry file the code location loaded

    @property
    def key(self) -> str:
        return self.tenant.key

    def run_tags(self, kind: str) -> dict[str, str]:
        """A run's tags: its tenant, its kind (`zk/pull` or `zk/push`: the queued run coordinator limits runs per
        tenant by them, deploy/dagster.yaml) and, on Kubernetes, the mount of the tenant's own Secret."""
        return {TENANT_TAG: self.key, kind: self.key, **kubernetes_run_tags(self.tenant)}

    def resources(self) -> dict[str, dg.ConfigurableResource]:
        """The tenant's resources outside a run (a sensor's tick): its entry's values, read now."""
        return deployment_resources(self.registry, tenant_key=self.key)


def tenant_run_config(partitions: dg.PartitionsDefinition, automations: Sequence[TenantAutomation], kind: str
                      ) -> dg.PartitionedConfig:
    """A deployment job's config per tenant partition: no run config of its own, and the tenant's run tags.

    Dagster asks the job for a partition's tags whenever it makes a run of the job for a partition: a schedule's
    or sensor's request, the launchpad, Materialize on the job's page, a backfill of the job, `zk sync --tenant`.
    So each of these runs carries `zk/tenant`, its kind's tag and its Secret's mount, and the queued run
    coordinator's per-tenant limits apply to it (deploy/dagster.yaml)."""
    tags = {automation.key: automation.run_tags(kind) for automation in automations}
    return dg.PartitionedConfig(partitions_def=partitions,
                                run_config_for_partition_key_fn=lambda key: {},
                                tags_for_partition_key_fn=lambda key: tags[key])
