"""Each step of the pull does what is pending, whichever run brought it: staging reads the raw records new or
changed since it last read them (a record listed again unchanged is not pending), snapshot entities are staged
again only when their sources changed, records waiting for a parent are tried again once something was staged
where the parent may be, and mapping reads the staged rows not mapped since. On a real DuckDB file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from zk_pipelines.domain.staging_schemas import validate_rows
from zk_pipelines.pull.stage import stage_entity
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import deferred_ids, ensure_pull_tables, upsert_stg
from zk_pipelines.storage.raw_store import (
    RawRecord,
    held_back_ids,
    upsert_incremental_raw,
    upsert_pricing,
    upsert_snapshot,
)

T0 = datetime(2026, 12, 1, 10, tzinfo=UTC)


@pytest.fixture
def database(tmp_path) -> Path:
    path = tmp_path / "tenant.duckdb"
    with connect(path) as connection:
        ensure_pull_tables(connection)
    return path


def contact(kaseya_id: int, account_id: int, **fields) -> dict:
    return {"id": kaseya_id, "accountId": account_id, "firstName": "Ann", "lastName": "Lee",
            "modifiedOn": "2026-12-01T09:00:00Z", "emails": [{"emailAddress": f"a{kaseya_id}@x.example",
                                                                "isDefault": True}], **fields}


def extract(database: Path, table: str, records: list[dict], run: str) -> None:
    with connect(database) as connection:
        upsert_incremental_raw(connection, table, [RawRecord(r["id"], T0, r) for r in records], window_start=None,
                               window_end=T0, run_id=run, now=T0)


def pending(database: Path, table: str) -> list[int]:
    with connect(database) as connection:
        return [r[0] for r in connection.execute(f"SELECT kaseya_id FROM raw.{table} WHERE stage_pending "
                                                 "ORDER BY kaseya_id").fetchall()]


def stage_account(database: Path, kaseya_id: int, at: datetime) -> None:
    with connect(database) as connection:
        valid, _ = validate_rows("accounts", pd.DataFrame([{"kaseya_id": kaseya_id, "name": f"Account {kaseya_id}",
                                                            "shipping_addresses": "[]", "modified_on": at}]))
        upsert_stg(connection, "accounts", valid, run_id="accounts", now=at)


def test_a_record_listed_again_unchanged_is_not_pending_and_a_changed_one_is(database):
    extract(database, "kaseya_contacts", [contact(1, 10), contact(2, 10)], "first")
    assert pending(database, "kaseya_contacts") == [1, 2]
    stage_account(database, 10, T0)
    report = stage_entity(database, "contacts", run_id="stage-1", partition_key=None, now=T0)
    assert (report.read, report.staged) == (2, 2) and pending(database, "kaseya_contacts") == []

    extract(database, "kaseya_contacts", [contact(1, 10), contact(2, 10, jobTitle="CFO")], "second")  # the overlap

    assert pending(database, "kaseya_contacts") == [2]
    again = stage_entity(database, "contacts", run_id="stage-2", partition_key=None, now=T0 + timedelta(hours=1))
    assert (again.read, again.staged) == (1, 1)


def test_a_waiting_record_is_tried_again_only_once_a_parent_was_staged_after_it_waited(database):
    extract(database, "kaseya_contacts", [contact(1, 99)], "first")
    waited = stage_entity(database, "contacts", run_id="stage-1", partition_key=None, now=T0)
    assert waited.waiting_records == 1
    with connect(database) as connection:
        assert deferred_ids(connection, "contacts") == []  # no account staged since it waited: nothing to try
    stage_account(database, 55, T0 + timedelta(minutes=30))  # another account: the contact's may be here now
    with connect(database) as connection:
        assert deferred_ids(connection, "contacts") == [1]
    retried = stage_entity(database, "contacts", run_id="stage-2", partition_key=None, now=T0 + timedelta(hours=1))
    assert (retried.read, retried.waiting_records) == (1, 1)  # still waiting for account 99
    stage_account(database, 99, T0 + timedelta(hours=2))
    arrived = stage_entity(database, "contacts", run_id="stage-3", partition_key=None, now=T0 + timedelta(hours=3))
    assert (arrived.read, arrived.staged, arrived.waiting_records) == (1, 1, 0)


def product_rows() -> list[tuple[str, dict, str]]:
    payload = {"productIndexId": 7, "category": "Hardware", "warehouseRows": [{
        "productIndexId": 7, "productId": 70, "productNumber": "HW-7", "description": "Switch", "productType":
        "Hardware", "isActive": True, "modifiedOn": "2026-12-01T09:00:00Z"}]}
    return [("7", payload, "hash-7")]


def test_a_snapshot_entity_is_staged_again_only_when_its_sources_changed(database):
    with connect(database) as connection:
        upsert_snapshot(connection, "kaseya_products", product_rows(), run_id="r1", now=T0)
        upsert_pricing(connection, [(7, [{"price": 10.0}], [], {"cost": 4.0})], run_id="r1", now=T0)
    first = stage_entity(database, "products", run_id="s1", partition_key=None, now=T0)
    assert not first.unchanged_snapshot and first.read >= 1

    with connect(database) as connection:  # the next hour lists the same products, the same prices
        upsert_snapshot(connection, "kaseya_products", product_rows(), run_id="r2", now=T0 + timedelta(hours=1))
        upsert_pricing(connection, [(7, [{"price": 10.0}], [], {"cost": 4.0})], run_id="r2",
                       now=T0 + timedelta(hours=1))
    assert stage_entity(database, "products", run_id="s2", partition_key=None, now=T0).unchanged_snapshot

    with connect(database) as connection:  # a price changed
        upsert_pricing(connection, [(7, [{"price": 12.0}], [], {"cost": 4.0})], run_id="r3",
                       now=T0 + timedelta(hours=2))
    third = stage_entity(database, "products", run_id="s3", partition_key=None, now=T0)
    assert not third.unchanged_snapshot and third.read >= 1


def test_records_held_back_by_staging_are_read_again_rejected_first_until_something_brings_them(database):
    bad = contact(5, 10, emails=[{"emailAddress": "broken@", "isDefault": True}])
    extract(database, "kaseya_contacts", [contact(2, 99), contact(3, 10), bad], "first")
    stage_account(database, 10, T0)
    report = stage_entity(database, "contacts", run_id="first", partition_key=None, now=T0)
    assert (report.staged, report.rejected_records, report.waiting_records) == (1, 1, 1)

    def held(run_id: str, limit: int = 10) -> list[int]:
        with connect(database) as connection:
            return held_back_ids(connection, "kaseya_contacts", "contacts", run_id=run_id, limit=limit)

    assert held("first") == []  # the run that listed them read them just now
    assert held("re-run") == [5, 2] and held("re-run", limit=1) == [5]  # rejected first, then waiting
    extract(database, "kaseya_contacts", [contact(5, 10)], "second")  # the fix, listed: pending, not read again
    assert held("re-run") == [2]
    stage_entity(database, "contacts", run_id="second", partition_key=None, now=T0 + timedelta(hours=1))
    assert held("re-run") == [2]
