"""Extraction windows of the hourly pull.

A partition (or a range of them, in a single-run backfill) covers [start, end). Kaseya's `ModifiedOn`
filter is inclusive at both bounds (assumed), so the query asks for [start - overlap, end]: a record
modified exactly on a boundary is fetched by both neighbouring hours and the raw upsert, keyed on the
Kaseya id, keeps one row. The overlap re-reads the end of the previous hour, for records whose
`ModifiedOn` was committed late.

What a run extracts also depends on what earlier runs covered (`covered_through`: everything modified up to
that moment is already extracted, without a gap since the beginning of the tenant's history):
- never covered (a new tenant, or a full re-sync asked for): the query has no lower bound, so the tenant's
  first run, whichever hour it is for, syncs everything Kaseya holds;
- covered up to a moment before the window (hours were missed: the scheduler was down, runs failed): the
  query starts at that moment less the overlap, so no hour is ever left out;
- otherwise the window as above; an older range (a backfill of hours already covered) re-reads just it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_OVERLAP = timedelta(minutes=15)


@dataclass(frozen=True)
class ExtractionWindow:
    partition_start: datetime
    partition_end: datetime
    query_from: datetime | None  # None: no lower bound (the whole history)
    query_to: datetime

    def covers(self, moment: datetime | None) -> bool:
        """Whether a record modified at `moment` belongs to what this window queried."""
        return moment is not None and (self.query_from is None or self.query_from <= moment) and moment <= self.query_to

    @property
    def whole_history(self) -> bool:
        return self.query_from is None

    def extends_coverage(self, covered_through: datetime | None) -> datetime | None:
        """What is covered once this window is extracted: its end when it joins what was covered (or starts at
        the beginning), else what was."""
        if self.query_from is None or (covered_through is not None and self.query_from <= covered_through):
            return max(self.query_to, covered_through) if covered_through is not None else self.query_to
        return covered_through

    def describe(self) -> str:
        start = "the beginning of the tenant's history" if self.query_from is None else self.query_from.isoformat()
        return f"{start} .. {self.query_to.isoformat()}"


def extraction_window(partition_start: datetime, partition_end: datetime,
                      overlap: timedelta = DEFAULT_OVERLAP) -> ExtractionWindow:
    if partition_end <= partition_start:
        raise ValueError(f"empty partition window {partition_start} .. {partition_end}")
    if overlap < timedelta(0):
        raise ValueError("the overlap cannot be negative")
    start = partition_start.astimezone(UTC)
    end = partition_end.astimezone(UTC)
    return ExtractionWindow(start, end, start - overlap, end)


def planned_window(partition_start: datetime, partition_end: datetime, covered_through: datetime | None, *,
                   overlap: timedelta = DEFAULT_OVERLAP, whole_history: bool = False) -> ExtractionWindow:
    """The window a run for [partition_start, partition_end) queries, given what earlier runs covered (see the
    module's docstring); `whole_history` asks for everything whatever was covered. (Records rejected in an hour
    and fixed in Kaseya since are modified after it: staging reads them again by id, `pull.extract.read_held_back`.)"""
    window = extraction_window(partition_start, partition_end, overlap)
    if whole_history or covered_through is None:
        return ExtractionWindow(window.partition_start, window.partition_end, None, window.query_to)
    if covered_through < window.partition_start:  # hours between what was covered and this window: read them too
        return ExtractionWindow(window.partition_start, window.partition_end,
                                covered_through.astimezone(UTC) - overlap, window.query_to)
    return window
