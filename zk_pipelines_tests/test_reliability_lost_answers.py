"""Lost answers to writes: the server made the record but the client never heard back (the sandboxes' `lost_answer`
fault: the operation runs, then the connection is reset). The next attempt finds the record and adopts it, in
both directions; nothing is ever created twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from benchmarks.reliability_report import WonDocument, make_won_documents
from zk_pipelines.clients.http import ApiError, HttpPolicy
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import KaseyaCredentials, ZomentumCredentials
from zk_pipelines.domain.entities import ZOMENTUM_TARGET
from zk_pipelines.domain.push_plan.markers import document_markers
from zk_pipelines.pull.load import MatchIndex
from zk_pipelines.push.failures import PushFailed
from zk_pipelines.push.orchestration import PushSources, push_document
from zk_pipelines.secrets import Secret
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.push_store import document_requests
from zk_pipelines_tests.pipeline_harness import (
    PipelineHarness,
    reset_sandboxes,
    step_errors,
    write_settings,
)

ADOPTED = "Zomentum's answer to the create was lost (no answer: %); the created record was found and adopted"


@pytest.fixture
def fresh(sandboxes):
    kaseya, zomentum = reset_sandboxes(sandboxes)
    return kaseya, zomentum


def posts(zomentum, route: str) -> list[dict]:
    return [e for e in zomentum.state.requests() if e["method"] == "POST" and e["route"] == route]


# --------------------------------------------------------------------------------------------------------
# Kaseya -> Zomentum: the pull's creates


ZOMENTUM_CREATES = {"clients": "/v2/client/companies/", "client_users": "/v2/client/users/",
                    "opportunities": "/v2/opportunities/", "items": "/v2/items/"}


@pytest.mark.slow
def test_the_pull_adopts_every_create_whose_answer_was_lost_and_never_creates_it_twice(fresh, tmp_path):
    kaseya, zomentum = fresh
    zomentum.state.set_faults(seed=3, rules=[
        *({"kind": "lost_answer", "route": f"POST {route}", "after": 1, "count": 2}
          for route in ZOMENTUM_CREATES.values()),
        # The opportunities' link custom field: its create is lost too; the step's retry finds it.
        {"kind": "lost_answer", "route": "POST /v2/custom/fields/", "count": 1},
    ])
    harness = PipelineHarness(kaseya, zomentum, tmp_path)

    result = harness.backfill()

    assert result.success, step_errors(result)
    assert zomentum.state.fault_counts()["lost_answer"] == {
        **{f"POST {route}": 2 for route in ZOMENTUM_CREATES.values()}, "POST /v2/custom/fields/": 1}
    for entity, route in ZOMENTUM_CREATES.items():
        adopted = harness.sql("SELECT kaseya_id, zomentum_id FROM audit.sync_events WHERE entity = ? AND "
                              "action = 'created' AND reason LIKE ?", [entity, ADOPTED])
        lost = [e for e in posts(zomentum, route) if e["fault"]]
        assert len(adopted) == len(lost) == 2, entity
        # One POST per Zomentum record the pull created (the adopted ones included): none was sent twice.
        created = harness.sql("SELECT count(*) FROM audit.sync_events WHERE entity = ? AND action = 'created'",
                              [entity])[0][0]
        assert len(posts(zomentum, route)) == created
        id_map = harness.id_map(entity)
        assert all(id_map[kaseya_id] == zomentum_id for kaseya_id, zomentum_id in adopted)
        assert len(set(id_map.values())) == len(id_map)  # one Zomentum record per Kaseya record
    # One Kaseya link field per entity type (clients, client users, opportunities, items), each created once.
    assert len(posts(zomentum, "/v2/custom/fields/")) == 4
    fields = [f for f in zomentum.state.records("custom/fields") if f["display_name"] == "Kaseya opportunity"]
    assert len(fields) == 1
    names = Counter(c["name"] for c in zomentum.state.records("client/companies"))
    emails = Counter(u["email"] for u in zomentum.state.records("client/users") if u["email"])
    parts = Counter(i["manufacturer_part_number"] for i in zomentum.state.records("items")
                    if i["manufacturer_part_number"])
    assert max(names.values()) == max(emails.values()) == max(parts.values()) == 1


def test_a_listing_cut_short_while_looking_for_a_record_never_leaves_a_partial_index(fresh):
    """The match index is read once per load; were a listing that fails on its second page kept as far as it
    got, every record on the later pages would look absent and be created again."""
    _, zomentum = fresh
    client = ZomentumClient(ZomentumCredentials(zomentum.base_url, Secret(zomentum.refresh_token)),
                            policy=HttpPolicy(api_name="zomentum", max_attempts=2, backoff_base=0.01))
    field_id = client.create_custom_field("opportunity", "Kaseya opportunity").id
    renewals = next(p for p in zomentum.state.records("pipelines") if p["name"] == "Renewals")
    company = zomentum.state.records("client/companies")[0]
    link = "https://kaseya.example/crm/opportunities/400042"
    client.create("opportunities", {
        "name": "Renewal made by an earlier run", "client_company_id": company["id"],
        "opportunity_pipeline_id": renewals["id"], "opportunity_pipeline_stage_id": renewals["stages"][0]["id"],
        "custom_fields": [{"id": field_id, "values": [link]}]})
    # Opportunities are listed one pipeline after the other: the second pipeline's listing answers garbled, on
    # every attempt the client makes.
    zomentum.state.set_faults(seed=1, rules=[{"kind": "malformed_json", "route": "GET /v2/opportunities",
                                              "after": 1, "count": client.policy.max_attempts}])
    index = MatchIndex(client, ZOMENTUM_TARGET["opportunities"], field_id)
    wanted = {"name": "Renewal", "custom_fields": [{"id": field_id, "values": [link]}]}

    with pytest.raises(ApiError, match="not JSON"):
        index.find(wanted)
    found = index.find(wanted)

    assert found is not None and found["name"] == "Renewal made by an earlier run"


# --------------------------------------------------------------------------------------------------------
# Zomentum -> Kaseya: the push's creates


KASEYA_CREATES = ("POST /v2/crm/accounts", "POST /v2/crm/contacts/summary", "POST /v2/crm/opportunities",
                  "POST /v2/crm/quotes", "POST /v2/crm/quotes/{quotationId}/lineItems/{itemTypeId}/{distributerTypeId}",
                  "POST /v2/inventory/products", "POST /v2/admin/finance/services/services")


def test_a_push_adopts_every_kaseya_create_whose_answer_was_lost_and_never_creates_it_twice(fresh, tmp_path: Path):
    kaseya, zomentum = fresh
    # A client Kaseya does not know (account and contact created), a product and a service Kaseya lacks.
    (document_id,) = make_won_documents(kaseya, zomentum, [
        WonDocument(False, 0, (("Rack Shelf 1U", 2), ("Network Assessment", 1)))])
    kaseya.state.set_faults(seed=5, rules=[{"kind": "lost_answer", "route": route, "count": 1}
                                           for route in KASEYA_CREATES])
    zomentum.state.set_faults(seed=5, rules=[{"kind": "lost_answer", "route": "PUT /v2/opportunities/{id}",
                                              "count": 1}])
    credentials = KaseyaCredentials(kaseya.base_url, kaseya.username, Secret(kaseya.password), kaseya.tenant)
    settings = write_settings(tmp_path / "settings.yaml", mode="zomentum_as_crm")
    database = tmp_path / "tenant.duckdb"
    attempts: list[str] = []
    while len(attempts) <= len(KASEYA_CREATES) + 1:
        sources = PushSources(KaseyaClient(credentials), ZomentumClient(
            ZomentumCredentials(zomentum.base_url, Secret(zomentum.refresh_token))), settings, database)
        try:
            push_document(sources, document_id, run_id=f"push-{len(attempts)}")
            break
        except PushFailed as failure:
            attempts.append(str(failure))
    else:
        pytest.fail(f"the push never went through: {attempts}")

    # Each lost answer failed one attempt, saying so, and the next attempt went on.
    assert len(attempts) == len(KASEYA_CREATES) + 1
    assert all("the answer was lost" in a or "may have happened" in a for a in attempts), attempts
    assert sum(kaseya.state.fault_counts()["lost_answer"].values()) == len(KASEYA_CREATES)
    kaseya_posts = Counter(f"POST {e['route']}" for e in kaseya.state.requests() if e["method"] == "POST")
    assert all(kaseya_posts[route] == 1 for route in KASEYA_CREATES if "lineItems" not in route), kaseya_posts
    assert kaseya_posts[KASEYA_CREATES[4]] == 2  # two quote lines, each sent once

    document = next(d for d in zomentum.state.records("documents") if d["id"] == document_id)
    company = next(c for c in zomentum.state.records("client/companies") if c["id"] == document["client_company_id"])
    assert [a["accountName"] for a in kaseya.state.records("accounts")].count(company["name"]) == 1
    (opportunity,) = [o for o in kaseya.state.records("opportunities")
                      if document_id in document_markers(o.get("description"))]
    (quote,) = [q for q in kaseya.state.records("quotes") if document_id in document_markers(q.get("name"))]
    assert sorted(line["name"] for line in quote["lineItems"] if line["quantity"]) == [
        "Network Assessment", "Rack Shelf 1U"]
    assert [p["productName"] for p in kaseya.state.records("products")].count("Rack Shelf 1U") == 1
    assert [s["name"] for s in kaseya.state.records("services")].count("Network Assessment") == 1
    assert opportunity["accountName"] == company["name"]

    with connect(database, read_only=True) as connection:
        requests = document_requests(connection, document_id)
    creates = [r for r in requests if r.method == "POST"]
    assert Counter(r.state for r in creates)["adopted"] == len(KASEYA_CREATES)
    assert {r.state for r in creates} <= {"adopted", "sent"}
