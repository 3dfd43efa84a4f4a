"""`zk audit`: the entity-level audit log, one line per outcome the pull or the push recorded for a record,
with validation rejects as errors of the pull.

    zk audit [--entity TYPE] [--status success|error] [--since WHEN] [--run RUN_ID] [--format table|csv|json]

`table` fits a terminal (descriptions cut with an ellipsis); `csv` and `json` carry every column in full,
the run id and settings fingerprint included.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
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
from zk_pipelines.audit.query import SelectionError, errors_wanted, parse_since, resolve_entity
from zk_pipelines.commands.tenant_choice import tenant_environment
from zk_pipelines.domain.entities import ZOMENTUM_TARGET
from zk_pipelines.domain.settings import Links
from zk_pipelines.domain.text_table import text_table
from zk_pipelines.storage.audit_store import (
    LedgerEntry,
    LedgerFilter,
    has_ledger,
    ledger_entity_names,
    ledger_entries,
)

TABLE_WIDTH = 160
FORMATS = ("table", "csv", "json")
STATUSES = ("success", "error")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def describe(entry: LedgerEntry) -> str:
    """What happened, in words: the reason for an error, else the outcome and what it changed."""
    fields = ", ".join(entry.changed_fields or ())
    match entry.action:
        case "failed":
            return entry.reason or "failed (no reason recorded)"
        case "rejected":
            return f"rejected by validation: {entry.reason}"
        case "updated":
            text = f"updated: {fields}" if fields else "updated"
            return f"{text} ({entry.reason})" if entry.reason else text
        case "matched":
            target = ZOMENTUM_TARGET.get(entry.entity)
            text = entry.reason or f"matched an existing Zomentum {target.label if target else 'record'}"
            return f"{text}; updated: {fields}" if fields else text
        case "created":
            return f"created ({entry.reason})" if entry.reason else "created"
        case action:
            return f"{action}: {entry.reason}" if entry.reason else action


@dataclass(frozen=True)
class AuditLine:
    """One line of the audit log, as every format shows it."""

    time: str
    run_id: str | None
    partition_key: str | None
    direction: str
    entity: str
    kaseya_id: str | None
    zomentum_id: str | None
    status: str  # success | error
    action: str
    description: str
    reason: str | None
    changed_fields: list[str] | None
    link: str | None
    settings_fingerprint: str | None


def audit_line(entry: LedgerEntry, links: Links | None) -> AuditLine:
    # The ledger stores a link with most outcomes; the others (a reject, an unchanged record) get one from
    # the settings' templates: the Zomentum record when there is one, else the Kaseya record.
    link = entry.link or zomentum_url(links, entry.entity, entry.zomentum_id) or kaseya_url(
        links, entry.entity, entry.kaseya_id)
    return AuditLine(
        time=entry.occurred_at.astimezone(UTC).isoformat(), run_id=entry.run_id,
        partition_key=entry.partition_key, direction=entry.direction, entity=entry.entity,
        kaseya_id=entry.kaseya_id, zomentum_id=entry.zomentum_id, status="error" if entry.is_error else "success",
        action=entry.action, description=describe(entry), reason=entry.reason,
        changed_fields=list(entry.changed_fields) if entry.changed_fields is not None else None, link=link,
        settings_fingerprint=entry.settings_fingerprint,
    )


TABLE_HEADERS = ("time (UTC)", "direction", "entity", "Kaseya id", "Zomentum id", "status", "description", "link")


def render_table(lines: Sequence[AuditLine], width: int = TABLE_WIDTH) -> str:
    rows = [(datetime.fromisoformat(line.time).strftime(TIME_FORMAT), line.direction, line.entity,
             line.kaseya_id or "", line.zomentum_id or "", line.status, line.description, line.link or "")
            for line in lines]
    return text_table(TABLE_HEADERS, rows, width=width, shrinkable=TABLE_HEADERS.index("description"))


CSV_COLUMNS = tuple(AuditLine.__dataclass_fields__)


def render_csv(lines: Sequence[AuditLine], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in lines:
        values = asdict(line)
        values["changed_fields"] = ";".join(line.changed_fields) if line.changed_fields is not None else ""
        writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])


def render_json(lines: Sequence[AuditLine]) -> str:
    return json.dumps([asdict(line) for line in lines], ensure_ascii=False, indent=2)


def run_audit(environ: Mapping[str, str], *, entity: str | None = None, status: str | None = None,
              since: str | None = None, run: str | None = None, output_format: str = "table",
              out: TextIO, err: TextIO, now: datetime | None = None, tenant: str | None = None) -> int:
    now = now or datetime.now(UTC)
    environ = tenant_environment(environ, tenant)
    links = settings_links(environ)
    try:
        since_moment = parse_since(since, now) if since else None
        with open_ledger(ledger_path(environ), command="audit", err=err) as connection:
            if not has_ledger(connection):
                entries = []
            else:
                entities = (resolve_entity(entity, ledger_entity_names(connection)),) if entity else None
                entries = ledger_entries(connection, LedgerFilter(
                    entities=entities, errors=errors_wanted(status), since=since_moment,
                    run_id_prefix=run.strip() if run else None))
    except (SelectionError, LedgerUnavailable) as exc:
        print(f"zk audit: {exc}", file=err)
        return 1
    lines = [audit_line(entry, links) for entry in entries]
    if output_format == "csv":
        render_csv(lines, out)
    elif output_format == "json":
        print(render_json(lines), file=out)
    elif lines:
        print(render_table(lines), file=out)
    else:
        print("no events", file=out)
    return 0
