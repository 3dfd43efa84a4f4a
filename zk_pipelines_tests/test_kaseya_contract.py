"""The sandbox holds to Kaseya's own contract (`kaseya-bms-openapi.json`): every operation it serves that the
contract publishes answers, with real data, exactly the contract's DTOs (every property, no other), and the
request bodies the tests send are valid contract bodies. The endpoints the contract lacks answer with the
contract's own DTOs. And the validator itself catches what it must."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from zk_pipelines.sandbox.kaseya import dto
from zk_pipelines.sandbox.kaseya.app import ROUTES
from zk_pipelines.sandbox.kaseya.records import LOOKUP_TABLES, Tenant
from zk_pipelines_tests.contract import (
    contract,
    find_operation,
    has_operation,
    schema_properties,
    validate_request_body,
    validate_response,
    validate_schema,
)
from zk_pipelines_tests.fixtures.kaseya import KaseyaHttp

PUBLISHED = [r for r in ROUTES if r.published]
UNPUBLISHED = [r for r in ROUTES if not r.published]


def first(mapping):
    return next(iter(mapping.values()))


def _account_body(tenant: Tenant) -> dict[str, Any]:
    account = first(tenant.accounts)
    return {"AccountName": "Contract Check GmbH", "AccountTypeId": account.account_type_id,
            "BusinessTypeId": account.business_type_id, "AccountManagerId": account.account_manager_id,
            "IsActive": True, "Website": "https://contract.example", "CreditLimit": 1000, "NetDays": 30,
            "RouteInvoiceToParent": False}


def _opportunity_body(tenant: Tenant) -> dict[str, Any]:
    account = first(tenant.accounts)
    return {"Subject": "Contract check", "StatusId": tenant.status_named("Negotiation").id, "AccountId": account.id,
            "AccountLocationId": account.main_location.id, "TypeId": tenant.lookup("OpportunityType").rows[1].id,
            "Probability": 75.0, "RatingId": tenant.lookup("OpportunityRating").rows[0].id,
            "LeadSourceId": tenant.lookup("LeadSource").rows[0].id,
            "SalesRepresentativeUserId": account.account_manager_id, "Amount": 1999.99,
            "Description": "Checked against the contract", "CloseDate": "2030-03-31T00:00:00"}


def _line_body(tenant: Tenant) -> dict[str, Any]:
    product = first(tenant.products)
    return {"Id": product.id, "Name": "Line", "Description": "Checked", "UnitPrice": 10.5, "UnitCost": 6,
            "Quantity": 2, "Margin": 42.86, "MarginType": 1, "Discount": 0, "Taxable": True}


# One real call per published operation: (path, request keyword arguments). Builders may call the API first.
Example = Callable[[Tenant, KaseyaHttp], tuple[str, dict[str, Any]]]


def _note_then_list(tenant: Tenant, http: KaseyaHttp) -> tuple[str, dict[str, Any]]:
    opportunity = first(tenant.opportunities)
    http.result("POST", f"/v2/crm/opportunities/{opportunity.id}/notes", json={"Note": "for the list"})
    return f"/v2/crm/opportunities/{opportunity.id}/notes", {}


def _service(tenant: Tenant) -> int:
    return first(tenant.services).id


def _quote_and_line(tenant: Tenant) -> tuple[int, int]:
    quote = first(tenant.quotes)
    return quote.id, quote.line_items[0].id


EXAMPLES: dict[str, Example] = {
    "POST /v2/security/authenticate": lambda t, h: ("/v2/security/authenticate", {"data": h.login_form()}),
    "POST /v2/security/refreshtoken": lambda t, h: ("/v2/security/refreshtoken", {"data": {
        "AccessToken": h.access_token, "RefreshToken": h.refresh_token}}),
    "GET /v2/security/userinfo": lambda t, h: ("/v2/security/userinfo", {}),
    "GET /v2/crm/accounts/summary": lambda t, h: ("/v2/crm/accounts/summary", {"params": {"PageSize": 100}}),
    "GET /v2/crm/accounts/summary/{id}": lambda t, h: (f"/v2/crm/accounts/summary/{first(t.accounts).id}", {}),
    "GET /v2/crm/accounts/{accountId}/locations/{locationId}": lambda t, h: (
        f"/v2/crm/accounts/{first(t.accounts).id}/locations/{first(t.accounts).main_location.id}", {}),
    "GET /v2/crm/accounts/{accountId}/locations/lookup": lambda t, h: (
        f"/v2/crm/accounts/{first(t.accounts).id}/locations/lookup", {}),
    "GET /v2/crm/accounts/lookup": lambda t, h: ("/v2/crm/accounts/lookup", {"params": {"PageSize": 100}}),
    "GET /v2/system/accounttypes/lookup": lambda t, h: ("/v2/system/accounttypes/lookup", {}),
    "GET /v2/crm/contacts/summary": lambda t, h: ("/v2/crm/contacts/summary", {"params": {"PageSize": 100}}),
    "GET /v2/crm/contacts/summary/{id}": lambda t, h: (f"/v2/crm/contacts/summary/{first(t.contacts).id}", {}),
    "GET /v2/crm/contacts/search": lambda t, h: ("/v2/crm/contacts/search", {"params": {"PageSize": 100}}),
    "GET /v2/crm/opportunities": lambda t, h: ("/v2/crm/opportunities", {"params": {"PageSize": 100}}),
    "GET /v2/crm/opportunities/{id}": lambda t, h: (f"/v2/crm/opportunities/{first(t.opportunities).id}", {}),
    "GET /v2/crm/opportunities/{id}/notes": _note_then_list,
    "GET /v2/crm/opportunities/statuses/Lookup": lambda t, h: ("/v2/crm/opportunities/statuses/Lookup", {}),
    "GET /v2/inventory/products/searchselect": lambda t, h: ("/v2/inventory/products/searchselect",
                                                             {"params": {"PageSize": 100}}),
    "GET /v2/inventory/products/{productIndexId}/pricingLevels": lambda t, h: (
        f"/v2/inventory/products/{first(t.products).id}/pricingLevels", {}),
    "GET /v2/inventory/products/{productIndexId}/suppliers/lookup": lambda t, h: (
        f"/v2/inventory/products/{first(t.products).id}/suppliers/lookup", {}),
    "GET /v2/inventory/products/{productIndexId}/defaultcost": lambda t, h: (
        f"/v2/inventory/products/{first(t.products).id}/defaultcost", {}),
    "GET /v2/inventory/products/categories/lookup": lambda t, h: ("/v2/inventory/products/categories/lookup", {}),
    "GET /v2/inventory/warehouses/lookup": lambda t, h: ("/v2/inventory/warehouses/lookup", {}),
    "GET /v2/hr/employees/lookup": lambda t, h: ("/v2/hr/employees/lookup", {}),
    "GET /v2/hr/employees/searchselect": lambda t, h: ("/v2/hr/employees/searchselect", {}),
    "GET /v2/crm/quotes/summary": lambda t, h: ("/v2/crm/quotes/summary", {}),
    "GET /v2/crm/quotes/{quotationId}": lambda t, h: (f"/v2/crm/quotes/{first(t.quotes).id}", {}),
    "GET /v2/crm/quotes/{quotationId}/lineItems/{lineItemId}": lambda t, h: (
        "/v2/crm/quotes/{}/lineItems/{}".format(*_quote_and_line(t)), {}),
    "GET /v2/admin/finance/services/lookup": lambda t, h: ("/v2/admin/finance/services/lookup", {}),
    "GET /v2/admin/finance/services/{serviceId}": lambda t, h: (f"/v2/admin/finance/services/{_service(t)}", {}),
    "GET /v2/system/lookup/{tableName}": lambda t, h: ("/v2/system/lookup/OpportunityType", {}),
    "GET /v2/finance/contracts/summary": lambda t, h: ("/v2/finance/contracts/summary", {"params": {"PageSize": 100}}),
    "GET /v2/timelogs": lambda t, h: ("/v2/timelogs", {"params": {"PageSize": 100}}),
    "POST /v2/crm/accounts": lambda t, h: ("/v2/crm/accounts", {"json": {**_account_body(t), "Locations": [
        {"LocationName": "Head Office", "IsMain": True, "IsActive": True, "Addresses": [
            {"Address1": "1 Contract Way", "City": "Berlin", "Country": "DE", "IsMain": True, "IsBilling": True}]}]}}),
    "PUT /v2/crm/accounts/{id}": lambda t, h: (f"/v2/crm/accounts/{first(t.accounts).id}",
                                               {"json": _account_body(t)}),
    "POST /v2/crm/contacts/summary": lambda t, h: ("/v2/crm/contacts/summary", {"json": {
        "FirstName": "Ada", "LastName": "Lovelace", "AccountId": first(t.accounts).id,
        "LocationId": first(t.accounts).main_location.id,
        "Emails": [{"EmailAddress": "ada@contract.example", "EmailTypeId": t.lookup("EmailType").rows[0].id,
                    "IsDefault": True}],
        "Phones": [{"PhoneNumber": "+44 20 7946 0000", "PhoneTypeId": t.lookup("PhoneType").rows[0].id,
                    "IsDefault": True}]}}),
    "PUT /v2/crm/contacts/{id}": lambda t, h: (f"/v2/crm/contacts/{first(t.contacts).id}", {"json": {
        "AccountId": first(t.contacts).account_id, "LocationId": first(t.contacts).location_id, "FirstName": "Ada",
        "LastName": "Lovelace", "JobTitle": "Analyst", "Poc": True, "IsActive": True, "ReceiveInvoices": True,
        "BillByContact": False}}),
    "POST /v2/crm/opportunities": lambda t, h: ("/v2/crm/opportunities", {"json": _opportunity_body(t)}),
    "PUT /v2/crm/opportunities/{id}": lambda t, h: (f"/v2/crm/opportunities/{first(t.opportunities).id}",
                                                    {"json": _opportunity_body(t)}),
    "POST /v2/crm/opportunities/{id}/notes": lambda t, h: (
        f"/v2/crm/opportunities/{first(t.opportunities).id}/notes", {"json": {"Note": "Won in Zomentum"}}),
    "POST /v2/crm/quotes/{quotationId}/lineItems/{itemTypeId}/{distributerTypeId}": lambda t, h: (
        f"/v2/crm/quotes/{first(t.quotes).id}/lineItems/1/0", {"json": _line_body(t)}),
    "PUT /v2/crm/quotes/{quotationId}/lineItems/{lineItemId}": lambda t, h: (
        "/v2/crm/quotes/{}/lineItems/{}".format(*_quote_and_line(t)), {"json": _line_body(t)}),
    "POST /v2/admin/finance/services/services": lambda t, h: ("/v2/admin/finance/services/services", {"json": {
        "Id": 0, "Name": "Contract Service", "Description": "Checked", "UnitCost": 10, "UnitPrice": 25,
        "CategoryId": first(t.categories).id, "IsActive": True, "IsTaxable": False}}),
    "POST /v2/inventory/products/categories": lambda t, h: ("/v2/inventory/products/categories", {"json": {
        "Name": "Contract Category", "Description": "Checked", "IsActive": True}}),
}


def test_every_published_route_is_in_the_contract_and_every_unpublished_one_is_not():
    assert [r.label for r in PUBLISHED if not has_operation(r.method, r.template)] == []
    assert [r.label for r in UNPUBLISHED if has_operation(r.method, r.template)] == []


def test_every_published_route_has_a_contract_example():
    assert sorted(EXAMPLES) == sorted(r.label for r in PUBLISHED)


def _call(http: KaseyaHttp, tenant: Tenant, method: str, label: str) -> tuple[dict[str, Any], Any]:
    path, kwargs = EXAMPLES[label](tenant, http)
    response = http.call(method, path, **kwargs)
    payload = response.json()
    assert response.status_code == 200 and payload["success"] is True, payload
    return kwargs, payload


@pytest.mark.parametrize("route", PUBLISHED, ids=lambda r: r.label)
def test_published_operations_answer_exactly_the_contracts_dto(kaseya, kaseya_http, route):
    _, payload = _call(kaseya_http, kaseya.state.tenant, route.method, route.label)
    if isinstance(payload["result"], list):
        assert payload["result"], "an empty list proves nothing about its rows"
    validate_response(route.method, route.template, payload, complete=True)


@pytest.mark.parametrize("route", [r for r in PUBLISHED if r.method in ("POST", "PUT")], ids=lambda r: r.label)
def test_request_bodies_sent_are_contract_bodies(kaseya, kaseya_http, route):
    kwargs, _ = _call(kaseya_http, kaseya.state.tenant, route.method, route.label)
    sent = kaseya.state.requests()[-1]
    assert sent["route"] == route.template
    validate_request_body(route.method, route.template, kwargs.get("json", kwargs.get("data")))
    if "json" in kwargs:
        assert sent["body"] == kwargs["json"]  # the log keeps the body as the client sent it


@pytest.mark.parametrize("table", list(LOOKUP_TABLES))
def test_every_lookup_table_answers_the_contracts_dto(kaseya_http, table):
    payload = kaseya_http.get(f"/v2/system/lookup/{table}").json()
    assert [row["name"] for row in payload["result"]] == list(LOOKUP_TABLES[table])
    validate_response("GET", "/v2/system/lookup/{tableName}", payload, complete=True)


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("GET", "/v2/crm/accounts/summary/1", {}),
    ("GET", "/v2/crm/opportunities/1", {}),
    ("POST", "/v2/crm/opportunities", {"json": {"Subject": "only this"}}),
    ("GET", "/v2/crm/accounts/summary", {"params": {"PageNumber": 0}}),
    ("POST", "/v2/security/authenticate", {"data": {"UserName": "x", "Password": "y", "Tenant": "z",
                                                    "GrantType": "password"}}),
])
def test_error_answers_are_contract_envelopes(kaseya, kaseya_http, method, path, kwargs):
    response = kaseya_http.call(method, path, **kwargs)
    payload = response.json()
    assert payload["success"] is False
    route = kaseya.state.requests()[-1]["route"]
    validate_response(method, route, payload)


def test_unpublished_endpoints_answer_with_the_contracts_own_dtos(kaseya, kaseya_http):
    tenant = kaseya.state.tenant
    opportunity = first(tenant.opportunities)
    header = {"Name": "Unpublished quote", "AccountId": opportunity.account_id, "OpportunityId": opportunity.id,
              "StatusId": tenant.lookup("QuoteStatus").rows[0].id, "ExpiryDate": "2030-01-01T00:00:00",
              "SalesRepresentativeUserId": opportunity.sales_representative_user_id}
    created = kaseya_http.call("POST", "/v2/crm/quotes", json=header).json()
    validate_schema("QuotationOutputDtoResponse", created, complete=True)
    updated = kaseya_http.call("PUT", f"/v2/crm/quotes/{created['result']['id']}", json=header).json()
    validate_schema("QuotationOutputDtoResponse", updated, complete=True)
    quote = first(tenant.quotes)
    lines = kaseya_http.result("GET", f"/v2/crm/quotes/{quote.id}/lineItems")
    assert lines
    for line in lines:
        validate_schema("QuotationLineItemOutputDto", line, complete=True)
    product = kaseya_http.call("POST", "/v2/inventory/products", json={
        "ProductNumber": "UNPUB-1", "ProductName": "Unpublished product", "CategoryId": first(tenant.categories).id,
        "ProductTypeId": tenant.lookup("ProductType").rows[0].id,
        "WarehouseId": first(tenant.warehouses).id, "UnitPrice": 10, "UnitCost": 5}).json()
    assert product["success"] is True
    validate_schema("ProductsListSearchSelectOutputDto", product["result"], complete=True)


@pytest.mark.parametrize("output", dto.OUTPUT_DTOS.values(), ids=lambda d: d.name)
def test_output_dtos_list_exactly_the_contracts_properties(output):
    assert output.properties == schema_properties(output.name)


@pytest.mark.parametrize("name", [n for n in dto.INPUT_DTOS if n in contract()["components"]["schemas"]])
def test_input_dtos_match_the_contracts_properties_requirements_and_types(name):
    schema = contract()["components"]["schemas"][name]
    kinds = {("integer", None): "int", ("number", None): "number", ("string", None): "string",
             ("boolean", None): "bool", ("string", "date-time"): "datetime"}
    declared = []
    for prop_name, prop in schema["properties"].items():
        kind = (f"[{prop['items']['$ref'].split('/')[-1]}]" if prop.get("type") == "array"
                else kinds[(prop["type"], prop.get("format") if prop.get("format") == "date-time" else None)])
        declared.append((prop_name, kind, prop_name in schema.get("required", []), bool(prop.get("nullable"))))
    ours = [(p.name, p.kind, p.required, p.nullable or (p.kind.startswith("[") and not p.required))
            for p in dto.INPUT_DTOS[name].properties]
    assert ours == [(n, k, r, nl or (k.startswith("[") and not r)) for n, k, r, nl in declared]


def test_the_notes_quirks_are_in_the_contract_as_they_say():
    """The typos and the bare summary DTO the sandbox reproduces are the contract's own."""
    assert "CanRecieveInvoices" in schema_properties("ContactsSummaryOutputDto")
    assert "StackStrace" in schema_properties("ErrorInfo")
    assert "Poc" in schema_properties("ContactPutInputDto") and "IsPoc" in schema_properties("ContactsSummaryOutputDto")
    bare = find_operation("GET", "/v2/crm/accounts/summary/{id}")["responses"]["200"]["content"]["application/json"]
    assert bare["schema"]["$ref"].endswith("/AccountSummaryOutputDto")


# --- the validator catches what it must -----------------------------------------------------------------

GOOD_STATUS = {"id": 1, "name": "Open", "probability": 10.0, "isActive": True, "isPipeline": True,
               "statusActionId": 1, "statusActionName": "Open"}


@pytest.mark.parametrize(("row", "problem"), [
    (GOOD_STATUS, None),
    ({**GOOD_STATUS, "NAME": None, "name": "x"}, "given twice"),
    ({**GOOD_STATUS, "colour": "red"}, "$.result[0].colour: property not defined by the contract"),
    ({**GOOD_STATUS, "id": "1"}, "$.result[0].id: expected an integer"),
    ({**GOOD_STATUS, "id": 1.0}, "$.result[0].id: expected an integer"),
    ({**GOOD_STATUS, "id": True}, "$.result[0].id: expected an integer"),
    ({**GOOD_STATUS, "id": 2**31}, "outside int32"),
    ({**GOOD_STATUS, "probability": 10}, None),  # an integer is a number
    ({**GOOD_STATUS, "probability": "10"}, "$.result[0].probability: expected a number"),
    ({**GOOD_STATUS, "isActive": None}, "$.result[0].isActive: null where the contract does not allow null"),
    ({**GOOD_STATUS, "name": None}, None),  # nullable
    ({k: v for k, v in GOOD_STATUS.items() if k != "isPipeline"}, "$.result[0].IsPipeline: property missing"),
])
def test_the_validator_checks_names_types_nullability_and_completeness(row, problem):
    payload = {"success": True, "error": None, "result": [row]}
    if problem is None:
        validate_response("GET", "/v2/crm/opportunities/statuses/lookup", payload, complete=True)
    else:
        with pytest.raises(AssertionError) as info:
            validate_response("GET", "/v2/crm/opportunities/statuses/lookup", payload, complete=True)
        assert problem in str(info.value)


@pytest.mark.parametrize(("changes", "problem"), [
    ({}, None),
    ({"subject": "lower-case names are the same property"}, None),
    ({"Subject": ""}, "$.Subject: shorter than the minimum length 1"),
    ({"CloseDate": "31/03/2030"}, "$.CloseDate: '31/03/2030' is not a date-time string"),
    ({"CloseDate": "2030-03-31T00:00:00+02:00"}, None),
    ({"AccountId": 0}, "$.AccountId: 0 is below the minimum 1"),
    ({"IsPoc": True}, "$.IsPoc: property not defined by the contract (OpportunityInputDto)"),
    ({"Amount": None}, "$.Amount: null where the contract does not allow null"),
])
def test_the_validator_checks_request_bodies_strictly(changes, problem):
    body = {"Subject": "s", "StatusId": 1, "AccountId": 1, "AccountLocationId": 1, "TypeId": 1, "Probability": 1,
            "RatingId": 1, "SalesRepresentativeUserId": 1, "Amount": 1.5, "CloseDate": "2030-03-31T00:00:00"}
    if "subject" in changes:
        del body["Subject"]
    body.update(changes)
    if problem is None:
        validate_request_body("POST", "/v2/crm/opportunities", body)
    else:
        with pytest.raises(AssertionError) as info:
            validate_request_body("POST", "/v2/crm/opportunities", body)
        assert problem in str(info.value)


def test_the_validator_lists_every_problem_and_every_missing_required_property():
    with pytest.raises(AssertionError) as info:
        validate_request_body("POST", "/v2/crm/opportunities", {"Subject": 5, "Extra": 1})
    text = str(info.value)
    assert "$.Subject: expected a string" in text and "$.Extra: property not defined" in text
    for name in ("StatusId", "AccountId", "AccountLocationId", "TypeId", "Probability", "RatingId",
                 "SalesRepresentativeUserId", "Amount", "CloseDate"):
        assert f"$.{name}: required property missing" in text


def test_a_bare_dto_answer_is_accepted_as_declared_and_enveloped_as_observed(kaseya, kaseya_http):
    account_id = first(kaseya.state.tenant.accounts).id
    payload = kaseya_http.get(f"/v2/crm/accounts/summary/{account_id}").json()
    validate_response("GET", "/v2/crm/accounts/summary/{id}", payload["result"], complete=True)
    validate_response("GET", "/v2/crm/accounts/summary/{id}", payload, complete=True)
    with pytest.raises(AssertionError, match="not in Kaseya's published contract"):
        validate_response("POST", "/v2/crm/quotes", payload)
