"""Benchmarks of zk_pipelines: API calls, wall time against added latency, CPU and memory, with peers.

    .venv/bin/python benchmarks/run.py          # small @ 50 ms (1-3), medium @ 50 ms (1), medium @ 0 ms (1-5): ~30 min
    .venv/bin/python benchmarks/run.py --runs medium_recent@50 large@0:1,2,3 --backfill-hours 720 --contacts 1000000

For each run (a scale and an added latency per API answer) it starts the sandboxes in this process, one
set per contender seeded alike, and runs scenarios 1-5 in order against them, each contender in a child
process measured from outside (wall, CPU, peak RSS); API calls are read from the sandboxes' request logs.
Scenario 6 (transform + change detection of N synthetic contacts, no network) runs once. It prints one
table, the ratios ours / peer, the issue's targets judged against the figures, and writes
`benchmarks/results/<timestamp>.json`. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from measure import BENCHMARKS, ChildFailed, ProcessUsage, run_measured
from report import (
    machine,
    ratios,
    render_ratios,
    render_state_backends,
    render_table,
    render_targets,
    scenario_label,
    state_backends,
    table_rows,
    targets,
)
from state_backends import activity_between, benchmark_database, parse_backends, state_round_trip
from workload import (
    Contenders,
    KaseyaCalls,
    Timeline,
    ZomentumCalls,
    apply_edits,
    choose_edits,
    clear_logs,
    create_won_documents,
    expected_incremental_calls,
    hour_key,
    next_hour,
    rows_in_window,
    running_contenders,
    write_settings,
)

from zk_pipelines.sandbox.world import SCALES

# The targets: small's and medium's initial sync over 90 days of history and over five years (the same
# cost), small at 50 ms against the naive loop, medium at 0 ms against the naive loop, its 30-day backfill and
# quiet hour against dlt, and 50 Won pushes. medium_5y runs ours alone: its peers would repeat medium's figures.
DEFAULT_RUNS = ("small@0:1", "small_5y@0:1/none", "small_recent@50:1,2,3", "medium@0:1,2,4,5", "medium_5y@0:1/none")
INCREMENTAL_ENTITIES = ("accounts", "contacts", "opportunities")
TMPFS = Path("/dev/shm")


def parse_run(text: str) -> tuple[str, float, list[str] | None, list[str] | None]:
    """SCALE@MS[:SCENARIOS][/PEERS], e.g. `medium_recent@0:1,2,3` or `medium_recent@50:1/none`: a scale, the
    latency added to every API answer, optionally which of scenarios 1-5 this run measures (default: those
    of --scenarios) and which peers run beside ours (default: --peers; `none` for none)."""
    text, _, peers = text.partition("/")
    spec, _, numbers = text.partition(":")
    scale, _, latency = spec.partition("@")
    if scale not in SCALES:
        raise argparse.ArgumentTypeError(f"{scale!r} is not a scale ({', '.join(SCALES)})")
    try:
        latency_ms = float(latency or 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the latency after @ is milliseconds") from None
    chosen = [n for n in numbers.split(",") if n] if numbers else None
    if chosen and not set(chosen) <= set("12345"):
        raise argparse.ArgumentTypeError(f"{text!r}: scenarios after : are among 1,2,3,4,5")
    chosen_peers = None if not peers else [] if peers == "none" else peers.split(",")
    if chosen_peers and not set(chosen_peers) <= {"naive", "dlt"}:
        raise argparse.ArgumentTypeError(f"{text!r}: peers after / are among naive,dlt (or none)")
    return scale, latency_ms, chosen, chosen_peers


def _records_per_s(records: int | None, wall: float | None) -> float | None:
    return round(records / wall, 1) if records is not None and wall else None


class Benchmark:
    """One run: a scale, an added latency, the contenders' sandboxes, and the scenarios in order."""

    def __init__(self, args: argparse.Namespace, scale: str, latency_ms: float, scenarios: list[str],
                 work: Path, peers: list[str], homes: Path | None = None) -> None:
        self.args = args
        self.homes = homes or work  # where the Dagster homes (the instance's SQLite files) go
        self.seeded_at = datetime.now(UTC)  # every set of sandboxes of this run holds the same records
        self.peers = peers
        self.scale = scale
        self.latency_ms = latency_ms
        self.scenarios = scenarios
        self.work = work
        self.timeline = Timeline.starting_now(scale, args.backfill_hours)
        self.settings = write_settings(work / "settings.yaml")
        self.database = work / "ours.duckdb"
        self.naive_ids = work / "naive-ids.json"
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    # --- contenders ---

    def _child(self, name: str, argv: list[str], env: dict[str, str], python: str | None = None) -> ProcessUsage:
        report = self.work / f"{name}.json"
        return run_measured(argv[:1] + [str(report)] + argv[1:], log=self.logs / f"{name}.log", report=report,
                            env=env, timeout_s=self.args.timeout, python=python)

    def _pipeline_argv(self, kind: str, database: Path | None = None, dagster_home: Path | None = None
                       ) -> list[str]:
        return [str(BENCHMARKS / "pipeline_child.py"), kind, "--settings", str(self.settings), "--database",
                str(database or self.database), "--dagster-home", str(dagster_home or self.homes / "dagster_home"),
                "--partitions-start", hour_key(self.timeline.partitions_start)]

    def ours(self, contenders: Contenders, name: str, first: str | None = None, last: str | None = None,
             documents: list[str] | None = None, database: Path | None = None, dagster_home: Path | None = None,
             env: dict[str, str] | None = None) -> dict[str, Any]:
        """`env`: more of the child's environment (the PostgreSQL state store and Dagster instance)."""
        clear_logs([contenders.ours.kaseya.state, contenders.ours.zomentum.state])
        argv = self._pipeline_argv("push" if documents is not None else "hourly", database, dagster_home)
        argv += ["--documents", *documents] if documents is not None else ["--first", first, "--last", last]
        usage = self._child(f"ours-{name}", argv, {**contenders.ours.environment(), **(env or {})})
        kaseya = KaseyaCalls.read(contenders.ours.kaseya.state)
        zomentum = ZomentumCalls.read(contenders.ours.zomentum.state)
        report = usage.report
        figures = self._figures(usage, kaseya, zomentum)
        steps = report.get("steps_s", {})
        figures |= {
            "run_s": report.get("run_s"), "success": report.get("success"), "errors": report.get("errors", []),
            "extract_s": round(sum(s for step, s in steps.items() if step.startswith("raw_")), 3),
            "steps_s": steps, "memory_by_step": report.get("memory_by_step", {}), "loads": report.get("loads", {}),
            "phases_s": report.get("phases_s", {}),
            "zomentum_record_writes": zomentum.record_writes,
        }
        if documents is not None:
            figures["pushes"] = report.get("pushes", [])
        else:
            figures["ledger"] = self._ledger(report.get("run_id"), database or self.database)
        if not report.get("success"):
            figures["note"] = "RUN FAILED: " + "; ".join(figures["errors"])[:200]
        return figures

    def naive(self, contenders: Contenders, name: str) -> dict[str, Any]:
        clear_logs([contenders.naive.kaseya.state, contenders.naive.zomentum.state])
        usage = self._child(f"naive-{name}", [str(BENCHMARKS / "naive_peer.py"), str(self.naive_ids)],
                            contenders.naive.environment())
        kaseya = KaseyaCalls.read(contenders.naive.kaseya.state)
        figures = self._figures(usage, kaseya, ZomentumCalls.read(contenders.naive.zomentum.state))
        figures |= {"run_s": usage.report.get("run_s"), "outcomes": usage.report.get("outcomes"),
                    "records": sum(usage.report.get("records", {}).values())}
        figures["records_per_s"] = _records_per_s(figures["records"], figures["wall_s"])
        if kaseya.busiest_endpoint > 1500 or usage.report.get("quota_blocked"):
            figures["note"] = f"over Kaseya's 1,500 calls/hour on one endpoint ({kaseya.busiest_endpoint})"
        return figures

    def dlt(self, contenders: Contenders, name: str, window: tuple[datetime, datetime], pricing: int
            ) -> dict[str, Any]:
        sandbox = contenders.dlt_kaseya
        clear_logs([sandbox.state])
        env = {"KASEYA_BASE_URL": sandbox.base_url, "KASEYA_USERNAME": sandbox.username,
               "KASEYA_PASSWORD": sandbox.password, "KASEYA_TENANT": sandbox.tenant,
               "RUNTIME__DLTHUB_TELEMETRY": "false"}
        usage = self._child(f"dlt-{name}", [str(BENCHMARKS / "dlt_peer.py"), str(self.work / "dlt"), "--from",
                                            window[0].isoformat(), "--to", window[1].isoformat(), "--pricing",
                                            str(pricing)], env, python=self.args.dlt_python)
        figures = self._figures(usage, KaseyaCalls.read(sandbox.state), None)
        figures |= {"run_s": usage.report.get("run_s"), "extract_s": usage.report.get("run_s"),
                    "import_s": usage.report.get("import_s"), "dlt_rows": usage.report.get("rows")}
        return figures

    @staticmethod
    def _figures(usage: ProcessUsage, kaseya: KaseyaCalls, zomentum: ZomentumCalls | None) -> dict[str, Any]:
        return {
            "wall_s": usage.wall_s, "cpu_s": usage.cpu_s, "peak_rss_mb": usage.peak_rss_mb,
            # the whole process's, what the child did after its measured work included (its report's making)
            "process_peak_rss_mb": usage.report.get("process_peak_rss_mb"),
            "kaseya_calls": kaseya.total, "kaseya_logins": kaseya.logins, "kaseya_writes": kaseya.writes,
            "kaseya_busiest_endpoint": kaseya.busiest_endpoint, "kaseya_by_endpoint": kaseya.by_endpoint,
            "zomentum_calls": (zomentum.reads + zomentum.writes + zomentum.token_refreshes) if zomentum else None,
            "zomentum_reads": zomentum.reads if zomentum else None,
            "zomentum_writes": zomentum.writes if zomentum else None,
            "zomentum_by_endpoint": zomentum.by_endpoint if zomentum else None,
            "delayed_calls": kaseya.delayed + (zomentum.delayed if zomentum else 0),
        }

    @staticmethod
    def _ledger(run_id: str | None, database: Path) -> dict[str, int]:
        if not run_id or not database.exists():
            return {}
        with duckdb.connect(str(database), read_only=True) as connection:
            rows = connection.execute(
                """SELECT action, count(*), count(changed_fields) FROM audit.sync_events
                   WHERE run_id = ? AND direction = 'pull' GROUP BY action""", [run_id]).fetchall()
        ledger = {action: count for action, count, _ in rows}
        ledger["matched_with_changes"] = sum(changed for action, _, changed in rows if action == "matched")
        return ledger

    # --- scenarios ---

    def records_in(self, contenders: Contenders, window: tuple[datetime, datetime]) -> int:
        state = contenders.ours.kaseya.state
        with state.lock:
            products = len(state.tenant.products)
        return sum(rows_in_window(state, entity, window) for entity in INCREMENTAL_ENTITIES) + products

    def scenario(self, contenders: Contenders, number: str) -> dict[str, Any]:
        timeline = self.timeline
        first, last = {
            "1": (timeline.history_start, timeline.last_hour), "2": (timeline.last_hour, timeline.last_hour),
            "3": (timeline.last_hour, timeline.last_hour), "4": (timeline.backfill_start, timeline.last_hour),
            "5": (None, None)}[number]
        result: dict[str, Any] = {"contenders": {}, "expected": {}}
        expected = result["expected"]
        if number == "5":
            documents = create_won_documents(contenders.ours, self.database, self.args.documents)
            ours = self.ours(contenders, "5", documents=documents)
            ours["records"] = len(documents)
            ours["records_per_s"] = _records_per_s(len(documents), ours["wall_s"])
            ours["note"] = ours.get("note") or (f"{sum(p['kaseya_writes'] for p in ours['pushes'])} Kaseya writes "
                                                f"for {len(documents)} documents")
            result["contenders"]["ours"] = ours
            return result
        if number == "3":
            edits = choose_edits(self.database, contenders.ours.kaseya.state, timeline.last_hour)
            apply_edits(contenders.kaseya_states(), edits, timeline.last_hour)
            expected |= {"record_writes": edits.count, "record_writes_basis": "edited in Kaseya",
                         "edits": edits.ids}
        window = timeline.window(first, last)
        expected["window"] = [window[0].isoformat(), window[1].isoformat()]
        expected["incremental_pages"] = expected_incremental_calls(contenders.ours.kaseya.state, window)
        records = self.records_in(contenders, window)
        if number == "1":  # the tenant's first run, for one hour (the last): it extracts the whole history
            first = last
        ours = self.ours(contenders, number, hour_key(first), hour_key(last))
        ours["records"] = records
        ours["records_per_s"] = _records_per_s(records, ours["wall_s"])
        if number in ("2", "4"):
            expected |= {"record_writes": 0, "record_writes_basis": "(nothing changed in Kaseya)"}
        elif number == "1":
            ledger = ours["ledger"]
            expected |= {"record_writes": ledger.get("created", 0) + ledger.get("updated", 0)
                         + ledger.get("matched_with_changes", 0),
                         "record_writes_basis": "created, updated or matched-and-changed in the ledger"}
        result["contenders"]["ours"] = ours
        if "naive" in self.peers:
            if number == "4":
                result["contenders"]["naive"] = {**self.previous_naive, "note": "the pass of scenario 2: the "
                                                 "naive loop has no history to backfill"}
            else:
                result["contenders"]["naive"] = self.naive(contenders, number)
                if number == "2":
                    self.previous_naive = result["contenders"]["naive"]
        if "dlt" in self.peers:
            if self.dlt_unavailable:
                result["contenders"]["dlt"] = {"note": self.dlt_unavailable}
            else:
                pricing = min(ours_products(contenders), self.args.pricing_calls_per_hour) if number == "1" else 0
                result["contenders"]["dlt"] = self.dlt(contenders, number, window, pricing)
                result["contenders"]["dlt"]["records"] = records
                result["contenders"]["dlt"]["records_per_s"] = _records_per_s(
                    records, result["contenders"]["dlt"]["wall_s"])
        return result

    def repeat_initial_sync(self) -> list[dict[str, Any]]:
        """Scenario 1 again, `--initial-repeats` - 1 more times, ours alone, each on fresh sandboxes seeded
        alike, a fresh DuckDB file and a fresh Dagster home: the run is as first as the first one. Its seconds
        move as much as the calibration's do, so the latency bound is judged median against median."""
        first = last = hour_key(self.timeline.last_hour)  # the tenant's first run: its whole history
        found = []
        for repeat in range(2, self.args.initial_repeats + 1):
            print(f" repeat {repeat}", end="", flush=True)
            with running_contenders(self.args.seed, self.scale, self.latency_ms / 1000, self.seeded_at) as fresh:
                next_hour(fresh)
                figures = self.ours(fresh, f"1-repeat-{repeat}", first, last,
                                    database=self.work / f"ours-repeat-{repeat}.duckdb",
                                    dagster_home=self.homes / f"dagster_home-repeat-{repeat}")
            found.append(initial_summary(figures))
        return found

    def on_postgresql(self, result: dict[str, Any], numbers: list[str]) -> None:
        """Scenarios 1 and 2 of ours again with the tenant's state (`ZK_STATE_URL`, a schema of its own) and
        Dagster's instance (`deploy/dagster.yaml`) in a PostgreSQL database of this run's own, on fresh sandboxes
        seeded alike and a fresh DuckDB file (the worker's cache and replica): the rows `ours_pg` beside `ours`.
        Then the DuckDB run's state (after all its scenarios) goes to PostgreSQL and back (`state_round_trip`)."""
        name = "zk_bench_" + re.sub(r"[^a-z0-9]+", "_", f"{self.work.parent.name}_{self.work.name}".lower())
        hour = hour_key(self.timeline.last_hour)  # scenario 1: the tenant's first run; 2: the same hour again
        with benchmark_database(self.args.postgres_url, name, keep=self.args.keep_work) as database, \
                running_contenders(self.args.seed, self.scale, self.latency_ms / 1000, self.seeded_at) as fresh:
            home = database.dagster_home(self.homes / "dagster_home-pg")
            for number in ("1", "2"):
                if number not in numbers:
                    continue
                started = time.monotonic()
                print(f"  {self.scale} @ {self.latency_ms:g} ms: scenario {number} on PostgreSQL ...", end="",
                      flush=True)
                next_hour(fresh)
                before = database.activity()
                figures = self.ours(fresh, f"{number}-pg", hour, hour, database=self.work / "ours-pg.duckdb",
                                    dagster_home=home, env=database.environment())
                figures["postgresql"] = activity_between(before, database.activity())
                figures["records"] = result["scenarios"][number]["contenders"]["ours"]["records"]
                figures["records_per_s"] = _records_per_s(figures["records"], figures["wall_s"])
                result["scenarios"][number]["contenders"]["ours_pg"] = figures
                print(f" {time.monotonic() - started:.0f} s", flush=True)
            if "1" in numbers:
                print(f"  {self.scale} @ {self.latency_ms:g} ms: state export/import round trip ...", end="",
                      flush=True)
                result["state_round_trip"] = state_round_trip(self.database, database, self.work)
                print(f" {result['state_round_trip']['duckdb_to_postgresql_s']:.1f} s + "
                      f"{result['state_round_trip']['postgresql_to_duckdb_s']:.1f} s", flush=True)
            commit_ms = database.commit_ms()
        result["postgresql"] = {"database": name, "kept": self.args.keep_work, "commit_ms": commit_ms}

    def calibrate(self, contenders: Contenders, numbers: list[str]) -> dict[str, dict[str, Any]]:
        """Dagster's own cost of each scenario's run: the same job with empty asset bodies (each run's seconds
        and its steps' seconds)."""
        timeline = self.timeline
        windows = {"1": (timeline.last_hour, timeline.last_hour), "2": (timeline.last_hour, timeline.last_hour),
                   "4": (timeline.backfill_start, timeline.last_hour)}
        chosen = {n: f"{hour_key(w[0])}..{hour_key(w[1])}" for n, w in windows.items() if n in numbers}
        if not chosen:
            return {}
        argv = self._pipeline_argv("noop")
        for window in chosen.values():
            argv += ["--window", window]
        repeats: dict[str, list[dict[str, Any]]] = {n: [] for n in chosen}
        for repeat in range(self.args.calibration_repeats):
            usage = self._child(f"dagster-noop-{repeat + 1}", argv, contenders.ours.environment())
            runs = usage.report.get("noop_runs", {})
            for n, window in chosen.items():
                if window in runs:
                    repeats[n].append(runs[window])
        return {n: median_run(found) for n, found in repeats.items() if found}

    def run(self) -> dict[str, Any]:
        self.previous_naive: dict[str, Any] = {}
        self.dlt_unavailable = dlt_unavailable(self.args) if "dlt" in self.peers else None
        numbers = [n for n in ("1", "2", "3", "4", "5") if n in self.scenarios]
        result: dict[str, Any] = {"scale": self.scale, "latency_ms": self.latency_ms,
                                  "timeline": {"current_hour": self.timeline.current_hour.isoformat(),
                                               "history_start": self.timeline.history_start.isoformat(),
                                               "backfill_start": self.timeline.backfill_start.isoformat()},
                                  "scenarios": {}}
        with running_contenders(self.args.seed, self.scale, self.latency_ms / 1000, self.seeded_at) as contenders:
            state = contenders.ours.kaseya.state
            with state.lock:
                result["records"] = sum(len(getattr(state.tenant, e)) for e in (*INCREMENTAL_ENTITIES, "products"))
            for number in numbers:
                started = time.monotonic()
                print(f"  {self.scale} @ {self.latency_ms:g} ms: scenario {number} "
                      f"({scenario_label(number, self.args.backfill_hours)}) ...",
                      end="", flush=True)
                next_hour(contenders)
                result["scenarios"][number] = self.scenario(contenders, number)
                print(f" {time.monotonic() - started:.0f} s", flush=True)
            if "1" in numbers and self.args.initial_repeats > 1:
                started = time.monotonic()
                print(f"  {self.scale} @ {self.latency_ms:g} ms: scenario 1 again ...", end="", flush=True)
                result["initial_repeats"] = [initial_summary(result["scenarios"]["1"]["contenders"]["ours"]),
                                             *self.repeat_initial_sync()]
                print(f" {time.monotonic() - started:.0f} s", flush=True)
            if "postgresql" in self.args.state and {"1", "2"} & set(numbers):
                self.on_postgresql(result, numbers)
            chosen = [n for n in numbers if n in self.args.calibrate]
            if chosen:
                calibration = self.calibrate(contenders, chosen)
                result["calibration"] = {n: run["run_s"] for n, run in calibration.items()}
                result["calibration_steps"] = {n: run["steps_s"] for n, run in calibration.items()}
                result["calibration_repeats"] = {n: run["repeats_s"] for n, run in calibration.items()}
        return result


def _at_least_one(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError("at least 1 (--calibrate '' for no calibration)")
    return number


def _backends(text: str) -> list[str]:
    try:
        return parse_backends(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def initial_summary(figures: dict[str, Any]) -> dict[str, Any]:
    """Of one run of scenario 1, what the latency bound's verdict reads."""
    return {name: figures.get(name) for name in ("run_s", "wall_s", "delayed_calls", "success")}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Of repeated runs of the same empty-bodied job, the one with the median seconds (the lower of the two
    middle ones for an even count), its steps' seconds with it, and every repeat's seconds. The lower: what is
    judged is the pipeline's run less this, so of two the lower never flatters the pipeline."""
    ordered = sorted(runs, key=lambda run: run["run_s"])
    return {**ordered[(len(ordered) - 1) // 2], "repeats_s": [run["run_s"] for run in runs]}


def ours_products(contenders: Contenders) -> int:
    state = contenders.ours.kaseya.state
    with state.lock:
        return len(state.tenant.products)


def dlt_unavailable(args: argparse.Namespace) -> str | None:
    """Why the dlt peer cannot be measured, or None when it can."""
    if args.dlt_python:
        found = subprocess.run([args.dlt_python, "-c", "import dlt"], capture_output=True).returncode == 0
    else:
        found = importlib.util.find_spec("dlt") is not None
    if found:
        return None
    return ("not measured: dlt is not installed (pip install -r benchmarks/requirements.txt -c constraints.txt, "
            "or --dlt-python for another environment)")


def transform(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    tenant_file = work / "transform-tenant.duckdb"
    if {"bulk", "pipeline"} & set(args.transform_paths):
        # The raw contacts both read, made once in a process of its own (so neither's peak RSS holds it).
        print(f"  scenario 6 ({args.contacts:,} contacts, setup) ...", end="", flush=True)
        report = work / "transform-setup.json"
        usage = run_measured([str(BENCHMARKS / "transform_child.py"), str(report), "setup", "--contacts",
                              str(args.contacts), "--database", str(tenant_file)], log=logs / "transform-setup.log",
                             report=report, timeout_s=args.timeout)
        print(f" {usage.wall_s:.0f} s", flush=True)
    for path in args.transform_paths:
        print(f"  scenario 6 ({args.contacts:,} contacts, {path}) ...", end="", flush=True)
        report = work / f"transform-{path}.json"
        argv = [str(BENCHMARKS / "transform_child.py"), str(report), path, "--contacts", str(args.contacts)]
        if path == "bulk":
            argv += ["--database", str(tenant_file)]
        elif path == "pipeline":  # the pipeline writes its file: a copy of its own
            shutil.copyfile(tenant_file, work / "transform-pipeline.duckdb")
            argv += ["--database", str(work / "transform-pipeline.duckdb")]
        usage = run_measured(argv, log=logs / f"transform-{path}.log", report=report, timeout_s=args.timeout)
        paths[path] = {"wall_s": usage.wall_s, "cpu_s": usage.cpu_s, "peak_rss_mb": usage.peak_rss_mb,
                       "records_per_s": _records_per_s(args.contacts, usage.report.get("transform_s")),
                       **usage.report}
        print(f" {usage.wall_s:.0f} s", flush=True)
    result: dict[str, Any] = {"contacts": args.contacts, "paths": paths}
    if args.profile_contacts:
        report = work / "transform-profile.json"
        usage = run_measured([str(BENCHMARKS / "transform_child.py"), str(report), "profile", "--contacts",
                              str(args.profile_contacts)], log=logs / "transform-profile.log", report=report,
                             timeout_s=args.timeout)
        result["profile"] = {"contacts": args.profile_contacts, "steps_s": usage.report.get("steps_s"),
                             "hot_functions": usage.report.get("hot_functions")}
    return result


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--runs", nargs="+", type=parse_run, default=[parse_run(r) for r in DEFAULT_RUNS],
                        metavar="SCALE@MS", help=f"scales and added latency (default: {' '.join(DEFAULT_RUNS)})")
    parser.add_argument("--scenarios", default="1,2,3,4,5,6", type=lambda s: s.split(","),
                        help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--peers", default="naive,dlt", type=lambda s: [p for p in s.split(",") if p],
                        help="naive,dlt (default both; '' for none)")
    parser.add_argument("--contacts", type=int, default=100_000, help="scenario 6 size (default 100000)")
    parser.add_argument("--transform-paths", default="per-record,bulk,pipeline", type=lambda s: s.split(","))
    parser.add_argument("--profile-contacts", type=int, default=20_000,
                        help="scenario 6: profile the per-record path on this many contacts (0: not)")
    parser.add_argument("--documents", type=int, default=50, help="scenario 5: Won documents pushed")
    parser.add_argument("--backfill-hours", type=int, default=720,
                        help="scenario 4: hours backfilled (default 720: the issue's 30 days; Dagster's own "
                             "bookkeeping of so many partitions takes minutes)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="concurrent requests the latency bound assumes (default 8)")
    parser.add_argument("--pricing-calls-per-hour", type=int, default=1000,
                        help="our pull's per-product pricing budget (PullTuning), also dlt's")
    parser.add_argument("--calibrate", default="", type=lambda s: [n for n in s.split(",") if n],
                        help="scenarios (among 1,2,4) whose runs are also repeated with empty asset bodies, to show "
                             "Dagster's own overhead apart (default none: the targets compare whole processes)")
    parser.add_argument("--calibration-repeats", type=_at_least_one, default=3,
                        help="times each calibration run is repeated; the median is used (default 3: a single "
                             "run moves by seconds)")
    parser.add_argument("--initial-repeats", type=_at_least_one, default=3,
                        help="times scenario 1 runs: the first with the other scenarios and the peers, the others "
                             "ours alone on fresh sandboxes, DuckDB and Dagster home; the latency bound and the five "
                             "years' cost are judged on the medians (default 3)")
    parser.add_argument("--dagster-homes", choices=("tmpfs", "work"), default="tmpfs" if TMPFS.is_dir() else "work",
                        help="where the Dagster instances' SQLite files go: tmpfs (/dev/shm, the default where it "
                             "exists) or the work directory on disk. Dagster's bookkeeping is measured apart and "
                             "subtracted; on a disk it moves by seconds between identical runs")
    parser.add_argument("--state", default="duckdb", type=_backends,
                        help="where ours keeps the tenant's state: duckdb (the default), or duckdb,postgresql: "
                             "scenarios 1 and 2 also run with the state and Dagster's instance on PostgreSQL "
                             "(rows ours_pg), and the DuckDB run's state makes an export/import round trip")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL server (a database to connect to) where --state postgresql creates its "
                             "databases (zk_bench_*) and drops them after")
    parser.add_argument("--dlt-python", help="a Python with dlt installed (default: this one)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--results-dir", type=Path, default=BENCHMARKS / "results")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the DuckDB files and Dagster homes (on tmpfs: under /dev/shm/zk-benchmark-*)")
    parser.add_argument("--write-latest", action="store_true", help="also write benchmarks/latest.json")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per child process")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = arguments(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = args.results_dir / stamp
    work.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(), "machine": machine(),
        "options": {"runs": [f"{s}@{m:g}" + (f":{','.join(n)}" if n else "")
                             + ("" if p is None else f"/{','.join(p) or 'none'}") for s, m, n, p in args.runs],
                    "scenarios": args.scenarios,
                    "peers": args.peers, "contacts": args.contacts, "documents": args.documents,
                    "backfill_hours": args.backfill_hours, "concurrency": args.concurrency,
                    "calibrate": args.calibrate, "calibration_repeats": args.calibration_repeats,
                    "initial_repeats": args.initial_repeats,
                    "pricing_calls_per_hour": args.pricing_calls_per_hour, "seed": args.seed,
                    "dagster_homes": args.dagster_homes, "state": args.state},
        "runs": [], "transform": None,
    }
    started = time.monotonic()
    print(f"zk_pipelines benchmarks -> {args.results_dir / (stamp + '.json')}", flush=True)
    homes = Path(tempfile.mkdtemp(prefix=f"zk-benchmark-{stamp}-", dir=TMPFS)) if args.dagster_homes == "tmpfs" \
        else work
    try:
        for scale, latency_ms, numbers, peers in args.runs:
            run_work = work / f"{scale}-{latency_ms:g}ms"
            run_work.mkdir(parents=True, exist_ok=True)
            chosen = [n for n in (numbers or args.scenarios) if n in args.scenarios]
            document["runs"].append(Benchmark(args, scale, latency_ms, chosen, run_work,
                                              args.peers if peers is None else peers,
                                              homes / f"{scale}-{latency_ms:g}ms").run())
        if "6" in args.scenarios:
            document["transform"] = transform(args, work)
    except ChildFailed as failure:
        kept = f"work files kept in {work}" + (f", Dagster homes in {homes}" if homes != work else "")
        print(f"\nbenchmark stopped: {failure}\n({kept})", file=sys.stderr)
        return 1
    document["duration_s"] = round(time.monotonic() - started, 1)
    document["ratios"] = ratios(document)
    document["targets"] = targets(document)
    document["state_backends"] = state_backends(document)
    output = args.results_dir / f"{stamp}.json"
    output.write_text(json.dumps(document, indent=2, default=str))
    if args.write_latest:
        (BENCHMARKS / "latest.json").write_text(json.dumps(document, indent=2, default=str))
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(homes, ignore_errors=True)
    print()
    print(render_table(table_rows(document)))
    if document["ratios"]:
        print("\nours / peer\n" + render_ratios(document["ratios"]))
    print("\ntargets\n" + render_targets(document["targets"]))
    if document["state_backends"]["scenarios"] or document["state_backends"]["round_trips"]:
        print("\nthe tenant's state and Dagster's instance: DuckDB + SQLite (ours) against PostgreSQL (ours_pg)\n"
              + render_state_backends(document["state_backends"]))
    m = document["machine"]
    print(f"\n{m['cpu_model']}, {m['nproc']} cores, {m['memory_gb']} GB; {document['duration_s']:.0f} s; "
          f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
