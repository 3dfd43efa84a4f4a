"""The sandbox's OpenAPI document is the assumed Zomentum contract in one machine-readable place.

These tests hold it to three things: the field names of `zomentum-api-notes.md`, the sandbox that serves
the contract (routes, validation rules, live answers), and the client that relies on it.
"""

from __future__ import annotations

import typing
from functools import cache
from importlib import resources
from typing import Any

import pytest
import requests
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Route

from zk_pipelines.clients import zomentum_models
from zk_pipelines.sandbox.zomentum import ZomentumSandbox, create_zomentum_app
from zk_pipelines.sandbox.zomentum import schema as sandbox_schema
from zk_pipelines.sandbox.zomentum.app import api_routes

DOC_URI = "urn:zk:zomentum-openapi"

# Field names exactly as zomentum-api-notes.md gives them (known and assumed parts).
NOTES_FIELDS: dict[str, set[str]] = {
    "ClientCompany": {"id", "name", "company_type", "website", "phone", "billing_address", "shipping_addresses",
                      "owner_user_id", "custom_fields", "created_at", "updated_at"},
    "Address": {"address_line_1", "address_line_2", "city", "state", "pincode", "country", "phone"},
    "ClientUser": {"id", "name", "email", "phone", "job_title", "client_company_id", "contact_type",
                   "custom_fields", "created_at", "updated_at"},
    "PersonName": {"first", "last"},
    "Opportunity": {"id", "name", "client_company_id", "primary_client_user_id", "linked_client_user_ids",
                    "owner_user_id", "opportunity_pipeline_id", "opportunity_pipeline_stage_id", "client_po_number",
                    "estimated_close_date", "estimated_value", "close_probability", "custom_fields", "created_at",
                    "updated_at"},
    "Pipeline": {"id", "name", "is_default", "stages", "created_at", "updated_at"},
    "PipelineStage": {"id", "name", "order", "probability", "kind"},
    "Item": {"id", "name", "description", "type", "manufacturer_part_number", "category", "uom", "pricing",
             "bundle", "custom_fields", "created_at", "updated_at"},
    "PricingOption": {"name", "billing_period", "sell_price", "setup_price", "cost_price", "supplier_name",
                      "supplier_sku"},
    "Bundle": {"pricing_level", "children"},
    "BundleChild": {"item_id", "quantity", "sell_price"},
    "Document": {"id", "name", "status", "client_company_id", "client_user_id", "opportunity_id", "owner_user_id",
                 "current_revision_id", "total", "expiry_date", "custom_fields", "created_at", "updated_at"},
    "User": {"id", "first_name", "last_name", "email", "is_active", "created_at", "updated_at"},
    "CustomFieldCreate": {"entity_type", "display_name", "field_type"},
    "CustomFieldValue": {"id", "values"},
    "Error": {"status_code", "message"},
    "CountMap": {"all"},
    "DocumentList": {"data", "filtered_count_map"},
}
NOTES_ENUMS: dict[tuple[str, str], set[str]] = {
    ("Item", "type"): {"hardware", "software", "service", "labor", "bundle"},
    ("Bundle", "pricing_level"): {"bundle", "individual"},
    ("PipelineStage", "kind"): {"open", "won", "lost"},
    ("ClientUser", "contact_type"): {"primary_contact", "secondary_contact"},
    ("Document", "status"): {"draft", "pending_approval", "approved", "sent", "viewed", "accepted", "won", "lost",
                             "expired"},
    ("CustomFieldCreate", "entity_type"): {"client_company", "client_user", "opportunity", "item", "document"},
}
NOTES_CSV_COLUMNS = ["line_id", "item_id", "name", "description", "type", "quantity", "sell_price", "cost_price",
                     "discount", "setup_price", "billing_period", "parent_line_id"]

# resource path -> (record schema, write schema, create schema, client TypedDict)
RESOURCE_SCHEMAS: dict[str, tuple[str, str | None, str | None, type | None]] = {
    "client/companies": ("ClientCompany", "ClientCompanyWrite", "ClientCompanyCreate", zomentum_models.ClientCompany),
    "client/users": ("ClientUser", "ClientUserWrite", "ClientUserCreate", zomentum_models.ClientUser),
    "opportunities": ("Opportunity", "OpportunityWrite", "OpportunityCreate", zomentum_models.Opportunity),
    "pipelines": ("Pipeline", None, None, None),
    "items": ("Item", "ItemWrite", "ItemCreate", zomentum_models.Item),
    "documents": ("Document", "DocumentWrite", None, zomentum_models.Document),
    "users": ("User", None, None, zomentum_models.User),
    "custom/fields": ("CustomField", None, "CustomFieldCreate", None),
}


@cache
def document() -> dict[str, Any]:
    text = resources.files("zk_pipelines.sandbox.zomentum").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def schemas() -> dict[str, Any]:
    return document()["components"]["schemas"]


def validator(name: str) -> Draft202012Validator:
    registry = Registry().with_resource(DOC_URI, Resource.from_contents(document(), default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"{DOC_URI}#/components/schemas/{name}"}, registry=registry)


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = schemas()[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def properties(name: str) -> dict[str, Any]:
    schema = schemas()[name]
    for part in schema.get("allOf", []):
        schema = {**resolve(part), **{k: v for k, v in schema.items() if k != "allOf"}}
    return schema["properties"]


def enum_of(name: str, field: str) -> set[str]:
    return {value for value in resolve(properties(name)[field])["enum"] if value is not None}


def assert_valid(name: str, instance: Any) -> None:
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


# ----- the document itself and the notes ------------------------------------------------------------

def test_is_openapi_3_1_with_valid_json_schemas() -> None:
    assert document()["openapi"] == "3.1.0"
    for name, schema in schemas().items():
        Draft202012Validator.check_schema(schema)
        assert validator(name).schema  # every component resolves
    assert document()["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


@pytest.mark.parametrize(("schema_name", "fields"), sorted(NOTES_FIELDS.items()))
def test_schemas_carry_exactly_the_field_names_of_the_notes(schema_name: str, fields: set[str]) -> None:
    assert set(properties(schema_name)) >= fields
    extra = set(properties(schema_name)) - fields
    assert extra <= {"token_type", "expires_in"}, f"{schema_name} has fields the notes do not name: {extra}"


@pytest.mark.parametrize(("where", "values"), sorted(NOTES_ENUMS.items()))
def test_enums_are_the_notes_values(where: tuple[str, str], values: set[str]) -> None:
    assert enum_of(*where) == values


def test_line_item_csv_columns_are_the_notes_columns_everywhere() -> None:
    operation = document()["paths"]["/v2/documents/{document_id}/revisions/{revision_id}/downloadproducts/"]["get"]
    assert operation["x-csv-columns"] == NOTES_CSV_COLUMNS
    assert list(sandbox_schema.LINE_ITEM_COLUMNS) == NOTES_CSV_COLUMNS
    assert list(zomentum_models.LINE_ITEM_COLUMNS) == NOTES_CSV_COLUMNS


def test_page_limit_cap_is_documented_and_shared() -> None:
    limit = document()["components"]["parameters"]["limit"]["schema"]
    assert limit["maximum"] == sandbox_schema.PAGE_LIMIT_MAX == zomentum_models.PAGE_LIMIT == 1000
    assert limit["default"] == sandbox_schema.PAGE_LIMIT_DEFAULT


# ----- the document and the sandbox agree ---------------------------------------------------------------

def test_api_paths_and_methods_are_the_sandbox_route_table() -> None:
    documented = {(method.upper(), path) for path, item in document()["paths"].items() if path.startswith("/v2/")
                  for method in item if method in {"get", "post", "put", "patch", "delete"}}
    assert documented == {(route.method, route.template) for route in api_routes()}


def test_sandbox_only_paths_are_the_control_routes(zomentum_sandbox: ZomentumSandbox) -> None:
    app = create_zomentum_app(zomentum_sandbox.state)
    served = {(method, route.path.replace(":path", "")) for route in app.routes
              if isinstance(route, Route) and route.path.startswith("/_sandbox/")
              for method in route.methods - {"HEAD"}}
    documented = {(method.upper(), path) for path, item in document()["paths"].items()
                  if path.startswith("/_sandbox/") for method in item if method != "parameters"}
    assert documented == served
    assert all(operation.get("x-sandbox-only") for path, item in document()["paths"].items()
               if path.startswith("/_sandbox/") for method, operation in item.items() if method != "parameters")


@pytest.mark.parametrize("resource", sorted(RESOURCE_SCHEMAS))
def test_record_and_write_schemas_match_the_sandbox_validation(resource: str) -> None:
    record, write, create, _ = RESOURCE_SCHEMAS[resource]
    spec = sandbox_schema.RESOURCES[resource]
    assert set(properties(record)) == spec.returned_fields
    assert set(schemas()[record]["required"]) == spec.returned_fields
    if write:
        assert set(properties(write)) == set(spec.fields)
    if create:
        assert set(schemas()[create]["required"]) == set(spec.required)
        assert "create" in spec.operations
    else:
        assert "create" not in spec.operations


@pytest.mark.parametrize(("where", "values"), [
    (("Item", "type"), sandbox_schema.ITEM_TYPES),
    (("Item", "uom"), sandbox_schema.UOMS),
    (("PricingOption", "billing_period"), sandbox_schema.BILLING_PERIODS),
    (("ClientCompany", "company_type"), sandbox_schema.COMPANY_TYPES),
    (("Document", "status"), sandbox_schema.DOCUMENT_STATUSES),
    (("CustomField", "field_type"), sandbox_schema.CUSTOM_FIELD_TYPES),
    (("CustomField", "entity_type"), sandbox_schema.CUSTOM_FIELD_ENTITY_TYPES),
    (("Bundle", "pricing_level"), sandbox_schema.BUNDLE_PRICING_LEVELS),
    (("PipelineStage", "kind"), sandbox_schema.STAGE_KINDS),
])
def test_enums_match_the_sandbox(where: tuple[str, str], values: tuple[str, ...]) -> None:
    assert enum_of(*where) == set(values)


def test_every_answer_of_the_seeded_sandbox_fits_the_documented_schemas(zomentum: ZomentumSandbox) -> None:
    token = requests.get(f"{zomentum.api_url}/auth0/access_token", params={"refresh_token": zomentum.refresh_token},
                         timeout=10).json()
    assert_valid("AccessToken", token)
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    pipelines = zomentum.state.records("pipelines")
    lists = [(resource, {}) for resource in RESOURCE_SCHEMAS] + [("documents/zapier", {})] + [
        ("opportunities", {"opportunity_pipeline_id": p["id"]}) for p in pipelines]
    for resource, extra in lists:
        body = requests.get(f"{zomentum.api_url}/{resource}", headers=headers, timeout=10,
                            params={"limit": 1000, "count_query_flag": "true", **extra}).json()
        record_schema = RESOURCE_SCHEMAS["documents" if resource == "documents/zapier" else resource][0]
        assert_valid(f"{record_schema}List", body)
        assert body["data"], resource
        one = requests.get(f"{zomentum.api_url}/{resource.split('/zapier')[0]}/{body['data'][0]['id']}",
                           headers=headers, timeout=10).json()
        assert_valid(record_schema, one)


@pytest.mark.parametrize(("status", "call"), [
    (400, lambda api, h: requests.get(f"{api}/users", params={"page": "0"}, headers=h, timeout=10)),
    (401, lambda api, h: requests.get(f"{api}/users", timeout=10)),
    (404, lambda api, h: requests.get(f"{api}/users/nope", headers=h, timeout=10)),
    (405, lambda api, h: requests.put(f"{api}/pipelines/nope", json={}, headers=h, timeout=10)),
])
def test_error_answers_fit_the_error_schema(zomentum: ZomentumSandbox, status: int, call: Any) -> None:
    response = call(zomentum.api_url, {"Authorization": f"Bearer {zomentum.state.issue_access_token()}"})
    assert response.status_code == status
    assert_valid("Error", response.json())


def test_429_answer_fits_the_documented_response(zomentum: ZomentumSandbox) -> None:
    zomentum.state.set_knobs(rate_limit=1)
    headers = {"Authorization": f"Bearer {zomentum.state.issue_access_token()}"}
    requests.get(f"{zomentum.api_url}/users", headers=headers, timeout=10)
    response = requests.get(f"{zomentum.api_url}/users", headers=headers, timeout=10)
    assert response.status_code == 429
    assert_valid("Error", response.json())
    documented = document()["components"]["responses"]["TooManyRequests"]["headers"]["Retry-After"]["schema"]
    assert documented["type"] == "integer" and int(response.headers["Retry-After"]) >= documented["minimum"]


# The bodies the notes say public client code sends: documented, accepted, answered as documented.
SEEN_BODIES = [
    ("client/companies/", "ClientCompanyCreate", "ClientCompany", lambda ids: {"name": "Seen Body Client LLC"}),
    ("client/users/", "ClientUserCreate", "ClientUser", lambda ids: {
        "name": {"first": "Ana", "last": "Silva"}, "client_company_id": ids["client"],
        "contact_type": "primary_contact"}),
    ("opportunities/", "OpportunityCreate", "Opportunity", lambda ids: {
        "name": "Seen body deal", "client_company_id": ids["client"], "linked_client_user_ids": [ids["contact"]],
        "opportunity_pipeline_id": ids["pipeline"], "opportunity_pipeline_stage_id": ids["stage"]}),
    ("items/", "ItemCreate", "Item", lambda ids: {
        "name": "Seen Body Service", "type": "service", "description": "Monthly care",
        "pricing": [{"name": "Monthly", "billing_period": "monthly", "sell_price": 49.0, "setup_price": 10.0}]}),
    ("custom/fields/", "CustomFieldCreate", "CustomField", lambda ids: {
        "entity_type": "document", "display_name": "Kaseya Quote ID", "field_type": "text"}),
]


@pytest.mark.parametrize(("path", "request_schema", "record_schema", "make"), SEEN_BODIES,
                         ids=[body[0] for body in SEEN_BODIES])
def test_bodies_seen_in_public_clients_are_documented_and_accepted(
        zomentum: ZomentumSandbox, path: str, request_schema: str, record_schema: str, make: Any) -> None:
    contact = zomentum.state.records("client/users")[0]
    pipeline = next(p for p in zomentum.state.records("pipelines") if not p["is_default"])
    body = make({"client": contact["client_company_id"], "contact": contact["id"], "pipeline": pipeline["id"],
                 "stage": pipeline["stages"][1]["id"]})
    assert_valid(request_schema, body)

    response = requests.post(f"{zomentum.api_url}/{path}", json=body, timeout=10,
                             headers={"Authorization": f"Bearer {zomentum.state.issue_access_token()}"})

    assert response.status_code == 201, response.text
    assert_valid(record_schema, response.json())


def test_document_custom_field_update_seen_in_public_clients(zomentum: ZomentumSandbox) -> None:
    field = next(f for f in zomentum.state.records("custom/fields") if f["entity_type"] == "document")
    document_id = zomentum.state.records("documents")[0]["id"]
    body = {"custom_fields": [{"id": field["id"], "values": ["PO-778"]}]}
    assert_valid("DocumentWrite", body)

    response = requests.put(f"{zomentum.api_url}/documents/{document_id}", json=body, timeout=10,
                            headers={"Authorization": f"Bearer {zomentum.state.issue_access_token()}"})

    assert response.status_code == 200
    assert_valid("Document", response.json())
    assert response.json()["custom_fields"] == body["custom_fields"]


def test_sandbox_document_creation_body_is_documented(zomentum: ZomentumSandbox) -> None:
    client = zomentum.state.records("client/companies")[0]
    item = zomentum.state.records("items")[0]
    body = {"client_company_id": client["id"], "line_items": [{"item_id": item["id"], "quantity": 2}]}
    assert_valid("SandboxDocumentCreate", body)
    response = requests.post(f"{zomentum.base_url}/_sandbox/documents", json=body, timeout=10)
    assert response.status_code == 201
    assert_valid("Document", response.json())


# ----- the document and the client agree ----------------------------------------------------------------

@pytest.mark.parametrize("resource", [r for r, (_, _, _, typed) in RESOURCE_SCHEMAS.items() if typed])
def test_client_typed_records_have_the_documented_fields(resource: str) -> None:
    record, _, _, typed = RESOURCE_SCHEMAS[resource]
    assert set(typing.get_type_hints(typed)) == set(properties(record))


def test_client_constants_match_the_document() -> None:
    assert set(zomentum_models.DOCUMENT_STATUSES) == enum_of("Document", "status")
    assert set(zomentum_models.CUSTOM_FIELD_ENTITY_TYPES) == enum_of("CustomField", "entity_type")
    assert set(zomentum_models.CUSTOM_FIELD_TYPES) == enum_of("CustomField", "field_type")
    assert set(typing.get_type_hints(zomentum_models.Address)) == set(properties("Address"))
    assert {f.name for f in zomentum_models.PipelineStage.__dataclass_fields__.values()} == set(
        properties("PipelineStage"))
    v2_paths = {path for path in document()["paths"] if path.startswith("/v2/")}
    for resource in (zomentum_models.CLIENTS, zomentum_models.CLIENT_USERS, zomentum_models.OPPORTUNITIES,
                     zomentum_models.PIPELINES, zomentum_models.ITEMS, zomentum_models.DOCUMENTS,
                     zomentum_models.DOCUMENTS_ZAPIER, zomentum_models.USERS, zomentum_models.CUSTOM_FIELDS):
        assert f"/v2/{resource}" in v2_paths
    assert f"/v2/{zomentum_models.REFRESH_PATH}" in v2_paths
    assert f"/v2/{zomentum_models.line_items_path('{document_id}', '{revision_id}')}" in v2_paths
    assert f"/v2/{zomentum_models.download_path('{document_id}')}" in v2_paths
    assert f"/v2/{zomentum_models.create_path(zomentum_models.CLIENTS)}" in v2_paths
