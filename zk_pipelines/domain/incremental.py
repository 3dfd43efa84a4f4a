"""Extraction windows of the hourly pull.

A partition (or a range of them, in a single-run backfill) covers [start, end). Kaseya's `ModifiedOn`
filter is inclusive at both bounds (assumed), so the query asks for [start - overlap, end]: a record
modified exactly on a boundary is fetched by both neighbouring hours and the raw upsert, keyed on the
Kaseya id, keeps one row. The overlap re-reads the end of the previous hour, for records whose
`ModifiedOn` was committed late.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_OVERLAP = timedelta(minutes=15)


@dataclass(frozen=True)
class ExtractionWindow:
    partition_start: datetime
    partition_end: datetime
    query_from: datetime
    query_to: datetime

    def covers(self, moment: datetime | None) -> bool:
        """Whether a record modified at `moment` belongs to what this window queried."""
        return moment is not None and self.query_from <= moment <= self.query_to


def extraction_window(partition_start: datetime, partition_end: datetime,
                      overlap: timedelta = DEFAULT_OVERLAP) -> ExtractionWindow:
    if partition_end <= partition_start:
        raise ValueError(f"empty partition window {partition_start} .. {partition_end}")
    if overlap < timedelta(0):
        raise ValueError("the overlap cannot be negative")
    start = partition_start.astimezone(UTC)
    end = partition_end.astimezone(UTC)
    return ExtractionWindow(start, end, start - overlap, end)
