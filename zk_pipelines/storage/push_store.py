"""The push ledger in DuckDB (schema `push`), as explicit SQL with parameters.

- `push.documents`: one row per (document id, document version) pushed: its state, the Kaseya ids it
  resolved to, the attempts made, and the writes sent and the error of the last attempt.
- `push.requests`: every write one attempt sent, recorded twice: as an *intent* before it is sent and
  settled with its *outcome* after. A row still in `intent` (the process died in between) or `unknown`
  (the answer was lost) is *in doubt*: the next attempt looks for the record it may have created and
  settles the row as `adopted` or `not_created`.

The push also adds id-map pairs (`zomentum.id_map`) for what it creates or finds in Kaseya, so the pull
sees those records as linked. A pair the pull already holds for the Kaseya record is left as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from zk_pipelines.storage.database import one_row
from zk_pipelines.storage.schema import create_tables
from zk_pipelines.storage.state_store import (
    ID_MAP,
    PUSH_DOCUMENTS,
    PUSH_REQUESTS,
    hydrate_into,
    new_ids,
    remote_store_of,
    replicate,
)

PUSH_DDL = (
    """
    CREATE TABLE IF NOT EXISTS push.documents (
        document_id             VARCHAR NOT NULL,
        document_version        VARCHAR NOT NULL,
        state                   VARCHAR NOT NULL,
        attempts                INTEGER NOT NULL,
        run_id                  VARCHAR,
        settings_fingerprint    VARCHAR,
        zomentum_opportunity_id VARCHAR,
        kaseya_account_id       BIGINT,
        kaseya_contact_id       BIGINT,
        kaseya_opportunity_id   BIGINT,
        kaseya_quote_id         BIGINT,
        writes_sent             INTEGER,
        error                   VARCHAR,
        started_at              TIMESTAMPTZ NOT NULL,
        finished_at             TIMESTAMPTZ,
        PRIMARY KEY (document_id, document_version)
    )""",
    "CREATE SEQUENCE IF NOT EXISTS push.request_seq",
    """
    CREATE TABLE IF NOT EXISTS push.requests (
        request_id       BIGINT DEFAULT nextval('push.request_seq') PRIMARY KEY,
        document_id      VARCHAR NOT NULL,
        document_version VARCHAR NOT NULL,
        run_id           VARCHAR,
        attempt          INTEGER NOT NULL,
        step             INTEGER NOT NULL,
        system           VARCHAR NOT NULL,
        endpoint         VARCHAR NOT NULL,
        method           VARCHAR NOT NULL,
        path             VARCHAR NOT NULL,
        body             JSON,
        purpose          VARCHAR,
        record_key       VARCHAR,
        state            VARCHAR NOT NULL,
        response_status  INTEGER,
        record_id        VARCHAR,
        error            VARCHAR,
        intended_at      TIMESTAMPTZ NOT NULL,
        settled_at       TIMESTAMPTZ
    )""",
)

# push.documents.state
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
# push.requests.state
INTENT, SENT, REFUSED, UNKNOWN, ADOPTED, NOT_CREATED, SUPERSEDED = (
    "intent", "sent", "refused", "unknown", "adopted", "not_created", "superseded")
IN_DOUBT_STATES = (INTENT, UNKNOWN)
KASEYA, ZOMENTUM = "kaseya", "zomentum"


def ensure_push_tables(connection: duckdb.DuckDBPyConnection) -> None:
    create_tables(connection, PUSH_DDL)


def existing_tables(connection: duckdb.DuckDBPyConnection) -> set[str]:
    """`schema.table` of every table in the file (a read-only reader cannot create the missing ones)."""
    return {row[0] for row in connection.execute(
        "SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()}


# --- push.documents ----------------------------------------------------------------------------------


# A run that died mid-push leaves its document `running`. When the holder is a Dagster run, the instance says
# whether it still runs (a dead run is terminated in the UI, or failed by run monitoring). Otherwise (`zk
# push`) the hold is taken as abandoned once its last ledger write is older than this: longer than a push
# spends reading before its first write, even with reads retried after 429s.
HOLD_LAPSES_AFTER = timedelta(minutes=15)


class DocumentHeld(Exception):
    """Another run is pushing the document right now (the sensor and `zk push` at once, two launches)."""

    def __init__(self, document_id: str, run_id: str, since: datetime, *, known_run: bool) -> None:
        self.document_id = document_id
        self.run_id = run_id
        self.since = since
        self.known_run = known_run  # a run the Dagster instance knows (and says is not finished)
        super().__init__(f"document {document_id} is being pushed by run {run_id} since {since.isoformat()}")


def unknown_runs(run_id: str) -> bool | None:
    """Liveness of a run when no Dagster instance is asked: unknown."""
    return None


def start_document(connection: duckdb.DuckDBPyConnection, document_id: str, version: str, *, run_id: str,
                   fingerprint: str, now: datetime, run_alive: Callable[[str], bool | None] = unknown_runs) -> int:
    """Mark the (document, version) as being pushed by this run; returns the attempt number (1 for the
    first). Raises DocumentHeld when another run is pushing any version of the document: a run `run_alive`
    says is alive, or, where it cannot tell (None), one whose last ledger write is recent. The check and the
    mark are one transaction, and DuckDB lets one process write the file at a time. With a PostgreSQL state
    store the claim is made under the document's advisory lock, on the replica brought up to date inside it:
    two workers never both hold the document, and pushes of other documents never wait."""
    store = remote_store_of(connection)
    if store is None:
        return _claim_in_transaction(connection, document_id, version, run_id=run_id, fingerprint=fingerprint,
                                     now=now, run_alive=run_alive)
    with store.lock(f"document:{document_id}"):
        hydrate_into(connection, store)
        attempt = _claim_in_transaction(connection, document_id, version, run_id=run_id,
                                        fingerprint=fingerprint, now=now, run_alive=run_alive)
        replicate(connection, PUSH_DOCUMENTS, "t.document_id = $d AND t.document_version = $v",
                  {"d": document_id, "v": version})
    return attempt


def _claim_in_transaction(connection: duckdb.DuckDBPyConnection, document_id: str, version: str, *, run_id: str,
                          fingerprint: str, now: datetime, run_alive: Callable[[str], bool | None]) -> int:
    connection.execute("BEGIN TRANSACTION")
    try:
        attempt = _claim_document(connection, document_id, version, run_id=run_id, fingerprint=fingerprint,
                                  now=now, run_alive=run_alive)
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return attempt


def _claim_document(connection: duckdb.DuckDBPyConnection, document_id: str, version: str, *, run_id: str,
                    fingerprint: str, now: datetime, run_alive: Callable[[str], bool | None]) -> int:
    holders = connection.execute(
        """
        SELECT d.run_id, d.started_at,
               greatest(d.started_at, coalesce(max(r.intended_at), d.started_at),
                        coalesce(max(r.settled_at), d.started_at)) AS last_activity
        FROM push.documents d
        LEFT JOIN push.requests r ON r.document_id = d.document_id AND r.run_id = d.run_id
        WHERE d.document_id = $document_id AND d.state = $state AND d.run_id IS DISTINCT FROM $run_id
        GROUP BY d.run_id, d.started_at
        ORDER BY last_activity DESC
        """,
        {"document_id": document_id, "state": RUNNING, "run_id": run_id},
    ).fetchall()
    for holder, since, last_activity in holders:
        alive = run_alive(holder) if holder else None
        if alive or (alive is None and last_activity > now - HOLD_LAPSES_AFTER):
            raise DocumentHeld(document_id, holder, since, known_run=alive is not None)
    row = one_row(connection.execute(
        """
        INSERT INTO push.documents AS t (document_id, document_version, state, attempts, run_id,
                                         settings_fingerprint, started_at)
        VALUES ($document_id, $version, $state, 1, $run_id, $fingerprint, $now)
        ON CONFLICT (document_id, document_version) DO UPDATE SET
            state = excluded.state, attempts = t.attempts + 1, run_id = excluded.run_id,
            settings_fingerprint = excluded.settings_fingerprint, error = NULL, started_at = excluded.started_at,
            finished_at = NULL
        RETURNING attempts
        """,
        {"document_id": document_id, "version": version, "state": RUNNING, "run_id": run_id,
         "fingerprint": fingerprint, "now": now},
    ))
    return int(row[0])


@dataclass(frozen=True)
class DocumentIds:
    """The Kaseya records a push of the document resolved to."""

    zomentum_opportunity_id: str | None = None
    account_id: int | None = None
    contact_id: int | None = None
    opportunity_id: int | None = None
    quote_id: int | None = None


def finish_document(connection: duckdb.DuckDBPyConnection, document_id: str, version: str, *, state: str,
                    ids: DocumentIds, writes_sent: int, error: str | None, now: datetime) -> None:
    connection.execute(
        """
        UPDATE push.documents SET state = $state, zomentum_opportunity_id = $zomentum_opportunity_id,
            kaseya_account_id = $account_id, kaseya_contact_id = $contact_id,
            kaseya_opportunity_id = $opportunity_id, kaseya_quote_id = $quote_id, writes_sent = $writes,
            error = $error, finished_at = $now
        WHERE document_id = $document_id AND document_version = $version
        """,
        {"state": state, "zomentum_opportunity_id": ids.zomentum_opportunity_id, "account_id": ids.account_id,
         "contact_id": ids.contact_id, "opportunity_id": ids.opportunity_id, "quote_id": ids.quote_id,
         "writes": writes_sent, "error": error, "now": now, "document_id": document_id, "version": version},
    )
    replicate(connection, PUSH_DOCUMENTS, "t.document_id = $d AND t.document_version = $v",
              {"d": document_id, "v": version})


@dataclass(frozen=True)
class DocumentPushRow:
    document_id: str
    document_version: str
    state: str
    attempts: int
    ids: DocumentIds
    writes_sent: int | None
    error: str | None


def document_pushes(connection: duckdb.DuckDBPyConnection, document_id: str) -> list[DocumentPushRow]:
    """Every version of the document pushed, the most recently started first."""
    rows = connection.execute(
        """
        SELECT document_id, document_version, state, attempts, zomentum_opportunity_id, kaseya_account_id,
               kaseya_contact_id, kaseya_opportunity_id, kaseya_quote_id, writes_sent, error
        FROM push.documents WHERE document_id = $document_id ORDER BY started_at DESC
        """,
        {"document_id": document_id},
    ).fetchall()
    return [DocumentPushRow(r[0], r[1], r[2], r[3], DocumentIds(r[4], r[5], r[6], r[7], r[8]), r[9], r[10])
            for r in rows]


def last_quote_id(connection: duckdb.DuckDBPyConnection, document_id: str) -> int | None:
    """The Kaseya quote an earlier push of the document wrote (any version), most recent first: from a
    finished push, or from a quote create whose answer was recorded before the push stopped."""
    row = connection.execute(
        """
        SELECT quote_id FROM (
            SELECT kaseya_quote_id AS quote_id, coalesce(finished_at, started_at) AS written_at
            FROM push.documents WHERE document_id = $document_id AND kaseya_quote_id IS NOT NULL
            UNION ALL
            SELECT TRY_CAST(record_id AS BIGINT), settled_at FROM push.requests
            WHERE document_id = $document_id AND endpoint = 'create_quote' AND state IN ($sent, $adopted)
        ) WHERE quote_id IS NOT NULL ORDER BY written_at DESC LIMIT 1
        """,
        {"document_id": document_id, "sent": SENT, "adopted": ADOPTED},
    ).fetchone()
    return int(row[0]) if row else None


# --- push.requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestIntent:
    document_id: str
    document_version: str
    run_id: str
    attempt: int
    step: int
    system: str  # kaseya | zomentum
    endpoint: str
    method: str
    path: str
    body: Any
    purpose: str
    record_key: str | None


def record_intent(connection: duckdb.DuckDBPyConnection, intent: RequestIntent, now: datetime) -> int:
    """Written before the request is sent; returns the row's id for `settle_request`."""
    request_id = new_ids(connection, PUSH_REQUESTS, 1)[0]
    row = one_row(connection.execute(
        """
        INSERT INTO push.requests (request_id, document_id, document_version, run_id, attempt, step, system,
                                   endpoint, method, path, body, purpose, record_key, state, intended_at)
        VALUES ($request_id, $document_id, $version, $run_id, $attempt, $step, $system, $endpoint, $method,
                $path, $body::JSON, $purpose, $record_key, $state, $now)
        RETURNING request_id
        """,
        {"request_id": request_id, "document_id": intent.document_id, "version": intent.document_version,
         "run_id": intent.run_id,
         "attempt": intent.attempt, "step": intent.step, "system": intent.system, "endpoint": intent.endpoint,
         "method": intent.method, "path": intent.path, "body": json.dumps(intent.body, default=str),
         "purpose": intent.purpose, "record_key": intent.record_key, "state": INTENT, "now": now},
    ))
    replicate(connection, PUSH_REQUESTS, "t.request_id = $id", {"id": request_id})
    return int(row[0])


def settle_request(connection: duckdb.DuckDBPyConnection, request_id: int, *, state: str,
                   response_status: int | None = None, record_id: str | None = None, error: str | None = None,
                   now: datetime) -> None:
    connection.execute(
        """
        UPDATE push.requests SET state = $state, response_status = $status, record_id = $record_id,
            error = $error, settled_at = $now
        WHERE request_id = $request_id
        """,
        {"state": state, "status": response_status, "record_id": record_id, "error": error, "now": now,
         "request_id": request_id},
    )
    replicate(connection, PUSH_REQUESTS, "t.request_id = $id", {"id": request_id})


@dataclass(frozen=True)
class LedgerRequest:
    request_id: int
    document_version: str
    run_id: str | None
    attempt: int
    step: int
    system: str
    endpoint: str
    method: str
    path: str
    body: Any
    record_key: str | None
    state: str
    record_id: str | None
    error: str | None


_REQUEST_COLUMNS = ("request_id, document_version, run_id, attempt, step, system, endpoint, method, path, body, "
                    "record_key, state, record_id, error")


def _request(row: tuple) -> LedgerRequest:
    values = list(row)
    values[9] = json.loads(values[9]) if values[9] is not None else None
    return LedgerRequest(*values)


def requests_in_doubt(connection: duckdb.DuckDBPyConnection, document_id: str) -> list[LedgerRequest]:
    """Writes of earlier attempts at the document (any version) whose outcome was never recorded or was
    lost: each may or may not have happened in Kaseya."""
    rows = connection.execute(
        f"SELECT {_REQUEST_COLUMNS} FROM push.requests WHERE document_id = $document_id "
        "AND list_contains($states, state) ORDER BY request_id",
        {"document_id": document_id, "states": list(IN_DOUBT_STATES)},
    ).fetchall()
    return [_request(row) for row in rows]


def document_requests(connection: duckdb.DuckDBPyConnection, document_id: str,
                      run_id: str | None = None) -> list[LedgerRequest]:
    """The writes recorded for the document, in the order they were intended (one run's, if given)."""
    rows = connection.execute(
        f"SELECT {_REQUEST_COLUMNS} FROM push.requests WHERE document_id = $document_id "
        "AND ($run_id IS NULL OR run_id = $run_id) ORDER BY request_id",
        {"document_id": document_id, "run_id": run_id},
    ).fetchall()
    return [_request(row) for row in rows]


# --- the id map ------------------------------------------------------------------------------------------


def kaseya_id_for(connection: duckdb.DuckDBPyConnection, entity: str, zomentum_id: str) -> int | None:
    """The Kaseya record paired with a Zomentum record in the id map (the pull's or the push's), if any."""
    row = connection.execute(
        """SELECT kaseya_id FROM zomentum.id_map WHERE entity = $entity AND zomentum_id = $zomentum_id
           ORDER BY last_synced_at DESC LIMIT 1""",
        {"entity": entity, "zomentum_id": zomentum_id},
    ).fetchone()
    return int(row[0]) if row and str(row[0]).isdigit() else None


def pair_pushed_record(connection: duckdb.DuckDBPyConnection, entity: str, kaseya_id: int, zomentum_id: str,
                       now: datetime) -> None:
    """Pair a Kaseya record the push created or found with its Zomentum record. Without a payload: the pull
    has sent Zomentum nothing for it yet, and on its next run takes what it maps as the baseline without
    writing (a round trip leaves the Zomentum record as it is; later Kaseya changes are sent)."""
    connection.execute(
        """
        INSERT INTO zomentum.id_map (entity, kaseya_id, zomentum_id, link_kind, payload_hash, payload,
                                     first_synced_at, last_synced_at)
        VALUES ($entity, $kaseya_id, $zomentum_id, 'pushed', NULL, NULL, $now, $now)
        ON CONFLICT (entity, kaseya_id) DO NOTHING
        """,
        {"entity": entity, "kaseya_id": str(kaseya_id), "zomentum_id": zomentum_id, "now": now},
    )
    replicate(connection, ID_MAP, "t.entity = $entity AND t.kaseya_id = $kaseya_id",
              {"entity": entity, "kaseya_id": str(kaseya_id)}, keep_existing=True)

