"""Deactivation in Kaseya, end to end through both sandboxes: an account or contact inactive when first seen is
not created in Zomentum (ledger `skipped`, once); a linked one that becomes inactive is `deactivated` and
marked in Zomentum's "Kaseya status" custom field, and `reactivated` when Kaseya turns it back on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from zk_pipelines_tests.pipeline_harness import PipelineHarness, reset_sandboxes, step_errors
from zk_pipelines_tests.test_reconcile import differences, reconcile_job


def _status(harness: PipelineHarness, resource: str, record_id: str) -> list:
    fields = {f["id"]: f["display_name"] for f in harness.zomentum.state.records("custom/fields")}
    record = harness.zomentum.state.get_record(resource, record_id)
    return [v["values"] for v in record["custom_fields"] if fields[v["id"]] == "Kaseya status"]


def _actions(harness: PipelineHarness, entity: str, kaseya_id: int) -> list[str]:
    return [a for (a,) in harness.sql("SELECT action FROM audit.sync_events WHERE entity = ? AND kaseya_id = ? "
                                      "ORDER BY event_id", [entity, str(kaseya_id)])]


@pytest.mark.slow
def test_inactive_records_are_not_created_and_a_deactivation_is_marked_in_zomentum(sandboxes, tmp_path):
    kaseya, zomentum = reset_sandboxes(sandboxes)
    harness = PipelineHarness(kaseya, zomentum, tmp_path)
    hours_ago = harness.current_hour - timedelta(hours=5)
    dormant = kaseya.state.create_record("accounts", {"accountName": "Dormant Holdings Ltd", "isActive": False})
    harness.set_modified_on("accounts", dormant["id"], hours_ago)
    account = harness.kaseya_records("accounts")[0]["id"]
    gone = kaseya.state.create_record("contacts", {"accountId": account, "firstName": "Left", "lastName": "Company",
                                                   "emailAddress": "left.company@example.com", "isActive": False})
    harness.set_modified_on("contacts", gone["id"], hours_ago)

    first = harness.backfill()

    assert first.success, step_errors(first)
    assert str(dormant["id"]) not in harness.id_map("clients")
    assert "Dormant Holdings Ltd" not in {c["name"] for c in zomentum.state.records("client/companies")}
    assert str(gone["id"]) not in harness.id_map("client_users")
    assert "left.company@example.com" not in {u["email"] for u in zomentum.state.records("client/users")}
    assert _actions(harness, "clients", dormant["id"]) == ["skipped"]
    assert _actions(harness, "client_users", gone["id"]) == ["skipped"]

    # A linked account and contact switched to inactive in Kaseya, and nothing else about them.
    client_id = harness.id_map("clients")[str(account)]
    contact = next(c for c in harness.kaseya_records("contacts")
                   if str(c["id"]) in harness.id_map("client_users") and c["accountId"] != account)
    user_id = harness.id_map("client_users")[str(contact["id"])]
    client_before = zomentum.state.get_record("client/companies", client_id)
    for entity, record_id in (("accounts", account), ("contacts", contact["id"])):
        kaseya.state.update_record(entity, record_id, {"isActive": False})
        harness.set_modified_on(entity, record_id, harness.current_hour - timedelta(minutes=40))
    second = harness.run_hour(harness.current_hour - timedelta(hours=1))

    assert second.success, step_errors(second)
    assert _status(harness, "client/companies", client_id) == [["inactive"]]
    assert _status(harness, "client/users", user_id) == [["inactive"]]
    client_after = zomentum.state.get_record("client/companies", client_id)
    assert {k: v for k, v in client_after.items() if k not in ("custom_fields", "updated_at")} == \
        {k: v for k, v in client_before.items() if k not in ("custom_fields", "updated_at")}
    assert _actions(harness, "clients", account)[-1] == "deactivated"
    assert _actions(harness, "client_users", contact["id"])[-1] == "deactivated"
    assert _actions(harness, "clients", dormant["id"]) == ["skipped"]  # said once, not every run

    # What Zomentum was told of the flag is not a mapped field: a reconciliation finds no drift in it.
    drifted = [d for d in differences(reconcile_job(harness)) if d.get("class") == "drift"]
    assert not [d for d in drifted if str(d.get("kaseya_id")) in (str(account), str(contact["id"]))], drifted

    # Quiet: a run with no change tells Zomentum nothing again.
    zomentum.state.clear_requests()
    assert harness.run_hour(harness.current_hour - timedelta(hours=1)).success
    assert harness.zomentum_writes() == []

    # Reactivated in Kaseya: marked active again.
    kaseya.state.update_record("accounts", account, {"isActive": True})
    harness.set_modified_on("accounts", account, harness.current_hour - timedelta(minutes=5))
    assert harness.run_hour(harness.current_hour - timedelta(hours=1)).success
    assert _status(harness, "client/companies", client_id) == [["active"]]
    assert _actions(harness, "clients", account)[-1] == "reactivated"
