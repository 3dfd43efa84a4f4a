"""A lost ledger, end to end through both sandboxes, on both state stores (the tenant's DuckDB file; a
PostgreSQL schema with the DuckDB file as its replica): the tenant's state is deleted after records were
renamed (a client) and re-addressed (a contact's e-mail) in Zomentum, or after a push created records in
Kaseya. The next run notices that Zomentum holds records carrying our Kaseya links that the id map does not
know and creates nothing for them; `zk state rebuild` restores the id map from those links and from the push's
markers in Kaseya; the runs and pushes after it make no duplicate in either system."""

from __future__ import annotations

import io
import uuid
from contextlib import closing
from datetime import timedelta

import psycopg2
import pytest
from psycopg2 import sql

from zk_pipelines.commands.state_rebuild import run_state_rebuild
from zk_pipelines.defs.push import PUSH_JOB, push_run_config
from zk_pipelines.domain.kaseya_endpoints import ENDPOINTS
from zk_pipelines.domain.push_plan.markers import client_marker, document_marker
from zk_pipelines.storage.state_store import ID_MAP, PostgresStateStore
from zk_pipelines_tests.pipeline_harness import PipelineHarness, SyncedTenant, reset_sandboxes, step_errors

RESOURCES = ("client/companies", "client/users", "opportunities", "items")
KASEYA_RECORDS = ("accounts", "contacts", "opportunities", "quotes", "products")
ACCOUNTS, OPPORTUNITIES = ENDPOINTS["accounts"].template, ENDPOINTS["opportunities"].template


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.slow)])
def backend(request):
    """(ZK_STATE_URL or None, the tenant's schema): the state in the tenant's DuckDB file, or in a PostgreSQL
    schema of this test's own (127.0.0.1:5432/test, or wherever `postgres_url` finds a server)."""
    if request.param == "duckdb":
        return None, "zk_default"
    return request.getfixturevalue("postgres_url"), f"zk_rebuild_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def synced_once(sandboxes, tmp_path_factory) -> SyncedTenant:
    """The fresh seed-7 world synced once per module on the DuckDB state store; each test starts from a copy."""
    kaseya, zomentum = reset_sandboxes(sandboxes)
    harness = PipelineHarness(kaseya, zomentum, tmp_path_factory.mktemp("synced_once"))
    synced = harness.backfill()
    assert synced.success, step_errors(synced)
    return SyncedTenant.of(harness)


@pytest.fixture
def synced(request, tmp_path, backend) -> PipelineHarness:
    """A tenant after its first sync of the fresh seed-7 world, its state in the backend's store."""
    state_url, schema = backend
    if state_url is None:
        return request.getfixturevalue("synced_once").harness(tmp_path)
    kaseya, zomentum = reset_sandboxes(request.getfixturevalue("sandboxes"))
    harness = PipelineHarness(kaseya, zomentum, tmp_path, state_url=state_url, state_schema=schema)
    first = harness.backfill()
    assert first.success, step_errors(first)
    return harness


def lose_state(harness: PipelineHarness) -> None:
    """The tenant's state is gone: its DuckDB file and, on PostgreSQL, its schema."""
    for path in (harness.database, harness.database.with_name(harness.database.name + ".wal")):
        path.unlink(missing_ok=True)
    if harness.state_url:
        with closing(psycopg2.connect(harness.state_url)) as connection, connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(harness.state_schema)))
            connection.commit()


def run_rebuild(harness: PipelineHarness) -> tuple[int, str, str]:
    """`zk state rebuild` in the tenant's environment: (exit status, what it printed, its errors)."""
    kaseya, zomentum = harness.kaseya, harness.zomentum
    env = {"KASEYA_BASE_URL": kaseya.base_url, "KASEYA_USERNAME": kaseya.username, "KASEYA_PASSWORD": kaseya.password,
           "KASEYA_TENANT": kaseya.tenant, "ZOMENTUM_BASE_URL": zomentum.base_url,
           "ZOMENTUM_REFRESH_TOKEN": zomentum.refresh_token, "ZK_SETTINGS": str(harness.settings_path),
           "ZK_DUCKDB_PATH": str(harness.database)}
    if harness.state_url:
        env |= {"ZK_STATE_URL": harness.state_url, "ZK_STATE_SCHEMA": harness.state_schema}
    out, err = io.StringIO(), io.StringIO()
    status = run_state_rebuild(env, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def rebuild(harness: PipelineHarness) -> str:
    status, out, err = run_rebuild(harness)
    assert status == 0, err
    return out


def stored_pairs(harness: PipelineHarness) -> dict[tuple[str, str], str]:
    """The id map in the tenant's state store: PostgreSQL's own rows there (not its DuckDB replica's)."""
    if not harness.state_url:
        return {(e, k): z for e, k, z in harness.sql("SELECT entity, kaseya_id, zomentum_id FROM zomentum.id_map")}
    store = PostgresStateStore(harness.state_url, harness.state_schema)
    try:
        return {(row["entity"], row["kaseya_id"]): row["zomentum_id"] for row in store.rows(ID_MAP)}
    finally:
        store.close()


def _counts(harness: PipelineHarness) -> dict[str, int]:
    return {resource: len(harness.zomentum.state.records(resource)) for resource in RESOURCES}


def _kaseya_counts(harness: PipelineHarness) -> dict[str, int]:
    return {entity: len(harness.kaseya_records(entity)) for entity in KASEYA_RECORDS}


def test_a_lost_id_map_is_noticed_refused_and_rebuilt_with_no_duplicate(synced):
    harness, zomentum = synced, synced.zomentum
    created = dict(harness.sql("SELECT kaseya_id, zomentum_id FROM zomentum.id_map "
                               "WHERE entity = 'clients' AND link_kind = 'created' ORDER BY kaseya_id"))
    account, client_id = next(iter(created.items()))
    zomentum.state.update_record("client/companies", client_id, {"name": "Renamed In Zomentum Ltd"})
    contact, user_id = next((k, z) for k, z in harness.id_map("client_users").items()
                            if zomentum.state.get_record("client/users", z)["client_company_id"] != client_id)
    zomentum.state.update_record("client/users", user_id, {"email": "changed.in.zomentum@example.com"})
    before = _counts(harness)

    lose_state(harness)
    lost = harness.backfill()

    assert lost.success, step_errors(lost)
    assert _counts(harness) == before  # nothing created for what the id map no longer knows
    refused = dict(harness.sql("SELECT kaseya_id, reason FROM audit.sync_events WHERE action = 'failed' "
                               "AND reason LIKE '%zk state rebuild%'"))
    assert {account, contact} <= set(refused)
    assert client_id in refused[account] and user_id in refused[contact]

    rebuild(harness)
    assert harness.id_map("clients")[account] == client_id
    assert harness.id_map("client_users")[contact] == user_id

    zomentum.state.clear_requests()
    after = harness.backfill()

    assert after.success, step_errors(after)
    assert _counts(harness) == before
    assert [w for w in harness.zomentum_writes() if w["method"] == "POST"] == []
    assert zomentum.state.get_record("client/companies", client_id)["name"] == "Renamed In Zomentum Ltd"
    assert harness.sql("SELECT count(*) FROM audit.sync_events WHERE run_id = ? AND action IN ('failed', 'created')",
                       [after.run_id]) == [(0,)]


def _push(harness: PipelineHarness, document_id: str) -> None:
    job = harness.definitions.resolve_job_def(PUSH_JOB)
    pushed = job.execute_in_process(run_config=push_run_config(document_id), instance=harness.instance,
                                    raise_on_error=False)
    assert pushed.success, step_errors(pushed)


def test_what_a_push_created_in_kaseya_is_relinked_by_its_markers_and_never_created_twice(synced):
    """A client that exists only in Zomentum is pushed (Kaseya gets an account marked with the client, an
    opportunity and a quote marked with the document), renamed in Zomentum, and the state is lost before any
    pull saw the push: only the markers in Kaseya tie the records together. Without them the next push would
    create a second account (none has the new name) with a second opportunity and quote, and the next pull a
    second Zomentum client for the account."""
    harness = synced
    kaseya, zomentum = harness.kaseya.state, harness.zomentum.state
    pipeline = next(p for p in zomentum.records("pipelines") if p["name"] == "Sales Pipeline")
    client = zomentum.create_record("client/companies", {"name": "Marker Street Dental"})
    deal = zomentum.create_record("opportunities", {
        "name": "Marker Street fit-out", "client_company_id": client["id"], "opportunity_pipeline_id": pipeline["id"],
        "opportunity_pipeline_stage_id": next(s["id"] for s in pipeline["stages"] if s["name"] == "Won")})
    item = next(i for i in zomentum.records("items") if i["name"] == "Rack Shelf 1U")
    document = zomentum.create_document(client["id"], [{"item_id": item["id"], "quantity": 2}],
                                        opportunity_id=deal["id"], name="Fit-out", status="won")
    _push(harness, document["id"])
    account = next(a for a in harness.kaseya_records("accounts") if client_marker(client["id"]) in
                   (a["description"] or ""))
    opportunity = next(o for o in harness.kaseya_records("opportunities") if document_marker(document["id"]) in
                       (o["description"] or ""))
    # What the push wrote happened in an hour the pull covers (the sandbox's clock stamps it now).
    for entity, record_id in (("accounts", account["id"]), ("opportunities", opportunity["id"])):
        harness.set_modified_on(entity, record_id, harness.current_hour - timedelta(hours=3))
    zomentum.update_record("client/companies", client["id"], {"name": "Marker Street Dental Group"})
    in_kaseya, in_zomentum = _kaseya_counts(harness), _counts(harness)

    lose_state(harness)
    summary = rebuild(harness)

    relinked = {("clients", str(account["id"])): client["id"], ("opportunities", str(opportunity["id"])): deal["id"]}
    in_store = stored_pairs(harness)
    assert {key: in_store.get(key) for key in relinked} == relinked
    assert "marked in Kaseya" in summary
    kaseya.clear_requests()
    _push(harness, document["id"])
    resynced = harness.backfill()

    assert resynced.success, step_errors(resynced)
    assert _kaseya_counts(harness) == in_kaseya
    assert [r for r in kaseya.requests() if r["method"] == "POST" and "/search" not in r["path"]
            and "/authenticate" not in r["path"] and "/refresh" not in r["path"]] == []
    assert _counts(harness) == in_zomentum
    assert zomentum.get_record("client/companies", client["id"])["name"] == "Marker Street Dental Group"
    assert harness.sql("SELECT count(*) FROM audit.sync_events WHERE run_id = ? AND action IN ('failed', 'created')",
                       [resynced.run_id]) == [(0,)]


def test_the_rebuild_reads_kaseya_within_the_tenants_budget_and_restores_nothing_from_a_partial_read(
        synced_once, tmp_path):
    harness = synced_once.harness(tmp_path)
    kaseya = harness.kaseya
    linked = harness.id_map("clients")
    lose_state(harness)
    # Kaseya says the hour's budget of the opportunities list is spent (its wait is past what a retry waits).
    kaseya.state.set_faults(seed=1, rules=[{"kind": "rate_limit_burst", "route": f"GET {OPPORTUNITIES}",
                                            "count": 1, "length": 1, "retry_after": 3600}])

    status, _, err = run_rebuild(harness)

    assert status == 1
    assert "nothing was restored" in err and "resumes next hour" in err
    assert harness.sql("SELECT count(*) FROM zomentum.id_map") == [(0,)]  # the accounts were read: no half map
    counted = dict(harness.sql("SELECT endpoint, sum(calls) FROM budget.kaseya_grants GROUP BY endpoint"))
    assert counted.get(f"GET {ACCOUNTS}", 0) >= 1  # the rebuild's calls count in the tenant's budget
    assert [e for (e,) in harness.sql("SELECT endpoint FROM budget.kaseya_spent")] == [f"GET {OPPORTUNITIES}"]

    kaseya.state.clear_faults()
    harness.an_hour_passes()
    rebuild(harness)

    assert harness.id_map("clients") == linked
