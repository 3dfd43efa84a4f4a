"""The real hourly job against both sandboxes: every Kaseya step of a run shares one client, so a run logs in
once, and each step's `kaseya_calls` is its own share of the run's calls."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from zk_pipelines.domain.entities import KASEYA_SOURCES
from zk_pipelines.sandbox.kaseya import start_kaseya_sandbox
from zk_pipelines.sandbox.zomentum import start_zomentum_sandbox
from zk_pipelines_tests.pipeline_harness import PipelineHarness, step_errors

AUTH_ROUTES = ("/v2/security/authenticate", "/v2/security/refreshtoken")


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    kaseya = start_kaseya_sandbox(scale="small_recent")
    zomentum = start_zomentum_sandbox(scale="small_recent")
    yield PipelineHarness(kaseya, zomentum, tmp_path_factory.mktemp("run_client"))
    kaseya.stop()
    zomentum.stop()


def kaseya_step_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    """Each asset's materialization metadata that reports Kaseya calls (once per asset: a run over several
    partitions repeats the same metadata for each partition)."""
    found: dict[str, dict] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        metadata = {name: value.value for name, value in materialization.metadata.items()}
        if "kaseya_calls" in metadata:
            found["/".join(materialization.asset_key.path)] = metadata
    return found


def check_one_login_and_calls_add_up(harness: PipelineHarness, result: dg.ExecuteInProcessResult) -> dict:
    assert result.success, step_errors(result)
    log = harness.kaseya.state.requests()
    logins = [e for e in log if e["route"] == AUTH_ROUTES[0]]
    data_calls = [e for e in log if e["route"] not in AUTH_ROUTES]
    steps = kaseya_step_metadata(result)
    assert len(logins) == 1
    assert {name for name in steps if name.startswith("raw/")} == {f"raw/{s.raw_table}" for s in KASEYA_SOURCES}
    assert sum(m["kaseya_calls"] for m in steps.values()) == len(data_calls)
    assert sum(m["kaseya_logins"] for m in steps.values()) == 1
    return steps


def test_a_backfill_run_and_an_hourly_run_each_log_in_once(harness):
    harness.kaseya.state.clear_requests()
    backfill = harness.backfill()
    steps = check_one_login_and_calls_add_up(harness, backfill)
    # The products step reports its own calls (the product scans and the pricing reads), not the run's.
    products = steps["raw/kaseya_products"]
    pricing = [e for e in harness.kaseya.state.requests() if e["route"].startswith("/v2/inventory/products/{")]
    assert products["pricing_calls"] == len(pricing) > 0
    assert products["kaseya_calls"] > len(pricing)

    harness.kaseya.state.clear_requests()
    hourly = harness.run_hour(harness.current_hour - timedelta(hours=1))
    check_one_login_and_calls_add_up(harness, hourly)
