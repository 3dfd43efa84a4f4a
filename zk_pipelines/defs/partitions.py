"""Hourly partitions on Kaseya's `ModifiedOn` (the incremental extraction only), and which hours a run is for.

Only `kaseya_changes` is partitioned: Dagster records one materialization per partition of every partitioned
asset in a run, so everything downstream is unpartitioned and processes what is pending, whatever hours a run
covers. Downstream steps learn the run's hours from its tags (`run_partitions`), for the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import dagster as dg

from zk_pipelines.tenants import DEFAULT_PARTITIONS_START

SINGLE_RUN = dg.BackfillPolicy.single_run()
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def hourly_partitions(start: str = DEFAULT_PARTITIONS_START) -> dg.HourlyPartitionsDefinition:
    return dg.HourlyPartitionsDefinition(start_date=start, timezone="UTC")


def partition_keys_of_run(context: dg.AssetExecutionContext) -> list[str]:
    """The hours of a partitioned step's run (one, or a range's)."""
    return list(context.partition_keys)


def run_partitions(tags: Mapping[str, str]) -> str | None:
    """The run's hours as the ledger records them: one key, `first...last` for a range, None for a run that is
    for no hour (a push, or a run of the unpartitioned assets alone)."""
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}...{end}"
    return None


def now() -> datetime:
    return datetime.now(UTC)
