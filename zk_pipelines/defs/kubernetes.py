"""On Kubernetes, each tenant's runs mount that tenant's Secret, and only it.

`K8sRunLauncher` starts every run as a Kubernetes Job (deploy/helm-values.yaml). What all runs share (the
registry, the settings files, Dagster's own configuration) the launcher gives every run pod; a tenant's
credentials are a Kubernetes Secret of its own, `zk-tenant-<key>` (underscores as dashes), mounted read-only at
`/var/run/secrets/zk/<key>/` in that tenant's run pods alone, by the `dagster-k8s/config` tag its jobs carry. The
registry names the Secret's keys as files there (`password: {file: /var/run/secrets/zk/acme/kaseya-password}`), so
a run of tenant A has no file, variable or mount holding tenant B's secrets. docs/deploy.md walks through it.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from zk_pipelines.tenants import FromFile, Tenant

K8S_CONFIG_TAG = "dagster-k8s/config"  # dagster-k8s reads a run's pod settings from this tag
SECRETS_ROOT = PurePosixPath("/var/run/secrets/zk")


def tenant_secret_name(tenant: Tenant) -> str:
    """The tenant's Kubernetes Secret: a DNS label (the registry's keys are at most 40 characters)."""
    return "zk-tenant-" + tenant.key.replace("_", "-")


def tenant_secret_directory(tenant: Tenant) -> PurePosixPath:
    return SECRETS_ROOT / tenant.key


def kubernetes_run_tags(*tenants: Tenant) -> dict[str, str]:
    """The tags of a tenant's jobs that mount its Secret into their run pods (merged by dagster-k8s with what
    the run launcher gives every run; a run's tags are text, so the settings are JSON). A batch run
    (`defs/tenant_batch.py`) mounts each of its tenants' Secrets, each at its own tenant's folder."""
    return {K8S_CONFIG_TAG: json.dumps({
        "container_config": {"volume_mounts": [
            {"name": tenant_secret_name(tenant), "mount_path": str(tenant_secret_directory(tenant)),
             "read_only": True} for tenant in tenants]},
        "pod_spec_config": {"volumes": [
            {"name": tenant_secret_name(tenant), "secret": {"secret_name": tenant_secret_name(tenant)}}
            for tenant in tenants]},
    })}


def secret_files_outside_mount(tenant: Tenant) -> list[str]:
    """The registry fields whose secret file a run pod of this tenant would not have: outside its mount."""
    directory = tenant_secret_directory(tenant)
    return [field for field, source in tenant.secret_sources().items()
            if isinstance(source, FromFile) and PurePosixPath(source.path).parent != directory]
