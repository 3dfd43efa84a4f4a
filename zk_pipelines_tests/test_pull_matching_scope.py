"""First-sight matching of client users is scoped to the contact's own client, end to end through both
sandboxes: a same-e-mail person of another client is a conflict for a person, never moved; two Kaseya
contacts sharing an e-mail in two accounts are two client users, one under each client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from zk_pipelines_tests.pipeline_harness import REPO, PipelineHarness, reset_sandboxes, step_errors


@pytest.fixture
def harness(sandboxes, tmp_path) -> PipelineHarness:
    kaseya, zomentum = reset_sandboxes(sandboxes)
    return PipelineHarness(kaseya, zomentum, tmp_path)


def _contact(harness: PipelineHarness, account_id: int, first: str, email: str) -> int:
    created = harness.kaseya.state.create_record("contacts", {
        "accountId": account_id, "firstName": first, "lastName": "Example", "emailAddress": email})
    harness.set_modified_on("contacts", created["id"], harness.current_hour - timedelta(hours=5))
    return created["id"]


def audit_errors(harness: PipelineHarness) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KASEYA_", "ZOMENTUM_", "ZK_"))}
    env |= {"ZK_DUCKDB_PATH": str(harness.database), "ZK_SETTINGS": str(harness.settings_path)}
    result = subprocess.run([sys.executable, "-m", "zk_pipelines.cli", "audit", "--entity", "contacts",
                             "--status", "error", "--format", "json"], env=env, capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_a_same_email_person_of_another_client_is_a_conflict_never_moved(harness):
    zomentum = harness.zomentum.state
    elsewhere = zomentum.create_record("client/companies", {"name": "Only In Zomentum Ltd"})
    person = zomentum.create_record("client/users", {
        "name": {"first": "Moved", "last": "Person"}, "email": "moved.person@elsewhere.example",
        "client_company_id": elsewhere["id"]})
    account = harness.kaseya_records("accounts")[0]["id"]
    contact = _contact(harness, account, "Moved", "Moved.Person@elsewhere.example")

    result = harness.backfill()

    assert result.success, step_errors(result)
    assert zomentum.get_record("client/users", person["id"])["client_company_id"] == elsewhere["id"]
    assert not [e for e in harness.zomentum_writes() if person["id"] in e["path"]]
    assert str(contact) not in harness.id_map("client_users")  # neither matched nor created
    same_mail = [u for u in zomentum.records("client/users") if u["email"].lower() == person["email"]]
    assert [u["id"] for u in same_mail] == [person["id"]]
    conflicts = [e for e in audit_errors(harness) if e["kaseya_id"] == str(contact)]
    assert [e["action"] for e in conflicts] == ["conflict"]
    assert person["id"] in conflicts[0]["reason"] and elsewhere["id"] in conflicts[0]["reason"]
    assert "a person settles it" in conflicts[0]["reason"]

    # Settled by a person (the contact's e-mail corrected in Kaseya): the next run syncs the contact.
    harness.kaseya.state.update_record("contacts", contact, {"emailAddress": "moved.person@our-client.example"})
    next_hour = harness.current_hour - timedelta(hours=1)
    harness.set_modified_on("contacts", contact, next_hour + timedelta(minutes=10))
    assert harness.run_hour(next_hour).success
    synced = zomentum.get_record("client/users", harness.id_map("client_users")[str(contact)])
    assert synced["client_company_id"] == harness.id_map("clients")[str(account)]
    assert zomentum.get_record("client/users", person["id"])["client_company_id"] == elsewhere["id"]


@pytest.mark.slow
def test_two_contacts_sharing_an_email_in_two_accounts_become_one_client_user_each(harness):
    first_account, second_account = (a["id"] for a in harness.kaseya_records("accounts")[:2])
    one = _contact(harness, first_account, "Shared", "front.desk@shared.example")
    two = _contact(harness, second_account, "Shared", "front.desk@shared.example")

    result = harness.backfill()

    assert result.success, step_errors(result)
    users, clients = harness.id_map("client_users"), harness.id_map("clients")
    assert users[str(one)] != users[str(two)]
    for contact, account in ((one, first_account), (two, second_account)):
        user = harness.zomentum.state.get_record("client/users", users[str(contact)])
        assert user["client_company_id"] == clients[str(account)]
        assert user["email"] == "front.desk@shared.example"
    assert not [e for e in audit_errors(harness) if e["kaseya_id"] in (str(one), str(two))]
