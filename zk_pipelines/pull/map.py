"""Mapping: staged Kaseya rows -> the Zomentum payloads they should be (`mapped.zomentum_*`), with the
references (client, contact, owner, stage) resolved. A row that cannot be mapped yet (its parent is not in
Zomentum) keeps a `problem` and is mapped again by every later run until it can be.

Client users (contacts, counted in hundreds of thousands) are mapped column-wise a chunk of ids at a time, in
SQL (`contacts_store.upsert_client_users_mapped`), written one statement per chunk; the records are the
per-record path's (`column_wise=False`), payload text and hash included, which tests hold them to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from zk_pipelines.domain.change_detection import payload_hash
from zk_pipelines.domain.entities import KASEYA_SOURCE, ZomentumTarget
from zk_pipelines.domain.settings_check import ResolvedSettings
from zk_pipelines.storage.contacts_store import mapping_order, upsert_client_users_mapped
from zk_pipelines.storage.database import connect, transaction
from zk_pipelines.storage.ledger_store import read_id_map, read_id_map_payloads
from zk_pipelines.storage.pull_store import (
    MappedRecord,
    mapped_payload_hashes,
    mapped_problem_ids,
    mapped_read,
    read_stg,
    upsert_mapped,
)

# Contacts mapped at a time: memory stays flat whatever the window holds.
CLIENT_USERS_PER_CHUNK = 100_000


@dataclass(frozen=True)
class MapReport:
    target: str
    mapped: int
    problems: int


def owner_resolver(resolved: ResolvedSettings) -> Callable[[str | None], str]:
    users = {email.lower(): user_id for email, user_id in resolved.zomentum.users.items()}
    fallback = str(resolved.fallback_owner.id)

    def owner_for(email: str | None) -> str:
        return users.get(email.lower(), fallback) if email else fallback

    return owner_for


def _plain(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA else value


class _Context:
    """The row mappers' `MappingContext`: what was last sent is read only when a mapper asks."""

    def __init__(self, resolved: ResolvedSettings, id_maps: dict[str, dict[str, str]],
                 sent: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.owner_for = owner_resolver(resolved)
        self.id_maps = id_maps
        self._sent = sent

        def stage_for(status_id: int, current_stage_id: str | None) -> tuple[str, str]:
            stage = resolved.import_stage(status_id, current_stage_id)
            return stage.pipeline_id, stage.stage_id

        self.stage_for = stage_for

    @cached_property
    def sent(self) -> dict[str, dict[str, Any]]:
        return self._sent()


def map_rows(target: ZomentumTarget, rows: list[dict[str, Any]], resolved: ResolvedSettings,
             id_maps: dict[str, dict[str, str]], sent: dict[str, dict[str, Any]] | Callable[[], dict]
             ) -> list[MappedRecord]:
    """Pure: staged rows -> mapped records, by the target's mapper. `id_maps[target]` is Kaseya id -> Zomentum
    id of the parents; `sent` the payloads last sent for this target (or how to read them, when a mapper asks)."""
    context = _Context(resolved, id_maps, sent if callable(sent) else lambda: sent)
    records = []
    for row in rows:
        payload, problem = target.mapper(row, context)
        modified = _plain(row.get("modified_on"))
        records.append(MappedRecord(kaseya_id=str(int(row["kaseya_id"])), payload=payload,
                                    payload_hash=payload_hash(payload) if payload is not None else None,
                                    problem=problem, source_modified_on=modified, waiting=problem is not None))
    return records


def _map_client_users_in_chunks(connection: duckdb.DuckDBPyConnection, target: ZomentumTarget, *, run_id: str,
                                now: datetime, chunk: int) -> MapReport:
    retry = [int(i) for i in mapped_problem_ids(connection, target.name)]
    order = mapping_order(connection, target.source, retry)
    mapped = problems = 0
    for start in range(0, len(order), chunk):
        ids = order[start:start + chunk]
        with transaction(connection):  # the chunk's mapped rows and "read" for its staged rows land together
            written, waiting = upsert_client_users_mapped(connection, ids, run_id=run_id, now=now)
            mapped_read(connection, target.source, ids)
        mapped += written
        problems += waiting
    return MapReport(target=target.name, mapped=mapped, problems=problems)


# The one target counted in hundreds of thousands has a faster path: SQL over the staged rows; the target's row
# mapper stays its reference (`column_wise=False`).
COLUMN_WISE: dict[str, Callable[..., MapReport]] = {"client_users": _map_client_users_in_chunks}


def map_target(database: Path, target: ZomentumTarget, resolved: ResolvedSettings, *, run_id: str, now: datetime,
               column_wise: bool = True, client_users_per_chunk: int = CLIENT_USERS_PER_CHUNK) -> MapReport:
    """Map the staged rows not mapped since they were staged, plus every row that could not be mapped before.
    `column_wise=False` maps client users one row at a time, as every other target is (the reference)."""
    incremental = KASEYA_SOURCE[target.source].incremental
    with connect(database) as connection:
        if column_wise and target.name in COLUMN_WISE:
            return COLUMN_WISE[target.name](connection, target, run_id=run_id, now=now, chunk=client_users_per_chunk)
        retry = [int(i) for i in mapped_problem_ids(connection, target.name)]
        frame = read_stg(connection, target.source, pending_only=True, kaseya_ids=retry)
        if not len(frame):  # nothing staged since, nothing waiting: the id maps need not be read
            return MapReport(target=target.name, mapped=0, problems=0)
        id_maps = {parent: read_id_map(connection, parent) for parent in target.parents}
        rows = [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]
        records = map_rows(target, rows, resolved, id_maps, lambda: read_id_map_payloads(connection, target.name))
        if not incremental:  # a snapshot: rewrite only what changed, so "unchanged" means "seen and unchanged"
            existing = mapped_payload_hashes(connection, target.name)
            records = [r for r in records if r.problem or existing.get(r.kaseya_id) != r.payload_hash]
        with transaction(connection):
            upsert_mapped(connection, target.name, records, run_id=run_id, now=now)
            mapped_read(connection, target.source, frame["kaseya_id"].astype("int64").tolist())
    return MapReport(target=target.name, mapped=len(records), problems=sum(1 for r in records if r.problem))
