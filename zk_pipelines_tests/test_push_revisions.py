"""A document revision re-pushed, end to end through both sandboxes: Zomentum gives every line a new id in
every revision, and the push matches the Kaseya quote's lines by what they are (item, position, bundle), so
one quantity changed, one line added and one removed are exactly one update, one add and one retirement."""

from __future__ import annotations

from zk_pipelines.domain.push_plan.quote_lines import RETIRED_LINE_NOTE
from zk_pipelines_tests.test_push_document import PushTenant, active_lines

LINE_ADD = "/v2/crm/quotes/{quotationId}/lineItems/{itemTypeId}/{distributerTypeId}"
LINE_UPDATE = "/v2/crm/quotes/{quotationId}/lineItems/{lineItemId}"


def test_a_revision_updates_adds_and_retires_exactly_the_lines_that_changed(
        kaseya, zomentum, kaseya_credentials, zomentum_credentials, tmp_path):
    tenant = PushTenant(kaseya, zomentum, kaseya_credentials, zomentum_credentials, tmp_path)
    document_id = tenant.document([
        tenant.line("Rack Shelf 1U", 2), tenant.line("Network Assessment"), tenant.line("Dark Web Monitoring"),
        tenant.line("New Hire Onboarding Bundle"),  # a bundle service line and its three zero-priced children
        tenant.line("Rack Shelf 1U", 1)])  # the same item twice: told apart by position
    tenant.push(document_id)
    (quote,) = tenant.marked("quotes", document_id, "name")
    lines_before = {line["id"]: line for line in quote["lineItems"]}
    assert len(lines_before) == 8

    tenant.zomentum.state.revise_document(document_id, [
        tenant.line("Rack Shelf 1U", 3), tenant.line("Dark Web Monitoring"), tenant.line("New Hire Onboarding Bundle"),
        tenant.line("Rack Shelf 1U", 1), tenant.line("Label Printer")])
    tenant.kaseya.state.clear_requests()
    tenant.push(document_id, run_id="run-2")

    writes = [w for w in tenant.kaseya_writes() if w["route"] in (LINE_ADD, LINE_UPDATE)]
    (quote_after,) = tenant.marked("quotes", document_id, "name")
    lines_after = {line["id"]: line for line in quote_after["lineItems"]}
    added = [w for w in writes if w["route"] == LINE_ADD]
    updated = [w for w in writes if w["route"] == LINE_UPDATE]
    assert [w["body"]["Name"] for w in added] == ["Label Printer"]
    assert sorted((w["body"]["Name"], w["body"]["Quantity"]) for w in updated) == [
        ("Network Assessment", 0.0), ("Rack Shelf 1U", 3.0)]
    assert len(lines_after) == len(lines_before) + 1  # no dead lines but the one removed
    retired = [line for line in lines_after.values() if not line["quantity"]]
    assert [line["name"] for line in retired] == ["Network Assessment"]
    assert retired[0]["description"].startswith(RETIRED_LINE_NOTE)
    assert sorted((line["name"], line["quantity"]) for line in active_lines(quote_after)) == sorted(
        [("Rack Shelf 1U", 3.0), ("Rack Shelf 1U", 1.0), ("Dark Web Monitoring", 1.0), ("Label Printer", 1.0),
         *[(lines_before[i]["name"], lines_before[i]["quantity"]) for i in lines_before
           if lines_before[i]["name"] not in ("Rack Shelf 1U", "Network Assessment", "Dark Web Monitoring")]])
    unchanged = [i for i, line in lines_before.items() if line["name"] != "Network Assessment"
                 and (line["name"], line["quantity"]) != ("Rack Shelf 1U", 2.0)]
    assert len(unchanged) == 6
    for i in unchanged:
        assert lines_after[i] == lines_before[i], (lines_before[i], lines_after[i])
