"""`zk push DOCUMENT_ID [--set field=value ...] [--dry-run] [--take-over]`: one document pushed in this
process, by the same code the push job runs, into the same ledgers (run id `zk-push-<host>-<pid>-<hex>`,
outside Dagster's run list; printed when the push succeeds).

`--take-over` takes the document over from a `zk push` that died holding it: its run id says on which machine
and in which process it ran, and that process is checked to be gone (on this machine only: another machine's
process cannot be checked, and its hold lapses 15 minutes after its last ledger write).

`--dry-run` prints every Kaseya request a real push would send (method, path, body), with the resolved ids
and mapped statuses, and sends nothing (it reads Kaseya and Zomentum, and opens DuckDB read-only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TextIO

from zk_pipelines.clients.zomentum_models import NotAZomentumId, id_segment
from zk_pipelines.commands.tenant_choice import tenant_config
from zk_pipelines.push.failures import PushFailed
from zk_pipelines.push.holders import push_run_id, zk_push_alive
from zk_pipelines.push.orchestration import PushSources, push_document, render_outcome
from zk_pipelines.storage.push_store import unknown_runs


def one_line(text: str) -> str:
    """A multi-line message (an override problem list) as one line for the terminal."""
    parts = [part.strip().removeprefix("- ") for part in text.splitlines() if part.strip()]
    return "; ".join(parts).replace(":; ", ": ")


def run_push_command(document_id: str, assignments: Sequence[str], *, dry_run: bool, env: Mapping[str, str],
                     out: TextIO, err: TextIO, take_over: bool = False, tenant: str | None = None) -> int:
    try:
        id_segment(document_id, "document id")  # before any client is made or any request sent
    except NotAZomentumId as exc:
        print(f"zk push: {exc}", file=err)
        return 1
    sources = PushSources.from_config(tenant_config(env, tenant),
                                      run_alive=zk_push_alive if take_over else unknown_runs)
    run_id = push_run_id()
    try:
        outcome = push_document(sources, document_id, list(assignments), dry_run=dry_run, run_id=run_id,
                                progress=lambda phase: print(f"  {phase}", file=out, flush=True))
    except PushFailed as failure:
        print(f"zk push: {one_line(str(failure))}", file=err)
        return 1
    print(render_outcome(outcome), file=out)
    if not dry_run:
        print(f"run id: {run_id}", file=out)
    return 0
