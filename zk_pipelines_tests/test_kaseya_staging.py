"""Raw Kaseya records -> staging rows. Every payload is written once in camelCase (the wire) and run in
three spellings: camelCase dicts, PascalCase dicts (the contract) and KaseyaRecords (the client)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from zk_pipelines.clients.kaseya_wire import parse_json
from zk_pipelines.domain.entities import KASEYA_SOURCE, STAGED_COLUMNS
from zk_pipelines.domain.kaseya_staging import (
    STAGING_PROBLEM,
    ProductPricing,
    StagingProblem,
    employee_emails,
    item_type,
    read_field,
    stage_accounts,
    stage_opportunities,
    stage_opportunity_statuses,
    stage_products,
)
from zk_pipelines_tests.contacts_in_sql import stage_contacts_in_sql


def pascal(value):
    if isinstance(value, dict):
        return {key[0].upper() + key[1:]: pascal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [pascal(item) for item in value]
    return value


SPELLINGS = {
    "camelCase": lambda record: record,
    "PascalCase": pascal,
    "KaseyaRecord": lambda record: parse_json(json.dumps(record)),
}


@pytest.fixture(params=list(SPELLINGS))
def spell(request):
    return SPELLINGS[request.param]


def address(street: str, *, main=False, billing=False, kind: str | None = None, **more) -> dict:
    return {"id": 1_000_000 + sum(map(ord, street)), "address1": street, "address2": None, "city": "Austin",
            "state": "TX", "zipCode": "78701", "country": "United States", "phone": f"+1 {street}",
            "isMain": main, "isBilling": billing, "addressTypeId": None, "addressType": kind, **more}


def location(location_id: int, name: str, addresses: list[dict], *, main=False, active=True) -> dict:
    return {"id": location_id, "locationName": name, "isMain": main, "isActive": active, "addresses": addresses}


def account(locations: list[dict] | None, **more) -> dict:
    return {"id": 100001, "accountCode": "ACME", "accountName": "Acme Dental LLC", "accountTypeId": 1,
            "accountType": "Customer", "website": "https://acme.example", "isActive": True,
            "accountManagerId": 900002, "accountManagerUserName": "grace.evans@msp.example",
            "locations": locations, "createdOn": "2026-01-01T08:00:00", "modifiedOn": "2026-02-03T04:05:06",
            **more}


def only(rows: list[dict]) -> dict:
    assert len(rows) == 1, rows
    assert STAGING_PROBLEM not in rows[0], rows[0][STAGING_PROBLEM]
    return rows[0]


def shipping_streets(row: dict) -> list[str]:
    return [a["address1"] for a in json.loads(row["shipping_addresses"])]


# --- reading fields --------------------------------------------------------------------------------


@pytest.mark.parametrize(("record", "names", "expected"), [
    ({"accountName": "a"}, ("AccountName",), "a"),
    ({"AccountName": "a"}, ("AccountName",), "a"),
    ({"ACCOUNTNAME": "a"}, ("accountName",), "a"),
    ({"account_name": "a"}, ("AccountName",), "a"),
    ({"accountName": None, "AccountName": "b"}, ("AccountName",), "b"),
    ({"other": 1}, ("AccountName",), None),
    ({"partNumber": None, "sku": "S"}, ("PartNumber", "SKU"), "S"),
])
def test_read_field_ignores_case_and_underscores(record, names, expected):
    assert read_field(record, *names) == expected


# --- accounts: which address is billing, which are shipping -------------------------------------------

ADDRESS_CASES = {
    "billing flag on the main location (the main location is not listed first)": (
        [location(1, "Branch 1", [address("branch main", main=True, billing=True),
                                  address("branch ship", kind="Shipping")]),
         location(2, "Headquarters", [address("hq main", main=True, kind="Main"),
                                      address("hq bill", billing=True, kind="Billing"),
                                      address("hq ship", kind="Shipping")], main=True)],
        {"main_location_id": 2, "main_location_name": "Headquarters", "billing_address1": "hq bill",
         "main_phone": "+1 hq main"},
        ["hq ship", "branch ship"],
    ),
    "no billing flag: the address typed Billing": (
        [location(1, "HQ", [address("hq main", main=True), address("hq typed bill", kind="billing")], main=True)],
        {"main_location_id": 1, "billing_address1": "hq typed bill", "main_phone": "+1 hq main"},
        [],
    ),
    "no billing address at all: the main location's main address": (
        [location(1, "HQ", [address("hq other"), address("hq main", main=True)], main=True)],
        {"billing_address1": "hq main", "main_phone": "+1 hq main"},
        [],
    ),
    "no main location: the first active one": (
        [location(1, "Closed", [address("closed bill", billing=True)], active=False),
         location(2, "Open", [address("open bill", billing=True), address("open ship", kind="SHIPPING")])],
        {"main_location_id": 2, "billing_address1": "open bill"},
        ["open ship"],
    ),
    "inactive locations ship nothing; the same shipping address is listed once": (
        [location(1, "HQ", [address("hq main", main=True, billing=True), address("dock", kind="Shipping")],
                  main=True),
         location(2, "Branch", [address("dock", kind="Shipping")]),
         location(3, "Old", [address("old dock", kind="Shipping")], active=False)],
        {"billing_address1": "hq main"},
        ["dock"],
    ),
    "a main location without addresses": (
        [location(1, "HQ", [], main=True)],
        {"main_location_id": 1, "billing_address1": None, "billing_city": None, "main_phone": None},
        [],
    ),
    "no locations": (
        [],
        {"main_location_id": None, "main_location_name": None, "billing_address1": None, "billing_city": None,
         "billing_zip_code": None, "main_phone": None},
        [],
    ),
    "Locations null": (
        None,
        {"main_location_id": None, "billing_address1": None},
        [],
    ),
}


@pytest.mark.parametrize(("locations", "expected", "shipping"), ADDRESS_CASES.values(), ids=ADDRESS_CASES.keys())
def test_account_addresses(spell, locations, expected, shipping):
    row = only(stage_accounts([spell(account(locations))]))
    assert {key: row[key] for key in expected} == expected
    assert shipping_streets(row) == shipping


def test_account_row_flattens_every_column(spell):
    locations = [location(7, "HQ", [address("1 Main St", main=True, billing=True, kind="Main")], main=True)]
    row = only(stage_accounts([spell(account(locations))], employee_emails={900002: "grace@msp.example"}))
    assert row == {
        "kaseya_id": 100001, "account_code": "ACME", "name": "Acme Dental LLC", "account_type_id": 1,
        "account_type": "Customer", "website": "https://acme.example", "is_active": True,
        "account_manager_id": 900002, "account_manager_email": "grace@msp.example",
        "main_location_id": 7, "main_location_name": "HQ", "main_phone": "+1 1 Main St",
        "billing_address1": "1 Main St", "billing_address2": None, "billing_city": "Austin",
        "billing_state": "TX", "billing_zip_code": "78701", "billing_country": "United States",
        "billing_phone": "+1 1 Main St", "shipping_addresses": "[]",
        "created_on": datetime(2026, 1, 1, 8, 0, tzinfo=UTC),
        "modified_on": datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC),
    }


@pytest.mark.parametrize(("emails", "manager_id", "username", "expected"), [
    ({900002: "grace@msp.example"}, 900002, "someone@msp.example", "grace@msp.example"),
    ({}, 900002, "grace.evans@msp.example", "grace.evans@msp.example"),
    ({}, 900002, "gevans", None),
    ({900003: "other@msp.example"}, None, None, None),
])
def test_account_manager_email(spell, emails, manager_id, username, expected):
    record = account([], accountManagerId=manager_id, accountManagerUserName=username)
    assert only(stage_accounts([spell(record)], employee_emails=emails))["account_manager_email"] == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("2026-02-03T04:05:06", datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)),
    ("2026-02-03T04:05:06.1234567", datetime(2026, 2, 3, 4, 5, 6, 123456, tzinfo=UTC)),
    ("2026-02-03T04:05:06Z", datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)),
    ("2026-02-03T06:05:06+02:00", datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)),
    (None, None),
])
def test_modified_on_is_aware_utc(spell, raw, expected):
    row = only(stage_accounts([spell(account([], modifiedOn=raw))]))
    assert row["modified_on"] == expected
    assert row["modified_on"] is None or row["modified_on"].utcoffset().total_seconds() == 0


UNREADABLE = {
    "not an object": (["not", "a", "record"], None, "is_object"),
    "a bare string": ("junk", None, "is_object"),
    "no id": ({"accountName": "Nameless"}, None, "has_id"),
    "an id that is not a number": ({"id": "A-17", "accountName": "Odd"}, None, "has_id"),
    "locations that are not a list": ({"id": 100009, "accountName": "Odd", "locations": "HQ"}, 100009, "type"),
    "a date that is not a date": ({"id": 100010, "accountName": "Odd", "modifiedOn": "yesterday"}, 100010, "type"),
}


@pytest.mark.parametrize(("bad", "kaseya_id", "check"), UNREADABLE.values(), ids=UNREADABLE.keys())
def test_unreadable_account_is_a_problem_row_and_the_batch_goes_on(spell, bad, kaseya_id, check):
    good = account([])
    rows = stage_accounts([spell(good), spell(bad) if isinstance(bad, dict) else bad, spell(good | {"id": 100002})])
    assert [row["kaseya_id"] for row in rows] == [100001, kaseya_id, 100002]
    problem = rows[1][STAGING_PROBLEM]
    assert isinstance(problem, StagingProblem)
    assert problem.check == check
    assert problem.reason.startswith("account ")
    assert set(rows[1]) == {"kaseya_id", STAGING_PROBLEM}
    assert STAGING_PROBLEM not in rows[0] and STAGING_PROBLEM not in rows[2]


# --- contacts --------------------------------------------------------------------------------------


def contact(**more) -> dict:
    return {"id": 300017, "accountId": 100001, "accountName": "Acme Dental LLC", "locationId": 200001,
            "firstName": "Chloé", "lastName": "Dubois", "jobTitle": "Office Manager", "isPoc": False,
            "isActive": True, "modifiedOn": "2026-02-03T04:05:06",
            "emails": [{"id": 1, "emailAddress": "chloe@acme.example", "emailTypeId": 1, "isDefault": True}],
            "phones": [{"id": 2, "phone": "+1 555 0100", "phoneTypeId": 1, "isDefault": True}], **more}


def email(text: str | None, default=False) -> dict:
    return {"id": 9, "emailAddress": text, "emailTypeId": 1, "emailType": "Work", "isDefault": default}


def phone(text: str, default=False, field="phone") -> dict:
    return {"id": 8, field: text, "phoneTypeId": 1, "isDefault": default}


CONTACT_CASES = {
    "POC": ({"isPoc": True}, {"is_poc": True}),
    "not POC": ({"isPoc": False}, {"is_poc": False}),
    "IsPoc absent": ({"isPoc": None}, {"is_poc": False}),
    "the default e-mail, listed second": (
        {"emails": [email("home@x.example"), email("work@x.example", default=True)]},
        {"email": "work@x.example"}),
    "no default e-mail: the first listed": (
        {"emails": [email("first@x.example"), email("second@x.example")]}, {"email": "first@x.example"}),
    "an empty default e-mail is skipped": (
        {"emails": [email("  ", default=True), email("real@x.example")]}, {"email": "real@x.example"}),
    "no e-mails": ({"emails": []}, {"email": None}),
    "the default phone, listed last": (
        {"phones": [phone("+1 111"), phone("+1 222"), phone("+1 333", default=True)]}, {"phone": "+1 333"}),
    "no default phone: the first listed": ({"phones": [phone("+1 111"), phone("+1 222")]}, {"phone": "+1 111"}),
    "a phone under PhoneNumber (the input DTO's name)": (
        {"phones": [phone("+1 444", default=True, field="phoneNumber")]}, {"phone": "+1 444"}),
    "names are trimmed, empty means none": (
        {"firstName": "  Ann ", "lastName": "", "jobTitle": None},
        {"first_name": "Ann", "last_name": None, "job_title": None}),
}


@pytest.mark.parametrize(("change", "expected"), CONTACT_CASES.values(), ids=CONTACT_CASES.keys())
def test_contact_rows(spell, change, expected):
    row = only(stage_contacts_in_sql([spell(contact(**change))]))
    assert {key: row[key] for key in expected} == expected
    assert (row["kaseya_id"], row["account_id"], row["location_id"]) == (300017, 100001, 200001)
    assert set(row) == {name for name, _ in STAGED_COLUMNS["contacts"]}


# Values of other kinds and other spellings, read as the per-record readers read them.
CONTACT_READINGS = {
    "ids and numbers as text, padded": ({"id": " 300017 ", "accountId": "100001", "locationId": 200001.0}, {}),
    "text from numbers": ({"firstName": 42, "lastName": 4.5, "jobTitle": 1e16},
                          {"first_name": "42", "last_name": "4.5", "job_title": "1e+16"}),
    "flags from text and 0/1": ({"isPoc": " TRUE ", "isActive": 0}, {"is_poc": True, "is_active": False}),
    "Poc when IsPoc is absent": ({"isPoc": None, "poc": "true"}, {"is_poc": True}),
    "snake_case and SHOUTING": ({"firstName": None, "first_name": "Snake", "lastName": None, "LAST_NAME": "Shout"},
                                {"first_name": "Snake", "last_name": "Shout"}),
    "two spellings: the first non-null in the record's order": (
        {"firstName": None, "FirstName": "Second", "FIRSTNAME": "Third"}, {"first_name": "Second"}),
    "e-mail entries spelled otherwise, flagged by 1": (
        {"emails": [{"EMAIL_ADDRESS": "a@x.example"}, {"Email_Address": "b@x.example", "is_default": 1}]},
        {"email": "b@x.example"}),
    "a phone as a number": ({"phones": [{"phone": 5550100}]}, {"phone": "5550100"}),
    "a date only": ({"modifiedOn": "2026-02-03"}, {"modified_on": datetime(2026, 2, 3, tzinfo=UTC)}),
    "a basic date-time, Z": ({"modifiedOn": "20260203T040506Z"},
                             {"modified_on": datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)}),
    "seven fraction digits, an offset": ({"modifiedOn": "2026-02-03T04:05:06.1234567+05:30"},
                                         {"modified_on": datetime(2026, 2, 2, 22, 35, 6, 123456, tzinfo=UTC)}),
    "a comma fraction, an offset with seconds": ({"modifiedOn": "2026-02-03T04:05,5-01:00:30"},
                                                 {"modified_on": datetime(2026, 2, 3, 5, 5, 30, 500000, tzinfo=UTC)}),
    "hours only, any separator, padded": ({"modifiedOn": " 2026-02-03 04 "},
                                          {"modified_on": datetime(2026, 2, 3, 4, tzinfo=UTC)}),
}


@pytest.mark.parametrize(("change", "expected"), CONTACT_READINGS.values(), ids=CONTACT_READINGS.keys())
def test_contact_values_of_other_kinds_and_spellings(change, expected):
    row = only(stage_contacts_in_sql([contact(**change)]))
    assert {key: row[key] for key in expected} == expected
    assert (row["kaseya_id"], row["account_id"], row["location_id"]) == (300017, 100001, 200001)


_CANNOT = "Kaseya sent a record this pipeline cannot read, check it in Kaseya"
UNREADABLE_CONTACTS = {
    "an id that is not whole": ({"id": 4.5}, "has_id", "kaseya_id", "4.5",
                                f"contact 'Acme Dental LLC' (record 1 of the batch): Id 4.5 is not a whole number; "
                                f"{_CANNOT}"),
    "no id": ({"id": None, "accountName": None, "lastName": "Dubois"}, "has_id", "kaseya_id", None,
              f"contact 'Dubois' (record 1 of the batch): it has no Id, so it cannot be tracked; {_CANNOT}"),
    "a flag as an account": ({"accountId": True}, "type", "account_id", "True",
                             f"contact 300017: AccountId True is not a whole number; {_CANNOT}"),
    "digits beside text": ({"locationId": "20 01"}, "type", "location_id", "20 01",
                           f"contact 300017: LocationId '20 01' is not a whole number; {_CANNOT}"),
    "a name as an object": ({"lastName": None, "Last_Name": {"Family_Name": "Dubois"}}, "type", "last_name",
                            "{'familyname': 'Dubois'}",
                            f"contact 300017: LastName {{'familyname': 'Dubois'}} is not text; {_CANNOT}"),
    "a flag as a word": ({"isActive": "yes"}, "type", "is_active", "yes",
                         f"contact 300017: IsActive 'yes' is not true or false; {_CANNOT}"),
    "1.0 is not a flag": ({"isPoc": 1.0}, "type", "is_poc", "1.0",
                          f"contact 300017: IsPoc 1.0 is not true or false; {_CANNOT}"),
    "e-mails not a list": ({"emails": "a@x.example"}, "type", "email", "a@x.example",
                           f"contact 300017: Emails 'a@x.example' is not a list of objects; {_CANNOT}"),
    "an address as a flag": ({"emails": [email("a@x.example"), {"emailAddress": True}]}, "type", "email", "True",
                             f"contact 300017: EmailAddress True is not text; {_CANNOT}"),
    "a default flag as a word": ({"phones": [phone("+1 111", default="maybe")]}, "type", "phone", "maybe",
                                 f"contact 300017: IsDefault 'maybe' is not true or false; {_CANNOT}"),
    "a blank date-time": ({"modifiedOn": "  "}, "type", "modified_on", "  ",
                          f"contact 300017: ModifiedOn '  ' is not a date-time; {_CANNOT}"),
    "no such day": ({"modifiedOn": "2026-02-30T00:00:00"}, "type", "modified_on", "2026-02-30T00:00:00",
                    f"contact 300017: ModifiedOn '2026-02-30T00:00:00' is not a date-time; {_CANNOT}"),
    "no such hour": ({"modifiedOn": "2026-02-03T24:00:00"}, "type", "modified_on", "2026-02-03T24:00:00",
                     f"contact 300017: ModifiedOn '2026-02-03T24:00:00' is not a date-time; {_CANNOT}"),
    "an offset of a day": ({"modifiedOn": "2026-02-03T04:00:00+24:00"}, "type", "modified_on",
                           "2026-02-03T04:00:00+24:00",
                           f"contact 300017: ModifiedOn '2026-02-03T04:00:00+24:00' is not a date-time; {_CANNOT}"),
    "before the year 1 in UTC": (
        {"modifiedOn": "0001-01-01T00:00:00+05:00"}, "type", "modified_on", "0001-01-01T00:00:00+05:00",
        f"contact 300017: ModifiedOn '0001-01-01T00:00:00+05:00' is not a date-time; {_CANNOT}"),
    "seconds since 1970": ({"createdOn": 1700000000}, "type", "created_on", "1700000000",
                           f"contact 300017: CreatedOn 1700000000 is not a date-time; {_CANNOT}"),
}


@pytest.mark.parametrize(("change", "check", "column", "value", "reason"), UNREADABLE_CONTACTS.values(),
                         ids=UNREADABLE_CONTACTS.keys())
def test_an_unreadable_contact_is_one_row_carrying_its_problem(change, check, column, value, reason):
    [row] = stage_contacts_in_sql([contact(**change)])
    assert row[STAGING_PROBLEM] == StagingProblem(check=check, column=column, value=value, reason=reason)


def test_the_first_unreadable_field_is_the_one_reported():
    [row] = stage_contacts_in_sql([contact(accountId="x", isActive="x", modifiedOn="x")])
    assert row[STAGING_PROBLEM].column == "account_id"


@pytest.mark.parametrize("record", ["not a record", ["a", {"b": None}], None, 7])
def test_a_payload_that_is_not_an_object_is_rejected_naming_its_place(record):
    [row] = stage_contacts_in_sql([record])
    problem = row[STAGING_PROBLEM]
    assert (problem.check, problem.value) == ("is_object", None if record is None else str(record))
    assert problem.reason == (f"contact (record 1 of the batch): it is not a JSON object but {type(record).__name__}; "
                              f"{_CANNOT}")


# --- opportunities ---------------------------------------------------------------------------------


def opportunity(**more) -> dict:
    return {"id": 400001, "subject": "Refresh #1 for Acme", "statusId": 3, "status": "Proposal",
            "accountId": 100001, "accountName": "Acme Dental LLC", "accountLocationId": 200001,
            "contactId": 300017, "typeId": 1, "type": "New Business", "probability": 50.0, "rating": "Hot",
            "ratingId": 1, "leadSource": "Referral", "salesRepresentativeFirstName": "Grace",
            "salesRepresentativeLastName": "Evans", "salesRepresentativeUserId": 900002, "amount": 12500.5,
            "inPipeline": True, "description": "Ten laptops", "customerPO": "PO-77",
            "closeDate": "2026-03-31T00:00:00", "createdOn": "2026-01-05T10:00:00",
            "modifiedOn": "2026-02-01T10:00:00", **more}


def test_opportunity_row(spell):
    row = only(stage_opportunities([spell(opportunity())], employee_emails={900002: "grace@msp.example"}))
    assert row == {
        "kaseya_id": 400001, "subject": "Refresh #1 for Acme", "status_id": 3, "status": "Proposal",
        "account_id": 100001, "account_name": "Acme Dental LLC", "account_location_id": 200001,
        "contact_id": 300017, "type_id": 1, "type": "New Business", "rating": "Hot", "lead_source": "Referral",
        "probability": 50.0, "amount": 12500.5, "sales_rep_id": 900002, "sales_rep_name": "Grace Evans",
        "sales_rep_email": "grace@msp.example", "in_pipeline": True, "description": "Ten laptops",
        "customer_po": "PO-77", "close_date": datetime(2026, 3, 31, tzinfo=UTC),
        "created_on": datetime(2026, 1, 5, 10, tzinfo=UTC), "modified_on": datetime(2026, 2, 1, 10, tzinfo=UTC),
    }


@pytest.mark.parametrize(("change", "expected"), [
    ({"contactId": None}, {"contact_id": None}),
    ({"salesRepresentativeUserId": 900099}, {"sales_rep_email": None}),
    ({"amount": "12.5"}, {"amount": 12.5}),
    ({"amount": float("nan")}, {"amount": "nan"}),  # kept: validation rejects it with the record's other problems
])
def test_opportunity_variants(spell, change, expected):
    row = only(stage_opportunities([spell(opportunity(**change))], employee_emails={900002: "g@msp.example"}))
    shown = {key: ("nan" if row[key] != row[key] else row[key]) for key in expected}
    assert shown == expected


# --- products --------------------------------------------------------------------------------------


def product_row(index_id: int, warehouse: str, **more) -> dict:
    return {"id": f"{index_id}-{warehouse}", "productIndexId": index_id, "productNumber": f"HW-{index_id}",
            "productName": f"Dell Laptop #{index_id}", "productDescription": "Laptop by Dell", "upc": None,
            "warehouse": warehouse, "warehouseId": 1, "qtyInStock": 3.0, "category": "Hardware",
            "productType": "Hardware", "manufacturer": "Dell", **more}


LEVELS = [
    {"id": 12, "name": "Partner", "price": 900.0, "margin": 10.0, "isActive": True, "isDefault": False},
    {"id": 13, "name": "Government", "price": 950.0, "margin": 12.0, "isActive": False, "isDefault": False},
    {"id": 11, "name": "Retail", "price": 1000.0, "margin": 20.0, "isActive": True, "isDefault": True},
]
SUPPLIERS = [
    {"id": 850001, "name": "Ingram Micro", "partNumber": "ING-500001", "unitCost": 700.0},
    {"id": 850002, "name": "TD SYNNEX", "partNumber": "TD-500001", "unitCost": 650.0},
]


def pricing(spell, levels=LEVELS, suppliers=SUPPLIERS, default_cost=None) -> ProductPricing:
    return ProductPricing([spell(level) for level in levels], [spell(s) for s in suppliers],
                          spell(default_cost) if isinstance(default_cost, dict) else default_cost)


def test_products_deduplicate_across_warehouses_with_first_supplier_and_levels(spell):
    rows = stage_products(
        [spell(product_row(500001, w)) for w in ("Main Warehouse", "West Warehouse", "Drop Ship")]
        + [spell(product_row(500002, "Main Warehouse"))],
        {500001: pricing(spell, default_cost={"id": 500001, "defaultCost": 640.0})},
    )
    assert [row["kaseya_id"] for row in rows] == [500001, 500002]
    first = rows[0]
    assert {key: first[key] for key in ("product_number", "name", "description", "category", "item_type",
                                         "manufacturer", "supplier_name", "supplier_part_number", "unit_cost")} == {
        "product_number": "HW-500001", "name": "Dell Laptop #500001", "description": "Laptop by Dell",
        "category": "Hardware", "item_type": "hardware", "manufacturer": "Dell",
        "supplier_name": "Ingram Micro", "supplier_part_number": "ING-500001", "unit_cost": 700.0,
    }
    assert json.loads(first["pricing_levels"]) == [
        {"id": 11, "name": "Retail", "price": 1000.0, "is_default": True},
        {"id": 12, "name": "Partner", "price": 900.0, "is_default": False},
    ]
    # No pricing read yet for the second product: unknown, not "no pricing".
    assert {key: rows[1][key] for key in ("supplier_name", "supplier_part_number", "unit_cost", "pricing_levels")} == {
        "supplier_name": None, "supplier_part_number": None, "unit_cost": None, "pricing_levels": None}
    assert all(set(row) == {name for name, _ in STAGED_COLUMNS["products"]} for row in rows)


@pytest.mark.parametrize(("suppliers", "default_cost", "expected"), [
    # The published suppliers/lookup row has only {Id, Name}: no part number, cost from defaultcost.
    ([{"id": 850001, "name": "Ingram Micro"}], {"id": 1, "defaultCost": 640.0}, ("Ingram Micro", None, 640.0)),
    ([{"id": 850001, "name": "Ingram Micro"}], 655.5, ("Ingram Micro", None, 655.5)),
    ([], {"id": 1, "defaultCost": 0.0}, (None, None, 0.0)),
    ([], None, (None, None, None)),
])
def test_product_supplier_and_cost_fallbacks(spell, suppliers, default_cost, expected):
    row = only(stage_products([spell(product_row(500001, "Main Warehouse"))],
                              {500001: pricing(spell, suppliers=suppliers, default_cost=default_cost)}))
    assert (row["supplier_name"], row["supplier_part_number"], row["unit_cost"]) == expected


def test_product_pricing_as_a_plain_mapping(spell):
    row = only(stage_products([spell(product_row(500001, "Main Warehouse"))], {500001: {
        "pricingLevels": [spell(LEVELS[2])], "suppliers": [spell(SUPPLIERS[1])], "defaultCost": 1.0}}))
    assert (row["supplier_name"], row["unit_cost"]) == ("TD SYNNEX", 650.0)
    assert [level["name"] for level in json.loads(row["pricing_levels"])] == ["Retail"]


def test_product_category_and_type_from_the_filtered_scans_win(spell):
    published = {k: v for k, v in product_row(500001, "Main").items()
                 if k not in ("category", "productType", "manufacturer")}
    rows = stage_products([spell(published), spell(product_row(500002, "Main")), spell(product_row(500003, "Main"))],
                          categories={500001: "Software", 500002: "Managed Services"},
                          product_types={500001: "Software"})
    assert [(r["category"], r["product_type"], r["item_type"]) for r in rows] == [
        ("Software", "Software", "software"),
        ("Managed Services", "Hardware", "hardware"),
        ("Hardware", "Hardware", "hardware"),
    ]


def test_product_without_index_id_is_a_problem_row(spell):
    rows = stage_products([spell(product_row(500001, "Main")), spell({"id": "x", "productName": "Orphan"}),
                           spell(product_row(500001, "West"))])
    assert [row["kaseya_id"] for row in rows] == [500001, None]
    assert rows[1][STAGING_PROBLEM].check == "has_id"
    assert "ProductIndexId" in rows[1][STAGING_PROBLEM].reason


@pytest.mark.parametrize(("product_type", "category", "expected"), [
    ("Hardware", "Hardware", "hardware"),
    ("Software", "Hardware", "software"),
    (None, "Software", "software"),
    (None, "Managed Services", "service"),
    ("Labour", None, "labor"),
    ("Service", "Professional Services", "service"),
    (None, "Bundles", "hardware"),
    (None, None, "hardware"),
])
def test_item_type(product_type, category, expected):
    assert item_type(product_type, category) == expected


# --- employees and statuses ------------------------------------------------------------------------


def test_employees_and_their_emails_from_their_field_spec(spell):
    rows = KASEYA_SOURCE["employees"].stage([
        spell({"id": 900001, "firstName": "Anna", "lastName": "Adams", "emailAddress": "anna.adams0@msp.example",
               "username": "anna", "jobTitle": "Sales", "isActive": True}),
        spell({"id": 900002, "firstName": "Ben", "lastName": "Becker", "emailAddress": None, "isActive": False}),
    ], inputs=None)
    assert [(r["kaseya_id"], r["email"], r["is_active"]) for r in rows] == [
        (900001, "anna.adams0@msp.example", True), (900002, None, False)]
    assert employee_emails(rows) == {900001: "anna.adams0@msp.example"}


@pytest.mark.parametrize(("action", "kind"), [("Won", "won"), ("Lost", "lost"), ("Open", "open"), (None, "open")])
def test_opportunity_status_kind(spell, action, kind):
    row = only(stage_opportunity_statuses([spell({
        "id": 7, "name": "Closed Won", "probability": 100.0, "isActive": True, "isPipeline": False,
        "statusActionId": 2, "statusActionName": action})]))
    assert (row["kaseya_id"], row["name"], row["probability"], row["kind"]) == (7, "Closed Won", 100.0, kind)


# --- the column lists ------------------------------------------------------------------------------


@pytest.mark.parametrize("entity", STAGED_COLUMNS)
def test_column_lists_derived_from_the_models_are_duckdb_definitions(entity):
    columns = STAGED_COLUMNS[entity]
    names = [name for name, _ in columns]
    assert names[0] == "kaseya_id" and len(set(names)) == len(names)
    assert {kind for _, kind in columns} <= {"BIGINT", "DOUBLE", "BOOLEAN", "VARCHAR", "TIMESTAMPTZ"}
    assert all(name == name.lower() and name.isidentifier() for name in names)


def test_a_contact_without_a_usable_id_is_named_by_its_place_in_the_whole_batch_when_staged_in_parts():
    from zk_pipelines.domain.kaseya_staging import STAGING_PROBLEM

    rows = stage_contacts_in_sql([{"Id": 4.5, "FirstName": "Ann"}, {"Id": 7, "FirstName": "Ben"}], positions=[41, 42])
    assert "(record 41 of the batch)" in rows[0][STAGING_PROBLEM].reason
    assert rows[1]["kaseya_id"] == 7 and STAGING_PROBLEM not in rows[1]
