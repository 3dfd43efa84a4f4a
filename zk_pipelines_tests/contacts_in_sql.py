"""Contacts staged as the pipeline stages them (SQL over the raw JSON, `contacts_store.read_contacts_chunk`), for
tests that hold the rows to expected values: raw payloads in, one row per record out, in the records' order."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from zk_pipelines.storage.contacts_store import read_contacts_chunk
from zk_pipelines.storage.raw_store import RawRecord, upsert_incremental_raw
from zk_pipelines.storage.schema import create_tables

_WINDOW = datetime(2026, 1, 1, tzinfo=UTC)


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def stage_contacts_in_sql(records: Sequence[Any], *, positions: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """`records` (raw payloads, stored as the extraction stores them) staged by the pipeline's SQL: typed rows as
    Python values, and the rows it leaves to `validate_rows` (an unreadable record's row carries its
    `STAGING_PROBLEM`). `positions` are the records' places in the batch (default 1, 2, ...)."""
    places = list(positions) if positions is not None else list(range(1, len(records) + 1))
    assert places == sorted(set(places)), "places in the batch ascend"
    with duckdb.connect() as connection:
        create_tables(connection)
        # the raw key is the record's place: a record without a usable id is stored all the same
        raw = [RawRecord(place, None, json.loads(json.dumps(record)))
               for place, record in zip(places, records, strict=True)]
        upsert_incremental_raw(connection, "kaseya_contacts", raw, window_start=_WINDOW, window_end=_WINDOW,
                               run_id="test", now=_WINDOW)
        ids = np.array(places, dtype="int64")
        typed, untyped = read_contacts_chunk(connection, ids, ids)
    rows = {int(row.pop("position")): {key: _plain(value) for key, value in row.items()}
            for row in typed.astype(object).to_dict("records")}
    # the untyped rows come in the records' order after the typed ones: place them by what is left
    left = [place for place in places if place not in rows]
    assert len(left) == len(untyped), (left, untyped)
    rows.update(zip(left, untyped, strict=True))
    return [rows[place] for place in places]
