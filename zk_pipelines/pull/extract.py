"""Extraction: Kaseya lists into the raw tables.

Incremental entities make one paged query over the whole window (a single-run backfill of a month is one
query, not 720). Snapshot entities are read whole and change-detected by content hash. Per-product pricing
costs three calls per product, so it is budgeted: new products first, then the least recently refreshed.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed
from contextvars import copy_context
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from zk_pipelines.clients.http import ApiError, NotFound
from zk_pipelines.clients.kaseya import BudgetExhausted, KaseyaClient, ListingChanged
from zk_pipelines.clients.kaseya_wire import LOOKUP_TABLES
from zk_pipelines.domain.change_detection import payload_hash
from zk_pipelines.domain.entities import KaseyaSource
from zk_pipelines.domain.incremental import ExtractionWindow, planned_window
from zk_pipelines.domain.kaseya_staging import parse_kaseya_moment, read_field
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.raw_store import (
    RawRecord,
    SnapshotCounts,
    held_back_ids,
    oldest_pricing_refresh,
    pending_ids,
    pricing_refresh_order,
    read_coverage,
    save_coverage,
    upsert_incremental_raw,
    upsert_pricing,
    upsert_snapshot,
)

T = TypeVar("T")

# How many times a window is listed when Kaseya's list changes while it is paged (records edited meanwhile).
WINDOW_READS = 3

# Rows of a window held in memory before they are written to the raw table. A 90-day initial sync of a large
# tenant lists tens of thousands of accounts (each with its locations) in one query: written ten pages at a
# time, the extract's memory does not grow with the window. An extract that fails midway leaves the batches
# it wrote (correct payloads, upserted); its partition is not materialized, and the re-run lists the window
# again.
RAW_BATCH_ROWS = 1000



@dataclass(frozen=True)
class IncrementalExtract:
    entity: str
    window: ExtractionWindow
    rows: int
    unreadable: int  # payloads without a usable id: kept out of raw, reported
    covered_through: datetime | None  # what the entity's coverage became


class ExtractionStopped(Exception):
    """The run was stopped while a list was being read (what was read so far is kept)."""


def raw_record(kaseya_id: int, payload: Any) -> RawRecord:
    """A record as raw keeps it: its `ModifiedOn` when readable (else it sorts as the oldest)."""
    try:
        modified = parse_kaseya_moment(read_field(payload, "ModifiedOn"))
    except ValueError:
        modified = None
    return RawRecord(kaseya_id, modified, payload)


def extract_incremental(client: KaseyaClient, database: Path, source: KaseyaSource, window: ExtractionWindow, *,
                        run_id: str, now: datetime, stop: threading.Event | None = None) -> IncrementalExtract:
    """List the entity's records modified in `window` (no lower bound: everything) into its raw table, and
    extend the entity's coverage once the whole window is read."""
    batch: list[RawRecord] = []
    stored: set[int] = set()

    def write_batch() -> None:
        if batch:
            with connect(database) as connection:
                upsert_incremental_raw(connection, source.raw_table, batch, window_start=window.query_from,
                                       window_end=window.query_to, run_id=run_id, now=now)
            stored.update(record.kaseya_id for record in batch)
            batch.clear()

    unreadable = 0
    for attempt in range(1, WINDOW_READS + 1):
        # Every pass's rows are kept (the upsert keeps each record's newest payload): a pass that saw the list
        # change read each row it did see correctly, and the next pass brings what the shift skipped.
        unreadable = 0
        try:
            for payload in client.read_list(source.endpoint, paged=source.paged, modified_from=window.query_from,
                                            modified_to=window.query_to):
                if stop is not None and stop.is_set():
                    write_batch()
                    raise ExtractionStopped(f"the listing of Kaseya {source.name} was stopped")
                kaseya_id = read_field(payload, source.key_field)
                try:
                    kaseya_id = int(kaseya_id)
                except (TypeError, ValueError):
                    unreadable += 1
                    continue
                batch.append(raw_record(kaseya_id, payload))
                if len(batch) >= RAW_BATCH_ROWS:
                    write_batch()
            break
        except ListingChanged:
            if attempt == WINDOW_READS:
                raise
    write_batch()
    with connect(database) as connection:
        covered = window.extends_coverage(read_coverage(connection, source.name))
        if covered is not None:
            save_coverage(connection, source.name, covered, run_id=run_id, now=now)
    return IncrementalExtract(entity=source.name, window=window, rows=len(stored), unreadable=unreadable,
                              covered_through=covered)


def extract_changes(client: KaseyaClient, database: Path, sources: Sequence[KaseyaSource], partition_start: datetime,
                    partition_end: datetime, *, overlap: timedelta, whole_history: bool, run_id: str,
                    now: datetime) -> dict[str, IncrementalExtract | BaseException]:
    """The incremental lists of a run, side by side (a thread each, through the run's one client), each over
    the window its coverage calls for (`planned_window`). Returns each entity's extract, or the error that
    stopped it: one list failing does not stop the others, and what they read is kept."""
    with connect(database) as connection:
        windows = {source.name: planned_window(
            partition_start, partition_end, read_coverage(connection, source.name), overlap=overlap,
            whole_history=whole_history) for source in sources}
    stop = threading.Event()
    return _side_by_side({source.name: partial(extract_incremental, client, database, source, windows[source.name],
                                               run_id=run_id, now=now, stop=stop) for source in sources},
                         "kaseya-list", stop=stop)


def _side_by_side(lists: dict[str, Callable[[], T]], thread_name_prefix: str, *,
                  stop: threading.Event | None = None) -> dict[str, T | BaseException]:
    """Each list's reading in a thread of its own, in a copy of the step's context (so the client counts its
    calls to the step). Returns each list's result, or the error that stopped it: one list failing does not
    stop the others. Interrupted (the run was terminated), `stop` is set: the lists stop at their next row."""
    results: dict[str, T | BaseException] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, len(lists)), thread_name_prefix=thread_name_prefix)
    try:
        futures = {name: pool.submit(copy_context().run, read) for name, read in lists.items()}
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except Exception as exc:  # reported per entity by the caller
                results[name] = exc
    except BaseException:
        if stop is not None:
            stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


@dataclass(frozen=True)
class HeldBackRead:
    """What staging's read of its held-back records by id brought."""

    entity: str
    wanted: int  # records rejected or waiting that no run read since (at most the limit)
    read: int
    changed: int  # read with a payload other than the one staging judged: staged again now
    gone: tuple[int, ...] = ()  # no longer in Kaseya (404): left as they are
    stopped: str | None = None  # why some were not read (the endpoint's hourly budget spent, Kaseya's error)


def read_held_back(client: KaseyaClient, database: Path, source: KaseyaSource, *, limit: int, run_id: str,
                   now: datetime, concurrency: int = 1) -> HeldBackRead:
    """Read again, one call each by id, the entity's records its last staging rejected or held back for a parent
    (rejected first, at most `limit`), into raw: a record fixed in Kaseya after the hour that rejected it has a
    `ModifiedOn` past that hour's window, so a re-run of the hour (or "re-execute from failure", which does not
    list again) reads the fix only this way. A record read unchanged stays as staging judged it."""
    if source.by_id_endpoint is None:
        return HeldBackRead(source.name, 0, 0, 0)
    with connect(database, read_only=True) as connection:
        ids = held_back_ids(connection, source.raw_table, source.name, run_id=run_id, limit=limit)
    if not ids:
        return HeldBackRead(source.name, 0, 0, 0)
    endpoint = source.by_id_endpoint

    def read(kaseya_id: int) -> Any:
        try:
            return client.read_one(endpoint, kaseya_id)
        except ApiError as exc:  # a record gone, a budget spent, an outage: staging goes on with what it has
            return exc

    answers = _read_in_order([partial(read, kaseya_id) for kaseya_id in ids], concurrency)
    records, gone, stopped = [], [], None
    for kaseya_id, answer in zip(ids, answers, strict=True):
        if isinstance(answer, NotFound):
            gone.append(kaseya_id)
        elif isinstance(answer, ApiError):
            stopped = stopped or (answer.message if isinstance(answer, BudgetExhausted) else str(answer))
        else:
            records.append(raw_record(kaseya_id, answer))
    with connect(database) as connection:
        upsert_incremental_raw(connection, source.raw_table, records, window_start=now, window_end=now,
                               run_id=run_id, now=now)
        changed = pending_ids(connection, source.raw_table, [record.kaseya_id for record in records])
    return HeldBackRead(source.name, wanted=len(ids), read=len(records), changed=len(changed), gone=tuple(gone),
                        stopped=stopped)


def _read_in_order(readers: list[Callable[[], Any]], concurrency: int) -> list[Any]:
    """Each reader's answer, in the readers' order, up to `concurrency` reads at once; the first failure (in
    that order) is raised and the reads not started yet are dropped."""
    if concurrency <= 1 or len(readers) <= 1:
        return [read() for read in readers]
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(readers)), thread_name_prefix="kaseya-read")
    try:
        futures = [pool.submit(copy_context().run, read) for read in readers]  # the step's context: its tally
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _lookup_snapshot(client: KaseyaClient, concurrency: int) -> list[tuple[str, Any, str]]:
    """Every lookup table the settings and pushes use, one call each, keyed `<table>:<id>`."""
    tables = _read_in_order([lambda t=table: client.lookup(t) for table in LOOKUP_TABLES], concurrency)
    rows = []
    for table, records in zip(LOOKUP_TABLES, tables, strict=True):
        for record in records:
            key = f"{LOOKUP_TABLES[table]}:{read_field(record, 'Id')}"
            payload = {"table": LOOKUP_TABLES[table], **record}
            rows.append((key, payload, payload_hash(payload)))
    return rows


def _product_snapshot(client: KaseyaClient, concurrency: int) -> list[tuple[str, Any, str]]:
    """Products arrive one row per product x warehouse; the published row has no category, so the category
    comes from one category-filtered scan per category (the filter matches substrings: the longest matching
    category name wins)."""
    all_rows, category_rows = _read_in_order([lambda: list(client.iter_products()), client.product_categories],
                                             concurrency)
    by_product: dict[int, list[Any]] = defaultdict(list)
    for row in all_rows:
        by_product[int(read_field(row, "ProductIndexId"))].append(row)
    category_of: dict[int, str] = {}
    categories = sorted((read_field(c, "Name") for c in category_rows if read_field(c, "Name")), key=len)
    scans = _read_in_order([lambda name=name: list(client.iter_products(Category=name)) for name in categories],
                           concurrency)
    for name, rows in zip(categories, scans, strict=True):  # shortest first: a longer (more specific) name wins
        for row in rows:
            category_of[int(read_field(row, "ProductIndexId"))] = name
    snapshot = []
    for index_id, rows in sorted(by_product.items()):
        payload = {"productIndexId": index_id, "category": category_of.get(index_id), "warehouseRows": rows}
        snapshot.append((str(index_id), payload, payload_hash(payload)))
    return snapshot


# The snapshots whose reading is special (`KaseyaSource.reader`); every other list is read as its row says.
SNAPSHOT_READERS: dict[str, Callable[[KaseyaClient, int], list[tuple[str, Any, str]]]] = {
    "products": _product_snapshot, "lookups": _lookup_snapshot}


def _snapshot_rows(client: KaseyaClient, source: KaseyaSource, concurrency: int) -> list[tuple[str, Any, str]]:
    if source.reader is not None:
        return SNAPSHOT_READERS[source.reader](client, concurrency)
    return [(str(read_field(r, source.key_field)), r, payload_hash(r))
            for r in client.read_list(source.endpoint, paged=source.paged)]


def extract_snapshot(client: KaseyaClient, database: Path, source: KaseyaSource, *, run_id: str, now: datetime,
                     concurrency: int = 1) -> SnapshotCounts:
    """`concurrency`: how many of the snapshot's independent reads (the lookup tables, the per-category
    product scans) run at once; the rows are the same and in the same order whatever it is."""
    rows = _snapshot_rows(client, source, concurrency)
    with connect(database) as connection:
        return upsert_snapshot(connection, source.raw_table, rows, run_id=run_id, now=now)


def extract_snapshots(client: KaseyaClient, database: Path, sources: Sequence[KaseyaSource], *, run_id: str,
                      now: datetime, concurrency: int) -> dict[str, SnapshotCounts | BaseException]:
    """The snapshot lists of a run, side by side (a thread each, through the run's one client; their inner
    reads, such as the per-category product scans, up to `concurrency` at once). Returns each list's counts,
    or the error that stopped it: one list failing does not stop the others."""
    return _side_by_side({source.name: partial(extract_snapshot, client, database, source, run_id=run_id, now=now,
                                               concurrency=concurrency) for source in sources},
                         "kaseya-snapshot")


@dataclass(frozen=True)
class PricingRefresh:
    refreshed: int
    wanted: int  # products that could have been refreshed
    calls: int
    oldest_refresh: datetime | None
    stopped: str | None = None  # why the refresh stopped before its end (an endpoint's hourly budget is spent)


def _product_pricing(client: KaseyaClient, index_id: int) -> tuple[int, Any, Any, Any]:
    return (index_id, client.product_pricing_levels(index_id), client.product_suppliers(index_id),
            client.product_default_cost(index_id))


def refresh_product_pricing(client: KaseyaClient, database: Path, product_index_ids: list[int], *,
                            calls_per_hour: int, max_age: timedelta, run_id: str, now: datetime,
                            concurrency: int = 1) -> PricingRefresh:
    """One call per product on each of three endpoints (pricing levels, suppliers, default cost); Kaseya
    counts calls per endpoint, so `calls_per_hour` products at most, new ones first, then those whose price
    is older than `max_age`, stalest first. Up to `concurrency` products are read at once (their three calls
    in turn); the prices are written afterwards by the calling thread, in one statement."""
    with connect(database) as connection:
        order = pricing_refresh_order(connection, product_index_ids, max(0, calls_per_hour), now - max_age)
    fetched: dict[int, tuple[int, Any, Any, Any]] = {}
    stopped = None
    failure: Exception | None = None
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="kaseya-pricing")
    try:
        # Each read in a copy of the step's context, so the client counts its calls to the step.
        pending = [pool.submit(copy_context().run, _product_pricing, client, index_id) for index_id in order]
        for done in as_completed(pending):
            try:
                index_id, levels, suppliers, cost = done.result()
            except CancelledError:
                continue
            except BudgetExhausted as exc:
                # Pricing is a budgeted background refresh: the products it did not reach wait (deferred, not
                # failed) and are first in line next hour; the prices already read are loaded now.
                stopped = stopped or exc.message
            except Exception as exc:  # re-raised below, once what was read is stored
                failure = failure or exc
            else:
                fetched[index_id] = (index_id, levels, suppliers, cost)
                continue
            for future in pending:  # the products not started yet are not read; those in flight finish
                future.cancel()
    finally:  # a terminated run (an interrupt, not an Exception) does not wait for the queued reads either
        pool.shutdown(wait=True, cancel_futures=True)
    # The prices read are kept even when the budget or the API stopped the refresh midway.
    with connect(database) as connection:
        upsert_pricing(connection, [fetched[i] for i in order if i in fetched], run_id=run_id, now=now)
        oldest = oldest_pricing_refresh(connection)
    if failure is not None:
        raise failure
    refreshed = len(fetched)
    return PricingRefresh(refreshed=refreshed, wanted=len(product_index_ids), calls=3 * refreshed,
                          oldest_refresh=oldest, stopped=stopped)
