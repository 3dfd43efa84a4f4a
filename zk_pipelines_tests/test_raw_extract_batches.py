"""An incremental window is written to its raw table a batch of rows at a time while it is listed, so the
extract's memory does not grow with the window; what ends in the table is what one write of the whole window
would leave: each record once, with its newest payload, whichever batch or listing pass brought it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import zk_pipelines.pull.extract as extract
from zk_pipelines.clients.kaseya import ListingChanged
from zk_pipelines.domain.entities import KASEYA_SOURCES
from zk_pipelines.domain.incremental import extraction_window
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import ensure_pull_tables

ACCOUNTS = next(source for source in KASEYA_SOURCES if source.name == "accounts")
START = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = extraction_window(START, START + timedelta(days=1), timedelta(minutes=15))


def account(kaseya_id: int, minute: int | None, name: str) -> dict[str, Any]:
    """An account payload; `minute` None: without a ModifiedOn."""
    moment = None if minute is None else (START + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S")
    return {"id": kaseya_id, "accountName": name, "ModifiedOn": moment}


class ListingClient:
    """Kaseya's account list as successive passes: each pass yields its rows; `None` in a pass raises
    ListingChanged there (the list moved while it was paged)."""

    def __init__(self, *passes: list[dict[str, Any] | None]) -> None:
        self.passes = list(passes)

    def read_list(self, endpoint: str, *, paged: bool, modified_from: datetime, modified_to: datetime
                  ) -> Iterator[dict[str, Any]]:
        for row in self.passes.pop(0):
            if row is None:
                raise ListingChanged("Kaseya", "list accounts", "totalRecords moved while paging")
            yield row


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "tenant.duckdb"
    with connect(path) as connection:
        ensure_pull_tables(connection)
    return path


@pytest.fixture
def writes(monkeypatch) -> list[int]:
    """The size of every write to the raw table, with batches of 3 rows."""
    sizes: list[int] = []
    real = extract.upsert_incremental_raw

    def counted(connection, table, records, **kwargs):
        sizes.append(len(records))
        return real(connection, table, records, **kwargs)

    monkeypatch.setattr(extract, "RAW_BATCH_ROWS", 3)
    monkeypatch.setattr(extract, "upsert_incremental_raw", counted)
    return sizes


def raw_rows(database: Path) -> dict[int, str]:
    with connect(database) as connection:
        return dict(connection.execute("SELECT kaseya_id, payload->>'accountName' FROM raw.kaseya_accounts"
                                       ).fetchall())


def test_a_window_is_written_a_batch_at_a_time(database, writes):
    rows = [account(i, i, f"Account {i}") for i in range(1, 9)]
    result = extract.extract_incremental(ListingClient(rows), database, ACCOUNTS, WINDOW, run_id="r", now=START)
    assert writes == [3, 3, 2]
    assert result.rows == 8
    assert raw_rows(database) == {i: f"Account {i}" for i in range(1, 9)}


def test_a_record_listed_in_two_batches_keeps_its_newest_payload_and_counts_once(database, writes):
    # Account 1 edited while the list was paged: listed again on a later page, in another batch, with a later
    # ModifiedOn; account 2 the other way round (its newer payload came first).
    rows = [account(1, 1, "old name"), account(2, 9, "newest"), account(3, 3, "c"),
            account(4, 4, "d"), account(1, 7, "new name"), account(2, 2, "stale")]
    result = extract.extract_incremental(ListingClient(rows), database, ACCOUNTS, WINDOW, run_id="r", now=START)
    assert writes == [3, 3]
    assert result.rows == 4
    assert raw_rows(database) == {1: "new name", 2: "newest", 3: "c", 4: "d"}


def test_the_rows_of_a_pass_that_saw_the_list_change_are_kept_and_the_next_pass_completes_them(database, writes):
    first = [account(1, 1, "a"), account(2, 2, "b"), account(3, 3, "c"), account(4, 4, "d"), None]
    second = [account(1, 1, "a"), account(2, 2, "b"), account(5, 5, "e")]
    client = ListingClient(first, second)
    result = extract.extract_incremental(client, database, ACCOUNTS, WINDOW, run_id="r", now=START)
    assert result.rows == 5
    assert raw_rows(database) == {1: "a", 2: "b", 3: "c", 4: "d", 5: "e"}
    assert writes == [3, 3, 1]  # the first pass's full batch, then batches of 3 across the passes


@pytest.mark.parametrize("order", ["dated first", "undated first"])
@pytest.mark.parametrize("same_batch", [True, False], ids=["in one batch", "in two batches"])
def test_a_payload_without_a_modified_on_never_replaces_a_dated_one(database, writes, order, same_batch):
    dated, undated = account(1, 5, "dated"), account(1, None, "undated")
    pair = [dated, undated] if order == "dated first" else [undated, dated]
    rows = [pair[0], *([account(2, 2, "b"), account(3, 3, "c")] if not same_batch else []), pair[1]]
    result = extract.extract_incremental(ListingClient(rows), database, ACCOUNTS, WINDOW, run_id="r", now=START)
    assert len(writes) == (1 if same_batch else 2)
    assert raw_rows(database)[1] == "dated"
    assert result.rows == len(raw_rows(database))


def test_a_list_that_keeps_changing_fails_the_extract_keeping_the_batches_written(database, writes):
    # Three passes that each see the list move after four rows: each batch is written as it fills, across
    # passes (here the twelve rows listed fill four); rows of an unfilled batch would be dropped with the
    # failure. The partition is not materialized and its re-run lists the window again.
    changing = [account(i, i, f"a{i}") for i in range(1, 5)] + [None]
    with pytest.raises(ListingChanged):
        extract.extract_incremental(ListingClient(changing, changing, changing), database, ACCOUNTS, WINDOW,
                                    run_id="r", now=START)
    assert writes == [3, 3, 3, 3]
    assert raw_rows(database) == {i: f"a{i}" for i in range(1, 5)}
