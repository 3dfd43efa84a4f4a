"""Hourly partitions on Kaseya's `ModifiedOn` (the incremental extraction only), and which hours a run is for.

Only `kaseya_changes` is partitioned: Dagster records one materialization per partition of every partitioned
asset in a run, so everything downstream is unpartitioned and processes what is pending, whatever hours a run
covers. Downstream steps learn the run's hours from its tags (`run_partitions`), for the ledger.

A deployment of several tenants (`defs/tenants.py`) partitions every asset by tenant instead: one static
partition per registry entry, so the UI shows each tenant's status on one asset page and 200 tenants are 200
partitions, not 3,600 assets. Its runs name their hours in a tag (`HOURS_TAG`), so nothing maps a tenant to the
hours of an hourly dimension (which would enumerate every hour since the first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg

from zk_pipelines.tenants import DEFAULT_PARTITIONS_START

SINGLE_RUN = dg.BackfillPolicy.single_run()
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
TENANT_TAG = "zk/tenant"  # a tenant-partitioned run's tenant (its partition key too)
HOURS_TAG = "zk/hours"  # a tenant-partitioned run's hours: `first...last`, or one hour key
HOUR_FORMAT = "%Y-%m-%d-%H:00"


def hourly_partitions(start: str = DEFAULT_PARTITIONS_START) -> dg.HourlyPartitionsDefinition:
    return dg.HourlyPartitionsDefinition(start_date=start, timezone="UTC")


def tenant_partitions(keys: Sequence[str]) -> dg.StaticPartitionsDefinition:
    """One partition per tenant of the registry, in its order."""
    return dg.StaticPartitionsDefinition(list(keys))


def is_tenant_partitioned(context: dg.AssetExecutionContext) -> bool:
    return isinstance(context.assets_def.partitions_def, dg.StaticPartitionsDefinition)


def hours_of_run(tags: Mapping[str, str], clock: datetime | None = None) -> tuple[datetime, datetime]:
    """A tenant-partitioned run's window: from its first hour's start to its last hour's end (its `HOURS_TAG`;
    without one, as a run launched by hand, the last complete hour)."""
    written = tags.get(HOURS_TAG)
    if written:
        first, _, last = written.partition("...")
        start = datetime.strptime(first, HOUR_FORMAT).replace(tzinfo=UTC)
        end = datetime.strptime(last or first, HOUR_FORMAT).replace(tzinfo=UTC) + timedelta(hours=1)
        return start, end
    end = (clock or now()).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(hours=1), end


def hour_keys(start: datetime, end: datetime) -> list[str]:
    hours = int((end - start).total_seconds() // 3600)
    return [(start + timedelta(hours=index)).strftime(HOUR_FORMAT) for index in range(hours)]


def hours_tag(first: datetime, last: datetime | None = None) -> str:
    """The `HOURS_TAG` of a run for one hour, or the hours from `first` to `last` (both included)."""
    if last is None or last == first:
        return first.strftime(HOUR_FORMAT)
    return f"{first.strftime(HOUR_FORMAT)}...{last.strftime(HOUR_FORMAT)}"


def partition_keys_of_run(context: dg.AssetExecutionContext) -> list[str]:
    """The hours of a partitioned step's run (one, or a range's)."""
    if is_tenant_partitioned(context):
        return hour_keys(*hours_of_run(context.run.tags))
    return list(context.partition_keys)


def run_partitions(tags: Mapping[str, str]) -> str | None:
    """The run's hours as the ledger records them: one key, `first...last` for a range, None for a run that is
    for no hour (a push, or a run of the unpartitioned assets alone)."""
    if HOURS_TAG in tags or TENANT_TAG in tags:  # a tenant-partitioned run: its partition is the tenant
        return tags.get(HOURS_TAG)
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG] if _is_hour(tags[PARTITION_TAG]) else None
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}...{end}"
    return None


def _is_hour(key: str) -> bool:
    try:
        datetime.strptime(key, HOUR_FORMAT)
    except ValueError:
        return False
    return True


def now() -> datetime:
    return datetime.now(UTC)
