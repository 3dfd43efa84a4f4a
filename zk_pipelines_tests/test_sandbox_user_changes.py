"""The sandboxes' user changes the reconciliation needs, over HTTP: a deletion in either system, an edit by hand in
Zomentum, and a Zomentum write answered 200 that did not persist (fault `unpersisted_write`)."""

from __future__ import annotations

import requests

from zk_pipelines.clients.zomentum import ZomentumClient


def test_a_user_deletes_and_edits_zomentum_records_through_the_control_surface(zomentum, zomentum_credentials):
    client = ZomentumClient(zomentum_credentials)
    first, second = list(client.iter_records("client/companies"))[:2]
    base = f"{zomentum.base_url}/_sandbox/records/client/companies"

    deleted = requests.delete(f"{base}/{first['id']}", timeout=10)
    edited = requests.patch(f"{base}/{second['id']}", json={"website": "https://by-hand.example"}, timeout=10)

    assert deleted.status_code == 200 and deleted.json()["id"] == first["id"]
    assert edited.status_code == 200
    listed = {record["id"]: record for record in client.iter_records("client/companies")}
    assert first["id"] not in listed and listed[second["id"]]["website"] == "https://by-hand.example"
    assert requests.delete(f"{base}/{first['id']}", timeout=10).status_code == 404
    client.close()


def test_an_unpersisted_write_is_answered_as_done_and_not_kept(zomentum, zomentum_credentials):
    client = ZomentumClient(zomentum_credentials)
    record = next(iter(client.iter_records("client/companies")))
    zomentum.state.set_faults(rules=[{"kind": "unpersisted_write", "method": "PUT", "count": 1}])

    answered = client.update("client/companies", record["id"], {"website": "https://lost.example"})
    kept = client.get("client/companies", record["id"])
    again = client.update("client/companies", record["id"], {"website": "https://kept.example"})

    assert answered["website"] == "https://lost.example"
    assert kept["website"] == record["website"]
    assert again["website"] == client.get("client/companies", record["id"])["website"] == "https://kept.example"
    assert zomentum.state.fault_counts() == {"unpersisted_write": {"PUT /v2/client/companies/{id}": 1}}
    client.close()


def test_a_kaseya_user_deletes_a_record_and_kaseya_refuses_the_zomentum_only_fault(kaseya_http):
    account = kaseya_http.result("GET", "/v2/crm/accounts/summary")[0]
    deleted = kaseya_http.control("DELETE", f"records/accounts/{account['id']}")

    assert deleted.status_code == 200
    listed = {row["id"] for row in kaseya_http.result("GET", "/v2/crm/accounts/summary", params={"PageSize": 100})}
    assert account["id"] not in listed
    refused = kaseya_http.control("POST", "faults", json={"rules": [{"kind": "unpersisted_write"}]})
    assert refused.status_code == 400 and "unpersisted_write" in refused.text
