"""No password or token in what Dagster stores of a run, however the run starts: the resources bind the
tenant's environment variables by name (`EnvVar`), so a run's stored configuration and snapshot (what the
schedule, the sensor and the launchpad launch, and what `zk sync` and `zk demo` execute) hold the names only."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from zk_pipelines.config import TENANT_VARIABLES
from zk_pipelines.definitions import build_definitions
from zk_pipelines.defs.push import WON_DOCUMENT_SENSOR
from zk_pipelines_tests.secret_scan import files_holding, leaks

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "pa55-Word/with+signs=&é"
REFRESH_TOKEN = "refresh-T0ken/with+signs=="


@pytest.fixture
def tenant_environment(monkeypatch, tmp_path) -> dict[str, str]:
    values = {TENANT_VARIABLES.kaseya_base_url: "https://api.bms.kaseya.com", TENANT_VARIABLES.kaseya_username: "u",
              TENANT_VARIABLES.kaseya_password: PASSWORD, TENANT_VARIABLES.kaseya_tenant: "MSP",
              TENANT_VARIABLES.zomentum_base_url: "https://api.zomentum.com",
              TENANT_VARIABLES.zomentum_refresh_token: REFRESH_TOKEN,
              TENANT_VARIABLES.settings_path: str(REPO / "settings.example.yaml"),
              TENANT_VARIABLES.duckdb_path: str(tmp_path / "t.duckdb")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


SECRETS = (PASSWORD, REFRESH_TOKEN)


def test_what_the_schedule_sensor_and_launchpad_launch_holds_no_secret(tenant_environment):
    repository = build_definitions().get_repository_def()
    for job in repository.get_all_jobs():
        # The job's snapshot (its config schema, with each resource's configured values as defaults) is what
        # Dagster stores with every run of the job, whoever launches it.
        stored = dg.serialize_value(job.get_job_snapshot())
        assert leaks([stored], SECRETS) == [], job.name
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    schedule = repository.get_schedule_def("hourly_sync_schedule")
    with dg.build_schedule_context(scheduled_execution_time=hour + timedelta(hours=1, minutes=5)) as context:
        requests = schedule.evaluate_tick(context).run_requests or []
    assert requests and leaks([repr(r.run_config) + repr(r.tags) for r in requests], SECRETS) == []
    assert repository.get_sensor_def(WON_DOCUMENT_SENSOR).required_resource_keys == {"state", "zomentum"}


@pytest.mark.slow
def test_a_run_executed_by_zk_sync_leaves_no_secret_in_the_instance(sandboxes, tmp_path):
    """A real run whose credentials both APIs refuse (it fails at the login, the error quoting what it can): its
    Dagster instance (run storage, event log, compute logs) and DuckDB file hold no form of either secret."""
    kaseya, zomentum = sandboxes
    home = tmp_path / "dagster_home"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KASEYA_", "ZOMENTUM_", "ZK_"))}
    env |= {TENANT_VARIABLES.kaseya_base_url: kaseya.base_url, TENANT_VARIABLES.kaseya_username: "u",
            TENANT_VARIABLES.kaseya_password: PASSWORD, TENANT_VARIABLES.kaseya_tenant: "MSP",
            TENANT_VARIABLES.zomentum_base_url: zomentum.base_url,
            TENANT_VARIABLES.zomentum_refresh_token: REFRESH_TOKEN,
            TENANT_VARIABLES.settings_path: str(REPO / "settings.example.yaml"),
            TENANT_VARIABLES.duckdb_path: str(tmp_path / "t.duckdb"), "DAGSTER_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "zk_pipelines.cli", "sync"], env=env, capture_output=True,
                            text=True, timeout=180, cwd=REPO)
    assert result.returncode == 1 and "FAILED" in result.stdout, result.stdout + result.stderr
    assert "FAILED raw_kaseya_changes: " in result.stdout  # the extract phase's progress line names the step
    assert any(home.rglob("*.db"))
    assert files_holding(home, SECRETS) == []
    assert files_holding(tmp_path, SECRETS) == []
    assert leaks([result.stdout, result.stderr], SECRETS) == []
