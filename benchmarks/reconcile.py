"""A reconciliation of the medium tenant: API calls, wall time, CPU and peak memory (a script, not a test).

    .venv/bin/python benchmarks/reconcile.py [--scale medium] [--seed 7]

Starts both sandboxes, onboards the tenant with `zk sync` (its whole history, Kaseya as CRM), lets an hour pass
(the Kaseya clock and the tenant's budget), then measures three reconciliations, each `zk reconcile` in a child
process measured from outside (`measure.run_measured`): (1) the synced tenant, report only; (2) after 1% of
the linked clients were edited by hand in Zomentum, 10 client users deleted in Zomentum and 10 opportunities
deleted in Kaseya, with `--repair`; (3) right after, report only (expected: nothing). API calls are counted
from the sandboxes' request logs."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

from measure import run_measured, write_report  # noqa: E402
from workload import write_settings  # noqa: E402


def child(mode: str, report: Path) -> int:
    from measure import own_peak_rss_mb

    from zk_pipelines.commands.reconcile import run_reconcile

    out = io.StringIO()
    status = run_reconcile(os.environ, entities=None, repair=mode == "repair", dry_run=False, out=out)
    with duckdb.connect(os.environ["ZK_DUCKDB_PATH"], read_only=True) as connection:
        found = dict(connection.execute("SELECT class, count(*) FROM audit.reconciliation GROUP BY ALL").fetchall())
    write_report(report, {"own_peak_rss_mb": own_peak_rss_mb(), "differences": found})
    return status


def _calls(state) -> int:
    return sum(1 for entry in state.requests() if entry["path"].startswith("/v2/") and "auth" not in entry["path"]
               and "token" not in entry["path"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", choices=["report", "repair"], help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.report)

    from zk_pipelines.sandbox.launcher import running_sandboxes

    work = Path(tempfile.mkdtemp(prefix="zk-reconcile-bench-"))
    database = work / "tenant.duckdb"
    with running_sandboxes(seed=args.seed, scale=args.scale) as boxes:
        env = {**boxes.environment(), "ZK_SETTINGS": str(write_settings(work / "settings.yaml")),
               "ZK_DUCKDB_PATH": str(database), "DAGSTER_HOME": str(work / "dagster_home")}
        synced = subprocess.run([sys.executable, "-m", "zk_pipelines.cli", "sync"], env={**os.environ, **env},
                                cwd=REPO, capture_output=True, text=True, timeout=3600)
        if synced.returncode != 0:
            print(synced.stdout, synced.stderr, file=sys.stderr)
            return 1
        # An hour later: the onboarding's calls have left Kaseya's sliding hour and the tenant's budget.
        boxes.kaseya.state.advance_clock(3600)
        with duckdb.connect(str(database)) as connection:
            connection.execute("UPDATE budget.kaseya_grants SET granted_at = granted_at - 3600")

        rows = []

        def measured(label: str, mode: str) -> None:
            boxes.kaseya.state.clear_requests()
            boxes.zomentum.state.clear_requests()
            usage = run_measured([__file__, "--child", mode, "--report", str(work / "report.json")],
                                 log=work / f"{mode}.log", report=work / "report.json", env=env)
            rows.append({"reconciliation": label, "kaseya_calls": _calls(boxes.kaseya.state),
                         "zomentum_calls": _calls(boxes.zomentum.state), "wall_s": usage.wall_s,
                         "cpu_s": usage.cpu_s, "peak_rss_mb": usage.peak_rss_mb,
                         "differences": usage.report["differences"]})

        measured("synced tenant, report", "report")
        with duckdb.connect(str(database), read_only=True) as connection:
            pairs = {entity: connection.execute(
                "SELECT kaseya_id, zomentum_id FROM zomentum.id_map WHERE entity = ? AND link_kind = 'created' "
                "ORDER BY kaseya_id", [entity]).fetchall() for entity in ("clients", "client_users", "opportunities")}
        for _, zomentum_id in pairs["clients"][::100]:
            boxes.zomentum.state.edit_record("client/companies", zomentum_id, {"website": "https://by-hand.example"})
        for _, zomentum_id in pairs["client_users"][:10]:
            boxes.zomentum.state.delete_record("client/users", zomentum_id)
        for kaseya_id, _ in pairs["opportunities"][:10]:
            boxes.kaseya.state.delete_record("opportunities", int(kaseya_id))
        measured("after edits and deletions, --repair", "repair")
        measured("right after the repair, report", "report")
    print(f"{'reconciliation':<38} {'Kaseya calls':>12} {'Zomentum calls':>14} {'wall s':>7} {'CPU s':>6} "
          f"{'peak MB':>8}  differences")
    for row in rows:
        print(f"{row['reconciliation']:<38} {row['kaseya_calls']:>12} {row['zomentum_calls']:>14} "
              f"{row['wall_s']:>7.1f} {row['cpu_s']:>6.1f} {row['peak_rss_mb']:>8.0f}  "
              f"{json.dumps(row['differences'], sort_keys=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
