"""Validation of staged rows: every failing row becomes reject lines naming the record, the check, the column
and the value; the rest of the batch is kept; duplicates keep their latest version."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pandas as pd
import pytest

from zk_pipelines.domain.entities import STAGED_COLUMNS, staged_entity
from zk_pipelines.domain.kaseya_staging import (
    ProductPricing,
    stage_accounts,
    stage_opportunities,
    stage_products,
)
from zk_pipelines.domain.staging_schemas import (
    REJECT_COLUMNS,
    VALUE_LIMIT,
    as_validated_types,
    empty_frame,
    validate_rows,
    validate_typed_rows,
)
from zk_pipelines_tests.contacts_in_sql import stage_contacts_in_sql

REJECT_NAMES = [name for name, _ in REJECT_COLUMNS]


def account(kaseya_id: int, **more) -> dict:
    return {"id": kaseya_id, "accountName": f"Account {kaseya_id}", "accountType": "Customer",
            "modifiedOn": "2026-02-01T00:00:00", "locations": [], **more}


def contact(kaseya_id: int, **more) -> dict:
    return {"id": kaseya_id, "accountId": 100001, "firstName": "Ann", "lastName": "Lee", "isPoc": False,
            "emails": [{"emailAddress": f"c{kaseya_id}@acme.example", "isDefault": True}],
            "modifiedOn": "2026-02-01T00:00:00", **more}


def opportunity(kaseya_id: int, **more) -> dict:
    return {"id": kaseya_id, "subject": f"Deal {kaseya_id}", "statusId": 1, "accountId": 100001,
            "amount": 1000.0, "probability": 50.0, "closeDate": "2026-03-01T00:00:00",
            "modifiedOn": "2026-02-01T00:00:00", **more}


def product(index_id: int, **more) -> dict:
    return {"id": f"{index_id}-1", "productIndexId": index_id, "productNumber": f"HW-{index_id}",
            "productName": f"Laptop {index_id}", "category": "Hardware", **more}


def priced(price: float = 100.0, cost: float | None = 60.0, name: str = "Retail") -> ProductPricing:
    return ProductPricing([{"id": 1, "name": name, "price": price, "isActive": True, "isDefault": True}],
                          [{"id": 9, "name": "Ingram Micro"}], {"id": 1, "defaultCost": cost})


KNOWN = {"accounts": {100001, 100002}, "opportunity_statuses": {1, 2, 3}}


def staged(entity: str, records: list, pricing: dict | None = None) -> pd.DataFrame:
    if entity == "accounts":
        rows = stage_accounts(records)
    elif entity == "contacts":
        rows = stage_contacts_in_sql(records)
    elif entity == "opportunities":
        rows = stage_opportunities(records)
    else:
        rows = stage_products(records, pricing or {})
    return pd.DataFrame(rows)


class _AnyJson:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and isinstance(json.loads(other), list)

    def __repr__(self) -> str:
        return "<JSON text>"


ANY_JSON = _AnyJson()

REJECT_CASES = {
    "bad e-mail": (
        "contacts", [contact(300017, emails=[{"emailAddress": "bob@@x", "isDefault": True}])], None,
        [(300017, "email_shape", "email", "bob@@x")],
    ),
    "unknown account id (contact)": (
        "contacts", [contact(300018, accountId=999)], None,
        [(300018, "known_account", "account_id", "999")],
    ),
    "missing first name and no account": (
        "contacts", [contact(300019, firstName=" ", accountId=None)], None,
        [(300019, "not_nullable", "account_id", None), (300019, "not_nullable", "first_name", None)],
    ),
    "unknown account id (opportunity)": (
        "opportunities", [opportunity(400001, accountId=100003)], None,
        [(400001, "known_account", "account_id", "100003")],
    ),
    "unknown status": (
        "opportunities", [opportunity(400002, statusId=42)], None,
        [(400002, "known_status", "status_id", "42")],
    ),
    "negative amount": (
        "opportunities", [opportunity(400003, amount=-5.0)], None,
        [(400003, "non_negative", "amount", "-5.0")],
    ),
    "NaN amount": (
        "opportunities", [opportunity(400004, amount=float("nan"))], None,
        [(400004, "not_nullable", "amount", "nan")],
    ),
    "amount that is not a number (rejected by the staging, through the same table)": (
        "opportunities", [opportunity(400005, amount="lots")], None,
        [(400005, "type", "amount", "lots")],
    ),
    "probability above 100": (
        "opportunities", [opportunity(400006, probability=150.0)], None,
        [(400006, "percentage", "probability", "150.0")],
    ),
    "missing account name": (
        "accounts", [account(100005, accountName=None)], None,
        [(100005, "not_nullable", "name", None)],
    ),
    "missing product name": (
        "products", [product(500001, productName="")], {500001: priced()},
        [(500001, "not_nullable", "name", None)],
    ),
    "negative pricing level": (
        "products", [product(500002)], {500002: priced(price=-1.0)},
        [(500002, "pricing_levels", "pricing_levels", ANY_JSON)],
    ),
    "NaN pricing level": (
        "products", [product(500003)], {500003: priced(price=float("nan"))},
        [(500003, "pricing_levels", "pricing_levels", ANY_JSON)],
    ),
    "negative unit cost": (
        "products", [product(500004)], {500004: priced(cost=-3.0)},
        [(500004, "non_negative", "unit_cost", "-3.0")],
    ),
    "NaN unit cost once pricing was read": (
        "products", [product(500005)], {500005: priced(cost=float("nan"))},
        [(500005, "cost_known", "unit_cost", "nan")],
    ),
}


@pytest.mark.parametrize(("entity", "bad", "pricing", "expected"), REJECT_CASES.values(), ids=REJECT_CASES.keys())
def test_bad_row_is_rejected_and_the_rest_of_the_batch_kept(entity, bad, pricing, expected):
    maker = {"accounts": account, "contacts": contact, "opportunities": opportunity, "products": product}[entity]
    good_ids = [100001, 100002] if entity == "accounts" else [600001, 600002]
    frame = staged(entity, [maker(good_ids[0]), *bad, maker(good_ids[1])],
                   {**{i: priced() for i in good_ids}, **(pricing or {})})

    valid, rejects = validate_rows(entity, frame, KNOWN)

    assert valid["kaseya_id"].tolist() == good_ids
    assert list(rejects.columns) == REJECT_NAMES
    lines = sorted(
        ((int(r["kaseya_id"]), r["check"], r["column"], r["value"]) for r in rejects.to_dict("records")),
        key=lambda line: line[2])
    assert lines == sorted(expected, key=lambda line: line[2])
    assert all(r["entity"] == entity for r in rejects.to_dict("records"))
    assert all(r["reason"].startswith(f"{staged_entity(entity).label} {r['kaseya_id']}: ")
               for r in rejects.to_dict("records"))


@pytest.mark.parametrize(("rows", "check", "reason"), [
    ([contact(300017, emails=[{"emailAddress": "bob@@x", "isDefault": True}])], "email_shape",
     "contact 300017: email 'bob@@x' is not an e-mail address; correct it in Kaseya"),
    ([contact(300018, accountId=999)], "known_account",
     "contact 300018: account id 999 is not a Kaseya account the pipeline has staged; it waits, staged again "
     "every run, until its account is. If the account was rejected, fix it in Kaseya; if it was last modified "
     "before the first hourly partition (ZK_PARTITIONS_START) and never extracted, a whole-history sync "
     "releases it: `zk sync --whole-history`, or whole_history: true for raw_kaseya_changes in the launchpad"),
    ([contact(300019, firstName=None)], "not_nullable", "contact 300019: first name is missing; set it in Kaseya"),
])
def test_reasons_name_the_record_and_say_what_to_do(rows, check, reason):
    _, rejects = validate_rows("contacts", staged("contacts", rows), KNOWN)
    assert len(rejects) == 1
    assert (rejects.at[0, "check"], rejects.at[0, "reason"]) == (check, reason)


def test_pricing_reason_names_the_level_and_price():
    _, rejects = validate_rows("products", staged("products", [product(500002)], {500002: priced(price=-1.5)}))
    assert rejects.at[0, "reason"] == (
        "product 500002: pricing levels has level 'Retail' priced -1.5, which is not a number of 0 or more; "
        "correct them in Kaseya")
    assert json.loads(rejects.at[0, "value"])[0]["price"] == -1.5


def test_unflattenable_records_become_rejects_with_the_staging_reason():
    frame = staged("accounts", [account(100001), "junk", {"accountName": "No id"}])
    valid, rejects = validate_rows("accounts", frame)
    assert valid["kaseya_id"].tolist() == [100001]
    assert rejects["check"].tolist() == ["is_object", "has_id"]
    assert rejects["kaseya_id"].isna().all()
    assert rejects.at[0, "value"] == "junk"
    assert rejects.at[1, "reason"].startswith("account 'No id' (record 3 of the batch): it has no Id")


def test_one_row_failing_several_checks_gives_one_line_per_check():
    valid, rejects = validate_rows("opportunities", staged("opportunities", [
        opportunity(400001, amount=-1.0, probability=-5.0, accountId=7, subject=None)]), KNOWN)
    assert valid.empty
    assert sorted(rejects["check"]) == ["known_account", "non_negative", "not_nullable", "percentage"]
    assert set(rejects["kaseya_id"]) == {400001}


@pytest.mark.parametrize(("versions", "kept_name"), [
    ([("2026-02-01T00:00:00", "old"), ("2026-02-02T00:00:00", "new")], "new"),
    ([("2026-02-02T00:00:00", "new"), ("2026-02-01T00:00:00", "old")], "new"),
    ([("2026-02-01T00:00:00", "first read"), ("2026-02-01T00:00:00", "second read")], "second read"),
    ([(None, "undated"), ("2026-02-01T00:00:00", "dated")], "dated"),
])
def test_duplicate_keys_keep_the_latest_version_and_are_not_rejects(versions, kept_name):
    records = [account(100001, modifiedOn=moment, accountName=name) for moment, name in versions]
    valid, rejects = validate_rows("accounts", staged("accounts", [*records, account(100002)]))
    assert rejects.empty
    assert valid.set_index("kaseya_id").at[100001, "name"] == kept_name
    assert len(valid) == 2


def test_an_invalid_latest_version_is_rejected_and_the_stale_one_not_staged():
    records = [account(100001, modifiedOn="2026-02-01T00:00:00"),
               account(100001, modifiedOn="2026-02-05T00:00:00", accountName=None)]
    valid, rejects = validate_rows("accounts", staged("accounts", records))
    assert valid.empty
    assert rejects[["kaseya_id", "check"]].values.tolist() == [[100001, "not_nullable"]]


def test_foreign_keys_are_checked_only_against_the_sets_given():
    frame = staged("opportunities", [opportunity(400001, accountId=555, statusId=99)])
    assert len(validate_rows("opportunities", frame)[0]) == 1
    assert len(validate_rows("opportunities", frame, {"accounts": {555}})[0]) == 1
    _, rejects = validate_rows("opportunities", frame, {"accounts": {"555"}, "opportunity_statuses": [1]})
    assert rejects["check"].tolist() == ["known_status"]


def test_a_reject_reads_the_same_whatever_else_failed_in_its_batch():
    unknown = opportunity(400001, accountId=999999)
    alone = validate_rows("opportunities", staged("opportunities", [unknown]), KNOWN)[1]
    batch = [opportunity(400002, amount=-5.0), unknown, opportunity(400003, accountId=None)]
    together = validate_rows("opportunities", staged("opportunities", batch), KNOWN)[1]
    line = together[together["kaseya_id"] == 400001].reset_index(drop=True)
    assert alone.to_dict("records") == line.to_dict("records")
    assert line.at[0, "value"] == "999999"  # not 999999.0, as when another row's amount failed a check
    assert together[together["kaseya_id"] == 400002]["value"].tolist() == ["-5.0"]


def test_offending_value_is_truncated():
    long_email = "x" * 300 + "@@example"
    _, rejects = validate_rows("contacts", staged("contacts", [
        contact(300017, emails=[{"emailAddress": long_email, "isDefault": True}])]), KNOWN)
    assert len(rejects.at[0, "value"]) == VALUE_LIMIT
    assert long_email.startswith(rejects.at[0, "value"][:-1])


def test_valid_frame_has_the_entity_columns_typed_for_duckdb():
    valid, _ = validate_rows("opportunities", staged("opportunities", [opportunity(400001)]), KNOWN)
    assert list(valid.columns) == [name for name, _ in STAGED_COLUMNS["opportunities"]]
    assert str(valid["kaseya_id"].dtype) == "Int64"
    assert str(valid["contact_id"].dtype) == "Int64" and pd.isna(valid.at[0, "contact_id"])
    assert str(valid["amount"].dtype) == "float64"
    assert str(valid["in_pipeline"].dtype) == "boolean"
    assert str(valid["close_date"].dtype) == "datetime64[us, UTC]"
    assert valid.at[0, "close_date"] == pd.Timestamp(datetime(2026, 3, 1, tzinfo=UTC))


def test_rows_read_back_from_storage_validate_the_same():
    first, _ = validate_rows("contacts", staged("contacts", [contact(300017)]), KNOWN)
    again, rejects = validate_rows("contacts", first, KNOWN)
    assert rejects.empty
    pd.testing.assert_frame_equal(first, again)


@pytest.mark.parametrize("entity", STAGED_COLUMNS)
def test_empty_batch_and_model_columns_match_the_column_lists(entity):
    valid, rejects = validate_rows(entity, pd.DataFrame())
    assert valid.empty and rejects.empty
    assert list(valid.columns) == [name for name, _ in STAGED_COLUMNS[entity]]
    assert list(empty_frame(entity).dtypes) == list(valid.dtypes)


def test_products_not_yet_priced_are_valid():
    valid, rejects = validate_rows("products", staged("products", [product(500001)]))
    assert rejects.empty
    assert valid.at[0, "pricing_levels"] is None and math.isnan(valid.at[0, "unit_cost"])


@pytest.mark.parametrize("records", [
    pytest.param([contact(1), contact(2, emails=[], jobTitle="CFO")], id="all valid"),
    pytest.param([contact(1, firstName=None)], id="missing first name"),
    pytest.param([contact(1, emails=[{"emailAddress": "not-an-email", "isDefault": True}])], id="bad e-mail"),
    pytest.param([contact(1, accountId=99)], id="unknown account"),
    pytest.param([contact(1, accountId=None)], id="no account"),
    pytest.param([contact(3, firstName=None), contact(2), contact(1, accountId=99), contact(4)],
                 id="order kept around rejects"),
])
def test_typed_rows_are_kept_and_rejected_as_validate_rows_keeps_and_rejects_them(records):
    """The column-wise staging validates rows SQL typed (`validate_typed_rows`): the same rows and the same
    reject lines, reasons included, as `validate_rows` of the per-record rows."""
    rows = pd.DataFrame(stage_contacts_in_sql(records), dtype=object)
    known = {"accounts": {100001}}
    expected_valid, expected_rejects = validate_rows("contacts", rows, known_ids=known)
    typed = as_validated_types(rows, STAGED_COLUMNS["contacts"])

    valid, rejects = validate_typed_rows("contacts", typed, known_ids=known)

    pd.testing.assert_frame_equal(valid, expected_valid)
    assert rejects.to_dict("records") == expected_rejects.to_dict("records")
    assert len(expected_rejects) == len(records) - len(expected_valid)
    assert all(reason for reason in rejects["reason"])


def test_typed_rows_must_hold_one_row_per_contact():
    typed = as_validated_types(pd.DataFrame(stage_contacts_in_sql([contact(1), contact(1)]), dtype=object),
                               STAGED_COLUMNS["contacts"])
    with pytest.raises(ValueError, match="one row per kaseya_id"):
        validate_typed_rows("contacts", typed)
