"""Many small tenants through their hour, one run per tenant (issue 21's target: at most 3 CPU-seconds per quiet
tenant-hour, run launch included).

Starts the sandboxes serving N tenants (scale `small`), writes their registry (state on PostgreSQL, a schema
each), and with Dagster's instance on PostgreSQL (deploy/dagster.yaml) runs every tenant's first hour (its whole
history, untimed), then every tenant's next, quiet hour: each run a child process started as a run worker is (a
fresh interpreter: imports, instance, definitions, the run), at most `--parallel` at once. Each child is measured
from outside with `os.wait4`: user + system CPU and peak RSS; the quiet hours' wall time is the whole batch's.

    .venv/bin/python benchmarks/tenant_hours.py [--tenants 50] [--parallel 2] [--postgres URL]

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
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
from zk_pipelines.defs.tenants import deployment_definitions
from zk_pipelines.tenants import load_registry
registry, key, tags = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
instance = dg.DagsterInstance.get()
definitions = deployment_definitions(load_registry(Path(registry)), Path(registry))
result = definitions.resolve_job_def(HOURLY_JOB).execute_in_process(instance=instance, partition_key=key, tags=tags,
                                                                     raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


def run_hours(registry: Path, keys: list[str], hour: datetime, parallel: int, env: dict[str, str]) -> list[dict]:
    """Every tenant's run for `hour`, at most `parallel` at once; per run: CPU, peak RSS, success."""
    pending, running, done = list(keys), {}, []
    while pending or running:
        while pending and len(running) < parallel:
            key = pending.pop(0)
            tags = {TENANT_TAG: key, PULL_TAG: key, HOURS_TAG: hours_tag(hour)}
            process = subprocess.Popen([sys.executable, "-c", CHILD, str(registry), key, json.dumps(tags)], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            running[process.pid] = key
        pid, status, usage = os.wait4(-1, 0)
        key = running.pop(pid)
        done.append({"tenant": key, "success": os.waitstatus_to_exitcode(status) == 0,
                     "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024})
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--postgres", help="a database URL to use (default: a throwaway one on 127.0.0.1)")
    args = parser.parse_args()
    server = "postgresql://postgres@127.0.0.1:5432/"
    database = f"zk_bench_{uuid.uuid4().hex[:8]}"
    url = args.postgres
    if url is None:
        admin = psycopg2.connect(server + "postgres")
        admin.autocommit = True
        admin.cursor().execute(f"CREATE DATABASE {database}")  # a fresh name of our own, not a value
        url = server + database
    try:
        with tempfile.TemporaryDirectory() as work, running_sandboxes(seed=7, scale="small",
                                                                       tenants=args.tenants) as boxes:
            folder = Path(work)
            registry = folder / "tenants.yaml"
            now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            secrets = write_registry(registry, boxes.tenant_environments(), now - timedelta(hours=2))
            registry.write_text(registry.read_text().replace(
                "    kaseya:\n", "    state_url: {env: BENCH_STATE_URL}\n    kaseya:\n"))
            home = folder / "dagster_home"
            home.mkdir()
            (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
            env = {**os.environ, **secrets, "BENCH_STATE_URL": url, "DAGSTER_HOME": str(home),
                   "DAGSTER_POSTGRES_URL": url.replace("postgresql://", "postgresql+psycopg2://", 1)}
            os.environ["DAGSTER_POSTGRES_URL"] = env["DAGSTER_POSTGRES_URL"]  # deploy/dagster.yaml names it
            instance = dg.DagsterInstance.from_config(str(home))
            for pool in ("kaseya_api", "zomentum_api", "duckdb"):
                instance.event_log_storage.set_concurrency_slots(pool, 16)
            instance.dispose()
            keys = [f"sandbox_{n:02d}" for n in range(1, args.tenants + 1)]
            first = run_hours(registry, keys, now - timedelta(hours=2), args.parallel, env)
            started = time.perf_counter()
            quiet = run_hours(registry, keys, now - timedelta(hours=1), args.parallel, env)
            wall = time.perf_counter() - started
    finally:
        if args.postgres is None:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            admin.close()
    cpu = sorted(run["cpu_s"] for run in quiet)
    print(f"{args.tenants} tenants, {args.parallel} runs at once")
    print(f"first hours: {sum(r['success'] for r in first)}/{len(first)} succeeded, "
          f"CPU {sum(r['cpu_s'] for r in first):.1f} s")
    print(f"quiet hour: {sum(r['success'] for r in quiet)}/{len(quiet)} succeeded; wall {wall:.1f} s; CPU per "
          f"tenant-hour mean {sum(cpu) / len(cpu):.2f} s, median {cpu[len(cpu) // 2]:.2f} s, max {cpu[-1]:.2f} s; "
          f"peak RSS per run max {max(r['peak_rss_mb'] for r in quiet):.0f} MB")


if __name__ == "__main__":
    main()
