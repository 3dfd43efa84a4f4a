"""One code location serving three registry tenants against the multi-tenant sandboxes, their state and Dagster's
runs on PostgreSQL: each tenant's hour syncs into its own Zomentum account only, a tenant with a wrong password
fails alone with the reason while the others succeed beside it, and a tenant added to the registry gets its
schedules and sensor at the next load, with no code change."""

from __future__ import annotations

import multiprocessing
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import ZomentumCredentials
from zk_pipelines.definitions import defs as load_code_location
from zk_pipelines.defs.jobs import HOURLY_JOB, PULL_TAG
from zk_pipelines.defs.partitions import HOURS_TAG, TENANT_TAG
from zk_pipelines.defs.push import WON_DOCUMENT_SENSOR
from zk_pipelines.defs.tenant_batch import BATCH_JOB, BATCH_SCHEDULE, BATCH_TAG
from zk_pipelines.defs.tenants import HOURLY_SCHEDULE, RECONCILE_SCHEDULE, deployment_definitions
from zk_pipelines.sandbox.launcher import running_sandboxes
from zk_pipelines.sandbox.registry import write_registry
from zk_pipelines.secrets import Secret
from zk_pipelines.tenants import REGISTRY_VARIABLE, load_registry
from zk_pipelines_tests.pipeline_harness import step_errors
from zk_pipelines_tests.secret_scan import leaks

REPO = Path(__file__).resolve().parents[1]
KEYS = ("sandbox_01", "sandbox_02", "sandbox_03")
STATE_URL_VARIABLE = "ZK_TEST_TENANTS_STATE_URL"
POOLS = ("kaseya_api", "zomentum_api", "duckdb")


@dataclass(frozen=True)
class Deployment:
    registry: Path
    secrets: dict[str, str]
    environments: dict[str, dict[str, str]]

    def zomentum_clients(self, key: str) -> dict[str, str]:
        """The tenant's Zomentum clients, id -> name, read with its own token."""
        env = self.environments[key]
        client = ZomentumClient(ZomentumCredentials(base_url=env["ZOMENTUM_BASE_URL"],
                                                    refresh_token=Secret(env["ZOMENTUM_REFRESH_TOKEN"]),
                                                    allow_insecure_http=True))
        try:
            return {c["id"]: c["name"] for c in client.clients()}
        finally:
            client.close()


@pytest.fixture
def deployment(tmp_path, postgres_url, monkeypatch) -> Iterator[Deployment]:
    with running_sandboxes(seed=7, scale="small", tenants=3) as boxes:
        environments = boxes.tenant_environments()
        registry = tmp_path / "tenants.yaml"
        secrets = write_registry(registry, environments, datetime.now(UTC) - timedelta(hours=3))
        # Every tenant's state in one PostgreSQL database, a schema each (zk_<tenant>).
        registry.write_text(registry.read_text().replace(
            "    kaseya:\n", f"    state_url: {{env: {STATE_URL_VARIABLE}}}\n    kaseya:\n"))
        for name, value in secrets.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv(STATE_URL_VARIABLE, postgres_url)
        yield Deployment(registry, secrets, environments)


@pytest.fixture
def instance(tmp_path, postgres_url, monkeypatch) -> Iterator[dg.DagsterInstance]:
    """Dagster's production instance (deploy/dagster.yaml) on PostgreSQL."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the run workers' instance
    instance = dg.DagsterInstance.from_config(str(home))
    # As docs/deploy.md sets them up once (`dagster instance concurrency set POOL 16`): pools first created
    # lazily by several runs at once can collide in PostgreSQL.
    for pool in POOLS:
        instance.event_log_storage.set_concurrency_slots(pool, 16)
    try:
        yield instance
    finally:
        instance.dispose()


def last_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def scheduled_run(definitions: dg.Definitions, key: str, instance: dg.DagsterInstance,
                  hour: datetime | None = None) -> dg.RunRequest:
    """What the tenant's hourly schedule asks for at :05 after `hour` (default: the last hour) ends."""
    schedule = definitions.get_schedule_def(f"{HOURLY_SCHEDULE}_{key}")
    moment = (hour or last_hour()) + timedelta(hours=1, minutes=5)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=moment,
                                   repository_def=definitions.get_repository_def()) as context:
        request = schedule.evaluate_tick(context).run_requests[0]
    return request


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    errors: list[str]


def run_in_worker(registry: str, partition_key: str, tags: dict[str, str]) -> RunOutcome:
    """A tenant's run in a process of its own, as a run worker (or a run pod) executes it."""
    instance = dg.DagsterInstance.get()
    try:
        definitions = deployment_definitions(load_registry(Path(registry)), Path(registry))
        result = definitions.resolve_job_def(HOURLY_JOB).execute_in_process(
            instance=instance, partition_key=partition_key, tags=tags, raise_on_error=False)
        return RunOutcome(result.run_id, result.success, step_errors(result))
    finally:
        instance.dispose()


def run_tenants_at_once(deployment: Deployment, instance: dg.DagsterInstance,
                        hour: datetime) -> dict[str, RunOutcome]:
    """Each tenant's scheduled run for `hour`, all three at once, each in its own process."""
    definitions = deployment_definitions(load_registry(deployment.registry), deployment.registry)
    requests = {key: scheduled_run(definitions, key, instance, hour) for key in KEYS}
    with ProcessPoolExecutor(max_workers=len(KEYS), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {key: pool.submit(run_in_worker, str(deployment.registry), request.partition_key,
                                    dict(request.tags)) for key, request in requests.items()}
        return {key: future.result() for key, future in futures.items()}


def ledger(postgres_url: str, key: str) -> list[tuple[str, str | None, str | None]]:
    """The tenant's ledger in its own schema: (entity, Kaseya id, Zomentum id) of every pull outcome."""
    connection = psycopg2.connect(postgres_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT entity, kaseya_id, zomentum_id FROM zk_{key}.sync_events")
            return cursor.fetchall()
    finally:
        connection.close()


@pytest.mark.slow
def test_each_tenants_hour_syncs_into_its_own_zomentum_only(deployment, instance):
    hour = last_hour()  # taken once: the runs may end in the next hour
    before = {key: set(deployment.zomentum_clients(key)) for key in KEYS}
    results = run_tenants_at_once(deployment, instance, hour)
    assert {key: result.errors for key, result in results.items()} == {key: [] for key in KEYS}
    created = {key: {i: n for i, n in deployment.zomentum_clients(key).items() if i not in before[key]}
               for key in KEYS}
    assert all(created.values())
    # Sandbox tenant n's Kaseya account names end with "(0n)" (tenant 1's with no suffix): each Zomentum account
    # holds only its own MSP's clients.
    assert all(name.endswith(("(02)", "(03)")) is False for name in created["sandbox_01"].values())
    assert all(name.endswith("(02)") for name in created["sandbox_02"].values())
    assert all(name.endswith("(03)") for name in created["sandbox_03"].values())
    for key, result in results.items():
        run = instance.get_run_by_id(result.run_id)
        assert (run.tags[TENANT_TAG], run.tags[PULL_TAG], run.tags["dagster/partition"]) == (key, key, key)
        assert run.tags[HOURS_TAG] == hour.strftime("%Y-%m-%d-%H:00")
        materialized = instance.get_latest_materialization_event(dg.AssetKey("zomentum_clients"))
        assert materialized is not None
    status = instance.get_materialized_partitions(dg.AssetKey("zomentum_clients"))
    assert status == set(KEYS)  # the UI's asset page: every tenant's partition materialized


@pytest.mark.slow
def test_a_tenant_with_a_wrong_password_fails_alone_and_no_record_crosses_tenants(deployment, instance,
                                                                                 postgres_url, monkeypatch):
    monkeypatch.setenv("SANDBOX_03_KASEYA_PASSWORD", "not-the-password")
    before = {key: deployment.zomentum_clients(key) for key in KEYS}
    results = run_tenants_at_once(deployment, instance, last_hour())
    assert results["sandbox_01"].success and results["sandbox_02"].success
    failed = results["sandbox_03"]
    assert not failed.success
    errors = failed.errors
    # Both Kaseya steps, each with the reason; nothing after them ran.
    assert sorted(error.split(":")[0] for error in errors) == ["kaseya_catalogue", "raw_kaseya_changes"]
    assert all("Kaseya rejected the login of 'api.employee03@msp.example' for tenant 'Sandbox MSP 03'" in error
               for error in errors)
    assert "not-the-password" not in " ".join(errors)
    assert_no_record_crosses_tenants(deployment, postgres_url, before, failed="sandbox_03")
    stored = [dg.serialize_value(instance.get_run_by_id(result.run_id)) for result in results.values()]
    assert leaks(stored, [*deployment.secrets.values(), postgres_url]) == []


def assert_no_record_crosses_tenants(deployment: Deployment, postgres_url: str, before: dict[str, dict[str, str]],
                                     failed: str) -> None:
    """Every outcome in a tenant's ledger names its own records, in its own Zomentum account; each account holds
    its own MSP's clients only (sandbox tenant n's names end with "(0n)", tenant 1's with no suffix); the failed
    tenant's ledger and Zomentum are untouched."""
    ids = {key: set(deployment.zomentum_clients(key)) for key in KEYS}
    for key in KEYS:
        for entity, _kaseya_id, zomentum_id in ledger(postgres_url, key):
            if entity == "client" and zomentum_id:
                assert zomentum_id in ids[key]
                assert all(zomentum_id not in ids[other] for other in KEYS if other != key)
    assert ledger(postgres_url, failed) == []
    after = {key: deployment.zomentum_clients(key) for key in KEYS}
    assert after[failed] == before[failed]
    for key in KEYS:
        suffix = f"({key[-2:]})"
        others = tuple(f"({other[-2:]})" for other in KEYS if other != key)
        assert all(not name.endswith(others) for name in after[key].values()), key
        if key != "sandbox_01" and key != failed:
            assert all(name.endswith(suffix) for name in after[key].values()), key


@pytest.mark.slow
def test_a_batch_run_syncs_its_tenants_each_in_a_run_of_its_own_and_a_wrong_password_fails_that_tenant_alone(
        deployment, instance, postgres_url, monkeypatch):
    monkeypatch.setenv("SANDBOX_02_KASEYA_PASSWORD", "not-the-password")  # the middle tenant of the batch
    before = {key: deployment.zomentum_clients(key) for key in KEYS}
    definitions = deployment_definitions(load_registry(deployment.registry), deployment.registry, batch=3)
    schedule = definitions.get_schedule_def(f"{BATCH_SCHEDULE}_01")
    hour = last_hour()  # taken once: the runs may end in the next hour
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=hour + timedelta(hours=1, minutes=5),
                                   repository_def=definitions.get_repository_def()) as context:
        (request,) = schedule.evaluate_tick(context).run_requests
    batch = definitions.resolve_job_def(BATCH_JOB).execute_in_process(
        instance=instance, run_config=request.run_config, tags=request.tags, raise_on_error=False)
    # The batch run fails at its end, naming the one tenant that failed and why; the others synced.
    assert not batch.success
    (failure,) = batch.get_step_failure_events()
    message = failure.event_specific_data.error.message
    assert "1 of 3 tenants failed their hour (the others synced)" in message
    (line,) = [line for line in message.splitlines() if line.startswith("tenant ")]
    assert line.startswith("tenant sandbox_02 (run ")
    assert "Kaseya rejected the login of 'api.employee02@msp.example' for tenant 'Sandbox MSP 02'" in line
    assert "not-the-password" not in message
    # Each tenant's hour is a run of its own: its partition, its tags, its status.
    runs = {run.tags[TENANT_TAG]: run for run in instance.get_runs(dg.RunsFilter(tags={BATCH_TAG: batch.run_id}))}
    assert {key: run.status for key, run in runs.items()} == {
        "sandbox_01": dg.DagsterRunStatus.SUCCESS, "sandbox_02": dg.DagsterRunStatus.FAILURE,
        "sandbox_03": dg.DagsterRunStatus.SUCCESS}
    for key, run in runs.items():
        assert (run.tags[PULL_TAG], run.tags["dagster/partition"]) == (key, key)
        assert run.tags[HOURS_TAG] == hour.strftime("%Y-%m-%d-%H:00")
    # The UI's asset page: the two tenants that synced are materialized, the failed one is not.
    assert instance.get_materialized_partitions(dg.AssetKey("zomentum_clients")) == {"sandbox_01", "sandbox_03"}
    assert_no_record_crosses_tenants(deployment, postgres_url, before, failed="sandbox_02")
    stored = [dg.serialize_value(run) for run in [*runs.values(), instance.get_run_by_id(batch.run_id)]]
    assert leaks(stored, [*deployment.secrets.values(), postgres_url]) == []


@pytest.mark.slow
def test_a_tenant_added_to_the_registry_gets_its_schedules_and_sensor_at_the_next_load(deployment, instance,
                                                                                      monkeypatch):
    full = deployment.registry.read_text()
    two = full[:full.index("  sandbox_03:")]
    deployment.registry.write_text(two)
    monkeypatch.setenv(REGISTRY_VARIABLE, str(deployment.registry))
    first = load_code_location()
    names = {schedule.name for schedule in first.schedules} | {sensor.name for sensor in first.sensors}
    assert names == {f"{kind}_{key}" for key in KEYS[:2]
                     for kind in (HOURLY_SCHEDULE, RECONCILE_SCHEDULE, WON_DOCUMENT_SENSOR)}
    deployment.registry.write_text(full)  # an edit of the registry, then a reload of the code location
    second = load_code_location()
    assert {f"{HOURLY_SCHEDULE}_sandbox_03", f"{RECONCILE_SCHEDULE}_sandbox_03"} <= {s.name for s in second.schedules}
    assert f"{WON_DOCUMENT_SENSOR}_sandbox_03" in {sensor.name for sensor in second.sensors}
    request = scheduled_run(second, "sandbox_03", instance)
    assert request.partition_key == "sandbox_03" and request.tags[PULL_TAG] == "sandbox_03"
    sensor = second.get_sensor_def(f"{WON_DOCUMENT_SENSOR}_sandbox_03")
    with dg.build_sensor_context(instance=instance) as context:
        result = sensor(context)
    assert result.skip_reason is not None  # first poll: its cursor set, from its own Zomentum account
    result = second.resolve_job_def(HOURLY_JOB).execute_in_process(
        instance=instance, partition_key="sandbox_03", tags=request.tags, raise_on_error=False)
    assert step_errors(result) == []
