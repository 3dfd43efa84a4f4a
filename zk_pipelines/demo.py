"""`zk demo`: start both sandboxes and exercise the integration end to end, printing what happened."""

from __future__ import annotations

from typing import TextIO

from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.config import TenantConfig
from zk_pipelines.sandbox.launcher import running_sandboxes


def run_demo(seed: int, scale: str, out: TextIO) -> int:
    print(f"starting the Kaseya BMS and Zomentum sandboxes (seed {seed}, scale {scale}) ...", file=out, flush=True)
    with running_sandboxes(seed=seed, scale=scale) as boxes:
        config = TenantConfig.from_env(boxes.environment())
        kaseya = KaseyaClient(config.kaseya)
        counts = {
            "accounts": sum(1 for _ in kaseya.iter_accounts()),
            "contacts": sum(1 for _ in kaseya.iter_contacts()),
            "opportunities": sum(1 for _ in kaseya.iter_opportunities()),
            "products": len({row["productIndexId"] for row in kaseya.iter_products()}),
            "employees": len(kaseya.employees()),
        }
        print("Kaseya entities paged through:", file=out)
        for entity, count in counts.items():
            print(f"  {entity:<14} {count:>6}", file=out)
        print("Kaseya calls per endpoint this hour:", file=out)
        for endpoint, used in kaseya.budget.used().items():
            print(f"  {used:>5}  {endpoint}", file=out)
    return 0
