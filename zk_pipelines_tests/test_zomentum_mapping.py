"""Staging rows -> Zomentum payloads (the spec's entity mapping tables), and the change detection that decides
whether a payload is sent."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from zk_pipelines.domain.change_detection import (
    canonical_json,
    changed_fields,
    partial_update,
    payload_hash,
)
from zk_pipelines.domain.kaseya_staging import (
    ProductPricing,
    stage_accounts,
    stage_opportunities,
    stage_products,
)
from zk_pipelines.domain.staging_schemas import validate_rows
from zk_pipelines.domain.zomentum_mapping import (
    map_client,
    map_client_user,
    map_item,
    map_opportunity,
)
from zk_pipelines.sandbox.zomentum.schema import RESOURCES
from zk_pipelines_tests.contacts_in_sql import stage_contacts_in_sql

FALLBACK_OWNER = "usr-api"
ZOMENTUM_USERS = {"grace.evans@msp.example": "usr-grace", "anna.adams0@msp.example": "usr-anna"}


def owner_for(email: str | None) -> str:
    """What the caller supplies: Zomentum users by e-mail (case-insensitive), else the fallback owner."""
    return ZOMENTUM_USERS.get((email or "").lower(), FALLBACK_OWNER)


# Settings-like mapping: Kaseya status id -> the (pipeline, stage) pairs mapped to it, in pipeline order.
STAGES = {1: [("pl-sales", "st-new"), ("pl-renewals", "st-renewal-due")], 6: [("pl-sales", "st-won")]}
DEFAULT_STAGE = ("pl-sales", "st-new")


def stage_for(status_id: int, current_stage_id: str | None) -> tuple[str, str]:
    candidates = STAGES.get(status_id, [DEFAULT_STAGE])
    return next((pair for pair in candidates if pair[1] == current_stage_id), candidates[0])


def address(street, *, main=False, billing=False, kind=None, zip_code="78701", phone="+1 555 0100"):
    return {"address1": street, "address2": "Suite 5", "city": "Austin", "state": "TX", "zipCode": zip_code,
            "country": "United States", "phone": phone, "isMain": main, "isBilling": billing, "addressType": kind}


ACCOUNT = {
    "id": 100001, "accountName": "Müller & Söhne GmbH", "accountType": "Customer", "website": "https://ms.example",
    "accountManagerId": 900002, "accountManagerUserName": "Grace.Evans@msp.example",
    "modifiedOn": "2026-02-01T00:00:00",
    "locations": [
        {"id": 200001, "locationName": "Headquarters", "isMain": True, "isActive": True, "addresses": [
            address("1 Hauptstraße", main=True, kind="Main", phone="+49 30 1"),
            address("PO Box 9", billing=True, kind="Billing", zip_code="10115", phone=None),
            address("Dock 1", kind="Shipping")]},
        {"id": 200002, "locationName": "Branch 1", "isMain": False, "isActive": True, "addresses": [
            address("7 Rue de la Paix", main=True, billing=True, kind="Main"),
            address("Dock 2", kind="Shipping", zip_code="69001")]},
    ],
}


def one(rows: list[dict]) -> dict:
    assert len(rows) == 1 and "staging_problem" not in rows[0]
    return rows[0]


def zomentum_address(street, zip_code="78701", phone="+1 555 0100"):
    return {"address_line_1": street, "address_line_2": "Suite 5", "city": "Austin", "state": "TX",
            "pincode": zip_code, "country": "United States", "phone": phone}


# --- clients ---------------------------------------------------------------------------------------


def test_client_from_account():
    assert map_client(one(stage_accounts([ACCOUNT])), owner_for) == {
        "name": "Müller & Söhne GmbH",
        "company_type": "customer",
        "website": "https://ms.example",
        "phone": "+49 30 1",
        "billing_address": zomentum_address("PO Box 9", zip_code="10115", phone=None),
        "shipping_addresses": [zomentum_address("Dock 1"), zomentum_address("Dock 2", zip_code="69001")],
        "owner_user_id": "usr-grace",
    }


@pytest.mark.parametrize(("change", "expected"), [
    ({"locations": []}, {"billing_address": None, "shipping_addresses": [], "phone": None}),
    ({"accountType": "Vendor"}, {"company_type": "vendor"}),
    ({"accountType": "Reseller"}, {"company_type": None}),
    ({"accountType": None}, {"company_type": None}),
    ({"website": ""}, {"website": None}),
    ({"accountManagerUserName": "nobody@msp.example"}, {"owner_user_id": FALLBACK_OWNER}),
    ({"accountManagerUserName": None}, {"owner_user_id": FALLBACK_OWNER}),
])
def test_client_variants(change, expected):
    payload = map_client(one(stage_accounts([ACCOUNT | change])), owner_for)
    assert {key: payload[key] for key in expected} == expected


def test_owner_comes_from_the_employee_email_first():
    row = one(stage_accounts([ACCOUNT], employee_emails={900002: "anna.adams0@msp.example"}))
    assert map_client(row, owner_for)["owner_user_id"] == "usr-anna"


# --- client users ----------------------------------------------------------------------------------

CONTACT = {"id": 300017, "accountId": 100001, "firstName": "Zoë", "lastName": "Åberg", "jobTitle": "CEO",
           "isPoc": True, "emails": [{"emailAddress": "zoe@ms.example", "isDefault": True}],
           "phones": [{"phone": "+49 30 2", "isDefault": True}]}


@pytest.mark.parametrize(("change", "expected"), [
    ({}, {"name": {"first": "Zoë", "last": "Åberg"}, "email": "zoe@ms.example", "phone": "+49 30 2",
          "job_title": "CEO", "client_company_id": "cc-1", "contact_type": "primary_contact"}),
    ({"isPoc": False}, {"contact_type": "secondary_contact"}),
    ({"isPoc": None}, {"contact_type": "secondary_contact"}),
    ({"emails": [], "phones": [], "jobTitle": None}, {"email": None, "phone": None, "job_title": None}),
    ({"lastName": None}, {"name": {"first": "Zoë", "last": None}}),
])
def test_client_user_from_contact(change, expected):
    payload = map_client_user(one(stage_contacts_in_sql([CONTACT | change])), "cc-1")
    assert {key: payload[key] for key in expected} == expected


# --- opportunities ---------------------------------------------------------------------------------

OPPORTUNITY = {"id": 400001, "subject": "Refresh #1", "statusId": 1, "status": "Prospecting",
               "accountId": 100001, "contactId": 300017, "salesRepresentativeUserId": 900002,
               "probability": 50.0, "amount": 12500.5, "customerPO": "PO-77",
               "closeDate": "2026-03-31T00:00:00", "modifiedOn": "2026-02-01T00:00:00"}


def opportunity_payload(change=None, *, contact_id="cu-1", current_stage_id=None):
    row = one(stage_opportunities([OPPORTUNITY | (change or {})], employee_emails={900002: "grace.evans@msp.example"}))
    return map_opportunity(row, client_id="cc-1", contact_id=contact_id, owner_for=owner_for,
                           stage_for=stage_for, current_stage_id=current_stage_id)


def test_opportunity_mapping_with_the_resolvers():
    assert opportunity_payload() == {
        "name": "Refresh #1",
        "client_company_id": "cc-1",
        "primary_client_user_id": "cu-1",
        "linked_client_user_ids": ["cu-1"],
        "owner_user_id": "usr-grace",
        "opportunity_pipeline_id": "pl-sales",
        "opportunity_pipeline_stage_id": "st-new",
        "client_po_number": "PO-77",
        "estimated_close_date": "2026-03-31T00:00:00+00:00",
        "estimated_value": 12500.5,
        "close_probability": 50,
    }


@pytest.mark.parametrize(("change", "kwargs", "expected"), [
    ({}, {"current_stage_id": "st-renewal-due"},
     {"opportunity_pipeline_id": "pl-renewals", "opportunity_pipeline_stage_id": "st-renewal-due"}),
    ({"statusId": 6}, {"current_stage_id": "st-renewal-due"},
     {"opportunity_pipeline_id": "pl-sales", "opportunity_pipeline_stage_id": "st-won"}),
    ({"statusId": 5}, {}, {"opportunity_pipeline_id": "pl-sales", "opportunity_pipeline_stage_id": "st-new"}),
    ({}, {"contact_id": None}, {"primary_client_user_id": None, "linked_client_user_ids": []}),
    ({"salesRepresentativeUserId": 900077}, {}, {"owner_user_id": FALLBACK_OWNER}),
    ({"probability": 12.5}, {}, {"close_probability": 13}),
    ({"probability": 99.4}, {}, {"close_probability": 99}),
    ({"closeDate": "2026-03-31T23:30:00-05:00"}, {}, {"estimated_close_date": "2026-04-01T04:30:00+00:00"}),
    ({"closeDate": None, "customerPO": None}, {}, {"estimated_close_date": None, "client_po_number": None}),
])
def test_opportunity_variants(change, kwargs, expected):
    payload = opportunity_payload(change, **kwargs)
    assert {key: payload[key] for key in expected} == expected


# --- items -----------------------------------------------------------------------------------------

PRODUCT = {"id": "500001-1", "productIndexId": 500001, "productNumber": "HW-0700001", "productName": "Dell Laptop",
           "productDescription": "Laptop by Dell", "category": "Hardware", "productType": "Hardware"}
PRICING = ProductPricing(
    pricing_levels=[{"id": 2, "name": "Partner", "price": 900, "isActive": True, "isDefault": False},
                    {"id": 1, "name": "Retail", "price": 1000.0, "isActive": True, "isDefault": True},
                    {"id": 3, "name": "Government", "price": 950.0, "isActive": False, "isDefault": False}],
    suppliers=[{"id": 9, "name": "Ingram Micro", "partNumber": "ING-1", "unitCost": 700.0},
               {"id": 8, "name": "Pax8", "partNumber": "PX-1", "unitCost": 650.0}],
    default_cost={"id": 500001, "defaultCost": 640.0},
)


def pricing_entry(name, sell_price):
    return {"name": name, "billing_period": "one_time", "sell_price": sell_price, "setup_price": 0.0,
            "cost_price": 700.0, "supplier_name": "Ingram Micro", "supplier_sku": "ING-1"}


def test_item_from_product_with_pricing_levels():
    assert map_item(one(stage_products([PRODUCT], {500001: PRICING}))) == {
        "name": "Dell Laptop",
        "description": "Laptop by Dell",
        "type": "hardware",
        "manufacturer_part_number": "HW-0700001",
        "category": "Hardware",
        "pricing": [pricing_entry("Retail", 1000.0), pricing_entry("Partner", 900.0)],
    }


@pytest.mark.parametrize("pricing", [
    None,  # not read yet
    ProductPricing([], [], {"defaultCost": 5.0}),  # read, but no active level
], ids=["pricing not read", "no active level"])
def test_item_leaves_pricing_out_when_unknown(pricing):
    row = one(stage_products([PRODUCT], {500001: pricing} if pricing else {}))
    item = map_item(row)
    assert "pricing" not in item
    assert item["name"] == "Dell Laptop"


# --- rows read back from DuckDB map to the same payloads ------------------------------------------


@pytest.mark.parametrize(("entity", "rows", "mapper"), [
    ("accounts", lambda: stage_accounts([ACCOUNT]), lambda row: map_client(row, owner_for)),
    ("contacts", lambda: stage_contacts_in_sql([CONTACT]), lambda row: map_client_user(row, "cc-1")),
    ("opportunities", lambda: stage_opportunities([OPPORTUNITY]), lambda row: map_opportunity(
        row, client_id="cc-1", contact_id=None, owner_for=owner_for, stage_for=stage_for)),
    ("products", lambda: stage_products([PRODUCT], {500001: PRICING}), map_item),
])
def test_validated_frame_rows_map_like_the_staged_dicts(entity, rows, mapper):
    staged = rows()
    valid, rejects = validate_rows(entity, pd.DataFrame(staged))
    assert rejects.empty
    from_frame = mapper(valid.to_dict("records")[0])
    assert from_frame == mapper(staged[0])
    assert payload_hash(from_frame) == payload_hash(mapper(staged[0]))


# --- the payloads satisfy the Zomentum contract the sandbox enforces -------------------------------


class AnyRecord:
    def find(self, resource, record_id):
        return {"id": record_id}


@pytest.mark.parametrize(("resource", "payload"), [
    ("client/companies", lambda: map_client(one(stage_accounts([ACCOUNT])), owner_for)),
    ("client/companies", lambda: map_client(one(stage_accounts([ACCOUNT | {"locations": []}])), owner_for)),
    ("client/users", lambda: map_client_user(one(stage_contacts_in_sql([CONTACT])), "cc-1")),
    ("opportunities", lambda: opportunity_payload()),
    ("opportunities", lambda: opportunity_payload({"closeDate": None}, contact_id=None)),
    ("items", lambda: map_item(one(stage_products([PRODUCT], {500001: PRICING})))),
])
def test_payloads_pass_zomentum_write_validation(resource, payload):
    body = payload()
    assert RESOURCES[resource].validate(body, AnyRecord(), creating=True).keys() == body.keys()


# --- change detection ------------------------------------------------------------------------------

BASE = {"name": "Acme", "estimated_value": 100.0, "billing_address": {"city": "Austin", "pincode": "78701"},
        "pricing": [{"name": "Retail", "sell_price": 10.5}], "linked_client_user_ids": ["a"]}


@pytest.mark.parametrize(("left", "right"), [
    (BASE, dict(reversed(list(BASE.items())))),
    ({"a": 1.0}, {"a": 1}),
    ({"a": 0.1 + 0.2}, {"a": 0.3}),
    ({"a": -0.0}, {"a": 0}),
    ({"a": (1, 2)}, {"a": [1, 2]}),
    ({"a": {"y": 1, "x": 2}}, {"a": {"x": 2, "y": 1.0}}),
    ({"a": np.float64(2.5), "b": np.int64(3)}, {"a": 2.5, "b": 3}),
    ({"d": datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))}, {"d": datetime(2026, 1, 1, tzinfo=UTC)}),
])
def test_hash_ignores_representation(left, right):
    assert payload_hash(left) == payload_hash(right)


@pytest.mark.parametrize(("left", "right"), [
    ({"a": 1}, {"a": 2}),
    ({"a": 1}, {"a": True}),
    ({"a": None}, {}),
    ({"a": "1"}, {"a": 1}),
    ({"a": [1, 2]}, {"a": [2, 1]}),
    ({"a": 10.50}, {"a": 10.51}),
])
def test_hash_sees_real_changes(left, right):
    assert payload_hash(left) != payload_hash(right)


def test_hash_is_sha256_of_compact_sorted_json():
    payload = {"b": 1.0, "a": "Zoë"}
    assert canonical_json(payload) == '{"a":"Zoë","b":1}'
    assert payload_hash(payload) == hashlib.sha256('{"a":"Zoë","b":1}'.encode()).hexdigest()


@pytest.mark.parametrize(("change", "expected"), [
    ({}, []),
    ({"estimated_value": 100}, []),
    ({"name": "Acme Ltd"}, ["name"]),
    ({"billing_address": {"city": "Denver", "pincode": "78701"}}, ["billing_address.city"]),
    ({"billing_address": None}, ["billing_address"]),
    ({"pricing": [{"name": "Retail", "sell_price": 11}]}, ["pricing.0.sell_price"]),
    ({"pricing": []}, ["pricing"]),
    ({"linked_client_user_ids": ["a", "b"]}, ["linked_client_user_ids"]),
    ({"owner_user_id": "usr-1"}, ["owner_user_id"]),
    ({"name": "X", "billing_address": {"city": "Austin"}}, ["billing_address.pincode", "name"]),
])
def test_changed_fields(change, expected):
    new = {**BASE, **change}
    assert changed_fields(BASE, new) == expected


def test_changed_fields_reports_a_removed_key_and_everything_when_never_sent():
    assert changed_fields(BASE, {k: v for k, v in BASE.items() if k != "pricing"}) == ["pricing"]
    assert changed_fields(None, {"name": "A", "website": None}) == ["name", "website"]


def test_partial_update_sends_whole_top_level_fields_that_changed():
    new = {**BASE, "billing_address": {"city": "Denver", "pincode": "78701"}, "estimated_value": 100}
    assert partial_update(BASE, new) == {"billing_address": {"city": "Denver", "pincode": "78701"}}
    assert partial_update(BASE, BASE) == {}
    assert json.dumps(partial_update(None, BASE), sort_keys=True) == json.dumps(BASE, sort_keys=True)
