"""Dagster's production instance (deploy/dagster.yaml) on a real PostgreSQL server: it loads, `zk sync`
records its runs there, the queue's per-tenant limits hold, and the schedule and sensor evaluate on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from zk_pipelines.config import TENANT_VARIABLES
from zk_pipelines.definitions import build_definitions
from zk_pipelines.defs.jobs import HOURLY_JOB, PULL_TAG, PUSH_TAG
from zk_pipelines.sandbox.launcher import Sandboxes

REPO = Path(__file__).resolve().parents[1]


def dagster_url(postgres_url: str) -> str:
    return postgres_url.replace("postgresql://", "postgresql+psycopg2://", 1)


@pytest.fixture
def production_home(tmp_path, postgres_url, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_url(postgres_url))
    return home


def test_the_production_instance_keeps_runs_in_postgres_behind_a_queue_with_per_tenant_limits(production_home,
                                                                                              postgres_url,
                                                                                              monkeypatch):
    for name in TENANT_VARIABLES.names():  # bound by name; nothing is called
        monkeypatch.setenv(name, "https://unused.example" if name.endswith("_URL") else "unused")
    instance = dg.DagsterInstance.from_config(str(production_home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        limits = {limit["key"]: limit["limit"] for limit in queue.tag_concurrency_limits}
        assert limits == {PULL_TAG: 1, PUSH_TAG: 4}

        definitions = build_definitions()
        job = definitions.resolve_job_def(HOURLY_JOB)
        assert job.tags[PULL_TAG] == "default"
        run = instance.create_run_for_job(job, run_config={}, tags={**job.tags, "dagster/partition": "2026-12-01-00:00"})
        assert instance.get_run_by_id(run.run_id).tags[PULL_TAG] == "default"
    finally:
        instance.dispose()
    connection = psycopg2.connect(postgres_url)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone()[0] == 1
    connection.close()


@pytest.mark.slow
def test_zk_sync_records_its_run_in_the_postgres_instance_it_finds_and_keeps_its_dagster_yaml(
        sandboxes, production_home, postgres_url, tmp_path):
    kaseya, zomentum = sandboxes
    kaseya.state.reset(seed=7, scale="small_recent")
    zomentum.state.reset(seed=7, scale="small_recent")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KASEYA_", "ZOMENTUM_", "ZK_"))}
    env |= {**Sandboxes(kaseya, zomentum).environment(), "DAGSTER_HOME": str(production_home),
            TENANT_VARIABLES.settings_path: str(REPO / "settings.example.yaml"),
            TENANT_VARIABLES.duckdb_path: str(tmp_path / "tenant.duckdb")}
    result = subprocess.run([sys.executable, "-m", "zk_pipelines.cli", "sync"], env=env, capture_output=True,
                            text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (production_home / "dagster.yaml").read_text() == (REPO / "deploy" / "dagster.yaml").read_text()
    assert not any(production_home.rglob("*.db"))  # nothing of the instance in SQLite files
    connection = psycopg2.connect(postgres_url)
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM runs GROUP BY status")
        assert dict(cursor.fetchall()) == {"SUCCESS": 1}
        cursor.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        assert cursor.fetchone()[0] > 10
    connection.close()
