"""Many small tenants through their hour, one run per tenant and, with `--batch K`, K tenants per run (issue 21's
target: at most 3 CPU-seconds per quiet tenant-hour, run launch included).

Starts the sandboxes serving N tenants (scale `small`), writes their registry (state on PostgreSQL, a schema
each), and with Dagster's instance on PostgreSQL (deploy/dagster.yaml) runs every tenant's first hour (its whole
history, untimed; in batches of K with `--batch K`), then every tenant's next, quiet hour: one run per tenant, or
with `--batch K` in batch runs of K tenants (`defs/tenant_batch.py`, ZK_TENANT_BATCH) and the hour after that,
quiet too, one run per tenant. Each run is a child process started as a run worker is (a fresh interpreter:
imports, instance, definitions, the run), at most `--parallel` at once. Each child is measured from outside with
`os.wait4`: user + system CPU and peak RSS; a quiet hour's wall time is all its runs'. The machine's load average
is printed beside the figures (CPU-seconds are what count).

    .venv/bin/python benchmarks/tenant_hours.py [--tenants 50] [--parallel 2] [--batch K] [--postgres URL]

Without `--postgres`, a throwaway database on the local server (127.0.0.1:5432, user postgres) is used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2

from zk_pipelines.defs.jobs import PULL_TAG
from zk_pipelines.defs.partitions import HOURS_TAG, TENANT_TAG, hours_tag
from zk_pipelines.sandbox.launcher import running_sandboxes
from zk_pipelines.sandbox.registry import write_registry

REPO = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, sys
from pathlib import Path
import dagster as dg
from zk_pipelines.defs.jobs import HOURLY_JOB
from zk_pipelines.defs.tenant_batch import BATCH_JOB, BATCH_STEP
from zk_pipelines.defs.tenants import deployment_definitions
from zk_pipelines.tenants import load_registry
registry, keys, tags = sys.argv[1], sys.argv[2].split(","), json.loads(sys.argv[3])
instance = dg.DagsterInstance.get()
definitions = deployment_definitions(load_registry(Path(registry)), Path(registry), batch=len(keys))
if len(keys) == 1:  # one tenant's run, as its hourly schedule launches it
    result = definitions.resolve_job_def(HOURLY_JOB).execute_in_process(
        instance=instance, partition_key=keys[0], tags=tags, raise_on_error=False)
else:  # a batch run, as its batch's schedule launches it: each tenant's hour a run of its own inside
    config = {"ops": {BATCH_STEP: {"config": {"tenants": keys, "hours": tags["zk/hours"]}}}}
    result = definitions.resolve_job_def(BATCH_JOB).execute_in_process(
        instance=instance, run_config=config, tags={"zk/pull": "batch"}, raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


def run_hours(registry: Path, keys: list[str], hour: datetime, parallel: int, env: dict[str, str],
              batch: int = 1) -> list[dict]:
    """Every tenant's hour `hour`, `batch` tenants per run (1: a run per tenant), at most `parallel` runs at once;
    per run: its tenants, CPU, peak RSS, success (of every tenant)."""
    pending = [keys[start:start + batch] for start in range(0, len(keys), batch)]
    running, done = {}, []
    while pending or running:
        while pending and len(running) < parallel:
            tenants = pending.pop(0)
            tags = {TENANT_TAG: tenants[0], PULL_TAG: tenants[0], HOURS_TAG: hours_tag(hour)}
            process = subprocess.Popen([sys.executable, "-c", CHILD, str(registry), ",".join(tenants),
                                        json.dumps(tags)], env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            running[process.pid] = tenants
        pid, status, usage = os.wait4(-1, 0)
        tenants = running.pop(pid)
        done.append({"tenants": tenants, "success": os.waitstatus_to_exitcode(status) == 0,
                     "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024})
    return done


def quiet_hour(label: str, runs: list[dict], wall: float) -> str:
    """A quiet hour's line: runs, tenants that synced, wall, CPU per tenant-hour (a run's CPU over its tenants),
    peak RSS per run, and the machine's load average at its end."""
    tenants = sum(len(run["tenants"]) for run in runs)
    synced = sum(len(run["tenants"]) for run in runs if run["success"])
    per_tenant = sorted(run["cpu_s"] / len(run["tenants"]) for run in runs)
    total = sum(run["cpu_s"] for run in runs)
    return (f"quiet hour, {label}: {len(runs)} runs, {synced}/{tenants} tenants synced; wall {wall:.1f} s; CPU per "
            f"tenant-hour {total / tenants:.2f} s (per run: median {per_tenant[len(per_tenant) // 2]:.2f} s, max "
            f"{per_tenant[-1]:.2f} s; {total:.1f} s in all); peak RSS per run max "
            f"{max(run['peak_rss_mb'] for run in runs):.0f} MB; load average {os.getloadavg()[0]:.1f}")


@contextmanager
def throwaway_database(prefix: str, url: str | None = None) -> Iterator[str]:
    """`url` as given, else a fresh database on the local PostgreSQL, dropped at the end."""
    if url is not None:
        yield url
        return
    server = "postgresql://postgres@127.0.0.1:5432/"
    database = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server + "postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {database}")  # a fresh name of our own, not a value
    try:
        yield server + database
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.close()


def postgres_deployment(folder: Path, boxes: Any, first_hour: datetime,
                        url: str) -> tuple[Path, Path, dict[str, str]]:
    """The sandbox tenants' registry (state on PostgreSQL at `url`) and a Dagster home with deploy/dagster.yaml
    in `folder`: (registry, home, the run workers' environment)."""
    registry = folder / "tenants.yaml"
    secrets = write_registry(registry, boxes.tenant_environments(), first_hour)
    registry.write_text(registry.read_text().replace(
        "    kaseya:\n", "    state_url: {env: BENCH_STATE_URL}\n    kaseya:\n"))
    home = folder / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    env = {**os.environ, **secrets, "BENCH_STATE_URL": url, "DAGSTER_HOME": str(home),
           "DAGSTER_POSTGRES_URL": url.replace("postgresql://", "postgresql+psycopg2://", 1)}
    return registry, home, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1,
                        help="also sync the next quiet hour K tenants per run, and compare (default 1: not)")
    parser.add_argument("--postgres", help="a database URL to use (default: a throwaway one on 127.0.0.1)")
    args = parser.parse_args()
    with throwaway_database("zk_bench", args.postgres) as url, tempfile.TemporaryDirectory() as work, \
            running_sandboxes(seed=7, scale="small", tenants=args.tenants) as boxes:
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        first_hour = now - timedelta(hours=3 if args.batch > 1 else 2)
        registry, home, env = postgres_deployment(Path(work), boxes, first_hour, url)
        os.environ["DAGSTER_POSTGRES_URL"] = env["DAGSTER_POSTGRES_URL"]  # deploy/dagster.yaml names it
        instance = dg.DagsterInstance.from_config(str(home))
        for pool in ("kaseya_api", "zomentum_api", "duckdb"):
            instance.event_log_storage.set_concurrency_slots(pool, 16)
        instance.dispose()
        keys = [f"sandbox_{n:02d}" for n in range(1, args.tenants + 1)]
        print(f"load average before: {' '.join(f'{load:.1f}' for load in os.getloadavg())}", flush=True)
        # The first hours set the comparison up (untimed): in batches when batches are measured, to save time.
        first = run_hours(registry, keys, first_hour, args.parallel, env, args.batch)
        print(f"first hours: {sum(r['success'] for r in first)}/{len(first)} succeeded, "
              f"CPU {sum(r['cpu_s'] for r in first):.1f} s", flush=True)
        quiet = {}
        ways = [("a run per tenant", 1)] if args.batch == 1 else [(f"{args.batch} tenants per run", args.batch),
                                                                   ("a run per tenant", 1)]
        for offset, (label, batch) in enumerate(ways, start=1):
            hour = first_hour + timedelta(hours=offset)
            started = time.perf_counter()
            runs = run_hours(registry, keys, hour, args.parallel, env, batch)
            quiet[label] = quiet_hour(label, runs, time.perf_counter() - started)
            print(quiet[label], flush=True)
    print(f"{args.tenants} tenants, {args.parallel} runs at once")
    for line in quiet.values():
        print(line)


if __name__ == "__main__":
    main()
