"""What a benchmark prints and writes: the one table (a row per scale, scenario and contender), the ratios
ours / peer, and each of the issue's targets judged against the figures measured.

Everything here reads the result document `run.py` builds; nothing is measured here.
"""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

SCENARIOS = {
    "1": "initial full sync",
    "2": "hourly, no change",
    "3": "hourly, 1% changed",
    "4": "backfill {hours} h",
    "5": "push Won documents",
    "6": "transform 1 batch",
}


def scenario_label(number: str, backfill_hours: int) -> str:
    return SCENARIOS[number].format(hours=backfill_hours)
FEW_SECONDS = 5.0  # "within a few seconds of Dagster's own run overhead"
BOUND_FACTOR = 1.5  # "within 1.5x of the latency bound"
# The onboarding issue's targets, whole process against whole process in the same run.
SMALL_INITIAL_SECONDS = 60.0  # the 40-account tenant's initial sync of its 90-day history
NAIVE_FACTOR = 1.5  # medium's initial sync at 0 ms, against the naive loop's wall time
HISTORY_TOLERANCE = 0.10  # five years of history against 90 days, the same tenant otherwise
BACKFILL_DLT_FACTOR = 3.0  # a 30-day backfill of medium, against dlt's extraction of the same window
QUIET_DLT_FACTOR = 1.5  # a quiet hour, against dlt's extraction of the same window
PUSH_READS_PER_DOCUMENT = 6  # plus one per quote line
VECTORISED_FACTOR = 2.0  # "within the time a well-written vectorised implementation needs": at most 2x
MEMORY_LIMIT_MB = 1024.0


# ----- the machine ----------------------------------------------------------------------------------


def _first(pattern: str, path: str) -> str | None:
    try:
        found = re.search(pattern, Path(path).read_text(), re.MULTILINE)
    except OSError:
        return None
    return found.group(1).strip() if found else None


def machine() -> dict[str, Any]:
    memory_kb = _first(r"^MemTotal:\s+(\d+)", "/proc/meminfo")
    versions = {}
    for package in ("dagster", "duckdb", "pandas", "pandera", "uvicorn", "dlt"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parents[1], timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"cpu_model": _first(r"^model name\s*:\s*(.+)$", "/proc/cpuinfo") or platform.processor(),
            "nproc": os.cpu_count(), "memory_gb": round(int(memory_kb) / 1024 / 1024, 1) if memory_kb else None,
            "os": platform.platform(), "python": platform.python_version(), "packages": versions,
            "commit": commit}


# ----- the table ------------------------------------------------------------------------------------

TEXT_COLUMNS = frozenset({"scale", "scenario", "contender", "notes", "peer", "verdict", "target", "where", "figures",
                          "figure"})
COLUMNS = ("scale", "lat ms", "scenario", "contender", "wall s", "cpu s", "rss MB", "Kaseya calls", "logins",
           "Z reads", "Z writes", "records", "rec/s", "notes")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table_rows(document: dict[str, Any]) -> list[list[str]]:
    rows = []
    for run in document["runs"]:
        for number, scenario in run["scenarios"].items():
            label = f"{number} {scenario_label(number, document['options']['backfill_hours'])}"
            for contender, figures in scenario["contenders"].items():
                rows.append([run["scale"], _fmt(run["latency_ms"]), label, contender,
                             *(_fmt(figures.get(k)) for k in ("wall_s", "cpu_s", "peak_rss_mb", "kaseya_calls",
                                                              "kaseya_logins", "zomentum_reads", "zomentum_writes",
                                                              "records", "records_per_s")),
                             figures.get("note") or ""])
    transform = document.get("transform")
    if transform:
        for path, figures in transform["paths"].items():
            rows.append(["synthetic", "-", f"6 {SCENARIOS['6']}", path, _fmt(figures.get("wall_s")),
                         _fmt(figures.get("cpu_s")), _fmt(figures.get("peak_rss_mb")), "-", "-", "-", "-",
                         _fmt(transform["contacts"]), _fmt(figures.get("records_per_s")),
                         f"transform steps {_fmt(figures.get('transform_s'))} s"])
    return rows


def render_table(rows: list[list[str]], columns: tuple[str, ...] = COLUMNS) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    numeric = {i for i, c in enumerate(columns) if c not in TEXT_COLUMNS}

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
                                 for i, cell in enumerate(cells)) + " |"

    separator = "|" + "|".join(("-" * (w + 1) + ":") if i in numeric else ("-" * (w + 2))
                               for i, w in enumerate(widths)) + "|"
    return "\n".join([line(list(columns)), separator, *(line(r) for r in rows)])


# ----- ratios ----------------------------------------------------------------------------------------


def _ratio(ours: float | None, peer: float | None) -> float | None:
    if ours is None or peer in (None, 0):
        return None
    return round(ours / peer, 3)


def ratios(document: dict[str, Any]) -> list[dict[str, Any]]:
    """ours / peer for calls, wall time and memory. Against dlt the comparison is the extract step:
    Kaseya calls, our raw-asset steps' time against dlt's run, and (an upper bound for us) the whole
    pipeline process's peak memory against dlt's."""
    found = []
    for run in document["runs"]:
        for number, scenario in run["scenarios"].items():
            contenders = scenario["contenders"]
            ours = contenders.get("ours")
            if not ours:
                continue
            naive = contenders.get("naive")
            if naive and naive.get("wall_s") is not None:
                found.append({"scale": run["scale"], "latency_ms": run["latency_ms"], "scenario": number,
                              "label": scenario_label(number, document["options"]["backfill_hours"]),
                              "peer": "naive",
                              "calls": _ratio(ours["kaseya_calls"] + ours["zomentum_calls"],
                                              naive["kaseya_calls"] + naive["zomentum_calls"]),
                              "zomentum_writes": _ratio(ours["zomentum_writes"], naive["zomentum_writes"]),
                              "wall": _ratio(ours["wall_s"], naive["wall_s"]),
                              "memory": _ratio(ours["peak_rss_mb"], naive["peak_rss_mb"])})
            dlt = contenders.get("dlt")
            if dlt and dlt.get("wall_s") is not None:
                found.append({"scale": run["scale"], "latency_ms": run["latency_ms"], "scenario": number,
                              "label": scenario_label(number, document["options"]["backfill_hours"]),
                              "peer": "dlt (extract)",
                              "calls": _ratio(ours["kaseya_calls"], dlt["kaseya_calls"]),
                              "wall": _ratio(ours.get("extract_s"), dlt.get("extract_s")),
                              "memory": _ratio(ours["peak_rss_mb"], dlt["peak_rss_mb"])})
    return found


def render_ratios(found: list[dict[str, Any]]) -> str:
    columns = ("scale", "lat ms", "scenario", "peer", "calls", "Z writes", "wall", "memory")
    rows = [[r["scale"], _fmt(r["latency_ms"]), f"{r['scenario']} {r['label']}", r["peer"],
             _fmt(r.get("calls")), _fmt(r.get("zomentum_writes")), _fmt(r.get("wall")), _fmt(r.get("memory"))]
            for r in found]
    return render_table(rows, columns)


# ----- the state backends -----------------------------------------------------------------------------

BACKEND_FIGURES = ("wall_s", "cpu_s", "peak_rss_mb", "run_s")


def _calls(figures: dict[str, Any]) -> int:
    return figures["kaseya_calls"] + (figures.get("zomentum_calls") or 0)


def state_backends(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Of each scenario measured on both backends, ours on DuckDB (the state in the DuckDB file, Dagster on
    SQLite) and ours on PostgreSQL (both there), figure by figure with PostgreSQL / DuckDB; and each run's
    export/import round trip of the tenant's state."""
    scenarios, round_trips = [], []
    for run in document["runs"]:
        for number, scenario in run["scenarios"].items():
            duckdb, postgresql = scenario["contenders"].get("ours"), scenario["contenders"].get("ours_pg")
            if not (duckdb and postgresql):
                continue
            found: dict[str, Any] = {"scale": run["scale"], "latency_ms": run["latency_ms"], "scenario": number,
                                     "label": scenario_label(number, document["options"]["backfill_hours"]),
                                     "success": bool(duckdb.get("success") and postgresql.get("success"))}
            for name in BACKEND_FIGURES:
                found[name] = {"duckdb": duckdb.get(name), "postgresql": postgresql.get(name),
                               "ratio": _ratio(postgresql.get(name), duckdb.get(name))}
            found["calls"] = {"duckdb": _calls(duckdb), "postgresql": _calls(postgresql)}
            found["zomentum_record_writes"] = {"duckdb": duckdb.get("zomentum_record_writes"),
                                               "postgresql": postgresql.get("zomentum_record_writes")}
            found["instance_s"] = {backend: figures.get("phases_s", {}).get("instance")
                                   for backend, figures in (("duckdb", duckdb), ("postgresql", postgresql))}
            found["postgresql"] = postgresql.get("postgresql", {})
            found["commit_ms"] = run.get("postgresql", {}).get("commit_ms")
            scenarios.append(found)
        if run.get("state_round_trip"):
            round_trips.append({"scale": run["scale"], "latency_ms": run["latency_ms"], **run["state_round_trip"]})
    return {"scenarios": scenarios, "round_trips": round_trips}


def render_state_backends(found: dict[str, list[dict[str, Any]]]) -> str:
    columns = ("scale", "lat ms", "scenario", "figure", "DuckDB", "PostgreSQL", "PG / DuckDB")
    rows = []
    for s in found["scenarios"]:
        where = [s["scale"], _fmt(s["latency_ms"]), f"{s['scenario']} {s['label']}"]
        for name, label in (("wall_s", "wall s"), ("cpu_s", "cpu s"), ("peak_rss_mb", "rss MB"),
                            ("run_s", "run s (in the process)"), ("instance_s", "Dagster instance start s"),
                            ("calls", "API calls"), ("zomentum_record_writes", "Zomentum record writes")):
            figures = s[name]
            rows.append([*where, label, _fmt(figures["duckdb"]), _fmt(figures["postgresql"]),
                         _fmt(figures.get("ratio", _ratio(figures["postgresql"], figures["duckdb"])))])
    text = render_table(rows, columns) if rows else ""
    for s in found["scenarios"]:
        activity = s["postgresql"]
        if activity:
            text += (f"\n{s['scale']}, scenario {s['scenario']} on PostgreSQL: {activity['commits']:,} transactions "
                     f"committed (one durable commit takes {_fmt(s['commit_ms'])} ms on this server), "
                     f"{activity['dagster_rows_written']:,} rows written by Dagster's instance, "
                     f"{activity['state_rows_written']:,} by the state store, which brought the DuckDB replica "
                     f"up to date {activity.get('state_hydrations', 0):,} times")
    for trip in found["round_trips"]:
        text += (f"\n{trip['scale']}: state export/import round trip of {trip['total_rows']:,} rows "
                 f"({trip['export_mb']:.1f} MB of JSON lines): "
                 f"DuckDB -> PostgreSQL {trip['duckdb_to_postgresql_s']:.2f} s, "
                 f"PostgreSQL -> DuckDB {trip['postgresql_to_duckdb_s']:.2f} s; "
                 + ("rows identical in every table" if trip["identical"]
                    else f"DIFFERENT in {', '.join(trip['differing_tables'])}")
                 + "; rows per table: " + ", ".join(f"{name} {count:,}" for name, count in trip["rows"].items()))
    return text.strip("\n")


# ----- targets --------------------------------------------------------------------------------------


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "NOT met")


STEP_GROUPS = {"raw": "Kaseya reads", "stg": "staging", "settings": "settings", "mapped": "mapping",
               "zomentum": "Zomentum loads", "audit": "audit"}


def _repeats(run: dict[str, Any], number: str) -> str:
    """How the calibration figure was chosen, when its run was repeated."""
    repeats = run.get("calibration_repeats", {}).get(number, [])
    if len(repeats) < 2:
        return ""
    return f" (median of {', '.join(f'{s:.1f}' for s in sorted(repeats))})"


def initial_sync_of_record(run: dict[str, Any], ours: dict[str, Any], seconds: str, beyond: float,
                           per_second: float) -> tuple[dict[str, Any], str]:
    """The run of scenario 1 the latency bound is judged on, and how it was chosen. Of its repeats (when it was
    repeated), the median by how far each went beyond its own bound, `(seconds - beyond) / (delayed calls x
    per_second)` (of an even count the higher middle one: it never flatters the pipeline); otherwise the one
    run. By each one's own bound, so a repeat that made fewer calls is not judged against a looser one."""
    repeats = run.get("initial_repeats", [])
    if len(repeats) < 2:
        return ours, ""
    failed = sum(1 for r in repeats if not r.get("success") or r.get(seconds) is None or not r.get("delayed_calls"))
    if failed:  # a failed run proves nothing about the bound; the first run's figures are shown
        return {**ours, "success": False}, f" ({failed} of its {len(repeats)} runs FAILED)"
    ordered = sorted(repeats, key=lambda r: (r[seconds] - beyond) / (r["delayed_calls"] * per_second))
    calls = sorted({r["delayed_calls"] for r in repeats})
    differ = "" if len(calls) == 1 else f"; their delayed calls {', '.join(map(str, calls))}"
    return ordered[len(ordered) // 2], f" (median of {', '.join(f'{r[seconds]:.1f}' for r in ordered)}{differ})"


def seconds_by_group(steps: dict[str, float]) -> str:
    """The steps' seconds summed by group, with their total: "Kaseya reads 2.2, ..., in all 9.9"."""
    if not steps:
        return ""
    groups: dict[str, float] = {}
    for step, seconds in steps.items():
        group = STEP_GROUPS.get(step.split("_")[0], step)  # its layer (older reports: `raw__...`)
        groups[group] = groups.get(group, 0.0) + seconds
    return ", ".join(f"{group} {seconds:.1f}" for group, seconds in groups.items()) + \
        f", in all {sum(groups.values()):.1f}"


def targets(document: dict[str, Any]) -> list[dict[str, Any]]:
    judged: list[dict[str, Any]] = []

    def judge(target: str, where: str, met: bool | None, figures: str) -> None:
        judged.append({"target": target, "where": where, "verdict": _verdict(met), "figures": figures})

    concurrency = document["options"]["concurrency"]
    scale_memory = []
    for run in document["runs"]:
        where_run = f"{run['scale']} @ {run['latency_ms']} ms"
        for number, scenario in run["scenarios"].items():
            ours = scenario["contenders"].get("ours")
            expected = scenario.get("expected", {})
            where = f"{where_run}, scenario {number}"
            if not ours:
                continue
            pages = expected.get("incremental_pages")
            if pages:
                over = {route: ours["kaseya_by_endpoint"].get(route, 0) - e["pages"] for route, e in pages.items()}
                judge("Kaseya calls per incremental endpoint = ceil(rows / 100) (+1 at most)", where,
                      all(v <= 1 for v in over.values()),
                      "; ".join(f"{route.split(' ')[1]}: {ours['kaseya_by_endpoint'].get(route, 0)} calls for "
                                f"{e['rows']} rows (ceil = {e['pages']})" for route, e in pages.items()))
                judge("one login (or refresh) per run", where, ours["kaseya_logins"] <= 1,
                      f"{ours['kaseya_logins']} logins")
            if "record_writes" in expected:
                judge("Zomentum writes = records created or changed, exactly", where,
                      ours["zomentum_record_writes"] == expected["record_writes"],
                      f"{ours['zomentum_record_writes']} record writes for {expected['record_writes']} records "
                      f"{expected.get('record_writes_basis', '')}".strip())
            if number == "2" and run.get("calibration", {}).get("2"):
                dagster = run["calibration"]["2"]
                excess = ours["run_s"] - dagster
                judge(f"scenario 2 within a few seconds ({FEW_SECONDS:g} s) of Dagster's own run overhead", where,
                      excess <= FEW_SECONDS,
                      f"run {ours['run_s']:.1f} s vs the same job with empty asset bodies {dagster:.1f} s"
                      f"{_repeats(run, '2')} "
                      f"(+{excess:.1f} s; the process, imports included, {ours['wall_s']:.1f} s)")
            if number == "1" and run["latency_ms"] > 0:
                dagster = run.get("calibration", {}).get("1")
                of_record, how = initial_sync_of_record(run, ours, "wall_s" if dagster is None else "run_s",
                                                        dagster or 0.0, run["latency_ms"] / 1000 / concurrency)
                delayed = of_record["delayed_calls"]
                bound = delayed * run["latency_ms"] / 1000 / concurrency
                one_at_a_time = delayed * run["latency_ms"] / 1000
                if dagster is None:
                    # Without Dagster's own overhead measured (--calibrate 1) the bound cannot be judged: a
                    # run's bookkeeping alone exceeds it. Shown for the record; issue 17's naive-loop target judges.
                    judge(f"scenario 1 wall within {BOUND_FACTOR}x of the latency bound", where, None,
                          f"{of_record['wall_s']:.1f} s{how} vs bound {bound:.1f} s ({delayed} delayed calls x "
                          f"{run['latency_ms']} ms / {concurrency} concurrent; one at a time it would be "
                          f"{one_at_a_time:.1f} s); Dagster's own overhead not calibrated (--calibrate 1)")
                else:
                    # Dagster's bookkeeping of the run (the same job, partitions and backfill policy with empty
                    # asset bodies) is not latency: the bound is judged on what the pipeline adds to it.
                    work = of_record["run_s"] - dagster
                    by_group = seconds_by_group(ours.get("steps_s", {}))
                    judge(f"scenario 1 within {BOUND_FACTOR}x of the latency bound (beyond Dagster's own run "
                          "overhead)", where, of_record.get("success", True) and work <= BOUND_FACTOR * bound,
                          f"run {of_record['run_s']:.1f} s{how} - Dagster's own {dagster:.1f} s{_repeats(run, '1')} = "
                          f"{work:.1f} s vs bound "
                          f"{bound:.1f} s ({delayed} delayed calls x {run['latency_ms']} ms / {concurrency} "
                          f"concurrent; one at a time {one_at_a_time:.1f} s); the process, imports included, "
                          f"{of_record['wall_s']:.1f} s" + (f"; the first run's steps' seconds (several run at once): "
                                                         f"{by_group}" if by_group else ""))
            if number == "4" and pages:
                hourly = 3 * document["options"]["backfill_hours"]
                calls = sum(ours["kaseya_by_endpoint"].get(route, 0) for route in pages)
                judge("a backfill costs one query over its rows, not one per hour", where,
                      calls <= sum(e["pages"] for e in pages.values()) + len(pages),
                      f"{calls} incremental calls (an hourly loop would make at least {hourly})")
            if number == "1":
                scale_memory.append((run["scale"], run["records"], ours["peak_rss_mb"]))
    onboarding_targets(document, judge)
    if len({records for _, records, _ in scale_memory}) >= 2:
        scale_memory.sort(key=lambda item: item[1])
        (small, small_records, small_rss), (large, large_records, large_rss) = scale_memory[0], scale_memory[-1]
        grows = (large_rss / small_rss) if small_rss else math.inf
        size = large_records / small_records
        per_record_kb = (large_rss - small_rss) * 1024 / max(1, large_records - small_records)
        judge("peak memory grows sub-linearly with tenant size (scenario 1)", f"{small} -> {large}",
              grows < size, f"{size:.0f}x the records, {grows:.2f}x the peak RSS ({small_rss:.0f} -> "
                            f"{large_rss:.0f} MB; {per_record_kb:.1f} KB per added record)")
    transform = document.get("transform")
    if transform:
        paths = transform["paths"]
        pipeline, bulk, record = paths.get("pipeline"), paths.get("bulk"), paths.get("per-record")
        n = transform["contacts"]
        if pipeline:
            judge(f"scenario 6 under {MEMORY_LIMIT_MB:.0f} MB RSS (the pipeline's own steps)", f"{n:,} contacts",
                  pipeline["peak_rss_mb"] < MEMORY_LIMIT_MB, f"{pipeline['peak_rss_mb']:.0f} MB")
        if pipeline and bulk:
            judge(f"scenario 6 within {VECTORISED_FACTOR:g}x of a vectorised implementation's time",
                  f"{n:,} contacts", pipeline["transform_s"] <= VECTORISED_FACTOR * bulk["transform_s"],
                  f"pipeline {pipeline['transform_s']:.1f} s vs the column-wise reference {bulk['transform_s']:.1f} s "
                  f"({pipeline['transform_s'] / max(bulk['transform_s'], 1e-9):.1f}x); results "
                  f"{'identical' if pipeline.get('digest') == bulk.get('digest') else 'DIFFERENT'}")
        if record and (pipeline or bulk):
            other = pipeline or bulk
            judge("scenario 6: the per-record reference agrees", f"{n:,} contacts",
                  record.get("digest") == other.get("digest"),
                  f"per-record {record['transform_s']:.1f} s, {record['peak_rss_mb']:.0f} MB; results "
                  f"{'identical' if record.get('digest') == other.get('digest') else 'DIFFERENT'}")
    return judged


def _scenario(run: dict[str, Any], number: str, contender: str = "ours") -> dict[str, Any] | None:
    found = run["scenarios"].get(number, {}).get("contenders", {}).get(contender)
    return found if found and found.get("wall_s") is not None else None


def _history_twin(scale: str) -> str | None:
    """The 90-day scale a five-year scale is the same tenant as (`medium_5y` -> `medium`)."""
    return scale.removesuffix("_5y") if scale.endswith("_5y") else None


def _fastest_wall(run: dict[str, Any], first: dict[str, Any]) -> float:
    return min([r["wall_s"] for r in run.get("initial_repeats", []) if r.get("wall_s") is not None]
               or [first["wall_s"]])


def _repeat_walls(run: dict[str, Any]) -> str:
    walls = [r["wall_s"] for r in run.get("initial_repeats", []) if r.get("wall_s") is not None]
    return "one run" if len(walls) < 2 else "the fastest of " + ", ".join(f"{w:.1f}" for w in sorted(walls))


def onboarding_targets(document: dict[str, Any], judge: Any) -> None:
    """The onboarding issue's targets, each judged where the runs that show it were made."""
    runs = {(run["scale"], run["latency_ms"]): run for run in document["runs"]}
    for (scale, latency), run in runs.items():
        where = f"{scale} @ {latency} ms"
        ours, naive, dlt = (_scenario(run, "1", c) for c in ("ours", "naive", "dlt"))
        ok = bool(ours and ours.get("success", True))
        if ours and scale == "small" and latency == 0:
            judge(f"initial full sync of small with its 90-day history under {SMALL_INITIAL_SECONDS:g} s", where,
                  ok and ours["wall_s"] < SMALL_INITIAL_SECONDS, f"{ours['wall_s']:.1f} s (the whole process)")
        if ours and naive and scale == "medium" and latency == 0:
            judge(f"initial full sync of medium (90 days) within {NAIVE_FACTOR}x of the naive loop's wall", where,
                  ok and ours["wall_s"] <= NAIVE_FACTOR * naive["wall_s"],
                  f"ours {ours['wall_s']:.1f} s vs naive {naive['wall_s']:.1f} s "
                  f"({ours['wall_s'] / naive['wall_s']:.2f}x; CPU {ours['cpu_s']:.1f} s vs {naive['cpu_s']:.1f} s)")
        if ours and naive and latency > 0 and scale.startswith("small"):
            judge("initial full sync of small at added latency faster than the naive loop", where,
                  ok and ours["wall_s"] < naive["wall_s"],
                  f"ours {ours['wall_s']:.1f} s vs naive {naive['wall_s']:.1f} s")
        twin = _history_twin(scale)
        other = runs.get((twin, latency)) if twin else None
        base = _scenario(other, "1") if other else None
        if ours and base and other is not None:
            # A few seconds' runs move by a tenth or more from one run to the next on a shared machine: the fastest of
            # their repeats (where made), what each costs with the least of the machine's other work in it.
            base_s, five_s = _fastest_wall(other, base), _fastest_wall(run, ours)
            change = five_s / base_s - 1
            judge(f"five years of history cost the same as 90 days (within {HISTORY_TOLERANCE:.0%})",
                  f"{twin} -> {scale} @ {latency} ms", ok and abs(change) <= HISTORY_TOLERANCE,
                  f"{base_s:.1f} s over 90 days, {five_s:.1f} s over five years ({change:+.1%}; "
                  f"{_repeat_walls(other)} and {_repeat_walls(run)}); Kaseya calls {base['kaseya_calls']} and "
                  f"{ours['kaseya_calls']}")
        backfill, backfill_dlt = _scenario(run, "4"), _scenario(run, "4", "dlt")
        if backfill and backfill_dlt:
            ratio = backfill["wall_s"] / backfill_dlt["wall_s"]
            judge(f"the {document['options']['backfill_hours'] // 24}-day backfill within {BACKFILL_DLT_FACTOR:g}x of "
                  "dlt's extraction of the same window", where,
                  backfill.get("success", True) and ratio <= BACKFILL_DLT_FACTOR,
                  f"ours {backfill['wall_s']:.1f} s vs dlt {backfill_dlt['wall_s']:.1f} s ({ratio:.2f}x)")
        quiet, quiet_dlt = _scenario(run, "2"), _scenario(run, "2", "dlt")
        if quiet and quiet_dlt:
            ratio = quiet["wall_s"] / quiet_dlt["wall_s"]
            judge(f"a quiet hour within {QUIET_DLT_FACTOR:g}x of dlt's extraction of it, no write", where,
                  quiet.get("success", True) and ratio <= QUIET_DLT_FACTOR and quiet["zomentum_record_writes"] == 0,
                  f"ours {quiet['wall_s']:.1f} s vs dlt {quiet_dlt['wall_s']:.1f} s ({ratio:.2f}x); "
                  f"{quiet['zomentum_record_writes']} Zomentum writes")
        pushes = _scenario(run, "5")
        if pushes:
            documents = len(pushes.get("pushes", []))
            by_endpoint = pushes["kaseya_by_endpoint"]
            reads = sum(n for route, n in by_endpoint.items() if route.startswith("GET "))
            lines = sum(n for route, n in by_endpoint.items() if route.startswith("POST /v2/crm/quotes/{quotationId}/"))
            allowed = PUSH_READS_PER_DOCUMENT * documents + lines
            judge(f"Won pushes: at most {PUSH_READS_PER_DOCUMENT} Kaseya reads per document plus one per quote line",
                  where, pushes.get("success", True) and reads <= allowed,
                  f"{reads} reads for {documents} documents and {lines} quote lines (at most {allowed}); "
                  f"{pushes['kaseya_logins']} logins")


def render_targets(judged: list[dict[str, Any]]) -> str:
    rows = [[t["verdict"], t["target"], t["where"], t["figures"]] for t in judged]
    return render_table(rows, ("verdict", "target", "where", "figures"))
