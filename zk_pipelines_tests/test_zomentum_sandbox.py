"""The Zomentum sandbox over real HTTP: auth, lists, writes, errors, documents, rate limit, control surface."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests

from zk_pipelines.sandbox.world import build_world
from zk_pipelines.sandbox.zomentum import (
    API_USER_EMAIL,
    REFRESH_TOKEN,
    ZomentumSandbox,
    ZomentumState,
)
from zk_pipelines.sandbox.zomentum.schema import (
    DOCUMENT_STATUSES,
    ITEM_TYPES,
    LINE_ITEM_COLUMNS,
    PAGE_LIMIT_MAX,
    format_timestamp,
    parse_timestamp,
)


class Api:
    """Plain HTTP calls with a valid access token, so these tests exercise the server, not the client."""

    def __init__(self, sandbox: ZomentumSandbox) -> None:
        self.url = sandbox.api_url
        self.token = sandbox.state.issue_access_token()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(f"{self.url}/{path}", params=params, headers=self._headers(), timeout=10)

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(f"{self.url}/{path}", json=body, headers=self._headers(), timeout=10)

    def put(self, path: str, body: Any) -> requests.Response:
        return requests.put(f"{self.url}/{path}", json=body, headers=self._headers(), timeout=10)

    def all(self, resource: str, **params: Any) -> list[dict[str, Any]]:
        response = self.get(resource, limit=1000, **params)
        assert response.status_code == 200, response.text
        return response.json()["data"]


@pytest.fixture
def api(zomentum: ZomentumSandbox) -> Api:
    return Api(zomentum)


def error_of(response: requests.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"status_code", "message"}
    assert body["status_code"] == response.status_code
    return response.status_code, body["message"]


def refresh(sandbox: ZomentumSandbox, token: str | None = REFRESH_TOKEN) -> requests.Response:
    params = {} if token is None else {"refresh_token": token}
    return requests.get(f"{sandbox.api_url}/auth0/access_token", params=params, timeout=10)


# ----- authentication ----------------------------------------------------------------------------------

def test_refresh_issues_a_token_that_reads_and_invalidates_the_previous_one(zomentum: ZomentumSandbox) -> None:
    first = refresh(zomentum).json()["access_token"]
    assert requests.get(f"{zomentum.api_url}/users", headers={"Authorization": f"Bearer {first}"},
                        timeout=10).status_code == 200

    second = refresh(zomentum).json()["access_token"]

    assert second != first
    old = requests.get(f"{zomentum.api_url}/users", headers={"Authorization": f"Bearer {first}"}, timeout=10)
    new = requests.get(f"{zomentum.api_url}/users", headers={"Authorization": f"Bearer {second}"}, timeout=10)
    assert error_of(old) == (401, "the access token was invalidated by a newer one")
    assert new.status_code == 200


def test_access_token_expires_after_its_lifetime_on_the_sandbox_clock(zomentum: ZomentumSandbox) -> None:
    answer = refresh(zomentum).json()
    assert answer["expires_in"] == 86400
    headers = {"Authorization": f"Bearer {answer['access_token']}"}

    zomentum.state.advance_clock(86400 - 5)
    assert requests.get(f"{zomentum.api_url}/users", headers=headers, timeout=10).status_code == 200
    zomentum.state.advance_clock(10)

    expired = requests.get(f"{zomentum.api_url}/users", headers=headers, timeout=10)
    assert error_of(expired) == (401, "the access token has expired")


def test_token_lifetime_is_a_knob(zomentum: ZomentumSandbox) -> None:
    zomentum.state.set_knobs(access_token_lifetime_seconds=60)
    headers = {"Authorization": f"Bearer {refresh(zomentum).json()['access_token']}"}
    zomentum.state.advance_clock(61)
    assert requests.get(f"{zomentum.api_url}/users", headers=headers, timeout=10).status_code == 401


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer not-a-token"}])
def test_requests_without_a_valid_bearer_token_are_401(zomentum: ZomentumSandbox, headers: dict[str, str]) -> None:
    status, _ = error_of(requests.get(f"{zomentum.api_url}/client/companies", headers=headers, timeout=10))
    assert status == 401


def test_refresh_rejects_a_wrong_or_missing_refresh_token(zomentum: ZomentumSandbox) -> None:
    assert error_of(refresh(zomentum, "not-the-token"))[0] == 401
    assert error_of(refresh(zomentum, None)) == (400, "refresh_token: is required")


def test_request_log_masks_the_refresh_token(zomentum: ZomentumSandbox) -> None:
    refresh(zomentum)
    entries = zomentum.state.requests()
    assert [e["route"] for e in entries] == ["/v2/auth0/access_token"]
    assert REFRESH_TOKEN not in str(entries)
    assert entries[0]["query"] == "refresh_token=***"


# ----- lists -------------------------------------------------------------------------------------------

def test_pages_cover_the_list_once_in_creation_order_with_the_filtered_count(api: Api) -> None:
    everything = api.all("client/users")
    pages = [api.get("client/users", page=page, limit=5, count_query_flag="true").json() for page in (1, 2, 3, 4)]

    assert all(page["filtered_count_map"] == {"all": len(everything)} for page in pages)
    assert [len(page["data"]) for page in pages] == [5, 5, 2, 0]
    assert [r["id"] for page in pages for r in page["data"]] == [r["id"] for r in everything]
    assert [(r["created_at"], r["id"]) for r in everything] == sorted((r["created_at"], r["id"]) for r in everything)


def test_count_map_only_when_asked_for(api: Api) -> None:
    assert "filtered_count_map" not in api.get("users").json()
    assert "filtered_count_map" in api.get("users", count_query_flag="true").json()


def test_limit_is_capped_at_the_documented_maximum(zomentum: ZomentumSandbox, api: Api) -> None:
    seeded = len(zomentum.state.records("custom/fields"))
    for n in range(PAGE_LIMIT_MAX):
        zomentum.state.create_record("custom/fields", {"entity_type": "item", "display_name": f"Field {n}",
                                                       "field_type": "text"})

    body = api.get("custom/fields", limit=5000, count_query_flag="true").json()

    assert len(body["data"]) == PAGE_LIMIT_MAX
    assert body["filtered_count_map"] == {"all": PAGE_LIMIT_MAX + seeded}


def test_eq_filters_match_exactly_including_non_ascii_names(zomentum: ZomentumSandbox, api: Api) -> None:
    client = zomentum.state.create_record("client/companies", {"name": "Müller & Söhne: Zürich GmbH"})
    found = api.get("client/companies", filters="name:eq:Müller & Söhne: Zürich GmbH;",
                    count_query_flag="true").json()
    assert [r["id"] for r in found["data"]] == [client["id"]]
    assert found["filtered_count_map"] == {"all": 1}
    assert api.get("client/companies", filters="name:eq:Müller & Söhne;").json()["data"] == []


def test_filters_combine_and_range_on_updated_at_inclusively(zomentum: ZomentumSandbox, api: Api) -> None:
    contacts = api.all("client/users")
    company_id = contacts[0]["client_company_id"]
    of_company = [c["id"] for c in contacts if c["client_company_id"] == company_id]
    cutoff = sorted(c["updated_at"] for c in contacts)[len(contacts) // 2]

    by_company = api.all("client/users", filters=f"client_company_id:eq:{company_id};")
    since = api.all("client/users", filters=f"updated_at:gte:{cutoff};")
    until = api.all("client/users", filters=f"updated_at:lte:{cutoff};")
    both = api.all("client/users", filters=f"client_company_id:eq:{company_id};updated_at:gte:{cutoff};")

    assert [c["id"] for c in by_company] == of_company
    assert {c["id"] for c in since} == {c["id"] for c in contacts if c["updated_at"] >= cutoff}
    assert {c["id"] for c in until} == {c["id"] for c in contacts if c["updated_at"] <= cutoff}
    assert {c["id"] for c in both} == {c["id"] for c in contacts
                                       if c["client_company_id"] == company_id and c["updated_at"] >= cutoff}


def test_range_filters_compare_instants_whatever_the_offset(api: Api) -> None:
    contacts = api.all("client/users")
    newest = max(parse_timestamp(c["updated_at"]) for c in contacts)
    berlin = timezone(timedelta(hours=1))

    at_newest = api.all("client/users", filters=f"updated_at:gte:{newest.astimezone(berlin).isoformat()};")
    after_newest = (newest + timedelta(milliseconds=1)).astimezone(berlin).isoformat()

    assert [c["id"] for c in at_newest] == [c["id"] for c in contacts if parse_timestamp(c["updated_at"]) == newest]
    assert api.all("client/users", filters=f"updated_at:gte:{after_newest};") == []
    assert len(api.all("client/users", filters=f"updated_at:lte:{after_newest};")) == len(contacts)


@pytest.mark.parametrize(("params", "message"), [
    ({"filters": "name:eq:Acme"}, "filters: every term must end with ';' (field:operator:value;)"),
    ({"filters": "nickname:eq:Acme;"}, "filters: unknown field 'nickname' for a client company"),
    ({"filters": "name:like:Acme;"}, "filters: unknown operator 'like' in 'name:like:Acme' (eq, gte, lte)"),
    ({"filters": "name:gte:A;"}, "filters: name cannot be filtered with gte (only created_at, updated_at)"),
    ({"filters": "updated_at:gte:2026-01-01T00:00:00;"},
     "filters: '2026-01-01T00:00:00' is not an ISO-8601 date-time with an offset"),
    ({"filters": "billing_address:eq:x;"}, "filters: billing_address is not a scalar field and cannot be filtered"),
    ({"page": "0"}, "page: '0' is not a positive integer"),
    ({"limit": "ten"}, "limit: 'ten' is not a positive integer"),
    ({"count_query_flag": "yes"}, "count_query_flag: must be true or false"),
    ({"included_child_entities": "documents:all"},
     "included_child_entities: unknown query parameter (this list takes count_query_flag, filters, limit, page)"),
])
def test_bad_list_parameters_are_400_naming_the_parameter(api: Api, params: dict[str, str], message: str) -> None:
    assert error_of(api.get("client/companies", **params)) == (400, message)


def test_opportunities_list_only_the_default_pipeline_unless_one_is_named(zomentum: ZomentumSandbox, api: Api) -> None:
    pipelines = {p["name"]: p["id"] for p in api.all("pipelines")}
    every = zomentum.state.records("opportunities")

    default = api.all("opportunities")
    renewals = api.all("opportunities", opportunity_pipeline_id=pipelines["Renewals"])
    hidden = api.all("opportunities", filters=f"opportunity_pipeline_id:eq:{pipelines['Renewals']};")

    assert {o["id"] for o in default} == {o["id"] for o in every
                                         if o["opportunity_pipeline_id"] == pipelines["Sales Pipeline"]}
    assert {o["id"] for o in renewals} == {o["id"] for o in every
                                          if o["opportunity_pipeline_id"] == pipelines["Renewals"]}
    assert renewals and hidden == []
    assert error_of(api.get("opportunities", opportunity_pipeline_id="nope")) == (
        400, "opportunity_pipeline_id: no pipeline with id 'nope'")


def test_custom_fields_list_by_entity_type(api: Api) -> None:
    assert [f["display_name"] for f in api.all("custom/fields", entity_type="client_company")] == ["Region"]
    assert [f["display_name"] for f in api.all("custom/fields", entity_type="document")] == ["PO Reference"]
    assert error_of(api.get("custom/fields", entity_type="invoice"))[0] == 400


def test_zapier_documents_list_is_newest_first(api: Api) -> None:
    documents = api.all("documents")
    zapier = api.all("documents/zapier")
    assert sorted(d["id"] for d in zapier) == sorted(d["id"] for d in documents)
    assert [d["updated_at"] for d in zapier] == sorted((d["updated_at"] for d in documents), reverse=True)


def test_get_by_id_and_404s(api: Api) -> None:
    client = api.all("client/companies")[0]
    assert api.get(f"client/companies/{client['id']}").json() == client
    assert error_of(api.get("client/companies/no-such-id")) == (404, "no client company with id 'no-such-id'")
    assert error_of(api.get("invoices")) == (404, "no route GET /v2/invoices")


# ----- writes ------------------------------------------------------------------------------------------

def test_create_needs_the_trailing_slash_and_defaults_the_owner(zomentum: ZomentumSandbox, api: Api) -> None:
    created = api.post("client/companies/", {"name": "Quokka Analytics Pty Ltd"})

    assert created.status_code == 201
    record = created.json()
    assert record["name"] == "Quokka Analytics Pty Ltd"
    assert record["owner_user_id"] == zomentum.state.api_user_id
    assert record["created_at"] == record["updated_at"]
    assert record["shipping_addresses"] == [] and record["custom_fields"] == []
    assert api.get(f"client/companies/{record['id']}").json() == record

    without_slash = api.post("client/companies", {"name": "Quokka Analytics Pty Ltd"})
    assert error_of(without_slash) == (405, "POST is not allowed on /v2/client/companies (allowed: GET) "
                                            "(creates are POST /v2/<resource>/ with a trailing slash)")


def test_update_merges_only_the_given_fields_and_moves_updated_at(zomentum: ZomentumSandbox, api: Api) -> None:
    client = next(c for c in api.all("client/companies") if c["custom_fields"])
    region_field = client["custom_fields"][0]["id"]
    other_field = zomentum.state.create_record(
        "custom/fields", {"entity_type": "client_company", "display_name": "Tier", "field_type": "text"})["id"]
    zomentum.state.advance_clock(5)

    updated = api.put(f"client/companies/{client['id']}", {
        "website": "https://new.example", "custom_fields": [{"id": other_field, "values": ["Gold"]}]}).json()

    assert updated["website"] == "https://new.example"
    assert {k: v for k, v in updated.items() if k not in ("website", "custom_fields", "updated_at")} == {
        k: v for k, v in client.items() if k not in ("website", "custom_fields", "updated_at")}
    assert updated["custom_fields"] == client["custom_fields"] + [{"id": other_field, "values": ["Gold"]}]
    assert parse_timestamp(updated["updated_at"]) > parse_timestamp(client["updated_at"])
    assert region_field in {f["id"] for f in updated["custom_fields"]}


def test_every_write_moves_updated_at_even_within_one_millisecond(zomentum: ZomentumSandbox) -> None:
    client = zomentum.state.create_record("client/companies", {"name": "Fast Writer LLC"})
    stamps = [client["updated_at"]]
    for n in range(5):
        stamps.append(zomentum.state.update_record("client/companies", client["id"], {"phone": str(n)})["updated_at"])
    assert stamps == sorted(set(stamps))


@pytest.mark.parametrize(("path", "body", "message"), [
    ("client/companies/", {"id": "x", "name": "A"}, "id: must not be sent on create (POST /v2/<resource>/)"),
    ("client/companies/", {"website": "https://a.example"}, "name: is required"),
    ("client/companies/", {"name": "  "}, "name: must not be empty"),
    ("client/companies/", {"name": "A", "nickname": "a"}, "nickname: unknown field for a client company"),
    ("client/companies/", {"name": "A", "created_at": "2026-01-01T00:00:00Z"}, "created_at: is read-only"),
    ("client/companies/", {"name": "A", "company_type": "Customer"},
     "company_type: 'Customer' is not one of customer, prospect, vendor, partner"),
    ("client/companies/", {"name": "A", "billing_address": {"zip": "1"}}, "billing_address.zip: unknown field"),
    ("client/companies/", {"name": "A", "owner_user_id": "nobody"}, "owner_user_id: no user with id 'nobody'"),
    ("client/companies/", {"name": "A", "custom_fields": [{"id": "nope", "values": ["x"]}]},
     "custom_fields[0].id: no client_company custom field with id 'nope'"),
    ("client/users/", {"name": {"first": "Ann"}, "client_company_id": "nope"},
     "client_company_id: no client company with id 'nope'"),
    ("client/users/", {"name": {"last": "Lee"}, "client_company_id": "nope"}, "name.first: is required"),
    ("client/users/", {"name": "Ann Lee", "client_company_id": "nope"}, "name: must be an object"),
    ("items/", {"name": "Widget", "type": "gadget"},
     "type: 'gadget' is not one of hardware, software, service, labor, bundle"),
    ("items/", {"name": "Widget", "type": "hardware", "pricing": [{"name": "Std", "billing_period": "monthly",
                                                                    "sell_price": "12"}]},
     "pricing[0].sell_price: must be a number"),
    ("items/", {"name": "Kit", "type": "bundle"}, "bundle: is required for an item of type bundle"),
    ("opportunities/", {"estimated_close_date": "2026-05-01", "name": "Deal", "client_company_id": "x"},
     "estimated_close_date: '2026-05-01' is not an ISO-8601 date-time with an offset"),
    ("custom/fields/", {"entity_type": "client_company", "display_name": "region", "field_type": "text"},
     "display_name: a client_company custom field named 'region' already exists"),
])
def test_bad_bodies_are_400_naming_the_field(api: Api, path: str, body: dict[str, Any], message: str) -> None:
    assert error_of(api.post(path, body)) == (400, message)


@pytest.mark.parametrize("resource", ["pipelines", "users", "documents"])
def test_resources_the_api_cannot_create_answer_405(api: Api, resource: str) -> None:
    assert error_of(api.post(f"{resource}/", {"name": "X"})) == (
        405, f"POST is not allowed on /v2/{resource}/ (allowed: GET)")


def test_invalid_json_is_400(api: Api) -> None:
    response = requests.post(f"{api.url}/client/companies/", data=b"{not json",
                             headers={"Authorization": f"Bearer {api.token}"}, timeout=10)
    assert error_of(response) == (400, "body: is not valid JSON")


def test_opportunity_stage_must_belong_to_its_pipeline_and_contacts_to_its_client(api: Api) -> None:
    pipelines = {p["name"]: p for p in api.all("pipelines")}
    contacts = api.all("client/users")
    client_id = contacts[0]["client_company_id"]
    stranger = next(c for c in contacts if c["client_company_id"] != client_id)
    renewal_stage = pipelines["Renewals"]["stages"][0]["id"]

    wrong_stage = api.post("opportunities/", {"name": "Deal", "client_company_id": client_id,
                                              "opportunity_pipeline_stage_id": renewal_stage})
    wrong_contact = api.post("opportunities/", {"name": "Deal", "client_company_id": client_id,
                                                "linked_client_user_ids": [contacts[0]["id"], stranger["id"]]})
    defaulted = api.post("opportunities/", {"name": "Deal", "client_company_id": client_id}).json()

    assert error_of(wrong_stage) == (400, f"opportunity_pipeline_stage_id: {renewal_stage!r} is not a stage of "
                                          f"pipeline 'Sales Pipeline'")
    assert error_of(wrong_contact) == (400, f"linked_client_user_ids[1]: client user {stranger['id']!r} does not "
                                            f"belong to client company {client_id!r}")
    assert defaulted["opportunity_pipeline_id"] == pipelines["Sales Pipeline"]["id"]
    assert defaulted["opportunity_pipeline_stage_id"] == pipelines["Sales Pipeline"]["stages"][0]["id"]


def test_moving_an_opportunity_to_another_pipeline_needs_a_stage_of_it(api: Api) -> None:
    pipelines = {p["name"]: p for p in api.all("pipelines")}
    opportunity = api.all("opportunities")[0]
    renewals = pipelines["Renewals"]

    alone = api.put(f"opportunities/{opportunity['id']}", {"opportunity_pipeline_id": renewals["id"]})
    together = api.put(f"opportunities/{opportunity['id']}", {
        "opportunity_pipeline_id": renewals["id"], "opportunity_pipeline_stage_id": renewals["stages"][2]["id"]})

    assert error_of(alone)[1].startswith("opportunity_pipeline_stage_id: ")
    assert together.status_code == 200
    assert together.json()["opportunity_pipeline_stage_id"] == renewals["stages"][2]["id"]


def test_bundles_cannot_nest_and_only_bundles_have_children(api: Api) -> None:
    items = api.all("items")
    bundle = next(i for i in items if i["type"] == "bundle")
    hardware = next(i for i in items if i["type"] == "hardware")

    nested = api.post("items/", {"name": "Kit", "type": "bundle", "bundle": {
        "pricing_level": "bundle", "children": [{"item_id": hardware["id"], "quantity": 1},
                                                {"item_id": bundle["id"], "quantity": 1}]}})
    on_hardware = api.put(f"items/{hardware['id']}", {"bundle": {
        "pricing_level": "bundle", "children": [{"item_id": hardware["id"], "quantity": 1}]}})

    assert error_of(nested) == (400, "bundle.children[1].item_id: a bundle cannot contain a bundle")
    assert error_of(on_hardware) == (400, "bundle: only items of type bundle have one (this one is hardware)")


def test_an_inactive_user_cannot_own_new_records(api: Api) -> None:
    inactive = next(u for u in api.all("users") if not u["is_active"])
    response = api.post("client/companies/", {"name": "Z Corp", "owner_user_id": inactive["id"]})
    assert error_of(response) == (400, f"owner_user_id: user {inactive['id']!r} is inactive")


def test_read_only_resources_refuse_updates(api: Api) -> None:
    user = api.all("users")[0]
    assert error_of(api.put(f"users/{user['id']}", {"first_name": "X"}))[0] == 405


# ----- documents ---------------------------------------------------------------------------------------

def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_seeded_documents_cover_every_status_and_line_type_and_both_bundle_levels(zomentum: ZomentumSandbox) -> None:
    documents = zomentum.state.records("documents")
    items = {i["id"]: i for i in zomentum.state.records("items")}
    lines = [line for d in documents for line in next(r for r in d["revisions"]
                                                      if r["id"] == d["current_revision_id"])["line_items"]]

    assert {d["status"] for d in documents} == set(DOCUMENT_STATUSES)
    assert {line["type"] for line in lines} == set(ITEM_TYPES)
    bundle_levels = {items[line["item_id"]]["bundle"]["pricing_level"] for line in lines if line["type"] == "bundle"}
    assert bundle_levels == {"bundle", "individual"}
    assert any(d["opportunity_id"] is None for d in documents)
    assert any(len(d["revisions"]) == 2 for d in documents)


def test_the_bundle_level_showcase_bundle_is_100_over_three_children_on_a_won_document(
        zomentum: ZomentumSandbox, api: Api) -> None:
    bundle = next(i for i in api.all("items") if i["name"] == "New Hire Onboarding Bundle")
    document = next(d for d in zomentum.state.records("documents")
                    if d["status"] == "won" and any(line["item_id"] == bundle["id"]
                                                    for line in d["revisions"][-1]["line_items"]))

    rows = csv_rows(api.get(f"documents/{document['id']}/revisions/{document['current_revision_id']}"
                            f"/downloadproducts/").text)

    bundle_row = next(r for r in rows if r["item_id"] == bundle["id"])
    children = [r for r in rows if r["parent_line_id"] == bundle_row["line_id"]]
    assert bundle["bundle"]["pricing_level"] == "bundle"
    assert (bundle_row["quantity"], bundle_row["sell_price"], bundle_row["parent_line_id"]) == ("1", "100.00", "")
    assert [(c["quantity"], c["sell_price"]) for c in children] == [("1", "0.00")] * 3
    assert [c["item_id"] for c in children] == [c["item_id"] for c in bundle["bundle"]["children"]]


def test_line_item_csv_has_the_columns_children_after_their_bundle_and_sums_to_the_total(
        zomentum: ZomentumSandbox, api: Api) -> None:
    for document in api.all("documents"):
        response = api.get(f"documents/{document['id']}/revisions/{document['current_revision_id']}/downloadproducts/")
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.text.splitlines()[0] == ",".join(LINE_ITEM_COLUMNS)
        rows = csv_rows(response.text)
        total = sum(Decimal(r["quantity"]) * Decimal(r["sell_price"]) + Decimal(r["setup_price"])
                    - Decimal(r["discount"]) for r in rows)
        assert total == Decimal(str(document["total"])).quantize(Decimal("0.01"))
        current_bundle = None
        for row in rows:
            if row["parent_line_id"]:
                assert row["parent_line_id"] == current_bundle
            else:
                current_bundle = row["line_id"] if row["type"] == "bundle" else None


def test_individual_level_bundle_prices_its_children_with_absolute_quantities(api: Api) -> None:
    bundle = next(i for i in api.all("items") if i["name"] == "Secure Workstation Bundle")
    per_bundle = {c["item_id"]: (Decimal(str(c["quantity"])), Decimal(str(c["sell_price"])))
                  for c in bundle["bundle"]["children"]}
    for document in api.all("documents"):
        rows = csv_rows(api.get(f"documents/{document['id']}/revisions/{document['current_revision_id']}"
                                f"/downloadproducts/").text)
        for row in (r for r in rows if r["item_id"] == bundle["id"]):
            children = [r for r in rows if r["parent_line_id"] == row["line_id"]]
            assert row["sell_price"] == "0.00"
            expected = {item_id: (quantity * Decimal(row["quantity"]), price)
                        for item_id, (quantity, price) in per_bundle.items()}
            assert {c["item_id"]: (Decimal(c["quantity"]), Decimal(c["sell_price"])) for c in children} == expected


def test_earlier_revisions_stay_readable_and_unknown_revisions_are_404(zomentum: ZomentumSandbox, api: Api) -> None:
    document = next(d for d in zomentum.state.records("documents") if len(d["revisions"]) == 2)
    old, current = document["revisions"]
    assert current["id"] == document["current_revision_id"]

    old_rows = csv_rows(api.get(f"documents/{document['id']}/revisions/{old['id']}/downloadproducts/").text)

    assert [r["line_id"] for r in old_rows] == [line["line_id"] for line in old["line_items"]]
    assert len(old_rows) < len(current["line_items"])
    missing = api.get(f"documents/{document['id']}/revisions/nope/downloadproducts/")
    assert error_of(missing) == (404, f"no revision with id 'nope' of document {document['id']!r}")


def test_download_is_a_real_pdf(api: Api) -> None:
    document = api.all("documents")[0]
    response = api.get(f"documents/download/{document['id']}")

    assert response.headers["content-type"] == "application/pdf"
    pdf = response.content
    assert pdf.startswith(b"%PDF-1.") and pdf.rstrip().endswith(b"%%EOF")
    startxref = int(re.search(rb"startxref\s+(\d+)", pdf).group(1))
    assert pdf[startxref:].startswith(b"xref")
    offsets = [int(m.group(1)) for m in re.finditer(rb"(\d{10}) 00000 n ", pdf)]
    assert offsets and all(re.match(rb"\d+ 0 obj", pdf[offset:]) for offset in offsets)
    assert error_of(api.get("documents/download/nope"))[0] == 404


def test_marking_a_document_won_moves_updated_at_into_the_next_incremental_window(
        zomentum: ZomentumSandbox, api: Api) -> None:
    document = next(d for d in api.all("documents") if d["status"] == "sent")
    window_start = format_timestamp(zomentum.state.advance_clock(60))

    won = api.put(f"documents/{document['id']}", {"status": "won"}).json()

    assert won["status"] == "won" and won["updated_at"] >= window_start
    assert [d["id"] for d in api.all("documents", filters=f"updated_at:gte:{window_start};")] == [document["id"]]
    assert error_of(api.put(f"documents/{document['id']}", {"total": 1.0})) == (400, "total: is read-only")
    assert error_of(api.put(f"documents/{document['id']}", {"status": "signed"}))[0] == 400


def test_sandbox_creates_documents_for_entities_made_through_the_api(zomentum: ZomentumSandbox, api: Api) -> None:
    client = api.post("client/companies/", {"name": "Newly Pulled Ltd"}).json()
    contact = api.post("client/users/", {"name": {"first": "Ines", "last": "Haddad"}, "email": "ines@pulled.example",
                                         "client_company_id": client["id"]}).json()
    opportunity = api.post("opportunities/", {"name": "Pulled deal", "client_company_id": client["id"]}).json()
    items = {i["name"]: i for i in api.all("items")}
    body = {"client_company_id": client["id"], "opportunity_id": opportunity["id"], "client_user_id": contact["id"],
            "name": "Pulled quote", "line_items": [
                {"item_id": items["New Hire Onboarding Bundle"]["id"], "quantity": 2},
                {"item_id": items["Onboarding Hour"]["id"], "quantity": 1.5, "sell_price": 120, "discount": 10}]}

    created = requests.post(f"{zomentum.base_url}/_sandbox/documents", json=body, timeout=10)

    assert created.status_code == 201
    document = created.json()
    assert api.get(f"documents/{document['id']}").json() == document
    assert (document["status"], document["owner_user_id"]) == ("draft", zomentum.state.api_user_id)
    rows = csv_rows(api.get(f"documents/{document['id']}/revisions/{document['current_revision_id']}"
                            f"/downloadproducts/").text)
    assert [(r["type"], r["quantity"], r["sell_price"], bool(r["parent_line_id"])) for r in rows] == [
        ("bundle", "2", "100.00", False), ("software", "2", "0.00", True), ("service", "2", "0.00", True),
        ("labor", "2", "0.00", True), ("labor", "1.5", "120.00", False)]
    assert document["total"] == 2 * 100.00 + 1.5 * 120 - 10


@pytest.mark.parametrize(("change", "message"), [
    ({"line_items": []}, "line_items: must be a non-empty list"),
    ({"line_items": [{"item_id": "nope"}]}, "line_items[0].item_id: no item with id 'nope'"),
    ({"line_items": [{"item_id": "ITEM", "quantity": 0}]}, "line_items[0].quantity: must be greater than 0"),
    ({"client_company_id": "nope"}, "client_company_id: no client company with id 'nope'"),
    ({"opportunity_id": "OTHER_OPPORTUNITY"}, "opportunity_id: opportunity 'OTHER_OPPORTUNITY' belongs to another "
                                              "client company"),
])
def test_sandbox_document_creation_names_the_bad_field(
        zomentum: ZomentumSandbox, change: dict[str, Any], message: str) -> None:
    client = zomentum.state.records("client/companies")[0]
    other = next(o for o in zomentum.state.records("opportunities") if o["client_company_id"] != client["id"])
    item = zomentum.state.records("items")[0]
    body = {"client_company_id": client["id"], "line_items": [{"item_id": item["id"]}], **change}
    body = {k: (v.replace("OTHER_OPPORTUNITY", other["id"]) if isinstance(v, str) else v) for k, v in body.items()}
    if body["line_items"] and body["line_items"][0].get("item_id") == "ITEM":
        body["line_items"] = [{**body["line_items"][0], "item_id": item["id"]}]
    message = message.replace("OTHER_OPPORTUNITY", other["id"])

    response = requests.post(f"{zomentum.base_url}/_sandbox/documents", json=body, timeout=10)

    assert error_of(response) == (400, message)


def test_a_new_revision_becomes_current_and_moves_updated_at(zomentum: ZomentumSandbox, api: Api) -> None:
    document = api.all("documents")[0]
    item = next(i for i in api.all("items") if i["type"] == "hardware")
    response = requests.post(f"{zomentum.base_url}/_sandbox/documents/{document['id']}/revisions",
                             json={"line_items": [{"item_id": item["id"], "quantity": 4}]}, timeout=10)

    revised = response.json()
    assert response.status_code == 201
    assert revised["current_revision_id"] != document["current_revision_id"]
    assert revised["updated_at"] > document["updated_at"]
    assert revised["total"] == round(4 * item["pricing"][0]["sell_price"], 2)


# ----- rate limit --------------------------------------------------------------------------------------

def test_rate_limit_per_token_answers_429_with_retry_after_until_the_window_passes(
        zomentum: ZomentumSandbox, api: Api) -> None:
    zomentum.state.set_knobs(rate_limit=3, rate_limit_window_seconds=60)
    statuses = [api.get("users").status_code for _ in range(4)]

    limited = api.get("users")
    other_token = Api(zomentum)  # a new token invalidates the old one and has its own budget

    assert statuses == [200, 200, 200, 429]
    assert error_of(limited) == (429, "rate limit of 3 requests per 60 s exceeded")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert other_token.get("users").status_code == 200
    zomentum.state.advance_clock(61)
    assert [other_token.get("users").status_code for _ in range(3)] == [200, 200, 200]


# ----- seed and control surface ------------------------------------------------------------------------

def test_seed_overlaps_the_kaseya_world_and_has_zomentum_only_records(zomentum: ZomentumSandbox) -> None:
    world = build_world(7, "small", now=zomentum.state.now())
    state = zomentum.state
    users = state.records("users")
    employee_emails = [e.email for e in world.employees]
    clients = state.records("client/companies")
    company_names = {c.name for c in world.companies}
    contact_emails = {p.email for c in world.companies for p in c.contacts}
    part_numbers = {p.part_number for p in world.products}
    items = state.records("items")

    assert {u["email"] for u in users} & set(employee_emails) == set(employee_emails[: len(employee_emails) // 2])
    assert len(users) == len(employee_emails) // 2 + 3
    assert any(not u["is_active"] for u in users)
    assert next(u for u in users if u["email"] == API_USER_EMAIL)["id"] == state.api_user_id
    matched = [c for c in clients if c["name"] in company_names]
    assert len(matched) == len(world.companies) // 10 and len(clients) > len(matched)
    assert any(c["email"] in contact_emails for c in state.records("client/users"))
    assert any(c["email"] not in contact_emails for c in state.records("client/users"))
    assert len([i for i in items if i["manufacturer_part_number"] in part_numbers]) == len(world.products) // 10
    assert any(i["manufacturer_part_number"] is None for i in items)
    assert {i["type"] for i in items} == set(ITEM_TYPES)


def test_pipelines_have_the_fixed_names_and_stage_kinds(api: Api) -> None:
    pipelines = [(p["name"], p["is_default"], [(s["name"], s["kind"]) for s in sorted(p["stages"],
                                                                                     key=lambda s: s["order"])])
                 for p in api.all("pipelines")]
    assert pipelines == [
        ("Sales Pipeline", True, [("New", "open"), ("Qualified", "open"), ("Proposal Sent", "open"),
                                  ("Negotiation", "open"), ("Won", "won"), ("Lost", "lost")]),
        ("Renewals", False, [("Renewal Due", "open"), ("Renewal Quoted", "open"), ("Renewed", "won"),
                             ("Churned", "lost")]),
    ]


def test_same_seed_gives_the_same_account_and_another_seed_another() -> None:
    def shape(state: ZomentumState) -> list[tuple[str, str]]:
        return [(r["id"], r.get("name") or r.get("email")) for resource in ("users", "client/companies", "items",
                                                                           "documents")
                for r in state.records(resource)]

    assert shape(ZomentumState(11, "small")) == shape(ZomentumState(11, "small"))
    assert shape(ZomentumState(11, "small")) != shape(ZomentumState(12, "small"))


def test_reset_restores_records_knobs_clock_tokens_and_log(zomentum: ZomentumSandbox, api: Api) -> None:
    before = zomentum.state.records("client/companies")
    api.post("client/companies/", {"name": "Temporary Ltd"})
    zomentum.state.set_knobs(rate_limit=5)
    zomentum.state.advance_clock(3600)

    reset = requests.post(f"{zomentum.base_url}/_sandbox/reset", timeout=10)

    assert reset.json() == {"seed": 7, "scale": "small"}
    assert [c["id"] for c in zomentum.state.records("client/companies")] == [c["id"] for c in before]
    assert zomentum.state.knobs()["rate_limit"] is None
    assert abs((zomentum.state.now() - parse_timestamp(before[0]["created_at"])).days) <= 91
    assert zomentum.state.requests() == []
    assert api.get("users").status_code == 401  # tokens issued before the reset are gone


def test_reset_can_switch_seed_and_refuses_unknown_scales(zomentum: ZomentumSandbox) -> None:
    seven = [c["name"] for c in zomentum.state.records("client/companies")]

    switched = requests.post(f"{zomentum.base_url}/_sandbox/reset", json={"seed": 9}, timeout=10)
    bad_scale = requests.post(f"{zomentum.base_url}/_sandbox/reset", json={"scale": "huge"}, timeout=10)

    assert switched.json() == {"seed": 9, "scale": "small"}
    assert [c["name"] for c in zomentum.state.records("client/companies")] != seven
    assert error_of(bad_scale) == (400, "scale: 'huge' is not one of small, small_recent, medium, medium_recent, "
                                        "large, small_5y, medium_5y")


def test_control_surface_over_http(zomentum: ZomentumSandbox, api: Api) -> None:
    base = f"{zomentum.base_url}/_sandbox"
    api.get("users")

    log = requests.get(f"{base}/requests", timeout=10).json()
    knobs = requests.post(f"{base}/knobs", json={"rate_limit": 100}, timeout=10).json()
    bad_knob = requests.post(f"{base}/knobs", json={"rate_limt": 100}, timeout=10)
    before = parse_timestamp(requests.get(f"{base}/clock", timeout=10).json()["now"])
    after = parse_timestamp(requests.post(f"{base}/clock/advance", json={"seconds": 7200}, timeout=10).json()["now"])
    records = requests.get(f"{base}/records/client/companies", timeout=10).json()
    cleared = requests.delete(f"{base}/requests", timeout=10)

    assert [(e["method"], e["route"], e["status"], e["user"]) for e in log] == [
        ("GET", "/v2/users", 200, API_USER_EMAIL)]
    assert knobs == {"access_token_lifetime_seconds": 86400.0, "rate_limit": 100, "rate_limit_window_seconds": 60.0}
    assert error_of(bad_knob)[1].startswith("rate_limt: unknown knob")
    assert timedelta(hours=2) <= after - before < timedelta(hours=2, minutes=1)
    assert records == zomentum.state.records("client/companies")
    assert cleared.status_code == 204 and zomentum.state.requests() == []
    assert requests.get(f"{base}/openapi.yaml", timeout=10).text.startswith("openapi: 3.1.0")
    assert requests.get(f"{base}/", timeout=10).json()["api"] == "/v2"
