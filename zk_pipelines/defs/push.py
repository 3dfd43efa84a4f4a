"""The push path: the Won-document sensor -> the push job -> Kaseya, ledgered (`push.documents`,
`push.requests`, `audit.sync_events`).

- Zomentum as CRM: `won_document_sensor` (running by default) launches `push_document_job` once per
  document version newly marked Won.
- Kaseya as CRM: a person launches `push_document_job` from the launchpad (or runs `zk push`) for one
  document, after reviewing what it will send with `dry_run: true`.
"""

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from zk_pipelines.defs.asset_keys import asset_key
from zk_pipelines.defs.jobs import DEFAULT_TENANT, PUSH_TAG
from zk_pipelines.defs.kaseya_extract import api_usage
from zk_pipelines.defs.resources import KaseyaResource, StateStoreResource, ZomentumResource
from zk_pipelines.defs.tenant_automation import TenantAutomation
from zk_pipelines.domain.entities import ZOMENTUM_TARGETS
from zk_pipelines.domain.push_plan.dry_run import render_plan
from zk_pipelines.push.failures import PushFailed
from zk_pipelines.push.orchestration import PushSources, push_document, render_outcome
from zk_pipelines.push.won_documents import PollCursor, poll_won_documents

PUSH_JOB = "push_document_job"
PUSHED_DOCUMENTS_KEY = asset_key("push", "documents")
# What a push reads: Won documents and the id map from every target's load, and the Kaseya catalogue from the
# pull's snapshots (the lists a push resolves names in: its own need, not the registry's entities).
PUSH_READS = (*(asset_key("zomentum", target.name) for target in ZOMENTUM_TARGETS),
              *(asset_key("raw", f"kaseya_{name}") for name in (
                  "products", "employees", "opportunity_statuses", "product_categories", "warehouses", "lookups")))
PUSH_OP = "push_won_document"
WON_DOCUMENT_SENSOR = "won_document_sensor"
DOCUMENT_TAG = "zk/document_id"
VERSION_TAG = "zk/document_version"


class PushConfig(dg.Config):
    """What to push: the document, optional overrides of the opportunity and quote fields (as in the
    spec's "Push Changes to PSA" pop-up), and whether to only show the writes."""

    document_id: str = Field(description="The Zomentum document id.")
    overrides: list[str] = Field(
        default=[],
        description="field=value overrides: subject, close_date, probability, amount, customer_po, description, "
                    "status_id, type_id, rating_id, lead_source_id, contact_id, sales_representative_user_id, "
                    "quote.name, quote.expiry_date, quote.status_id, quote.sales_representative_user_id.",
    )
    dry_run: bool = Field(default=False, description="Plan and show every Kaseya write (method, path, body); "
                                                      "send nothing.")


def push_run_config(document_id: str, overrides: Sequence[str] = (), dry_run: bool = False) -> dict:
    return {"ops": {PUSH_OP: {"config": {"document_id": document_id, "overrides": list(overrides),
                                         "dry_run": dry_run}}}}


def _tag_run(context: dg.OpExecutionContext, document_id: str, version: str | None) -> None:
    tags = {DOCUMENT_TAG: document_id}
    if version is not None:
        tags[VERSION_TAG] = version
    context.instance.add_run_tags(context.run_id, tags)


# A push that failed on something passing (an API down or garbled, an answer lost, the DuckDB file locked) is
# attempted again in the same run, visibly in the UI; every attempt resumes from the push ledger, so what an
# earlier attempt wrote is adopted, never written twice. A refusal is final.
PUSH_RETRIES = dg.RetryPolicy(max_retries=3, delay=2.0, backoff=dg.Backoff.EXPONENTIAL)


@dg.op(
    name=PUSH_OP, pool="kaseya_api", retry_policy=PUSH_RETRIES,
    description="Push one Zomentum document to Kaseya: the opportunity (created or fully replaced), and with "
                "push_quotes_on_won the quote and its lines and the catalogue items they need; Kaseya read back "
                "and compared; the Kaseya link written onto the Zomentum opportunity. Exactly once: every write "
                "is ledgered before and after it is sent (push.requests) and an interrupted push's records are "
                "found by their document marker and adopted.",
)
def push_won_document(context: dg.OpExecutionContext, config: PushConfig, kaseya: KaseyaResource,
                      zomentum: ZomentumResource, state: StateStoreResource) -> dg.Output[None]:
    instance = context.instance

    def run_alive(run_id: str) -> bool | None:
        """Whether the run holding a document still runs, as the instance knows it (None: not a Dagster run,
        such as `zk push`)."""
        run = instance.get_run_by_id(run_id)
        return None if run is None else not run.is_finished

    sources = PushSources(kaseya.client(state), zomentum.client(), state.settings_file(), state.database(),
                          run_alive)
    return _push(context, config, sources)


def _push(context: dg.OpExecutionContext, config: PushConfig, sources: PushSources) -> dg.Output[None]:
    try:
        outcome = push_document(sources, config.document_id, config.overrides, dry_run=config.dry_run,
                                run_id=context.run_id)
    except PushFailed as failure:
        _tag_run(context, failure.document_id, failure.document_version)
        raise dg.Failure(description=str(failure), allow_retries=failure.retryable, metadata={
            "document_id": failure.document_id,
            "document_version": failure.document_version or "unknown",
            "audit_log": "audit.sync_events (direction push), push.documents, push.requests",
        }) from failure
    _tag_run(context, outcome.document_id, outcome.document_version)
    context.log.info(render_outcome(outcome))
    metadata: dict = {
        "document_id": outcome.document_id,
        "document_version": outcome.document_version,
        "settings_fingerprint": outcome.settings_fingerprint,
        "dry_run": outcome.dry_run,
        "planned_writes": len(outcome.plan.requests),
    }
    metadata |= api_usage(sources.kaseya)
    metadata["zomentum_calls"] = sources.zomentum.counter.sent
    if outcome.dry_run:
        metadata["plan"] = dg.MetadataValue.md(f"```\n{render_plan(outcome.plan)}\n```")
    else:
        metadata.update({
            "kaseya_writes": len(outcome.sent),
            "kaseya_opportunity_id": outcome.ids.opportunity_id,
            "kaseya_opportunity": dg.MetadataValue.url(outcome.opportunity_link or ""),
            "kaseya_quote_id": outcome.ids.quote_id if outcome.ids.quote_id is not None else "none",
            "recovered": "\n".join(outcome.recovered) or "nothing in doubt",
            "writes_sent": dg.MetadataValue.md(f"```\n{render_outcome(outcome)}\n```"),
        })
        tenant = context.partition_key if context.has_partition_key else None  # a registry tenant's push
        context.log_event(dg.AssetMaterialization(PUSHED_DOCUMENTS_KEY, partition=tenant, metadata={
            key: metadata[key] for key in ("document_id", "document_version", "kaseya_writes",
                                           "kaseya_opportunity_id", "kaseya_opportunity", "kaseya_quote_id")}))
    return dg.Output(None, metadata=metadata)


def pushed_documents_asset(partitions: dg.PartitionsDefinition | None = None) -> dg.AssetSpec:
    """The push in the lineage: what flows back from Zomentum to Kaseya. Materialized by `push_document_job`
    (one materialization per document pushed), not by the hourly sync."""
    return dg.AssetSpec(
        PUSHED_DOCUMENTS_KEY, group_name="push", kinds={"zomentum", "kaseya", "duckdb"}, deps=PUSH_READS,
        partitions_def=partitions,
        description="Zomentum documents pushed to Kaseya (Won, or on demand): each becomes a Kaseya opportunity "
                    "(created or fully replaced) and, with push_quotes_on_won, a quote with its lines. Table "
                    "push.documents, one row per document version, with push.requests (every write, ledgered "
                    "before and after it is sent). Materialized by push_document_job, one event per push.",
    )


def build_push_job(tenant: str | None = DEFAULT_TENANT, tenants: dg.PartitionedConfig | None = None
                   ) -> dg.JobDefinition:
    """One tenant's push job (`tenant`: its runs' tag), or with `tenants` a deployment's, partitioned by tenant:
    a run's partition names whose document it pushes, and gives the run its tenant's tags."""

    @dg.job(name=PUSH_JOB, executor_def=dg.in_process_executor, tags={PUSH_TAG: tenant} if tenant else None,
            config=tenants,
            description="Push one Zomentum document to Kaseya (config: document_id, overrides, dry_run).")
    def push_document_job() -> None:
        push_won_document()

    return push_document_job


def build_won_document_sensor(job: dg.JobDefinition, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                              tenant: TenantAutomation | None = None) -> dg.SensorDefinition:
    """The Won-document sensor of the one tenant (its resources injected), or of `tenant`, a registry tenant
    (resources of its own, its runs launched for its partition with its tags)."""
    description = ("Zomentum as CRM: polls Zomentum for documents newly marked Won (cursor on updated_at) and "
                   "launches the push job once per document version (run key: document id and version). Does "
                   "nothing in kaseya_as_crm mode, where documents are pushed on demand.")
    if tenant is None:
        @dg.sensor(name=WON_DOCUMENT_SENSOR, job=job, default_status=dg.DefaultSensorStatus.RUNNING,
                   minimum_interval_seconds=60, description=description)
        def won_document_sensor(context: dg.SensorEvaluationContext, state: StateStoreResource,
                                zomentum: ZomentumResource) -> dg.SensorResult | dg.SkipReason:
            return _poll(context, state, zomentum, clock())

        return won_document_sensor

    @dg.sensor(name=f"{WON_DOCUMENT_SENSOR}_{tenant.key}", job=job, default_status=dg.DefaultSensorStatus.RUNNING,
               minimum_interval_seconds=60, description=f"Tenant {tenant.key}. {description}")
    def tenant_won_document_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        resources = tenant.resources()
        try:
            return _poll(context, resources["state"], resources["zomentum"], clock(), tenant)
        finally:
            resources["zomentum"].teardown_after_execution(None)

    return tenant_won_document_sensor


def _poll(context: dg.SensorEvaluationContext, state: StateStoreResource, zomentum: ZomentumResource,
          at: datetime, tenant: TenantAutomation | None = None) -> dg.SensorResult | dg.SkipReason:
    mode = state.settings().mode
    if not mode.pushes_won_opportunity:
        return dg.SkipReason(f"mode {mode}: documents are pushed on demand (zk push, or {PUSH_JOB} from the "
                             "launchpad)")
    cursor = PollCursor.from_json(context.cursor) if context.cursor else None
    found, new_cursor = poll_won_documents(zomentum.client(), cursor, at)
    # A registry tenant's run is for its partition, which gives the run the tenant's tags (`tenant_run_config`).
    requests = [dg.RunRequest(run_key=document.run_key, run_config=push_run_config(document.document_id),
                              partition_key=tenant.key if tenant is not None else None,
                              tags={DOCUMENT_TAG: document.document_id, VERSION_TAG: document.version})
                for document in found]
    skip = None if requests else ("first poll: documents Won from now on are pushed" if cursor is None
                                  else "no document newly marked Won")
    return dg.SensorResult(run_requests=requests, cursor=new_cursor.to_json(), skip_reason=skip)
