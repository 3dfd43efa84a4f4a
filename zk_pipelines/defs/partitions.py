"""Hourly partitions on Kaseya's `ModifiedOn`, and what a run (one partition or a single-run range) covers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from zk_pipelines.domain.incremental import ExtractionWindow, extraction_window

DEFAULT_PARTITIONS_START = "2026-08-01-00:00"
SINGLE_RUN = dg.BackfillPolicy.single_run()


def partitioning(partitions: dg.PartitionsDefinition, incremental: bool) -> dict:
    """Incremental entities are hourly-partitioned (single-run backfills); snapshots and everything derived
    only from them are not partitioned: a backfill of a month runs them once, not 720 times."""
    return {"partitions_def": partitions, "backfill_policy": SINGLE_RUN} if incremental else {}


def hourly_partitions(start: str = DEFAULT_PARTITIONS_START) -> dg.HourlyPartitionsDefinition:
    return dg.HourlyPartitionsDefinition(start_date=start, timezone="UTC")


def run_window(context: dg.AssetExecutionContext, overlap: timedelta) -> ExtractionWindow:
    """The window of the partition, or of the whole range in a single-run backfill."""
    window = context.partition_time_window
    return extraction_window(window.start.astimezone(UTC), window.end.astimezone(UTC), overlap)


def partition_label(context: dg.AssetExecutionContext) -> str | None:
    if not context.has_partition_key_range:
        return None  # a snapshot asset: not partitioned
    keys = context.partition_key_range
    return keys.start if keys.start == keys.end else f"{keys.start}...{keys.end}"


def now() -> datetime:
    return datetime.now(UTC)
