"""One push of one Zomentum document to Kaseya, start to end: what the push job runs and `zk push` runs.

1. Resolve the settings against the live names (their fingerprint goes into the ledger and the run).
2. Read the document from Zomentum, resolve it against Kaseya and plan every write (`resolve`).
3. A dry run stops here and returns the plan. A push records the attempt, settles what earlier attempts
   left in doubt (adopted or not created), sends the writes with the ledger written around each, reads
   Kaseya back, writes the Kaseya link onto the Zomentum opportunity, and logs every outcome in the audit
   log (`audit.sync_events`, direction "push").

Any failure is raised as `PushFailed` naming the document and the cause, after it is recorded in the push
ledger and the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from zk_pipelines.catalogs import fetch_zomentum_catalog, kaseya_catalog_from_rows
from zk_pipelines.clients.http import ApiError
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import ConfigurationError, TenantConfig
from zk_pipelines.domain.bundles import PushPlanError
from zk_pipelines.domain.entities import KASEYA_LINK_ENTITY
from zk_pipelines.domain.links import kaseya_link
from zk_pipelines.domain.push_plan.dry_run import render_plan
from zk_pipelines.domain.push_plan.overrides import parse_overrides
from zk_pipelines.domain.push_plan.plan import PushPlan
from zk_pipelines.domain.push_plan.requests import PendingId, PlannedRequest
from zk_pipelines.domain.settings_check import ResolvedSettings, resolve_settings
from zk_pipelines.domain.settings_file import load_settings
from zk_pipelines.push.catalogue import CATALOGUE_LISTS, KaseyaCatalogue
from zk_pipelines.push.document import read_document
from zk_pipelines.push.execute import Execution, read_back, send_writes, write_opportunity_link
from zk_pipelines.push.failures import PushFailed, passing
from zk_pipelines.push.holders import zk_push_process
from zk_pipelines.push.ledger import PushLedger, read_known_ids, record_push_events, utc_now
from zk_pipelines.push.resolve import (
    ITEMS,
    OPPORTUNITIES,
    QUOTE_LINES,
    QUOTES,
    FoundRecord,
    PreparedPush,
    prepare_push,
)
from zk_pipelines.storage.budget_store import budget_store_for
from zk_pipelines.storage.database import DatabaseUnusable
from zk_pipelines.storage.ledger_store import SyncEvent
from zk_pipelines.storage.push_store import (
    ADOPTED,
    FAILED,
    HOLD_LAPSES_AFTER,
    NOT_CREATED,
    SUCCEEDED,
    SUPERSEDED,
    DocumentHeld,
    DocumentIds,
    LedgerRequest,
    unknown_runs,
)

# Which Kaseya link template (settings.links.kaseya) an audit entity's records open: the pull's for the entities
# it shares (entities.KASEYA_LINK_ENTITY), but none for items: a pushed item is a Kaseya product or a service
# item, and the "product" template opens products only. A quote line opens its quote.
_KASEYA_LINK_ENTITY = {**{entity: kind for entity, kind in KASEYA_LINK_ENTITY.items() if entity != ITEMS},
                       QUOTES: "quote", QUOTE_LINES: "quote"}


def held_advice(run_id: str, *, known_run: bool) -> str:
    """What a person does when run `run_id` holds the document: how to release it, by the kind of holder."""
    process = zk_push_process(run_id)
    if process is None:
        # A Dagster run (the sensor's or the launchpad's push job): its instance holds it until it has finished.
        return (f"push again once it has finished; if its process died, terminate run {run_id} in the Dagster UI "
                "(Runs > the run > Terminate), which releases the document")
    host, pid = process
    if known_run:
        return f"push again once it has finished (a zk push, process {pid} on {host}, still running)"
    return (f"push again once it has finished; if that zk push (process {pid} on {host}) died, `zk push "
            f"--take-over` on {host} checks that it is gone and takes the document over (or wait "
            f"{HOLD_LAPSES_AFTER.seconds // 60} minutes after its last ledger write)")


@dataclass(frozen=True)
class PushSources:
    """Where a push reads and writes: the two APIs, the settings file and the tenant's DuckDB file."""

    kaseya: KaseyaClient
    zomentum: ZomentumClient
    settings_path: Path
    database: Path
    # Whether another run that holds a document still runs (None: cannot tell); see push_store.start_document.
    run_alive: Callable[[str], bool | None] = unknown_runs

    @classmethod
    def from_config(cls, config: TenantConfig, *, kaseya: KaseyaClient | None = None,
                    run_alive: Callable[[str], bool | None] = unknown_runs) -> PushSources:
        """`kaseya`: the run's client when there is one (one login per run)."""
        if config.settings_path is None:
            raise ConfigurationError("ZK_SETTINGS is not set (path of the settings YAML)")
        if config.zomentum is None:
            raise ConfigurationError("ZOMENTUM_BASE_URL is not set: the push reads the document from Zomentum")
        # Outside a run (`zk push`), the client counts its calls in the tenant's budget like the runs do.
        store = config.state_store()
        kaseya = kaseya or KaseyaClient(config.kaseya, budget_store=budget_store_for(config.duckdb_path, store))
        return cls(kaseya, ZomentumClient(config.zomentum), config.settings_path, config.duckdb_path, run_alive)


@dataclass(frozen=True)
class PushOutcome:
    document_id: str
    document_version: str
    settings_fingerprint: str
    plan: PushPlan
    dry_run: bool
    sent: tuple[PlannedRequest, ...] = ()  # the Kaseya writes as sent, placeholders filled
    created: Mapping[PendingId, int] = field(default_factory=dict)
    ids: DocumentIds = field(default_factory=DocumentIds)
    opportunity_link: str | None = None
    recovered: tuple[str, ...] = ()  # how the writes earlier attempts left in doubt were settled

    def summary(self) -> str:
        if self.dry_run:
            return f"dry run of Zomentum document {self.document_id}: {len(self.plan.requests)} write(s) planned"
        quote = f", quote {self.ids.quote_id}" if self.ids.quote_id is not None else ""
        return (f"pushed Zomentum document {self.document_id} (version {self.document_version}): "
                f"{len(self.sent)} Kaseya write(s); opportunity {self.ids.opportunity_id}{quote}; "
                f"{self.opportunity_link}")


def resolve_push_settings(sources: PushSources, catalogue: KaseyaCatalogue
                          ) -> tuple[ResolvedSettings, dict[int, float]]:
    """The settings resolved against the names Kaseya has (the pull's fresh catalogue, else Kaseya now) and
    Zomentum has now, and each opportunity status's probability."""
    settings = load_settings(sources.settings_path).for_systems(sources.kaseya.base_url, sources.zomentum.base_url)
    rows = {name: catalogue.rows(table) for name, table in CATALOGUE_LISTS.items()}
    resolved = resolve_settings(settings, kaseya_catalog_from_rows(rows), fetch_zomentum_catalog(sources.zomentum))
    probabilities = {int(row["id"]): float(row.get("probability") or 0) for row in rows["opportunity_statuses"]}
    return resolved, probabilities


def push_document(
    sources: PushSources, document_id: str, overrides: Sequence[str] | Mapping[str, object] = (), *,
    dry_run: bool = False, run_id: str, clock: Callable[[], datetime] = utc_now,
    progress: Callable[[str], None] = lambda _: None,
) -> PushOutcome:
    """Push (or, with `dry_run`, plan) one document; raises PushFailed. `progress` is told each phase as it
    ends (`zk push` prints them)."""
    fingerprint: str | None = None
    version: str | None = None
    ledger: PushLedger | None = None
    prepared: PreparedPush | None = None
    execution = Execution()
    try:
        parsed = parse_overrides(overrides)
        catalogue = KaseyaCatalogue(sources.kaseya, sources.database, clock())
        resolved, probabilities = resolve_push_settings(sources, catalogue)
        fingerprint = resolved.fingerprint
        progress(f"settings resolved ({fingerprint[:12]})")
        source = read_document(sources.zomentum, document_id, active_users=resolved.zomentum.users,
                               with_lines=resolved.settings.sync.push_quotes_on_won)
        version = source.version
        progress(f"document {document_id} read (version {version})")
        in_doubt: list[LedgerRequest] = []
        if not dry_run:
            ledger = PushLedger(sources.database, document_id, version, run_id, clock, sources.run_alive)
            in_doubt = ledger.start(fingerprint)
        prepared = prepare_push(sources.kaseya, source, resolved, parsed, read_known_ids(sources.database, source),
                                status_probabilities=probabilities, catalogue=catalogue)
        progress(f"{len(prepared.plan.requests)} Kaseya write(s) planned")
        if ledger is None:
            return PushOutcome(document_id, version, fingerprint, prepared.plan, dry_run=True)

        adopted, recovered = _settle_in_doubt(ledger, in_doubt, prepared)
        ledger.pair([(f.id_map_entity, f.kaseya_id, f.zomentum_id) for f in prepared.found
                     if f.id_map_entity and f.zomentum_id])
        execution = send_writes(prepared, sources.kaseya, ledger)
        progress(f"{len(execution.sent)} Kaseya write(s) sent")
        read_back(prepared, execution, sources.kaseya)
        progress("Kaseya read back and compared")
        ids = _document_ids(prepared, execution)
        link = kaseya_link(resolved, "opportunities", str(ids.opportunity_id))
        write_opportunity_link(sources.zomentum, prepared, link, ledger, step=len(prepared.steps) + 1)
        ledger.finish(SUCCEEDED, ids, writes_sent=len(execution.sent))
        record_push_events(sources.database, _events(prepared, execution, adopted, resolved), run_id=run_id,
                           fingerprint=fingerprint, now=clock())
        return PushOutcome(document_id, version, fingerprint, prepared.plan, dry_run=False,
                           sent=tuple(write.request for write in execution.sent), created=dict(execution.ids),
                           ids=ids, opportunity_link=link, recovered=tuple(recovered))
    except DocumentHeld as held:  # nothing of this attempt is recorded: the ledger is the other run's
        wait = held_advice(held.run_id, known_run=held.known_run)
        # Not retried: a retry within seconds would find the same run still holding the document.
        raise PushFailed(document_id, f"run {held.run_id} has been pushing this document since "
                                      f"{held.since:%Y-%m-%d %H:%M:%S %Z}; this attempt sent nothing: {wait}",
                         document_version=version) from held
    except (PushFailed, PushPlanError, ApiError, ConfigurationError, DatabaseUnusable, duckdb.Error) as exc:
        if isinstance(exc, PushFailed):
            failure = exc
        elif isinstance(exc, duckdb.Error):
            failure = PushFailed(document_id, f"the tenant's DuckDB file {sources.database}: {exc}; what was sent "
                                              "before is found and adopted by the next attempt", retryable=True)
        else:
            failure = PushFailed(document_id, str(exc), retryable=passing(exc))
        failure.document_version = failure.document_version or version
        if not dry_run:
            try:
                _record_failure(sources.database, failure, ledger, prepared, execution, run_id=run_id,
                                fingerprint=fingerprint, now=clock())
            except (duckdb.Error, DatabaseUnusable) as unrecorded:
                failure.message += f" (and the failure could not be recorded in DuckDB: {unrecorded})"
        raise failure from exc


def _settle_in_doubt(ledger: PushLedger, in_doubt: Sequence[LedgerRequest], prepared: PreparedPush
                     ) -> tuple[dict[str, FoundRecord], list[str]]:
    """Earlier attempts' writes without a recorded outcome: a create whose record the plan found is adopted
    (the record is used, not created again), one whose record is nowhere was never written; an update is
    re-planned from what Kaseya holds now. Returns the adopted records by record key, and what was done."""
    found = {record.record_key: record for record in prepared.found}
    adopted: dict[str, FoundRecord] = {}
    notes: list[str] = []
    for row in in_doubt:
        where = f"{row.method} {row.path} of attempt {row.attempt} (run {row.run_id})"
        if row.method != "POST" or row.record_key is None:
            ledger.settle(row.request_id, SUPERSEDED, error="in doubt; re-planned from what Kaseya holds now")
            notes.append(f"{where}: in doubt; re-planned from what Kaseya holds now")
            continue
        record = found.get(row.record_key)
        if record is None:
            ledger.settle(row.request_id, NOT_CREATED, error=f"in doubt; no {row.record_key} was found, so it was "
                                                             "never created")
            notes.append(f"{where}: {row.record_key} was never created")
            continue
        adopted[row.record_key] = record
        ledger.settle(row.request_id, ADOPTED, record_id=record.kaseya_id,
                      error=f"in doubt; found by {record.how} and adopted")
        notes.append(f"{where}: its {row.record_key} exists (id {record.kaseya_id}, found by {record.how}); adopted")
    return adopted, notes


def _document_ids(prepared: PreparedPush, execution: Execution) -> DocumentIds:
    return DocumentIds(
        zomentum_opportunity_id=str(prepared.source.opportunity["id"]),
        account_id=execution.id_of(prepared.account),
        contact_id=execution.id_of(prepared.contact),
        opportunity_id=execution.id_of(prepared.opportunity),
        quote_id=execution.id_of(prepared.quote),
    )


def _link(resolved: ResolvedSettings, entity: str, kaseya_id: int | None, quote_id: int | None) -> str | None:
    kind = _KASEYA_LINK_ENTITY.get(entity)
    target = quote_id if entity == QUOTE_LINES else kaseya_id
    if kind is None or target is None:
        return None
    return resolved.settings.links.kaseya.url(kind, target)


def _events(prepared: PreparedPush, execution: Execution, adopted: Mapping[str, FoundRecord],
            resolved: ResolvedSettings) -> list[SyncEvent]:
    document = f"document {prepared.source.id}"
    quote_id = execution.id_of(prepared.quote)
    written = {write.step.record_key for write in execution.sent}
    events = []
    for record in prepared.found:
        if record.entity == QUOTE_LINES or (record.entity == ITEMS and record.record_key not in adopted):
            continue
        if record.record_key in adopted:
            action, reason = "matched", (f"{document}: adopted; an interrupted attempt created it and its answer was "
                                         f"never recorded; found by {record.how}")
        elif record.record_key in written:
            continue
        else:
            action = "matched" if record.searched else "unchanged"
            reason = f"{document}: found by {record.how}"
        events.append(SyncEvent("push", record.entity, action, str(record.kaseya_id), record.zomentum_id,
                                reason=reason, link=_link(resolved, record.entity, record.kaseya_id, quote_id)))
    for write in execution.sent:
        step = write.step
        how = next((f" (found by {f.how})" for f in prepared.found if f.record_key == step.record_key), "")
        events.append(SyncEvent(
            "push", step.entity, step.action, None if write.record_id is None else str(write.record_id),
            step.zomentum_id, reason=f"{document}: {write.request.purpose}{how}",
            changed_fields=list(step.changed_fields) or None,
            link=_link(resolved, step.entity, write.record_id, quote_id)))
    return events


def _record_failure(database: Path, failure: PushFailed, ledger: PushLedger | None, prepared: PreparedPush | None,
                    execution: Execution, *, run_id: str, fingerprint: str | None, now: datetime) -> None:
    if ledger is not None and ledger.attempt:
        ids = _document_ids(prepared, execution) if prepared is not None else DocumentIds()
        ledger.finish(FAILED, ids, writes_sent=len(execution.sent), error=failure.message)
    events = [SyncEvent("push", write.step.entity, write.step.action,
                        None if write.record_id is None else str(write.record_id), write.step.zomentum_id,
                        reason=f"document {failure.document_id}: {write.request.purpose}")
              for write in execution.sent]
    zomentum_id = str(prepared.source.opportunity["id"]) if prepared and failure.entity == OPPORTUNITIES \
        else failure.document_id
    events.append(SyncEvent("push", failure.entity, "failed", None, zomentum_id, reason=str(failure)))
    record_push_events(database, events, run_id=run_id, fingerprint=fingerprint, now=now)


def render_outcome(outcome: PushOutcome) -> str:
    """What `zk push` prints: the plan on a dry run, else what was done."""
    if outcome.dry_run:
        return render_plan(outcome.plan)
    lines = [outcome.summary()]
    lines += [f"  recovered: {note}" for note in outcome.recovered]
    lines += [f"  {request.method} {request.path}  ({request.purpose})" for request in outcome.sent]
    if not outcome.sent:
        lines.append("  Kaseya already matched the document: nothing was sent")
    return "\n".join(lines)
