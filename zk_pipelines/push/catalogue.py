"""The Kaseya lists a push needs besides the document's own records (opportunity and quote statuses,
warehouses, product categories, employees, labour periods, account types and the lookup tables such as
opportunity types and ratings): taken from the snapshots the hourly pull keeps in the tenant's DuckDB file
while they are fresh, else read from Kaseya, each list once per push.

A push so costs the reads of its own records (account, contact, opportunity, quote, its lines, the catalogue
items it needs) and nothing per list the pull already read this hour.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.domain.entities import SNAPSHOT_SOURCES
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.raw_store import read_snapshot_extracted

# A snapshot older than this is read from Kaseya instead: the hourly pull refreshes it every hour, so an older
# one means the pull has not run (a name renamed in Kaseya since must not be missed by a push).
CATALOGUE_MAX_AGE = timedelta(hours=2)

# The lists the pull extracts whole (raw.kaseya_<name>) and reads as their registry row says: the catalogue reads
# them the same way. Any other name is a Kaseya lookup table (raw.kaseya_lookups).
PLAIN_SNAPSHOTS = {source.name: source for source in SNAPSHOT_SOURCES if source.reader is None}

# What the settings resolve names against (catalogs.KASEYA_CATALOG_SOURCES), by the catalogue's names.
CATALOGUE_LISTS = {"opportunity_statuses": "opportunity_statuses", "quote_statuses": "QuoteStatus",
                   "warehouses": "warehouses", "product_categories": "product_categories",
                   "labour_periods": "LabourPeriod", "employees": "employees"}


class KaseyaCatalogue:
    """Each list read once per push: from the pull's fresh snapshot, else from Kaseya. `reads_from_kaseya`
    names the lists that had to be read from Kaseya."""

    def __init__(self, kaseya: KaseyaClient, database: Path | None, now: datetime,
                 max_age: timedelta = CATALOGUE_MAX_AGE) -> None:
        self._kaseya = kaseya
        self._database = database
        self._fresh_after = now - max_age
        self._lists: dict[str, list[Any]] = {}
        self.reads_from_kaseya: list[str] = []

    def rows(self, name: str) -> list[Any]:
        """A snapshot list by its pull name (`employees`, ...) or a lookup table by Kaseya's (`QuoteStatus`)."""
        if name not in self._lists:
            pulled = self._pulled(name)
            if pulled is None:
                self.reads_from_kaseya.append(name)
                source = PLAIN_SNAPSHOTS.get(name)
                pulled = (list(self._kaseya.read_list(source.endpoint, paged=source.paged)) if source is not None
                          else self._kaseya.lookup(name))
            self._lists[name] = pulled
        return self._lists[name]

    def _pulled(self, name: str) -> list[Any] | None:
        if self._database is None or not self._database.exists():
            return None
        table, lookup = (f"kaseya_{name}", None) if name in PLAIN_SNAPSHOTS else ("kaseya_lookups", name)
        try:
            with connect(self._database, read_only=True) as connection:
                rows, extracted_at = read_snapshot_extracted(connection, table, lookup)
        except duckdb.CatalogException:  # a file the pull never wrote
            return None
        if not rows or extracted_at is None or extracted_at < self._fresh_after:
            return None
        return rows
