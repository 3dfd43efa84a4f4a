"""`zk sandbox`: both sandboxes on localhost until interrupted, and the environment lines that point the
pipeline at them (with several tenants: a tenant registry and the lines that give its secrets values)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from zk_pipelines.sandbox.kaseya import KaseyaSandbox, start_kaseya_sandbox
from zk_pipelines.sandbox.registry import write_registry
from zk_pipelines.sandbox.zomentum import ZomentumSandbox, start_zomentum_sandbox


@dataclass(frozen=True)
class Sandboxes:
    kaseya: KaseyaSandbox
    zomentum: ZomentumSandbox

    def environment(self) -> dict[str, str]:
        """The exact variables (credentials included: these are the sandboxes' own, not a tenant's)."""
        return {
            "KASEYA_BASE_URL": self.kaseya.base_url,
            "KASEYA_USERNAME": self.kaseya.username,
            "KASEYA_PASSWORD": self.kaseya.password,
            "KASEYA_TENANT": self.kaseya.tenant,
            "ZOMENTUM_BASE_URL": self.zomentum.base_url,
            "ZOMENTUM_REFRESH_TOKEN": self.zomentum.refresh_token,
        }

    def tenant_environments(self) -> dict[str, dict[str, str]]:
        """Each tenant's variables as `environment()` gives tenant 1's, keyed by the tenant's registry name
        (`sandbox_01`, ...): Kaseya company n and Zomentum account n are one MSP."""
        environments = {}
        for tenant in self.kaseya.tenants:
            login = self.kaseya.login(tenant)
            environments[tenant.key] = {
                "KASEYA_BASE_URL": self.kaseya.base_url,
                "KASEYA_USERNAME": login.username,
                "KASEYA_PASSWORD": login.password,
                "KASEYA_TENANT": login.tenant,
                "ZOMENTUM_BASE_URL": self.zomentum.base_url,
                "ZOMENTUM_REFRESH_TOKEN": self.zomentum.refresh_token_of(tenant),
            }
        return environments


@contextmanager
def running_sandboxes(seed: int = 7, scale: str = "medium", host: str = "127.0.0.1",
                      kaseya_port: int = 0, zomentum_port: int = 0, tenants: int = 1) -> Iterator[Sandboxes]:
    """Both sandboxes, serving `tenants` MSPs each (tenant 1 at once, the others seeded on first use)."""
    kaseya = start_kaseya_sandbox(seed=seed, scale=scale, host=host, port=kaseya_port, tenants=tenants)
    try:
        zomentum = start_zomentum_sandbox(seed=seed, scale=scale, host=host, port=zomentum_port, tenants=tenants)
        try:
            yield Sandboxes(kaseya, zomentum)
        finally:
            zomentum.stop()
    finally:
        kaseya.stop()


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _print_exports(variables: dict[str, str], out: TextIO) -> None:
    for name, value in variables.items():
        print(f"export {name}={_quote(value)}", file=out)


def run_sandboxes(seed: int, scale: str, host: str, kaseya_port: int, zomentum_port: int,
                  out: TextIO | None = None, tenants: int = 1, registry: Path | None = None) -> int:
    """Serve until SIGINT/SIGTERM. With more than one tenant, or a `registry` path, write the tenant registry
    (default `tenants.yaml` here) and print the variables its `{env: ...}` entries name."""
    import sys

    out = out or sys.stdout
    started = datetime.now(UTC)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with running_sandboxes(seed, scale, host, kaseya_port, zomentum_port, tenants) as boxes:
        print(f"Kaseya BMS sandbox: {boxes.kaseya.base_url}/v2   (control: {boxes.kaseya.base_url}/_sandbox/)",
              file=out)
        print(f"Zomentum sandbox:   {boxes.zomentum.base_url}/v2   (control: {boxes.zomentum.base_url}/_sandbox/)",
              file=out)
        if tenants == 1 and registry is None:
            print(f"seed {seed}, scale {scale}. Point the pipeline at them with:\n", file=out)
            _print_exports(boxes.environment(), out)
        else:
            path = (registry or Path("tenants.yaml")).resolve()
            secrets = write_registry(path, boxes.tenant_environments(), started)
            print(f"seed {seed}, scale {scale}, {tenants} tenants (tenant 1 seeded, the others on first use). "
                  f"Tenant registry: {path}\nPoint the pipeline at it with:\n", file=out)
            _print_exports({"ZK_TENANTS": str(path), **secrets}, out)
        print("\nCtrl-C stops both.", file=out, flush=True)
        stop.wait()
    print("sandboxes stopped", file=out, flush=True)
    return 0
