"""`zk reconcile [--entity E ...] [--repair] [--dry-run]`: one reconciliation in this process, by the code the
`reconcile` job runs, into the same report and ledger (run id `zk-reconcile-<uuid>`, outside Dagster's run
list). Prints the counts per entity and class, each difference with links to both records, and the requests
`--repair` sent (or, with `--dry-run`, would send: nothing is sent or written)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TextIO

from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.commands.tenant_choice import tenant_config
from zk_pipelines.config import TENANT_VARIABLES, ConfigurationError
from zk_pipelines.pull.run_settings import resolved_for_step
from zk_pipelines.reconcile.run import reconcile, reconcile_client, render_result
from zk_pipelines.storage.budget_store import budget_store_for


def run_reconcile(environ: Mapping[str, str], *, entities: Sequence[str] | None, repair: bool, dry_run: bool,
                  out: TextIO, tenant: str | None = None) -> int:
    config = tenant_config(environ, tenant)
    if config.settings_path is None:
        raise ConfigurationError(f"environment variable {TENANT_VARIABLES.settings_path} is not set")
    if config.zomentum is None:
        raise ConfigurationError(f"{TENANT_VARIABLES.zomentum_base_url} is not set: the reconciliation lists Zomentum")
    store = config.state_store()
    resolved = resolved_for_step(config.duckdb_path, config.settings_path)
    resolved = replace(resolved, settings=resolved.settings.for_systems(config.kaseya.base_url,
                                                                          config.zomentum.base_url))
    kaseya = reconcile_client(config.kaseya, budget_store_for(config.duckdb_path, store))
    zomentum = ZomentumClient(config.zomentum)
    try:
        try:
            result = reconcile(config.duckdb_path, kaseya, zomentum, resolved, entities=entities, repair=repair,
                               dry_run=dry_run, run_id=f"zk-reconcile-{uuid.uuid4()}",
                               clock=lambda: datetime.now(UTC),
                               progress=lambda line: print(f"  {line}", file=out, flush=True))
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    finally:
        kaseya.close()
        zomentum.close()
        store.close()
    print(render_result(result, repair=repair, dry_run=dry_run), file=out)
    return 0
