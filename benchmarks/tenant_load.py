"""How long the code location takes to load with 1, 50 and 200 registry tenants (issue: under 10 s at 200).

Writes a registry of N tenants (every value named by an environment variable or written as text: loading reads no
secret), then, in a fresh child process per count as a code server starts, times: importing the package, loading
the registry and building the definitions (`zk_pipelines.definitions.defs`, what Dagster calls), Dagster's own
resolution of them (`Definitions.get_repository_def()`, every job and its execution plan's asset graph), and, with
`--cli`, `dagster definitions validate` end to end (its own process: import, load, resolve, validate).

    .venv/bin/python benchmarks/tenant_load.py [--tenants 1,50,200] [--cli]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
started = time.perf_counter()
import dagster as dg
import zk_pipelines.definitions as location
imported = time.perf_counter()
definitions = location.defs()
built = time.perf_counter()
repository = definitions.get_repository_def()
jobs = repository.get_all_jobs()
resolved = time.perf_counter()
print(json.dumps({"import_s": imported - started, "build_s": built - imported, "resolve_s": resolved - built,
                  "assets": len(repository.asset_graph.get_all_asset_keys()),
                  "partitions_per_asset": len(definitions.resolve_job_def("hourly_sync_job").partitions_def
                                              .get_partition_keys()),
                  "schedules": len(repository.schedule_defs), "sensors": len(repository.sensor_defs),
                  "jobs": len(jobs)}))
"""


def registry_text(count: int) -> str:
    lines = ["tenants:"]
    for number in range(1, count + 1):
        key = f"tenant_{number:03d}"
        upper = key.upper()
        lines += [
            f"  {key}:",
            '    partitions_start: "2026-08-01-00:00"',
            "    settings: settings.yaml",
            f"    state: state/{key}.duckdb",
            "    kaseya:",
            "      base_url: https://api.bms.kaseya.com",
            f"      username: api@{key}.example",
            f"      tenant: MSP {number:03d}",
            f"      password: {{env: {upper}_KASEYA_PASSWORD}}",
            "    zomentum:",
            "      base_url: https://api.zomentum.com",
            f"      refresh_token: {{env: {upper}_ZOMENTUM_REFRESH_TOKEN}}",
        ]
    return "\n".join(lines) + "\n"


def measure(count: int, folder: Path, cli: bool) -> dict:
    registry = folder / f"tenants_{count}.yaml"
    registry.write_text(registry_text(count))
    env = {**os.environ, "ZK_TENANTS": str(registry), "DAGSTER_HOME": str(folder)}
    started = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    figures = {"tenants": count, "child_wall_s": time.perf_counter() - started, **json.loads(child.stdout)}
    if cli:
        dagster = Path(sys.executable).with_name("dagster")
        started = time.perf_counter()
        subprocess.run([str(dagster), "definitions", "validate", "-m", "zk_pipelines.definitions"], env=env,
                       capture_output=True, text=True, check=True, cwd=REPO)
        figures["dagster_definitions_validate_s"] = time.perf_counter() - started
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", default="1,50,200", help="comma-separated tenant counts")
    parser.add_argument("--cli", action="store_true", help="also time `dagster definitions validate`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        (folder / "state").mkdir()
        (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        rows = [measure(int(count), folder, args.cli) for count in args.tenants.split(",")]
    columns = ["tenants", "assets", "partitions_per_asset", "schedules", "sensors", "import_s", "build_s",
               "resolve_s", "child_wall_s", *(["dagster_definitions_validate_s"] if args.cli else [])]
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in columns))


if __name__ == "__main__":
    main()
