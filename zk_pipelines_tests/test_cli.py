"""`zk sandbox`, `zk check` and `zk settings` as a person runs them: real processes, real servers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from zk_pipelines.sandbox.kaseya.records import PASSWORD as KASEYA_PASSWORD
from zk_pipelines.sandbox.runtime import free_port
from zk_pipelines.sandbox.zomentum.state import REFRESH_TOKEN as ZOMENTUM_REFRESH_TOKEN
from zk_pipelines_tests.secret_scan import files_holding, leaks
from zk_pipelines_tests.zk_sandbox_process import zk_sandbox

REPO = Path(__file__).resolve().parents[1]
SETTINGS_DATA = Path(__file__).parent / "data" / "settings"


def zk(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zk_pipelines.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def running_sandbox() -> Iterator[dict[str, str]]:
    """`zk sandbox` in its own process; yields the environment it printed."""
    ports = [str(free_port()), str(free_port())]
    with zk_sandbox("--scale", "small", "--kaseya-port", ports[0], "--zomentum-port", ports[1]) as exported:
        yield exported


def base_env(exported: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KASEYA_", "ZOMENTUM_", "ZK_"))}
    return {**env, **exported, **extra}


def test_zk_sandbox_prints_every_variable_bound_to_localhost(running_sandbox):
    assert set(running_sandbox) == {"KASEYA_BASE_URL", "KASEYA_USERNAME", "KASEYA_PASSWORD", "KASEYA_TENANT",
                                    "ZOMENTUM_BASE_URL", "ZOMENTUM_REFRESH_TOKEN"}
    assert running_sandbox["KASEYA_BASE_URL"].startswith("http://127.0.0.1:")
    assert running_sandbox["ZOMENTUM_BASE_URL"].startswith("http://127.0.0.1:")
    assert running_sandbox["KASEYA_TENANT"] == "Sandbox MSP Ltd"


def test_zk_check_reports_every_endpoint_ok(running_sandbox):
    result = zk("check", env=base_env(running_sandbox))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith("kaseya") and "GET /v2/crm/accounts/summary" in line for line in lines)
    assert any(line.startswith("zomentum") for line in lines)
    assert "FAILED" not in result.stdout
    assert re.search(r"^\d+ ok, 0 failed$", lines[-1])


def test_zk_check_with_a_wrong_password_says_so_in_one_line(running_sandbox):
    result = zk("check", env=base_env(running_sandbox, KASEYA_PASSWORD="wrong-password-xyz"))
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 1
    assert "rejected the login" in failed[0] and "KASEYA_PASSWORD" in failed[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert "wrong-password-xyz" not in result.stdout + result.stderr


def test_zk_check_without_configuration_is_one_clear_line(running_sandbox):
    env = base_env({})
    result = zk("check", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == "zk check: environment variable KASEYA_BASE_URL is not set"


def test_zk_settings_check_passes_for_the_shipped_example(running_sandbox):
    result = zk("settings", "check", env=base_env(running_sandbox, ZK_SETTINGS=str(REPO / "settings.example.yaml")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every name resolves" in result.stdout


@pytest.mark.parametrize(("file", "expected"), [
    ("unknown_status.yaml", "no Kaseya opportunity status is named 'Negotiating' (closest: 'Negotiation'"),
    ("stage_mapped_twice.yaml", "stage 'Sales Pipeline / Won' is mapped to Kaseya status 'Closed Won'"),
    ("misspelt_warehouse.yaml", "no Kaseya warehouse is named 'Main Warehose' (closest: 'Main Warehouse'"),
])
def test_zk_settings_check_fails_usefully(running_sandbox, file, expected):
    result = zk("settings", "check", env=base_env(running_sandbox, ZK_SETTINGS=str(SETTINGS_DATA / file)))
    assert result.returncode == 1
    assert expected in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_zk_settings_show_prints_resolved_ids_and_the_product_type_table(running_sandbox):
    result = zk("settings", "show", env=base_env(running_sandbox, ZK_SETTINGS=str(REPO / "settings.example.yaml")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Closed Won" in result.stdout and "Main Warehouse" in result.stdout
    assert re.search(r"Main Warehouse\D+\d{4,}", result.stdout)  # the Kaseya id next to the name
    assert "hardware" in result.stdout and "inventory" in result.stdout.lower()


@pytest.mark.slow
def test_zk_demo_runs_the_sync_end_to_end_into_a_real_instance(tmp_path):
    env = {**base_env({}), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    result = zk("demo", "--scale", "small_recent", "--workdir", str(tmp_path / "demo"), env=env, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "initial sync: the tenant's first run" in out and ": success in" in out
    assert "live hour" in out and "Where to look:" in out
    # What a person wants to read: a line per phase of each run with its counts, no warning, no Dagster debug
    # line; Dagster's events are in the file the demo names.
    assert len(out.splitlines()) < 60, out
    assert result.stderr == ""
    for phase in ("extract", "settings", "staging", "mapping", "load", "audit"):
        assert len(re.findall(rf"^  {phase} +\d+/\d+ steps", out, re.MULTILINE)) == 2, phase
    assert re.search(r"^  load .* created", out, re.MULTILINE)
    event_log = tmp_path / "demo" / "dagster-events.log"
    assert f"Event log:   {event_log}" in out
    assert "STEP_SUCCESS" in event_log.read_text() and "RUN_SUCCESS" in event_log.read_text()
    assert (tmp_path / "dagster_home" / "dagster.yaml").exists()
    import duckdb

    with duckdb.connect(str(tmp_path / "demo" / "demo.duckdb"), read_only=True) as connection:
        runs = connection.execute("SELECT count(DISTINCT run_id) FROM audit.sync_events").fetchone()[0]
        created = connection.execute("SELECT count(*) FROM audit.sync_events WHERE action = 'created'").fetchone()[0]
    assert runs == 2 and created > 100
    # The live hour's Kaseya edits were pulled by the live run (the demo's settings are Zomentum as CRM: the
    # new account and contact are created, the linked account and opportunity are seen and left as Zomentum has
    # them), and the demo says so for each.
    edits = (("account", "website changed"), ("opportunity", "status"), ("account", "created"), ("contact", "created"))
    account, opportunity, new_account, contact = (re.search(rf"{what} (\d+): {change} -> ", out).group(1)
                                                  for what, change in edits)
    assert re.search(rf"account {account}: website changed -> clients: unchanged \(linked: zomentum_as_crm", out)
    assert re.search(rf"account {new_account}: created -> clients: created", out)
    with duckdb.connect(str(tmp_path / "demo" / "demo.duckdb"), read_only=True) as connection:
        live = dict(((entity, kaseya_id), action) for entity, kaseya_id, action in connection.execute(
            """SELECT entity, kaseya_id, action FROM audit.sync_events WHERE run_id = (
                   SELECT run_id FROM audit.sync_events ORDER BY event_id DESC LIMIT 1)""").fetchall())
    assert live[("client_users", contact)] == live[("clients", new_account)] == "created"
    assert live[("clients", account)] == live[("opportunities", opportunity)] == "unchanged"
    assert any((tmp_path / "dagster_home").rglob("runs.db")) or any((tmp_path / "dagster_home").rglob("*.db"))
    # The demo configures its tenant as a deployment does (environment variables bound by name): its runs'
    # stored configuration and snapshots hold no form of the sandboxes' password or refresh token.
    secrets = (KASEYA_PASSWORD, ZOMENTUM_REFRESH_TOKEN)
    assert files_holding(tmp_path / "dagster_home", secrets) == []
    assert leaks([result.stdout, result.stderr], secrets) == []


@pytest.mark.slow
def test_zk_sync_onboards_the_tenant_with_its_whole_history_then_syncs_a_range_as_one_run(running_sandbox, tmp_path):
    import duckdb

    onboarding = (datetime.now(UTC) - timedelta(hours=3)).strftime("%Y-%m-%d-%H:00")
    env = base_env(running_sandbox, ZK_SETTINGS=str(REPO / "settings.example.yaml"),
                   ZK_DUCKDB_PATH=str(tmp_path / "tenant.duckdb"), DAGSTER_HOME=str(tmp_path / "home"),
                   ZK_PARTITIONS_START=onboarding)

    first = zk("sync", env=env, timeout=300)

    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert re.search(r"run \S+: success in \d+ s", first.stdout) and "clients" in first.stdout
    with duckdb.connect(str(tmp_path / "tenant.duckdb"), read_only=True) as connection:
        clients = connection.execute("SELECT count(*) FROM zomentum.id_map WHERE entity = 'clients'").fetchone()[0]
    assert clients >= 30  # scale small: 90 days of history, all of it older than the first partition

    hours = [(datetime.now(UTC) - timedelta(hours=n)).strftime("%Y-%m-%d-%H:00") for n in (3, 2)]
    ranged = zk("sync", "--from", hours[0], "--to", hours[1], env=env, timeout=300)
    assert ranged.returncode == 0, ranged.stdout[-3000:] + ranged.stderr[-3000:]
    assert re.search(r"run \S+: success", ranged.stdout) and "created" not in ranged.stdout  # nothing new

    too_early = zk("sync", "--hour", "2020-01-01-00:00", env=env)
    assert too_early.returncode == 1 and "before the first hourly partition" in too_early.stderr
    malformed = zk("sync", "--hour", "yesterday", env=env)
    assert malformed.returncode == 1 and "is not an hour as YYYY-MM-DD-HH:00" in malformed.stderr
    assert "Traceback" not in too_early.stderr + malformed.stderr
