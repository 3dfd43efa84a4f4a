"""A registry's definitions, without running anything: the same assets as one tenant's, each partitioned by
tenant; per tenant a pinned schedule pair and sensor whose requests carry its partition and tags; resources that
hold the registry's path only; and the hours a tenant-partitioned run syncs, from its tags."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from zk_pipelines.config import ConfigurationError
from zk_pipelines.definitions import build_definitions
from zk_pipelines.defs.deployment_resources import DeploymentStateStoreResource, deployment_resources
from zk_pipelines.defs.jobs import HOURLY_JOB, PULL_TAG, PUSH_TAG
from zk_pipelines.defs.kubernetes import K8S_CONFIG_TAG
from zk_pipelines.defs.partitions import HOURS_TAG, TENANT_TAG, hours_of_run, run_partitions
from zk_pipelines.defs.push import PUSH_JOB
from zk_pipelines.defs.reconcile import RECONCILE_JOB
from zk_pipelines.defs.tenant_batch import (
    BATCH_JOB,
    BATCH_STEP,
    BATCH_VARIABLE,
    TenantHour,
    batch_size,
    sync_tenant_hour,
)
from zk_pipelines.defs.tenants import deployment_definitions
from zk_pipelines.tenants import registry_from_text

REGISTRY = """
tenants:
  acme:
    partitions_start: "2026-12-01-00:00"
    settings: acme.yaml
    state: acme.duckdb
    kaseya: {base_url: "https://api.bms.kaseya.com", username: api@acme.example, tenant: Acme MSP,
             password: {env: ACME_KASEYA_PASSWORD}}
    zomentum: {base_url: "https://api.zomentum.com", refresh_token: {env: ACME_ZOMENTUM_REFRESH_TOKEN}}
  globex:
    partitions_start: "2026-12-05-00:00"
    settings: globex.yaml
    state: globex.duckdb
    kaseya: {base_url: "https://api.bms.kaseya.com", username: api@globex.example, tenant: Globex,
             password: {file: /var/run/secrets/zk/globex/kaseya-password}}
    zomentum: {base_url: "https://api.zomentum.com", refresh_token: {env: GLOBEX_ZOMENTUM_REFRESH_TOKEN}}
"""
FOLDER = Path("/etc/zk")


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    return deployment_definitions(registry_from_text(REGISTRY, "tenants.yaml", FOLDER), FOLDER / "tenants.yaml")


def test_the_assets_are_one_tenants_each_partitioned_by_tenant(definitions):
    single = build_definitions().get_repository_def().asset_graph
    graph = definitions.get_repository_def().asset_graph
    assert graph.get_all_asset_keys() == single.get_all_asset_keys()
    for key in graph.get_all_asset_keys():
        assert graph.get(key).partitions_def.get_partition_keys() == ["acme", "globex"], key
    assert {job.name for job in definitions.get_repository_def().get_all_jobs()} >= {HOURLY_JOB, PUSH_JOB,
                                                                                     RECONCILE_JOB, BATCH_JOB}


def test_each_tenant_has_its_schedules_and_sensor_by_name_running_by_default(definitions):
    assert sorted(s.name for s in definitions.schedules) == [
        "daily_reconcile_acme", "daily_reconcile_globex", "hourly_sync_acme", "hourly_sync_globex"]
    assert sorted(s.name for s in definitions.sensors) == ["won_document_sensor_acme", "won_document_sensor_globex"]
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in definitions.schedules)
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in definitions.sensors)


@pytest.mark.parametrize(("tick", "expected"), [
    (datetime(2026, 12, 7, 10, 5, tzinfo=UTC), "2026-12-07-09:00"),
    (datetime(2026, 12, 5, 0, 5, tzinfo=UTC), None),  # 23:00 the day before globex is onboarded
])
def test_the_hourly_schedule_asks_for_the_hour_that_ended_for_its_tenant_with_its_tags(definitions, tick, expected):
    schedule = definitions.get_schedule_def("hourly_sync_globex")
    with dg.build_schedule_context(scheduled_execution_time=tick,
                                   repository_def=definitions.get_repository_def()) as context:
        result = schedule.evaluate_tick(context)
    if expected is None:
        assert result.run_requests == [] and "onboarded at 2026-12-05-00:00" in result.skip_message
        return
    (request,) = result.run_requests
    assert request.partition_key == "globex"
    assert {k: request.tags[k] for k in (TENANT_TAG, PULL_TAG, HOURS_TAG)} == {
        TENANT_TAG: "globex", PULL_TAG: "globex", HOURS_TAG: expected}
    mount = json.loads(request.tags[K8S_CONFIG_TAG])["container_config"]["volume_mounts"][0]
    assert mount["mount_path"] == "/var/run/secrets/zk/globex"


def test_the_resources_hold_the_registrys_path_and_no_value_from_it(definitions):
    stored = dg.serialize_value(definitions.resolve_job_def(HOURLY_JOB).get_job_snapshot())
    assert "/etc/zk/tenants.yaml" in stored
    assert "api@acme.example" not in stored and "ACME_KASEYA_PASSWORD" not in stored


@pytest.mark.parametrize(("tags", "hours", "ledger"), [
    ({HOURS_TAG: "2026-12-01-05:00", TENANT_TAG: "acme"},
     (datetime(2026, 12, 1, 5, tzinfo=UTC), datetime(2026, 12, 1, 6, tzinfo=UTC)), "2026-12-01-05:00"),
    ({HOURS_TAG: "2026-12-01-05:00...2026-12-01-07:00", "dagster/partition": "acme"},
     (datetime(2026, 12, 1, 5, tzinfo=UTC), datetime(2026, 12, 1, 8, tzinfo=UTC)),
     "2026-12-01-05:00...2026-12-01-07:00"),
    ({"dagster/partition": "acme"},  # launched by hand: the last complete hour, no hours for the ledger
     (datetime(2026, 12, 1, 9, tzinfo=UTC), datetime(2026, 12, 1, 10, tzinfo=UTC)), None),
])
def test_a_tenant_partitioned_runs_hours_come_from_its_tags(tags, hours, ledger):
    assert hours_of_run(tags, clock=datetime(2026, 12, 1, 10, 20, tzinfo=UTC)) == hours
    assert run_partitions(tags) == ledger


def test_a_single_tenants_run_partitions_are_unchanged():
    assert run_partitions({"dagster/partition": "2026-12-01-05:00"}) == "2026-12-01-05:00"
    assert run_partitions({"dagster/asset_partition_range_start": "2026-12-01-05:00",
                           "dagster/asset_partition_range_end": "2026-12-01-06:00"}) == \
        "2026-12-01-05:00...2026-12-01-06:00"
    assert run_partitions({}) is None


@pytest.mark.parametrize(("job_name", "kind"),
                         [(HOURLY_JOB, PULL_TAG), (RECONCILE_JOB, PULL_TAG), (PUSH_JOB, PUSH_TAG)])
def test_a_run_of_a_deployment_job_for_a_tenant_gets_its_tenants_tags_however_it_is_launched(definitions, job_name,
                                                                                            kind):
    # The launchpad, Materialize on the job's page (a subset of its assets) and a backfill of the job ask the job
    # for a partition's tags; a schedule's or sensor's request for a partition is resolved through the same call.
    job = definitions.get_repository_def().get_job(job_name)
    for key in ("acme", "globex"):
        tags = job.get_tags_for_partition_key(key, selected_asset_keys=None)
        assert (tags[TENANT_TAG], tags[kind], tags["dagster/partition"]) == (key, key, key)
        assert ({PULL_TAG, PUSH_TAG} - {kind}).isdisjoint(tags)  # a push is not held behind the hourly pull
        mount = json.loads(tags[K8S_CONFIG_TAG])["container_config"]["volume_mounts"][0]
        assert mount["mount_path"] == f"/var/run/secrets/zk/{key}"
    if job_name == HOURLY_JOB:
        subset = job.get_subset(asset_selection={dg.AssetKey("stg_kaseya_accounts")})
        assert subset.get_tags_for_partition_key("acme", selected_asset_keys=None)[TENANT_TAG] == "acme"


def test_a_run_launched_for_a_tenant_partition_without_tags_is_recorded_with_them(definitions):
    # As the launchpad launches it: the job and a partition, no tag given. It fails (nothing of the registry
    # exists here); what the instance recorded of it, which the run queue reads, carries the tenant's tags.
    with dg.instance_for_test() as instance:
        result = definitions.resolve_job_def(RECONCILE_JOB).execute_in_process(
            partition_key="globex", instance=instance, raise_on_error=False)
        tags = instance.get_run_by_id(result.run_id).tags
    assert (tags[TENANT_TAG], tags[PULL_TAG]) == ("globex", "globex")


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["acme", "globex"]))
def tenant_state(state: DeploymentStateStoreResource) -> dg.Output[None]:
    return dg.Output(None, metadata={"settings": str(state.settings_file())})


def test_a_run_without_its_tenants_tag_stops_before_reading_anything_and_says_where_to_launch_it(tmp_path,
                                                                                                  monkeypatch):
    # Dagster's hidden asset job (Materialize from the global asset graph, an asset backfill) gives a run its
    # partition and no tenant tag: the run queue's per-tenant limits did not hold it, so it must not run.
    (tmp_path / "tenants.yaml").write_text(REGISTRY)
    monkeypatch.setenv("ACME_KASEYA_PASSWORD", "acme-password")
    monkeypatch.setenv("ACME_ZOMENTUM_REFRESH_TOKEN", "acme-token")
    resources = deployment_resources(tmp_path / "tenants.yaml")
    untagged = dg.materialize([tenant_state], partition_key="acme", resources=resources, raise_on_error=False)
    assert not untagged.success
    (failure,) = [event for event in untagged.all_events if event.is_step_failure]
    message = failure.step_failure_data.error.cause.message
    assert "this run for tenant 'acme' carries no zk/tenant tag" in message and HOURLY_JOB in message
    tagged = dg.materialize([tenant_state], partition_key="acme", resources=resources, tags={TENANT_TAG: "acme"})
    settings = tagged.asset_materializations_for_node("tenant_state")[0].metadata["settings"].value
    assert settings == str(tmp_path / "acme.yaml")


INITECH = """
  initech:
    partitions_start: "2026-12-01-00:00"
    settings: initech.yaml
    state: initech.duckdb
    kaseya: {base_url: "https://api.bms.kaseya.com", username: api@initech.example, tenant: Initech,
             password: {file: /var/run/secrets/zk/initech/kaseya-password}}
    zomentum: {base_url: "https://api.zomentum.com", refresh_token: {env: INITECH_ZOMENTUM_REFRESH_TOKEN}}
"""


@pytest.fixture(scope="module")
def batched() -> dg.Definitions:
    """Three tenants, two per hourly run (ZK_TENANT_BATCH=2)."""
    tenants = registry_from_text(REGISTRY + INITECH, "tenants.yaml", FOLDER)
    return deployment_definitions(tenants, FOLDER / "tenants.yaml", batch=2)


def test_with_batches_each_batch_has_one_hourly_schedule_in_place_of_its_tenants_own(batched):
    assert sorted(s.name for s in batched.schedules) == [
        "daily_reconcile_acme", "daily_reconcile_globex", "daily_reconcile_initech",
        "hourly_sync_batch_01", "hourly_sync_batch_02"]
    assert len(batched.sensors) == 3  # the Won-document sensors stay per tenant
    assert batched.get_schedule_def("hourly_sync_batch_01").job_name == BATCH_JOB


@pytest.mark.parametrize(("tick", "tenants"), [
    (datetime(2026, 12, 7, 10, 5, tzinfo=UTC), ["acme", "globex"]),
    (datetime(2026, 12, 4, 10, 5, tzinfo=UTC), ["acme"]),  # globex is onboarded on the 5th
])
def test_a_batch_schedule_asks_for_its_onboarded_tenants_hour_in_one_run_mounting_each_ones_secret(batched, tick,
                                                                                                   tenants):
    schedule = batched.get_schedule_def("hourly_sync_batch_01")
    with dg.build_schedule_context(scheduled_execution_time=tick,
                                   repository_def=batched.get_repository_def()) as context:
        (request,) = schedule.evaluate_tick(context).run_requests
    hour = tick.replace(hour=tick.hour - 1, minute=0).strftime("%Y-%m-%d-%H:00")
    assert request.run_config["ops"][BATCH_STEP]["config"] == {"tenants": tenants, "hours": hour}
    assert request.run_key == hour and request.tags[PULL_TAG] == "batch_01" and TENANT_TAG not in request.tags
    pod = json.loads(request.tags[K8S_CONFIG_TAG])
    assert [m["mount_path"] for m in pod["container_config"]["volume_mounts"]] == [
        f"/var/run/secrets/zk/{key}" for key in tenants]
    assert [v["secret"]["secret_name"] for v in pod["pod_spec_config"]["volumes"]] == [
        f"zk-tenant-{key}" for key in tenants]


@pytest.mark.parametrize(("written", "size"), [("", 1), ("1", 1), (" 25 ", 25), ("0", None), ("ten", None),
                                               ("201", None)])
def test_the_batch_size_is_read_from_its_variable(written, size):
    if size is None:
        with pytest.raises(ConfigurationError, match=BATCH_VARIABLE):
            batch_size({BATCH_VARIABLE: written})
    else:
        assert batch_size({BATCH_VARIABLE: written}) == size


def test_a_tenant_the_code_location_does_not_serve_fails_its_hour_with_the_reason_and_raises_nothing(definitions):
    with dg.instance_for_test() as instance:
        outcome = sync_tenant_hour(definitions.resolve_job_def(HOURLY_JOB), instance, "initech", "2026-12-01-05:00",
                                   "the-batch-run")
        assert instance.get_runs() == []
    assert outcome == TenantHour("initech", None, False, "not synced: the code location serves no such tenant "
                                                         "(reload it after editing the registry)")
    assert outcome.line() == f"tenant initech: {outcome.reason}"
