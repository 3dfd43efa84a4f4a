"""What a run did, per entity, as a person reads it in a terminal."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from zk_pipelines.storage.audit_store import has_ledger, run_outcome_counts
from zk_pipelines.storage.database import connect

ACTIONS = ("created", "matched", "updated", "unchanged", "deferred", "skipped", "deactivated", "reactivated",
           "failed", "conflict", "rejected")


def print_run_summary(out: TextIO, database: Path, run_id: str, indent: str = "  ") -> None:
    with connect(database, read_only=True) as connection:
        counts = run_outcome_counts(connection, run_id) if has_ledger(connection) else {}
    if not counts:
        print(f"{indent}no record changed in this run", file=out)
        return
    shown = [action for action in ACTIONS if any(action in by_action for by_action in counts.values())]
    print(f"{indent}{'entity':<14}" + "".join(f"{action:>11}" for action in shown), file=out)
    for entity, by_action in counts.items():
        print(f"{indent}{entity:<14}" + "".join(f"{by_action.get(action, 0):>11}" for action in shown), file=out)
