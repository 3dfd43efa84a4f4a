"""Prices follow a product's change in the same hour, end to end through both sandboxes: a product whose
listing changed in Kaseya has its pricing read again by that hour's run, however recent its last pricing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from zk_pipelines_tests.pipeline_harness import PipelineHarness, reset_sandboxes, step_errors


@pytest.mark.slow
def test_a_product_edited_in_kaseya_brings_its_new_price_to_zomentum_in_the_same_hour(sandboxes, tmp_path):
    kaseya, zomentum = reset_sandboxes(sandboxes)
    harness = PipelineHarness(kaseya, zomentum, tmp_path)
    first = harness.backfill()
    assert first.success, step_errors(first)
    item_ids = harness.id_map("items")
    product = next(p for p in harness.kaseya_records("products")
                   if not zomentum.state.get_record("items", item_ids[str(p["productIndexId"])])["name"]
                   .endswith("(catalogue)"))  # an item the pull created, priced from Kaseya
    kaseya.state.update_record("products", product["productIndexId"], {
        "ProductDescription": "Now with a three-year warranty", "UnitPrice": 1234.56})
    harness.an_hour_passes()

    result = harness.run_hour(harness.current_hour - timedelta(hours=1))

    assert result.success, step_errors(result)
    item = zomentum.state.get_record("items", item_ids[str(product["productIndexId"])])
    assert item["description"] == "Now with a three-year warranty"
    retail = next(p for p in item["pricing"] if p["name"] == "Retail")
    assert retail["sell_price"] == pytest.approx(1234.56)
    refreshed = harness.sql("SELECT count(*) FROM raw.kaseya_product_pricing WHERE run_id = ?", [result.run_id])
    assert refreshed == [(1,)]  # only the product that changed: the others' prices are not due
