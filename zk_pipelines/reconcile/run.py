"""One reconciliation of a tenant: list both systems whole, classify (`domain/reconcile.py`), report, and with
`repair` send what the mode allows. Called by the `reconcile` job's asset and by `zk reconcile`.

Reads cost `ceil(rows / 100)` calls per Kaseya list and per Zomentum list. The Kaseya client it is given is
budgeted (see `reconcile_client`): a capped share of the tenant's hourly budget per endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from zk_pipelines.clients import zomentum_models as contract
from zk_pipelines.clients.http import ApiError, WriteOutcomeUnknown
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.kaseya_budget import BudgetStore
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import KaseyaCredentials
from zk_pipelines.domain.change_detection import payload_hash
from zk_pipelines.domain.entities import (
    KASEYA_LINK_ENTITY,
    KASEYA_SOURCE,
    ZOMENTUM_TARGET,
    ZOMENTUM_TARGETS,
    ZomentumTarget,
)
from zk_pipelines.domain.links import kaseya_link, zomentum_link
from zk_pipelines.domain.reconcile import (
    CLASSES,
    DELETED_IN_KASEYA,
    KASEYA_RECORD_FIELD,
    Difference,
    Repair,
    classify,
    counts,
    repair_plan,
    with_new_ids,
)
from zk_pipelines.domain.settings_check import ResolvedSettings
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.ledger_store import IdMapEntry, SyncEvent, record_events, upsert_id_map
from zk_pipelines.storage.reconcile_store import ReportRow, read_desired, read_pairs, replace_report

# The share of the tenant's hourly Kaseya budget (per endpoint) a reconciliation may bring the hour's count
# to: it is granted calls only while the endpoint's calls of the last hour, everyone's, are under this share,
# so the hourly pull always has the rest. A medium tenant's reconciliation takes ~100 calls over four lists.
RECONCILE_BUDGET_SHARE = 0.25

ENTITY_NAMES = tuple(target.name for target in ZOMENTUM_TARGETS)
# What the ledger and the report call what was done.
OUTCOME_OF = {"update": "repaired", "recreate": "recreated", "mark": "marked"}


def reconcile_client(credentials: KaseyaCredentials, budget_store: BudgetStore) -> KaseyaClient:
    """A Kaseya client for a reconciliation: the tenant's budget store, a ceiling of `RECONCILE_BUDGET_SHARE`
    of its hourly budget."""
    share = max(1, int(credentials.hourly_call_budget * RECONCILE_BUDGET_SHARE))
    return KaseyaClient(replace(credentials, hourly_call_budget=share), budget_store=budget_store)


@dataclass
class ReconcileResult:
    entities: tuple[str, ...]
    differences: list[Difference] = field(default_factory=list)
    plan: list[Repair] = field(default_factory=list)  # what --repair sends (sent unless a dry run)
    requests: list[str] = field(default_factory=list)  # the plan as the requests, one line each
    rows: list[ReportRow] = field(default_factory=list)
    linked: int = 0  # pairs in the id map of the entities compared
    zomentum_writes: int = 0

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return counts(self.differences, self.entities)


def chosen_entities(names: Sequence[str] | None) -> tuple[str, ...]:
    """The targets to reconcile, in load order; accepts the Kaseya names too (accounts, contacts, products)."""
    if not names:
        return ENTITY_NAMES
    aliases = {alias: t.name for t in ZOMENTUM_TARGETS for alias in (t.name, t.source, t.kind)}
    unknown = [name for name in names if name not in aliases]
    if unknown:
        raise ValueError(f"unknown entity {unknown[0]!r}; reconcile one of {', '.join(ENTITY_NAMES)}")
    wanted = {aliases[name] for name in names}
    return tuple(name for name in ENTITY_NAMES if name in wanted)


def _field_id(client: ZomentumClient, entity_type: str, name: str) -> str | None:
    for custom_field in client.custom_fields(entity_type):
        if custom_field.display_name.lower() == name.lower():
            return custom_field.id
    return None


def _values(record: Mapping[str, Any], field_id: str | None) -> str | None:
    for value in record.get("custom_fields") or []:
        if field_id is not None and value.get("id") == field_id and value.get("values"):
            return str(value["values"][0])
    return None


def _link_parser(resolved: ResolvedSettings, target: ZomentumTarget) -> Callable[[str], str | None]:
    """The Kaseya id in one of our links to the target's Kaseya records (None for any other text)."""
    marker = "\x00id\x00"
    prefix, _, suffix = kaseya_link(resolved, target.name, marker).partition(marker)

    def parse(text: str) -> str | None:
        if text.startswith(prefix) and text.endswith(suffix) and len(text) > len(prefix) + len(suffix):
            return text[len(prefix):len(text) - len(suffix)]
        return None
    return parse


def _zomentum_records(client: ZomentumClient, target: ZomentumTarget) -> dict[str, dict[str, Any]]:
    records = client.all_opportunities() if target.matched_by_link else client.iter_records(target.resource)
    return {str(record["id"]): dict(record) for record in records}


def _kaseya_ids(client: KaseyaClient, target: ZomentumTarget) -> set[str]:
    """The ids of every record of the target's Kaseya list (its registry row's reader and key)."""
    source = KASEYA_SOURCE[target.source]
    key = source.key_field
    return {str(int(record[key])) for record in client.read_list(source.endpoint, paged=source.paged)
            if record.get(key) is not None}


def find_differences(database: Path, kaseya: KaseyaClient, zomentum: ZomentumClient, resolved: ResolvedSettings,
                     target: ZomentumTarget) -> tuple[list[Difference], int]:
    """The target's differences, and how many pairs the id map holds for it."""
    kaseya_ids = _kaseya_ids(kaseya, target)
    records = _zomentum_records(zomentum, target)
    with connect(database, read_only=True) as connection:
        pairs = read_pairs(connection, target.name,
                           matched_were_sent=resolved.settings.mode.pull_updates_linked_entities)
        desired = read_desired(connection, target.name)
    mark_field = _field_id(zomentum, target.custom_field_entity, KASEYA_RECORD_FIELD)
    marked = {zid for zid, record in records.items() if _values(record, mark_field) == DELETED_IN_KASEYA}
    linked: dict[str, str] = {}
    if target.matched_by_link:
        link_field = _field_id(zomentum, target.custom_field_entity, target.link_field)
        parse = _link_parser(resolved, target)
        for zid, record in records.items():
            value = _values(record, link_field)
            kid = parse(value) if value is not None else None
            if kid is not None:
                linked[zid] = kid
    differences = classify(target.name, pairs, kaseya_ids, records, desired, linked, marked=marked)
    return differences, len(pairs)


def render_request(repair: Repair, body: Mapping[str, Any]) -> str:
    resource = ZOMENTUM_TARGET[repair.entity].resource
    path = contract.create_path(resource) if repair.action == "recreate" else \
        contract.record_path(resource, str(repair.zomentum_id))
    return f"{repair.method} {contract.API_PREFIX}/{path} {json.dumps(body, sort_keys=True)}"


class _Sender:
    """Turns a plan's repairs into the exact bodies and, unless a dry run, sends them."""

    def __init__(self, zomentum: ZomentumClient, resolved: ResolvedSettings, *, dry_run: bool) -> None:
        self.zomentum, self.resolved, self.dry_run = zomentum, resolved, dry_run
        self.renamed: dict[str, str] = {}  # Zomentum id of a re-created record -> its new id
        self._fields: dict[tuple[str, str], str] = {}
        self.field_requests: list[str] = []  # the custom fields created (or, in a dry run, to be created)

    def field_id(self, entity_type: str, name: str) -> str:
        """The custom field's id; created when missing (a dry run names it instead of creating it)."""
        key = (entity_type, name)
        if key not in self._fields:
            found = _field_id(self.zomentum, entity_type, name)
            if found is None:
                body = {"entity_type": entity_type, "display_name": name, "field_type": "text"}
                path = contract.create_path(contract.CUSTOM_FIELDS)
                self.field_requests.append(f"POST {contract.API_PREFIX}/{path} {json.dumps(body, sort_keys=True)}")
                found = (f"<new {entity_type} custom field {name!r}>" if self.dry_run
                         else self.zomentum.create_custom_field(entity_type, name, "text").id)
            self._fields[key] = found
        return self._fields[key]

    def body(self, repair: Repair) -> dict[str, Any]:
        if repair.action == "mark":
            field_id = self.field_id(ZOMENTUM_TARGET[repair.entity].custom_field_entity, KASEYA_RECORD_FIELD)
            return {"custom_fields": [{"id": field_id, "values": [DELETED_IN_KASEYA]}]}
        body = with_new_ids(repair.body, self.renamed)
        if repair.action == "recreate" and ZOMENTUM_TARGET[repair.entity].matched_by_link:
            link = kaseya_link(self.resolved, repair.entity, repair.kaseya_id)
            target = ZOMENTUM_TARGET[repair.entity]
            body["custom_fields"] = [{"id": self.field_id(target.custom_field_entity, target.link_field),
                                      "values": [link]}]
        return body

    def send(self, repair: Repair, body: dict[str, Any]) -> str:
        """The new Zomentum id of a re-created record, else the record's own."""
        resource = ZOMENTUM_TARGET[repair.entity].resource
        if repair.action == "recreate":
            try:
                created = self.zomentum.create(resource, body)
            except WriteOutcomeUnknown:
                # The answer was lost: the record is looked for by its match key and adopted, never sent twice.
                match = ZOMENTUM_TARGET[repair.entity].match_field
                found = self.zomentum.find_by(resource, match, body[match]) if match and body.get(match) else []
                if len(found) != 1:
                    raise
                created = found[0]
            if repair.zomentum_id is not None:
                self.renamed[repair.zomentum_id] = str(created["id"])
            return str(created["id"])
        assert repair.zomentum_id is not None
        self.zomentum.update(resource, repair.zomentum_id, body)
        return repair.zomentum_id


def _report_row(difference: Difference, outcome: str, resolved: ResolvedSettings) -> ReportRow:
    entity = difference.entity
    return ReportRow(
        entity, difference.kind, difference.kaseya_id, difference.zomentum_id, difference.changed_in,
        difference.fields, difference.detail, outcome,
        kaseya_link(resolved, entity, difference.kaseya_id) if difference.kaseya_id else None,
        zomentum_link(resolved, entity, difference.zomentum_id) if difference.zomentum_id else None)


def reconcile(database: Path, kaseya: KaseyaClient, zomentum: ZomentumClient, resolved: ResolvedSettings, *,
              entities: Sequence[str] | None = None, repair: bool = False, dry_run: bool = False, run_id: str,
              clock: Callable[[], datetime], progress: Callable[[str], None] = lambda _: None) -> ReconcileResult:
    """Compare, report, and with `repair` settle what the mode allows. `dry_run`: the requests a repair would
    send are worked out (`result.requests`) and nothing is sent or written. `progress` is told each entity's
    counts as it is done (`zk reconcile` prints them)."""
    result = ReconcileResult(chosen_entities(entities))
    repairs_linked = resolved.settings.mode.pull_updates_linked_entities
    sender = _Sender(zomentum, resolved, dry_run=dry_run)
    for name in result.entities:
        target = ZOMENTUM_TARGET[name]
        differences, linked = find_differences(database, kaseya, zomentum, resolved, target)
        result.differences.extend(differences)
        result.linked += linked
        plan = repair_plan(differences, repairs_linked=repairs_linked) if repair or dry_run else []
        result.plan.extend(plan)
        outcomes = {id(difference): "reported" for difference in differences}
        planned = {(r.entity, r.kaseya_id, r.zomentum_id): r for r in plan}
        entries: list[IdMapEntry] = []
        for difference in differences:
            step = planned.get((difference.entity, difference.kaseya_id, difference.zomentum_id))
            if step is None:
                continue
            body = sender.body(step)
            result.requests.extend(sender.field_requests)
            sender.field_requests.clear()
            result.requests.append(render_request(step, body))
            if dry_run:
                outcomes[id(difference)] = "planned"
                continue
            try:
                zid = sender.send(step, body)
                result.zomentum_writes += 1
            except WriteOutcomeUnknown as exc:
                result.zomentum_writes += 1
                outcomes[id(difference)] = f"failed: {exc} (the next reconciliation finds what was written)"
                continue
            except ApiError as exc:
                outcomes[id(difference)] = f"failed: {exc}"
                continue
            outcomes[id(difference)] = OUTCOME_OF[step.action]
            if step.action != "mark" and difference.desired is not None:
                sent = with_new_ids(difference.desired, sender.renamed)
                entries.append(IdMapEntry(name, str(difference.kaseya_id), zid, "created", payload_hash(sent), sent))
        rows = [_report_row(d, outcomes[id(d)], resolved) for d in differences]
        result.rows.extend(rows)
        progress(f"{name}: {linked} linked pairs compared, {len(differences)} difference(s), {len(plan)} repair(s) "
                 + ("planned" if dry_run or not repair else "attempted"))
        if not dry_run:
            _record(database, name, differences, rows, entries, run_id=run_id, now=clock(),
                    fingerprint=resolved.fingerprint)
    return result


def _record(database: Path, entity: str, differences: Sequence[Difference], rows: Sequence[ReportRow],
            entries: Sequence[IdMapEntry], *, run_id: str, now: datetime, fingerprint: str) -> None:
    """The entity's report, its ledger entries (direction `reconcile`, one per difference: its class when only
    reported, else what was done) and the id map of what was sent."""
    events = [SyncEvent("reconcile", entity,
                        d.kind if row.outcome in ("reported", "planned") else row.outcome.split(":", 1)[0],
                        d.kaseya_id, d.zomentum_id,
                        reason=d.detail if not row.outcome.startswith("failed") else row.outcome[len("failed: "):],
                        changed_fields=list(d.fields) or None, link=row.zomentum_link or row.kaseya_link)
              for d, row in zip(differences, rows, strict=True)]
    with connect(database) as connection:
        replace_report(connection, [entity], rows, run_id=run_id, now=now)
        upsert_id_map(connection, entries, now)
        record_events(connection, events, run_id=run_id, partition_key=None, settings_fingerprint=fingerprint,
                      now=now)


def render_result(result: ReconcileResult, *, repair: bool, dry_run: bool) -> str:
    """What `zk reconcile` prints: counts per entity and class, each difference, and the requests."""
    lines = [f"{'entity':<14} " + " ".join(f"{kind:>18}" for kind in CLASSES)]
    for entity, row in result.counts.items():
        lines.append(f"{entity:<14} " + " ".join(f"{row[kind]:>18}" for kind in CLASSES))
    if not result.differences:
        lines.append("no differences")
    for row in result.rows:
        ids = f"Kaseya {KASEYA_LINK_ENTITY[row.entity]} {row.kaseya_id or '-'} / Zomentum {row.zomentum_id or '-'}"
        lines.append(f"{row.entity} {row.kind}: {ids}: {row.detail} [{row.outcome}]")
        lines.extend(f"    {link}" for link in (row.kaseya_link, row.zomentum_link) if link)
    if dry_run:
        lines.append(f"dry run: {len(result.requests)} request(s) --repair would send, nothing sent:")
        lines.extend(f"  {request}" for request in result.requests)
    elif repair:
        lines.append(f"repair: {len(result.requests)} request(s) sent:")
        lines.extend(f"  {request}" for request in result.requests)
    return "\n".join(lines)
