"""The hourly pull end to end: the real Dagster job, a real DuckDB file, both sandboxes over HTTP.
Outcomes are checked in the sandboxes' own records, not in the pipeline's counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from zk_pipelines.clients.http import HttpPolicy
from zk_pipelines_tests.pipeline_harness import (
    PipelineHarness,
    SyncedTenant,
    materialization_metadata,
    reset_sandboxes,
    step_errors,
)


@pytest.fixture(scope="module")
def synced_once(sandboxes, tmp_path_factory) -> PipelineHarness:
    """One full sync shared by the tests that only read its outcome; the Kaseya request log of the backfill is
    kept in `backfill_requests`."""
    kaseya, zomentum = reset_sandboxes(sandboxes)
    harness = PipelineHarness(kaseya, zomentum, tmp_path_factory.mktemp("synced_once"))
    harness.backfill_result = harness.backfill()
    assert harness.backfill_result.success, step_errors(harness.backfill_result)
    harness.backfill_requests = kaseya.state.requests()
    harness.synced_tenant = SyncedTenant.of(harness)
    return harness


@pytest.fixture
def synced_harness(synced_once, tmp_path) -> PipelineHarness:
    """A tenant of its own after its first sync: a copy of `synced_once`'s (both sandboxes as that sync left
    them), for the tests that change the world after the sync."""
    return synced_once.synced_tenant.harness(tmp_path)


@pytest.fixture
def harness(sandboxes, tmp_path) -> PipelineHarness:
    kaseya, zomentum = reset_sandboxes(sandboxes)
    return PipelineHarness(kaseya, zomentum, tmp_path)


def synced(harness: PipelineHarness) -> PipelineHarness:
    result = harness.backfill()
    assert result.success, step_errors(result)
    return harness


def _default(entries: list[dict], field: str) -> str | None:
    chosen = next((e for e in entries if e.get("isDefault")), entries[0] if entries else None)
    return chosen.get(field) if chosen else None


def test_first_sync_puts_every_valid_entity_into_zomentum_with_mapped_fields(synced_once):
    harness = synced_once
    cutoff = harness.current_hour - timedelta(hours=1)  # the backfill ends with the partition two hours ago
    clients = harness.zomentum_records("client/companies")
    users = {u["email"].lower(): u["id"] for u in harness.zomentum.state.records("users")}
    employees = {e["id"]: e for e in harness.kaseya_records("employees")}
    client_ids = harness.id_map("clients")
    # Inactive accounts and contacts are not created in Zomentum (test_pull_deactivation).
    accounts = [a for a in harness.kaseya_records("accounts") if a["modifiedOn"] < cutoff.strftime("%Y-%m-%dT%H")
                and a["isActive"] is not False]
    assert len(accounts) > 20
    for account in accounts:
        client = clients[client_ids[str(account["id"])]]
        assert client["name"] == account["accountName"]
        assert client["website"] == account["website"]
        main = next(loc for loc in account["locations"] if loc["isMain"])
        billing = next((a for a in main["addresses"] if a["isBilling"]), None) or next(
            a for a in main["addresses"] if a["isMain"])
        assert client["billing_address"]["address_line_1"] == billing["address1"]
        assert client["billing_address"]["city"] == billing["city"]
        assert client["billing_address"]["pincode"] == billing["zipCode"]
        manager_email = (employees.get(account["accountManagerId"]) or {}).get("emailAddress", "").lower()
        assert client["owner_user_id"] == users.get(manager_email, users["api.user@msp.example"])

    contacts = harness.zomentum_records("client/users")
    contact_ids = harness.id_map("client_users")
    kaseya_contacts = [c for c in harness.kaseya_records("contacts")
                       if c["modifiedOn"] < cutoff.strftime("%Y-%m-%dT%H") and str(c["accountId"]) in client_ids
                       and c["isActive"] is not False]
    assert len(kaseya_contacts) > 50
    for contact in kaseya_contacts:
        user = contacts[contact_ids[str(contact["id"])]]
        assert user["name"] == {"first": contact["firstName"], "last": contact["lastName"]}
        assert user["email"] == _default(contact["emails"], "emailAddress")
        assert user["client_company_id"] == client_ids[str(contact["accountId"])]
        assert user["contact_type"] == ("primary_contact" if contact["isPoc"] else "secondary_contact")
        assert user["job_title"] == contact["jobTitle"]

    opportunities = harness.zomentum_records("opportunities")
    opportunity_ids = harness.id_map("opportunities")
    assert len(opportunity_ids) > 20
    kaseya_opportunities = {str(o["id"]): o for o in harness.kaseya_records("opportunities")}
    for kaseya_id, zomentum_id in opportunity_ids.items():
        source, target = kaseya_opportunities[kaseya_id], opportunities[zomentum_id]
        assert target["name"] == source["subject"]
        assert target["estimated_value"] == pytest.approx(source["amount"])
        assert target["client_company_id"] == client_ids[str(source["accountId"])]
        assert target["primary_client_user_id"] == contact_ids.get(str(source["contactId"]))
        assert target["close_probability"] == round(source["probability"])

    items = harness.zomentum_records("items")
    item_ids = harness.id_map("items")
    products = harness.kaseya_records("products")
    assert set(item_ids) == {str(p["productIndexId"]) for p in products}
    for product in products:
        item = items[item_ids[str(product["productIndexId"])]]
        assert item["manufacturer_part_number"] == product["productNumber"]
        if not item["name"].endswith("(catalogue)"):  # matched, pre-existing Zomentum items keep their name
            assert item["name"] == product["productName"]
            retail = next(level for level in product["pricingLevels"] if level["isDefault"])
            assert item["pricing"][0]["name"] == retail["name"]
            assert item["pricing"][0]["sell_price"] == pytest.approx(retail["price"])
            assert item["pricing"][0]["supplier_name"] == product["suppliers"][0]["name"]


def test_each_target_is_mapped_and_loaded_after_its_parents_and_the_audit_is_the_last_step(synced_once):
    started = [e.step_key for e in synced_once.backfill_result.all_events if e.event_type_value == "STEP_START"]
    assert started[-1] == "audit_sync_events"
    loads = [key for key in started if key.startswith(("mapped_", "zomentum_"))]
    assert loads == [f"{layer}_{prefix}{name}" for name in ("clients", "client_users", "opportunities", "items")
                     for layer, prefix in (("mapped", "zomentum_"), ("zomentum", ""))]


def test_each_table_asset_reports_its_row_count(synced_once):
    harness, result = synced_once, synced_once.backfill_result
    for asset, table, where in (("stg_kaseya_contacts", "stg.kaseya_contacts", ""),
                                ("mapped_zomentum_clients", "mapped.zomentum_clients", ""),
                                ("zomentum_clients", "zomentum.id_map", "WHERE entity = 'clients'"),
                                ("audit_sync_events", "audit.sync_events", ""),
                                ("raw_kaseya_products", "raw.kaseya_products", "")):
        rows = materialization_metadata(result, asset)["dagster/row_count"]
        assert rows == harness.sql(f"SELECT count(*) FROM {table} {where}")[0][0] > 0, asset


def test_existing_zomentum_records_are_matched_not_duplicated(synced_once):
    harness = synced_once
    names = [c["name"] for c in harness.zomentum.state.records("client/companies")]
    assert len(names) == len(set(names))
    kinds = dict(harness.sql("SELECT link_kind, count(*) FROM zomentum.id_map WHERE entity='clients' GROUP BY 1"))
    assert kinds["matched"] >= 1 and kinds["created"] >= 1


@pytest.mark.slow
def test_a_second_run_with_no_kaseya_change_makes_no_zomentum_write(synced_harness):
    harness = synced_harness
    harness.zomentum.state.clear_requests()
    result = harness.backfill()
    assert result.success, step_errors(result)
    assert harness.zomentum_writes() == []
    assert materialization_metadata(result, "zomentum_clients")["created"] == 0


@pytest.mark.slow
def test_a_kaseya_edit_is_picked_up_by_the_next_hour_and_updates_exactly_that_record(synced_harness):
    harness = synced_harness
    account_id = int(next(iter(harness.id_map("clients"))))
    harness.kaseya.state.update_record("accounts", account_id, {"website": "https://renamed.example"})
    next_hour = harness.current_hour - timedelta(hours=1)
    harness.set_modified_on("accounts", account_id, next_hour + timedelta(minutes=20))
    harness.zomentum.state.clear_requests()
    before = harness.id_map("clients")

    result = harness.run_hour(next_hour)

    assert result.success, step_errors(result)
    client_id = harness.id_map("clients")[str(account_id)]
    puts = [e for e in harness.zomentum_writes() if e["method"] == "PUT"]  # new records of that hour aside
    already_synced = {f"/v2/client/companies/{zid}" for zid in before.values()}
    assert [e["path"] for e in puts if e["path"] in already_synced] == [f"/v2/client/companies/{client_id}"]
    assert next(e for e in puts if e["path"].endswith(client_id))["body"] == {"website": "https://renamed.example"}
    assert harness.zomentum_records("client/companies")[client_id]["website"] == "https://renamed.example"
    events = harness.sql("SELECT action, changed_fields FROM audit.sync_events WHERE entity='clients' "
                         "AND kaseya_id=? AND action='updated'", [str(account_id)])
    assert events == [("updated", '["website"]')]


@pytest.mark.slow
def test_zomentum_as_crm_leaves_linked_records_alone(sandboxes, tmp_path):
    kaseya, zomentum = reset_sandboxes(sandboxes)
    harness = synced(PipelineHarness(kaseya, zomentum, tmp_path, mode="zomentum_as_crm"))
    account_id = int(next(iter(harness.id_map("clients"))))
    kaseya.state.update_record("accounts", account_id, {"website": "https://ignored.example"})
    next_hour = harness.current_hour - timedelta(hours=1)
    harness.set_modified_on("accounts", account_id, next_hour + timedelta(minutes=5))
    zomentum.state.clear_requests()
    linked = {f"/v2/client/companies/{zid}" for zid in harness.id_map("clients").values()}
    assert harness.run_hour(next_hour).success
    # A record first seen this hour and matched gets only its Kaseya link written (README, A lost ledger).
    assert not [(e["path"], e["body"]) for e in harness.zomentum_writes()
                if e["method"] == "PUT" and e["path"] in linked]


@pytest.mark.slow
def test_a_record_modified_exactly_on_a_partition_boundary_is_neither_missed_nor_duplicated(synced_harness):
    harness = synced_harness
    boundary = harness.current_hour - timedelta(hours=1)  # end of partition H-2, start of partition H-1
    created = harness.kaseya.state.create_record("accounts", {"accountName": "On The Boundary GmbH"})
    harness.set_modified_on("accounts", created["id"], boundary)

    first = harness.run_hour(boundary - timedelta(hours=1))
    second = harness.run_hour(boundary)

    assert first.success and second.success
    matching = [c for c in harness.zomentum.state.records("client/companies") if c["name"] == "On The Boundary GmbH"]
    assert len(matching) == 1
    assert harness.id_map("clients")[str(created["id"])] == matching[0]["id"]
    actions = [a for (a,) in harness.sql(
        "SELECT action FROM audit.sync_events WHERE entity='clients' AND kaseya_id=? ORDER BY event_id",
        [str(created["id"])])]
    assert actions == ["created"]  # the second hour read it again, unchanged: it went no further than raw
    assert harness.sql("SELECT run_id FROM raw.kaseya_accounts WHERE kaseya_id = ?", [created["id"]]) == \
        [(second.run_id,)]


def test_a_backfill_of_several_days_is_one_run_with_one_query_per_page(synced_once):
    harness, result = synced_once, synced_once.backfill_result
    runs = harness.sql("SELECT DISTINCT run_id FROM audit.sync_events")
    assert runs == [(result.run_id,)]
    account_reads = [e for e in harness.backfill_requests
                     if e["method"] == "GET" and e["path"].lower() == "/v2/crm/accounts/summary"]
    assert len(account_reads) == 1  # 40 accounts over ~48 hours: one page, not 48 queries
    # the tenant's first run: everything Kaseya holds, whatever the first hour of the range
    assert materialization_metadata(result, "raw_kaseya_changes")["accounts_query"].startswith("the beginning")


@pytest.mark.slow
def test_bad_rows_land_in_rejects_with_their_reason_while_the_rest_sync(harness):
    account = harness.kaseya_records("accounts")[0]
    bad = harness.kaseya.state.create_record("contacts", {
        "accountId": account["id"], "firstName": "Broken", "lastName": "Mail", "emailAddress": "not-an-email"})
    harness.set_modified_on("contacts", bad["id"], harness.current_hour - timedelta(hours=5))

    synced(harness)

    rejects = harness.sql("SELECT check_name, value, reason FROM audit.rejects WHERE entity='contacts' "
                          "AND kaseya_id = ?", [str(bad["id"])])
    assert [(check, value) for check, value, _ in rejects] == [("email_shape", "not-an-email")]
    assert f"contact {bad['id']}" in rejects[0][2] and "not-an-email" in rejects[0][2]
    others = harness.sql("SELECT DISTINCT check_name FROM audit.rejects WHERE kaseya_id <> ?", [str(bad["id"])])
    assert {check for (check,) in others} <= {"known_account"}  # contacts waiting for an account of this hour
    assert str(bad["id"]) not in harness.id_map("client_users")
    assert len(harness.id_map("client_users")) > 50


@pytest.mark.slow
def test_too_many_rejects_fail_the_blocking_check_and_stop_the_load(sandboxes, tmp_path):
    from zk_pipelines.defs.resources import PullTuning

    kaseya, zomentum = reset_sandboxes(sandboxes)
    harness = PipelineHarness(kaseya, zomentum, tmp_path,
                              tuning=PullTuning(max_reject_share=0.0, min_rejects_to_block=1))
    account = harness.kaseya_records("accounts")[0]
    bad = kaseya.state.create_record("contacts", {"accountId": account["id"], "firstName": "X", "lastName": "Y",
                                                  "emailAddress": "broken@"})
    harness.set_modified_on("contacts", bad["id"], harness.current_hour - timedelta(hours=5))
    result = harness.backfill()
    failed_checks = {e.asset_key.to_user_string() for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed_checks == {"stg_kaseya_contacts"}
    assert not result.success
    # The check lists the rejects that count (records waiting for a parent do not), and the limit's values.
    check = next(e for e in result.get_asset_check_evaluations() if not e.passed)
    table = check.metadata["rejects"].value
    assert [(r.data["kaseya_id"], r.data["check"], r.data["value"]) for r in table.records] == \
        [(str(bad["id"]), "email_shape", "broken@")]
    assert check.metadata["limit_share"].value == 0.0 and check.metadata["limit_min_rejects"].value == 1
    assert "the limit: more than 0% of a run's rows, once at least 1 are rejected" in check.description
    assert harness.id_map("client_users") == {}
    # The block stops the contacts and what depends on them only: the accounts and items are loaded, the
    # opportunities' step runs (those with a contact wait for it), and the audit counts the run.
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"zomentum_clients", "zomentum_opportunities", "zomentum_items", "audit_sync_events"} <= materialized
    assert not {"mapped_zomentum_client_users", "zomentum_client_users"} & materialized
    assert harness.id_map("clients") and harness.id_map("items")
    waiting = harness.sql("SELECT count(*) FROM audit.sync_events WHERE run_id = ? AND entity = 'opportunities' "
                          "AND action = 'deferred'", [result.run_id])[0][0]
    assert waiting > 0

    # The person fixes the e-mail in Kaseya (its ModifiedOn moves to now, past the failed hours) and clicks
    # "Re-execute from failure": the extraction, which succeeded, does not run again; staging reads the rejected
    # contact again by id, and the fixed contact reaches Zomentum in that run, green.
    kaseya.state.update_record("contacts", bad["id"], {"emailAddress": "fixed@example.com"})
    # fixed a minute ago (the module's sandbox clock may have been moved forward by an earlier test)
    harness.set_modified_on("contacts", bad["id"], datetime.now(UTC) - timedelta(minutes=1))
    kaseya.state.clear_requests()
    again = harness.reexecute_from_failure(result.run_id)
    assert again.success, step_errors(again)
    started = {e.step_key for e in again.all_events if e.event_type_value == "STEP_START"}
    assert "raw_kaseya_changes" not in started and "stg_kaseya_contacts" in started
    # Without the read by id the re-run is green too, but the fixed contact waits for the next hourly run.
    assert str(bad["id"]) in harness.id_map("client_users"), "the fixed contact did not reach Zomentum"
    user = harness.zomentum_records("client/users")[harness.id_map("client_users")[str(bad["id"])]]
    assert user["email"] == "fixed@example.com"
    # One call per contact held back: the rejected one and those waiting for their account (read side by side).
    by_id = [e["path"].rsplit("/", 1)[1] for e in kaseya.state.requests()
             if e["method"] == "GET" and "/contacts/summary/" in e["path"]]
    waiting_contacts = {kaseya_id for (kaseya_id,) in harness.sql(
        "SELECT DISTINCT kaseya_id FROM audit.rejects WHERE entity = 'contacts' AND run_id = ? AND "
        "check_name LIKE 'known_%'", [result.run_id])}
    assert sorted(by_id) == sorted({str(bad["id"]), *waiting_contacts})
    assert materialization_metadata(again, "stg_kaseya_contacts")["held_back_changed"] == 1
    assert harness.sql("SELECT count(*) FROM audit.rejects WHERE kaseya_id = ? AND check_name = 'email_shape'",
                       [str(bad["id"])]) == [(1,)]


def test_a_settings_name_unknown_in_the_live_systems_fails_the_run_before_anything_is_mapped(harness):
    from zk_pipelines_tests.pipeline_harness import write_settings

    write_settings(harness.settings_path, **{"product_defaults.warehouse": "Main Warehose"})
    result = harness.backfill()
    assert not result.success
    failure = next(e for e in result.get_step_failure_events() if e.step_key == "settings_resolved")
    assert "no Kaseya warehouse is named 'Main Warehose' (closest: 'Main Warehouse'" in \
        failure.event_specific_data.error.to_string()
    assert harness.zomentum_writes() == []
    # A wrong name is final: the step is not attempted again.
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


@pytest.mark.slow
def test_a_garbled_answer_to_the_settings_read_is_read_again_without_failing_the_step(harness):
    harness.zomentum.state.set_faults(seed=2, rules=[{"kind": "malformed_json", "route": "GET /v2/pipelines",
                                                      "count": 1}])
    result = harness.run_hour(harness.current_hour - timedelta(hours=2))
    assert result.success
    assert not [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert sum(harness.zomentum.state.fault_counts()["malformed_json"].values()) == 1


@pytest.mark.slow
def test_the_settings_step_is_attempted_again_when_zomentum_answers_garbled_on_every_attempt(harness):
    harness.zomentum.state.set_faults(seed=2, rules=[{"kind": "malformed_json", "route": "GET /v2/pipelines",
                                                      "count": HttpPolicy(api_name="zomentum").max_attempts}])
    result = harness.run_hour(harness.current_hour - timedelta(hours=2))
    assert result.success
    retried = [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried == ["settings_resolved"]
