"""The push's pure decisions: Kaseya request bodies (held to the sandbox's input DTOs), markers, overrides,
quote-line reconciliation on a re-push, read-back comparison, resolutions and the dry-run rendering."""

from __future__ import annotations

import json
import string
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum_models import DocumentLineItem
from zk_pipelines.domain.bundles import (
    ItemFacts,
    LineRole,
    PlannedLine,
    PushPlanError,
    document_amount,
    plan_quote_lines,
)
from zk_pipelines.domain.kaseya_endpoints import ENDPOINTS, NO_DISTRIBUTOR, QUOTE_LINE_ITEM_TYPE_IDS
from zk_pipelines.domain.push_plan.accounts import AccountDefaults, account_body, contact_body
from zk_pipelines.domain.push_plan.bodies import (
    OPPORTUNITY_FIELDS,
    OPPORTUNITY_REQUIRED,
    QUOTE_FIELDS,
    OpportunityDefaults,
    OpportunityFields,
    QuoteFields,
    opportunity_body,
    opportunity_request,
    quote_body,
    quote_request,
)
from zk_pipelines.domain.push_plan.catalogue import (
    CatalogueDefaults,
    catalogue_pending_id,
    catalogue_request,
    match_product,
    match_service,
    product_body,
    product_number,
    service_body,
)
from zk_pipelines.domain.push_plan.dry_run import render_plan
from zk_pipelines.domain.push_plan.markers import (
    client_marker,
    client_markers,
    document_marker,
    document_markers,
    find_marker,
    with_marker,
)
from zk_pipelines.domain.push_plan.overrides import (
    OPPORTUNITY_OVERRIDABLE,
    QUOTE_OVERRIDABLE,
    OverrideError,
    PushOverrides,
    parse_overrides,
)
from zk_pipelines.domain.push_plan.plan import PushPlan
from zk_pipelines.domain.push_plan.quote_lines import (
    quote_line_body,
    quote_line_request,
    quote_line_requests,
    reconcile_quote_lines,
    retired_line_body,
)
from zk_pipelines.domain.push_plan.readback import (
    OPPORTUNITY_READBACK_FIELDS,
    QUOTE_LINE_READBACK_FIELDS,
    readback_differences,
)
from zk_pipelines.domain.push_plan.requests import PUSH_ENDPOINTS, PendingId, planned_request
from zk_pipelines.domain.push_plan.resolutions import (
    Resolution,
    opportunity_status_for,
    quote_status_for,
    sales_representative_for,
)
from zk_pipelines.domain.settings import BundleMode, KaseyaItemType
from zk_pipelines.domain.settings_check import (
    KaseyaCatalog,
    ZomentumCatalog,
    ZomentumPipeline,
    ZomentumStage,
    resolve_settings,
)
from zk_pipelines.domain.settings_file import load_settings
from zk_pipelines.sandbox.kaseya.dto import INPUT_DTOS, read_input, undefined_properties

D = Decimal
DOC = "doc-1"
EXAMPLE = Path(__file__).resolve().parents[1] / "settings.example.yaml"


def accepted_by_sandbox(dto_name: str, body: dict) -> None:
    """The body reads cleanly through the sandbox's model of the Kaseya input DTO, and has no property the
    DTO does not define (Kaseya would silently ignore it)."""
    _, problems = read_input(dto_name, json.loads(json.dumps(body)))
    assert problems == []
    assert undefined_properties(dto_name, body, INPUT_DTOS) == []


# --------------------------------------------------------------------------------------------------------
# Endpoints agree with the client's table


def test_push_endpoints_are_the_clients_endpoints():
    for name in PUSH_ENDPOINTS:
        endpoint = ENDPOINTS[name]
        params = {field: 7 for _, field, _, _ in string.Formatter().parse(endpoint.template) if field}
        request = planned_request(name, "test", **params)
        assert (request.method, request.path) == (endpoint.method, endpoint.path(**params)), name
    with pytest.raises(KeyError):
        planned_request("accounts", "a read is not a push request")


def test_quote_lines_are_added_with_the_clients_item_type_ids():
    assert set(QUOTE_LINE_ITEM_TYPE_IDS) == {KaseyaItemType.INVENTORY_PRODUCT, KaseyaItemType.SERVICE_ITEM,
                                             KaseyaItemType.LABOUR_LINE}
    request = quote_line_request(5, _line(), 9)
    assert request.path_params["distributer_type_id"] == NO_DISTRIBUTOR == 0
    assert request.path_params["item_type_id"] == QUOTE_LINE_ITEM_TYPE_IDS[_line().item_type]


# --------------------------------------------------------------------------------------------------------
# Markers


@pytest.mark.parametrize(("text", "found", "first", "clients"), [
    (None, (), None, ()),
    ("", (), None, ()),
    ("Inbound request", (), None, ()),
    ("Inbound\n\n[zk_pipelines document D-17]", ("D-17",), "D-17", ()),
    ("[zk_pipelines document A] and [zk_pipelines document B]", ("A", "B"), "A", ()),
    ("[zk_pipelines client C1]", (), None, ("C1",)),
    ("Customer since 2019\n\n[zk_pipelines client C1] [zk_pipelines document A]", ("A",), "A", ("C1",)),
    ("[zk_pipelines document ]", (), None, ()),
    ("[zk_pipelines client ]", (), None, ()),
])
def test_markers_are_found_in_text(text, found, first, clients):
    assert document_markers(text) == found
    assert find_marker(text) == first
    assert client_markers(text) == clients


@pytest.mark.parametrize(("text", "expected"), [
    (None, "[zk_pipelines document D1]"),
    ("", "[zk_pipelines document D1]"),
    ("Found at the QBR", "Found at the QBR\n\n[zk_pipelines document D1]"),
    ("Found at the QBR\n\n[zk_pipelines document D1]", "Found at the QBR\n\n[zk_pipelines document D1]"),
    ("[zk_pipelines document D0]", "[zk_pipelines document D0]\n\n[zk_pipelines document D1]"),
])
def test_the_marker_is_appended_once(text, expected):
    once = with_marker(text, document_marker("D1"))
    assert once == expected
    assert with_marker(once, document_marker("D1")) == once


@pytest.mark.parametrize("bad_id", ["", "a b", "x]y", "[x"])
def test_a_marker_needs_a_plain_id(bad_id):
    with pytest.raises(PushPlanError, match="cannot be empty or contain spaces or brackets"):
        document_marker(bad_id)


# --------------------------------------------------------------------------------------------------------
# The opportunity

FIELDS = OpportunityFields(
    document_id=DOC, subject="Acme laptops", status_id=106, account_id=77, account_location_id=7701,
    sales_representative_user_id=9001, amount=D("1087.975"), close_date=date(2026, 6, 30), probability=D(100),
    contact_id=5501, customer_po="PO-1",
)
DEFAULTS = OpportunityDefaults(type_id=11, rating_id=21, lead_source_id=31, probability=D(10))

EXISTING = {  # as Kaseya answers it: camelCase, with fields we do not map set by a Kaseya user
    "id": 4321, "subject": "Old subject", "statusId": 101, "accountId": 77, "accountLocationId": 7701,
    "contactId": 5599, "typeId": 12, "type": "Existing Business", "probability": 40.0, "ratingId": 23,
    "leadSourceId": 34, "salesRepresentativeUserId": 9002, "amount": 500.0,
    "description": "Found during the quarterly business review", "customerPO": "PO-OLD",
    "closeDate": "2026-05-01T00:00:00.000", "inPipeline": True,
}


def test_create_carries_every_required_field_with_defaults_and_the_marker():
    body = opportunity_body(None, FIELDS, defaults=DEFAULTS)
    assert body == {
        "Subject": "Acme laptops", "StatusId": 106, "AccountId": 77, "AccountLocationId": 7701, "ContactId": 5501,
        "TypeId": 11, "Probability": 100.0, "RatingId": 21, "LeadSourceId": 31, "SalesRepresentativeUserId": 9001,
        "Amount": 1087.98, "Description": "[zk_pipelines document doc-1]", "CustomerPO": "PO-1",
        "CloseDate": "2026-06-30T00:00:00",
    }
    accepted_by_sandbox("OpportunityInputDto", body)


def test_update_keeps_kaseyas_values_of_unmapped_fields_and_appends_the_marker_once():
    body = opportunity_body(EXISTING, FIELDS, defaults=DEFAULTS)
    assert (body["TypeId"], body["RatingId"], body["LeadSourceId"]) == (12, 23, 34)  # Kaseya's, not the defaults
    assert body["Description"] == "Found during the quarterly business review\n\n[zk_pipelines document doc-1]"
    assert (body["Subject"], body["StatusId"], body["ContactId"], body["Amount"]) == ("Acme laptops", 106, 5501,
                                                                                      1087.98)
    again = opportunity_body({**EXISTING, "description": body["Description"]}, FIELDS, defaults=DEFAULTS)
    assert again["Description"] == body["Description"]
    accepted_by_sandbox("OpportunityInputDto", body)


def test_update_keeps_kaseyas_value_where_zomentum_has_none():
    fields = OpportunityFields(document_id=DOC, subject=None, status_id=106, account_id=77, account_location_id=7701,
                               sales_representative_user_id=9001, amount=None, close_date=None)
    body = opportunity_body(EXISTING, fields, defaults=DEFAULTS)
    assert (body["Subject"], body["Amount"], body["CloseDate"], body["ContactId"], body["CustomerPO"],
            body["Probability"]) == ("Old subject", 500.0, "2026-05-01T00:00:00", 5599, "PO-OLD", 40.0)


def test_update_fills_a_required_field_kaseya_left_empty_but_not_an_optional_one():
    existing = {**EXISTING, "ratingId": None, "leadSourceId": None}
    body = opportunity_body(existing, FIELDS, defaults=DEFAULTS)
    assert body["RatingId"] == 21  # required by the input DTO, though the output allows null
    assert body["LeadSourceId"] is None  # optional: Kaseya's "none" is kept


def test_overrides_win_over_mapped_and_existing_values():
    overrides = parse_overrides(["subject=Signed: Acme", "close_date=2026-12-31", "probability=80", "type_id=13",
                                 "description=Renewal of the 2025 deal"]).opportunity
    body = opportunity_body(EXISTING, FIELDS, overrides, defaults=DEFAULTS)
    assert (body["Subject"], body["CloseDate"], body["Probability"], body["TypeId"]) == (
        "Signed: Acme", "2026-12-31T00:00:00", 80.0, 13)
    assert body["Description"] == "Renewal of the 2025 deal\n\n[zk_pipelines document doc-1]"
    # Raw text (as a job config carries it) is parsed the same way.
    assert opportunity_body(EXISTING, FIELDS, {"probability": "80"}, defaults=DEFAULTS)["Probability"] == 80.0


@pytest.mark.parametrize(("fields", "defaults", "message"), [
    (FIELDS, OpportunityDefaults(rating_id=21), r"document doc-1: the Kaseya opportunity needs TypeId \(set it with "
                                                r"--set type_id=\.\.\.\)"),
    (OpportunityFields(DOC, "S", 106, 77, 7701, 9001, D(1), None), DEFAULTS, r"needs CloseDate \(set it with --set "
                                                                             r"close_date=\.\.\.\)"),
    (OpportunityFields(DOC, "  ", 106, None, 7701, 9001, D(1), date(2026, 1, 1)), DEFAULTS,
     r"needs Subject .*, AccountId, and nothing supplies it"),
    (OpportunityFields(DOC, "S", 106, 77, 7701, 9001, D(1), date(2026, 1, 1)), OpportunityDefaults(11, 21),
     "needs Probability"),
])
def test_a_missing_required_value_names_the_field_and_the_document(fields, defaults, message):
    with pytest.raises(PushPlanError, match=message):
        opportunity_body(None, fields, defaults=defaults)


def test_probability_out_of_range_is_refused():
    fields = OpportunityFields(DOC, "S", 106, 77, 7701, 9001, D(1), date(2026, 1, 1), probability=D(130))
    with pytest.raises(PushPlanError, match="Probability 130 is not between 0 and 100"):
        opportunity_body(None, fields, defaults=DEFAULTS)


def test_an_override_the_opportunity_does_not_have_is_refused():
    with pytest.raises(OverrideError, match="'quote.name' is not a field that can be set here; allowed: subject"):
        opportunity_body(None, FIELDS, {"quote.name": "x"}, defaults=DEFAULTS)


def test_opportunity_requests_create_or_replace():
    body = opportunity_body(None, FIELDS, defaults=DEFAULTS)
    create, update = opportunity_request(None, body), opportunity_request(4321, body)
    assert (create.method, create.path, create.endpoint) == ("POST", "/v2/crm/opportunities", "create_opportunity")
    assert (update.method, update.path, update.path_params) == ("PUT", "/v2/crm/opportunities/4321",
                                                                {"opportunity_id": 4321})
    assert update.body == body


# --------------------------------------------------------------------------------------------------------
# The quote

QUOTE = QuoteFields(document_id=DOC, name="Acme laptops proposal", opportunity_id=4321, account_id=77,
                    location_id=7701, status_id=204, expiry_date=datetime(2026, 7, 1, 12, 30, tzinfo=UTC),
                    sales_representative_user_id=9001)


def test_quote_body_names_the_quote_with_the_marker_once():
    body = quote_body(None, QUOTE)
    assert body == {"Name": "Acme laptops proposal [zk_pipelines document doc-1]", "OpportunityId": 4321,
                    "AccountId": 77, "LocationId": 7701, "StatusId": 204, "ExpiryDate": "2026-07-01T12:30:00",
                    "SalesRepresentativeUserId": 9001}
    accepted_by_sandbox("QuotationInputDto", body)
    existing = {"id": 88, "name": body["Name"], "expiryDate": "2026-07-01T12:30:00.000", "statusId": 201}
    assert quote_body(existing, QuoteFields(DOC, None, 4321, 77, 7701, 204, None, 9001))["Name"] == body["Name"]


def test_quote_overrides_and_missing_expiry():
    overrides = parse_overrides(["quote.name=Final offer", "quote.expiry_date=2026-08-15"]).quote
    body = quote_body(None, QUOTE, overrides)
    assert (body["Name"], body["ExpiryDate"]) == ("Final offer [zk_pipelines document doc-1]", "2026-08-15T00:00:00")
    no_expiry = QuoteFields(DOC, "Q", 4321, 77, 7701, 204, None, 9001)
    with pytest.raises(PushPlanError, match=r"the Kaseya quote needs ExpiryDate \(set it with --set "
                                            r"quote.expiry_date=\.\.\.\)"):
        quote_body(None, no_expiry)
    assert quote_body({"ExpiryDate": "2026-09-01T00:00:00"}, no_expiry)["ExpiryDate"] == "2026-09-01T00:00:00"


def test_quote_requests_and_pending_ids():
    new_opportunity = PendingId("opportunity")
    body = quote_body(None, QuoteFields(DOC, "Q", new_opportunity, 77, 7701, 204, date(2026, 7, 1), 9001))
    create = quote_request(None, body)
    assert (create.method, create.path) == ("POST", "/v2/crm/quotes")
    assert create.pending == {new_opportunity}
    sent = create.with_ids({new_opportunity: 4321})
    assert sent.body["OpportunityId"] == 4321 and not sent.pending
    assert json.loads(json.dumps(sent.body))["OpportunityId"] == 4321
    update = quote_request(PendingId("quote"), body).with_ids({PendingId("quote"): 88})
    assert (update.method, update.path) == ("PUT", "/v2/crm/quotes/88")


# --------------------------------------------------------------------------------------------------------
# Quote lines


def _line(**changes) -> PlannedLine:
    values = dict(line_key="zk:doc-1:L1", document_id=DOC, source_line_id="L1", bundle_line_id=None, role=LineRole.ITEM,
                  item_type=KaseyaItemType.INVENTORY_PRODUCT, product_type="hardware", item_name="Laptop 14",
                  description="14-inch laptop", quantity=D(3), unit_price=D("11.12"), unit_cost=D("8.00"),
                  discount=D("0.02"), taxable=True, zomentum_item_id="item-1", manufacturer_part_number="HW-001",
                  catalogue_price=D("11.12"))
    values.update(changes)
    return PlannedLine(**values)


def test_quote_line_body_carries_the_line_and_its_key():
    body = quote_line_body(_line(), 555)
    assert body == {"Id": 555, "Name": "Laptop 14", "Description": "14-inch laptop",
                    "ExtDistReference": "zk:doc-1:L1", "Image": None, "UnitPrice": 11.12, "UnitCost": 8.0,
                    "Quantity": 3.0, "Margin": 28.06, "MarginType": 1, "Discount": 0.02, "Taxable": True}
    accepted_by_sandbox("QuotationLineItemInputDto", body)
    assert quote_line_body(_line(unit_price=D(0)), 555)["Margin"] == 0.0
    # Kaseya fills an empty description in from its catalogue, so the item name stands in for one.
    assert quote_line_body(_line(description=" "), 555)["Description"] == "Laptop 14"


@pytest.mark.parametrize(("item_type", "type_id"), [
    (KaseyaItemType.INVENTORY_PRODUCT, 1), (KaseyaItemType.SERVICE_ITEM, 2), (KaseyaItemType.LABOUR_LINE, 3)])
def test_quote_line_requests_add_by_item_type_or_update_by_line_id(item_type, type_id):
    add = quote_line_request(88, _line(item_type=item_type), 555)
    assert (add.method, add.path) == ("POST", f"/v2/crm/quotes/88/lineItems/{type_id}/0")
    update = quote_line_request(88, _line(item_type=item_type), 555, existing_line_id=9)
    assert (update.method, update.path) == ("PUT", "/v2/crm/quotes/88/lineItems/9")


def _kaseya_line(line_id: int, body: dict, **changes) -> dict:
    """A quote line as Kaseya reads it back after `body` was sent (camelCase, computed fields added)."""
    read = {k[0].lower() + k[1:]: v for k, v in body.items() if k not in ("Id", "Image")}
    return {"id": line_id, "quotationId": 88, "total": 0.0, **read, **changes}


def _planned_document() -> tuple[PlannedLine, ...]:
    lines = [
        DocumentLineItem("L1", "item-1", "Laptop", "", "hardware", D(3), D("19.99"), D(12), D(1), D(0), None, None),
        DocumentLineItem("L2", "item-2", "Support", "", "service", D(1), D(250), D(0), D(0), D(99), None, None),
    ]
    return plan_quote_lines(lines, BundleMode.SINGLE_SERVICE_ITEM, document_id=DOC)


def test_a_second_push_updates_its_lines_and_never_duplicates():
    planned = _planned_document()
    item_ids = {line.line_key: 500 + i for i, line in enumerate(planned)}
    first = quote_line_requests(88, DOC, planned, [], item_ids)
    assert [r.method for r in first] == ["POST", "POST", "POST"]
    kaseya = [_kaseya_line(10 + i, r.body) for i, r in enumerate(first)]
    assert all(readback_differences(r.body, k, QUOTE_LINE_READBACK_FIELDS) == []
               for r, k in zip(first, kaseya, strict=True))

    assert quote_line_requests(88, DOC, planned, kaseya, item_ids) == ()  # unchanged document: nothing to send

    kaseya[1]["unitPrice"] = 200.0  # someone edited a line in Kaseya
    again = quote_line_requests(88, DOC, planned, kaseya, item_ids)
    assert [(r.method, r.path) for r in again] == [("PUT", "/v2/crm/quotes/88/lineItems/11")]


def test_reconciliation_retires_lines_no_longer_planned_once_and_ignores_foreign_lines():
    planned = _planned_document()
    bodies = {line.line_key: quote_line_body(line, 1) for line in planned}
    existing = [
        _kaseya_line(10, bodies["zk:doc-1:item-1#1"]),
        _kaseya_line(11, bodies["zk:doc-1:item-1#1"]),  # a duplicate of L1
        _kaseya_line(12, {**bodies["zk:doc-1:item-1#1"], "ExtDistReference": "zk:doc-1:GONE"}),
        _kaseya_line(13, {**bodies["zk:doc-1:item-1#1"], "ExtDistReference": "zk:doc-1:OLD", "Quantity": 0.0,
                          "UnitPrice": 0.0, "Discount": 0.0}),  # retired by an earlier push
        _kaseya_line(14, {**bodies["zk:doc-1:item-1#1"], "ExtDistReference": None}),  # added by hand in Kaseya
        _kaseya_line(15, {**bodies["zk:doc-1:item-1#1"], "ExtDistReference": "zk:doc-10:L1"}),  # another document's
        _kaseya_line(16, {**bodies["zk:doc-1:item-1#1"], "ExtDistReference": "TDS-99812"}),  # a distributor's
    ]
    result = reconcile_quote_lines(DOC, planned, existing)
    assert [(line.line_key, line_id) for line, line_id in result.to_update] == [("zk:doc-1:item-1#1", 10)]
    assert [line.line_key for line in result.to_create] == ["zk:doc-1:item-2#1", "zk:doc-1:item-2#1+setup"]
    assert [line["id"] for line in result.to_retire] == [11, 12]
    retired = retired_line_body(existing[2])
    assert (retired["Quantity"], retired["UnitPrice"], retired["Discount"], retired["ExtDistReference"]) == (
        0.0, 0.0, 0.0, "zk:doc-1:GONE")
    accepted_by_sandbox("QuotationLineItemInputDto", retired)
    requests = quote_line_requests(88, DOC, planned, existing, {line.line_key: 1 for line in planned})
    assert [r.path for r in requests][-2:] == ["/v2/crm/quotes/88/lineItems/11", "/v2/crm/quotes/88/lineItems/12"]


def test_quote_line_requests_need_a_catalogue_item_for_every_line():
    with pytest.raises(PushPlanError, match="no Kaseya catalogue item for line\\(s\\) zk:doc-1:item-2#1"):
        quote_line_requests(88, DOC, _planned_document(), [], {"zk:doc-1:item-1#1": 1})


# --------------------------------------------------------------------------------------------------------
# Catalogue items

CATALOGUE = CatalogueDefaults(product_category_id=404, warehouse_id=301, labour_period_id=501,
                              product_type_ids={"Hardware": 61, "Software": 62, "Service": 63, "Labour": 64})


@pytest.mark.parametrize(("changes", "number"), [
    ({}, "HW-001"),
    ({"manufacturer_part_number": None}, "ZOM-item-1"),
])
def test_product_number(changes, number):
    assert product_number(_line(**changes)) == number


def test_a_product_without_item_or_part_number_cannot_be_found():
    with pytest.raises(PushPlanError, match=r"document doc-1, line L1 \('Laptop 14'\): a product without"):
        product_number(_line(manufacturer_part_number=None, zomentum_item_id=None))


def test_product_and_service_bodies_use_the_settings_defaults():
    product = product_body(_line(product_type="software"), CATALOGUE)
    assert product == {"ProductNumber": "HW-001", "ProductName": "Laptop 14", "ProductDescription": "14-inch laptop",
                       "CategoryId": 404, "ProductTypeId": 62, "WarehouseId": 301, "LabourPeriodId": None,
                       "UnitPrice": 11.12, "UnitCost": 8.0}
    accepted_by_sandbox("ProductInputDto", product)
    labour = _line(item_type=KaseyaItemType.LABOUR_LINE, product_type="labor", catalogue_price=None, taxable=False)
    service = service_body(labour, CATALOGUE)
    assert service == {"Id": 0, "Name": "Laptop 14", "Description": "14-inch laptop", "UnitPrice": 0.0,
                       "UnitCost": 8.0, "CategoryId": 404, "IsActive": True, "IsTaxable": False}
    accepted_by_sandbox("ServiceInputDto", service)
    assert catalogue_request(labour, CATALOGUE).path == "/v2/admin/finance/services/services"
    assert catalogue_request(_line(), CATALOGUE).path == "/v2/inventory/products"
    assert catalogue_pending_id(_line()) == PendingId("product HW-001")
    with pytest.raises(PushPlanError, match="not an inventory product"):
        product_body(labour, CATALOGUE)
    with pytest.raises(PushPlanError, match="not a service"):
        service_body(_line(), CATALOGUE)
    with pytest.raises(PushPlanError, match="no product type named 'Hardware'"):
        product_body(_line(), CatalogueDefaults(1, 2, 3, {}))


def test_catalogue_matches_are_exact_though_kaseya_searches_by_contains():
    rows = [{"id": "7_1", "productIndexId": 7, "productNumber": "HW-0010"},
            {"id": "8_1", "productIndexId": 8, "productNumber": "hw-001"},
            {"id": "8_2", "productIndexId": 8, "productNumber": "hw-001"}]
    assert match_product(_line(), rows) == 8
    assert match_product(_line(), rows[:1]) is None
    services = [{"id": 3, "name": "Laptop 14 Pro"}, {"id": 4, "name": "laptop 14"}]
    assert match_service(_line(), services) == 4
    assert match_service(_line(), services[:1]) is None


# --------------------------------------------------------------------------------------------------------
# Accounts and contacts

ACCOUNT_DEFAULTS = AccountDefaults(account_type_ids={"Customer": 1, "Prospect": 2}, business_type_id=5,
                                   account_manager_id=9001)
CLIENT = {
    "id": "c-1", "name": "Acme Ltd ", "company_type": "prospect", "website": "https://acme.example",
    "phone": "+44 20 7946 0000",
    "billing_address": {"address_line_1": "1 High St", "address_line_2": None, "city": "London", "state": None,
                        "pincode": "EC1A 1AA", "country": "GB", "phone": None},
    "shipping_addresses": [{"address_line_1": "Dock 4", "address_line_2": None, "city": "Tilbury", "state": None,
                            "pincode": "RM18 7EH", "country": "GB", "phone": None}],
}


def test_account_body_has_one_main_location_with_the_billing_and_shipping_addresses():
    body = account_body(CLIENT, ACCOUNT_DEFAULTS)
    assert (body["AccountName"], body["AccountTypeId"], body["Description"]) == ("Acme Ltd", 2,
                                                                               client_marker("c-1"))
    (location,) = body["Locations"]
    assert (location["LocationName"], location["IsMain"]) == ("Main", True)
    billing, shipping = location["Addresses"]
    assert (billing["Address1"], billing["IsMain"], billing["IsBilling"], billing["Phone"]) == (
        "1 High St", True, True, "+44 20 7946 0000")
    assert (shipping["Address1"], shipping["AddressType"], shipping["IsBilling"]) == ("Dock 4", "Shipping", False)
    accepted_by_sandbox("AccountPostInputDto", body)
    assert account_body({**CLIENT, "company_type": None}, ACCOUNT_DEFAULTS)["AccountTypeId"] == 1


def test_contact_body_and_its_names():
    user = {"id": "u-1", "name": {"first": "Ada", "last": "Lovelace"}, "email": "ada@acme.example", "phone": None}
    body = contact_body(user, account_id=77, location_id=7701, email_type_id=41, phone_type_id=51)
    assert body["Emails"] == [{"EmailAddress": "ada@acme.example", "EmailTypeId": 41, "IsDefault": True}]
    assert body["Phones"] == []
    accepted_by_sandbox("ContactInputDto", body)
    with pytest.raises(PushPlanError, match="Zomentum contact u-2 .*needs a first and a last name"):
        contact_body({"id": "u-2", "name": {"first": "Cher", "last": None}}, account_id=77, location_id=7701,
                     email_type_id=41, phone_type_id=51)


# --------------------------------------------------------------------------------------------------------
# Overrides


def test_parse_overrides_types_each_value():
    parsed = parse_overrides(["subject= New title ", "close_date=2026-12-31", "probability=80", "amount=1200.5",
                              "status_id=106", "quote.name=Final offer", "quote.expiry_date=2027-01-15"])
    assert parsed.opportunity == {"subject": "New title", "close_date": date(2026, 12, 31), "probability": D(80),
                                  "amount": D("1200.50"), "status_id": 106}
    assert parsed.quote == {"quote.name": "Final offer", "quote.expiry_date": date(2027, 1, 15)}
    assert parse_overrides({"subject": "a=b"}).opportunity == {"subject": "a=b"}
    assert parse_overrides([]) == PushOverrides()


@pytest.mark.parametrize(("assignments", "problem"), [
    (["colour=red"], "'colour' is not a field that can be set"),
    (["close_date=31/12/2026"], "close_date='31/12/2026': expected a date (YYYY-MM-DD)"),
    (["probability=120"], "probability='120': expected a percentage (0-100)"),
    (["probability=high"], "probability='high': expected a percentage"),
    (["amount=10.001"], "amount='10.001': expected an amount (at most 2 decimals, not negative)"),
    (["amount=-5"], "amount='-5': expected an amount"),
    (["status_id=0"], "status_id='0': expected a Kaseya id"),
    (["type_id=abc"], "type_id='abc': expected a Kaseya id"),
    (["subject="], "subject='': expected a non-empty text"),
    (["subject"], "'subject' is not field=value"),
    (["subject=a", "subject=b"], "subject is set more than once"),
    (["quote.expiry_date=soon"], "quote.expiry_date='soon': expected a date"),
])
def test_bad_overrides_name_the_key_and_value_and_list_the_allowed_keys(assignments, problem):
    with pytest.raises(OverrideError) as raised:
        parse_overrides(assignments)
    message = str(raised.value)
    assert problem in message
    assert "allowed keys: subject (text), close_date (date (YYYY-MM-DD))" in message
    assert "quote.name (text)" in message


def test_every_problem_is_reported_at_once():
    with pytest.raises(OverrideError) as raised:
        parse_overrides(["colour=red", "probability=120"])
    assert "'colour'" in str(raised.value) and "probability='120'" in str(raised.value)


def test_override_tables_set_fields_the_bodies_have():
    assert {spec.kaseya_field for spec in OPPORTUNITY_OVERRIDABLE.values()} <= set(OPPORTUNITY_FIELDS)
    assert {spec.kaseya_field for spec in QUOTE_OVERRIDABLE.values()} <= set(QUOTE_FIELDS)
    assert set(OPPORTUNITY_OVERRIDABLE).isdisjoint(QUOTE_OVERRIDABLE)


# --------------------------------------------------------------------------------------------------------
# Read-back


@pytest.mark.parametrize(("sent", "read", "expected"), [
    ({"Subject": "A"}, {"subject": "A"}, []),
    ({"Subject": "A"}, {"SUBJECT": "B"}, ['Subject: sent "A", Kaseya has "B"']),
    ({"Amount": 33.34}, {"amount": 33.340000000001}, []),
    ({"Amount": 33.34}, {"amount": 33.344}, []),
    ({"Amount": 33.34}, {"amount": 33.35}, ["Amount: sent 33.34, Kaseya has 33.35"]),
    ({"Amount": D("33.34")}, {"amount": 33.34}, []),
    ({"Quantity": 3}, {"quantity": 3.0}, []),
    ({"CloseDate": "2026-06-30T00:00:00"}, {"closeDate": "2026-06-30T00:00:00.000"}, []),
    ({"CloseDate": "2026-06-30T00:00:00"}, {"closeDate": "2026-06-30T02:00:00+02:00"}, []),
    ({"CloseDate": "2026-06-30T00:00:00"}, {"closeDate": "2026-06-30T00:00:00Z"}, []),
    ({"CloseDate": "2026-06-30T00:00:00"}, {"closeDate": "2026-06-30T00:00:00+02:00"},
     ['CloseDate: sent "2026-06-30T00:00:00", Kaseya has "2026-06-30T00:00:00+02:00"']),
    ({"CloseDate": date(2026, 6, 30)}, {"closeDate": "2026-06-30T00:00:00"}, []),
    ({"Description": None}, {"description": ""}, []),
    ({"ContactId": None}, {"contactId": 5}, ["ContactId: sent nothing, Kaseya has 5"]),
    ({"ContactId": 5}, {}, ["ContactId: sent 5, Kaseya has nothing"]),
    ({"Taxable": True}, {"taxable": 1}, ["Taxable: sent true, Kaseya has 1"]),
    ({"Taxable": False}, {"taxable": False}, []),
    ({}, {"subject": "anything"}, []),  # not sent: not compared
])
def test_readback_differences(sent, read, expected):
    fields = ("Subject", "Amount", "Quantity", "CloseDate", "Description", "ContactId", "Taxable")
    assert readback_differences(sent, read, fields) == expected


def test_readback_of_an_opportunity_as_kaseya_returns_it():
    body = opportunity_body(None, FIELDS, defaults=DEFAULTS)
    read = {"id": 1, **{k[0].lower() + k[1:]: v for k, v in body.items()}, "closeDate": "2026-06-30T00:00:00.000",
            "status": "Closed Won", "inPipeline": False}
    assert readback_differences(body, read, OPPORTUNITY_READBACK_FIELDS) == []
    read["amount"] = 1087.97
    assert readback_differences(body, read, OPPORTUNITY_READBACK_FIELDS) == [
        "Amount: sent 1087.98, Kaseya has 1087.97"]


# --------------------------------------------------------------------------------------------------------
# Resolutions


def _resolved():
    stages = [("New", "open"), ("Qualified", "open"), ("Proposal Sent", "open"), ("Negotiation", "open"),
              ("Won", "won"), ("Lost", "lost")]
    sales = ZomentumPipeline("sales", "Sales Pipeline",
                             tuple(ZomentumStage(f"sales-{i}", n, k) for i, (n, k) in enumerate(stages)), True)
    renewals = ZomentumPipeline("renewals", "Renewals", tuple(
        ZomentumStage(f"renewals-{i}", n, k) for i, (n, k) in
        enumerate([("Renewal Due", "open"), ("Renewal Quoted", "open"), ("Renewed", "won"), ("Churned", "lost")])))
    statuses = ["Prospecting", "Qualification", "Proposal", "Negotiation", "On Hold", "Closed Won", "Closed Lost"]
    quote_statuses = ["Draft", "Pending Approval", "Sent", "Accepted", "Declined", "Expired"]
    kaseya = KaseyaCatalog(
        opportunity_statuses={n: 101 + i for i, n in enumerate(statuses)},
        quote_statuses={n: 201 + i for i, n in enumerate(quote_statuses)},
        warehouses={"Main Warehouse": 301}, product_categories={"Professional Services": 404},
        labour_periods={"Hourly": 501},
        employees={"anna.adams0@msp.example": 9000, "Bob.Brown1@msp.example": 9001},
    )
    zomentum = ZomentumCatalog(pipelines=(sales, renewals), users={"api.user@msp.example": "user-api"})
    settings = load_settings(EXAMPLE).for_systems("https://kaseya.example", "https://zomentum.example")
    return resolve_settings(settings, kaseya, zomentum)


@pytest.mark.parametrize(("owner", "employee_id", "how"), [
    ("bob.brown1@MSP.example", 9001, "same e-mail"),
    ("nobody@msp.example", 9000, "fallback: no Kaseya employee has the owner's e-mail"),
    (None, 9000, "fallback: no Kaseya employee has the owner's e-mail"),
])
def test_sales_representative_by_e_mail_else_the_fallback(owner, employee_id, how):
    found, resolution = sales_representative_for(owner, _resolved())
    assert (found, resolution.how) == (employee_id, how)


@pytest.mark.parametrize(("stage_id", "status_id", "how"), [
    ("sales-4", 106, "export mapping"),  # Won -> Closed Won
    ("nope", 101, "default export status"),
])
def test_opportunity_status_by_the_export_mapping_else_the_default(stage_id, status_id, how):
    found, resolution = opportunity_status_for(stage_id, _resolved())
    assert (found, resolution.how) == (status_id, how)


@pytest.mark.parametrize(("stage_id", "document_won", "status_id"), [
    ("sales-0", True, 106),  # a Won document on an opportunity still at "New": exported as Won (Closed Won)
    ("sales-5", True, 106),  # ... even from the lost stage: the document says it was won
    ("sales-4", True, 106),  # already Won: unchanged
    ("sales-0", False, None),  # not a Won document: the mapping of its own stage
])
def test_a_won_document_exports_its_opportunity_as_won(stage_id, document_won, status_id):
    own, _ = opportunity_status_for(stage_id, _resolved())
    found, resolution = opportunity_status_for(stage_id, _resolved(), document_won=document_won)
    assert found == (status_id if status_id is not None else own)
    if document_won and stage_id != "sales-4":
        assert resolution.how == "the document is Won: exported as its pipeline's won stage Won"


@pytest.mark.parametrize(("document_status", "status_id", "how"), [
    ("won", 204, "document status mapping"),  # won -> Accepted
    ("approved", 201, "default quote status"),  # unmapped -> Draft
])
def test_quote_status_by_the_document_mapping_else_the_default(document_status, status_id, how):
    found, resolution = quote_status_for(document_status, _resolved())
    assert (found, resolution.how) == (status_id, how)
    assert resolution.result.startswith("quote status ")


# --------------------------------------------------------------------------------------------------------
# The dry run


def test_render_plan_shows_every_request_exactly_with_resolutions_and_lines():
    lines = [DocumentLineItem("L1", "item-B", "Kit", "", "bundle", D(1), D("100.00"), D(0), D(0), D(0), None, None,
                              children=(
                                  DocumentLineItem("C1", "item-1", "Laptop", "", "hardware", D(1), D(0), D(0), D(0),
                                                   D(0), None, "L1"),
                                  DocumentLineItem("C2", "item-2", "Mouse", "", "hardware", D(1), D(0), D(0), D(0),
                                                   D(0), None, "L1"),
                                  DocumentLineItem("C3", "item-3", "Dock", "", "hardware", D(1), D(0), D(0), D(0),
                                                   D(0), None, "L1")))]
    planned = plan_quote_lines(lines, BundleMode.CHILDREN_WITH_BUNDLE_PRICE_SPLIT, document_id=DOC,
                               items={"item-B": ItemFacts("item-B", bundle_pricing_level="bundle")})
    opportunity = opportunity_request(None, opportunity_body(None, FIELDS, defaults=DEFAULTS))
    new_opportunity, new_quote = PendingId("opportunity"), PendingId("quote")
    quote = quote_request(None, quote_body(None, QuoteFields(DOC, "Q", new_opportunity, 77, 7701, 204,
                                                             date(2026, 7, 1), 9001)))
    line_requests = [quote_line_request(new_quote, line, 500) for line in planned]
    plan = PushPlan(
        document_id=DOC, document_version="rev-3",
        resolutions=(Resolution("stage Sales Pipeline / Won", "opportunity status Closed Won (id 106)",
                                "export mapping"),),
        requests=(opportunity, quote, *line_requests), quote_lines=planned, document_amount=document_amount(lines),
        overrides=parse_overrides(["subject=Acme laptops"]),
    )
    text = render_plan(plan)
    assert text.startswith("Push of Zomentum document doc-1 (version rev-3): 5 requests, dry run: nothing is sent")
    assert "stage Sales Pipeline / Won  ->  opportunity status Closed Won (id 106)  (export mapping)" in text
    assert "subject  =  Acme laptops  (sets Subject)" in text
    assert "quote total 100.00 (document lines: 100.00)" in text
    assert "1. POST /v2/crm/opportunities" in text
    assert "3. POST /v2/crm/quotes/<id of the new quote>/lineItems/1/0" in text
    indented_body = "\n".join("   " + row for row in json.dumps(opportunity.body, indent=2).splitlines())
    assert indented_body in text
    assert '"OpportunityId": "<id of the new opportunity>"' in text
    for share in ("33.34", "33.33"):
        assert f'"UnitPrice": {share}' in text


def test_planned_request_as_record_is_json():
    request = planned_request("update_quote_line_item", "why", {"Quantity": 1.0}, quote_id=88, line_item_id=9)
    assert json.loads(json.dumps(request.as_record())) == {
        "endpoint": "update_quote_line_item", "method": "PUT", "path": "/v2/crm/quotes/88/lineItems/9",
        "body": {"Quantity": 1.0}, "purpose": "why"}


def test_body_fields_are_the_dtos_fields():
    def names(dto: str, *, required: bool = False) -> tuple[str, ...]:
        return tuple(p.name for p in INPUT_DTOS[dto].properties if p.required or not required)

    assert OPPORTUNITY_FIELDS == names("OpportunityInputDto")
    assert OPPORTUNITY_REQUIRED == names("OpportunityInputDto", required=True)
    assert QUOTE_FIELDS == names("QuotationInputDto")


def test_aware_close_dates_are_sent_as_utc():
    fields = OpportunityFields(DOC, "S", 106, 77, 7701, 9001, D(1),
                               datetime(2026, 6, 30, 23, 30, tzinfo=timezone(timedelta(hours=-2))), D(50))
    assert opportunity_body(None, fields, defaults=DEFAULTS)["CloseDate"] == "2026-07-01T01:30:00"


# --------------------------------------------------------------------------------------------------------
# Against the Kaseya sandbox: what the bodies say is what Kaseya stores, and a re-push changes nothing


def test_a_push_and_a_re_push_round_trip_through_the_kaseya_sandbox(kaseya_credentials):
    client = KaseyaClient(kaseya_credentials)
    account = next(iter(client.iter_accounts()))
    location_id = account["locations"][0]["id"]
    statuses = {row["name"]: row["id"] for row in client.opportunity_statuses()}
    types = {row["name"]: row["id"] for row in client.lookup("opportunity_types")}
    ratings = {row["name"]: row["id"] for row in client.lookup("opportunity_ratings")}
    quote_statuses = {row["name"]: row["id"] for row in client.lookup("quote_statuses")}
    categories = {row["name"]: row["id"] for row in client.product_categories()}
    employee_id = client.employees()[0]["id"]
    product_index_id = next(iter(client.iter_products()))["productIndexId"]

    def send(request):
        return client.call(request.endpoint, path_params=request.path_params, body=request.body)[0]

    fields = OpportunityFields("DOC1", "Laptops for Acme", statuses["Closed Won"], account["id"], location_id,
                               employee_id, D("1087.975"), date(2026, 6, 30), D(100))
    defaults = OpportunityDefaults(types["New Business"], ratings["Hot"])
    created = send(opportunity_request(None, opportunity_body(None, fields, defaults=defaults)))
    update = opportunity_body(client.opportunity(created["id"]), fields, {"subject": "Signed"}, defaults=defaults)
    send(opportunity_request(created["id"], update))
    read = client.opportunity(created["id"])
    assert readback_differences(update, read, OPPORTUNITY_READBACK_FIELDS) == []
    assert find_marker(read["description"]) == "DOC1"

    header = quote_body(None, QuoteFields("DOC1", "Proposal", created["id"], account["id"], location_id,
                                          quote_statuses["Accepted"], date(2026, 7, 1), employee_id))
    quote_id = send(quote_request(None, header))["id"]
    assert readback_differences(header, client.quote(quote_id), QUOTE_FIELDS) == []

    lines = [
        DocumentLineItem("B", "item-B", "Office kit", "", "bundle", D(1), D(100), D(0), D(0), D(0), None, None,
                         children=(
                             DocumentLineItem("C1", "item-1", "Laptop", "", "hardware", D(3), D(0), D(10), D(0),
                                              D(0), None, "B"),
                             DocumentLineItem("C2", "item-2", "Onboarding", "", "service", D(1), D(0), D(0), D(0),
                                              D(0), None, "B"),
                             DocumentLineItem("C3", "item-3", "Install", "", "labor", D("2.5"), D(0), D(0), D(0),
                                              D(0), None, "B"))),
        DocumentLineItem("S", "item-S", "Managed desktop", "", "service", D(2), D("45.50"), D(20), D(1), D(30),
                         None, None),
    ]
    facts = {"item-B": ItemFacts("item-B", bundle_pricing_level="bundle")}
    catalogue = CatalogueDefaults(categories["Professional Services"], 0, 0, {})
    services: dict[str, int] = {}

    def push(mode: BundleMode) -> tuple[PlannedLine, ...]:
        planned = plan_quote_lines(lines, mode, document_id="DOC1", items=facts)
        item_ids = {}
        for line in planned:
            if line.item_type is KaseyaItemType.INVENTORY_PRODUCT:
                item_ids[line.line_key] = product_index_id
                continue
            if line.item_name not in services:
                services[line.item_name] = send(catalogue_request(line, catalogue))["id"]
            item_ids[line.line_key] = services[line.item_name]
        for request in quote_line_requests(quote_id, "DOC1", planned, client.quote_line_items(quote_id), item_ids):
            send(request)
        kaseya_lines = client.quote_line_items(quote_id)
        assert sum(D(str(line["total"])) for line in kaseya_lines) == document_amount(lines) == D(220)
        by_key = {line["extDistReference"]: line for line in kaseya_lines}
        for line in planned:
            body = quote_line_body(line, item_ids[line.line_key])
            assert readback_differences(body, by_key[line.line_key], QUOTE_LINE_READBACK_FIELDS) == []
        assert quote_line_requests(quote_id, "DOC1", planned, kaseya_lines, item_ids) == ()
        return planned

    push(BundleMode.CHILDREN_WITH_BUNDLE_PRICE_SPLIT)
    assert len(client.quote_line_items(quote_id)) == 5
    push(BundleMode.CHILDREN_WITH_BUNDLE_PRICE_SPLIT)  # a second push: nothing added
    assert len(client.quote_line_items(quote_id)) == 5
    push(BundleMode.SINGLE_SERVICE_ITEM)  # the children's lines are retired, the bundle's added
    assert len(client.quote_line_items(quote_id)) == 6


def test_the_push_domain_imports_no_io_layer():
    code = ("import importlib, pkgutil, sys, zk_pipelines.domain.push_plan as plan, zk_pipelines.domain.bundles; "
            "[importlib.import_module(f'{plan.__name__}.{m.name}') for m in pkgutil.iter_modules(plan.__path__)]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'requests', 'duckdb') "
            "or m.startswith(('zk_pipelines.clients', 'zk_pipelines.storage', 'zk_pipelines.defs'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
