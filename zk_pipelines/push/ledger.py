"""The push's bookkeeping in the tenant's DuckDB: the push ledger (`push.documents`, `push.requests`), the
id map and the audit log. Each write opens its own short connection, so the file is never held while
Kaseya is being called (another process may be waiting for it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from zk_pipelines.domain.bundles import DocumentLineItem
from zk_pipelines.domain.push_plan.requests import PlannedRequest
from zk_pipelines.push.document import ZomentumDocument
from zk_pipelines.push.resolve import KnownIds
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.ledger_store import SyncEvent, record_events
from zk_pipelines.storage.push_store import (
    DocumentIds,
    LedgerRequest,
    RequestIntent,
    ensure_push_tables,
    existing_tables,
    finish_document,
    kaseya_id_for,
    last_quote_id,
    pair_pushed_record,
    record_intent,
    requests_in_doubt,
    settle_request,
    start_document,
    unknown_runs,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def read_known_ids(database: Path, source: ZomentumDocument) -> KnownIds:
    """What DuckDB knows of the document's records; nothing when the file does not exist yet (a dry run
    before the first pull). Opened read-only: the dry run writes nothing."""
    if not database.exists():
        return KnownIds()
    with connect(database, read_only=True) as connection:
        tables = existing_tables(connection)
        id_map = "zomentum.id_map" in tables

        def paired(entity: str, zomentum_id: object) -> int | None:
            return kaseya_id_for(connection, entity, str(zomentum_id)) if id_map and zomentum_id else None

        contact = source.contact
        products = {line.item_id: found for line in _item_lines(source)
                    if (found := paired("items", line.item_id)) is not None}
        return KnownIds(
            account=paired("clients", source.client["id"]),
            contact=paired("client_users", contact["id"]) if contact else None,
            opportunity=paired("opportunities", source.opportunity["id"]),
            products=products,
            quote=last_quote_id(connection, source.id) if "push.documents" in tables else None,
        )


def _item_lines(source: ZomentumDocument) -> Iterator[DocumentLineItem]:
    pending = list(source.lines)
    while pending:
        line = pending.pop()
        pending.extend(line.children)
        if line.item_id:
            yield line


class RecordedWrite(Protocol):
    """What the ledger records of a write (a `PlannedRequest` has it)."""

    endpoint: str
    method: str
    path: str
    body: Any
    purpose: str


@dataclass
class PushLedger:
    """One attempt at pushing one version of one document."""

    database: Path
    document_id: str
    document_version: str
    run_id: str
    clock: Callable[[], datetime] = utc_now
    run_alive: Callable[[str], bool | None] = unknown_runs
    attempt: int = 0

    def start(self, fingerprint: str) -> list[LedgerRequest]:
        """Record the attempt; returns the writes of earlier attempts that are in doubt."""
        with connect(self.database) as connection:
            ensure_push_tables(connection)
            self.attempt = start_document(connection, self.document_id, self.document_version, run_id=self.run_id,
                                          fingerprint=fingerprint, now=self.clock(), run_alive=self.run_alive)
            return requests_in_doubt(connection, self.document_id)

    def intend(self, step: int, system: str, request: PlannedRequest | RecordedWrite, record_key: str | None
               ) -> int:
        intent = RequestIntent(self.document_id, self.document_version, self.run_id, self.attempt, step, system,
                               request.endpoint, request.method, request.path, request.body, request.purpose,
                               record_key)
        with connect(self.database) as connection:
            return record_intent(connection, intent, self.clock())

    def settle(self, request_id: int, state: str, *, response_status: int | None = None,
               record_id: object = None, error: str | None = None,
               pairs: Sequence[tuple[str, int, str]] = ()) -> None:
        """The outcome of a request; `pairs` are id-map pairs (entity, Kaseya id, Zomentum id) it made,
        written in the same breath."""
        with connect(self.database) as connection:
            settle_request(connection, request_id, state=state, response_status=response_status,
                           record_id=None if record_id is None else str(record_id), error=error, now=self.clock())
            for entity, kaseya_id, zomentum_id in pairs:
                pair_pushed_record(connection, entity, kaseya_id, zomentum_id, self.clock())

    def pair(self, pairs: Sequence[tuple[str, int, str]]) -> None:
        if not pairs:
            return
        with connect(self.database) as connection:
            for entity, kaseya_id, zomentum_id in pairs:
                pair_pushed_record(connection, entity, kaseya_id, zomentum_id, self.clock())

    def finish(self, state: str, ids: DocumentIds, *, writes_sent: int, error: str | None = None) -> None:
        with connect(self.database) as connection:
            finish_document(connection, self.document_id, self.document_version, state=state, ids=ids,
                            writes_sent=writes_sent, error=error, now=self.clock())


def record_push_events(database: Path, events: Sequence[SyncEvent], *, run_id: str, fingerprint: str | None,
                       now: datetime) -> None:
    """The push's outcomes in the audit log (`audit.sync_events`, direction "push")."""
    if not events:
        return
    with connect(database) as connection:
        ensure_push_tables(connection)
        record_events(connection, events, run_id=run_id, partition_key=None, settings_fingerprint=fingerprint,
                      now=now)
