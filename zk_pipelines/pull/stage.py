"""Staging: raw payloads -> typed rows validated by pandera; valid rows to `stg.*`, the others to
`audit.rejects` with the record, the failed check and the offending value. One bad row never stops the
others.

Contacts, the one entity counted in hundreds of thousands, are staged column-wise a chunk of ids at a time
(`CONTACTS_PER_CHUNK`) by SQL over the raw JSON, the one implementation of their rules, whatever the records'
spelling (`contacts_store.read_contacts_chunk`); the rows are validated by the one schema (`validate_typed_rows`
of the rows SQL typed, `validate_rows` of the few it cannot type: unreadable records and numbers too large).
Accounts (each with its locations and addresses) and opportunities are staged per record, also a chunk of
ids at a time (`RECORDS_PER_CHUNK`), so a long window's payloads are never all in memory at once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from zk_pipelines.domain.entities import KASEYA_SOURCE, KaseyaSource
from zk_pipelines.domain.kaseya_staging import ProductPricing, employee_emails
from zk_pipelines.domain.staging_schemas import (
    REFERENCE_CHECK_PREFIX,
    empty_rejects,
    validate_rows,
    validate_typed_rows,
)
from zk_pipelines.storage.contacts_store import read_contacts_chunk, read_raw_in_order, staged_read, staging_order
from zk_pipelines.storage.database import connect, transaction
from zk_pipelines.storage.pull_store import (
    deferred_ids,
    insert_rejects,
    read_stg,
    save_staged_snapshot_version,
    snapshot_version,
    staged_snapshot_version,
    stg_ids,
    upsert_stg,
)
from zk_pipelines.storage.raw_store import read_pricing, read_snapshot

# Contacts staged at a time: memory stays flat (a few hundred MB) whatever the window holds.
CONTACTS_PER_CHUNK = 100_000
# Accounts and opportunities staged at a time (per record: a chunk's payloads are Python objects).
RECORDS_PER_CHUNK = 5_000


@dataclass(frozen=True)
class StageReport:
    entity: str
    read: int
    staged: int
    rejected_records: int  # failed a check on their own content
    waiting_records: int  # only their account or status is not staged yet: retried every run, not bad
    rejects: pd.DataFrame  # one line per failed check
    unchanged_snapshot: bool = False  # a snapshot entity whose sources did not change: nothing staged again

    @property
    def reject_share(self) -> float:
        judged = self.read - self.waiting_records
        return self.rejected_records / judged if judged else 0.0


class _StoredInputs:
    """What a stager reads besides its records (`entities.StagingInputs`), from the tenant's DuckDB, once and
    only when it asks."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self._connection = connection

    @cached_property
    def employee_emails(self) -> Mapping[int, str]:
        return employee_emails(read_stg(self._connection, "employees").to_dict("records"))

    @cached_property
    def product_pricing(self) -> Mapping[int, ProductPricing]:
        return {index_id: ProductPricing(tuple(p["pricing_levels"]), tuple(p["suppliers"]), p["default_cost"])
                for index_id, p in read_pricing(self._connection).items()}


def _known_ids(connection: duckdb.DuckDBPyConnection, source: KaseyaSource) -> dict[str, set[int]]:
    """The staged ids of every entity the source's rows reference."""
    assert source.staging is not None
    return {key.target: stg_ids(connection, key.target) for key in source.staging.foreign_keys}


def _staged_contacts_in_chunks(connection: duckdb.DuckDBPyConnection, *, run_id: str, partition_key: str | None,
                               now: datetime, chunk: int) -> tuple[int, int, pd.DataFrame]:
    """(records read, rows staged, rejects) of the contacts pending and those waiting for their account, read,
    validated and written `chunk` ids at a time. Each id is in one chunk, so the de-duplication of
    `validate_rows` sees all of an id's rows at once."""
    order = staging_order(connection, "kaseya_contacts", deferred_ids(connection, "contacts"))
    if not len(order):  # nothing new, changed or waiting: the accounts staged need not be read
        return 0, 0, empty_rejects()
    known = stg_ids(connection, "accounts")
    staged, rejects = 0, []
    for start in range(0, len(order), chunk):
        ids = order[start:start + chunk]
        # Each chunk in a transaction of its own: its rows, its reject lines and "read" for its raw records land
        # together, so a chunk a failure interrupts is staged whole by the next attempt, never twice.
        with transaction(connection):
            chunk_staged, chunk_rejects = _stage_contacts_chunk(connection, ids, start, known, run_id=run_id,
                                                                partition_key=partition_key, now=now)
        staged += chunk_staged
        rejects.extend(chunk_rejects)
    return len(order), staged, (pd.concat(rejects, ignore_index=True) if rejects else empty_rejects())


def _stage_contacts_chunk(connection: duckdb.DuckDBPyConnection, ids: np.ndarray, start: int, known: set[int], *,
                          run_id: str, partition_key: str | None, now: datetime) -> tuple[int, list[pd.DataFrame]]:
    """(rows staged, reject parts) of one chunk of contacts, `start` its place in the batch."""
    typed, rows = read_contacts_chunk(connection, ids, np.arange(start + 1, start + len(ids) + 1))
    # Only the accounts these rows name matter to the known_account check: a smaller set to hand over.
    named = set(typed["account_id"].dropna().astype("int64").tolist())
    valid, rejected = validate_typed_rows("contacts", typed.drop(columns="position"),
                                          known_ids={"accounts": known & named})
    parts, rejected_parts = [valid], [rejected]
    if rows:
        named = {row["account_id"] for row in rows if isinstance(row.get("account_id"), int)}
        other_valid, other_rejected = validate_rows("contacts", pd.DataFrame(rows, dtype=object),
                                                    known_ids={"accounts": known & named})
        parts.append(other_valid)
        rejected_parts.append(other_rejected)
    staged = sum(upsert_stg(connection, "contacts", part, run_id=run_id, now=now) for part in parts)
    for part in rejected_parts:
        insert_rejects(connection, part, run_id=run_id, partition_key=partition_key, now=now)
    staged_read(connection, "kaseya_contacts", ids)
    return staged, [part for part in rejected_parts if len(part)]


def _staged_records_in_chunks(connection: duckdb.DuckDBPyConnection, source: KaseyaSource, *, run_id: str,
                              partition_key: str | None, now: datetime, chunk: int) -> tuple[int, int, pd.DataFrame]:
    """(records read, rows staged, rejects) of an incremental entity's records pending and those waiting for a
    parent, read, staged per record, validated and written `chunk` ids at a time, in the order and with the
    places in the batch of one whole read."""
    entity, table = source.name, source.raw_table
    order = staging_order(connection, table, deferred_ids(connection, entity))
    if not len(order):  # nothing new, changed or waiting: the employees and the staged ids need not be read
        return 0, 0, empty_rejects()
    inputs = _StoredInputs(connection)
    known = _known_ids(connection, source)
    staged, rejects = 0, []
    # One transaction for all the chunks: a step that fails midway leaves no chunk's rows or reject lines
    # behind for its retry to write a second time.
    with transaction(connection):
        for start in range(0, len(order), chunk):
            records = read_raw_in_order(connection, table, order[start:start + chunk])
            rows = source.stage(records, inputs, positions=range(start + 1, start + len(records) + 1))
            # object columns: pandas would turn a column of whole numbers holding one beyond 64 bits into floats
            valid, rejected = validate_rows(entity, pd.DataFrame(rows, dtype=object), known_ids=known)
            staged += upsert_stg(connection, entity, valid, run_id=run_id, now=now)
            insert_rejects(connection, rejected, run_id=run_id, partition_key=partition_key, now=now)
            if len(rejected):
                rejects.append(rejected)
        staged_read(connection, table, order)
    return len(order), staged, (pd.concat(rejects, ignore_index=True) if rejects else empty_rejects())


def _staged_snapshot(connection: duckdb.DuckDBPyConnection, source: KaseyaSource, *, run_id: str,
                     partition_key: str | None, now: datetime) -> tuple[int, int, pd.DataFrame] | None:
    """(records read, rows staged, rejects) of a snapshot entity, read whole; None when nothing in its sources
    changed since it was last staged."""
    version = snapshot_version(connection, source.name)
    if version == staged_snapshot_version(connection, source.name):
        return None
    rows = source.stage(read_snapshot(connection, source.raw_table), _StoredInputs(connection))
    # object columns: pandas would turn a column of whole numbers holding one beyond 64 bits into floats
    valid, rejects = validate_rows(source.name, pd.DataFrame(rows, dtype=object),
                                   known_ids=_known_ids(connection, source))
    with transaction(connection):
        staged = upsert_stg(connection, source.name, valid, run_id=run_id, now=now)
        insert_rejects(connection, rejects, run_id=run_id, partition_key=partition_key, now=now)
        save_staged_snapshot_version(connection, source.name, version, now)
    return len(rows), staged, rejects


# The stagers of the entities the registry marks `staged_in_sql` (test_entity_registry.py holds the two together).
STAGED_IN_SQL: dict[str, Callable[..., tuple[int, int, pd.DataFrame]]] = {"contacts": _staged_contacts_in_chunks}


def stage_entity(database: Path, entity: str, *, run_id: str, partition_key: str | None, now: datetime,
                 contacts_per_chunk: int = CONTACTS_PER_CHUNK, records_per_chunk: int = RECORDS_PER_CHUNK
                 ) -> StageReport:
    """Stage the entity's pending records (new or changed in raw since staging last read them, whichever run
    extracted them; snapshot entities: all of them, when their sources changed) and those waiting for a parent."""
    source = KASEYA_SOURCE[entity]
    with connect(database) as connection:
        if source.staging is not None and source.staging.staged_in_sql:
            read, staged, rejects = STAGED_IN_SQL[entity](
                connection, run_id=run_id, partition_key=partition_key, now=now, chunk=contacts_per_chunk)
        elif source.incremental:
            read, staged, rejects = _staged_records_in_chunks(
                connection, source, run_id=run_id, partition_key=partition_key, now=now, chunk=records_per_chunk)
        else:
            outcome = _staged_snapshot(connection, source, run_id=run_id, partition_key=partition_key, now=now)
            if outcome is None:  # nothing in the snapshot changed since it was last staged: staged as it stands
                return StageReport(entity=entity, read=0, staged=0, rejected_records=0, waiting_records=0,
                                   rejects=empty_rejects(), unchanged_snapshot=True)
            read, staged, rejects = outcome
    waiting_only = set()
    rejected = set()
    if len(rejects):
        for kaseya_id, checks in rejects.groupby("kaseya_id", dropna=False)["check"]:
            waits = all(str(c).startswith(REFERENCE_CHECK_PREFIX) for c in checks)
            (waiting_only if waits else rejected).add(kaseya_id)
    return StageReport(entity=entity, read=read, staged=staged, rejected_records=len(rejected),
                       waiting_records=len(waiting_only), rejects=rejects)
