"""Dagster's production instance (deploy/dagster.yaml) on a real PostgreSQL server: it loads, `zk sync`
records its runs there, the queue's per-tenant limits hold, and the schedule and sensor evaluate on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from zk_pipelines.config import TENANT_VARIABLES
from zk_pipelines.definitions import build_definitions
from zk_pipelines.defs.jobs import HOURLY_JOB, PULL_TAG, PUSH_TAG
from zk_pipelines.defs.local_runs import QUIET, hour_key, last_complete_hour
from zk_pipelines.defs.push import DOCUMENT_TAG, PUSH_JOB, WON_DOCUMENT_SENSOR
from zk_pipelines.defs.resources import tenant_resources
from zk_pipelines.sandbox.launcher import Sandboxes
from zk_pipelines.storage.state_store import ID_MAP, PUSH_DOCUMENTS, PostgresStateStore
from zk_pipelines_tests.pipeline_harness import reset_sandboxes, tenant_environment
from zk_pipelines_tests.test_push_document import PushTenant, settings_file

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
        partition = {"dagster/partition": "2026-12-01-00:00"}
        run = instance.create_run_for_job(job, run_config={}, tags={**job.tags, **partition})
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
    kaseya, zomentum = reset_sandboxes(sandboxes)
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


@pytest.fixture
def tenant(kaseya, zomentum, kaseya_credentials, zomentum_credentials, tmp_path) -> PushTenant:
    return PushTenant(kaseya, zomentum, kaseya_credentials, zomentum_credentials, tmp_path)


def runs_in_postgres(postgres_url: str) -> list[tuple[str, str, dict]]:
    """(job, status, tags) of every run the production instance's PostgreSQL holds."""
    connection = psycopg2.connect(postgres_url)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pipeline_name, status, run_body FROM runs ORDER BY create_timestamp")
        found = [(job, status, json.loads(body)["tags"]) for job, status, body in cursor.fetchall()]
    connection.close()
    return found


@pytest.mark.slow
def test_the_schedule_and_the_won_document_sensor_evaluate_on_the_production_instance_and_their_runs_go_through(
        tenant, production_home, postgres_url):
    # Production as deploy/dagster.yaml has it: Dagster's instance and the tenant's state both on PostgreSQL,
    # Zomentum as the CRM (the sensor pushes Won documents).
    variables = tenant_environment(tenant.kaseya, tenant.zomentum, settings_file(tenant.directory), tenant.database,
                                   state_url=postgres_url, state_schema="zk_tenant")
    last_hour = last_complete_hour(datetime.now(UTC))
    definitions = build_definitions(partitions_start=hour_key(last_hour - timedelta(hours=3)), variables=variables)
    instance = dg.DagsterInstance.from_config(str(production_home))
    try:
        # The schedule's tick (as the daemon evaluates it, at :05) asks for the hour that just ended; its run
        # goes through on the instance: the tenant's first run, its whole history.
        schedule = definitions.resolve_schedule_def("hourly_sync_schedule")
        with dg.build_schedule_context(instance=instance,
                                       scheduled_execution_time=last_hour + timedelta(hours=1, minutes=5)) as context:
            (hourly,) = schedule.evaluate_tick(context).run_requests
        assert hourly.partition_key == hour_key(last_hour)
        pulled = definitions.resolve_job_def(HOURLY_JOB).execute_in_process(
            instance=instance, partition_key=hourly.partition_key, tags=hourly.tags, run_config=QUIET,
            raise_on_error=False)
        assert pulled.success

        # The sensor: its first tick sets the cursor, a document then marked Won is asked for once, and the run
        # it asks for pushes it through the same instance.
        sensor = definitions.resolve_sensor_def(WON_DOCUMENT_SENSOR)
        resources = tenant_resources(variables)  # as the code location binds them (EnvVars)
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            first = sensor(context)
        assert first.run_requests == [] and first.cursor
        won = tenant.document([tenant.line("Rack Shelf 1U")], status="won", name="Won on the production instance")
        with dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources) as context:
            (push,) = sensor(context).run_requests
        assert push.tags[DOCUMENT_TAG] == won
        pushed = definitions.resolve_job_def(PUSH_JOB).execute_in_process(
            instance=instance, run_config={**push.run_config, **QUIET}, tags=push.tags, raise_on_error=False)
        assert pushed.success
        assert len(tenant.marked("opportunities", won, "description")) == 1
    finally:
        instance.dispose()

    runs = runs_in_postgres(postgres_url)
    assert [(job, status) for job, status, _ in runs] == [(HOURLY_JOB, "SUCCESS"), (PUSH_JOB, "SUCCESS")]
    assert runs[0][2]["dagster/partition"] == hour_key(last_hour) and runs[0][2][PULL_TAG] == "default"
    assert runs[1][2][DOCUMENT_TAG] == won and runs[1][2][PUSH_TAG] == "default"
    state = PostgresStateStore(postgres_url, "zk_tenant")
    try:  # both runs' state is in PostgreSQL: the pull's id map, the push's ledger
        assert state.rows(ID_MAP)
        assert [row["document_id"] for row in state.rows(PUSH_DOCUMENTS)] == [won]
    finally:
        state.close()
