"""`zk check`: can this tenant's configuration reach every endpoint the pipeline uses?"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.probe import EndpointCheck
from zk_pipelines.commands.tenant_choice import tenant_config
from zk_pipelines.config import TenantConfig


def check_endpoints(config: TenantConfig) -> list[EndpointCheck]:
    checks = KaseyaClient(config.kaseya).probe_endpoints()
    if config.zomentum is not None:
        from zk_pipelines.clients.zomentum import ZomentumClient

        checks += ZomentumClient(config.zomentum).probe_endpoints()
    return checks


def run_check(env: Mapping[str, str], out: TextIO, tenant: str | None = None) -> int:
    config = tenant_config(env, tenant)
    checks = check_endpoints(config)
    for check in checks:
        print(check.line(), file=out)
    failed = [c for c in checks if not c.ok]
    if config.zomentum is None:
        print("zomentum  skipped  (ZOMENTUM_BASE_URL is not set)", file=out)
    print(f"{len(checks) - len(failed)} ok, {len(failed)} failed", file=out)
    return 1 if failed else 0
