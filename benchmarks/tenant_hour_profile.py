"""Where a quiet tenant-hour's CPU goes, in one warm process (the inside of a batch run): issue 21's 3-second target.

Starts the sandboxes serving N tenants (scale `small`) in this process, writes their registry (state on
PostgreSQL, a schema each) and, with Dagster's instance on PostgreSQL (deploy/dagster.yaml), runs one child
process, a run worker kept warm: it imports, loads the definitions and the instance, syncs every tenant's first
hour (untimed), then `--hours` quiet hours of every tenant, each tenant's hour a run of its own in that process (as
inside a batch run). Per quiet tenant-hour it reports the child's CPU (user + system, `resource.getrusage`: every
thread of the process, none of the sandboxes'), Dagster's events of the run by type, and the state store's
statements; with `--cprofile PATH` the quiet hours run under cProfile and its statistics are written to PATH.
CPU-seconds, not wall time, are what count on a shared machine.

    .venv/bin/python benchmarks/tenant_hour_profile.py [--tenants 3] [--hours 2] [--cprofile quiet.prof]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from zk_pipelines.sandbox.launcher import running_sandboxes

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]  # run as a script: the repository's benchmarks package beside the installed product

from benchmarks.tenant_hours import postgres_deployment, throwaway_database  # noqa: E402

CHILD = r"""
import cProfile, collections, json, resource, sys, time
from datetime import datetime, timedelta
from pathlib import Path
import dagster as dg
from zk_pipelines.defs.jobs import HOURLY_JOB, PULL_TAG
from zk_pipelines.defs.partitions import HOURS_TAG, TENANT_TAG, hours_tag
from zk_pipelines.defs.tenants import deployment_definitions
from zk_pipelines.tenants import load_registry

registry, keys, first_hour, hours, profile_path = (sys.argv[1], sys.argv[2].split(","),
    datetime.fromisoformat(sys.argv[3]), int(sys.argv[4]), sys.argv[5])

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

started = cpu()
instance = dg.DagsterInstance.get()
definitions = deployment_definitions(load_registry(Path(registry)), Path(registry))
job = definitions.resolve_job_def(HOURLY_JOB)
warm = cpu() - started

def hour_run(key, hour):
    tags = {TENANT_TAG: key, PULL_TAG: key, HOURS_TAG: hours_tag(hour)}
    return job.execute_in_process(instance=instance, partition_key=key, tags=tags, raise_on_error=False)

for key in keys:
    assert hour_run(key, first_hour).success, key
profiler = cProfile.Profile(time.process_time) if profile_path else None  # CPU, not wall
runs = []
for offset in range(1, hours + 1):
    for key in keys:
        before = cpu()
        if profiler:
            profiler.enable()
        result = hour_run(key, first_hour + timedelta(hours=offset))
        if profiler:
            profiler.disable()
        spent = cpu() - before
        records = instance.get_records_for_run(result.run_id, limit=10000).records
        kinds = collections.Counter(
            record.event_log_entry.dagster_event.event_type_value if record.event_log_entry.dagster_event
            else "log message" for record in records)
        runs.append({"tenant": key, "success": result.success, "cpu_s": spent, "events": len(records),
                     "events_by_type": dict(kinds.most_common())})
if profiler:
    profiler.dump_stats(profile_path)
print(json.dumps({"warm_up_cpu_s": warm, "runs": runs}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--hours", type=int, default=2, help="quiet hours of every tenant after the first")
    parser.add_argument("--cprofile", default="", help="write the quiet hours' cProfile statistics here")
    args = parser.parse_args()
    with throwaway_database("zk_profile") as url, tempfile.TemporaryDirectory() as work, \
            running_sandboxes(seed=7, scale="small", tenants=args.tenants) as boxes:
        first_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=args.hours + 1)
        registry, _, env = postgres_deployment(Path(work), boxes, first_hour, url)
        keys = [f"sandbox_{n:02d}" for n in range(1, args.tenants + 1)]
        profile = str(Path(args.cprofile).resolve()) if args.cprofile else ""
        child = subprocess.run([sys.executable, "-c", CHILD, str(registry), ",".join(keys),
                                first_hour.isoformat(), str(args.hours), profile],
                               env=env, capture_output=True, text=True, check=False)
        if child.returncode:
            sys.exit(f"the run worker failed:\n{child.stderr[-4000:]}")
        report = json.loads(child.stdout.strip().splitlines()[-1])
    runs = report["runs"]
    print(f"warm-up (instance, definitions): {report['warm_up_cpu_s']:.2f} s CPU")
    for run in runs:
        print(f"{run['tenant']}: {'ok' if run['success'] else 'FAILED'}, {run['cpu_s']:.2f} s CPU, "
              f"{run['events']} events")
    cpu = sorted(run["cpu_s"] for run in runs)
    print(f"quiet tenant-hours in a warm process: {len(runs)}, CPU mean {sum(cpu) / len(cpu):.2f} s, median "
          f"{cpu[len(cpu) // 2]:.2f} s; load average {os.getloadavg()[0]:.1f}")
    print("events of the last run by type: " + json.dumps(runs[-1]["events_by_type"]))


if __name__ == "__main__":
    main()
