"""Loading: the mapped payloads that differ from what Zomentum was last sent become Zomentum writes.

- Never sent: an existing Zomentum record is matched first (client by exact name, contact by e-mail, item
  by manufacturer part number, opportunity by its Kaseya link custom field); else it is created.
- Sent before and changed since: updated with the changed fields only (Kaseya as CRM); Zomentum as CRM
  leaves linked records as they are.
- Unchanged: no call at all.
Every outcome goes to the ledger (`audit.sync_events`), and the id map records the pair and the hash of
what was sent. A create whose answer was lost is looked for and adopted, never repeated blindly; a crash
between a create and the id-map write is recovered the same way by the next run, through the match.

Zomentum has no bulk write, so the writes are sent concurrently (`concurrency` requests in flight). Records
that share a match key (two contacts with one e-mail) go through one thread in their order, so the second
finds what the first created or paired, exactly as one thread would; only the calling thread writes DuckDB.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from zk_pipelines.clients.http import ApiError, NotFound, WriteOutcomeUnknown
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.clients.zomentum_links import ensure_link_field
from zk_pipelines.domain.change_detection import changed_fields, partial_update
from zk_pipelines.domain.entities import ACTIVE_FLAG_SOURCES, KASEYA_LINK_ENTITY, ZomentumTarget
from zk_pipelines.domain.links import kaseya_link, zomentum_link
from zk_pipelines.domain.settings_check import ResolvedSettings
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.ledger_store import IdMapEntry, SyncEvent, read_id_map, record_events, upsert_id_map
from zk_pipelines.storage.pull_store import (
    PendingRecord,
    activity_changes,
    inactive_unpaired,
    mark_activity,
    opportunity_status_ids,
    pending_records,
    unchanged_records,
)

# The ledger's action for a record a person must settle (an error for `zk audit`): nothing was written.
CONFLICT = "conflict"

# Kaseya's active flag of a target's records (`entities.ACTIVE_FLAG_SOURCES`: accounts, contacts; Kaseya's
# product list has none, so a product cannot be seen deactivated). Zomentum's clients and client users have no
# active flag of their own (zomentum_models.py): the flag goes into this custom field, created if missing.
KASEYA_STATUS_FIELD = "Kaseya status"

# How a reason names each match field.
MATCH_WORDS = {"name": "name", "email": "e-mail", "manufacturer_part_number": "part number"}

# The ledger (id map and events) is written every FLUSH_EVERY outcomes or FLUSH_SECONDS, whichever comes first:
# each write opens the DuckDB file and checkpoints it on closing (~50 ms), so a write per few dozen records
# would cost a large load a third of its time. A crash loses at most what was not written yet: the next run
# finds those records by their match key and adopts them (a create nothing could find again is written at once).
FLUSH_EVERY = 1000
FLUSH_SECONDS = 2.0


@dataclass
class LoadReport:
    target: str
    counts: Counter = field(default_factory=Counter)
    failures: list[SyncEvent] = field(default_factory=list)
    created: list[SyncEvent] = field(default_factory=list)
    zomentum_writes: int = 0


def lost_cause(exc: WriteOutcomeUnknown) -> str:
    """What became of a write's answer, as the failure reason names it: the HTTP status and the API's message
    when it answered, else how the answer was lost."""
    cause = exc.message.split(";")[0].strip()
    if exc.status is not None:
        return f"HTTP {exc.status}: {cause}"
    how = re.search(r"\((\w+)\)", cause)  # "the answer was lost (ReadTimeout)"
    return f"no answer: {how.group(1)}" if how else cause


def ensure_status_field(client: ZomentumClient, entity_type: str) -> str:
    """The id of the `entity_type` custom field holding the Kaseya active flag, created if missing."""
    for custom_field in client.custom_fields(entity_type):
        if custom_field.display_name.lower() == KASEYA_STATUS_FIELD.lower():
            return custom_field.id
    return client.create_custom_field(entity_type, KASEYA_STATUS_FIELD, "text").id


def _link_value(record: dict[str, Any], field_id: str) -> str | None:
    for value in record.get("custom_fields") or []:
        if value.get("id") == field_id and value.get("values"):
            return str(value["values"][0])
    return None


def _match_key(target: ZomentumTarget, record: dict[str, Any], link_field: str | None) -> str | None:
    if target.matched_by_link:
        return _link_value(record, link_field) if link_field else None
    value = record.get(target.match_field) if target.match_field else None
    if value is None:
        return None
    return value.lower() if target.match_field == "email" else str(value)


def _scope(target: ZomentumTarget, record: dict[str, Any]) -> str | None:
    """Client users are matched within their own client only: a person with the same e-mail under another
    client is another client's contact (or a conflict for a person to settle), never moved over."""
    return record.get("client_company_id") if target.name == "client_users" else None


class MatchIndex:
    """Existing Zomentum records by match key, read once per load (one paged listing) and only when a
    record has to be created. Shared by the load's threads: the first to need it reads the listing whole
    while the others wait, so no create is sent before it is complete."""

    def __init__(self, client: ZomentumClient, target: ZomentumTarget, link_field: str | None) -> None:
        self._client = client
        self._target = target
        self._link_field = link_field
        self._index: dict[str, list[dict[str, Any]]] | None = None
        self._unkeyed: list[dict[str, Any]] = []
        self._created: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _records(self) -> Iterator[dict[str, Any]]:
        if self._target.matched_by_link:  # the link field's values are in the full records only
            return iter(self._client.all_opportunities())
        return self._client.iter_records(self._target.resource)

    def _candidates(self, payload: dict[str, Any], fresh: bool) -> list[dict[str, Any]]:
        key = _match_key(self._target, payload, self._link_field) if payload else None
        with self._lock:
            if self._index is None or fresh:
                # Built aside and kept only once whole: a listing cut short (an API error on a later page) must
                # not leave an index that misses records, or a record it lacks would be created a second time.
                index: dict[str, list[dict[str, Any]]] = {}
                unkeyed: list[dict[str, Any]] = []  # no match key (no e-mail, no part number): found by link only
                # A fresh listing may have been read before another thread's create landed: what this load
                # created stays findable.
                for record in [*self._records(), *self._created]:
                    record_key = _match_key(self._target, record, self._link_field)
                    if record_key is None:
                        unkeyed.append(record)
                    elif all(r["id"] != record["id"] for r in index.get(record_key, ())):
                        index.setdefault(record_key, []).append(record)
                self._index, self._unkeyed = index, unkeyed
            return list(self._index.get(key, ())) if key is not None else []

    def find(self, payload: dict[str, Any], *, fresh: bool = False) -> dict[str, Any] | None:
        """The existing record this payload stands for: same match key, and for a client user the same client."""
        scope = _scope(self._target, payload)
        return next((r for r in self._candidates(payload, fresh) if _scope(self._target, r) == scope), None)

    def by_link(self, link: str) -> dict[str, Any] | None:
        """The record carrying this Kaseya link in the target's link field (the listing read for `find`)."""
        if self._link_field is None:
            return None
        self._candidates({}, False)
        with self._lock:
            return next((r for records in (self._index or {}).values() for r in records
                         if _link_value(r, self._link_field) == link), None) or next(
                (r for r in self._unkeyed if _link_value(r, self._link_field) == link), None)

    def elsewhere(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """Records with the payload's match key under another client (client users only)."""
        if self._target.name != "client_users":
            return []
        scope = _scope(self._target, payload)
        return [r for r in self._candidates(payload, False) if _scope(self._target, r) != scope]

    def add(self, record: dict[str, Any]) -> None:
        key = _match_key(self._target, record, self._link_field)
        with self._lock:
            self._created.append(record)
            if self._index is not None and key is not None:
                self._index.setdefault(key, []).append(record)


class _Ledger:
    """Buffers id-map entries and ledger events; flushed every few records and at the end."""

    def __init__(self, database: Path, *, run_id: str, partition_key: str | None, fingerprint: str,
                 clock: Callable[[], datetime]) -> None:
        self.database = database
        self.run_id = run_id
        self.partition_key = partition_key
        self.fingerprint = fingerprint
        self.clock = clock
        self.entries: list[IdMapEntry] = []
        self.events: list[SyncEvent] = []
        self._last_flush = time.monotonic()

    def add(self, event: SyncEvent, entry: IdMapEntry | None = None) -> None:
        self.events.append(event)
        if entry is not None:
            self.entries.append(entry)
        if len(self.events) >= FLUSH_EVERY:
            self.flush()
        else:
            self.flush_if_due()

    def flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.entries or self.events:
            now = self.clock()
            with connect(self.database) as connection:
                upsert_id_map(connection, self.entries, now)
                record_events(connection, self.events, run_id=self.run_id, partition_key=self.partition_key,
                              settings_fingerprint=self.fingerprint, now=now)
            self.entries, self.events = [], []
        self._last_flush = time.monotonic()


@contextmanager
def _ledger(database: Path, **kwargs: Any) -> Iterator[_Ledger]:
    ledger = _Ledger(database, **kwargs)
    try:
        yield ledger
    finally:
        ledger.flush()


class Outcome(NamedTuple):
    event: SyncEvent
    entry: IdMapEntry | None
    writes: int  # Zomentum writes sent for the record (a lost answer counts: the write may have happened)


def load_target(database: Path, client: ZomentumClient, target: ZomentumTarget, resolved: ResolvedSettings, *,
                run_id: str, partition_key: str | None, clock: Callable[[], datetime], concurrency: int = 1
                ) -> LoadReport:
    """Send the target's pending records to Zomentum, up to `concurrency` requests at once, and ledger every
    outcome (the calling thread alone writes DuckDB, every `FLUSH_EVERY` outcomes or `FLUSH_SECONDS`)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    updates_linked = resolved.settings.mode.pull_updates_linked_entities
    with connect(database) as connection:
        pending = pending_records(connection, target.name, include_linked_updates=updates_linked)
        unchanged = unchanged_records(connection, target.name, run_id=run_id, include_linked_updates=updates_linked)
        # Zomentum id -> the Kaseya id it is paired with: a match may not take a record another one already has
        # (read only when something is to be sent: a quiet hour's load reads two small results, not the map).
        paired = ({zomentum_id: kaseya_id for kaseya_id, zomentum_id in read_id_map(connection, target.name).items()}
                  if pending else {})
        # The Kaseya status of each opportunity to send: on first sight, the stage tie-break needs it with the
        # matched Zomentum opportunity's current stage, which the mapping could not know.
        status_ids = (opportunity_status_ids(connection, [p.kaseya_id for p in pending if p.zomentum_id is None])
                      if target.name == "opportunities" and pending else {})
        # Inactive in Kaseya and never paired: not created (nor matched) in Zomentum; said once, when Kaseya
        # reports it (mapped in this run), and silently passed over by later runs until it is reactivated.
        inactive = (inactive_unpaired(connection, target.name, target.source, run_id)
                    if target.source in ACTIVE_FLAG_SOURCES and pending else {})
    skipped = [p for p in pending if p.zomentum_id is None and p.kaseya_id in inactive]
    pending = [p for p in pending if not (p.zomentum_id is None and p.kaseya_id in inactive)]
    report = LoadReport(target.name)
    link_field = ensure_link_field(client, target.name) if pending else None
    index = MatchIndex(client, target, link_field)

    def send_one(position: int) -> Outcome:
        outcome = _load_one(client, target, pending[position], resolved, index, link_field, paired, status_ids)
        if outcome.entry is not None:
            # Read only by later records of the same match key, which run after this one on this thread.
            paired[outcome.entry.zomentum_id] = outcome.entry.kaseya_id
        return outcome

    created: list[tuple[int, SyncEvent]] = []
    failures: list[tuple[int, SyncEvent]] = []
    with _ledger(database, run_id=run_id, partition_key=partition_key, fingerprint=resolved.fingerprint,
                 clock=clock) as ledger:
        for record in skipped:
            if inactive[record.kaseya_id]:
                report.counts["skipped"] += 1
                ledger.add(SyncEvent("pull", target.name, "skipped", record.kaseya_id, None,
                                     reason=f"{target.label} for Kaseya {KASEYA_LINK_ENTITY[target.name]} "
                                            f"{record.kaseya_id}: inactive in Kaseya, so not created in Zomentum "
                                            "(it is once reactivated)",
                                     link=kaseya_link(resolved, target.name, record.kaseya_id)))
        pending_ids = {p.kaseya_id for p in pending}
        for kaseya_id, zomentum_id in unchanged:
            if kaseya_id in pending_ids:
                continue
            report.counts["unchanged"] += 1
            ledger.add(SyncEvent("pull", target.name, "unchanged", kaseya_id, zomentum_id))

        def record(position: int, outcome: Outcome) -> None:
            event = outcome.event
            report.zomentum_writes += outcome.writes
            report.counts[event.action] += 1
            if event.action in ("failed", CONFLICT):
                failures.append((position, event))
            elif event.action == "created":
                created.append((position, event))
            ledger.add(event, outcome.entry)
            if event.action == "created" and keys[position] is None:
                # Nothing would find this record again (no e-mail, no part number) if the process died before
                # the next flush, and the next run would create it a second time: recorded at once.
                ledger.flush()

        keys = match_keys(target, pending, resolved, link_field)
        send_grouped(key_groups(keys), send_one, record, concurrency=concurrency, idle=ledger.flush_if_due)
    report.created = [event for _, event in sorted(created, key=lambda pair: pair[0])]
    report.failures = [event for _, event in sorted(failures, key=lambda pair: pair[0])]
    if target.source in ACTIVE_FLAG_SOURCES:
        _send_activity(database, client, target, resolved, report, run_id=run_id, partition_key=partition_key,
                       clock=clock)
    return report


def _send_activity(database: Path, client: ZomentumClient, target: ZomentumTarget, resolved: ResolvedSettings,
                   report: LoadReport, *, run_id: str, partition_key: str | None,
                   clock: Callable[[], datetime]) -> None:
    """Tell Zomentum of every paired record whose Kaseya active flag changed since it was last told: the
    "Kaseya status" custom field set to `inactive` (ledger: `deactivated`) or back to `active` (`reactivated`).
    The record is otherwise left as it is: a client's documents and opportunities stay where they are."""
    with connect(database, read_only=True) as connection:
        changes = activity_changes(connection, target.name, target.source)
    if not changes:
        return
    field_id = ensure_status_field(client, target.custom_field_entity)
    for kaseya_id, zomentum_id, now_inactive in changes:
        action, value = ("deactivated", "inactive") if now_inactive else ("reactivated", "active")
        label = f"{target.label} for Kaseya {KASEYA_LINK_ENTITY[target.name]} {kaseya_id}"
        try:
            client.update(target.resource, zomentum_id, {"custom_fields": [{"id": field_id, "values": [value]}]})
            report.zomentum_writes += 1
            event = SyncEvent("pull", target.name, action, kaseya_id, zomentum_id, changed_fields=[KASEYA_STATUS_FIELD],
                              reason=f"{label}: {value} in Kaseya; Zomentum's \"{KASEYA_STATUS_FIELD}\" set to {value}",
                              link=zomentum_link(resolved, target.name, zomentum_id))
        except ApiError as exc:
            event = SyncEvent("pull", target.name, "failed", kaseya_id, zomentum_id, reason=f"{label}: {exc}",
                              link=kaseya_link(resolved, target.name, kaseya_id))
            report.failures.append(event)
        report.counts[event.action] += 1
        with connect(database) as connection:
            if event.action == action:
                mark_activity(connection, target.name, kaseya_id, now_inactive)
            record_events(connection, [event], run_id=run_id, partition_key=partition_key,
                          settings_fingerprint=resolved.fingerprint, now=clock())


def match_keys(target: ZomentumTarget, pending: Sequence[PendingRecord], resolved: ResolvedSettings,
               link_field: str | None) -> list[str | None]:
    """The key each pending record would be matched by; None when there is nothing to match by (no e-mail,
    no part number) or nothing to send."""
    keys: list[str | None] = []
    for record in pending:
        if record.problem is not None or record.payload is None:
            keys.append(None)
            continue
        desired = _with_link(target, record.payload, link_field,
                             kaseya_link(resolved, target.name, record.kaseya_id))
        keys.append(_match_key(target, desired, link_field))
    return keys


def key_groups(keys: Sequence[str | None]) -> list[list[int]]:
    """Positions grouped by their match key, each group in order. The positions without a key form one group:
    a create nothing could find again is ledgered at once, and one at a time only one can be in flight when
    the process dies."""
    groups: dict[str, list[int]] = {}
    keyless: list[int] = []
    for position, key in enumerate(keys):
        if key is None:
            keyless.append(position)
        else:
            groups.setdefault(key, []).append(position)
    return sorted([*groups.values(), *([keyless] if keyless else [])], key=lambda group: group[0])


_GROUP_DONE = -1


def send_grouped(groups: list[list[int]], send_one: Callable[[int], Outcome],
                 record: Callable[[int, Outcome], None], *, concurrency: int, idle: Callable[[], None]) -> None:
    """Run `send_one` over every position, up to `concurrency` groups at once and each group's positions one
    after another in order. `record` runs on the calling thread for each outcome as it arrives, `idle` when
    none arrived for `FLUSH_SECONDS`. An exception in `send_one` stops the groups from starting another
    record; the outcomes of records already sent are recorded before it is raised."""
    arrived: queue.Queue[tuple[int, Outcome | BaseException | None]] = queue.Queue()
    stop = threading.Event()

    def send_group(group: list[int]) -> None:
        try:
            for position in group:
                if stop.is_set():
                    return
                try:
                    arrived.put((position, send_one(position)))
                except BaseException as exc:  # handed to the calling thread, which raises it
                    stop.set()
                    arrived.put((position, exc))
                    return
        finally:
            arrived.put((_GROUP_DONE, None))

    failure: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="zomentum-load")
    try:
        for group in groups:
            pool.submit(send_group, group)
        running = len(groups)
        while running:
            try:
                position, result = arrived.get(timeout=FLUSH_SECONDS)
            except queue.Empty:
                idle()
                continue
            if position == _GROUP_DONE:
                running -= 1
            elif isinstance(result, BaseException):
                failure = failure or result
            elif result is not None:
                record(position, result)
    finally:
        # Interrupted (the run terminated): no record is started any more, and what those in flight sent is
        # still recorded, so that the next run does not send it again.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        while not arrived.empty():
            position, result = arrived.get_nowait()
            if position != _GROUP_DONE and isinstance(result, Outcome):
                record(position, result)
    if failure is not None:
        raise failure


def _with_link(target: ZomentumTarget, payload: dict[str, Any], link_field: str | None, link: str
               ) -> dict[str, Any]:
    if link_field is None:
        return payload
    return {**payload, "custom_fields": [{"id": link_field, "values": [link]}]}


def _keep_current_stage(payload: dict[str, Any], existing: dict[str, Any], status_id: int | None,
                        resolved: ResolvedSettings) -> dict[str, Any]:
    """The payload with the stage the tie-break gives against the matched opportunity's current stage: a
    status mapped from several stages keeps the current one if it is among them, on first sight too."""
    if status_id is None:
        return payload
    stage = resolved.import_stage(status_id, existing.get("opportunity_pipeline_stage_id"))
    return {**payload, "opportunity_pipeline_id": stage.pipeline_id, "opportunity_pipeline_stage_id": stage.stage_id}


def _load_one(client: ZomentumClient, target: ZomentumTarget, record: PendingRecord, resolved: ResolvedSettings,
              index: MatchIndex, link_field: str | None, paired: dict[str, str],
              status_ids: dict[str, int]) -> Outcome:
    kid = record.kaseya_id
    k_link = kaseya_link(resolved, target.name, kid)
    writes = 0

    def failed(reason: str, zomentum_id: str | None = None, action: str = "failed") -> Outcome:
        return Outcome(SyncEvent("pull", target.name, action, kid, zomentum_id, reason=reason, link=k_link), None,
                       writes)

    if record.problem is not None:
        return failed(record.problem, action="deferred" if record.waiting else "failed")
    payload = record.payload or {}

    def linked(action: str, zomentum_id: str, kind: str, fields: list[str] | None = None, reason: str | None = None
               ) -> Outcome:
        return Outcome(SyncEvent("pull", target.name, action, kid, zomentum_id, reason=reason, changed_fields=fields,
                                 link=zomentum_link(resolved, target.name, zomentum_id)),
                       IdMapEntry(target.name, kid, zomentum_id, kind, record.payload_hash, payload), writes)

    label = f"{target.label} for Kaseya {KASEYA_LINK_ENTITY[target.name]} {kid}"
    try:
        if record.zomentum_id is not None and record.sent_payload is None:
            # Paired by a push, which made the Kaseya record from this Zomentum record: the two agree, and
            # mapping it back would lose what Kaseya cannot hold (an item's billing period, its type, a part
            # number Kaseya needed). What is mapped now becomes the baseline; only later Kaseya changes are sent.
            return linked("matched", record.zomentum_id, "created",
                          reason="paired by a push that created the Kaseya record from it; Zomentum kept as it is")
        if record.zomentum_id is not None:
            changes = partial_update(record.sent_payload, payload)
            if changes:
                try:
                    client.update(target.resource, record.zomentum_id, _with_link(target, changes, None, k_link))
                    writes += 1
                    return linked("updated", record.zomentum_id, "created",
                                  changed_fields(record.sent_payload, payload))
                except NotFound:
                    pass  # deleted in Zomentum: Kaseya still has it, so it is created again below
            else:
                return linked("unchanged", record.zomentum_id, "created")
        desired = _with_link(target, payload, link_field, k_link)
        existing = index.find(desired)
        owner = paired.get(existing["id"]) if existing is not None else None
        if owner is not None and owner != kid:
            # Two Kaseya records with one match key (two contacts sharing an e-mail): pairing both with one
            # Zomentum record would make each overwrite the other, so the later one waits for the data fix.
            what = MATCH_WORDS.get(target.match_field or "", "match key")
            return failed(f"{label}: has the same {what} as Kaseya {KASEYA_LINK_ENTITY[target.name]} {owner}, "
                          f"which is linked to Zomentum {target.label} {existing['id']}; one Zomentum "
                          f"{target.label} cannot stand for both: correct the duplicate in Kaseya")
        if existing is None:
            strangers = [r for r in index.elsewhere(desired) if r["id"] not in paired]
            if strangers:
                # A Zomentum-only person of another client has this e-mail: the same person moved, or two
                # people sharing a mailbox. Moving them would silently change a client's contacts; creating a
                # second one could duplicate a person: neither is ours to decide.
                return failed(
                    f"{label}: its e-mail {payload.get('email')} is that of Zomentum client user "
                    + ", ".join(f"{r['id']} (client {r.get('client_company_id')})" for r in strangers)
                    + f", under another client than this contact's client {payload.get('client_company_id')}; "
                    "it is neither moved nor duplicated: a person settles it (correct the e-mail in one system, "
                    "or move the client user in Zomentum), and the next run syncs the contact",
                    action=CONFLICT)
        if existing is None and link_field is not None:
            ours = index.by_link(k_link)
            if ours is not None and paired.get(ours["id"], kid) == kid:
                # Zomentum holds a record we made or matched for this Kaseya record, and the id map does not
                # know it (renamed, or its e-mail changed, since): the tenant's state was lost or restored from
                # an older copy. Creating would make a second one.
                return failed(f"{label}: Zomentum {target.label} {ours['id']} carries this record's Kaseya link "
                              f"({target.link_field}) but the id map does not pair them: the tenant's "
                              "state was lost or restored from an older copy; nothing is created until `zk state "
                              "rebuild` restores the id map from both systems", ours["id"])
        if existing is not None:
            if target.name == "opportunities":
                # The id map keeps this payload (what Zomentum holds now), so later mappings keep the stage too;
                # its hash stays the mapped one, so the kept stage is not taken for a change next run.
                payload = _keep_current_stage(payload, existing, status_ids.get(kid), resolved)
            current = {key: existing.get(key) for key in payload}
            changes = partial_update(current, payload) if resolved.settings.mode.pull_updates_linked_entities else {}
            if link_field is not None and _link_value(existing, link_field) != k_link:
                changes = _with_link(target, changes, link_field, k_link)  # so that a rebuild finds it
            if changes:
                client.update(target.resource, existing["id"], changes)
                writes += 1
            return linked("matched", existing["id"], "matched", sorted(changes) or None,
                          reason=f"matched an existing Zomentum {target.label} by {target.match_field or 'link'}")
        try:
            created = client.create(target.resource, desired)
            writes += 1
        except WriteOutcomeUnknown as lost:
            writes += 1
            found = index.find(desired, fresh=True)
            if found is None or paired.get(found["id"], kid) != kid:
                return failed(f"{label}: Zomentum's answer to the create was lost ({lost_cause(lost)}) and no such "
                              "record exists; it is created again next run")
            return linked("created", found["id"], "created",
                          reason=f"Zomentum's answer to the create was lost ({lost_cause(lost)}); the created record "
                                 "was found and adopted")
        index.add(created)
        return linked("created", created["id"], "created")
    except ApiError as exc:
        return failed(f"{label}: {exc}", record.zomentum_id)
