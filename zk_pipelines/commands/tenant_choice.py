"""`--tenant NAME`: which tenant a `zk` command acts on, for every command that acts on one tenant's systems or
state (`zk sync`, `check`, `settings`, `push`, `reconcile`, `state`, `audit`, `history`).

With a tenant registry (`ZK_TENANTS`), the command acts on the tenant it names, reading what that tenant's runs
read: its credentials from its own environment variables or secret files, its settings file, its state. Without
`--tenant`, a registry of one tenant means that tenant, and a registry of several is an error listing their names.
Without a registry, the command acts on the environment's one tenant exactly as it always has (`--tenant
default` names it too).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from zk_pipelines.config import TENANT_VARIABLES, ConfigurationError, TenantConfig
from zk_pipelines.domain.settings_file import closest_names
from zk_pipelines.tenants import DEFAULT_TENANT, REGISTRY_VARIABLE, Tenant, load_registry


def registry_tenant(env: Mapping[str, str], name: str | None) -> tuple[Tenant, Path] | None:
    """The registry entry a command acts on, and the registry's path; None without a registry."""
    registry = (env.get(REGISTRY_VARIABLE) or "").strip()
    if not registry:
        if name is not None and name != DEFAULT_TENANT:
            raise ConfigurationError(f"--tenant {name}: {REGISTRY_VARIABLE} is not set, so this deployment serves "
                                     f"one tenant, configured by the environment ('{DEFAULT_TENANT}')")
        return None
    tenants = load_registry(Path(registry))
    keys = [tenant.key for tenant in tenants]
    if name is None:
        if len(tenants) == 1:
            return tenants[0], Path(registry)
        raise ConfigurationError(f"the tenant registry {registry} ({REGISTRY_VARIABLE}) lists {len(tenants)} "
                                 f"tenants: name one with --tenant ({', '.join(keys)})")
    for tenant in tenants:
        if tenant.key == name:
            return tenant, Path(registry)
    close = closest_names(name, keys, limit=1, cutoff=0.6)
    raise ConfigurationError(f"--tenant {name}: not in the tenant registry {registry}"
                             f"{f' (did you mean {close[0]}?)' if close else ''}; its tenants: {', '.join(keys)}")


def tenant_config(env: Mapping[str, str], name: str | None) -> TenantConfig:
    """The chosen tenant's configuration, every value read now (the registry entry's sources, else the
    environment's variables as without a registry)."""
    chosen = registry_tenant(env, name)
    return chosen[0].config(env) if chosen else TenantConfig.from_env(env)


def tenant_environment(env: Mapping[str, str], name: str | None) -> Mapping[str, str]:
    """The environment as the commands that find the state and settings by variable read it (`zk audit`,
    `history`, `state`): for a registry tenant, its settings file, state location and systems' addresses in
    the single tenant's variables, and no other tenant variable; without a registry, `env` itself."""
    chosen = registry_tenant(env, name)
    if chosen is None:
        return env
    ours = {*TENANT_VARIABLES.names(), REGISTRY_VARIABLE}
    return {**{key: value for key, value in env.items() if key not in ours}, **chosen[0].location_variables(env)}
