"""Scenario 6 in a child process: transform and change detection of N staged contacts, no network.

- `per-record`: the contact rules one record at a time, in one batch: the raw payloads staged by the
  reference (`contacts_per_record.stage_contacts`, the domain's readers), validated
  (`staging_schemas.validate_rows`), mapped
  (`zomentum_mapping.map_client_user`, rows read back as `pull/map.py` reads them), hashed
  (`change_detection.payload_hash`), compared with the hashes last sent, and the changed ones diffed
  (`change_detection.partial_update`).
- `bulk`: the reference, a well-written vectorised implementation: in chunks of `--chunk` contacts by
  ascending id (so each id's duplicates fall in one chunk), the contacts staged column-wise, validated
  (`validate_contacts`), mapped and hashed (`client_user_payloads`), compared with the hashes last sent for
  that chunk (`detect_changes`), the changed ones diffed by `partial_update`; in memory, writing nothing.
  With `--database` (a file `setup` made) the staging reads the raw JSON there with DuckDB's
  `json_transform` into the wire's shape (the vectorised way to read it, without the pipeline's checks of
  every key's spelling and every value's type, which the synthetic records pass anyway); without it the
  staged frames are generated (untimed). `--chunk 0` does it in one batch.
- `pipeline`: the pipeline's own steps on a DuckDB file (`--database`, default a temporary one) holding the
  N contacts' raw payloads, their staged accounts, the clients' and the previously sent client users' id map:
  `pull/stage.stage_entity(..., "contacts", ...)` and `pull/map.map_target(client_users)`, column-wise in
  chunks, then change detection as the load sees it (`pull_store.count_pending`, the conditions of
  `pending_records`, counted in SQL). The digest is read back from `mapped.zomentum_client_users` afterwards.
- `profile`: `per-record` on a sample under cProfile: the functions that take the time.
- `setup`: only make the DuckDB file `--database` that `pipeline` and `bulk` read (so that neither
  process's peak RSS holds the making of it).

Each reports a digest of (id, hash, change) over every valid contact, equal when the paths agree, and its
own peak RSS (`peak_rss_mb`).

    python benchmarks/transform_child.py REPORT per-record|bulk|pipeline|profile|setup --contacts N [--chunk N]
        [--database FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pstats
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from bulk_change_detection import (
    CHANGED,
    CONTACT_COLUMNS,
    NEW,
    UNCHANGED,
    WAITING,
    client_user_payloads,
    detect_changes,
    validate_contacts,
)
from contacts_per_record import stage_contacts
from measure import own_peak_rss_mb, write_report
from synthetic_contacts import (
    BASE,
    CONTACT_BASE,
    client_ids,
    known_accounts,
    previously_sent,
    raw_payloads,
    staged_contacts,
)

from zk_pipelines.domain.change_detection import partial_update, payload_hash
from zk_pipelines.domain.entities import ZOMENTUM_TARGET, ZOMENTUM_TARGETS
from zk_pipelines.domain.staging_schemas import as_validated_types, validate_rows
from zk_pipelines.domain.zomentum_mapping import map_client_user
from zk_pipelines.pull.map import _plain, map_target
from zk_pipelines.pull.stage import stage_entity
from zk_pipelines.storage.contacts_store import count_pending
from zk_pipelines.storage.database import connect, registered
from zk_pipelines.storage.pull_store import ensure_pull_tables


class Steps:
    """Seconds per named step, summed over chunks."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def timed(self, name: str, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = work()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 3)
        return result


class Digest:
    """sha256 over every contact's (id, hash, change), fed in ascending id order."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, changes: list[tuple[str, str | None, str]]) -> None:
        for kaseya_id, hashed, change in sorted(changes, key=lambda c: int(c[0])):
            self._hash.update(f"{kaseya_id}:{hashed}:{change}\n".encode())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def sent_state(n: int, clients: dict[int, str], start: int = 0, stop: int | None = None
               ) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Hashes last sent (by the bulk path, which the tests hold equal to the per-record one) and the
    payloads last sent of the contacts whose job title changed since (all the diff needs)."""
    before = client_user_payloads(previously_sent(staged_contacts(n, start, stop)), clients)
    before = before[before["payload"].notna()]
    hashes = dict(zip(before["kaseya_id"], before["payload_hash"], strict=True))
    changed = before[before["payload"].str.contains('"Previous title"', regex=False)]
    return hashes, {k: json.loads(p) for k, p in zip(changed["kaseya_id"], changed["payload"], strict=True)}


def per_record(n: int, steps: Steps) -> dict[str, Any]:
    clients = client_ids(n)
    known = known_accounts(n)
    sent, sent_payloads = steps.timed("setup: previous state", lambda: sent_state(n, clients))
    raw = steps.timed("setup: raw payloads", lambda: list(raw_payloads(staged_contacts(n))))
    rows = steps.timed("stage_contacts", lambda: stage_contacts(raw))
    del raw
    valid, rejects = steps.timed("validate_rows", lambda: validate_rows("contacts", pd.DataFrame(rows),
                                                                        known_ids={"accounts": known}))
    del rows

    def map_and_hash() -> list[tuple[str, dict[str, Any] | None, str | None]]:
        mapped = []
        for row in ({k: _plain(v) for k, v in record.items()} for record in valid.to_dict("records")):
            client = clients.get(int(row["account_id"]))
            payload = map_client_user(row, client) if client is not None else None
            mapped.append((str(int(row["kaseya_id"])), payload,
                           payload_hash(payload) if payload is not None else None))
        return mapped

    mapped = steps.timed("map_client_user + payload_hash", map_and_hash)

    def detect() -> tuple[list[tuple[str, str | None, str]], int]:
        changes, bodies = [], 0
        for kaseya_id, payload, hashed in mapped:
            if hashed is None:
                change = WAITING
            elif kaseya_id not in sent:
                change = NEW
            elif sent[kaseya_id] == hashed:
                change = UNCHANGED
            else:
                change = CHANGED
                bodies += bool(partial_update(sent_payloads.get(kaseya_id), payload))
            changes.append((kaseya_id, hashed, change))
        return changes, bodies

    changes, bodies = steps.timed("change detection + partial_update", detect)
    digest = Digest()
    digest.add(changes)
    return summary(Counter(c for _, _, c in changes), len(valid), rejects, bodies, digest.hexdigest())


# The wire's shape of a contact (`contacts/summary`), for `json_transform`.
WIRE_SHAPE = json.dumps({
    "id": "BIGINT", "accountId": "BIGINT", "accountName": "VARCHAR", "locationId": "BIGINT",
    "firstName": "VARCHAR", "lastName": "VARCHAR", "jobTitle": "VARCHAR", "isPoc": "BOOLEAN", "isActive": "BOOLEAN",
    "emails": [{"emailAddress": "VARCHAR", "isDefault": "BOOLEAN"}],
    "phones": [{"phone": "VARCHAR", "phoneNumber": "VARCHAR", "isDefault": "BOOLEAN"}],
    "createdOn": "VARCHAR", "modifiedOn": "VARCHAR"})
REFERENCE_STAGING = f"""
    WITH wire AS (
        SELECT json_transform(payload, '{WIRE_SHAPE}') AS c FROM raw.kaseya_contacts
        WHERE kaseya_id BETWEEN $lowest AND $highest
    ), picked AS (
        SELECT c, list_filter(c.emails, lambda e: nullif(trim(e.emailAddress), '') IS NOT NULL) AS emails,
               list_filter(list_transform(c.phones, lambda p: {{'value': coalesce(p.phone, p.phoneNumber),
                                                               'isDefault': p.isDefault}}),
                           lambda p: nullif(trim(p.value), '') IS NOT NULL) AS phones
        FROM wire
    )
    SELECT c.id AS kaseya_id, c.accountId AS account_id, nullif(trim(c.accountName), '') AS account_name,
           c.locationId AS location_id, nullif(trim(c.firstName), '') AS first_name,
           nullif(trim(c.lastName), '') AS last_name, nullif(trim(c.jobTitle), '') AS job_title,
           trim(coalesce(list_filter(emails, lambda e: e.isDefault)[1].emailAddress, emails[1].emailAddress)) AS email,
           trim(coalesce(list_filter(phones, lambda p: p.isDefault)[1].value, phones[1].value)) AS phone,
           coalesce(c.isPoc, false) AS is_poc, c.isActive AS is_active,
           CAST(c.createdOn || CASE WHEN regexp_matches(c.createdOn, '(Z|[+-]\\d\\d:\\d\\d)$') THEN ''
                ELSE '+00:00' END AS TIMESTAMPTZ) AS created_on,
           CAST(c.modifiedOn || CASE WHEN regexp_matches(c.modifiedOn, '(Z|[+-]\\d\\d:\\d\\d)$') THEN ''
                ELSE '+00:00' END AS TIMESTAMPTZ) AS modified_on
    FROM picked ORDER BY kaseya_id"""


def staged_from_raw(connection: Any, lowest: int, highest: int) -> pd.DataFrame:
    """The reference's staging: the raw contacts with ids in [lowest, highest] read into typed columns, typed
    as `validate_rows` types them."""
    frame = connection.execute(REFERENCE_STAGING, {"lowest": lowest, "highest": highest}).df()
    return as_validated_types(frame, CONTACT_COLUMNS)


def bulk(n: int, steps: Steps, chunk: int, database: Path | None) -> dict[str, Any]:
    clients = client_ids(n)
    known = known_accounts(n)
    digest, counts, bodies, valid_rows = Digest(), Counter(), 0, 0
    rejects = []
    connection = duckdb.connect(str(database), read_only=True) if database is not None else None
    for start in range(0, n, chunk or n):
        stop = start + (chunk or n)
        sent, sent_payloads = steps.timed("setup: previous state", lambda: sent_state(n, clients, start, stop))
        if connection is not None:
            contacts = steps.timed("stage (json_transform)", lambda: staged_from_raw(
                connection, CONTACT_BASE + start, CONTACT_BASE + min(stop, n) - 1))
        else:
            contacts = steps.timed("setup: staged contacts", lambda: staged_contacts(n, start, stop))
        valid, rejected = steps.timed("validate_contacts", lambda: validate_contacts(contacts, known))
        del contacts
        payloads = steps.timed("client_user_payloads", lambda: client_user_payloads(valid, clients))

        def detect() -> tuple[list[tuple[str, str | None, str]], int]:
            change = detect_changes(payloads, sent)
            diffs = 0
            for kaseya_id, text in zip(payloads["kaseya_id"][change == CHANGED],
                                       payloads["payload"][change == CHANGED], strict=True):
                diffs += bool(partial_update(sent_payloads.get(kaseya_id), json.loads(text)))
            return list(zip(payloads["kaseya_id"], payloads["payload_hash"], change, strict=True)), diffs

        changes, diffs = steps.timed("detect_changes + partial_update", detect)
        digest.add(changes)
        counts.update(c for _, _, c in changes)
        bodies += diffs
        valid_rows += len(valid)
        rejects.append(rejected)
    if connection is not None:
        connection.close()
    return summary(counts, valid_rows, pd.concat(rejects), bodies, digest.hexdigest())


def _insert(connection: Any, table: str, columns: str, frame: pd.DataFrame, select: str) -> None:
    with registered(connection, "setup_rows", frame):
        connection.execute(f"INSERT INTO {table} ({columns}) SELECT {select} FROM setup_rows")


def tenant_file(database: Path, n: int, chunk: int) -> None:
    """The DuckDB file of a tenant whose N contacts were extracted (raw), whose accounts are staged and in
    Zomentum, and whose contacts were sent before as `previously_sent` says."""
    clients = client_ids(n)
    with connect(database) as connection:
        ensure_pull_tables(connection, [t.name for t in ZOMENTUM_TARGETS])
        accounts = pd.DataFrame({"kaseya_id": np.array(sorted(known_accounts(n)), dtype="int64")})
        _insert(connection, "stg.kaseya_accounts", "kaseya_id, name, shipping_addresses, modified_on", accounts,
                "kaseya_id, 'Company ' || kaseya_id, '[]', TIMESTAMPTZ '2026-10-01 00:00:00+00'")
        linked = pd.DataFrame({"kaseya_id": [str(a) for a in clients], "zomentum_id": list(clients.values())})
        _insert(connection, "zomentum.id_map", "entity, kaseya_id, zomentum_id, link_kind, first_synced_at, "
                "last_synced_at", linked, "'clients', kaseya_id, zomentum_id, 'created', now(), now()")
        for start in range(0, n, chunk or n):
            stop = start + (chunk or n)
            contacts = staged_contacts(n, start, stop)
            raw = pd.DataFrame({"kaseya_id": contacts["kaseya_id"].astype("int64"),
                                "modified_on": contacts["modified_on"],
                                "payload": [json.dumps(p, ensure_ascii=False) for p in raw_payloads(contacts)]})
            _insert(connection, "raw.kaseya_contacts", "kaseya_id, modified_on, payload, window_start, window_end, "
                    "extracted_at, run_id", raw, "kaseya_id, modified_on, payload::JSON, now(), now(), now(), 'setup'")
            sent, _ = sent_state(n, clients, start, stop)
            before = pd.DataFrame({"kaseya_id": list(sent), "payload_hash": list(sent.values())})
            _insert(connection, "zomentum.id_map", "entity, kaseya_id, zomentum_id, link_kind, payload_hash, "
                    "first_synced_at, last_synced_at", before,
                    "'client_users', kaseya_id, 'zu-' || kaseya_id, 'created', payload_hash, now(), now()")


def _mapped_digest(database: Path) -> str:
    """The (id, hash, change) digest of the mapped client users, each compared with the hash last sent."""
    digest = Digest()
    with connect(database, read_only=True) as connection:
        result = connection.execute(
            """SELECT m.kaseya_id, m.payload_hash,
                      CASE WHEN m.problem IS NOT NULL THEN 'waiting' WHEN i.zomentum_id IS NULL THEN 'new'
                           WHEN i.payload_hash = m.payload_hash THEN 'unchanged' ELSE 'changed' END
               FROM mapped.zomentum_client_users m
               LEFT JOIN zomentum.id_map i ON i.entity = 'client_users' AND i.kaseya_id = m.kaseya_id
               ORDER BY CAST(m.kaseya_id AS BIGINT)""")
        while rows := result.fetchmany(100_000):
            digest.add(rows)
    return digest.hexdigest()


def pipeline(n: int, steps: Steps, chunk: int, database: Path | None) -> dict[str, Any]:
    work = None
    if database is None:
        work = tempfile.TemporaryDirectory(prefix="transform-")
        database = Path(work.name) / "tenant.duckdb"
    try:
        if not database.exists():
            steps.timed("setup: tenant file", lambda: tenant_file(database, n, chunk))
        now = BASE + timedelta(hours=1)
        # every raw contact is pending (new since the last staging), as after an initial extraction
        staged = steps.timed("stage_entity (contacts)", lambda: stage_entity(
            database, "contacts", run_id="benchmark", partition_key=None, now=now, contacts_per_chunk=chunk or n))
        # client users need no owner: map_rows' settings are never asked for one
        resolved = SimpleNamespace(zomentum=SimpleNamespace(users={}), fallback_owner=SimpleNamespace(id="owner"))
        mapped = steps.timed("map_target (client_users)", lambda: map_target(
            database, ZOMENTUM_TARGET["client_users"], resolved, run_id="benchmark", now=now,
            client_users_per_chunk=chunk or n))

        def detect() -> Any:
            with connect(database, read_only=True) as connection:
                return count_pending(connection, "client_users")

        pending = steps.timed("count_pending (change detection)", detect)
        digest = steps.timed("setup: digest of mapped", lambda: _mapped_digest(database))
    finally:
        if work is not None:
            work.cleanup()
    counts = Counter({NEW: pending.never_sent, CHANGED: pending.changed, UNCHANGED: pending.unchanged,
                      WAITING: pending.problems})
    result = summary(+counts, staged.staged, staged.rejects, 0, digest)
    result["mapped"] = mapped.mapped
    result["partial_updates"] = None  # the load's business, per changed record: not part of this step
    return result


def summary(counts: Counter, valid: int, rejects: pd.DataFrame, bodies: int, digest: str) -> dict[str, Any]:
    return {"valid": valid, "rejected_records": int(rejects["kaseya_id"].nunique(dropna=False)) if len(rejects)
            else 0, "reject_lines": len(rejects), "changes": {k: int(v) for k, v in sorted(counts.items())},
            "partial_updates": bodies, "digest": digest}


def profile(n: int, steps: Steps) -> dict[str, Any]:
    profiler = cProfile.Profile()
    profiler.enable()
    result = per_record(n, steps)
    profiler.disable()
    stats = pstats.Stats(profiler)
    top = sorted(((key, value) for key, value in stats.stats.items()), key=lambda kv: kv[1][2], reverse=True)[:20]
    result["hot_functions"] = [
        {"function": f"{Path(file).name}:{line} {name}", "calls": calls, "own_s": round(own, 3),
         "cumulative_s": round(cumulative, 3)}
        for (file, line, name), (_, calls, own, cumulative, _) in top]
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("path", choices=("per-record", "bulk", "pipeline", "profile", "setup"))
    parser.add_argument("--contacts", type=int, required=True)
    parser.add_argument("--chunk", type=int, default=100_000,
                        help="bulk, pipeline: contacts per chunk (0: one batch)")
    parser.add_argument("--database", type=Path,
                        help="setup: the DuckDB file to make; pipeline: the file to use (made when missing; "
                             "default: a temporary one); bulk: the file to stage from (default: generated frames)")
    args = parser.parse_args(argv)
    steps = Steps()
    started = time.perf_counter()
    if args.path == "setup":
        steps.timed("setup: tenant file", lambda: tenant_file(args.database, args.contacts, args.chunk))
        write_report(args.report, {"success": True, "contacts": args.contacts, "steps_s": steps.seconds})
        return 0
    if args.path == "bulk":
        result = bulk(args.contacts, steps, args.chunk, args.database)
    elif args.path == "pipeline":
        result = pipeline(args.contacts, steps, args.chunk, args.database)
    else:
        result = {"per-record": per_record, "profile": profile}[args.path](args.contacts, steps)
    total = time.perf_counter() - started
    measured = sum(s for name, s in steps.seconds.items() if not name.startswith("setup"))
    peak_rss_mb = own_peak_rss_mb()
    write_report(args.report, {"success": True, "contacts": args.contacts, "steps_s": steps.seconds,
                               "transform_s": round(measured, 3), "run_s": round(total, 3),
                               "peak_rss_mb": peak_rss_mb, **result})
    print(json.dumps({"path": args.path, "steps_s": steps.seconds, "transform_s": round(measured, 3),
                      "peak_rss_mb": peak_rss_mb, "changes": result["changes"], "digest": result["digest"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
