"""`zk audit` and `zk history` as a person runs them (real processes) over the ledger of real syncs: the
Dagster job against both sandboxes, with Zomentum refusing some client creates in the first run and a
validation reject, then a second run that creates what failed and picks up a Kaseya edit."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import requests

from zk_pipelines.domain.entities import ZOMENTUM_TARGET
from zk_pipelines.sandbox.kaseya import start_kaseya_sandbox
from zk_pipelines.sandbox.zomentum import start_zomentum_sandbox
from zk_pipelines_tests.pipeline_harness import (
    PipelineHarness,
    materialization_metadata,
    step_errors,
)

REPO = Path(__file__).resolve().parents[1]
CLIENT_CREATE = "POST /v2/client/companies/"  # the route as the sandbox serves it


@dataclass
class TwoRuns:
    harness: PipelineHarness
    first: dg.ExecuteInProcessResult
    second: dg.ExecuteInProcessResult
    refused_creates: int  # client creates the Zomentum sandbox answered with a 500 in the first run
    bad_contact: int  # a Kaseya contact rejected by validation
    edited_account: int  # a Kaseya account whose website changed before the second run


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Iterator[TwoRuns]:
    kaseya = start_kaseya_sandbox(scale="small_recent")
    zomentum = start_zomentum_sandbox(scale="small_recent")
    try:
        harness = PipelineHarness(kaseya, zomentum, tmp_path_factory.mktemp("audit"))
        account = harness.kaseya_records("accounts")[0]
        bad = kaseya.state.create_record("contacts", {"accountId": account["id"], "firstName": "Broken",
                                                      "lastName": "Mail", "emailAddress": "not-an-email"})
        harness.set_modified_on("contacts", bad["id"], harness.current_hour - timedelta(hours=5))
        zomentum.state.set_faults(seed=3, rules=[{"kind": "http_error", "route": CLIENT_CREATE, "rate": 0.3,
                                                  "statuses": [500]}])
        first = harness.backfill()
        assert first.success, step_errors(first)
        refused = zomentum.state.fault_counts()["http_error"][CLIENT_CREATE]
        zomentum.state.clear_faults()

        edited = int(next(k for k, _ in harness.sql(
            "SELECT kaseya_id, zomentum_id FROM zomentum.id_map WHERE entity = 'clients' AND link_kind = 'created' "
            "ORDER BY kaseya_id")))
        kaseya.state.update_record("accounts", edited, {"website": "https://renamed.example"})
        next_hour = harness.current_hour - timedelta(hours=1)
        harness.set_modified_on("accounts", edited, next_hour + timedelta(minutes=20))
        second = harness.run_hour(next_hour)
        assert second.success, step_errors(second)
        yield TwoRuns(harness, first, second, refused, bad["id"], edited)
    finally:
        kaseya.stop()
        zomentum.stop()


def zk_env(runs: TwoRuns, **extra_env: str) -> dict[str, str]:
    """The audit commands need only the DuckDB file, and for links the settings and the systems' addresses; no
    credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KASEYA_", "ZOMENTUM_", "ZK_"))}
    env |= {"ZK_DUCKDB_PATH": str(runs.harness.database), "ZK_SETTINGS": str(runs.harness.settings_path),
            "KASEYA_BASE_URL": runs.harness.kaseya.base_url, "ZOMENTUM_BASE_URL": runs.harness.zomentum.base_url}
    return env | extra_env


def zk(runs: TwoRuns, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zk_pipelines.cli", *args], env=zk_env(runs, **extra_env),
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def audit_json(runs: TwoRuns, *args: str) -> list[dict]:
    result = zk(runs, "audit", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_every_client_create_zomentum_refused_is_an_error_with_its_reason_and_kaseya_link(two_runs):
    errors = audit_json(two_runs, "--entity", "clients", "--status", "error", "--run", two_runs.first.run_id[:8])
    assert two_runs.refused_creates >= 3
    assert len(errors) == two_runs.refused_creates
    for line in errors:
        assert line["status"] == "error" and line["action"] == "failed" and line["direction"] == "pull"
        assert line["run_id"] == two_runs.first.run_id
        assert f"client for Kaseya account {line['kaseya_id']}" in line["description"]
        assert line["link"].endswith(f"/crm/accounts/{line['kaseya_id']}")
    # each of them is a Kaseya account whose client exists in Zomentum only since the second run
    second = {line["kaseya_id"]: line for line in audit_json(two_runs, "--entity", "account", "--run",
                                                              two_runs.second.run_id)}
    zomentum_clients = two_runs.harness.zomentum_records("client/companies")
    for line in errors:
        retried = second[line["kaseya_id"]]
        assert retried["action"] == "created" and retried["zomentum_id"] in zomentum_clients


def test_validation_rejects_are_errors_of_the_pull_under_the_zomentum_entity(two_runs):
    rejected = [line for line in audit_json(two_runs, "--entity", "contacts", "--status", "error")
                if line["action"] == "rejected"]
    mine = [line for line in rejected if line["kaseya_id"] == str(two_runs.bad_contact)]
    assert mine and all(line["entity"] == "client_users" and line["direction"] == "pull" for line in mine)
    assert "not-an-email" in mine[0]["description"] and "[check email_shape]" in mine[0]["description"]
    assert mine[0]["link"].endswith(f"/crm/contacts/{two_runs.bad_contact}")  # from the settings' link templates


@pytest.mark.slow
def test_success_and_error_split_the_log_and_csv_carries_every_entry(two_runs):
    everything = zk(two_runs, "audit", "--format", "csv")
    assert everything.returncode == 0, everything.stderr
    rows = list(csv.DictReader(io.StringIO(everything.stdout)))
    total = two_runs.harness.sql("SELECT (SELECT count(*) FROM audit.sync_events) + "
                                 "(SELECT count(*) FROM audit.rejects)")[0][0]
    assert len(rows) == total
    assert list(rows[0]) == ["time", "run_id", "partition_key", "direction", "entity", "kaseya_id", "zomentum_id",
                             "status", "action", "description", "reason", "changed_fields", "link",
                             "settings_fingerprint"]
    successes = audit_json(two_runs, "--status", "success")
    errors = audit_json(two_runs, "--status", "error")
    assert len(successes) + len(errors) == total
    assert {line["status"] for line in successes} == {"success"}
    assert {line["action"] for line in errors} == {"failed", "rejected"}
    times = [row["time"] for row in rows]
    assert times == sorted(times)


def test_since_keeps_only_what_happened_after_the_moment(two_runs):
    second_started = two_runs.harness.sql("SELECT min(occurred_at) FROM audit.sync_events WHERE run_id = ?",
                                          [two_runs.second.run_id])[0][0]
    recent = audit_json(two_runs, "--since", second_started.isoformat())
    assert recent and {line["run_id"] for line in recent} == {two_runs.second.run_id}
    assert len(audit_json(two_runs, "--since", "3d")) > len(recent)


def test_the_table_is_aligned_and_names_what_failed(two_runs):
    result = zk(two_runs, "audit", "--status", "error", "--entity", "client")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("time (UTC)") and lines[1].startswith("-" * 19)
    status_column = lines[0].index("status")
    assert all(line[status_column:].startswith("error") for line in lines[2:])
    assert len(lines) - 2 == two_runs.refused_creates


@pytest.mark.slow
def test_history_of_a_client_shows_the_failure_then_the_create_then_the_update_with_run_ids(two_runs):
    [first_failure, *_] = audit_json(two_runs, "--entity", "clients", "--status", "error")
    kaseya_id = first_failure["kaseya_id"]
    by_kaseya = zk(two_runs, "history", "client", kaseya_id)
    assert by_kaseya.returncode == 0, by_kaseya.stderr
    zomentum_id = two_runs.harness.id_map("clients")[kaseya_id]
    assert by_kaseya.stdout.splitlines()[0] == f"client: Kaseya account {kaseya_id} <-> Zomentum client {zomentum_id}"
    heads = [line for line in by_kaseya.stdout.splitlines() if line[:4].isdigit()]
    assert [head.split()[3] for head in heads] == ["failed", "created"]
    assert heads[0].endswith(f"run {two_runs.first.run_id}") and heads[1].endswith(f"run {two_runs.second.run_id}")
    assert "Zomentum" in by_kaseya.stdout.split("failed", 1)[1]  # the reason follows the failure
    by_zomentum = zk(two_runs, "history", "client", zomentum_id)
    assert by_zomentum.stdout == by_kaseya.stdout

    edited = zk(two_runs, "history", "client", str(two_runs.edited_account))
    heads = [line for line in edited.stdout.splitlines() if line[:4].isdigit()]
    assert [head.split()[3] for head in heads] == ["created", "updated"]
    assert "updated: website" in edited.stdout


def test_history_of_an_opportunity_that_waited_for_its_client(two_runs):
    waited = two_runs.harness.sql(
        "SELECT DISTINCT kaseya_id FROM audit.sync_events WHERE entity = 'opportunities' AND action = 'deferred' "
        "AND run_id = ? AND kaseya_id IN (SELECT kaseya_id FROM zomentum.id_map WHERE entity = 'opportunities') "
        "ORDER BY kaseya_id", [two_runs.first.run_id])
    assert waited, "some opportunity waited in the first run for a client Zomentum refused"
    kaseya_id = waited[0][0]
    result = zk(two_runs, "history", "opportunity", kaseya_id)
    assert result.returncode == 0, result.stderr
    heads = [line for line in result.stdout.splitlines() if line[:4].isdigit()]
    assert [head.split()[3] for head in heads] == ["deferred", "created"]
    assert heads[0].endswith(two_runs.first.run_id) and heads[1].endswith(two_runs.second.run_id)
    assert f"opportunity {kaseya_id}: waits for its Kaseya " in result.stdout


def test_history_of_an_unknown_id_is_one_line_and_exit_1(two_runs):
    result = zk(two_runs, "history", "opportunity", "no-such-id")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (f"zk history: no opportunity with Kaseya or Zomentum id 'no-such-id' in the "
                                     f"ledger ({two_runs.harness.database})")


def test_every_paired_zomentum_opportunity_links_to_its_kaseya_opportunity(two_runs):
    harness = two_runs.harness
    link_field = ZOMENTUM_TARGET["opportunities"].link_field  # "Kaseya opportunity"
    field = next(f for f in harness.zomentum.state.records("custom/fields") if f["display_name"] == link_field)
    opportunities = harness.zomentum_records("opportunities")
    pairs = harness.id_map("opportunities")
    assert len(pairs) > 10
    for kaseya_id, zomentum_id in pairs.items():
        values = {v["id"]: v["values"] for v in opportunities[zomentum_id]["custom_fields"]}
        assert values[field["id"]] == [f"{harness.kaseya.base_url}/crm/opportunities/{kaseya_id}"]


def test_the_audit_asset_counts_successes_and_errors_per_entity(two_runs):
    metadata = materialization_metadata(two_runs.first, "audit_sync_events")
    rows = {record.data["entity"]: record.data for record in metadata["outcomes"].records}
    assert set(rows) >= {"clients", "client_users", "opportunities", "items"}
    clients = rows["clients"]
    assert clients["last_run"] == two_runs.first.run_id
    assert clients["last_run_errors"] == two_runs.refused_creates
    mapped_accounts = two_runs.harness.sql("SELECT count(*) FROM audit.sync_events WHERE entity = 'clients' "
                                           "AND run_id = ?", [two_runs.first.run_id])[0][0]
    assert clients["last_run_succeeded"] == mapped_accounts - two_runs.refused_creates
    assert clients["last_run_waiting"] == 0
    assert metadata["errors_this_run"] == sum(row["last_run_errors"] for row in rows.values())
    # the contacts and opportunities of a refused client wait for it (and rows whose account is not staged
    # yet wait at staging): neither errors nor successes
    waiting = {line["entity"]: 0 for line in audit_json(two_runs, "--run", two_runs.first.run_id)}
    for line in audit_json(two_runs, "--run", two_runs.first.run_id):
        waiting[line["entity"]] += line["action"] == "deferred"
    assert waiting["client_users"] + waiting["opportunities"] > 0
    for entity in ("client_users", "opportunities"):
        assert rows[entity]["last_run_waiting"] == waiting[entity]
    later = materialization_metadata(two_runs.second, "audit_sync_events")
    later_rows = {record.data["entity"]: record.data for record in later["outcomes"].records}
    assert later_rows["clients"]["last_run"] == two_runs.second.run_id
    assert later_rows["clients"]["last_day_errors"] == two_runs.refused_creates  # the first run's, still in the day


def test_the_load_metadata_lists_failures_inline_and_links_created_records_in_both_systems(two_runs):
    metadata = materialization_metadata(two_runs.first, "zomentum_clients")
    failures = [record.data for record in metadata["failures"].records]
    assert len(failures) == min(two_runs.refused_creates, 25)
    assert all(f["entity"] == "clients" and "Zomentum" in f["reason"] for f in failures)
    # The reason names the cause: the create was answered with a 500 (the fault plan's).
    assert all("(HTTP 500: " in f["reason"] for f in failures), failures[0]["reason"]
    created = {record.data["kaseya_id"]: record.data for record in metadata["created_records"].records}
    zomentum_id = two_runs.harness.id_map("clients")[str(two_runs.edited_account)]
    zomentum, kaseya = two_runs.harness.zomentum.base_url, two_runs.harness.kaseya.base_url
    row = created[str(two_runs.edited_account)]
    assert row["zomentum_id"] == zomentum_id and row["zomentum_link"] == f"{zomentum}/clients/{zomentum_id}"
    assert row["kaseya_link"] == f"{kaseya}/crm/accounts/{two_runs.edited_account}"
    # The first few as links that open in a new tab (UrlMetadata), labelled with the record they open.
    first = next(iter(created.values()))
    assert metadata[f"Go to client (Kaseya account {first['kaseya_id']})"] == first["zomentum_link"]
    assert metadata[f"Go to Kaseya account {first['kaseya_id']}"] == first["kaseya_link"]


@pytest.mark.slow
def test_audit_waits_for_a_running_sync_to_release_the_file(two_runs):
    """The holder keeps the file until the CLI has said it waits (no sleep: the CLI's start-up time varies with
    the machine's load), then lets go; the CLI then reads and prints the table."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
                               " sys.stdin.readline(); c.close()", str(two_runs.harness.database)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cli = subprocess.Popen([sys.executable, "-m", "zk_pipelines.cli", "audit", "--status", "error",
                                "--entity", "clients"], env=zk_env(two_runs), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO)
        said = cli.stderr.readline()
    finally:
        holder.communicate("release\n", timeout=30)
    stdout, rest = cli.communicate(timeout=120)
    assert "is in use by a running sync; waiting up to 120 s" in said, said + rest
    assert cli.returncode == 0, said + rest
    assert stdout.startswith("time (UTC)")


@pytest.mark.slow
def test_an_empty_ledger_says_no_events_and_a_missing_file_is_one_line(two_runs, tmp_path):
    from zk_pipelines.storage.database import connect
    from zk_pipelines.storage.pull_store import ensure_pull_tables

    with connect(tmp_path / "fresh.duckdb") as connection:
        ensure_pull_tables(connection)
    empty = zk(two_runs, "audit", ZK_DUCKDB_PATH=str(tmp_path / "fresh.duckdb"))
    assert (empty.returncode, empty.stdout) == (0, "no events\n")
    missing = zk(two_runs, "audit", ZK_DUCKDB_PATH=str(tmp_path / "nowhere.duckdb"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == (f"zk audit: no DuckDB file at {tmp_path / 'nowhere.duckdb'} (ZK_DUCKDB_PATH): "
                                      "no sync has written to it yet")
    bad_since = zk(two_runs, "audit", "--since", "yesterday")
    assert bad_since.returncode == 1 and "30m, 2h, 3d, 1w" in bad_since.stderr
    assert "Traceback" not in missing.stderr + bad_since.stderr


@pytest.mark.slow
def test_history_of_a_pulled_opportunity_shows_what_a_push_of_its_won_document_sent(two_runs):
    harness = two_runs.harness
    kaseya_id, zomentum_id = next(iter(sorted(harness.id_map("opportunities").items())))
    opportunity = harness.zomentum_records("opportunities")[zomentum_id]
    item = harness.zomentum.state.records("items")[0]
    document = harness.zomentum.state.create_document(
        opportunity["client_company_id"], [{"item_id": item["id"], "quantity": 2}], opportunity_id=zomentum_id,
        client_user_id=opportunity.get("primary_client_user_id"), name="Proposal", status="sent")
    harness.zomentum.state.update_record("documents", document["id"], {"status": "won"})
    credentials = {"KASEYA_BASE_URL": harness.kaseya.base_url, "KASEYA_USERNAME": harness.kaseya.username,
                   "KASEYA_PASSWORD": harness.kaseya.password, "KASEYA_TENANT": harness.kaseya.tenant,
                   "ZOMENTUM_BASE_URL": harness.zomentum.base_url,
                   "ZOMENTUM_REFRESH_TOKEN": harness.zomentum.refresh_token}
    pushed = zk(two_runs, "push", document["id"], **credentials)
    assert pushed.returncode == 0, pushed.stderr

    result = zk(two_runs, "history", "opportunity", zomentum_id)

    assert result.returncode == 0, result.stderr
    assert result.stdout == zk(two_runs, "history", "opportunity", kaseya_id).stdout
    heads = [line for line in result.stdout.splitlines() if line[:4].isdigit()]
    pulls = [head for head in heads if head.split()[2] == "pull"]
    pushes = [head for head in heads if head.split()[2] == "push"]
    assert pulls and heads.index(pulls[-1]) < heads.index(pushes[0])  # oldest first: the pull, then the push
    push_run = pushes[0].rsplit(" ", 1)[1]
    assert push_run.startswith("zk-push-") and all(head.endswith(push_run) for head in pushes)
    sent = [line.strip() for line in result.stdout.splitlines() if "(kaseya) ->" in line]
    assert f"PUT /v2/crm/opportunities/{kaseya_id} (kaseya) -> sent, HTTP 200, Kaseya record {kaseya_id}" in sent
    assert any(line.startswith("POST /v2/crm/quotes (kaseya) -> sent") for line in sent)
    assert any(line.strip().startswith("body {") and '"StatusId"' in line for line in result.stdout.splitlines())
    # the pull had already put the Kaseya link on the opportunity: the push found it and did not write it again
    assert not any("(zomentum)" in line for line in result.stdout.splitlines())
    links = [v["values"] for v in harness.zomentum_records("opportunities")[zomentum_id]["custom_fields"]]
    assert [f"{harness.kaseya.base_url}/crm/opportunities/{kaseya_id}"] in links

    pushed_lines = audit_json(two_runs, "--run", "zk-push-")
    assert pushed_lines and {line["direction"] for line in pushed_lines} == {"push"}
    assert any(line["entity"] == "opportunities" and line["kaseya_id"] == kaseya_id for line in pushed_lines)


def test_every_link_in_the_runs_metadata_and_the_ledger_opens_a_page_of_its_record(two_runs):
    # The links' bases are the configured systems' addresses (the settings set none), and each sandbox serves a
    # page for every record kind the pipeline links to.
    harness = two_runs.harness
    links: set[str] = set()
    for result in (two_runs.first, two_runs.second):
        for event in result.get_asset_materialization_events():
            for value in event.event_specific_data.materialization.metadata.values():
                if isinstance(value, dg.UrlMetadataValue):
                    links.add(value.value)
                elif isinstance(value, dg.TableMetadataValue):
                    links |= {cell for record in value.records for cell in record.data.values()
                              if isinstance(cell, str) and cell.startswith("http")}
                elif isinstance(value.value, str):
                    links |= set(re.findall(r"\]\((http[^)]+)\)", value.value))
    links |= {link for (link,) in harness.sql("SELECT DISTINCT link FROM audit.sync_events WHERE link IS NOT NULL")}
    assert any("/crm/accounts/" in link for link in links) and any("/clients/" in link for link in links)
    assert any("/items/" in link for link in links)
    bases = (harness.kaseya.base_url, harness.zomentum.base_url)
    assert all(link.startswith(bases) for link in links), sorted(links)[:5]
    unresolved = [link for link in sorted(links) if requests.get(link, timeout=10).status_code != 200]
    assert unresolved == []
    page = requests.get(next(link for link in links if "/crm/accounts/" in link), timeout=10)
    assert page.headers["content-type"].startswith("text/html") and "Kaseya BMS account" in page.text
