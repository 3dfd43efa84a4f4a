"""Group `kaseya_extract`: the Kaseya lists into `raw.*`, as two steps of the run's one client.

- `kaseya_changes`: the incremental lists (`entities.INCREMENTAL_SOURCES`), **hourly-partitioned** on
  Kaseya's `ModifiedOn`, side by side. What a run queries is its hours' window, reaching back over whatever
  earlier runs did not cover: a tenant's first run, whichever hour it is for, extracts its whole history
  (`domain/incremental.py`). A range of hours is one run and one query per list.
- `kaseya_catalogue`: the snapshot lists (products with their pricing, employees, statuses, lookups...), not
  partitioned (Kaseya has no date filter for them), side by side, change-detected by content hash.
"""
# Dagster inspects the annotations of asset functions at definition time: no postponed annotations here.

from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
from pydantic import Field

from zk_pipelines.clients.http import ApiError, AuthenticationError, PermissionDenied
from zk_pipelines.clients.kaseya import BudgetExhausted, KaseyaClient, KaseyaUsage
from zk_pipelines.defs.asset_keys import asset_key, step_of
from zk_pipelines.defs.partitions import SINGLE_RUN, hours_of_run, is_tenant_partitioned, now, partition_keys_of_run
from zk_pipelines.defs.resources import KaseyaResource, PullTuning, StateStoreResource
from zk_pipelines.domain.entities import INCREMENTAL_SOURCES, SNAPSHOT_SOURCES, KaseyaSource
from zk_pipelines.pull.extract import extract_changes, extract_snapshots, refresh_product_pricing
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.raw_store import SnapshotCounts, read_snapshot, rows_by_hour

GROUP = "kaseya_extract"
CATALOGUE_STEP = "kaseya_catalogue"

CHANGES_KEY = asset_key("raw", "kaseya_changes")
CHANGES_STEP = step_of(CHANGES_KEY)

# A step calling an API that failed on what a repeat can fix (an answer garbled, or refused with a server
# error, after the client's own retries) runs again, visibly in the UI, before the run fails.
API_STEP_RETRIES = dg.RetryPolicy(max_retries=3, delay=1.0)
# What a repeat cannot fix, and must not try: a spent hourly budget (more calls only collect 429s), rejected
# credentials (repeated failed logins can lock the API user out), a missing permission.
NOT_RETRIED = (BudgetExhausted, AuthenticationError, PermissionDenied)

CALLS_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("endpoint", "string"),
    dg.TableColumn("calls_this_step", "int"),
    dg.TableColumn("budget_taken_this_hour", "int",
                   description="by every run and push of the tenant (their calls, and the leases they hold)"),
    dg.TableColumn("hourly_budget", "int"),
])


def raw_key(source: KaseyaSource) -> dg.AssetKey:
    """The asset a Kaseya list is extracted by: its own table's for a snapshot, the changes' for an incremental
    list (the incremental lists are one hourly-partitioned asset)."""
    return CHANGES_KEY if source.incremental else asset_key("raw", source.raw_table)


def final_failure(exc: ApiError) -> dg.Failure:
    """The step's outcome for an error a retry cannot fix. For a spent budget the description names the
    endpoint and says the work resumes next hour (the next hourly run, or a re-run of this partition then)."""
    metadata: dict[str, object] = {"api": exc.api, "operation": exc.operation}
    if isinstance(exc, BudgetExhausted):
        metadata["resumes_in_minutes"] = round((exc.retry_after or 0) / 60)
    return dg.Failure(description=exc.message if isinstance(exc, BudgetExhausted) else str(exc),
                      allow_retries=False, metadata=metadata)


def step_failure(failures: dict[str, BaseException]) -> BaseException:
    """One error for the lists that failed: a final failure when any of them cannot be fixed by a repeat."""
    final = [exc for exc in failures.values() if isinstance(exc, NOT_RETRIED)]
    if final:
        return final_failure(final[0])
    if len(failures) == 1:
        return next(iter(failures.values()))
    return dg.Failure(description="; ".join(f"{name}: {exc}" for name, exc in failures.items()))


def api_usage(client: KaseyaClient, usage: KaseyaUsage | None = None) -> dict[str, dg.MetadataValue]:
    """The calls a step made (`usage`, its own tally; by default everything the client sent), and each
    endpoint's budget used this hour by the whole tenant (every run and push shares it)."""
    if usage is None:
        usage = client.stats.usage()
    used = client.budget.used()
    return {
        "kaseya_calls": dg.MetadataValue.int(usage.data_calls),
        "kaseya_logins": dg.MetadataValue.int(usage.logins),
        "kaseya_token_refreshes": dg.MetadataValue.int(usage.refreshes),
        "kaseya_retries": dg.MetadataValue.int(usage.retries),
        "kaseya_calls_by_endpoint": dg.MetadataValue.table(schema=CALLS_COLUMNS, records=[dg.TableRecord({
            "endpoint": label, "calls_this_step": usage.calls.get(label, 0),
            "budget_taken_this_hour": used.get(label, 0), "hourly_budget": client.budget.hourly_limit,
        }) for label in sorted(usage.calls)]),
    }


class ChangesConfig(dg.Config):
    """Run-time knob of the incremental extraction."""

    whole_history: bool = Field(
        default=False,
        description="Extract every record Kaseya holds, whatever its ModifiedOn (a full re-sync), instead of "
                    "the run's hours and any hours earlier runs missed. A tenant's first run does this by itself.")


def changes_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    # One hourly-partitioned asset for the incremental lists, not one each: Dagster records a materialization
    # per partition of every partitioned asset in a run, so a 30-day backfill writes 720 events here where three
    # lists as three assets would write 2,160 (each ~6 ms on a SQLite instance, ~30 ms on PostgreSQL).
    tables = ", ".join(f"raw.{source.raw_table}" for source in INCREMENTAL_SOURCES)

    @dg.asset(
        key=CHANGES_KEY, group_name=GROUP, kinds={"kaseya", "duckdb"}, partitions_def=partitions,
        # A backfill of hours is one run; of tenants, a run each (a run's resources are one tenant's).
        backfill_policy=None if isinstance(partitions, dg.StaticPartitionsDefinition) else SINGLE_RUN,
        pool="kaseya_api", retry_policy=API_STEP_RETRIES,
        description=f"Kaseya's incremental lists ({', '.join(s.name for s in INCREMENTAL_SOURCES)}), read side by "
                    f"side through the run's one client into {tables}: the latest payload Kaseya sent for each "
                    "record, upserted on the Kaseya id, with the window that brought it. Hourly partitions on "
                    "ModifiedOn: a run queries its hours (15 minutes of overlap before them) and any hours before "
                    "them that no run covered yet, so a tenant's first run extracts its whole history. Each hour's "
                    "materialization counts the records modified in it; the run's figures are on its last hour.",
    )
    def kaseya_changes(context: dg.AssetExecutionContext, config: ChangesConfig, kaseya: KaseyaResource,
                       state: StateStoreResource, tuning: PullTuning) -> dg.MaterializeResult:
        database = state.database()
        client = kaseya.client(state)
        start, end = (hours_of_run(context.run.tags) if is_tenant_partitioned(context)
                      else context.partition_time_window)
        with client.step_usage() as calls:
            results = extract_changes(client, database, INCREMENTAL_SOURCES, start, end,
                                      overlap=timedelta(minutes=tuning.overlap_minutes),
                                      whole_history=config.whole_history, run_id=context.run.run_id, now=now())
        keys = partition_keys_of_run(context)
        extracted = {name: result for name, result in results.items() if not isinstance(result, BaseException)}
        failures = {name: result for name, result in results.items() if isinstance(result, BaseException)}
        # Per hour, what it brought of each list (records older than the run's first hour count to it); the run's
        # figures once, on its last hour.
        by_hour: dict[str, dict[str, int]] = {}
        with connect(database, read_only=True) as connection:
            for source in INCREMENTAL_SOURCES:
                if source.name in extracted:
                    by_hour[source.name] = rows_by_hour(connection, source.raw_table, context.run.run_id, keys)
        if failures:
            raise step_failure(failures)  # what was read is kept in raw, pending: the re-run stages it
        tenant_partitioned = is_tenant_partitioned(context)
        for partition_key in keys if not tenant_partitioned else ():
            context.add_asset_metadata({f"{name}_modified_in_hour": counts.get(partition_key, 0)
                                        for name, counts in by_hour.items()}, partition_key=partition_key)
        run_figures: dict[str, object] = {"run_partitions": len(keys)}
        for name, result in extracted.items():
            run_figures |= {
                f"{name}_rows": result.rows, f"{name}_unreadable_rows": result.unreadable,
                f"{name}_query": result.window.describe(),
                f"{name}_covered_through": (result.covered_through.isoformat() if result.covered_through
                                            else "nothing"),
            }
        run_figures["whole_history"] = any(result.window.whole_history for result in extracted.values())
        run_figures |= api_usage(client, calls.usage())
        if tenant_partitioned:  # the tenant's partition: the run's hours, their records in one figure
            run_figures |= {f"{name}_modified_in_run_hours": sum(counts.values()) for name, counts in by_hour.items()}
        context.add_asset_metadata(run_figures, partition_key=context.partition_key if tenant_partitioned
                                   else keys[-1])
        return dg.MaterializeResult()

    return kaseya_changes


def _pricing(context: dg.AssetExecutionContext, client: KaseyaClient, database, tuning: PullTuning, run_id: str
             ) -> dict[str, object]:
    with connect(database) as connection:
        ids = [int(p["productIndexId"]) for p in read_snapshot(connection, "kaseya_products")]
    pricing = refresh_product_pricing(client, database, ids, calls_per_hour=tuning.pricing_calls_per_hour,
                                      max_age=timedelta(hours=tuning.pricing_max_age_hours), run_id=run_id, now=now(),
                                      concurrency=tuning.kaseya_concurrency)
    if pricing.stopped:
        context.log.warning(f"product pricing stopped after {pricing.refreshed} products: {pricing.stopped}; the "
                            "products not priced yet wait for it")
    oldest = pricing.oldest_refresh
    return {
        "prices_refreshed": pricing.refreshed,
        "pricing_calls": pricing.calls,
        "oldest_price_age_hours": round((now() - oldest).total_seconds() / 3600, 2) if oldest else 0.0,
        "pricing_stopped": pricing.stopped or "no: every product due was priced",
    }


def _snapshot_metadata(counts: SnapshotCounts) -> dict[str, object]:
    return {"dagster/row_count": counts.total, "rows": counts.total, "new": counts.new, "changed": counts.changed,
            "unchanged": counts.unchanged,
            "gone": counts.gone}


def catalogue_asset(partitions: dg.PartitionsDefinition | None = None) -> dg.AssetsDefinition:
    specs = [dg.AssetSpec(
        raw_key(source), group_name=GROUP, kinds={"kaseya", "duckdb"},
        description=f"{source.description} Table raw.{source.raw_table}: an hourly snapshot (Kaseya has no date "
                    "filter for it), change-detected by content hash; records Kaseya no longer lists are kept "
                    "and counted as gone.",
    ) for source in SNAPSHOT_SOURCES]

    @dg.multi_asset(
        name=CATALOGUE_STEP, specs=specs, can_subset=True, pool="kaseya_api", retry_policy=API_STEP_RETRIES,
        partitions_def=partitions,
        description="The snapshot Kaseya lists, side by side through the run's one client; products' pricing "
                    "refreshed within its budget.",
    )
    def kaseya_catalogue(context: dg.AssetExecutionContext, kaseya: KaseyaResource, state: StateStoreResource,
                         tuning: PullTuning) -> Iterator[dg.MaterializeResult]:
        sources = [s for s in SNAPSHOT_SOURCES if raw_key(s) in context.selected_asset_keys]
        database = state.database()
        client = kaseya.client(state)
        run_id = context.run.run_id
        with client.step_usage() as calls:
            results = extract_snapshots(client, database, sources, run_id=run_id, now=now(),
                                        concurrency=tuning.kaseya_concurrency)
            pricing = None
            if isinstance(results.get("products"), SnapshotCounts):
                try:
                    pricing = _pricing(context, client, database, tuning, run_id)
                except Exception as exc:  # reported with the step's other failures
                    results["products"] = exc
        usage = api_usage(client, calls.usage())
        failures = {name: result for name, result in results.items() if isinstance(result, BaseException)}
        # The step's calls (every snapshot list's) once, on the first list it materializes.
        step_figures = {f"step_{name}": value for name, value in usage.items()}
        for source in sources:
            result = results[source.name]
            if isinstance(result, BaseException):
                continue
            metadata = {**_snapshot_metadata(result), **step_figures}
            step_figures = {}
            if source.name == "products" and pricing is not None:
                metadata |= pricing
            yield dg.MaterializeResult(asset_key=raw_key(source), metadata=metadata)
        if failures:
            raise step_failure(failures)

    return kaseya_catalogue


def kaseya_assets(partitions: dg.PartitionsDefinition, tenants: dg.PartitionsDefinition | None = None
                  ) -> list[dg.AssetsDefinition]:
    """With `tenants` (a deployment of several), every asset is partitioned by tenant, the changes' hours in the
    run's tags (`partitions.HOURS_TAG`); else the changes are hourly and the catalogue is not partitioned."""
    return [changes_asset(tenants or partitions), catalogue_asset(tenants)]
