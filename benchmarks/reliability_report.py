"""The reliability report: the pull and a batch of Won pushes run under injected faults, re-run as a data
engineer would re-run what failed, and compared with the same work done without faults, in the sandboxes'
own records (never the pipeline's counters).

    .venv/bin/python benchmarks/reliability_report.py                  # small_recent, seed 7, 2 % of each fault
    .venv/bin/python benchmarks/reliability_report.py --rate 0.05 --fault-seed 3

Prints the table: the faults injected by kind, the runs and re-runs, the records expected (fault-free run) and
found (faulted run) in each sandbox, duplicates, missing and differing records and leaked secrets, which
must all be 0 (exit status 1 otherwise). `zk_pipelines_tests/test_reliability_convergence.py` and
`test_reliability_push_convergence.py` run the same scenarios and assert them; `docs/reliability.md` quotes
the table.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: the repository's packages are importable
    sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402

from zk_pipelines.clients.kaseya import KaseyaClient  # noqa: E402
from zk_pipelines.clients.zomentum import ZomentumClient  # noqa: E402
from zk_pipelines.config import KaseyaCredentials, ZomentumCredentials  # noqa: E402
from zk_pipelines.push.failures import PushFailed  # noqa: E402
from zk_pipelines.push.orchestration import PushSources, push_document  # noqa: E402
from zk_pipelines.sandbox.faults import (  # noqa: E402
    FAULT_KINDS,
    LATENCY,
    LOST_ANSWER,
    RATE_LIMIT_BURST,
    READ_TIMEOUT,
    SUCCESS_FALSE,
)
from zk_pipelines.sandbox.kaseya import KaseyaSandbox, start_kaseya_sandbox  # noqa: E402
from zk_pipelines.sandbox.zomentum import ZomentumSandbox, start_zomentum_sandbox  # noqa: E402
from zk_pipelines.secrets import Secret  # noqa: E402
from zk_pipelines_tests.pipeline_harness import PipelineHarness, step_errors, write_settings  # noqa: E402

DEFAULT_SCALE = "small_recent"
DEFAULT_SEED = 7
DEFAULT_RATE = 0.02
DEFAULT_RERUNS = 6  # re-runs of the whole sync
DEFAULT_PUSH_ATTEMPTS = 40  # pushes of one document (every garbled or refused read fails a push attempt)

# Holds short enough to keep the report fast; what matters is that the client sees the fault, not its length.
_FAULT_PARAMETERS: dict[str, dict[str, Any]] = {
    LATENCY: {"seconds": 0.05},
    READ_TIMEOUT: {"seconds": 0.05},
    LOST_ANSWER: {"seconds": 0.0},
    RATE_LIMIT_BURST: {"retry_after": 0, "length": 2},
}
KASEYA_FAULT_KINDS = FAULT_KINDS
ZOMENTUM_FAULT_KINDS = tuple(kind for kind in FAULT_KINDS if kind != SUCCESS_FALSE)


def fault_rules(kinds: Iterable[str], rate: float) -> list[dict[str, Any]]:
    """One rule per kind, each striking `rate` of every API request (login and token refresh excepted)."""
    return [{"kind": kind, "rate": rate, **_FAULT_PARAMETERS.get(kind, {})} for kind in kinds]


def inject_faults(kaseya: KaseyaSandbox, zomentum: ZomentumSandbox, *, seed: int, rate: float) -> None:
    kaseya.state.set_faults(seed=seed, rules=fault_rules(KASEYA_FAULT_KINDS, rate))
    zomentum.state.set_faults(seed=seed + 1, rules=fault_rules(ZOMENTUM_FAULT_KINDS, rate))


def injected_by_kind(*sandboxes: KaseyaSandbox | ZomentumSandbox) -> Counter[str]:
    counts: Counter[str] = Counter()
    for sandbox in sandboxes:
        for kind, routes in sandbox.state.fault_counts().items():
            counts[kind] += sum(routes.values())
    return counts


# --- what a sandbox holds, comparable across two runs ------------------------------------------------------

@dataclass(frozen=True)
class Holdings:
    """A sandbox's records in comparable form: per resource, each record as canonical JSON (ids of records
    made during the run replaced by their natural keys, timestamps left out), and each record's identity (the
    key a duplicate would share)."""

    records: Mapping[str, tuple[str, ...]]
    identities: Mapping[str, tuple[str, ...]]

    def count(self) -> int:
        return sum(len(rows) for rows in self.records.values())


@dataclass(frozen=True)
class Tally:
    """One sandbox after the faulted run, against the fault-free run."""

    sandbox: str
    expected: int
    found: int
    duplicates: int  # records sharing an identity more often than in the fault-free run
    missing: int  # fault-free records with no identical record in the faulted run
    differing: int  # faulted records with no identical record in the fault-free run (changed or extra)
    examples: tuple[str, ...] = ()


def compare(sandbox: str, expected: Holdings, found: Holdings) -> Tally:
    duplicates = missing = differing = 0
    examples: list[str] = []
    for resource in sorted(set(expected.records) | set(found.records)):
        want, got = Counter(expected.records.get(resource, ())), Counter(found.records.get(resource, ()))
        lost, extra = want - got, got - want
        missing += sum(lost.values())
        differing += sum(extra.values())
        examples += [f"{resource} missing: {record[:300]}" for record in list(lost)[:3]]
        examples += [f"{resource} not expected: {record[:300]}" for record in list(extra)[:3]]
        surplus = Counter(found.identities.get(resource, ())) - Counter(expected.identities.get(resource, ()))
        duplicates += sum(surplus.values())
        examples += [f"{resource} duplicated: {identity}" for identity in list(surplus)[:3]]
    return Tally(sandbox, expected.count(), found.count(), duplicates, missing, differing, tuple(examples))


_MOMENT = re.compile(r"^(\d{4}-\d{2}-\d{2})T\d{2}:\d{2}:\d{2}(\.\d+)?Z?$")


def _plain(value: Any, labels: Mapping[str, str], dropped: Callable[[str], bool], *, seeded: bool) -> Any:
    """`value` with the keys `dropped` says are volatile left out, the ids in `labels` replaced by labels, lists
    sorted, and date-times cut to their day (a seeded record's left out: the sandboxes seed relative to the
    moment of their reset, and what a run computes from the clock, an expiry date, moves with it)."""
    if isinstance(value, dict):
        return {key: _plain(item, labels, dropped, seeded=seeded) for key, item in value.items() if not dropped(key)}
    if isinstance(value, list):
        items = [_plain(item, labels, dropped, seeded=seeded) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True, default=str))
    if isinstance(value, str):
        if value in labels:
            return labels[value]
        moment = _MOMENT.match(value)
        if moment:
            return "<seeded moment>" if seeded else moment.group(1)
    return value


def _canonical(record: Mapping[str, Any], labels: Mapping[str, str], dropped: Callable[[str], bool], *,
               seeded: bool) -> str:
    return json.dumps(_plain(record, labels, dropped, seeded=seeded), sort_keys=True, default=str)


ZOMENTUM_RESOURCES = ("client/companies", "client/users", "opportunities", "items", "custom/fields")


def _zomentum_identity(resource: str, record: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    if resource == "client/companies":
        return str(record.get("name"))
    if resource == "client/users":
        return f"{record.get('email') or record.get('name')} @ {labels.get(record.get('client_company_id'), '?')}"
    if resource == "opportunities":
        links = [v for f in record.get("custom_fields") or [] for v in f.get("values") or []]
        return str(links[0]) if links else str(record.get("name"))
    if resource == "items":
        return str(record.get("manufacturer_part_number") or record.get("name"))
    return str(record.get("display_name") or record.get("name"))


Seeded = Mapping[str, frozenset[Any]]


def seeded_ids(sandbox: KaseyaSandbox | ZomentumSandbox, resources: Iterable[str]) -> Seeded:
    """The ids of the records a sandbox holds right after its reset."""
    return {resource: frozenset(r["id"] for r in sandbox.state.records(resource)) for resource in resources}


def zomentum_holdings(zomentum: ZomentumSandbox, seeded: Seeded) -> Holdings:
    state = zomentum.state
    tables = {resource: state.records(resource) for resource in (*ZOMENTUM_RESOURCES, "users", "pipelines")}
    labels: dict[str, str] = {}
    for resource, rows in tables.items():
        for row in rows:
            name = row.get("email") or row.get("manufacturer_part_number") or row.get("name") \
                or row.get("display_name")
            labels[row["id"]] = f"{resource}:{json.dumps(name, sort_keys=True)}"
            for stage in row.get("stages") or []:
                labels[stage["id"]] = f"stage:{row['name']}/{stage['name']}"

    def dropped(key: str) -> bool:
        return key in ("id", "created_at", "updated_at")

    records, identities = {}, {}
    for resource in ZOMENTUM_RESOURCES:
        rows = tables[resource]
        records[resource] = tuple(sorted(_canonical(r, labels, dropped, seeded=r["id"] in seeded[resource])
                                         for r in rows))
        identities[resource] = tuple(sorted(_zomentum_identity(resource, r, labels) for r in rows))
    return Holdings(records, identities)


KASEYA_ENTITIES = ("accounts", "contacts", "opportunities", "quotes", "products", "services", "categories")


def _kaseya_volatile(key: str) -> bool:
    # Ids and stamps differ between two runs that made the same records; names, amounts and markers do not.
    # Account codes and quote numbers are made from the record's id.
    lowered = key.lower()
    return (lowered == "id" or lowered.endswith(("id", "ids", "on", "by", "byname"))
            or lowered in ("accountcode", "quotationnumber"))


def _kaseya_identity(entity: str, record: Mapping[str, Any]) -> str:
    if entity == "accounts":
        return str(record.get("accountName"))
    if entity == "contacts":
        emails = sorted(e.get("emailAddress") or "" for e in record.get("emails") or [])
        return f"{record.get('accountName')}: {record.get('firstName')} {record.get('lastName')} {emails}"
    if entity == "opportunities":
        return f"{record.get('accountName')}: {record.get('subject')} {record.get('description')}"
    if entity == "products":
        return str(record.get("productNumber"))
    return str(record.get("name"))


def kaseya_holdings(kaseya: KaseyaSandbox, seeded: Seeded) -> Holdings:
    records, identities = {}, {}
    for entity in KASEYA_ENTITIES:
        rows = kaseya.state.records(entity)
        records[entity] = tuple(sorted(_canonical(r, {}, _kaseya_volatile, seeded=r["id"] in seeded[entity])
                                       for r in rows))
        identities[entity] = tuple(sorted(_kaseya_identity(entity, r) for r in rows))
    return Holdings(records, identities)


# --- secrets ------------------------------------------------------------------------------------------------

@dataclass
class IssuedTokens:
    """Every access and refresh token the sandboxes hand out while recording: the values a leak would show."""

    values: set[str] = field(default_factory=set)

    @contextmanager
    def recording(self, kaseya: KaseyaSandbox, zomentum: ZomentumSandbox) -> Iterator[IssuedTokens]:
        kaseya_issue = kaseya.state.tokens.issue
        zomentum_refresh = zomentum.state.refresh_access_token

        def issue(*args: Any, **kwargs: Any) -> Any:
            access, grant = kaseya_issue(*args, **kwargs)
            self.values.update((access, grant.refresh_token))
            return access, grant

        def refresh(*args: Any, **kwargs: Any) -> Any:
            answer = zomentum_refresh(*args, **kwargs)
            self.values.add(answer["access_token"])
            return answer

        kaseya.state.tokens.issue = issue
        zomentum.state.refresh_access_token = refresh
        try:
            yield self
        finally:
            del kaseya.state.tokens.issue
            del zomentum.state.refresh_access_token


def known_secrets(kaseya: KaseyaSandbox, zomentum: ZomentumSandbox, tokens: IssuedTokens) -> set[str]:
    return {kaseya.password, zomentum.refresh_token, *tokens.values}


class LogLines(logging.Handler):
    """Every log record of every logger, formatted with its exception, while installed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @contextmanager
    def installed(self) -> Iterator[LogLines]:
        """On the root logger, with the pipeline's and the HTTP stack's loggers at DEBUG (urllib3 logs every
        URL it requests there): everything they say reaches this handler, without turning anyone else's
        loggers up."""
        root = logging.getLogger()
        loggers = [logging.getLogger(name) for name in ("zk_pipelines", "urllib3", "requests")]
        levels = [logger.level for logger in loggers]
        root.addHandler(self)
        for logger in loggers:
            logger.setLevel(logging.DEBUG)
        try:
            yield self
        finally:
            root.removeHandler(self)
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def duckdb_text(database: Path) -> Iterator[str]:
    """Every row of every table of the tenant's DuckDB file, as text."""
    if not database.exists():
        return
    with duckdb.connect(str(database), read_only=True) as connection:
        tables = connection.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, table in tables:
            for row in connection.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall():
                yield f"{schema}.{table}: {row!r}"


def dagster_text(instance: dg.DagsterInstance) -> Iterator[str]:
    """Every run's tags and config and every event of its log (messages, metadata, errors), as text."""
    for run in instance.get_runs():
        yield f"run {run.run_id}: tags {run.tags!r} config {run.run_config!r}"
        for record in instance.all_logs(run.run_id):
            yield dg.serialize_value(record)


def leaks(texts: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """The lines of `texts` that contain a secret (each shown masked, with what it leaked)."""
    found = []
    wanted = [s for s in secrets if s]
    for text in texts:
        for secret in wanted:
            if secret in text:
                found.append(f"{secret[:3]}***: {text.replace(secret, '<SECRET>')[:300]}")
    return found


# --- the pull under faults ----------------------------------------------------------------------------------

@dataclass
class ScenarioResult:
    name: str
    faults: Counter[str]
    runs: int
    reruns: int
    tallies: list[Tally]
    leaked: list[str]
    failures: list[str] = field(default_factory=list)  # what the last attempt still failed on, if anything

    @property
    def converged(self) -> bool:
        return not self.failures and all(t.duplicates == t.missing == t.differing == 0 for t in self.tallies) \
            and not self.leaked


def _failed_in_run(harness: PipelineHarness, result: dg.ExecuteInProcessResult) -> list[str]:
    failed = step_errors(result)
    failed += [f"{entity} {kaseya_id}: {reason}" for entity, kaseya_id, reason in harness.sql(
        "SELECT entity, kaseya_id, reason FROM audit.sync_events WHERE run_id = ? AND action = 'failed'",
        [result.run_id])]
    return failed


def pull_convergence(kaseya: KaseyaSandbox, zomentum: ZomentumSandbox, workdir: Path, *, scale: str = DEFAULT_SCALE,
                     seed: int = DEFAULT_SEED, fault_seed: int = 1, rate: float = DEFAULT_RATE,
                     max_reruns: int = DEFAULT_RERUNS) -> ScenarioResult:
    """A fault-free full sync, then the same sync from scratch under faults, re-run while any step or record
    failed; Zomentum's records are compared after each. Kaseya is only read, so it stays as it is."""
    now = datetime.now(UTC)
    for name in ("fault_free", "faulted"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    kaseya.state.reset(seed=seed, scale=scale)
    zomentum.state.reset(seed=seed, scale=scale)
    seeded = seeded_ids(zomentum, ZOMENTUM_RESOURCES)
    reference = PipelineHarness(kaseya, zomentum, workdir / "fault_free", now=now)
    result = reference.backfill()
    if not result.success:
        raise RuntimeError(f"the fault-free sync failed: {step_errors(result)}")
    expected = zomentum_holdings(zomentum, seeded)

    zomentum.state.reset(seed=seed, scale=scale)
    seeded = seeded_ids(zomentum, ZOMENTUM_RESOURCES)
    inject_faults(kaseya, zomentum, seed=fault_seed, rate=rate)
    tokens = IssuedTokens()
    logs = LogLines()
    with tokens.recording(kaseya, zomentum), logs.installed():
        faulted = PipelineHarness(kaseya, zomentum, workdir / "faulted", now=now)
        runs, failures = 0, ["not run yet"]
        while failures and runs <= max_reruns:
            result = faulted.backfill()
            runs += 1
            failures = _failed_in_run(faulted, result)
    faults = injected_by_kind(kaseya, zomentum)
    kaseya.state.clear_faults()
    zomentum.state.clear_faults()
    texts = [*logs.lines, *duckdb_text(faulted.database), *dagster_text(faulted.instance)]
    return ScenarioResult("pull: full sync Kaseya -> Zomentum", faults, runs=runs, reruns=runs - 1,
                          tallies=[compare("Zomentum", expected, zomentum_holdings(zomentum, seeded))],
                          leaked=leaks(texts, known_secrets(kaseya, zomentum, tokens)), failures=failures)


# --- a batch of Won pushes under faults ---------------------------------------------------------------------

@dataclass(frozen=True)
class WonDocument:
    """A document a user builds in Zomentum and marks Won: its client (by whether Kaseya has an account of
    that name) and its lines (item name, quantity)."""

    client_in_kaseya: bool
    client_rank: int  # which such client (0: the first)
    lines: tuple[tuple[str, int], ...]


WON_BATCH = (
    WonDocument(True, 0, (("Rack Shelf 1U", 2), ("Network Assessment", 1))),
    WonDocument(False, 0, (("New Hire Onboarding Bundle", 1), ("Rack Shelf 1U", 1))),
    WonDocument(True, 1, (("Secure Workstation Bundle", 2),)),
    WonDocument(False, 1, (("Network Assessment", 3),)),
)


def make_won_documents(kaseya: KaseyaSandbox, zomentum: ZomentumSandbox, batch: Iterable[WonDocument]) -> list[str]:
    state = zomentum.state
    client = ZomentumClient(ZomentumCredentials(zomentum.base_url, Secret(zomentum.refresh_token)))
    accounts = {a["accountName"] for a in kaseya.state.records("accounts")}
    contacts = {u["client_company_id"]: u for u in state.records("client/users")}
    items = {i["name"]: i["id"] for i in state.records("items")}
    pipeline = next(p for p in state.records("pipelines") if p["name"] == "Sales Pipeline")
    won_stage = next(s["id"] for s in pipeline["stages"] if s["name"] == "Won")
    ids = []
    for document in batch:
        clients = [c for c in state.records("client/companies")
                   if (c["name"] in accounts) == document.client_in_kaseya and c["id"] in contacts]
        company = clients[document.client_rank]
        contact = contacts[company["id"]]
        opportunity = client.create("opportunities", {
            "name": f"Deal for {company['name']}", "client_company_id": company["id"],
            "primary_client_user_id": contact["id"], "linked_client_user_ids": [contact["id"]],
            "opportunity_pipeline_id": pipeline["id"], "opportunity_pipeline_stage_id": won_stage,
            "estimated_value": 1000.0, "estimated_close_date": "2026-12-31T00:00:00.000Z", "close_probability": 100})
        made = state.create_document(company["id"], [{"item_id": items[name], "quantity": quantity}
                                                     for name, quantity in document.lines],
                                     opportunity_id=opportunity["id"], client_user_id=contact["id"],
                                     name=f"Proposal for {company['name']}", status="sent")
        client.update("documents", made["id"], {"status": "won"})
        ids.append(made["id"])
    return ids


def _push_all(kaseya: KaseyaSandbox, zomentum: ZomentumSandbox, settings: Path, database: Path,
              documents: list[str], *, max_attempts: int) -> tuple[int, list[str]]:
    """Push the documents in order, each re-pushed while it fails (as a person re-launches a failed push job)
    before the next: the catalogue items a document creates then come from the same document as without
    faults. Returns (pushes run, the failures of documents that never went through)."""
    credentials = KaseyaCredentials(kaseya.base_url, kaseya.username, Secret(kaseya.password), kaseya.tenant)
    zomentum_credentials = ZomentumCredentials(zomentum.base_url, Secret(zomentum.refresh_token))
    attempts, failures = 0, []
    for document_id in documents:
        for attempt in range(1, max_attempts + 1):
            attempts += 1
            sources = PushSources(KaseyaClient(credentials), ZomentumClient(zomentum_credentials), settings, database)
            try:
                push_document(sources, document_id, run_id=f"push-{document_id[:8]}-{attempt}")
                break
            except PushFailed as failure:
                if attempt == max_attempts:
                    failures.append(str(failure))
    return attempts, failures


def push_convergence(kaseya: KaseyaSandbox, zomentum: ZomentumSandbox, workdir: Path, *,
                     scale: str = DEFAULT_SCALE, seed: int = DEFAULT_SEED, fault_seed: int = 1,
                     rate: float = DEFAULT_RATE, max_attempts: int = DEFAULT_PUSH_ATTEMPTS,
                     batch: tuple[WonDocument, ...] = WON_BATCH) -> ScenarioResult:
    """The batch of Won documents pushed without faults, then (both sandboxes reset, the same documents made
    again) pushed under faults with failed pushes re-run; Kaseya's records, and Zomentum's, are compared."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings = write_settings(workdir / "settings.yaml", mode="zomentum_as_crm")
    kaseya.state.reset(seed=seed, scale=scale)
    zomentum.state.reset(seed=seed, scale=scale)
    seeded = seeded_ids(kaseya, KASEYA_ENTITIES), seeded_ids(zomentum, ZOMENTUM_RESOURCES)
    documents = make_won_documents(kaseya, zomentum, batch)
    _, failures = _push_all(kaseya, zomentum, settings, workdir / "fault_free.duckdb", documents, max_attempts=1)
    if failures:
        raise RuntimeError(f"the fault-free pushes failed: {failures}")
    expected_kaseya, expected_zomentum = kaseya_holdings(kaseya, seeded[0]), zomentum_holdings(zomentum, seeded[1])

    kaseya.state.reset(seed=seed, scale=scale)
    zomentum.state.reset(seed=seed, scale=scale)
    seeded = seeded_ids(kaseya, KASEYA_ENTITIES), seeded_ids(zomentum, ZOMENTUM_RESOURCES)
    documents = make_won_documents(kaseya, zomentum, batch)
    inject_faults(kaseya, zomentum, seed=fault_seed, rate=rate)
    tokens, logs = IssuedTokens(), LogLines()
    database = workdir / "faulted.duckdb"
    with tokens.recording(kaseya, zomentum), logs.installed():
        attempts, failures = _push_all(kaseya, zomentum, settings, database, documents, max_attempts=max_attempts)
    faults = injected_by_kind(kaseya, zomentum)
    kaseya.state.clear_faults()
    zomentum.state.clear_faults()
    texts = [*logs.lines, *failures, *duckdb_text(database)]
    return ScenarioResult(f"push: {len(documents)} Won documents -> Kaseya", faults, runs=attempts,
                          reruns=attempts - len(documents),
                          tallies=[compare("Kaseya", expected_kaseya, kaseya_holdings(kaseya, seeded[0])),
                                   compare("Zomentum", expected_zomentum, zomentum_holdings(zomentum, seeded[1]))],
                          leaked=leaks(texts, known_secrets(kaseya, zomentum, tokens)), failures=failures)


# --- the table ----------------------------------------------------------------------------------------------

def render_table(results: Iterable[ScenarioResult]) -> str:
    results = list(results)
    kinds = [kind for kind in FAULT_KINDS if any(r.faults.get(kind) for r in results)]
    lines = ["faults injected, by kind:", "",
             "| scenario | " + " | ".join(kinds) + " | total |",
             "|---|" + "---:|" * (len(kinds) + 1)]
    for result in results:
        lines.append(f"| {result.name} | " + " | ".join(str(result.faults.get(k, 0)) for k in kinds)
                     + f" | {sum(result.faults.values())} |")
    lines += ["", "outcome, against the same work done without faults:", "",
              "| scenario | runs | re-runs | sandbox | expected | found | duplicates | missing | differing "
              "| leaked secrets |",
              "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for result in results:
        for tally in result.tallies:
            lines.append(f"| {result.name} | {result.runs} | {result.reruns} | {tally.sandbox} | {tally.expected} "
                         f"| {tally.found} | {tally.duplicates} | {tally.missing} | {tally.differing} "
                         f"| {len(result.leaked)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default=DEFAULT_SCALE)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the sandboxes' world")
    parser.add_argument("--fault-seed", type=int, default=1, help="the fault plans' seed")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="share of requests struck by each kind")
    parser.add_argument("--max-reruns", type=int, default=DEFAULT_RERUNS, help="re-runs of the sync at most")
    parser.add_argument("--max-push-attempts", type=int, default=DEFAULT_PUSH_ATTEMPTS,
                        help="pushes of one document at most")
    args = parser.parse_args(argv)
    started = time.monotonic()
    chatter = io.StringIO()  # Dagster's console log of every run, shown only if the report itself fails
    kaseya = start_kaseya_sandbox(seed=args.seed, scale=args.scale)
    zomentum = start_zomentum_sandbox(seed=args.seed, scale=args.scale)
    try:
        with tempfile.TemporaryDirectory(prefix="zk_reliability_") as tmp, redirect_stderr(chatter):
            options = dict(scale=args.scale, seed=args.seed, fault_seed=args.fault_seed, rate=args.rate)
            results = [pull_convergence(kaseya, zomentum, Path(tmp) / "pull", max_reruns=args.max_reruns, **options),
                       push_convergence(kaseya, zomentum, Path(tmp) / "push", max_attempts=args.max_push_attempts,
                                        **options)]
    except Exception:
        sys.stderr.write(chatter.getvalue())
        raise
    finally:
        kaseya.stop()
        zomentum.stop()
    print(f"zk_pipelines reliability report: scale {args.scale}, seed {args.seed}, fault seed {args.fault_seed}, "
          f"{args.rate:.0%} of requests struck by each fault kind ({time.monotonic() - started:.0f} s)\n")
    print(render_table(results))
    for result in results:
        for line in [*result.failures, *(e for t in result.tallies for e in t.examples), *result.leaked]:
            print(f"  {result.name}: {line}")
    return 0 if all(r.converged for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
