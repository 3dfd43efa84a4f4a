"""What a registry tenant's schedules and sensor need: its key, its runs' tags, and its own resources."""

from __future__ import annotations

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
