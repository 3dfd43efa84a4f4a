"""Group `kaseya_extract`: one `raw` asset per Kaseya list, built from the entity table."""
# Dagster inspects the annotations of asset functions at definition time: no postponed annotations here.


from datetime import timedelta

import dagster as dg

from zk_pipelines.clients.http import ApiError, AuthenticationError, PermissionDenied
from zk_pipelines.clients.kaseya import BudgetExhausted, KaseyaClient, KaseyaUsage
from zk_pipelines.defs.partitions import now, partition_label, partitioning, run_window
from zk_pipelines.defs.resources import PullTuning, TenantResource
from zk_pipelines.domain.entities import KASEYA_SOURCES, KaseyaSource
from zk_pipelines.pull.extract import extract_incremental, extract_snapshot, refresh_product_pricing
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import read_snapshot

GROUP = "kaseya_extract"

# A step calling an API that failed on what a repeat can fix (an answer garbled, or refused with a server
# error, after the client's own retries) runs again, visibly in the UI, before the run fails.
API_STEP_RETRIES = dg.RetryPolicy(max_retries=3, delay=1.0)
# What a repeat cannot fix, and must not try: a spent hourly budget (more calls only collect 429s), rejected
# credentials (repeated failed logins can lock the API user out), a missing permission.
NOT_RETRIED = (BudgetExhausted, AuthenticationError, PermissionDenied)


def final_failure(exc: ApiError) -> dg.Failure:
    """The step's outcome for an error a retry cannot fix. For a spent budget the description names the
    endpoint and says the work resumes next hour (the next hourly run, or a re-run of this partition then)."""
    metadata: dict[str, object] = {"api": exc.api, "operation": exc.operation}
    if isinstance(exc, BudgetExhausted):
        metadata["resumes_in_minutes"] = round((exc.retry_after or 0) / 60)
    return dg.Failure(description=exc.message if isinstance(exc, BudgetExhausted) else str(exc),
                      allow_retries=False, metadata=metadata)


def api_usage(client: KaseyaClient, usage: KaseyaUsage | None = None) -> dict[str, dg.MetadataValue]:
    """The calls a step made (`usage`, its own tally; by default everything the client sent), and each
    endpoint's budget used this hour by the whole run (its steps share one client)."""
    if usage is None:
        usage = client.stats.usage()
    used = client.budget.used()
    return {
        "kaseya_calls": dg.MetadataValue.int(usage.data_calls),
        "kaseya_logins": dg.MetadataValue.int(usage.logins),
        "kaseya_token_refreshes": dg.MetadataValue.int(usage.refreshes),
        "kaseya_retries": dg.MetadataValue.int(usage.retries),
        "kaseya_calls_by_endpoint": dg.MetadataValue.md(
            "| endpoint | calls this step | budget used this hour |\n|---|---|---|\n" + "\n".join(
                f"| `{label}` | {usage.calls.get(label, 0)} | {used.get(label, 0)} / "
                f"{client.budget.hourly_limit} |" for label in sorted(usage.calls)) if usage.calls else "no calls"),
    }


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


def build_raw_asset(source: KaseyaSource, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    kind = ("incremental on ModifiedOn (hourly partitions, overlap before each window, upsert on the Kaseya id)"
            if source.incremental else "an hourly snapshot, change-detected by content hash")

    @dg.asset(
        key=["raw", source.raw_table], group_name=GROUP, **partitioning(partitions, source.incremental),
        pool="kaseya_api", kinds={"duckdb", "python"}, retry_policy=API_STEP_RETRIES,
        description=f"{source.description} Table raw.{source.raw_table}: the source payload as Kaseya sent "
                    f"it, with the extraction window and time. {kind[0].upper()}{kind[1:]}.",
    )
    def raw_asset(context: dg.AssetExecutionContext, tenant: TenantResource, tuning: PullTuning
                  ) -> dg.MaterializeResult:
        database = tenant.pull_database()
        client = tenant.kaseya_client()
        run_id = context.run.run_id
        metadata: dict[str, object] = {"partition": partition_label(context) or "snapshot (not partitioned)"}
        # The run's Kaseya extractions run side by side through one client: each counts its own calls.
        with client.step_usage() as calls:
            metadata |= _extract(context, client, database, source, tuning, run_id)
        return dg.MaterializeResult(metadata={**metadata, **api_usage(client, calls.usage())})

    return raw_asset


def _extract(context: dg.AssetExecutionContext, client: KaseyaClient, database, source: KaseyaSource,
             tuning: PullTuning, run_id: str) -> dict[str, object]:
    """Extract one Kaseya list (and, for products, refresh their pricing); its figures for the metadata."""
    metadata: dict[str, object] = {}
    try:
        if source.incremental:
            window = run_window(context, timedelta(minutes=tuning.overlap_minutes))
            result = extract_incremental(client, database, source, window, run_id=run_id, now=now())
            metadata |= {"rows": result.rows, "unreadable_rows": result.unreadable,
                         "query_from": window.query_from.isoformat(), "query_to": window.query_to.isoformat()}
        else:
            counts = extract_snapshot(client, database, source, run_id=run_id, now=now(),
                                      concurrency=tuning.kaseya_concurrency)
            metadata |= {"rows": counts.total, "new": counts.new, "changed": counts.changed,
                         "unchanged": counts.unchanged, "gone": counts.gone}
            if source.name == "products":
                metadata |= _pricing(context, client, database, tuning, run_id)
    except NOT_RETRIED as exc:
        raise final_failure(exc) from None
    return metadata


def raw_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [build_raw_asset(source, partitions) for source in KASEYA_SOURCES]
