"""The push of a Won Zomentum document to Kaseya, through the plain-Python orchestration, against both
sandboxes: what Kaseya holds afterwards, what the ledgers say, and that nothing is ever created twice."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from zk_pipelines.clients.http import WriteOutcomeUnknown
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import KaseyaCredentials, ZomentumCredentials
from zk_pipelines.domain.push_plan.dry_run import render_plan
from zk_pipelines.domain.push_plan.markers import document_markers
from zk_pipelines.push.failures import PushFailed
from zk_pipelines.push.orchestration import PushOutcome, PushSources, push_document
from zk_pipelines.sandbox.kaseya import KaseyaSandbox
from zk_pipelines.sandbox.zomentum import ZomentumSandbox
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.push_store import (
    HOLD_LAPSES_AFTER,
    DocumentPushRow,
    LedgerRequest,
    document_pushes,
    document_requests,
    ensure_push_tables,
    start_document,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "settings.example.yaml"
D = Decimal


# --------------------------------------------------------------------------------------------------------
# The harness: both sandboxes, a settings file, a DuckDB file (shared with test_push_job and test_push_cli)


def settings_file(directory: Path, *, mode: str = "zomentum_as_crm",
                  bundle_mode: str = "service_with_zero_priced_children", push_quotes: bool = True,
                  warehouse: str = "Main Warehouse", product_category: str = "Professional Services") -> Path:
    """The shipped example with the given choices."""
    text = EXAMPLE.read_text()
    for pattern, value in ((r"^mode: .*$", f"mode: {mode}"), (r"^bundle_mode: .*$", f"bundle_mode: {bundle_mode}"),
                           (r"^  push_quotes_on_won: .*$", f"  push_quotes_on_won: {str(push_quotes).lower()}"),
                           (r"^  warehouse: .*$", f"  warehouse: {warehouse}"),
                           (r"^  product_category: .*$", f"  product_category: {product_category}")):
        text, count = re.subn(pattern, value, text, count=1, flags=re.MULTILINE)
        assert count == 1, pattern
    path = directory / f"settings-{mode}-{bundle_mode}-{push_quotes}-{warehouse}-{product_category}.yaml"
    path.write_text(text)
    return path


@dataclass
class PushTenant:
    kaseya: KaseyaSandbox
    zomentum: ZomentumSandbox
    kaseya_credentials: KaseyaCredentials
    zomentum_credentials: ZomentumCredentials
    directory: Path

    @property
    def database(self) -> Path:
        return self.directory / "tenant.duckdb"

    def zomentum_client(self) -> ZomentumClient:
        return ZomentumClient(self.zomentum_credentials)

    def kaseya_client(self) -> KaseyaClient:
        return KaseyaClient(self.kaseya_credentials)

    def sources(self, kaseya: KaseyaClient | None = None, **settings: Any) -> PushSources:
        """Fresh clients, as a new process would have."""
        return PushSources(kaseya or self.kaseya_client(), self.zomentum_client(),
                           settings_file(self.directory, **settings), self.database)

    def push(self, document_id: str, overrides: Sequence[str] = (), *, dry_run: bool = False, run_id: str = "run-1",
             kaseya: KaseyaClient | None = None, later: timedelta = timedelta(0), **settings: Any) -> PushOutcome:
        """`later`: the push happens that long from now (a dead run's hold on the document lapses)."""
        return push_document(self.sources(kaseya, **settings), document_id, overrides, dry_run=dry_run,
                             run_id=run_id, clock=lambda: datetime.now(UTC) + later)

    # --- Kaseya as the sandbox holds it ---

    def kaseya_records(self, entity: str) -> list[dict]:
        return self.kaseya.state.records(entity)

    def marked(self, entity: str, document_id: str, field: str) -> list[dict]:
        """Kaseya records of `entity` carrying the document's marker in `field`."""
        return [r for r in self.kaseya_records(entity) if document_id in document_markers(r.get(field))]

    def kaseya_writes(self) -> list[dict]:
        return [r for r in self.kaseya.state.requests()
                if r["method"] != "GET" and not r["path"].lower().startswith("/v2/security/")]

    # --- Zomentum as the sandbox holds it ---

    def zomentum_records(self, resource: str) -> list[dict]:
        return self.zomentum.state.records(resource)

    def item(self, name: str) -> dict:
        return next(i for i in self.zomentum_records("items") if i["name"] == name)

    def client(self, *, in_kaseya: bool) -> dict:
        """A Zomentum client with contacts that Kaseya has an account of the same name for (or not)."""
        accounts = {a["accountName"] for a in self.kaseya_records("accounts")}
        users = {u["client_company_id"] for u in self.zomentum_records("client/users")}
        return next(c for c in self.zomentum_records("client/companies")
                    if (c["name"] in accounts) == in_kaseya and c["id"] in users)

    def stage_id(self, pipeline: str, stage: str) -> str:
        found = next(p for p in self.zomentum_records("pipelines") if p["name"] == pipeline)
        return next(s["id"] for s in found["stages"] if s["name"] == stage)

    def opportunity(self, client: dict, **fields: Any) -> dict:
        contact = next(u for u in self.zomentum_records("client/users") if u["client_company_id"] == client["id"])
        body = {"name": f"Deal for {client['name']}", "client_company_id": client["id"],
                "primary_client_user_id": contact["id"], "linked_client_user_ids": [contact["id"]],
                "opportunity_pipeline_id": next(p["id"] for p in self.zomentum_records("pipelines")
                                                if p["name"] == "Sales Pipeline"),
                "opportunity_pipeline_stage_id": self.stage_id("Sales Pipeline", "Won"),
                "estimated_value": 1234.5, "estimated_close_date": "2026-09-30T00:00:00.000Z",
                "close_probability": 100, "client_po_number": "PO-777", **fields}
        return self.zomentum_client().create("opportunities", body)

    def document(self, lines: list[dict], *, client: dict | None = None, status: str = "won",
                 opportunity: dict | None = None, name: str = "Proposal for the new office") -> str:
        """A document as a user builds it, then marked `status` (Won: through the API, as a user does)."""
        client = client or self.client(in_kaseya=True)
        opportunity = opportunity or self.opportunity(client)
        document = self.zomentum.state.create_document(
            client["id"], lines, opportunity_id=opportunity["id"],
            client_user_id=opportunity["primary_client_user_id"], name=name, status="sent")
        if status != "sent":
            self.zomentum_client().update("documents", document["id"], {"status": status})
        return document["id"]

    def line(self, name: str, quantity: int = 1, **extra: Any) -> dict:
        return {"item_id": self.item(name)["id"], "quantity": quantity, **extra}

    def sql(self, query: str, *params: Any) -> list[tuple]:
        with duckdb.connect(str(self.database), read_only=True) as connection:
            return connection.execute(query, list(params)).fetchall()

    def ledger_requests(self, document_id: str) -> list[LedgerRequest]:
        with duckdb.connect(str(self.database), read_only=True) as connection:
            return document_requests(connection, document_id)

    def ledger_pushes(self, document_id: str) -> list[DocumentPushRow]:
        with duckdb.connect(str(self.database), read_only=True) as connection:
            return document_pushes(connection, document_id)


@pytest.fixture
def tenant(kaseya, zomentum, kaseya_credentials, zomentum_credentials, tmp_path) -> PushTenant:
    return PushTenant(kaseya, zomentum, kaseya_credentials, zomentum_credentials, tmp_path)


def active_lines(quote: dict) -> list[dict]:
    return [line for line in quote["lineItems"] if line["quantity"]]


def line_table(quote: dict) -> list[tuple[str, float, float, float, float]]:
    return sorted((line["name"], line["quantity"], line["unitPrice"], line["discount"], line["total"])
                  for line in active_lines(quote))


def total(quote: dict) -> Decimal:
    return sum((D(str(line["total"])) for line in quote["lineItems"]), D(0))


# --------------------------------------------------------------------------------------------------------
# A Won document, pushed


def test_a_won_document_becomes_one_opportunity_and_one_quote_linked_back_to_zomentum(tenant):
    document_id = tenant.document([tenant.line("Rack Shelf 1U", 2), tenant.line("Network Assessment", discount=50.0)])
    document = next(d for d in tenant.zomentum_records("documents") if d["id"] == document_id)

    outcome = tenant.push(document_id)

    (opportunity,) = tenant.marked("opportunities", document_id, "description")
    zomentum_deal = next(o for o in tenant.zomentum_records("opportunities") if o["id"] == document["opportunity_id"])
    account = next(a for a in tenant.kaseya_records("accounts") if a["id"] == opportunity["accountId"])
    assert (opportunity["subject"], opportunity["status"], opportunity["amount"], opportunity["customerPO"],
            opportunity["closeDate"][:10], account["accountName"]) == (
        zomentum_deal["name"], "Closed Won", 1234.5, "PO-777", "2026-09-30", tenant.client(in_kaseya=True)["name"])
    (quote,) = tenant.marked("quotes", document_id, "name")
    assert (quote["opportunityId"], quote["statusName"]) == (opportunity["id"], "Accepted")
    assert line_table(quote) == [("Network Assessment", 1.0, 750.0, 50.0, 700.0),
                                 ("Rack Shelf 1U", 2.0, 49.0, 0.0, 98.0)]
    assert total(quote) == D(str(document["total"])) == D("798")

    link = f"{tenant.kaseya.base_url}/crm/opportunities/{opportunity['id']}"
    assert outcome.opportunity_link == link
    field_id = next(f["id"] for f in tenant.zomentum_records("custom/fields")
                    if f["display_name"] == "Kaseya opportunity")
    deal_after = next(o for o in tenant.zomentum_records("opportunities") if o["id"] == zomentum_deal["id"])
    assert {"id": field_id, "values": [link]} in deal_after["custom_fields"]

    # The id map pairs what the push found and created, so the next pull sees them as linked.
    pairs = set(tenant.sql("SELECT entity, kaseya_id, zomentum_id FROM zomentum.id_map"))
    assert ("opportunities", str(opportunity["id"]), zomentum_deal["id"]) in pairs
    assert ("clients", str(account["id"]), tenant.client(in_kaseya=True)["id"]) in pairs
    (product,) = [p for p in tenant.kaseya_records("products") if p["productNumber"] == "ZO-HW-0001"]
    assert ("items", str(product["productIndexId"]), tenant.item("Rack Shelf 1U")["id"]) in pairs  # not services
    assert {entity for entity, _, _ in pairs} == {"clients", "client_users", "opportunities", "items"}

    # The push ledger: the version pushed, its Kaseya ids, and every write recorded as sent with its body.
    (row,) = tenant.ledger_pushes(document_id)
    assert (row.document_version, row.state, row.ids.opportunity_id, row.ids.quote_id, row.writes_sent) == (
        document["current_revision_id"], "succeeded", opportunity["id"], quote["id"], len(outcome.sent))
    requests = tenant.ledger_requests(document_id)
    kaseya_rows = [r for r in requests if r.system == "kaseya"]
    assert all(r.state == "sent" for r in requests)
    assert [(r.method, r.path, r.body) for r in kaseya_rows] == [
        (w["method"], w["path"], w["body"]) for w in tenant.kaseya_writes()]
    assert [r.endpoint for r in requests if r.system == "zomentum"] == ["zomentum_update_opportunity"]

    # The audit log has every outcome, with a link to the Kaseya record.
    events = tenant.sql("SELECT entity, action, kaseya_id, link FROM audit.sync_events WHERE direction = 'push'")
    assert ("opportunities", "created", str(opportunity["id"]), link) in events
    assert ("quotes", "created", str(quote["id"]), f"{tenant.kaseya.base_url}/crm/quotes/{quote['id']}") in events
    assert sum(1 for e in events if e[:2] == ("quote_lines", "created")) == 2


def test_a_second_push_of_the_same_version_sends_nothing(tenant):
    document_id = tenant.document([tenant.line("Rack Shelf 1U", 2)])
    tenant.push(document_id)
    writes = len(tenant.kaseya_writes())

    again = tenant.push(document_id, run_id="run-2")

    assert again.sent == ()
    assert len(tenant.kaseya_writes()) == writes
    assert len(tenant.marked("opportunities", document_id, "description")) == 1
    assert tenant.sql("SELECT attempts, state FROM push.documents") == [(2, "succeeded")]


# --------------------------------------------------------------------------------------------------------
# Bundles: each bundle mode, a bundle price that does not divide evenly, individual-level pricing


@pytest.mark.parametrize(("bundle_mode", "onboarding_lines"), [
    ("single_service_item", [("New Hire Onboarding Bundle", 1.0, 100.0, 0.0, 100.0)]),
    ("service_with_zero_priced_children", [
        ("New Hire Onboarding Bundle", 1.0, 100.0, 0.0, 100.0), ("Onboarding Hour", 1.0, 0.0, 0.0, 0.0),
        ("Password Manager Seat", 1.0, 0.0, 0.0, 0.0), ("Security Awareness Training", 1.0, 0.0, 0.0, 0.0)]),
    ("children_with_bundle_price_split", [  # 100.00 over 3 children: the remainder cent to the first
        ("Onboarding Hour", 1.0, 33.33, 0.0, 33.33), ("Password Manager Seat", 1.0, 33.34, 0.0, 33.34),
        ("Security Awareness Training", 1.0, 33.33, 0.0, 33.33)]),
])
def test_bundles_follow_the_bundle_mode_and_individual_pricing_pushes_the_children(tenant, bundle_mode,
                                                                                    onboarding_lines):
    document_id = tenant.document([tenant.line("New Hire Onboarding Bundle"), tenant.line("Secure Workstation Bundle")])
    document = next(d for d in tenant.zomentum_records("documents") if d["id"] == document_id)

    tenant.push(document_id, bundle_mode=bundle_mode)

    (quote,) = tenant.marked("quotes", document_id, "name")
    # The individual-level bundle: its children at their own prices (2 hours per workstation), no bundle line.
    workstation = [("E-mail Signature Tool", 1.0, 3.0, 0.0, 3.0), ("Label Printer", 1.0, 129.0, 0.0, 129.0),
                   ("Onboarding Hour", 2.0, 95.0, 0.0, 190.0)]
    assert line_table(quote) == sorted(onboarding_lines + workstation)
    assert total(quote) == D(str(document["total"])) == D("422")


# --------------------------------------------------------------------------------------------------------
# Catalogue items Kaseya lacks


def test_items_missing_in_kaseya_are_created_with_the_settings_defaults(tenant):
    document_id = tenant.document([tenant.line("Rack Shelf 1U", 3), tenant.line("Dark Web Monitoring")])
    assert not [p for p in tenant.kaseya_records("products") if p["productNumber"] == "ZO-HW-0001"]

    tenant.push(document_id, warehouse="West Warehouse", product_category="Hardware")

    (product,) = [p for p in tenant.kaseya_records("products") if p["productNumber"] == "ZO-HW-0001"]
    assert (product["productName"], product["category"], product["productType"],
            [w["warehouse"] for w in product["warehouses"]], product["defaultCost"]) == (
        "Rack Shelf 1U", "Hardware", "Hardware", ["West Warehouse"], 30.0)
    assert product["pricingLevels"][0]["price"] == 49.0
    (service,) = [s for s in tenant.kaseya_records("services") if s["name"] == "Dark Web Monitoring"]
    assert (service["category"], service["unitPrice"], service["unitCost"]) == ("Hardware", 150.0, 60.0)

    # A second document with the same items finds them: nothing is created twice.
    second = tenant.document([tenant.line("Rack Shelf 1U"), tenant.line("Dark Web Monitoring")], name="Another one")
    tenant.push(second, warehouse="West Warehouse", product_category="Hardware")
    assert len([p for p in tenant.kaseya_records("products") if p["productNumber"] == "ZO-HW-0001"]) == 1
    assert len([s for s in tenant.kaseya_records("services") if s["name"] == "Dark Web Monitoring"]) == 1


# --------------------------------------------------------------------------------------------------------
# A re-push after the document changed


def test_a_re_push_after_the_document_changed_updates_rather_than_duplicates(tenant):
    document_id = tenant.document([tenant.line("Rack Shelf 1U", 2), tenant.line("Network Assessment")])
    first = tenant.push(document_id)
    (opportunity,) = tenant.marked("opportunities", document_id, "description")
    (quote,) = tenant.marked("quotes", document_id, "name")

    # The document gets a new revision (Won still) and its opportunity a new value.
    tenant.zomentum.state.revise_document(document_id, [tenant.line("Rack Shelf 1U", 5),
                                                        tenant.line("Password Manager Seat", 10)])
    deal_id = next(d for d in tenant.zomentum_records("documents") if d["id"] == document_id)["opportunity_id"]
    tenant.zomentum_client().update("opportunities", deal_id, {"estimated_value": 285.0})
    tenant.kaseya.state.clear_requests()

    second = tenant.push(document_id, run_id="run-2")

    assert second.document_version != first.document_version
    assert [r["id"] for r in tenant.marked("opportunities", document_id, "description")] == [opportunity["id"]]
    (quote_after,) = tenant.marked("quotes", document_id, "name")
    assert quote_after["id"] == quote["id"]
    assert tenant.kaseya.state.record("opportunities", opportunity["id"])["amount"] == 285.0
    assert line_table(quote_after) == [("Password Manager Seat", 10.0, 4.0, 0.0, 40.0),
                                       ("Rack Shelf 1U", 5.0, 49.0, 0.0, 245.0)]
    assert total(quote_after) == D("285")  # the lines no longer in the document are retired at 0
    sent = {(w["method"], w["route"]) for w in tenant.kaseya_writes()}
    assert ("POST", "/v2/crm/opportunities") not in sent and ("POST", "/v2/crm/quotes") not in sent
    assert ("PUT", "/v2/crm/opportunities/{id}") in sent


# --------------------------------------------------------------------------------------------------------
# Exactly once: a crash between Kaseya's answer and the ledger write


class ProcessDied(BaseException):
    """Stands for the process dying: nothing after it runs, not even `except Exception` handlers."""


class DiesAfterCreating(KaseyaClient):
    """A Kaseya client whose process dies right after Kaseya answered the first `endpoint` write."""

    def __init__(self, credentials: KaseyaCredentials, endpoint: str) -> None:
        super().__init__(credentials)
        self.endpoint = endpoint

    def call(self, name: str, **kwargs: Any) -> tuple[Any, int | None]:
        answer = super().call(name, **kwargs)
        if name == self.endpoint:
            raise ProcessDied(f"killed after {name} returned {answer[0].get('id')}")
        return answer


@pytest.mark.parametrize(("endpoint", "record_key"), [
    ("create_opportunity", "opportunity"),
    ("create_quote", "quote"),
    ("add_quote_line_item", "line"),
])
def test_a_crash_after_a_kaseya_create_leaves_exactly_one_record_after_the_re_run(tenant, endpoint, record_key):
    document_id = tenant.document([tenant.line("Rack Shelf 1U", 2), tenant.line("Network Assessment")])
    with pytest.raises(ProcessDied):
        tenant.push(document_id, kaseya=DiesAfterCreating(tenant.kaseya_credentials, endpoint))
    (in_doubt,) = [r for r in tenant.ledger_requests(document_id)
                   if r.state == "intent"]
    assert in_doubt.endpoint == endpoint
    # The dead run still holds the document: a re-run right away waits, sending nothing...
    with pytest.raises(PushFailed, match="run run-1 has been pushing this document"):
        tenant.push(document_id, run_id="run-2")

    # ... until the hold lapses.
    outcome = tenant.push(document_id, run_id="run-2", later=HOLD_LAPSES_AFTER)

    assert len(tenant.marked("opportunities", document_id, "description")) == 1
    (quote,) = tenant.marked("quotes", document_id, "name")
    keys = [line["extDistReference"] for line in quote["lineItems"]]
    assert len(keys) == len(set(keys)) == 2
    assert total(quote) == D("848")
    assert len(outcome.recovered) == 1 and "adopted" in outcome.recovered[0]
    settled = {r.request_id: r for r in tenant.ledger_requests(document_id)}[in_doubt.request_id]
    assert settled.state == "adopted" and settled.record_key.startswith(record_key)
    same = json.dumps(in_doubt.body, sort_keys=True)
    assert not [r for r in outcome.sent if r.endpoint == endpoint and json.dumps(r.body, sort_keys=True) == same]
    if record_key != "line":
        entity = {"opportunity": "opportunities", "quote": "quotes"}[record_key]
        (reason,) = tenant.sql("SELECT reason FROM audit.sync_events WHERE entity = ? AND action = 'matched'", entity)
        assert "adopted" in reason[0]


def test_a_quote_found_by_its_marker_is_read_whole_and_adopted_without_a_rewrite(tenant):
    """The quotes summary lacks the opportunity, account, location and sales representative: a quote found there
    by its marker is compared as Kaseya holds it whole, so an unchanged quote is adopted, not written again."""
    document_id = tenant.document([tenant.line("Rack Shelf 1U")])
    with pytest.raises(ProcessDied):
        tenant.push(document_id, kaseya=DiesAfterCreating(tenant.kaseya_credentials, "create_quote"))

    outcome = tenant.push(document_id, run_id="run-2", later=HOLD_LAPSES_AFTER)

    assert len(tenant.marked("quotes", document_id, "name")) == 1
    assert [r.endpoint for r in outcome.sent if r.endpoint.endswith("_quote")] == []


def test_a_create_whose_answer_was_lost_fails_the_push_and_the_re_run_adopts_the_record(tenant):
    class LosesTheAnswer(KaseyaClient):
        def call(self, name: str, **kwargs: Any) -> tuple[Any, int | None]:
            answer = super().call(name, **kwargs)
            if name == "create_quote":
                raise WriteOutcomeUnknown("Kaseya", "POST /v2/crm/quotes", "the answer was lost (ReadTimeout); "
                                                                           "the write may have happened")
            return answer

    document_id = tenant.document([tenant.line("Rack Shelf 1U")])
    with pytest.raises(PushFailed, match="the answer was lost .*the next attempt looks for the record"):
        tenant.push(document_id, kaseya=LosesTheAnswer(tenant.kaseya_credentials))
    assert [r.state for r in tenant.ledger_requests(document_id)
            if r.endpoint == "create_quote"] == ["unknown"]

    tenant.push(document_id, run_id="run-2")

    assert len(tenant.marked("quotes", document_id, "name")) == 1
    assert [r.state for r in tenant.ledger_requests(document_id)
            if r.endpoint == "create_quote"] == ["adopted"]


def test_an_interrupted_push_whose_create_never_reached_kaseya_creates_it_on_the_re_run(tenant):
    class DiesBeforeSending(KaseyaClient):
        def call(self, name: str, **kwargs: Any) -> tuple[Any, int | None]:
            if name == "create_opportunity":
                raise ProcessDied("killed before the create was sent")
            return super().call(name, **kwargs)

    document_id = tenant.document([tenant.line("Rack Shelf 1U")])
    with pytest.raises(ProcessDied):
        tenant.push(document_id, kaseya=DiesBeforeSending(tenant.kaseya_credentials))

    outcome = tenant.push(document_id, run_id="run-2", later=HOLD_LAPSES_AFTER)  # the dead run's hold lapsed

    assert len(tenant.marked("opportunities", document_id, "description")) == 1
    assert "was never created" in outcome.recovered[0]


# --------------------------------------------------------------------------------------------------------
def test_a_document_another_run_is_pushing_is_not_pushed_twice_at_once(tenant):
    """The sensor's run and a person's `zk push` of one document at once: the second waits, sending nothing."""
    document_id = tenant.document([tenant.line("Rack Shelf 1U")])
    version = next(d for d in tenant.zomentum_records("documents") if d["id"] == document_id)["current_revision_id"]
    with connect(tenant.database) as connection:
        ensure_push_tables(connection)
        start_document(connection, document_id, version, run_id="sensor-run", fingerprint="f",
                       now=datetime.now(UTC))
    tenant.kaseya.state.clear_requests()

    with pytest.raises(PushFailed, match="run sensor-run has been pushing this document since .*sent nothing: "
                                         "push again once it has finished") as raised:
        tenant.push(document_id, run_id="zk-push")

    assert not raised.value.retryable  # a retry within seconds would find the same run holding it
    assert tenant.kaseya_writes() == []
    assert tenant.sql("SELECT run_id, state, attempts FROM push.documents") == [("sensor-run", "running", 1)]


# Failures: Kaseya's refusal, a settings name Kaseya lacks, a read-back mismatch; each re-runnable


def test_a_write_kaseya_refuses_fails_the_push_with_its_message_and_a_re_run_succeeds(tenant):
    document_id = tenant.document([tenant.line("Rack Shelf 1U")])

    with pytest.raises(PushFailed) as raised:
        tenant.push(document_id, ["status_id=12345"])

    message = str(raised.value)
    assert message.startswith(f"push of Zomentum document {document_id} failed: Kaseya refused POST "
                              "/v2/crm/opportunities (create the opportunity)")
    assert "StatusId 12345 is not an opportunity status" in message
    assert not tenant.marked("opportunities", document_id, "description")
    assert tenant.sql("SELECT state, error FROM push.documents") == [("failed", raised.value.message)]
    deal_id = next(d for d in tenant.zomentum_records("documents") if d["id"] == document_id)["opportunity_id"]
    assert tenant.sql("SELECT entity, action, zomentum_id, reason FROM audit.sync_events") == [
        ("opportunities", "failed", deal_id, message)]

    tenant.push(document_id, run_id="run-2")  # the cause fixed (no bad override): the same version goes through

    assert len(tenant.marked("opportunities", document_id, "description")) == 1
    assert tenant.sql("SELECT state, attempts FROM push.documents") == [("succeeded", 2)]


def test_a_settings_name_kaseya_lacks_fails_the_push_before_anything_is_sent(tenant):
    document_id = tenant.document([tenant.line("Rack Shelf 1U")])

    with pytest.raises(PushFailed, match="no Kaseya warehouse is named 'Central Warehouse'"):
        tenant.push(document_id, warehouse="Central Warehouse")

    assert tenant.kaseya_writes() == []
    ((entity, action, reason),) = tenant.sql("SELECT entity, action, reason FROM audit.sync_events")
    assert (entity, action) == ("documents", "failed") and document_id in reason


def test_a_contact_kaseya_cannot_take_fails_the_push_naming_it_and_the_ledger_says_so(tenant):
    client = tenant.client(in_kaseya=False)
    cher = tenant.zomentum_client().create("client/users", {
        "name": {"first": "Cher", "last": None}, "email": "cher@example.com", "client_company_id": client["id"]})
    deal = tenant.opportunity(client, primary_client_user_id=cher["id"], linked_client_user_ids=[cher["id"]])
    document_id = tenant.document([tenant.line("Rack Shelf 1U")], client=client, opportunity=deal)

    with pytest.raises(PushFailed, match=f"Zomentum contact {cher['id']} .*needs a first and a last name"):
        tenant.push(document_id)

    assert tenant.kaseya_writes() == []
    ((state, error),) = tenant.sql("SELECT state, error FROM push.documents")
    assert state == "failed" and "needs a first and a last name" in error


def test_without_push_quotes_on_won_only_the_opportunity_is_pushed(tenant):
    document_id = tenant.document([tenant.line("Rack Shelf 1U", 2)])

    outcome = tenant.push(document_id, ["quote.name=Ignored"], push_quotes=False)

    assert [request.endpoint for request in outcome.sent] == ["create_opportunity"]
    assert tenant.marked("quotes", document_id, "name") == []
    assert outcome.plan.notes == ("the quote is not pushed: push_quotes_on_won is off in the settings",
                                  "ignored: quote.name (the quote is not pushed)")
    assert outcome.ids.quote_id is None


def test_line_items_that_do_not_add_up_to_the_document_total_are_never_pushed(tenant):
    class LosesALine(ZomentumClient):  # a line-item CSV cut short at a row boundary still parses
        def document_line_items(self, document_id: str, revision_id: str):
            return super().document_line_items(document_id, revision_id)[:-1]

    document_id = tenant.document([tenant.line("Rack Shelf 1U", 2), tenant.line("Network Assessment")])
    sources = tenant.sources()
    sources = PushSources(sources.kaseya, LosesALine(tenant.zomentum_credentials), sources.settings_path,
                          sources.database)

    with pytest.raises(PushFailed, match="the line items read from Zomentum add up to 98.00, but the document's "
                                         "total is 848.00"):
        push_document(sources, document_id, run_id="run-1")
    assert tenant.kaseya_writes() == []


def test_a_document_without_an_opportunity_is_refused_with_what_to_do(tenant):
    client = tenant.client(in_kaseya=True)
    document = tenant.zomentum.state.create_document(client["id"], [tenant.line("Rack Shelf 1U")], status="won")

    with pytest.raises(PushFailed, match="not linked to a Zomentum opportunity; link it to the opportunity"):
        tenant.push(document["id"])
    assert tenant.kaseya_writes() == []


def test_kaseya_not_holding_what_was_sent_fails_the_push_naming_the_field(tenant):
    class AmountDrifts(KaseyaClient):
        def opportunity(self, opportunity_id: int):
            read = super().opportunity(opportunity_id)
            read["amount"] = 1.0
            return read

    document_id = tenant.document([tenant.line("Rack Shelf 1U")])
    with pytest.raises(PushFailed, match=r"Kaseya does not hold what was sent: opportunity \d+: Amount: sent "
                                         r"1234.5, Kaseya has 1.0"):
        tenant.push(document_id, kaseya=AmountDrifts(tenant.kaseya_credentials))
    assert tenant.sql("SELECT state FROM push.documents") == [("failed",)]


# --------------------------------------------------------------------------------------------------------
# The dry run


def test_the_dry_run_sends_nothing_and_shows_exactly_what_the_push_then_sends(tenant):
    client = tenant.client(in_kaseya=False)  # a new account, contact, products and services: placeholders
    document_id = tenant.document([tenant.line("New Hire Onboarding Bundle"), tenant.line("Rack Shelf 1U", 2),
                                   tenant.line("Dark Web Monitoring", setup_price=250.0)], client=client)
    tenant.kaseya.state.clear_requests()

    dry = tenant.push(document_id, ["quote.name=Office move, phase 1"], dry_run=True,
                      bundle_mode="children_with_bundle_price_split")

    assert {r["method"] for r in tenant.kaseya.state.requests()} == {"GET", "POST"}
    assert tenant.kaseya_writes() == []  # the only POST was the login
    assert not tenant.database.exists()
    text = render_plan(dry.plan)
    assert "dry run: nothing is sent" in text
    assert "a new account with its main location" in text
    for request in dry.plan.requests:
        assert f"{request.method} {request.path}" in text

    real = tenant.push(document_id, ["quote.name=Office move, phase 1"],
                       bundle_mode="children_with_bundle_price_split")

    expected = [(r.method, r.path, json.loads(json.dumps(r.body))) for r in
                (request.with_ids(real.created) for request in dry.plan.requests)]
    assert [(w["method"], w["path"], w["body"]) for w in tenant.kaseya_writes()] == expected
    assert [r.endpoint for r in dry.plan.requests][:2] == ["create_account", "create_contact"]
    (quote,) = tenant.marked("quotes", document_id, "name")
    assert quote["name"] == f"Office move, phase 1 [zk_pipelines document {document_id}]"
