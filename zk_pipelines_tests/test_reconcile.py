"""Reconciliation end to end: a real sync into both sandboxes, then a difference made in one system as a user
would make it, then the `reconcile` job or `zk reconcile`: the report, the ledger, and with `--repair` the state
both systems and the id map settle in; a second reconciliation right after a repair reports nothing."""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta

import duckdb
import pytest

from zk_pipelines import cli
from zk_pipelines.config import TENANT_VARIABLES
from zk_pipelines.defs.reconcile import DRIFT_CHECK
from zk_pipelines.domain.settings_file import load_settings
from zk_pipelines.storage.state_store import ID_MAP, SYNC_EVENTS, PostgresStateStore
from zk_pipelines_tests.pipeline_harness import (
    PipelineHarness,
    SyncedTenant,
    materialization_metadata,
    reset_sandboxes,
    step_errors,
)

pytestmark = pytest.mark.slow


def _synced_once(sandboxes, tmp_path_factory, mode: str) -> SyncedTenant:
    """One sync of the fresh seed-7 world in `mode` per module; each test starts from a copy of its result."""
    kaseya, zomentum = reset_sandboxes(sandboxes)
    harness = PipelineHarness(kaseya, zomentum, tmp_path_factory.mktemp(mode), mode=mode)
    result = harness.backfill()
    assert result.success, step_errors(result)
    return SyncedTenant.of(harness)


@pytest.fixture(scope="module")
def synced_kaseya_as_crm_once(sandboxes, tmp_path_factory) -> SyncedTenant:
    return _synced_once(sandboxes, tmp_path_factory, "kaseya_as_crm")


@pytest.fixture(scope="module")
def synced_zomentum_as_crm_once(sandboxes, tmp_path_factory) -> SyncedTenant:
    return _synced_once(sandboxes, tmp_path_factory, "zomentum_as_crm")


@pytest.fixture
def synced(synced_kaseya_as_crm_once, tmp_path) -> PipelineHarness:
    return synced_kaseya_as_crm_once.harness(tmp_path)


@pytest.fixture
def synced_zomentum_crm(synced_zomentum_as_crm_once, tmp_path) -> PipelineHarness:
    return synced_zomentum_as_crm_once.harness(tmp_path)


@pytest.fixture
def zk(monkeypatch, capsys):
    """`zk ...` in this process, with the harness's tenant under the standard variable names."""
    def run(harness: PipelineHarness, *args: str) -> tuple[int, str]:
        for name, prefixed in zip(TENANT_VARIABLES.names(), harness.variables.names(), strict=True):
            if prefixed in os.environ:
                monkeypatch.setenv(name, os.environ[prefixed])
            else:
                monkeypatch.delenv(name, raising=False)
        capsys.readouterr()
        status = cli.main(list(args))
        captured = capsys.readouterr()
        return status, captured.out + captured.err
    return run


def reconcile_job(harness: PipelineHarness, **config):
    job = harness.definitions.resolve_job_def("reconcile_job")
    result = job.execute_in_process(instance=harness.instance, raise_on_error=False,
                                    run_config={"ops": {"audit_reconciliation": {"config": config}}})
    assert result.success, step_errors(result)
    return result


def differences(result) -> list[dict]:
    table = materialization_metadata(result, "audit_reconciliation")["differences"]
    return [dict(record.data) for record in table.records]


def counted(result) -> dict[str, dict[str, int]]:
    return materialization_metadata(result, "audit_reconciliation")["counts"]


def nothing_differs(result) -> bool:
    return all(n == 0 for row in counted(result).values() for n in row.values())


def ledger(harness: PipelineHarness, kaseya_id: str) -> list[tuple]:
    return harness.sql("SELECT entity, action, reason FROM audit.sync_events WHERE direction = 'reconcile' "
                       "AND kaseya_id = ? ORDER BY event_id", [kaseya_id])


def first_pair(harness: PipelineHarness, entity: str) -> tuple[str, str]:
    """The first pair the pull created (a matched one keeps Zomentum's own values in Zomentum as CRM)."""
    return harness.sql("SELECT kaseya_id, zomentum_id FROM zomentum.id_map WHERE entity = ? AND link_kind = "
                       "'created' ORDER BY kaseya_id LIMIT 1", [entity])[0]


def test_a_fresh_sync_reconciles_to_nothing_and_lists_each_system_once_per_page(synced):
    synced.kaseya.state.clear_requests()
    result = reconcile_job(synced)
    assert nothing_differs(result)
    assert materialization_metadata(result, "audit_reconciliation")["zomentum_writes"] == 0
    kaseya_lists = {e["path"] for e in synced.kaseya.state.requests() if e["method"] == "GET"}
    assert kaseya_lists == {"/v2/crm/accounts/summary", "/v2/crm/contacts/summary", "/v2/crm/opportunities",
                            "/v2/inventory/products/searchselect"}
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == DRIFT_CHECK and check.passed


def test_deleted_in_kaseya_is_reported_and_with_repair_marked_never_deleted(synced, zk):
    kaseya_id, zomentum_id = first_pair(synced, "opportunities")
    synced.kaseya.state.delete_record("opportunities", int(kaseya_id))

    status, report = zk(synced, "reconcile")
    assert status == 0, report
    assert re.search(rf"opportunities gone_from_kaseya: Kaseya opportunity {kaseya_id} / Zomentum {zomentum_id}",
                     report)
    # Progress: each entity's line as it is done, before the report.
    assert re.search(r"^  opportunities: \d+ linked pairs compared, 1 difference\(s\), 0 repair\(s\) planned$",
                     report, re.MULTILINE)
    assert ("opportunities", "gone_from_kaseya", "deleted in Kaseya; the Zomentum record is still there") in \
        ledger(synced, kaseya_id)

    status, dry = zk(synced, "reconcile", "--dry-run")
    planned = [line.strip() for line in dry.splitlines() if line.startswith(("  POST ", "  PUT "))]
    assert planned == [
        'POST /v2/custom/fields/ {"display_name": "Kaseya record", "entity_type": "opportunity", "field_type": '
        '"text"}',
        f'PUT /v2/opportunities/{zomentum_id} {{"custom_fields": [{{"id": "<new opportunity custom field '
        f"'Kaseya record'>\", \"values\": [\"deleted in Kaseya\"]}}]}}"]
    synced.zomentum.state.clear_requests()
    status, report = zk(synced, "reconcile", "--repair")
    assert status == 0, report
    sent = [(e["method"], e["path"]) for e in synced.zomentum_writes()]
    assert sent == [("POST", "/v2/custom/fields/"), ("PUT", f"/v2/opportunities/{zomentum_id}")]
    record = synced.zomentum_records("opportunities")[zomentum_id]  # still there
    fields = {f["id"]: f["display_name"] for f in synced.zomentum.state.records("custom/fields")}
    assert {fields[v["id"]]: v["values"] for v in record["custom_fields"]}["Kaseya record"] == ["deleted in Kaseya"]
    assert ledger(synced, kaseya_id)[-1][:2] == ("opportunities", "marked")

    status, report = zk(synced, "reconcile")
    assert "no differences" in report


def test_deleted_in_zomentum_is_recreated_in_kaseya_as_crm_exactly_as_the_dry_run_said(synced, zk):
    kaseya_id, zomentum_id = first_pair(synced, "client_users")
    deleted = synced.zomentum.state.delete_record("client/users", zomentum_id)

    status, dry = zk(synced, "reconcile", "--entity", "client_users", "--dry-run")
    assert status == 0, dry
    planned = [line.strip() for line in dry.splitlines() if line.startswith("  POST ") or line.startswith("  PUT ")]
    assert len(planned) == 1 and planned[0].startswith("POST /v2/client/users/ ")
    assert synced.zomentum_records("client/users").get(zomentum_id) is None  # the dry run sent nothing

    synced.zomentum.state.clear_requests()
    status, report = zk(synced, "reconcile", "--entity", "contacts", "--repair")
    assert status == 0, report
    sent = [e for e in synced.zomentum_writes()]
    assert [f"{e['method']} {e['path']} {json.dumps(e['body'], sort_keys=True)}" for e in sent] == planned
    new_id = synced.id_map("client_users")[kaseya_id]
    assert new_id != zomentum_id
    recreated = synced.zomentum_records("client/users")[new_id]
    assert recreated["email"] == deleted["email"] and recreated["client_company_id"] == deleted["client_company_id"]
    assert ledger(synced, kaseya_id)[-1][:2] == ("client_users", "recreated")

    status, report = zk(synced, "reconcile")
    assert "no differences" in report


def test_deleted_in_zomentum_is_only_reported_in_zomentum_as_crm(synced_zomentum_crm, zk):
    harness = synced_zomentum_crm
    kaseya_id, zomentum_id = first_pair(harness, "clients")
    harness.zomentum.state.delete_record("client/companies", zomentum_id)
    harness.zomentum.state.clear_requests()

    result = reconcile_job(harness, repair=True)

    assert [(d["entity"], d["class"], d["kaseya_id"], d["outcome"]) for d in differences(result)] == \
        [("clients", "gone_from_zomentum", kaseya_id, "reported")]
    assert harness.zomentum_writes() == []
    assert harness.id_map("clients")[kaseya_id] == zomentum_id


def test_a_hand_edit_in_zomentum_is_repaired_in_kaseya_as_crm_and_the_check_warns(synced):
    kaseya_id, zomentum_id = first_pair(synced, "clients")
    original = synced.zomentum_records("client/companies")[zomentum_id]["website"]
    synced.zomentum.state.edit_record("client/companies", zomentum_id, {"website": "https://by-hand.example"})

    report = reconcile_job(synced, max_drift_share=0.0)
    [drift] = differences(report)
    assert (drift["class"], drift["changed_in"], drift["kaseya_id"], drift["outcome"]) == \
        ("drift", "zomentum", kaseya_id, "reported")
    assert drift["kaseya_link"].endswith(kaseya_id) and drift["zomentum_link"].endswith(zomentum_id)
    check = report.get_asset_check_evaluations()[0]
    assert not check.passed and check.severity.value == "WARN"

    synced.zomentum.state.clear_requests()
    repaired = reconcile_job(synced, repair=True)
    assert [(e["method"], e["body"]) for e in synced.zomentum_writes()] == [("PUT", {"website": original})]
    assert synced.zomentum_records("client/companies")[zomentum_id]["website"] == original
    assert differences(repaired)[0]["outcome"] == "repaired"
    assert nothing_differs(reconcile_job(synced))


def test_a_hand_edit_in_zomentum_is_reported_not_overwritten_in_zomentum_as_crm(synced_zomentum_crm):
    harness = synced_zomentum_crm
    kaseya_id, zomentum_id = first_pair(harness, "clients")
    harness.zomentum.state.edit_record("client/companies", zomentum_id, {"website": "https://by-hand.example"})
    harness.zomentum.state.clear_requests()

    result = reconcile_job(harness, repair=True)

    [drift] = differences(result)
    assert (drift["class"], drift["changed_in"], drift["outcome"]) == ("drift", "zomentum", "reported")
    assert harness.zomentum_writes() == []
    assert harness.zomentum_records("client/companies")[zomentum_id]["website"] == "https://by-hand.example"
    assert ("clients", "drift", "changed in zomentum: website") in ledger(harness, kaseya_id)


def test_an_edit_in_kaseya_the_pull_leaves_alone_is_drift_changed_in_kaseya(synced_zomentum_crm):
    harness = synced_zomentum_crm
    kaseya_id, _ = first_pair(harness, "clients")
    harness.kaseya.state.update_record("accounts", int(kaseya_id), {"website": "https://in-kaseya.example"})
    next_hour = harness.current_hour - timedelta(hours=1)
    harness.set_modified_on("accounts", int(kaseya_id), next_hour + timedelta(minutes=20))
    assert harness.run_hour(next_hour).success

    [drift] = differences(reconcile_job(harness))
    assert (drift["class"], drift["changed_in"], drift["kaseya_id"]) == ("drift", "kaseya", kaseya_id)


def test_a_write_answered_200_that_did_not_persist_is_found_and_repaired(synced):
    kaseya_id, zomentum_id = first_pair(synced, "clients")
    synced.kaseya.state.update_record("accounts", int(kaseya_id), {"website": "https://renamed.example"})
    next_hour = synced.current_hour - timedelta(hours=1)
    synced.set_modified_on("accounts", int(kaseya_id), next_hour + timedelta(minutes=20))
    synced.zomentum.state.set_faults(rules=[{"kind": "unpersisted_write", "route": "/v2/client/companies/{id}",
                                             "method": "PUT"}])
    pulled = synced.run_hour(next_hour)
    assert pulled.success, step_errors(pulled)
    assert materialization_metadata(pulled, "zomentum_clients")["updated"] == 1  # answered 200
    assert synced.zomentum_records("client/companies")[zomentum_id]["website"] != "https://renamed.example"
    synced.zomentum.state.clear_faults()

    report = differences(reconcile_job(synced))
    # every update of the hour was answered 200 and not kept: each is drift changed in Zomentum
    assert kaseya_id in {d["kaseya_id"] for d in report}
    assert {(d["class"], d["changed_in"]) for d in report} == {("drift", "zomentum")}

    reconcile_job(synced, repair=True)
    assert synced.zomentum_records("client/companies")[zomentum_id]["website"] == "https://renamed.example"
    assert nothing_differs(reconcile_job(synced))


def test_stale_links_are_orphans_reported_and_left_alone(synced, zk):
    link_field = next(f["id"] for f in synced.zomentum.state.records("custom/fields")
                      if f["display_name"] == "Kaseya opportunity")
    _, opportunity_id = first_pair(synced, "opportunities")
    template = synced.zomentum_records("opportunities")[opportunity_id]
    stale_link = load_settings(synced.settings_path).links.for_systems(
        synced.kaseya.base_url, synced.zomentum.base_url).kaseya.url("opportunity", "99999999")
    stale = synced.zomentum.state.create_record("opportunities", {
        "name": "Linked to nothing", "client_company_id": template["client_company_id"],
        "opportunity_pipeline_id": template["opportunity_pipeline_id"],
        "opportunity_pipeline_stage_id": template["opportunity_pipeline_stage_id"],
        "custom_fields": [{"id": link_field, "values": [stale_link]}]})
    with duckdb.connect(str(synced.database)) as connection:
        connection.execute("INSERT INTO zomentum.id_map (entity, kaseya_id, zomentum_id, link_kind, payload_hash, "
                           "payload, first_synced_at, last_synced_at) VALUES ('items', '77777777', 'gone', "
                           "'created', NULL, NULL, now(), now())")
    synced.zomentum.state.clear_requests()

    status, report = zk(synced, "reconcile", "--repair")

    assert status == 0, report
    assert f"opportunities orphan: Kaseya opportunity 99999999 / Zomentum {stale['id']}: carries the Kaseya link " \
           "99999999, which names a Kaseya record that does not exist [reported]" in report
    assert "items orphan: Kaseya product 77777777 / Zomentum gone: the id map links two records that no longer " \
           "exist [reported]" in report
    assert synced.zomentum_writes() == []


def test_zk_audit_and_zk_history_show_the_reconciliation(synced, zk):
    kaseya_id, zomentum_id = first_pair(synced, "clients")
    synced.zomentum.state.edit_record("client/companies", zomentum_id, {"website": "https://by-hand.example"})
    zk(synced, "reconcile", "--repair")

    status, audit = zk(synced, "audit", "--entity", "clients", "--format", "json")
    assert status == 0, audit
    entries = [e for e in json.loads(audit) if e["direction"] == "reconcile"]
    assert [(e["kaseya_id"], e["zomentum_id"]) for e in entries] == [(kaseya_id, zomentum_id)]
    assert entries[0]["description"].startswith("repaired")

    status, history = zk(synced, "history", "client", kaseya_id)
    assert status == 0, history
    assert "repaired" in history and "website" in history


def test_on_the_postgresql_state_store_the_repair_and_its_ledger_land_in_postgresql(sandboxes, tmp_path,
                                                                                   postgres_url):
    kaseya, zomentum = reset_sandboxes(sandboxes)
    harness = PipelineHarness(kaseya, zomentum, tmp_path, state_url=postgres_url)
    assert harness.backfill().success
    kaseya_id, zomentum_id = first_pair(harness, "client_users")
    zomentum.state.delete_record("client/users", zomentum_id)

    reconcile_job(harness, repair=True)

    store = PostgresStateStore(postgres_url, "zk_default")
    try:
        pairs = {(r["entity"], r["kaseya_id"]): r["zomentum_id"] for r in store.rows(ID_MAP)}
        events = [(r["direction"], r["action"], r["kaseya_id"]) for r in store.rows(SYNC_EVENTS)]
    finally:
        store.close()
    new_id = pairs[("client_users", kaseya_id)]
    assert new_id != zomentum_id and new_id in harness.zomentum_records("client/users")
    assert ("reconcile", "recreated", kaseya_id) in events
    assert nothing_differs(reconcile_job(harness))


def test_a_recreate_whose_answer_was_lost_is_found_and_adopted_not_sent_twice(synced, zk):
    kaseya_id, zomentum_id = first_pair(synced, "client_users")
    deleted = synced.zomentum.state.delete_record("client/users", zomentum_id)
    synced.zomentum.state.set_faults(rules=[{"kind": "lost_answer", "route": "/v2/client/users/", "method": "POST",
                                             "count": 1}])

    status, report = zk(synced, "reconcile", "--entity", "client_users", "--repair")

    assert status == 0, report
    same_email = [u for u in synced.zomentum_records("client/users").values() if u["email"] == deleted["email"]]
    assert len(same_email) == 1
    assert synced.id_map("client_users")[kaseya_id] == same_email[0]["id"]
    assert ledger(synced, kaseya_id)[-1][:2] == ("client_users", "recreated")
