"""Our pipeline, run in a child process exactly as production runs it: the real `hourly_sync_job` (one
partition, or a range in one run) or the real `push_document_job` (once per document), against a
persistent Dagster instance (SQLite under the given DAGSTER_HOME, the repository's dagster.yaml).

The tenant comes from the environment (KASEYA_*, ZOMENTUM_*; ZK_SETTINGS and ZK_DUCKDB_PATH from the
arguments), bound by name as the code location binds it.

`noop` runs a job with the same assets, dependencies, partitions and backfill policy whose bodies do
nothing: what Dagster itself costs for that run, against which our run's own work is read.

    python benchmarks/pipeline_child.py REPORT hourly --first KEY --last KEY ...
"""

from __future__ import annotations

import time

PROCESS_STARTED = time.monotonic()  # before the imports: what they cost is part of the process's figures

import argparse
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import dagster as dg
from measure import own_peak_rss_mb, process_memory_mb, write_report

from zk_pipelines.config import TENANT_VARIABLES
from zk_pipelines.definitions import build_definitions, freeze_loaded_objects
from zk_pipelines.defs.jobs import PULL_GROUPS
from zk_pipelines.defs.local_runs import QUIET, prepare_dagster_home
from zk_pipelines.defs.push import build_push_job, push_run_config
from zk_pipelines.defs.resources import PullTuning, tenant_resources

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`")

LOAD_COUNTS = ("created", "updated", "unchanged", "matched", "deferred", "failed", "zomentum_writes")


def configure_tenant(settings: Path, database: Path) -> None:
    os.environ[TENANT_VARIABLES.settings_path] = str(settings)
    os.environ[TENANT_VARIABLES.duckdb_path] = str(database)


def noop_definitions(real: dg.Definitions) -> dg.Definitions:
    """The real job's asset graph, step for step (the same multi-asset steps, partitions and backfill policy),
    with bodies that do nothing."""
    copies = []
    for number, assets in enumerate(real.assets):
        specs = [dg.AssetSpec(spec.key, deps=[dep.asset_key for dep in spec.deps], group_name=spec.group_name)
                 for spec in assets.specs]
        partitions = next((spec.partitions_def for spec in assets.specs if spec.partitions_def), None)

        @dg.multi_asset(name=f"noop_{number}", specs=specs, partitions_def=partitions,
                        backfill_policy=assets.backfill_policy, can_subset=True)
        def nothing(context):  # no annotation: this module postpones them, and Dagster reads this one
            for key in context.selected_asset_keys:
                yield dg.MaterializeResult(asset_key=key)

        copies.append(nothing)
    job = dg.define_asset_job("hourly_sync_job", selection=dg.AssetSelection.groups(*PULL_GROUPS),
                              executor_def=dg.in_process_executor)
    return dg.Definitions(assets=copies, jobs=[job])


def _run_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def _execute(job: dg.JobDefinition, instance: dg.DagsterInstance, first: str, last: str, **kwargs: Any
             ) -> tuple[dg.ExecuteInProcessResult, float]:
    started = time.monotonic()
    if first == last:
        result = job.execute_in_process(instance=instance, partition_key=first, raise_on_error=False,
                                        run_config=QUIET, **kwargs)
    else:
        result = job.execute_in_process(instance=instance, tags=_run_tags(first, last), raise_on_error=False,
                                        run_config=QUIET, **kwargs)
    return result, time.monotonic() - started


def describe_run(result: dg.ExecuteInProcessResult, seconds: float) -> dict[str, Any]:
    steps: dict[str, float] = {}
    for event in result.all_events:
        if event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            duration = getattr(event.event_specific_data, "duration_ms", None)
            if duration is not None:
                steps[event.step_key] = round(duration / 1000, 3)
    loads: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        path = materialization.asset_key.path
        if path[0] == "zomentum":
            metadata = {name: value.value for name, value in materialization.metadata.items()}
            loads[path[1]] = {name: metadata[name] for name in LOAD_COUNTS if name in metadata}
    errors = [f"{event.step_key}: {event.event_specific_data.error.message.strip()}"
              for event in result.get_step_failure_events()]
    return {"run_id": result.run_id, "success": result.success, "run_s": round(seconds, 3),
            "steps_s": steps, "step_total_s": round(sum(steps.values()), 3), "loads": loads, "errors": errors}


class MemorySampler:
    """This process's resident memory every `interval` seconds, while the block runs, with the wall time."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), process_memory_mb("VmRSS")))
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time(), process_memory_mb("VmRSS")))


def memory_by_step(instance: dg.DagsterInstance, run_id: str, samples: list[tuple[float, float]]
                   ) -> dict[str, dict[str, float]]:
    """Each step's resident memory when it started and the most while it ran (MB): where the peak is reached."""
    started: dict[str, float] = {}
    steps: dict[str, dict[str, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in started:
            begin, end = started[event.step_key], entry.timestamp
            before = [rss for moment, rss in samples if moment <= begin]
            during = [rss for moment, rss in samples if begin <= moment <= end] or before[-1:]
            steps[event.step_key] = {"start_mb": round(before[-1] if before else 0.0, 1),
                                     "peak_mb": round(max(during, default=0.0), 1)}
    return steps


def run_hourly(args: argparse.Namespace, instance: dg.DagsterInstance) -> dict[str, Any]:
    configure_tenant(args.settings, args.database)
    definitions = build_definitions(partitions_start=args.partitions_start,
                                    tuning=PullTuning(pricing_calls_per_hour=args.pricing_calls_per_hour))
    freeze_loaded_objects()  # as the code location's loader does in a run worker
    with MemorySampler() as memory:
        result, seconds = _execute(definitions.resolve_job_def("hourly_sync_job"), instance, args.first, args.last)
    # The run's peak, before this process reads the run's events back (a 90-day run's ~100,000 of them take
    # a few hundred MB that are the benchmark's, not the pipeline's).
    peak = own_peak_rss_mb()
    return {**describe_run(result, seconds), "own_peak_rss_mb": peak,
            "memory_by_step": memory_by_step(instance, result.run_id, memory.samples)}


def run_noop(args: argparse.Namespace, instance: dg.DagsterInstance) -> dict[str, Any]:
    configure_tenant(args.settings, args.database)
    real = build_definitions(partitions_start=args.partitions_start)
    job = noop_definitions(real).resolve_job_def("hourly_sync_job")
    runs = {}
    for window in args.window:
        first, last = window.split("..")
        result, seconds = _execute(job, instance, first, last)
        runs[window] = describe_run(result, seconds)
    return {"noop_runs": runs}


def run_push(args: argparse.Namespace, instance: dg.DagsterInstance) -> dict[str, Any]:
    job = build_push_job()
    configure_tenant(args.settings, args.database)
    resources = tenant_resources()
    pushes = []
    for document_id in args.documents:
        started = time.monotonic()
        result = job.execute_in_process(run_config={**push_run_config(document_id), **QUIET},
                                        resources=resources, instance=instance, raise_on_error=False)
        seconds = time.monotonic() - started
        writes = 0
        for event in result.all_events:
            if event.event_type_value == "STEP_OUTPUT":
                metadata = event.step_output_data.metadata
                writes = metadata["kaseya_writes"].value if "kaseya_writes" in metadata else 0
        errors = [event.event_specific_data.error.message.strip() for event in result.get_step_failure_events()]
        pushes.append({"document_id": document_id, "success": result.success, "run_s": round(seconds, 3),
                       "kaseya_writes": writes, "errors": errors})
    return {"pushes": pushes, "success": all(p["success"] for p in pushes),
            "run_s": round(sum(p["run_s"] for p in pushes), 3)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("kind", choices=("hourly", "noop", "push"))
    parser.add_argument("--settings", type=Path, required=True)
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--dagster-home", type=Path, required=True)
    parser.add_argument("--partitions-start", required=True)
    parser.add_argument("--first")
    parser.add_argument("--last")
    parser.add_argument("--window", action="append", default=[], help="FIRST..LAST (noop; repeatable)")
    parser.add_argument("--documents", nargs="*", default=[])
    parser.add_argument("--pricing-calls-per-hour", type=int, default=PullTuning().pricing_calls_per_hour)
    args = parser.parse_args(argv)

    imported = time.monotonic()
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(args.dagster_home))
    with dg.DagsterInstance.get() as instance:
        started = time.monotonic()
        report = {"hourly": run_hourly, "noop": run_noop, "push": run_push}[args.kind](args, instance)
        report["child_s"] = round(time.monotonic() - started, 3)
    # Where the process's time went besides the run: the imports, the Dagster instance's start.
    report["phases_s"] = {"imports": round(imported - PROCESS_STARTED, 3),
                          "instance": round(started - imported, 3)}
    write_report(args.report, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
