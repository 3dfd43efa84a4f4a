"""The run-level audit log as a person sees it: `dagster dev` over a Dagster instance holding a sync in which
Zomentum refused some client creates, and headless Chromium on the asset page of the clients load. The page
must show the failure table (every refused Kaseya account with its reason) and, in the created records, a
"Go to client" link to the Zomentum record. Screenshots go to test-artifacts/.

Chromium is Debian's (`/usr/bin/chromium`; `python3 dev.py test` installs it when missing), driven by Playwright."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml
from playwright.sync_api import Page, sync_playwright

from zk_pipelines.sandbox.kaseya import start_kaseya_sandbox
from zk_pipelines.sandbox.runtime import free_port
from zk_pipelines.sandbox.zomentum import start_zomentum_sandbox
from zk_pipelines_tests.pipeline_harness import PipelineHarness, hour_key, step_errors

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CLIENT_CREATE = "POST /v2/client/companies/"
STARTUP_SECONDS = 120.0
# `dagster dev` must stop on SIGINT: the child starts with SIGINT and SIGTERM at their defaults, whatever
# the test runner set, then becomes `python -m dagster dev ...` (exec keeps default dispositions).
RESET_SIGNALS_THEN_EXEC = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                           "signal.signal(signal.SIGTERM, signal.SIG_DFL); "
                           "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
# The UI greets a new browser on localhost with a newsletter dialog; a dismissal is remembered here.
DISMISS_COMMUNITY_DIALOG = "window.localStorage.setItem('communityNux', JSON.stringify('1'))"


def instance_home(home: Path) -> Path:
    """DAGSTER_HOME with the repository's dagster.yaml, except that no run is ever launched: the hourly
    schedule and the push sensor are on by default, and nothing but the test's own sync may write."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config.setdefault("concurrency", {})["runs"] = {"max_concurrent_runs": 0}
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@contextmanager
def dagster_dev(env: dict[str, str], cwd: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", RESET_SIGNALS_THEN_EXEC, "-m", "dagster", "dev", "-m", "zk_pipelines.definitions",
             "-h", "127.0.0.1", "-p", str(port)],
            env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield f"http://127.0.0.1:{port}", process
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # its own process group: `dagster dev` and its children
                process.wait(timeout=10)


def wait_until_serving(base_url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster dev exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{base_url}/server_info", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    pytest.fail(f"dagster dev did not answer within {STARTUP_SECONDS:.0f} s:\n{log.read_text()[-3000:]}")


def open_created_records(page: Page) -> None:
    row = page.locator("tr", has=page.locator("td", has_text=re.compile(r"^created_records$")))
    row.get_by_text("[Show Markdown]").click()


@pytest.mark.slow
def test_the_clients_load_page_shows_the_failure_table_and_links_to_created_clients(tmp_path):
    assert CHROMIUM.exists(), (f"{CHROMIUM} is missing: `apt-get install chromium` (python3 dev.py test does it when "
                               "run as root)")
    kaseya = start_kaseya_sandbox(scale="small_recent")
    zomentum = start_zomentum_sandbox(scale="small_recent")
    instance = None
    try:
        harness = PipelineHarness(kaseya, zomentum, tmp_path)
        home = instance_home(tmp_path / "dagster_home")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KASEYA_", "ZOMENTUM_", "ZK_", "DAGSTER_"))}
        env |= {"DAGSTER_HOME": str(home), "KASEYA_BASE_URL": kaseya.base_url, "KASEYA_USERNAME": kaseya.username,
                "KASEYA_PASSWORD": kaseya.password, "KASEYA_TENANT": kaseya.tenant,
                "ZOMENTUM_BASE_URL": zomentum.base_url, "ZOMENTUM_REFRESH_TOKEN": zomentum.refresh_token,
                "ZK_SETTINGS": str(harness.settings_path), "ZK_DUCKDB_PATH": str(harness.database),
                "ZK_PARTITIONS_START": hour_key(harness.partitions_start)}
        log = tmp_path / "dagster-dev.log"
        with dagster_dev(env, tmp_path, log) as (base_url, process):
            # The sync runs in this process, into the same instance, while the UI starts.
            instance = dg.DagsterInstance.from_config(str(home))
            harness.instance = instance
            zomentum.state.set_faults(seed=3, rules=[{"kind": "http_error", "route": CLIENT_CREATE, "rate": 0.3,
                                                      "statuses": [500]}])
            # The sandboxes' history is the last two days: 49 hourly partitions hold all of it.
            result = harness.backfill(first=harness.current_hour - timedelta(hours=49))
            assert result.success, step_errors(result)
            failed = [kid for (kid,) in harness.sql(
                "SELECT kaseya_id FROM audit.sync_events WHERE entity = 'clients' AND action = 'failed' "
                "AND run_id = ? ORDER BY kaseya_id", [result.run_id])]
            created_links = {link for (link,) in harness.sql(
                "SELECT link FROM audit.sync_events WHERE entity = 'clients' AND action = 'created' AND run_id = ?",
                [result.run_id])}
            assert 3 <= len(failed) <= 25  # all of them fit the table on the page
            assert len(failed) == zomentum.state.fault_counts()["http_error"][CLIENT_CREATE]
            wait_until_serving(base_url, process, log)

            ARTIFACTS.mkdir(exist_ok=True)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1920, "height": 2000})  # the table in one view
                    page.add_init_script(DISMISS_COMMUNITY_DIALOG)
                    page.goto(f"{base_url}/assets/zomentum/clients", wait_until="domcontentloaded")

                    failure_table = page.locator("table:has(> thead > tr > th:text-is('reason'))")
                    failure_table.wait_for(timeout=60_000)
                    rows = [[cell.strip() for cell in row.locator("td").all_inner_texts()]
                            for row in failure_table.locator("tbody > tr").all()]
                    assert [row[1] for row in rows] == failed
                    for row in rows:
                        assert row[0] == "clients"
                        assert f"client for Kaseya account {row[1]}:" in row[3]
                        assert "Zomentum" in row[3]
                    page.screenshot(path=str(ARTIFACTS / "audit-clients-load.png"), full_page=True)

                    open_created_records(page)
                    dialog = page.get_by_role("dialog")
                    go_to_client = dialog.get_by_role("link", name="Go to client")
                    go_to_client.first.wait_for(timeout=10_000)
                    hrefs = {link.get_attribute("href") for link in go_to_client.all()}
                    assert hrefs and hrefs <= created_links
                    assert dialog.get_by_role("link", name="Go to Kaseya account").count() == len(hrefs)
                    dialog.screenshot(path=str(ARTIFACTS / "audit-clients-created.png"))
                finally:
                    browser.close()
    finally:
        if instance is not None:
            instance.dispose()
        kaseya.stop()
        zomentum.stop()
