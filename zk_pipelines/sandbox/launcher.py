"""`zk sandbox`: both sandboxes on localhost until interrupted, and the environment lines that point the
pipeline at them."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from zk_pipelines.sandbox.kaseya import KaseyaSandbox, start_kaseya_sandbox
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


@contextmanager
def running_sandboxes(seed: int = 7, scale: str = "medium", host: str = "127.0.0.1",
                      kaseya_port: int = 0, zomentum_port: int = 0) -> Iterator[Sandboxes]:
    kaseya = start_kaseya_sandbox(seed=seed, scale=scale, host=host, port=kaseya_port)
    try:
        zomentum = start_zomentum_sandbox(seed=seed, scale=scale, host=host, port=zomentum_port)
        try:
            yield Sandboxes(kaseya, zomentum)
        finally:
            zomentum.stop()
    finally:
        kaseya.stop()


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def run_sandboxes(seed: int, scale: str, host: str, kaseya_port: int, zomentum_port: int,
                  out: TextIO | None = None) -> int:
    import sys

    out = out or sys.stdout
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with running_sandboxes(seed, scale, host, kaseya_port, zomentum_port) as boxes:
        print(f"Kaseya BMS sandbox: {boxes.kaseya.base_url}/v2   (control: {boxes.kaseya.base_url}/_sandbox/)", file=out)
        print(f"Zomentum sandbox:   {boxes.zomentum.base_url}/v2   (control: {boxes.zomentum.base_url}/_sandbox/)",
              file=out)
        print(f"seed {seed}, scale {scale}. Point the pipeline at them with:\n", file=out)
        for name, value in boxes.environment().items():
            print(f"export {name}={_quote(value)}", file=out)
        print("\nCtrl-C stops both.", file=out, flush=True)
        stop.wait()
    print("sandboxes stopped", file=out, flush=True)
    return 0
