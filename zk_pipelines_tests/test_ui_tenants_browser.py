"""The Dagster UI of a deployment serving 200 registry tenants: `dagster dev` over the registry
`zk sandbox --tenants 200` writes, headless Chromium on the asset page of the clients' load. The page must show
the asset's partitions, one per tenant (the first and the last tenant among them), and the asset catalogue its
25 assets, not 25 per tenant. The time the page took is printed (docs/performance.md), never asserted.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import dagster as dg
import pytest
from playwright.sync_api import sync_playwright

from zk_pipelines.sandbox.launcher import running_sandboxes
from zk_pipelines.sandbox.registry import write_registry
from zk_pipelines_tests.test_ui_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DISMISS_COMMUNITY_DIALOG,
    dagster_dev,
    instance_home,
    wait_until_serving,
)

pytestmark = pytest.mark.browser
TENANTS = 200


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_asset_page_of_a_200_tenant_deployment_shows_one_partition_per_tenant(tmp_path):
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `apt-get install chromium`"
    with running_sandboxes(seed=7, scale="small", tenants=TENANTS) as boxes:
        registry = tmp_path / "tenants.yaml"
        secrets = write_registry(registry, boxes.tenant_environments(), datetime.now(UTC))
        home = instance_home(tmp_path / "dagster_home")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KASEYA_", "ZOMENTUM_", "ZK_", "DAGSTER_"))}
        env |= {"DAGSTER_HOME": str(home), "ZK_TENANTS": str(registry), **secrets}
        dg.DagsterInstance.from_config(str(home)).dispose()  # its storage made before `dagster dev` opens it
        log = tmp_path / "dagster-dev.log"
        with dagster_dev(env, tmp_path, log) as (base_url, process):
            wait_until_serving(base_url, process, log)
            ARTIFACTS.mkdir(exist_ok=True)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1600, "height": 1400})
                    page.add_init_script(DISMISS_COMMUNITY_DIALOG)
                    started = time.monotonic()
                    page.goto(f"{base_url}/assets/zomentum_clients?view=partitions", wait_until="domcontentloaded")
                    page.get_by_text("sandbox_01", exact=True).first.wait_for(timeout=120_000)
                    shown = time.monotonic() - started
                    page.screenshot(path=str(ARTIFACTS / "tenants-200-partitions.png"), full_page=True)
                    page.get_by_text(f"{TENANTS} partitions").first.wait_for(timeout=30_000)
                    started = time.monotonic()
                    page.goto(f"{base_url}/assets", wait_until="domcontentloaded")
                    page.get_by_text("kaseya_changes").first.wait_for(timeout=120_000)
                    catalogue = time.monotonic() - started
                    page.screenshot(path=str(ARTIFACTS / "tenants-200-catalogue.png"), full_page=True)
                    print(f"asset page with {TENANTS} tenant partitions: {shown:.1f} s; catalogue: {catalogue:.1f} s")
                finally:
                    browser.close()
