"""`zk history opportunity|client|contact|item ID`: the trail of one record between the two systems, oldest
first. ID is the Kaseya id or the Zomentum id; the id map pairs them. Every pull that created, matched or
updated the record (with the fields it changed), every error and validation reject, and every request a
push sent (method, path, body, answer), each with its run id to open in the Dagster UI (`/runs/RUN_ID`).
Runs in which the record was unchanged are folded into one line."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from zk_pipelines.audit.ledger import (
    LedgerUnavailable,
    kaseya_url,
    ledger_path,
    open_ledger,
    settings_links,
    zomentum_url,
)
from zk_pipelines.audit.query import HISTORY_KINDS
from zk_pipelines.commands.audit import describe
from zk_pipelines.commands.tenant_choice import tenant_environment
from zk_pipelines.domain.entities import KASEYA_LINK_ENTITY
from zk_pipelines.domain.settings import Links
from zk_pipelines.storage.audit_store import (
    LedgerEntry,
    PushRequest,
    RecordPair,
    find_record_pairs,
    has_ledger,
    push_requests_for,
    record_trail,
)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
INDENT = " " * 23
# zomentum.id_map.link_kind, in words.
PAIRED_BY = {"created": "the pull created the Zomentum record", "matched": "matched to an existing Zomentum record",
             "pushed": "a push created or found the Kaseya record"}


@dataclass(frozen=True)
class RecordTrail:
    pair: RecordPair
    entries: tuple[LedgerEntry, ...]
    requests: tuple[PushRequest, ...]


@dataclass(frozen=True)
class _Unchanged:
    """Consecutive runs in which the record was unchanged."""

    first: LedgerEntry
    last: LedgerEntry
    runs: int


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def _folded(entries: Sequence[LedgerEntry]) -> list[LedgerEntry | _Unchanged]:
    folded: list[LedgerEntry | _Unchanged] = []
    for entry in entries:
        previous = folded[-1] if folded else None
        if entry.action == "unchanged" and isinstance(previous, _Unchanged) \
                and previous.last.direction == entry.direction:
            runs = previous.runs + (entry.run_id != previous.last.run_id)
            folded[-1] = _Unchanged(previous.first, entry, runs)
        elif entry.action == "unchanged":
            folded.append(_Unchanged(entry, entry, 1))
        else:
            folded.append(entry)
    return folded


def _entry_lines(entry: LedgerEntry) -> list[str]:
    lines = [f"{_time(entry.occurred_at)}  {entry.direction:<4}  {entry.action:<9}  run {entry.run_id or '-'}"]
    description = describe(entry)
    if description != entry.action:
        lines.append(f"{INDENT}{description}")
    if entry.partition_key:
        lines.append(f"{INDENT}partition {entry.partition_key}")
    if entry.link:
        lines.append(f"{INDENT}link {entry.link}")
    return lines


def _unchanged_lines(item: _Unchanged) -> list[str]:
    if item.first is item.last:
        first = item.first
        return [f"{_time(first.occurred_at)}  {first.direction:<4}  unchanged  run {first.run_id or '-'}"]
    return [f"{_time(item.first.occurred_at)}  {item.first.direction:<4}  unchanged  in {item.runs} runs, until "
            f"{_time(item.last.occurred_at)}",
            f"{INDENT}runs {item.first.run_id or '-'} ... {item.last.run_id or '-'}"]


def _request_lines(request: PushRequest) -> list[str]:
    answer = (f"HTTP {request.response_status}" if request.response_status is not None else "no answer")
    outcome = f"{request.state}, {answer}"
    if request.record_id:
        outcome += f", {request.system.capitalize()} record {request.record_id}"
    lines = [f"{_time(request.intended_at)}  push  {'sent':<9}  run {request.run_id or '-'}",
             f"{INDENT}{request.method} {request.path} ({request.system}) -> {outcome}",
             f"{INDENT}document {request.document_id} version {request.document_version}, attempt {request.attempt}"
             + (f": {request.purpose}" if request.purpose else "")]
    if request.body is not None:
        lines.append(f"{INDENT}body {json.dumps(request.body, ensure_ascii=False, sort_keys=True)}")
    if request.error:
        lines.append(f"{INDENT}error {request.error}")
    return lines


def _counted(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def render_trail(kind: str, trail: RecordTrail, links: Links | None) -> str:
    pair = trail.pair
    entity = HISTORY_KINDS[kind]
    kaseya_label = f"Kaseya {KASEYA_LINK_ENTITY[entity]} {pair.kaseya_id}" if pair.kaseya_id else "no Kaseya record"
    zomentum_label = f"Zomentum {kind} {pair.zomentum_id}" if pair.zomentum_id else "no Zomentum record yet"
    head = [f"{kind}: {kaseya_label} <-> {zomentum_label}"]
    if pair.link_kind:
        how = PAIRED_BY.get(pair.link_kind, pair.link_kind)
        head.append(f"  paired {_time(pair.first_synced_at)} UTC ({how}), last synced {_time(pair.last_synced_at)} UTC")
    for system, url in (("Kaseya", kaseya_url(links, entity, pair.kaseya_id)),
                        ("Zomentum", zomentum_url(links, entity, pair.zomentum_id))):
        if url:
            head.append(f"  {system + ':':<9} {url}")
    items: list[tuple[datetime, int, list[str]]] = []
    for position, item in enumerate(_folded(trail.entries)):
        if isinstance(item, _Unchanged):
            items.append((item.first.occurred_at, position, _unchanged_lines(item)))
        else:
            items.append((item.occurred_at, position, _entry_lines(item)))
    offset = len(items)
    for position, request in enumerate(trail.requests):
        items.append((request.intended_at, offset + position, _request_lines(request)))
    items.sort(key=lambda item: (item[0], item[1]))
    body = [line for _, _, lines in items for line in lines]
    count = _counted(len(trail.entries), "ledger entry", "ledger entries") + (
        f", {_counted(len(trail.requests), 'push request', 'push requests')}" if trail.requests else "")
    return "\n".join([*head, "", f"{count}, oldest first (times UTC):", *body])


def run_history(environ: Mapping[str, str], kind: str, record_id: str, *, out: TextIO, err: TextIO,
                tenant: str | None = None) -> int:
    entity = HISTORY_KINDS[kind]
    environ = tenant_environment(environ, tenant)
    links = settings_links(environ)
    path = ledger_path(environ)
    record_id = record_id.strip()
    try:
        with open_ledger(path, command="history", err=err) as connection:
            pairs = find_record_pairs(connection, entity, record_id) if has_ledger(connection) else []
            trails = [RecordTrail(pair, tuple(record_trail(connection, entity, pair.kaseya_id, pair.zomentum_id)),
                                  tuple(push_requests_for(connection, entity, pair.kaseya_id, pair.zomentum_id)))
                      for pair in pairs]
    except LedgerUnavailable as exc:
        print(f"zk history: {exc}", file=err)
        return 1
    if not trails:
        print(f"zk history: no {kind} with Kaseya or Zomentum id {record_id!r} in the ledger ({path})", file=err)
        return 1
    print("\n\n".join(render_trail(kind, trail, links) for trail in trails), file=out)
    return 0
