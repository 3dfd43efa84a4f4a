"""Contacts staged by SQL over the raw JSON (`stage_entity`, the one implementation of their rules) give the
expected `stg.kaseya_contacts` rows, `audit.rejects` lines and reports, written out here for hand-made raw records
covering the shapes Kaseya may send; mapped column-wise (`map_target`, the default) they give exactly what the
per-record mapper (`column_wise=False`, the reference) gives: the same `mapped.zomentum_client_users` records
(payload text, hash, problem, waiting) and reports. Compared on copies of one DuckDB file: the hand-made records,
the sandbox world after a full sync, and the bad-input corpus."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from zk_pipelines.domain.entities import ZOMENTUM_TARGET, ZOMENTUM_TARGETS
from zk_pipelines.domain.staging_schemas import validate_rows
from zk_pipelines.pull.map import map_target
from zk_pipelines.pull.stage import stage_entity
from zk_pipelines.storage.contacts_store import count_pending
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.ledger_store import IdMapEntry, upsert_id_map
from zk_pipelines.storage.pull_store import ensure_pull_tables, pending_records, upsert_stg
from zk_pipelines.storage.raw_store import RawRecord, upsert_incremental_raw

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
FIRST = datetime(2026, 11, 20, tzinfo=UTC)
CLIENT_USERS = ZOMENTUM_TARGET["client_users"]
# map_rows asks the settings for owners, which client users do not have
RESOLVED = SimpleNamespace(zomentum=SimpleNamespace(users={}), fallback_owner=SimpleNamespace(id="owner-1"))
KNOWN_ACCOUNTS = (10, 11, 12, 13)  # 12 has no Zomentum client yet; 99 is not staged at all
CLIENTS = {"10": "zc-10", "11": 'zc-"11"\\', "13": "zc-13"}


def wire(kaseya_id: Any, **fields: Any) -> dict[str, Any]:
    """A contact as Kaseya's wire sends it; `fields` replace (None: drop) the defaults."""
    record = {"id": kaseya_id, "createdOn": "2026-11-21T10:00:00.000", "modifiedOn": "2026-11-22T10:00:00.000",
              "accountId": 10, "accountName": "Acme", "locationId": 7, "locationName": "HQ",
              "firstName": "Ann", "lastName": "Lee", "jobTitle": "CFO", "isPoc": True, "isActive": True,
              "emails": [{"id": 1, "emailAddress": f"ann{kaseya_id}@acme.example", "isDefault": True}],
              "phones": [{"id": 2, "phone": "+1 555 0100", "phoneTypeId": 3, "isDefault": True}]}
    for key, value in fields.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def email(address: Any, default: Any = False, **more: Any) -> dict[str, Any]:
    return {"emailAddress": address, "isDefault": default, **more}


EDGE_RECORDS: list[tuple[Any, dict[str, Any]]] = [
    (1, wire(1)),
    (2, wire(2, firstName="Zoë", lastName="Nguyễn 明", jobTitle="Директор")),
    (3, wire(3, firstName='Jo "JJ"', lastName="Back\\slash", jobTitle="O'Brien's \\\"boss\\\"")),
    (4, wire(4, firstName="Tab\tName", lastName="New\nLine", jobTitle="bell\x07 nul\x00 esc\x1b")),
    (5, wire(5, firstName="  Padded\u00a0", lastName="\u3000Wide\u2028", jobTitle="   ")),
    (6, wire(6, firstName="", lastName=None, jobTitle=None, accountName=None, locationId=None)),
    (7, wire(7, firstName=None)),  # missing first name: rejected
    (8, wire(8, accountId=99)),  # unknown account: waits
    (9, wire(9, accountId=12)),  # no Zomentum client: waits in mapped
    (10, wire(10, accountId=11, isPoc=False)),
    (11, wire(11, isPoc=None, isActive=None)),
    (12, wire(12, emails=[email("not-an-email", True)])),
    (13, wire(13, emails=[email("  ", True), email("second@acme.example"), email("third@acme.example", True)])),
    (14, wire(14, emails=[email("first@acme.example"), email("second@acme.example")])),
    (15, wire(15, emails=[], phones=[])),
    (16, wire(16, emails=None, phones=None)),
    (17, wire(17, emails=[email(None, True), email(" spaced@acme.example ")])),
    (18, wire(18, phones=[{"phoneNumber": "+1 555 0199", "isDefault": True}])),
    (19, wire(19, phones=[{"phone": "  ", "phoneNumber": "+1 555 0188"}, {"phone": "+1 555 0177"}])),
    (20, wire(20, emails=[email("a@acme.example", "true")])),  # a flag as text
    (21, wire(21, emails=[email(12345, True)])),  # an address as a number
    (22, wire(22, emails="ann@acme.example")),  # not a list
    (23, wire(23, emails=["ann@acme.example"])),  # not objects
    (24, wire(24, FirstName="Pascal", firstName=None)),
    (25, wire(25, first_name="Snake", firstName=None)),
    (26, wire(26, firstName="Camel", FIRSTNAME="Shout")),
    (27, wire(27, poc=True, isPoc=None)),
    (28, wire(28, accountId="10")),
    (29, wire(29, accountId=10.0, locationId=7.5)),
    (30, wire(30, accountId=True)),
    (31, wire(31, firstName=42, lastName=4.5)),
    (32, wire(32, isActive="true", isPoc=1)),
    (33, wire(33, isActive="maybe")),
    (34, wire(34, modifiedOn="2026-11-22T10:00:00.1234567")),
    (35, wire(35, modifiedOn="2026-11-22T10:00:00Z", createdOn="2026-11-21T10:00:00+05:30")),
    (36, wire(36, modifiedOn="2026-11-22T10:00:00.5-03:00", createdOn="2026-11-21")),
    (37, wire(37, createdOn="2026-02-30T10:00:00")),  # no such day
    (38, wire(38, createdOn="yesterday")),
    (39, wire(39, createdOn=" 2026-11-21T10:00:00 ", modifiedOn="2026-11-22t10:00:00z")),
    (40, wire(40, createdOn=None, modifiedOn=None)),
    (41, wire(41, createdOn=1700000000)),
    ("42", wire("42")),  # the id as text
    (43, wire(43.0)),  # the id as a float
    (44, {**wire(44), "id": 44.5}),  # an id staging cannot read: named by its place in the batch
    (45, wire(45, emails=[{"EmailAddress": "pascal@acme.example", "IsDefault": True}])),
    (46, wire(46, emails=[{"email_address": "snake@acme.example"}], phones=[{"Phone": "+1 555 0166"}])),
    (47, wire(47, emails=[email("x@acme.example", None, isdefault=True)])),
    (48, wire(48, extra={"nested": [1, 2]}, customFields=None, emailTypeId=5)),
    (49, wire(49, firstName="😀 emoji", lastName="\u202eright to left", jobTitle="=HYPERLINK(\"x\")")),
    (50, wire(50, jobTitle="x" * 10_000)),
    (51, wire(51, accountId=None)),
    (52, wire(52, accountId=13, modifiedOn="2026-11-27T23:59:59.999")),
    (53, wire(53, phones=[{"phone": 5550100, "isDefault": True}])),
    (54, wire(54, emails=[email("weird@acme.example", 1)])),
    (55, wire(55, accountId=9223372036854775807)),
    (56, wire(56, locationId=18446744073709551615)),
    (57, wire(57, id=None, Id=57)),
]


def expected_row(kaseya_id: int, **changes: Any) -> tuple:
    """The `stg.kaseya_contacts` row (its staged columns) of `wire(kaseya_id)` with `changes`."""
    row = {"kaseya_id": kaseya_id, "account_id": 10, "account_name": "Acme", "location_id": 7, "first_name": "Ann",
           "last_name": "Lee", "job_title": "CFO", "email": f"ann{kaseya_id}@acme.example", "phone": "+1 555 0100",
           "is_poc": True, "is_active": True, "created_on": datetime(2026, 11, 21, 10, tzinfo=UTC),
           "modified_on": datetime(2026, 11, 22, 10, tzinfo=UTC)}
    return tuple({**row, **changes}.values())


EXPECTED_STAGED = [expected_row(kaseya_id, **changes) for kaseya_id, changes in {
    1: {},
    2: {"first_name": "Zoë", "last_name": "Nguyễn 明", "job_title": "Директор"},
    3: {"first_name": 'Jo "JJ"', "last_name": "Back\\slash", "job_title": "O'Brien's \\\"boss\\\""},
    4: {"first_name": "Tab\tName", "last_name": "New\nLine", "job_title": "bell\x07 nul\x00 esc\x1b"},
    5: {"first_name": "Padded", "last_name": "Wide", "job_title": None},  # trimmed as str.strip() trims
    9: {"account_id": 12},
    10: {"account_id": 11, "is_poc": False},
    11: {"is_poc": False, "is_active": None},  # IsPoc absent: not the point of contact
    13: {"email": "third@acme.example"},  # the first default with a value
    14: {"email": "first@acme.example"},  # no default: the first listed
    15: {"email": None, "phone": None},
    16: {"email": None, "phone": None},
    17: {"email": "spaced@acme.example"},
    18: {"phone": "+1 555 0199"},  # PhoneNumber
    19: {"phone": "+1 555 0177"},  # a blank Phone hides PhoneNumber; no default: the first with a value
    20: {"email": "a@acme.example"},  # the flag as text
    24: {"first_name": "Pascal"},
    25: {"first_name": "Snake"},
    26: {"first_name": "Camel"},  # two spellings: the first in the record's order
    27: {},  # Poc for IsPoc
    28: {},  # the account id as text
    31: {"first_name": "42", "last_name": "4.5"},  # numbers as text
    32: {},  # "true" and 1 as flags
    34: {"modified_on": datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)},  # the seventh digit dropped
    35: {"created_on": datetime(2026, 11, 21, 4, 30, tzinfo=UTC)},
    36: {"created_on": datetime(2026, 11, 21, tzinfo=UTC), "modified_on": datetime(2026, 11, 22, 13, 0, 0, 500000,
                                                                                  tzinfo=UTC)},
    39: {},  # padded, lower-case t and z
    40: {"created_on": None, "modified_on": None},
    42: {},
    43: {"email": "ann43.0@acme.example"},
    45: {"email": "pascal@acme.example"},
    46: {"email": "snake@acme.example", "phone": "+1 555 0166"},
    47: {"email": "x@acme.example"},
    48: {},
    49: {"first_name": "😀 emoji", "last_name": "\u202eright to left", "job_title": '=HYPERLINK("x")'},
    50: {"job_title": "x" * 10_000},
    52: {"account_id": 13, "modified_on": datetime(2026, 11, 27, 23, 59, 59, 999000, tzinfo=UTC)},
    53: {"phone": "5550100"},
    54: {"email": "weird@acme.example"},  # 1 as a flag
    57: {},  # Id for id
}.items()]

_UNREADABLE = "Kaseya sent a record this pipeline cannot read, check it in Kaseya"
_WAITS = ("is not a Kaseya account the pipeline has staged; it waits, staged again every run, until its account is. "
          "If the account was rejected, fix it in Kaseya; if it was last modified before the first hourly partition "
          "(ZK_PARTITIONS_START) and never extracted, a whole-history sync releases it: `zk sync --whole-history`, or "
          "whole_history: true for raw_kaseya_changes in the launchpad")
# (kaseya id, check, column, value, reason) of every reject line
EXPECTED_REJECTS = sorted([
    ("6", "not_nullable", "first_name", None, "contact 6: first name is missing; set it in Kaseya"),
    ("7", "not_nullable", "first_name", None, "contact 7: first name is missing; set it in Kaseya"),
    ("8", "known_account", "account_id", "99", f"contact 8: account id 99 {_WAITS}"),
    ("12", "email_shape", "email", "not-an-email",
     "contact 12: email 'not-an-email' is not an e-mail address; correct it in Kaseya"),
    ("21", "email_shape", "email", "12345", "contact 21: email '12345' is not an e-mail address; correct it in Kaseya"),
    ("22", "type", "email", "ann@acme.example",
     f"contact 22: Emails 'ann@acme.example' is not a list of objects; {_UNREADABLE}"),
    ("23", "type", "email", "['ann@acme.example']",
     f"contact 23: Emails ['ann@acme.example'] is not a list of objects; {_UNREADABLE}"),
    ("29", "type", "location_id", "7.5", f"contact 29: LocationId 7.5 is not a whole number; {_UNREADABLE}"),
    ("30", "type", "account_id", "True", f"contact 30: AccountId True is not a whole number; {_UNREADABLE}"),
    ("33", "type", "is_active", "maybe", f"contact 33: IsActive 'maybe' is not true or false; {_UNREADABLE}"),
    ("37", "type", "created_on", "2026-02-30T10:00:00",
     f"contact 37: CreatedOn '2026-02-30T10:00:00' is not a date-time; {_UNREADABLE}"),
    ("38", "type", "created_on", "yesterday", f"contact 38: CreatedOn 'yesterday' is not a date-time; {_UNREADABLE}"),
    ("41", "type", "created_on", "1700000000",
     f"contact 41: CreatedOn 1700000000 is not a date-time; {_UNREADABLE}"),
    (None, "has_id", "kaseya_id", "44.5",
     f"contact 'Acme' (record 44 of the batch): Id 44.5 is not a whole number; {_UNREADABLE}"),
    ("51", "not_nullable", "account_id", None, "contact 51: account id is missing; set it in Kaseya"),
    ("55", "known_account", "account_id", "9223372036854775807",
     f"contact 55: account id 9223372036854775807 {_WAITS}"),
    # a whole number beyond 64 bits is that record's reject, not a batch that fails (nor one read as floats)
    ("56", "type", "location_id", "18446744073709551615",
     "contact 56: location id 18446744073709551615 is too large a number to store; correct it in Kaseya"),
], key=repr)


def _stage_accounts(connection: duckdb.DuckDBPyConnection) -> None:
    rows = [{"kaseya_id": account, "name": f"Account {account}", "shipping_addresses": "[]", "modified_on": FIRST}
            for account in KNOWN_ACCOUNTS]
    valid, rejects = validate_rows("accounts", pd.DataFrame(rows))
    assert not len(rejects)
    upsert_stg(connection, "accounts", valid, run_id="setup", now=FIRST)


def edge_world(database: Path, records: list[tuple[Any, dict[str, Any]]] = EDGE_RECORDS) -> Path:
    with connect(database) as connection:
        ensure_pull_tables(connection, [t.name for t in ZOMENTUM_TARGETS])
        _stage_accounts(connection)
        upsert_id_map(connection, [IdMapEntry("clients", key, value, "created", None, None)
                                   for key, value in CLIENTS.items()], FIRST)
        raw = [RawRecord(int(float(kaseya_id)), datetime(2026, 11, 22, 10, tzinfo=UTC), payload)
               for kaseya_id, payload in records]
        upsert_incremental_raw(connection, "kaseya_contacts", raw, window_start=FIRST, window_end=NOW,
                               run_id="extract", now=FIRST)
    return database


def _tables(database: Path) -> dict[str, list[tuple]]:
    with connect(database, read_only=True) as connection:
        return {
            "stg": connection.execute(
                "SELECT * EXCLUDE (staged_at, run_id, map_pending) FROM stg.kaseya_contacts ORDER BY kaseya_id"
            ).fetchall(),
            "rejects": connection.execute(
                """SELECT kaseya_id, check_name, column_name, value, reason FROM audit.rejects
                   WHERE entity = 'contacts' ORDER BY ALL""").fetchall(),
            "mapped": connection.execute(
                """SELECT kaseya_id, payload::VARCHAR, payload_hash, problem, waiting, source_modified_on, mapped_at,
                          run_id FROM mapped.zomentum_client_users ORDER BY kaseya_id""").fetchall(),
        }


def _stage(database: Path, run: str, contacts_per_chunk: int = 7) -> tuple:
    stage = stage_entity(database, "contacts", run_id=run, partition_key="p", now=NOW,
                         contacts_per_chunk=contacts_per_chunk)
    rejects = sorted(map(tuple, stage.rejects.astype(object).where(stage.rejects.notna(), None).values.tolist()),
                     key=repr)
    return stage.read, stage.staged, stage.rejected_records, stage.waiting_records, rejects


def _run(database: Path, *, column_wise: bool, run: str) -> tuple:
    staged = _stage(database, run)
    mapped = map_target(database, CLIENT_USERS, RESOLVED, run_id=run, now=NOW, column_wise=column_wise,
                        client_users_per_chunk=5)
    return staged, mapped


def assert_both_mappings_agree(database: Path, tmp_path: Path, runs: int = 1,
                               between_runs: Any = None) -> dict[str, list[tuple]]:
    """Stage and map `runs` times (each of what is pending then) on two copies of `database`, mapping column-wise
    and per record, and compare everything they wrote and reported. Returns the column-wise copy's tables."""
    copies = {}
    for column_wise in (True, False):
        copy = tmp_path / f"{'bulk' if column_wise else 'per_record'}.duckdb"
        shutil.copy(database, copy)
        reports = []
        for number in range(runs):
            if number and between_runs is not None:
                between_runs(copy)
            reports.append(_run(copy, column_wise=column_wise, run=f"run-{number}"))
        copies[column_wise] = (reports, _tables(copy))
    (bulk_reports, bulk), (reference_reports, reference) = copies[True], copies[False]
    assert bulk_reports == reference_reports
    for table in ("stg", "rejects", "mapped"):
        assert bulk[table] == reference[table], table
    return bulk


def test_every_shape_of_raw_contact_is_staged_and_rejected_as_expected_and_mapped_as_the_per_record_mapper_does(
        tmp_path):
    tables = assert_both_mappings_agree(edge_world(tmp_path / "edge.duckdb"), tmp_path)
    assert tables["stg"] == EXPECTED_STAGED
    assert sorted(tables["rejects"], key=repr) == EXPECTED_REJECTS
    waiting = {row[0] for row in tables["mapped"] if row[4]}
    assert waiting == {"9"} and len(tables["mapped"]) == len(EXPECTED_STAGED)  # 40 has no ModifiedOn: mapped too


def test_the_stage_report_counts_what_was_read_staged_rejected_and_held_back(tmp_path):
    read, staged, rejected, waiting, rejects = _stage(edge_world(tmp_path / "report.duckdb"), "run-0")
    # 8 and 55 only wait for their account; the others are rejected for their own content
    assert (read, staged, rejected, waiting) == (len(EDGE_RECORDS), len(EXPECTED_STAGED), 15, 2)
    assert sorted([(row[1], *row[2:]) for row in rejects], key=repr) == sorted(
        [(int(kaseya_id) if kaseya_id else None, *rest) for kaseya_id, *rest in EXPECTED_REJECTS], key=repr)


def test_a_contact_waiting_for_its_account_is_staged_and_mapped_once_the_account_arrives(tmp_path):
    def account_arrives(database: Path) -> None:
        with connect(database) as connection:
            valid, _ = validate_rows("accounts", pd.DataFrame(
                [{"kaseya_id": 99, "name": "Late", "shipping_addresses": "[]", "modified_on": NOW}]))
            upsert_stg(connection, "accounts", valid, run_id="late", now=NOW)
            upsert_id_map(connection, [IdMapEntry("clients", "12", "zc-12", "created", None, None)], NOW)

    records = [*EDGE_RECORDS[:12], (60, wire(60, accountId=99, modifiedOn="2026-11-21T01:00:00"))]
    database = edge_world(tmp_path / "late.duckdb", records)
    # the later run has nothing pending but the waiting contacts, which it retries
    tables = assert_both_mappings_agree(database, tmp_path, runs=2, between_runs=account_arrives)
    assert [row for row in tables["stg"] if row[0] in (8, 60)] == [
        expected_row(8, account_id=99),
        expected_row(60, account_id=99, modified_on=datetime(2026, 11, 21, 1, tzinfo=UTC))]
    assert not [row for row in tables["mapped"] if row[0] == "9" and row[4]]


def test_duplicate_rows_and_chunk_boundaries_change_nothing(tmp_path):
    records = [(kaseya_id, wire(kaseya_id, modifiedOn=f"2026-11-22T10:{kaseya_id % 60:02d}:00"))
               for kaseya_id in range(100, 160)]
    database = edge_world(tmp_path / "many.duckdb", records)
    whole = tmp_path / "whole.duckdb"
    shutil.copy(database, whole)
    assert _stage(database, "run-0", contacts_per_chunk=7) == _stage(whole, "run-0", contacts_per_chunk=1000)
    tables = assert_both_mappings_agree(database, tmp_path)
    assert tables["stg"] == _tables(whole)["stg"] == [
        expected_row(kaseya_id, modified_on=datetime(2026, 11, 22, 10, kaseya_id % 60, tzinfo=UTC))
        for kaseya_id in range(100, 160)]


def test_change_detection_counts_what_the_load_would_be_handed(tmp_path):
    database = edge_world(tmp_path / "pending.duckdb")
    _run(database, column_wise=True, run="run-0")
    with connect(database) as connection:
        sent = connection.execute("SELECT kaseya_id, payload_hash FROM mapped.zomentum_client_users "
                                  "WHERE problem IS NULL ORDER BY kaseya_id LIMIT 4").fetchall()
        upsert_id_map(connection, [
            IdMapEntry("client_users", kaseya_id, f"zu-{kaseya_id}", "created", hashed if n % 2 else "stale", None)
            for n, (kaseya_id, hashed) in enumerate(sent)], NOW)
        counts = count_pending(connection, "client_users")
        pending = pending_records(connection, "client_users", include_linked_updates=True)
        mapped = connection.execute("SELECT count(*) FROM mapped.zomentum_client_users").fetchone()[0]
    assert (counts.changed, counts.unchanged) == (2, 2)
    assert counts.problems + counts.never_sent + counts.changed == len(pending)
    assert counts.problems + counts.never_sent + counts.changed + counts.unchanged == mapped
    assert counts.problems == sum(1 for record in pending if record.problem)


@pytest.fixture(scope="module")
def sandbox_world(tmp_path_factory) -> Path:
    """The sandbox world after a full sync, with its contacts' staging, mapping and rejects removed and two
    clients unlinked (their contacts wait)."""
    from zk_pipelines.sandbox.kaseya import start_kaseya_sandbox
    from zk_pipelines.sandbox.zomentum import start_zomentum_sandbox
    from zk_pipelines_tests.pipeline_harness import PipelineHarness, step_errors

    kaseya = start_kaseya_sandbox(scale="small_recent")
    zomentum = start_zomentum_sandbox(scale="small_recent")
    try:
        harness = PipelineHarness(kaseya, zomentum, tmp_path_factory.mktemp("sandbox_world"))
        result = harness.backfill()
        assert result.success, step_errors(result)
    finally:
        kaseya.stop()
        zomentum.stop()
    _forget_contacts(harness.database)
    return harness.database


def _forget_contacts(database: Path) -> None:
    with connect(database) as connection:
        connection.execute("DELETE FROM stg.kaseya_contacts")
        connection.execute("DELETE FROM mapped.zomentum_client_users")
        connection.execute("DELETE FROM audit.rejects WHERE entity = 'contacts'")
        connection.execute("UPDATE raw.kaseya_contacts SET stage_pending = true")
        connection.execute("""DELETE FROM zomentum.id_map WHERE entity = 'clients' AND kaseya_id IN (
                                  SELECT kaseya_id FROM zomentum.id_map WHERE entity = 'clients'
                                  ORDER BY kaseya_id LIMIT 2)""")


@pytest.mark.slow
def test_the_sandbox_world_is_mapped_as_the_per_record_mapper_does(sandbox_world, tmp_path):
    tables = assert_both_mappings_agree(sandbox_world, tmp_path)
    assert len(tables["stg"]) > 40 and any(row[4] for row in tables["mapped"])


@pytest.mark.slow
def test_the_bad_input_corpus_is_mapped_as_the_per_record_mapper_does(tmp_path):
    from zk_pipelines_tests.pipeline_harness import step_errors
    from zk_pipelines_tests.test_reliability_bad_input import corpus_synced

    (tmp_path / "corpus").mkdir()
    with corpus_synced(tmp_path / "corpus") as (harness, _, result):
        assert result.success, step_errors(result)
    _forget_contacts(harness.database)
    tables = assert_both_mappings_agree(harness.database, tmp_path)
    assert tables["rejects"] and len(tables["stg"]) > 40
    assert any(json.loads(row[1])["job_title"] and len(json.loads(row[1])["job_title"]) == 10_000
               for row in tables["mapped"] if row[1])


def test_every_record_is_read_in_sql_whatever_its_spelling_and_only_the_untypable_are_left_to_validate_rows(tmp_path):
    from zk_pipelines.storage.contacts_store import read_contacts_chunk, staging_order

    database = edge_world(tmp_path / "split.duckdb")
    with connect(database) as connection:
        order = staging_order(connection, "kaseya_contacts", [])
        typed, untyped = read_contacts_chunk(connection, order, np.arange(1, len(order) + 1))
    in_sql = set(typed["kaseya_id"].astype(int))
    # other spellings (24-27, 45-47, 57) and values of other kinds (20, 28, 31, 32, 39, 42, 43, 53, 54) are typed
    assert {20, 24, 25, 26, 27, 28, 31, 32, 39, 42, 43, 45, 46, 47, 53, 54, 57} <= in_sql
    # left to `validate_rows`: the unreadable (each row carrying its problem) and a number beyond 64 bits
    assert sorted((row["kaseya_id"] or 0) for row in untyped) == [0, 22, 23, 29, 30, 33, 37, 38, 41, 56]
    assert [row["location_id"] for row in untyped if row["kaseya_id"] == 56] == [18446744073709551615]
    assert len(in_sql) + len(untyped) == len(EDGE_RECORDS)
