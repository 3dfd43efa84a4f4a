"""`zk push` as a person runs it: a real process against the sandboxes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zk_pipelines_tests.test_push_document import PushTenant, settings_file

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tenant(kaseya, zomentum, kaseya_credentials, zomentum_credentials, tmp_path) -> PushTenant:
    return PushTenant(kaseya, zomentum, kaseya_credentials, zomentum_credentials, tmp_path)


def zk_push(tenant: PushTenant, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KASEYA_", "ZOMENTUM_", "ZK_"))}
    env.update(KASEYA_BASE_URL=tenant.kaseya.base_url, KASEYA_USERNAME=tenant.kaseya.username,
               KASEYA_PASSWORD=tenant.kaseya.password, KASEYA_TENANT=tenant.kaseya.tenant,
               ZOMENTUM_BASE_URL=tenant.zomentum.base_url, ZOMENTUM_REFRESH_TOKEN=tenant.zomentum.refresh_token,
               ZK_SETTINGS=str(settings_file(tenant.directory)), ZK_DUCKDB_PATH=str(tenant.database))
    return subprocess.run([sys.executable, "-m", "zk_pipelines.cli", "push", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)


@pytest.mark.slow
def test_zk_push_dry_run_prints_every_request_and_sends_nothing_then_the_push_sends_them(tenant):
    document_id = tenant.document([tenant.line("Rack Shelf 1U", 2)])
    tenant.kaseya.state.clear_requests()

    dry = zk_push(tenant, document_id, "--set", "subject=Signed: office move", "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing is sent" in dry.stdout
    assert "POST /v2/crm/opportunities" in dry.stdout and '"Subject": "Signed: office move"' in dry.stdout
    assert "opportunity status Closed Won" in dry.stdout
    assert tenant.kaseya_writes() == []

    real = zk_push(tenant, document_id, "--set", "subject=Signed: office move")

    assert real.returncode == 0, real.stderr
    # The push's phases as they end, then the outcome.
    lines = real.stdout.splitlines()
    assert lines[0].startswith("  settings resolved (")
    assert lines[1].startswith(f"  document {document_id} read (version ")
    assert re.fullmatch(r"  \d+ Kaseya write\(s\) planned", lines[2])
    assert re.fullmatch(r"  [1-9]\d* Kaseya write\(s\) sent", lines[3])
    assert lines[4] == "  Kaseya read back and compared"
    assert lines[5].startswith(f"pushed Zomentum document {document_id}")
    (opportunity,) = tenant.marked("opportunities", document_id, "description")
    assert opportunity["subject"] == "Signed: office move"
    assert tenant.sql("SELECT state FROM push.documents") == [("succeeded",)]


@pytest.mark.parametrize(("args", "expected"), [
    (("--set", "colour=red"), "cannot use the overrides: 'colour' is not a field that can be set; allowed keys: "),
    (("--set", "status_id=12345"), "Kaseya refused POST /v2/crm/opportunities (create the opportunity): "),
])
def test_zk_push_failures_are_one_line_with_exit_status_1(tenant, args, expected):
    document_id = tenant.document([tenant.line("Rack Shelf 1U")])

    result = zk_push(tenant, document_id, *args)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"zk push: push of Zomentum document {document_id} failed: {expected}")


def test_zk_push_of_an_unknown_document_says_so(tenant):
    result = zk_push(tenant, "no-such-document")
    assert result.returncode == 1
    assert result.stderr.strip() == ("zk push: push of Zomentum document no-such-document failed: Zomentum has no "
                                     "such document")


def _held_by(tenant: PushTenant, document_id: str, run_id: str) -> None:
    """`run_id` started pushing the document and never finished (its process died mid-push)."""
    from datetime import UTC, datetime

    from zk_pipelines.storage.database import connect
    from zk_pipelines.storage.push_store import ensure_push_tables, start_document

    version = next(d for d in tenant.zomentum_records("documents") if d["id"] == document_id)["current_revision_id"]
    with connect(tenant.database) as connection:
        ensure_push_tables(connection)
        start_document(connection, document_id, version, run_id=run_id, fingerprint="f", now=datetime.now(UTC))


def test_a_dead_zk_push_is_taken_over_once_its_process_is_checked_gone_and_the_push_prints_its_run_id(tenant):
    import socket

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    dead = f"zk-push-{socket.gethostname()}-{int(finished.stdout)}-0123456789ab"
    document_id = tenant.document([tenant.line("Rack Shelf 1U")])
    _held_by(tenant, document_id, dead)

    refused = zk_push(tenant, document_id)

    assert refused.returncode == 1
    assert f"run {dead} has been pushing this document" in refused.stderr
    assert "`zk push --take-over`" in refused.stderr and tenant.kaseya_writes() == []

    taken = zk_push(tenant, document_id, "--take-over")

    assert taken.returncode == 0, taken.stderr
    (run_line,) = [line for line in taken.stdout.splitlines() if line.startswith("run id: ")]
    run_id = run_line.removeprefix("run id: ")
    assert run_id.startswith(f"zk-push-{socket.gethostname()}-") and run_id != dead
    assert tenant.sql("SELECT run_id, state FROM push.documents") == [(run_id, "succeeded")]
    assert len(tenant.marked("opportunities", document_id, "description")) == 1


def test_a_live_zk_push_is_not_taken_over(tenant):
    import socket

    alive = f"zk-push-{socket.gethostname()}-{os.getpid()}-0123456789ab"  # this very process: alive
    document_id = tenant.document([tenant.line("Rack Shelf 1U")])
    _held_by(tenant, document_id, alive)

    result = zk_push(tenant, document_id, "--take-over")

    assert result.returncode == 1
    assert "still running" in result.stderr and tenant.kaseya_writes() == []


def test_a_document_a_dagster_run_holds_says_to_terminate_that_run(tenant):
    document_id = tenant.document([tenant.line("Rack Shelf 1U")])
    _held_by(tenant, document_id, "5f0c9a52-3b1e-4d7a-9a63-0d6f1c2b7e11")

    result = zk_push(tenant, document_id)

    assert result.returncode == 1
    assert ("terminate run 5f0c9a52-3b1e-4d7a-9a63-0d6f1c2b7e11 in the Dagster UI (Runs > the run > Terminate)"
            in result.stderr)
    assert "minutes" not in result.stderr
