"""`zk tenants`: the tenants this deployment serves (the registry `ZK_TENANTS` names, else the environment's one
tenant), each with where its values come from; `--check` reads them all here (environment variables, secret
files, the settings file) and says, per tenant, what cannot be read. Values are never printed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from zk_pipelines.config import ConfigurationError
from zk_pipelines.domain.settings_file import load_settings
from zk_pipelines.tenants import RegistryError, Tenant, deployment_tenants


def _where(tenant: Tenant) -> str:
    return f"{tenant.key}: onboarded {tenant.partitions_start}, settings {tenant.settings}, state {tenant.state}"


def run_tenants_command(env: Mapping[str, str], out: TextIO, check: bool = False) -> int:
    try:
        tenants = deployment_tenants(env)
    except RegistryError as exc:
        print(f"tenant registry {exc.source}: {len(exc.problems)} problem{'s' if len(exc.problems) > 1 else ''}",
              file=out)
        for problem in exc.problems:
            print(f"  {problem}", file=out)
        return 1
    failed = 0
    for tenant in tenants:
        print(_where(tenant), file=out)
        for field, source in tenant.secret_sources().items():
            print(f"  {field}: {source}", file=out)
        if check:
            try:
                load_settings(tenant.config(env).settings_path)
            except ConfigurationError as exc:
                failed += 1
                for line in str(exc).splitlines():
                    print(f"  cannot be used: {line}", file=out)
            else:
                print("  ok: every value and the settings file read here", file=out)
    if check:
        print(f"{len(tenants) - failed} of {len(tenants)} tenants ready", file=out)
    return 1 if failed else 0
