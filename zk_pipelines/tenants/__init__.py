"""The tenants one deployment serves: `Tenant` (model.py) and the registry file that lists them (registry.py)."""

from zk_pipelines.tenants.model import (
    DEFAULT_PARTITIONS_START,
    DEFAULT_TENANT,
    PARTITIONS_START_VARIABLE,
    FromEnv,
    FromFile,
    KaseyaSources,
    SecretSource,
    Tenant,
    TextSource,
    ZomentumSources,
    read_secret_file,
    single_tenant,
)
from zk_pipelines.tenants.registry import (
    REGISTRY_VARIABLE,
    RegistryError,
    deployment_tenants,
    load_registry,
    registry_from_text,
)

__all__ = [
    "DEFAULT_PARTITIONS_START", "DEFAULT_TENANT", "PARTITIONS_START_VARIABLE", "REGISTRY_VARIABLE", "FromEnv",
    "FromFile", "KaseyaSources", "RegistryError", "SecretSource", "Tenant", "TextSource", "ZomentumSources",
    "deployment_tenants", "load_registry", "read_secret_file", "registry_from_text", "single_tenant",
]
