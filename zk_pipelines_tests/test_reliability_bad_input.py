"""Bad input: the corpus in `data/bad_input/` (one file per kind of hostile or broken record, see its README).

Every Kaseya case goes into one tenant beside the seeded records and one run syncs them all: each record is
synced correctly or rejected with a reason naming it, and the rest of the batch syncs as if it were not there.
Every Zomentum case is a Won document pushed beside a good one: each is refused with a reason naming it, sends
nothing to Kaseya, and the good document goes through."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

import zk_pipelines.sandbox.kaseya.app as kaseya_app
from benchmarks.reliability_report import WonDocument, make_won_documents
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.commands.audit import run_audit
from zk_pipelines.config import KaseyaCredentials, ZomentumCredentials
from zk_pipelines.domain.push_plan.markers import document_markers
from zk_pipelines.push.failures import PushFailed
from zk_pipelines.push.orchestration import PushSources, push_document
from zk_pipelines.sandbox.kaseya import start_kaseya_sandbox
from zk_pipelines.sandbox.kaseya.routing import Call, Route
from zk_pipelines.sandbox.zomentum import start_zomentum_sandbox
from zk_pipelines.secrets import Secret
from zk_pipelines_tests.pipeline_harness import (
    PipelineHarness,
    step_errors,
    write_settings,
)

CORPUS = Path(__file__).parent / "data" / "bad_input"
KASEYA_CASES = sorted(CORPUS.glob("kaseya_*.yaml"))
ZOMENTUM_CASES = sorted(CORPUS.glob("zomentum_*.yaml"))

# Kaseya entity -> (its list route, the Zomentum target, the Zomentum resource, what a reason calls one record)
ENTITIES = {
    "accounts": ("GET /v2/crm/accounts/summary", "clients", "client/companies", "account"),
    "contacts": ("GET /v2/crm/contacts/summary", "client_users", "client/users", "contact"),
    "opportunities": ("GET /v2/crm/opportunities", "opportunities", "opportunities", "opportunity"),
    "products": ("GET /v2/inventory/products/searchselect", "items", "items", "product"),
}
PRICING = "GET /v2/inventory/products/{productIndexId}/pricingLevels"
CONTACTS = ENTITIES["contacts"][0]


def test_the_corpus_has_a_case_for_every_kind_the_issue_names():
    assert len(KASEYA_CASES) >= 25 and len(ZOMENTUM_CASES) >= 4
    kinds = {path.stem for path in KASEYA_CASES + ZOMENTUM_CASES}
    assert len(kinds) == len(KASEYA_CASES) + len(ZOMENTUM_CASES)
    for words in ("missing_name", "malformed_email", "duplicate_email", "10000_characters", "right_to_left",
                  "emoji", "zero_width", "sql_injection", "csv_formula", "negative_price", "nan_price",
                  "huge_price", "unknown_status", "unknown_type", "unknown_owner", "unknown_account",
                  "same_id_on_two_pages", "modified_while_paged", "hour_boundary", "odd_time_zones",
                  "without_locations", "without_addresses", "without_line_items", "unknown_product",
                  "bundle_without_children", "zero_quantity", "negative_quantity"):
        assert any(words in kind for kind in kinds), words


# --------------------------------------------------------------------------------------------------------
# Kaseya answers beyond the sandbox's model, and edits made while a list is paged


@dataclass
class WireTamper:
    """What Kaseya's answers carry for some records although the sandbox's own model would refuse it, and
    edits someone makes while the contacts of a window are paged (one per listing of the window, in order)."""

    row_fields: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    pricing_fields: dict[int, dict[str, Any]] = field(default_factory=dict)
    while_paging: list[Callable[[Call], None]] = field(default_factory=list)

    def wrap(self, route: Route) -> Route:
        served = f"{route.method} {route.template}"
        entity = next((name for name, (listed, *_) in ENTITIES.items() if listed == served), None)
        original = route.operation

        def operation(call: Call):
            reply = original(call)
            if entity is not None:
                for row in reply.result or []:
                    row.update(self.row_fields.get((entity, row.get("id")), {}))
            if served == PRICING:
                for level in reply.result or []:
                    level.update(self.pricing_fields.get(int(call.params["productIndexId"]), {}))
            if (served == CONTACTS and self.while_paging and call.query.text("Filter.ModifiedOnTo")
                    and (call.query.int("PageNumber") or 1) == 1):
                self.while_paging.pop(0)(call)
            return reply

        return replace(route, operation=operation)


def _expand(value: Any, refs: dict[str, int]) -> Any:
    if isinstance(value, dict) and set(value) == {"repeat", "times"}:
        return value["repeat"] * value["times"]
    if isinstance(value, dict):
        return {key: _expand(item, refs) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, refs) for item in value]
    if isinstance(value, str) and value.startswith("$") and value[1:] in refs:
        return refs[value[1:]]
    return value


@dataclass
class KaseyaCase:
    path: Path
    spec: dict[str, Any]
    refs: dict[str, int] = field(default_factory=dict)  # ref -> Kaseya id
    entities: dict[str, str] = field(default_factory=dict)  # ref -> Kaseya entity

    @property
    def name(self) -> str:
        return self.path.stem


class Corpus:
    """Puts every Kaseya case into the sandbox tenant: records created, placed in the synced hours, their wire
    fields and paging edits registered."""

    def __init__(self, harness: PipelineHarness, tamper: WireTamper) -> None:
        self.harness = harness
        self.tamper = tamper
        self.window_end = harness.current_hour - timedelta(hours=1)  # what the backfill queries up to
        self.next_moment = harness.current_hour - timedelta(hours=8)

    def moment(self, spec: dict[str, Any]) -> datetime:
        if spec.get("modified_at") == "hour_boundary":
            return self.harness.current_hour - timedelta(hours=4)
        self.next_moment += timedelta(seconds=7)
        return self.next_moment

    def place(self, path: Path) -> KaseyaCase:
        case = KaseyaCase(path, yaml.safe_load(path.read_text(encoding="utf-8")))
        state = self.harness.kaseya.state
        moments: dict[str, datetime] = {}
        for spec in case.spec.get("records", []):
            for n in range(spec.get("copies", 1)):
                fields = _expand(spec["fields"], case.refs)
                if "copies" in spec:
                    fields = {k: v.format(n=n) if isinstance(v, str) else v for k, v in fields.items()}
                made = state.create_record(spec["entity"], fields)
                moment = self.moment(spec)
                self.harness.set_modified_on(spec["entity"], made["id"], moment)
                case.refs.setdefault(spec["ref"], made["id"])
                case.entities.setdefault(spec["ref"], spec["entity"])
                moments.setdefault(spec["ref"], moment)
        for ref, fields in (case.spec.get("wire") or {}).items():
            fields = {key: self._wire_value(value, moments[ref]) for key, value in _expand(fields, case.refs).items()}
            self.tamper.row_fields[(case.entities[ref], case.refs[ref])] = fields
        for ref, fields in (case.spec.get("pricing_wire") or {}).items():
            self.tamper.pricing_fields[case.refs[ref]] = fields
        if case.spec.get("during_paging"):
            self.tamper.while_paging.append(self._paging_edit(case, case.spec["during_paging"]))
        return case

    @staticmethod
    def _wire_value(value: Any, moment: datetime) -> Any:
        if isinstance(value, str) and value.startswith("$moment@"):
            sign, hours, minutes = value[8], int(value[9:11]), int(value[12:14])
            offset = timedelta(hours=hours, minutes=minutes) * (1 if sign == "+" else -1)
            return moment.astimezone(timezone(offset)).isoformat(timespec="milliseconds")
        return value

    def _window_contacts(self, call: Call | None = None) -> list[Any]:
        tenant = self.harness.kaseya.state.tenant
        if call is not None:
            window = call.query.window("Filter.ModifiedOn")
            return [c for c in tenant.contacts.values() if c.stamps.modified_on in window]
        start = self.harness.partitions_start - timedelta(hours=1)
        return [c for c in tenant.contacts.values() if start <= c.stamps.modified_on <= self.window_end]

    def _paging_edit(self, case: KaseyaCase, kind: str) -> Callable[[Call], None]:
        state = self.harness.kaseya.state
        case.entities.update({"$edited": "contacts", "$skipped": "contacts", "$entered": "contacts",
                              "$repeated": "contacts"})
        if kind == "leave_window":
            def leave(call: Call) -> None:
                """Someone edits the first contact of the page just served: it leaves the window, and the
                contact first on the next page moves back onto this one."""
                page_size = call.query.int("PageSize")
                listed = self._window_contacts(call)
                case.refs["$edited"], case.refs["$skipped"] = listed[0].id, listed[page_size].id
                state.update_record("contacts", listed[0].id, {"jobTitle": "Edited while the list was paged"})
            return leave
        if kind == "enter_window":
            # A contact whose change was committed late: it is outside the window until the list is paged.
            late = self._window_contacts()[10]
            committed_at = late.stamps.modified_on
            self.harness.set_modified_on("contacts", late.id, self.harness.current_hour - timedelta(minutes=30))
            case.refs["$entered"] = late.id

            def enter(call: Call) -> None:
                page_size = call.query.int("PageSize")
                case.refs["$repeated"] = self._window_contacts(call)[page_size - 1].id
                late.stamps.modified_on = committed_at
            return enter
        raise ValueError(f"{case.name}: unknown during_paging {kind!r}")


@dataclass
class CorpusRun:
    harness: PipelineHarness
    cases: dict[str, KaseyaCase]
    result: Any
    fallback_owner: str


@contextmanager
def corpus_synced(tmp: Path) -> Iterator[tuple[PipelineHarness, dict[str, KaseyaCase], Any]]:
    """(harness, cases, the run's result): every Kaseya case placed in fresh sandboxes and the whole history
    backfilled in one run. The sandboxes stop when the block ends."""
    tamper = WireTamper()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kaseya_app, "ROUTES", tuple(tamper.wrap(route) for route in kaseya_app.ROUTES))
        kaseya = start_kaseya_sandbox(scale="small_recent")
    zomentum = start_zomentum_sandbox(scale="small_recent")
    try:
        harness = PipelineHarness(kaseya, zomentum, tmp)
        corpus = Corpus(harness, tamper)
        cases = {path.stem: corpus.place(path) for path in KASEYA_CASES}
        yield harness, cases, harness.backfill()
    finally:
        kaseya.stop()
        zomentum.stop()


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory) -> Iterator[CorpusRun]:
    with corpus_synced(tmp_path_factory.mktemp("corpus")) as (harness, cases, result):
        api_user = next(u["id"] for u in harness.zomentum.state.records("users")
                        if u["email"] == "api.user@msp.example")
        yield CorpusRun(harness, cases, result, api_user)


@pytest.mark.slow
def test_the_batch_with_every_bad_record_in_it_syncs_everything_else(corpus_run):
    harness, result = corpus_run.harness, corpus_run.result
    assert result.success, step_errors(result)
    assert not [e for e in result.get_asset_check_evaluations() if not e.passed]
    corpus_ids = {(case.entities[ref], kaseya_id) for case in corpus_run.cases.values()
                  for ref, kaseya_id in case.refs.items()}
    for entity, (_, target, resource, _) in ENTITIES.items():
        id_map = harness.id_map(target)
        staged = {kaseya_id for (kaseya_id,) in harness.sql(f"SELECT kaseya_id FROM stg.kaseya_{entity}")}
        # An account or contact inactive in Kaseya is not created (README, Deactivation).
        inactive = ({kaseya_id for (kaseya_id,) in harness.sql(
            f"SELECT kaseya_id FROM stg.kaseya_{entity} WHERE is_active = false")}
            if entity in ("accounts", "contacts") else set())
        seeded = staged - inactive - {kaseya_id for (e, kaseya_id) in corpus_ids if e == entity}
        waiting = {int(k) for (k,) in harness.sql(f"SELECT kaseya_id FROM mapped.zomentum_{target} WHERE waiting")}
        # Corpus records belong to corpus accounts only, so no seeded record can wait because of one.
        assert seeded and all(str(kaseya_id) in id_map or kaseya_id in waiting for kaseya_id in seeded), entity
        zomentum_ids = {r["id"] for r in harness.zomentum.state.records(resource)}
        assert set(id_map.values()) <= zomentum_ids
        assert len(set(id_map.values())) == len(id_map), entity  # no Zomentum record paired twice
    assert harness.sql("SELECT count(*) FROM stg.kaseya_accounts")[0][0] > 40  # the SQL was data, not code


def _at(record: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        record = record[int(part)] if isinstance(record, list) else record[part]
    return record


@pytest.mark.parametrize("case_path", KASEYA_CASES, ids=[path.stem for path in KASEYA_CASES])
def test_each_bad_kaseya_record_is_synced_correctly_or_rejected_naming_it(corpus_run, case_path):
    harness = corpus_run.harness
    case = corpus_run.cases[case_path.stem]
    for expectation in case.spec["expect"]:
        ref = expectation["ref"]
        entity, kaseya_id = case.entities[ref], case.refs[ref]
        _, target, resource, label = ENTITIES[entity]
        subject = f"{label} {kaseya_id}"
        paired = harness.id_map(target).get(str(kaseya_id))
        rejects = harness.sql("SELECT check_name, column_name, reason FROM audit.rejects WHERE entity = ? AND "
                              "kaseya_id = ?", [entity, str(kaseya_id)])
        outcome = expectation["outcome"]
        if outcome == "synced":
            assert paired is not None, (subject, rejects)
            record = next(r for r in harness.zomentum.state.records(resource) if r["id"] == paired)
            for path, wanted in (expectation.get("zomentum") or {}).items():
                wanted = _expand(wanted, {})
                if isinstance(wanted, str) and wanted.startswith("$"):
                    wanted = (corpus_run.fallback_owner if wanted == "$fallback_owner" else
                              harness.id_map(ENTITIES[case.entities[wanted[1:]]][1])[str(case.refs[wanted[1:]])])
                assert _at(record, path) == wanted, (subject, path)
        elif outcome == "rejected":
            assert paired is None, subject
            assert (expectation["check"], expectation["column"]) in [(c, col) for c, col, _ in rejects], rejects
            assert all(reason.startswith(f"{subject}:") for _, _, reason in rejects), rejects
        elif outcome == "extracted":
            assert harness.sql(f"SELECT count(*) FROM raw.kaseya_{entity} WHERE kaseya_id = ?", [kaseya_id]) == [(1,)]
        elif outcome == "failed":
            assert paired is None, subject
            (reason,) = {r for (r,) in harness.sql("SELECT reason FROM audit.sync_events WHERE entity = ? AND "
                                                   "kaseya_id = ? AND action = 'failed'", [target, str(kaseya_id)])}
            assert subject in reason
            for words in expectation["reason_contains"]:
                words = str(case.refs[words[1:]]) if words.startswith("$") else words
                assert words in reason, reason
        else:
            raise AssertionError(f"{case.name}: unknown outcome {outcome}")


# --------------------------------------------------------------------------------------------------------
# Broken Zomentum documents, pushed


def _served_lines(csv_text: str, how: Any) -> str:
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    columns = list(csv.reader(io.StringIO(csv_text)))[0]
    if how == "no_lines":
        rows = []
    elif how == "unknown_item":
        rows[0]["item_id"] = "9f0c5b7e-0000-4000-8000-000000000000"
    elif how == "childless_bundle":
        bundles = {row["line_id"] for row in rows if row["type"] == "bundle"}
        rows = [row for row in rows if row["parent_line_id"] not in bundles]
    else:
        rows[0].update(how)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _total(csv_text: str) -> float:
    """What Zomentum totals these lines at: quantity x sell price + setup price - discount, every line once."""
    return round(sum(float(row["quantity"]) * float(row["sell_price"]) + float(row["setup_price"])
                     - float(row["discount"]) for row in csv.DictReader(io.StringIO(csv_text))), 2)


def _revisions(state: Any, documents: list[str]) -> list[str]:
    current = {d["id"]: d["current_revision_id"] for d in state.records("documents")}
    return [current[document_id] for document_id in documents]


@pytest.fixture(scope="module")
def push_sandboxes():
    kaseya = start_kaseya_sandbox(scale="small_recent")
    zomentum = start_zomentum_sandbox(scale="small_recent")
    yield kaseya, zomentum
    kaseya.stop()
    zomentum.stop()


def test_each_broken_won_document_is_refused_naming_it_or_pushed_as_quoted_and_a_good_one_goes_through(
        push_sandboxes, tmp_path):
    kaseya, zomentum = push_sandboxes
    cases = [yaml.safe_load(path.read_text(encoding="utf-8")) for path in ZOMENTUM_CASES]
    documents = make_won_documents(kaseya, zomentum, [
        WonDocument(True, 0, tuple((name, quantity) for name, quantity in case["lines"])) for case in cases]
        + [WonDocument(True, 1, (("Rack Shelf 1U", 1),))])
    # Zomentum serves each broken document as it would hold it: the altered lines, and a total that is theirs.
    state = zomentum.state
    served = {document_id: _served_lines(state.line_items_csv(document_id, revision_id), case["serve"])
              for case, document_id, revision_id in zip(cases, documents, _revisions(state, documents), strict=False)}
    lines_csv, get_record = state.line_items_csv, state.get_record
    state.line_items_csv = lambda document_id, revision_id: served.get(document_id) or lines_csv(document_id,
                                                                                                   revision_id)
    state.get_record = lambda resource, record_id: (
        {**get_record(resource, record_id), "total": _total(served[record_id])}
        if resource == "documents" and record_id in served else get_record(resource, record_id))
    settings = write_settings(tmp_path / "settings.yaml", mode="zomentum_as_crm")
    credentials = KaseyaCredentials(kaseya.base_url, kaseya.username, Secret(kaseya.password), kaseya.tenant)

    def push(document_id: str) -> str | None:
        sources = PushSources(KaseyaClient(credentials), ZomentumClient(
            ZomentumCredentials(zomentum.base_url, Secret(zomentum.refresh_token))), settings, tmp_path / "t.duckdb")
        try:
            push_document(sources, document_id, run_id=f"push-{document_id[:8]}")
        except PushFailed as failure:
            return str(failure)
        return None

    try:
        outcomes = {case["kind"]: (push(document_id), case, document_id) for case, document_id in zip(cases, documents,
                                                                                                      strict=False)}
        good = push(documents[-1])
    finally:
        del state.line_items_csv, state.get_record

    def marked(entity: str, field: str, document_id: str) -> list[dict]:
        return [r for r in kaseya.state.records(entity) if document_id in document_markers(r.get(field))]

    for kind, (refusal, case, document_id) in outcomes.items():
        if "refused_with" in case:
            assert refusal is not None, f"{kind}: pushed"
            assert document_id in refusal, refusal
            assert all(word in refusal.lower() for word in case["refused_with"]), (kind, refusal)
            # Nothing of a refused document reached Kaseya.
            assert marked("opportunities", "description", document_id) == marked("quotes", "name", document_id) == []
        else:
            assert refusal is None, (kind, refusal)
            (quote,) = marked("quotes", "name", document_id)
            assert sorted(line["name"] for line in quote["lineItems"] if line["quantity"]) == case["pushed_lines"]
    assert good is None


def test_zk_audit_csv_of_the_corpus_has_no_cell_a_spreadsheet_would_run_as_a_formula(corpus_run):
    out, err = io.StringIO(), io.StringIO()
    assert run_audit({"ZK_DUCKDB_PATH": str(corpus_run.harness.database)}, output_format="csv", out=out,
                     err=err) == 0
    cells = [cell for row in csv.reader(io.StringIO(out.getvalue())) for cell in row]
    assert any("=HYPERLINK" in cell for cell in cells)  # the corpus's formulas are in the ledger...
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "@") or re.match(r"-[^\d]", cell)]  # ...inert
