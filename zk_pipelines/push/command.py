"""`zk push DOCUMENT_ID [--set field=value ...] [--dry-run]`: one document pushed in this process, by the
same code the push job runs, into the same ledgers (run id `zk-push-<uuid>`, outside Dagster's run list).

`--dry-run` prints every Kaseya request a real push would send (method, path, body), with the resolved ids
and mapped statuses, and sends nothing (it reads Kaseya and Zomentum, and opens DuckDB read-only)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import TextIO

from zk_pipelines.clients.zomentum_models import NotAZomentumId, id_segment
from zk_pipelines.config import TenantConfig
from zk_pipelines.push.failures import PushFailed
from zk_pipelines.push.orchestration import PushSources, push_document, render_outcome


def one_line(text: str) -> str:
    """A multi-line message (an override problem list) as one line for the terminal."""
    parts = [part.strip().removeprefix("- ") for part in text.splitlines() if part.strip()]
    return "; ".join(parts).replace(":; ", ": ")


def run_push_command(document_id: str, assignments: Sequence[str], *, dry_run: bool, env: Mapping[str, str],
                     out: TextIO, err: TextIO) -> int:
    try:
        id_segment(document_id, "document id")  # before any client is made or any request sent
    except NotAZomentumId as exc:
        print(f"zk push: {exc}", file=err)
        return 1
    sources = PushSources.from_config(TenantConfig.from_env(env))
    try:
        outcome = push_document(sources, document_id, list(assignments), dry_run=dry_run,
                                run_id=f"zk-push-{uuid.uuid4()}",
                                progress=lambda phase: print(f"  {phase}", file=out, flush=True))
    except PushFailed as failure:
        print(f"zk push: {one_line(str(failure))}", file=err)
        return 1
    print(render_outcome(outcome), file=out)
    return 0
