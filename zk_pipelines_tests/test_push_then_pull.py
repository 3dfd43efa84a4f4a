"""Push then pull, end to end through both sandboxes (Kaseya as CRM): the Kaseya products a push creates for
a document's items carry the items' own type, prices and part number, and the next hourly pull leaves every
Zomentum item byte-identical, for every product type and every bundle mode."""

from __future__ import annotations

from datetime import timedelta

import pytest

from zk_pipelines.defs.push import PUSH_JOB, push_run_config
from zk_pipelines_tests.pipeline_harness import PipelineHarness, reset_sandboxes, step_errors, write_settings

# Zomentum-only catalogue items of the sandbox's seed: every product type, with and without a part number,
# a bundle priced at bundle level (its software child, "Password Manager Seat", is on no line of its own, so
# only the bundle creates its product) and one priced per child.
ITEMS = ("Rack Shelf 1U", "Label Printer", "E-mail Signature Tool", "Security Awareness Training", "Onboarding Hour",
         "New Hire Onboarding Bundle", "Secure Workstation Bundle")
PRODUCT_TYPE = {"hardware": "Hardware", "software": "Software"}


def push(harness: PipelineHarness, document_id: str):
    job = harness.definitions.resolve_job_def(PUSH_JOB)
    return job.execute_in_process(run_config=push_run_config(document_id), instance=harness.instance,
                                  raise_on_error=False)


def won_document(harness: PipelineHarness) -> str:
    zomentum = harness.zomentum.state
    clients = harness.id_map("clients")
    client_id = next(iter(clients.values()))
    items = {i["name"]: i for i in zomentum.records("items")}
    pipeline = next(p for p in zomentum.records("pipelines") if p["name"] == "Sales Pipeline")
    opportunity = zomentum.create_record("opportunities", {
        "name": "Round trip", "client_company_id": client_id, "opportunity_pipeline_id": pipeline["id"],
        "opportunity_pipeline_stage_id": next(s["id"] for s in pipeline["stages"] if s["name"] == "Won")})
    document = zomentum.create_document(client_id, [{"item_id": items[name]["id"], "quantity": 2} for name in ITEMS],
                                        opportunity_id=opportunity["id"], name="Round trip", status="won")
    return document["id"]


@pytest.mark.slow
@pytest.mark.parametrize("bundle_mode", ["single_service_item", "service_with_zero_priced_children",
                                         "children_with_bundle_price_split"])
def test_a_push_then_a_pull_leaves_every_zomentum_item_byte_identical(sandboxes, tmp_path, bundle_mode):
    kaseya, zomentum = reset_sandboxes(sandboxes)
    harness = PipelineHarness(kaseya, zomentum, tmp_path)
    write_settings(harness.settings_path, mode="kaseya_as_crm", bundle_mode=bundle_mode)
    synced = harness.backfill()
    assert synced.success, step_errors(synced)
    products_before = {p["productIndexId"] for p in harness.kaseya_records("products")}
    items_before = {i["id"]: i for i in zomentum.state.records("items")}

    pushed = push(harness, won_document(harness))
    assert pushed.success, step_errors(pushed)

    created = [p for p in harness.kaseya_records("products") if p["productIndexId"] not in products_before]
    by_item = {i["name"]: i for i in items_before.values()}
    products = {p["productName"]: p for p in created}
    # Hardware and software become inventory products; a bundle-level bundle's children only where the mode
    # pushes them.
    expected = {"Rack Shelf 1U", "Label Printer", "E-mail Signature Tool"}
    assert set(products) == expected | ({"Password Manager Seat"} if bundle_mode != "single_service_item" else set())
    for name, product in products.items():
        item = by_item[name]
        pricing = item["pricing"][0]
        assert product["productType"] == PRODUCT_TYPE[item["type"]], name
        assert product["productNumber"] == (item["manufacturer_part_number"] or f"ZOM-{item['id']}"), name
        retail = next(level for level in product["pricingLevels"] if level["isDefault"])
        assert retail["price"] == pytest.approx(pricing["sell_price"]), name
        assert product["defaultCost"] == pytest.approx(pricing["cost_price"]), name

    zomentum.state.clear_requests()
    harness.an_hour_passes()
    pulled = harness.run_hour(harness.current_hour - timedelta(hours=1))

    assert pulled.success, step_errors(pulled)
    assert [w for w in harness.zomentum_writes() if w["path"].startswith("/v2/items")] == []
    assert {i["id"]: i for i in zomentum.state.records("items")} == items_before
    assert set(harness.id_map("items")) >= {str(p["productIndexId"]) for p in created}
