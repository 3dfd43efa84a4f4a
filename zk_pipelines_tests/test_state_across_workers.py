"""One tenant's state in PostgreSQL, its runs on workers that share nothing else: Dagster's instance on PostgreSQL
(deploy/dagster.yaml), the state store on PostgreSQL, each worker with a DuckDB cache of its own."""

from __future__ import annotations

import io
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.commands.history import run_history
from zk_pipelines.config import KaseyaCredentials, ZomentumCredentials
from zk_pipelines.push.orchestration import PushSources, push_document
from zk_pipelines.sandbox.kaseya import start_kaseya_sandbox
from zk_pipelines.sandbox.zomentum import start_zomentum_sandbox
from zk_pipelines.secrets import Secret
from zk_pipelines.storage.state_store import open_store, unbind
from zk_pipelines_tests.pipeline_harness import PipelineHarness, step_errors, write_settings

REPO = Path(__file__).resolve().parents[1]
CONTACT_READS = ("GET /v2/crm/contacts/summary", "GET /v2/crm/contacts/search")  # routes as the sandbox serves them
SCHEMA = "zk_acme"


@pytest.fixture
def production_instance(tmp_path, postgres_url, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    instance = dg.DagsterInstance.from_config(str(home))
    yield instance
    instance.dispose()


def _pg(url: str, query: str, *params) -> list[tuple]:
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SET search_path = {SCHEMA}")
            cursor.execute(query, params)
            return cursor.fetchall()
    finally:
        connection.close()


@pytest.mark.slow
def test_a_tenant_synced_on_three_workers_has_one_ledger_and_no_duplicate(postgres_url, production_instance,
                                                                          tmp_path):
    kaseya = start_kaseya_sandbox(scale="small_recent")
    zomentum = start_zomentum_sandbox(scale="small_recent")
    workers = []
    try:
        now = datetime.now(UTC)

        def worker(name: str) -> PipelineHarness:
            """A worker: a directory of its own (its DuckDB cache), the shared instance and state store."""
            (tmp_path / name).mkdir()
            harness = PipelineHarness(kaseya, zomentum, tmp_path / name, instance=production_instance,
                                      state_url=postgres_url, state_schema=SCHEMA, now=now)
            workers.append(harness)
            return harness

        # Worker A: the tenant's first run, its whole history.
        seeded_clients = len(zomentum.state.records("client/companies"))
        a = worker("a")
        hour = a.current_hour
        first = a.backfill(last=hour - timedelta(hours=3))
        assert first.success, step_errors(first)
        in_store = _pg(postgres_url, "SELECT count(*) FROM id_map WHERE entity = 'clients'")
        assert in_store == [(len(a.id_map("clients")),)]

        # Worker B, a fresh directory: the next hour brings an edited account and a new contact.
        edited = int(next(iter(a.id_map("clients"))))
        kaseya.state.update_record("accounts", edited, {"website": "https://moved.example"})
        a.set_modified_on("accounts", edited, hour - timedelta(hours=2) + timedelta(minutes=20))
        account = kaseya.state.record("accounts", edited)
        newcomer = kaseya.state.create_record("contacts", {"accountId": edited, "firstName": "Nadia",
                                                           "lastName": "Workers", "emailAddress": "nadia@b.example"})
        a.set_modified_on("contacts", newcomer["id"], hour - timedelta(hours=2) + timedelta(minutes=25))
        zomentum.state.clear_requests()
        b = worker("b")
        second = b.run_hour(hour - timedelta(hours=2))
        assert second.success, step_errors(second)
        # B's cache starts empty, so B reads the whole history again; what A wrote it finds in the id map and
        # leaves alone: B creates only what A had not seen (records of the hours after A's last).
        created_by_b = {row[0] for row in _pg(postgres_url, "SELECT kaseya_id FROM sync_events WHERE run_id = %s "
                                                            "AND action = 'created'", second.run_id)}
        assert not created_by_b & set(a.id_map("clients")) and not created_by_b & set(a.id_map("client_users"))
        assert str(newcomer["id"]) in created_by_b
        ours = _pg(postgres_url, "SELECT count(*) FROM id_map WHERE entity = 'clients' AND link_kind = 'created'")[0][0]
        assert len(zomentum.state.records("client/companies")) == seeded_clients + ours
        assert any(c.get("website") == "https://moved.example" for c in zomentum.state.records("client/companies")
                   if c["name"] == account["accountName"])

        # Worker C: a push of a Won document.
        (tmp_path / "c").mkdir()
        c_database = tmp_path / "c" / "tenant.duckdb"
        open_store(c_database, postgres_url, SCHEMA)
        try:
            document_id = _won_document(kaseya, zomentum)
            settings = write_settings(tmp_path / "c" / "settings.yaml", mode="kaseya_as_crm")
            sources = PushSources(
                KaseyaClient(KaseyaCredentials(kaseya.base_url, kaseya.username, Secret(kaseya.password),
                                               kaseya.tenant, allow_insecure_http=True)),
                ZomentumClient(ZomentumCredentials(zomentum.base_url, Secret(zomentum.refresh_token),
                                                   allow_insecure_http=True)),
                settings, c_database)
            pushed = push_document(sources, document_id, (), run_id="push-on-c")
            assert pushed.ids.opportunity_id
        finally:
            unbind(c_database)

        # Worker A again: an hour that fails (Kaseya's contact lists answer 503), then its re-run once Kaseya is back.
        late = kaseya.state.create_record("contacts", {"accountId": edited, "firstName": "Omar",
                                                       "lastName": "Retry", "emailAddress": "omar@a.example"})
        a.set_modified_on("contacts", late["id"], hour - timedelta(hours=1) + timedelta(minutes=5))
        kaseya.state.set_faults(seed=1, rules=[{"kind": "http_error", "route": route, "rate": 1.0, "statuses": [503]}
                                               for route in CONTACT_READS])
        failed = a.run_hour(hour - timedelta(hours=1))
        kaseya.state.clear_faults()
        assert not failed.success
        assert production_instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.FAILURE
        again = a.run_hour(hour - timedelta(hours=1))
        assert again.success, step_errors(again)

        # One Zomentum user per Kaseya contact, whichever worker wrote it.
        users = [u for u in zomentum.state.records("client/users")
                 if u.get("email") in ("nadia@b.example", "omar@a.example")]
        assert sorted(u["email"] for u in users) == ["nadia@b.example", "omar@a.example"]
        pairs = _pg(postgres_url, "SELECT entity, kaseya_id, count(*) FROM id_map GROUP BY 1, 2 HAVING count(*) > 1")
        assert pairs == []
        # One continuous ledger: every worker's runs, the push's requests, one id sequence.
        runs = {row[0] for row in _pg(postgres_url, "SELECT DISTINCT run_id FROM sync_events")}
        assert {first.run_id, second.run_id, again.run_id} <= runs  # the failed run stopped before any write
        assert _pg(postgres_url, "SELECT count(*) FROM push_documents WHERE run_id = 'push-on-c' "
                                 "AND state = 'succeeded'") == [(1,)]
        trail = _pg(postgres_url, "SELECT run_id, action FROM sync_events WHERE entity = 'client_users' "
                                  "AND kaseya_id = %s ORDER BY event_id", str(late["id"]))
        assert trail == [(again.run_id, "created")]

        # `zk history` on a machine with nothing but the store's URL tells the same story.
        out, err = io.StringIO(), io.StringIO()
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("ZK_", "KASEYA_", "ZOMENTUM_"))}
        environ |= {"ZK_STATE_URL": postgres_url, "ZK_STATE_SCHEMA": SCHEMA,
                    "ZK_DUCKDB_PATH": str(tmp_path / "nowhere" / "tenant.duckdb")}
        assert run_history(environ, "contact", str(late["id"]), out=out, err=err) == 0, err.getvalue()
        assert "created" in out.getvalue() and again.run_id[:8] in out.getvalue()
        assert not (tmp_path / "nowhere").exists()
    finally:
        kaseya.stop()
        zomentum.stop()


def _won_document(kaseya, zomentum) -> str:
    """A document marked Won in Zomentum for a client the pull linked to Kaseya."""
    accounts = {a["accountName"] for a in kaseya.state.records("accounts")}
    users = zomentum.state.records("client/users")
    client = next(c for c in zomentum.state.records("client/companies")
                  if c["name"] in accounts and any(u["client_company_id"] == c["id"] for u in users))
    contact = next(u for u in users if u["client_company_id"] == client["id"])
    item = next(i for i in zomentum.state.records("items"))
    pipeline = next(p for p in zomentum.state.records("pipelines") if p["name"] == "Sales Pipeline")
    won = next(s["id"] for s in pipeline["stages"] if s["name"] == "Won")
    opportunity = zomentum.state.create_record("opportunities", {
        "name": f"Deal for {client['name']}", "client_company_id": client["id"],
        "primary_client_user_id": contact["id"], "linked_client_user_ids": [contact["id"]],
        "opportunity_pipeline_id": pipeline["id"], "opportunity_pipeline_stage_id": won,
        "estimated_value": 100.0, "estimated_close_date": "2026-12-31T00:00:00.000Z", "close_probability": 100})
    document = zomentum.state.create_document(client["id"], [{"item_id": item["id"], "quantity": 1}],
                                              opportunity_id=opportunity["id"], client_user_id=contact["id"],
                                              name="Workers' proposal", status="won")
    return document["id"]
