"""The resources of a deployment serving several tenants: one per system, as for one tenant, whose values are
the registry entry of the run's tenant.

One code location serves every tenant of the registry (`defs/tenants.py`), so its assets are bound to one
resource per key: these resolve the tenant when a run starts, from the run's tenant tag (which the deployment's
jobs give every run of a tenant partition), read the registry then, and read only that tenant's sources (its
environment variables, its mounted secret files). A run of tenant A never holds tenant B's credentials or state.
What Dagster stores of a run is the registry's path, never a value from it.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from zk_pipelines.config import ConfigurationError, KaseyaCredentials, TenantConfig, ZomentumCredentials
from zk_pipelines.defs.jobs import HOURLY_JOB
from zk_pipelines.defs.partitions import PARTITION_TAG, TENANT_TAG
from zk_pipelines.defs.resources import KaseyaResource, StateStoreResource, ZomentumResource
from zk_pipelines.secrets import Secret
from zk_pipelines.tenants import Tenant, load_registry

# A run without its tenant's tags was queued outside the per-tenant run limits (and, on Kubernetes, without its
# tenant's Secret mounted): Dagster's hidden asset job (Materialize from the asset graph, an asset backfill) knows
# no tenant tags, only the deployment's jobs give them (`tenant_automation.tenant_run_config`). Such a run could
# overlap its tenant's hourly run, so it stops before it reads or writes anything.
_UNTAGGED_RUN = ("this run{partition} carries no {tag} tag, so the per-tenant run limits did not apply to it: launch "
                 "a tenant's run from its job ({job} for the sync: its launchpad, Materialize on the job's page, "
                 "or a backfill of the job), which tags it; Materialize from the global asset graph and asset "
                 "backfills use Dagster's hidden asset job, which cannot")


def registry_entry(registry: str, key: str) -> Tenant:
    """The tenant's entry, read from the registry file now (a run's start): a tenant removed since the code
    location loaded fails its run with the reason."""
    for tenant in load_registry(Path(registry)):
        if tenant.key == key:
            return tenant
    raise ConfigurationError(f"tenant {key!r} is not in the registry {registry}")


class _RunTenant(dg.ConfigurableResource):
    """Which tenant the resource serves: `tenant_key` when fixed (a tenant's sensor), else the run's."""

    registry: str  # the registry file's path (ZK_TENANTS where the code location loaded)
    tenant_key: str | None = None

    _run_tenant: str | None = PrivateAttr(default=None)
    _run_partition: str | None = PrivateAttr(default=None)
    _config: TenantConfig | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.dagster_run
        self._config = None  # each run reads its own tenant's entry afresh
        self._run_tenant = None if run is None else run.tags.get(TENANT_TAG)
        self._run_partition = None if run is None else run.tags.get(PARTITION_TAG)

    def tenant_config(self) -> TenantConfig:
        """The tenant's values, every source read now, in this process (the run worker, the run's pod)."""
        if self._config is None:
            key = self.tenant_key or self._run_tenant
            if not key:
                raise ConfigurationError(_UNTAGGED_RUN.format(
                    partition=f" for tenant {self._run_partition!r}" if self._run_partition else "",
                    tag=TENANT_TAG, job=HOURLY_JOB))
            self._config = registry_entry(self.registry, key).config(os.environ)
        return self._config


class DeploymentKaseyaResource(_RunTenant, KaseyaResource):
    """Kaseya BMS as the run's tenant's registry entry names it."""

    base_url: str = ""
    username: str = ""
    tenant: str = ""

    def credentials(self) -> KaseyaCredentials:
        return self.tenant_config().kaseya


class DeploymentZomentumResource(_RunTenant, ZomentumResource):
    """Zomentum as the run's tenant's registry entry names it."""

    base_url: str = ""

    def credentials(self) -> ZomentumCredentials:
        credentials = self.tenant_config().zomentum
        assert credentials is not None  # every registry entry has its Zomentum section
        return credentials


class DeploymentStateStoreResource(_RunTenant, StateStoreResource):
    """The run's tenant's state (its DuckDB file, its PostgreSQL schema) and settings file."""

    settings_path: str = ""

    @property
    def database_path(self) -> Path:
        return self.tenant_config().duckdb_path

    def settings_file(self) -> Path:
        path = self.tenant_config().settings_path
        assert path is not None  # every registry entry names its settings file
        return path

    def state_location(self) -> tuple[Secret | None, str | None]:
        config = self.tenant_config()
        return config.state_url, config.state_schema

    def system_base_urls(self) -> tuple[str | None, str | None]:
        config = self.tenant_config()
        return config.kaseya.base_url, config.zomentum.base_url if config.zomentum else None


def deployment_resources(registry: Path, tenant_key: str | None = None) -> dict[str, dg.ConfigurableResource]:
    """The three resources, the run's tenant's (or `tenant_key`'s) from the registry at `registry`."""
    where = {"registry": str(registry), "tenant_key": tenant_key}
    return {"kaseya": DeploymentKaseyaResource(**where), "zomentum": DeploymentZomentumResource(**where),
            "state": DeploymentStateStoreResource(**where)}
