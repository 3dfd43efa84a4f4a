"""`zk sync`: one run of the hourly sync in this process, recorded in the Dagster instance ($DAGSTER_HOME),
exactly as the schedule would run it (the same job, executor and resources, bound to the environment).

- `zk sync`: the last complete hour. A tenant's first run extracts its whole history: this is how a tenant
  is onboarded from a terminal (or from the UI: the latest partition of `hourly_sync_job`).
- `zk sync --hour H`: that hour; `--from A --to B`: a range of hours as one run (a backfill).
- `--whole-history`: extract everything Kaseya holds again (a full re-sync; only what changed is written).
- `--tenant NAME`: with a tenant registry, that tenant's run, for its partition of the registry's definitions
  with its tags, as its hourly schedule launches it (`commands/tenant_choice.py`).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import dagster as dg

from zk_pipelines.commands.run_summary import print_run_summary
from zk_pipelines.commands.tenant_choice import registry_tenant
from zk_pipelines.config import TENANT_VARIABLES, ConfigurationError, TenantConfig
from zk_pipelines.definitions import PARTITIONS_START_VARIABLE, build_definitions, freeze_loaded_objects
from zk_pipelines.defs.local_runs import HOUR_KEY, hour_key, last_complete_hour, prepare_dagster_home, run_hourly_job
from zk_pipelines.defs.partitions import DEFAULT_PARTITIONS_START
from zk_pipelines.defs.tenants import deployment_definitions
from zk_pipelines.tenants import load_registry

REPO = Path(__file__).resolve().parents[2]


def parse_hour(text: str, option: str) -> datetime:
    try:
        return datetime.strptime(text, HOUR_KEY).replace(tzinfo=UTC)
    except ValueError:
        raise ConfigurationError(f"{option} {text!r} is not an hour as YYYY-MM-DD-HH:00 (UTC)") from None


def dagster_home(env: dict[str, str] | os._Environ) -> Path:
    """$DAGSTER_HOME (default `.dagster_home/` in the repository), holding the repository's dagster.yaml."""
    home = prepare_dagster_home(Path(env.get("DAGSTER_HOME") or REPO / ".dagster_home"))
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_sync(*, hour: str | None, first: str | None, last: str | None, whole_history: bool, out: TextIO,
             now: datetime | None = None, tenant: str | None = None) -> int:
    entry, registry = registry_tenant(os.environ, tenant) or (None, None)
    # Every value is read here, so that a missing one is named before Dagster starts.
    config = entry.config(os.environ) if entry else TenantConfig.from_env(os.environ)
    if config.settings_path is None:
        raise ConfigurationError(f"environment variable {TENANT_VARIABLES.settings_path} is not set")
    if (first is None) != (last is None) or (hour is not None and first is not None):
        raise ConfigurationError("give --hour, or --from and --to together")
    if first is not None and last is not None:
        start, end = parse_hour(first, "--from"), parse_hour(last, "--to")
        if end < start:
            raise ConfigurationError(f"--to {last} is before --from {first}")
    else:
        start = end = parse_hour(hour, "--hour") if hour else last_complete_hour(now or datetime.now(UTC))
    if entry:
        partitions_start, onboarding = entry.partitions_start, f"tenant {entry.key}'s partitions_start"
    else:
        partitions_start = os.environ.get(PARTITIONS_START_VARIABLE) or DEFAULT_PARTITIONS_START
        onboarding = PARTITIONS_START_VARIABLE
    if start < parse_hour(partitions_start, onboarding):
        raise ConfigurationError(f"{hour_key(start)} is before the first hourly partition {partitions_start} "
                                 f"({onboarding}); the first run extracts the whole history anyway")
    home = dagster_home(os.environ)
    what = hour_key(start) if start == end else f"{hour_key(start)} .. {hour_key(end)}"
    event_log = home / "zk-sync-events.log"
    print(f"sync of {what} (UTC){f' for tenant {entry.key}' if entry else ''} into {config.duckdb_path}, recorded "
          f"in the Dagster instance {home}; Dagster's event log is appended to {event_log}", file=out, flush=True)
    started = time.monotonic()
    definitions = (deployment_definitions(load_registry(registry), registry) if entry and registry
                   else build_definitions(partitions_start=partitions_start))
    freeze_loaded_objects()
    with dg.DagsterInstance.get() as instance:
        result = run_hourly_job(definitions, instance, start, end, whole_history=whole_history,
                                event_log=event_log, tenant=entry.key if entry else None)
    print(f"run {result.run_id}: {'success' if result.success else 'FAILED'} in {time.monotonic() - started:.0f} s",
          file=out)
    print_run_summary(out, config.duckdb_path, result.run_id)
    return 0 if result.success else 1
