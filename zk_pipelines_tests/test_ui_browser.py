"""The operator's view as a person sees it: `dagster dev` over a Dagster instance holding a ranged sync that bad
contacts blocked and in which Zomentum refused some client creates, and headless Chromium driving the UI: the
check's table of rejects, the per-partition metadata of the ranged run, the clients' load with its failures and
links that open the records in a new tab, the run re-executed from failure after the fix (green), the asset graph
whose labels keep their layer, the push in the lineage. Screenshots go to test-artifacts/ (docs/audit.md shows them).

Chromium is Debian's (`/usr/bin/chromium`; `python3 dev.py test` installs it when missing), driven by Playwright."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml
from playwright.sync_api import sync_playwright

from zk_pipelines.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from zk_pipelines.sandbox.kaseya import start_kaseya_sandbox
from zk_pipelines.sandbox.runtime import free_port
from zk_pipelines.sandbox.zomentum import start_zomentum_sandbox
from zk_pipelines_tests.pipeline_harness import PipelineHarness, hour_key

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
    """DAGSTER_HOME with the repository's dagster.yaml, except that only the runs the test launches from the UI
    run: the hourly schedule and the push sensor are on by default, and their runs wait in the queue forever."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config.setdefault("concurrency", {})["runs"] = {"max_concurrent_runs": 1, "tag_concurrency_limits": [
        {"key": "dagster/schedule_name", "limit": 0}, {"key": "dagster/sensor_name", "limit": 0}]}
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


def wait_for_run(instance: dg.DagsterInstance, wanted: Callable[[dg.DagsterRun], bool], timeout: float = 180.0
                 ) -> dg.DagsterRun:
    """The newest run `wanted` accepts, once it has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [run for run in instance.get_runs() if wanted(run)]
        if runs and runs[0].is_finished:
            return runs[0]
        time.sleep(1.0)
    pytest.fail(f"no run finished within {timeout:.0f} s")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_operator_repairs_a_blocked_hour_and_reads_the_run_in_the_dagster_ui(tmp_path):
    """The operator's view, in the real UI: a ranged run blocked by bad contacts (the check lists them); the
    contacts fixed in Kaseya, the run re-executed from failure on its page, green, the fixes in Zomentum; the
    per-partition metadata of the ranged run; the audit links of the clients' load opening the records in a new
    tab; the push in the lineage."""
    assert CHROMIUM.exists(), (f"{CHROMIUM} is missing: `apt-get install chromium` (python3 dev.py test does it when "
                               "run as root)")
    kaseya = start_kaseya_sandbox(scale="small_recent")
    zomentum = start_zomentum_sandbox(scale="small_recent")
    instance = None
    try:
        # The block: more than the limit's share (20%, at least 5) of the range's contacts have bad e-mails.
        harness = PipelineHarness(kaseya, zomentum, tmp_path)
        home = instance_home(tmp_path / "dagster_home")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KASEYA_", "ZOMENTUM_", "ZK_", "DAGSTER_"))}
        env |= {"DAGSTER_HOME": str(home), "KASEYA_BASE_URL": kaseya.base_url, "KASEYA_USERNAME": kaseya.username,
                "KASEYA_PASSWORD": kaseya.password, "KASEYA_TENANT": kaseya.tenant,
                "ZOMENTUM_BASE_URL": zomentum.base_url, "ZOMENTUM_REFRESH_TOKEN": zomentum.refresh_token,
                "ZK_SETTINGS": str(harness.settings_path), "ZK_DUCKDB_PATH": str(harness.database),
                "ZK_PARTITIONS_START": hour_key(harness.partitions_start)}
        log = tmp_path / "dagster-dev.log"
        instance = dg.DagsterInstance.from_config(str(home))  # its storage made before `dagster dev` opens it
        harness.instance = instance
        with dagster_dev(env, tmp_path, log) as (base_url, process):
            contacts = harness.kaseya_records("contacts")
            bad = [c["id"] for c in contacts[: len(contacts) // 3]]
            for contact_id in bad:
                kaseya.state.update_record("contacts", contact_id, {"emailAddress": f"broken-{contact_id}@"})
                harness.set_modified_on("contacts", contact_id, harness.current_hour - timedelta(hours=5))
            zomentum.state.set_faults(seed=3, rules=[{"kind": "http_error", "route": CLIENT_CREATE, "rate": 0.3,
                                                      "statuses": [500]}])
            wait_until_serving(base_url, process, log)
            # The blocked run, launched into the instance as the UI launches a backfill of the range (one run), so
            # that the UI can re-execute it; the daemon of `dagster dev` runs it.
            first, last = harness.current_hour - timedelta(hours=49), harness.current_hour - timedelta(hours=2)
            launched = subprocess.run(
                [sys.executable, "-m", "dagster", "job", "launch", "-j", "hourly_sync_job", "-m",
                 "zk_pipelines.definitions", "--tags", json.dumps({RANGE_START_TAG: hour_key(first),
                                                                   RANGE_END_TAG: hour_key(last)})],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert launched.returncode == 0, launched.stderr[-3000:]
            blocked = wait_for_run(instance, lambda run: run.job_name == "hourly_sync_job")
            assert blocked.status == dg.DagsterRunStatus.FAILURE, log.read_text()[-3000:]
            refused = zomentum.state.fault_counts()["http_error"][CLIENT_CREATE]
            assert refused >= 3
            zomentum.state.set_faults(seed=3, rules=[])

            ARTIFACTS.mkdir(exist_ok=True)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1600, "height": 1400})
                    page.add_init_script(DISMISS_COMMUNITY_DIALOG)

                    # The check's table of the rejects that count, with the limit.
                    page.goto(f"{base_url}/assets/stg_kaseya_contacts?view=checks", wait_until="domcontentloaded")
                    page.get_by_text("reject_share_within_limit").first.click()
                    rejects = page.locator("table:has(> thead > tr > th:text-is('reason'))").first
                    rejects.wait_for(timeout=60_000)
                    ids = {row.locator("td").first.inner_text().strip()
                           for row in rejects.locator("tbody > tr").all()}
                    assert ids == {str(i) for i in bad}
                    page.get_by_text("the limit: more than 20%").first.wait_for(timeout=10_000)
                    page.screenshot(path=str(ARTIFACTS / "audit-check-rejects.png"), full_page=True)

                    # The per-partition metadata of the ranged run: each hour its own counts.
                    page.goto(f"{base_url}/assets/raw_kaseya_changes?view=events", wait_until="domcontentloaded")
                    page.get_by_text("contacts_modified_in_hour").first.wait_for(timeout=60_000)
                    page.get_by_text("accounts_rows", exact=True).first.wait_for(timeout=10_000)  # the last hour
                    page.screenshot(path=str(ARTIFACTS / "audit-partition-metadata.png"), full_page=True)
                    earlier = hour_key(last - timedelta(hours=1))
                    page.get_by_text(earlier, exact=True).first.click()
                    page.get_by_text(f"Partition {earlier} materialized").first.wait_for(timeout=10_000)
                    page.get_by_text("contacts_modified_in_hour").first.wait_for(timeout=10_000)
                    assert page.get_by_text("accounts_rows", exact=True).count() == 0  # the run's figures: once

                    # The audit links of the clients' load open the records in a new tab.
                    page.goto(f"{base_url}/assets/zomentum_clients", wait_until="domcontentloaded")
                    link = page.locator(f"a[target=_blank][href^='{zomentum.base_url}/clients/']").first
                    link.wait_for(timeout=60_000)
                    # The failures table: every refused create with its reason, naming Zomentum's 500.
                    failures = page.locator("table:has(> thead > tr > th:text-is('reason'))").first
                    reasons = [row.locator("td").nth(3).inner_text() for row in failures.locator("tbody > tr").all()]
                    assert len(reasons) == min(refused, 25) and all("HTTP 500" in reason for reason in reasons)
                    page.screenshot(path=str(ARTIFACTS / "audit-clients-load.png"), full_page=True)
                    with page.context.expect_page() as opened:
                        link.click()
                    record = opened.value
                    record.wait_for_load_state()
                    assert record.title().startswith("Zomentum client ")
                    record.close()

                    # The fix in Kaseya, then the run re-executed from its page: green.
                    for contact_id in bad:
                        kaseya.state.update_record("contacts", contact_id,
                                                   {"emailAddress": f"fixed-{contact_id}@example.com"})
                    page.goto(f"{base_url}/runs/{blocked.run_id}", wait_until="domcontentloaded")
                    # Re-execute > From failure (the primary button's menu): the failed steps and those they
                    # stopped; the extraction, which succeeded, does not list again.
                    primary = page.get_by_role("button", name="Re-execute all (*)")
                    primary.wait_for(timeout=60_000)
                    primary.locator("xpath=following::button[1]").click()
                    page.get_by_text("From failure", exact=True).click()
                    rerun = wait_for_run(instance, lambda run: run.parent_run_id == blocked.run_id)
                    assert rerun.status == dg.DagsterRunStatus.SUCCESS, log.read_text()[-3000:]
                    assert rerun.tags.get("dagster/is_resume_retry") == "true"  # from failure, not all steps
                    page.goto(f"{base_url}/runs/{rerun.run_id}", wait_until="domcontentloaded")
                    page.get_by_text("Success").first.wait_for(timeout=60_000)
                    page.screenshot(path=str(ARTIFACTS / "audit-repaired-run.png"), full_page=True)
                    # The fixes were read by id (their ModifiedOn is past the range), nothing is rejected any
                    # more, and the fixed contacts whose account is in Zomentum are there, with their new e-mail.
                    fixed = harness.sql("SELECT count(*) FROM raw.kaseya_contacts WHERE run_id = ? AND "
                                        "CAST(payload AS VARCHAR) LIKE '%fixed-%'", [rerun.run_id])
                    assert fixed == [(len(bad),)]
                    assert harness.sql("SELECT count(*) FROM audit.rejects WHERE run_id = ? AND check_name NOT LIKE "
                                       "'known_%'", [rerun.run_id]) == [(0,)]
                    users = harness.zomentum_records("client/users")
                    synced = {kaseya_id: users[zomentum_id]["email"]
                              for kaseya_id, zomentum_id in harness.id_map("client_users").items()
                              if int(kaseya_id) in bad}
                    assert synced and all(email == f"fixed-{kaseya_id}@example.com"
                                          for kaseya_id, email in synced.items())

                    # The whole asset graph: its groups, collapsed as the graph opens, in the order data flows;
                    # expanded (Alt+E), each label begins with its layer (long ones are cut in the middle).
                    page.goto(f"{base_url}/asset-groups", wait_until="domcontentloaded")
                    page.get_by_text("zomentum_sync", exact=True).last.wait_for(timeout=60_000)
                    page.wait_for_timeout(3_000)  # the groups' statuses, for the screenshot
                    page.screenshot(path=str(ARTIFACTS / "audit-asset-groups.png"), full_page=True)
                    page.keyboard.press("Alt+e")
                    for label in ("raw_kaseya_changes", "settings_resolved", "zomentum_clients", "audit_sync_events"):
                        page.get_by_text(label, exact=True).first.wait_for(timeout=30_000)
                    page.get_by_text(re.compile(r"^stg_kas.*contacts$")).first.wait_for(timeout=10_000)
                    page.get_by_text(re.compile(r"^mapped_z.*clients$")).first.wait_for(timeout=10_000)
                    page.screenshot(path=str(ARTIFACTS / "audit-asset-graph.png"), full_page=True)

                    # The push in the lineage.
                    page.goto(f"{base_url}/assets/push_documents?view=lineage", wait_until="domcontentloaded")
                    page.get_by_text("opportunities").first.wait_for(timeout=60_000)
                    page.screenshot(path=str(ARTIFACTS / "audit-push-lineage.png"), full_page=True)
                finally:
                    browser.close()
    finally:
        if instance is not None:
            instance.dispose()
        kaseya.stop()
        zomentum.stop()
