"""The Kubernetes deployment as far as this machine can check it without a cluster: deploy/helm-values.yaml's
instance sections, rendered into dagster.yaml as Dagster's Helm chart renders them, load as a Dagster instance on
PostgreSQL with dagster-k8s's K8sRunLauncher and the queued run coordinator (their config accepted by Dagster's
own schemas, the limits those of deploy/dagster.yaml); the Kubernetes Job dagster-k8s builds for a tenant's run
mounts that tenant's Secret and no other's; the user-code deployment serves our code location."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import yaml

from zk_pipelines.config import TENANT_VARIABLES
from zk_pipelines.definitions import build_definitions
from zk_pipelines.defs.jobs import HOURLY_JOB, PULL_TAG, PUSH_TAG
from zk_pipelines.defs.kubernetes import (
    K8S_CONFIG_TAG,
    kubernetes_run_tags,
    secret_files_outside_mount,
    tenant_secret_name,
)
from zk_pipelines.tenants import registry_from_text

REPO = Path(__file__).resolve().parents[1]
VALUES = yaml.safe_load((REPO / "deploy" / "helm-values.yaml").read_text(encoding="utf-8"))
NAMESPACE = "zk"

TENANTS = """\
tenants:
  acme:
    partitions_start: "2026-12-01-00:00"
    settings: acme.settings.yaml
    state: /var/lib/zk/acme.duckdb
    state_url: {file: /var/run/secrets/zk/acme/state-url}
    kaseya:
      base_url: https://api.bms.kaseya.com
      username: api@acme.example
      tenant: Acme MSP
      password: {file: /var/run/secrets/zk/acme/kaseya-password}
    zomentum:
      base_url: https://api.zomentum.com
      refresh_token: {file: /var/run/secrets/zk/acme/zomentum-refresh-token}
  beta_it:
    partitions_start: "2026-12-02-00:00"
    settings: beta_it.settings.yaml
    state: /var/lib/zk/beta_it.duckdb
    state_url: {file: /var/run/secrets/zk/beta_it/state-url}
    kaseya:
      base_url: https://api.bmsemea.kaseya.com
      username: api@beta.example
      tenant: Beta IT
      password: {file: /var/run/secrets/zk/beta_it/kaseya-password}
    zomentum:
      base_url: https://api.zomentum.com
      refresh_token: {file: /var/run/secrets/zk/beta_it/zomentum-refresh-token}
"""


def rendered_instance(values: dict, postgres_url: str, kubeconfig: Path) -> dict:
    """dagster.yaml as the chart's templates render it (configmap-instance.yaml with helpers/instance/
    _run-launcher.tpl, _run-coordinator.tpl, _concurrency.tpl and _postgresql.tpl) from these values: the storages
    on the chart's PostgreSQL, the K8sRunLauncher, the queued run coordinator, run monitoring, telemetry,
    concurrency, and `additionalInstanceConfig` appended. Two changes for this machine: the database is the test's
    server, and the launcher reads a kubeconfig file instead of the in-cluster service account (a pod's)."""
    database = urlsplit(postgres_url)
    postgres = {"postgres_db": {"username": database.username, "password": {"env": "DAGSTER_PG_PASSWORD"},
                                "hostname": database.hostname, "db_name": database.path.lstrip("/"),
                                "port": database.port or 5432, "params": {},
                                "scheme": values["postgresql"]["postgresqlScheme"]}}
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher_config = {
        "load_incluster_config": False, "kubeconfig_file": str(kubeconfig),  # in the cluster: the chart's `true`
        "job_namespace": launcher.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": "dagster",
        "dagster_home": {"env": "DAGSTER_HOME"},
        "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
        "postgres_password_secret": {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
        "env_config_maps": [{"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"},
                            *(c["name"] for c in launcher.get("envConfigMaps", []) if "name" in c)],
    }
    if launcher.get("envSecrets"):
        launcher_config["env_secrets"] = [s["name"] for s in launcher["envSecrets"] if "name" in s]
    for value_key, config_key in (("envVars", "env_vars"), ("volumeMounts", "volume_mounts"),
                                  ("volumes", "volumes"), ("labels", "labels"),
                                  ("failPodOnRunFailure", "fail_pod_on_run_failure")):
        if launcher.get(value_key):
            launcher_config[config_key] = launcher[value_key]
    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    assert not coordinator["config"]["queuedRunCoordinator"]  # the limits are in `concurrency` (_concurrency.tpl)
    concurrency = values["concurrency"]
    assert concurrency["enabled"]
    monitoring = daemon["runMonitoring"]
    instance = {
        "schedule_storage": {"module": "dagster_postgres.schedule_storage", "class": "PostgresScheduleStorage",
                             "config": postgres},
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher_config},
        "run_storage": {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage", "config": postgres},
        "event_log_storage": {"module": "dagster_postgres.event_log", "class": "PostgresEventLogStorage",
                              "config": postgres},
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"},
        "run_monitoring": {"enabled": monitoring["enabled"], "start_timeout_seconds": monitoring["startTimeoutSeconds"],
                           "cancel_timeout_seconds": monitoring["cancelTimeoutSeconds"],
                           "poll_interval_seconds": monitoring["pollIntervalSeconds"],
                           "free_slots_after_run_end_seconds": monitoring["freeSlotsAfterRunEndSeconds"]},
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
        "concurrency": {
            "pools": {"default_limit": concurrency["pools"]["defaultLimit"],
                      "granularity": concurrency["pools"]["granularity"]},
            "runs": {"max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"],
                     "tag_concurrency_limits": [{"key": limit["key"], "value": limit["value"], "limit": limit["limit"]}
                                                for limit in concurrency["runs"]["tagConcurrencyLimits"]]}},
    }
    return {**instance, **values.get("additionalInstanceConfig", {})}


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: test, user: {token: not-a-real-token}}]
contexts: [{name: test, context: {cluster: test, user: test, namespace: zk}}]
current-context: test
"""


@pytest.fixture
def helm_instance(tmp_path, postgres_url, monkeypatch):
    """The instance of the webserver and the daemon pods, with the environment the chart gives them."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    instance_yaml = rendered_instance(VALUES, postgres_url, tmp_path / "kubeconfig")
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml, sort_keys=False))
    for name, value in {"DAGSTER_HOME": "/opt/dagster/dagster_home", "DAGSTER_PG_PASSWORD": "",
                        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "dagster-instance",
                        "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
                        "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": "dagster-pipeline-env"}.items():
        monkeypatch.setenv(name, value)
    # Importing dagster-k8s (and making a Kubernetes client configuration, as the launcher does) sets the
    # `urllib3` and `client` loggers to WARNING for the whole process: imported here, not when the tests are
    # collected, and the levels put back after, for the tests that read urllib3's log.
    levels = {name: logging.getLogger(name).level for name in ("urllib3", "client")}
    import dagster_k8s  # noqa: F401
    instance = dg.DagsterInstance.from_config(str(home))
    yield instance
    instance.dispose()
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_the_helm_values_instance_config_is_accepted_by_dagster_and_keeps_deploy_dagster_yamls_limits(
        helm_instance):
    from dagster_k8s import K8sRunLauncher

    launcher = helm_instance.run_launcher  # built here: dagster-k8s's config schema checks the launcher's config
    assert isinstance(launcher, K8sRunLauncher)
    assert (launcher.job_namespace, launcher.image_pull_policy, launcher.env_secrets) == (NAMESPACE, "IfNotPresent",
                                                                                         [])
    assert launcher.env_vars == ["ZK_TENANTS=/etc/zk/tenants/tenants.yaml"]
    assert type(helm_instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert type(helm_instance.run_storage).__name__ == "PostgresRunStorage"

    helm = helm_instance.get_concurrency_config()
    deploy = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text(encoding="utf-8"))["concurrency"]
    queue = helm.run_queue_config
    assert queue.max_concurrent_runs == deploy["runs"]["max_concurrent_runs"]
    assert [(limit["key"], limit["limit"], limit["value"]) for limit in queue.tag_concurrency_limits] == [
        (limit["key"], limit["limit"], limit["value"]) for limit in deploy["runs"]["tag_concurrency_limits"]]
    assert {limit["key"] for limit in queue.tag_concurrency_limits} == {PULL_TAG, PUSH_TAG}
    assert helm.pool_config.default_pool_limit == deploy["pools"]["default_limit"] == 16
    # Pools counted per run by the queue: no step of a run claims a slot in PostgreSQL.
    assert helm.pool_config.pool_granularity.value == deploy["pools"]["granularity"] == "run"


def run_pod_manifest(instance: dg.DagsterInstance, monkeypatch, tags: dict[str, str]) -> dict:
    """The Kubernetes Job dagster-k8s builds for a run of the hourly job with these tags."""
    from dagster_k8s import construct_dagster_k8s_job

    for name in TENANT_VARIABLES.names():  # the job's resources are bound by name; nothing is called
        monkeypatch.setenv(name, "https://unused.example" if name.endswith("_URL") else "unused")
    job = build_definitions().resolve_job_def(HOURLY_JOB)
    run = instance.create_run_for_job(job, tags={**job.tags, **tags})
    launcher = instance.run_launcher
    context = launcher.get_container_context_for_run(run)
    return construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image="registry.example.com/zk-pipelines:0.1.0",
                                              run_launcher=launcher),
        args=["dagster", "api", "execute_run"], job_name=f"dagster-run-{run.run_id}",
        user_defined_k8s_config=context.run_k8s_config, component="run_worker").to_dict()


def test_a_tenants_run_pod_mounts_its_own_secret_and_no_other_tenants(helm_instance, monkeypatch):
    acme, beta = registry_from_text(TENANTS, "tenants.yaml", Path("/etc/zk/tenants"))
    manifests = {}
    for tenant in (acme, beta):
        assert secret_files_outside_mount(tenant) == []
        manifests[tenant.key] = run_pod_manifest(helm_instance, monkeypatch,
                                                 {PULL_TAG: tenant.key, **kubernetes_run_tags(tenant)})
    for key, other in (("acme", "beta_it"), ("beta_it", "acme")):
        pod = manifests[key]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        secrets = [volume["secret"]["secret_name"] for volume in pod["volumes"] if volume.get("secret")]
        assert secrets == [f"zk-tenant-{key.replace('_', '-')}"]
        mounts = {mount["mount_path"]: mount for mount in container["volume_mounts"]}
        assert mounts[f"/var/run/secrets/zk/{key}"]["read_only"] and mounts["/etc/zk/tenants"]["read_only"]
        assert not mounts["/var/lib/zk"].get("read_only")  # the DuckDB replica, rebuilt from PostgreSQL
        assert [volume["name"] for volume in pod["volumes"] if volume.get("empty_dir") is not None] == ["zk-state"]
        assert not any(other in path for path in mounts)
        assert {"name": "ZK_TENANTS", "value": "/etc/zk/tenants/tenants.yaml"} in [
            {"name": e["name"], "value": e["value"]} for e in container["env"]]
        assert not any(e.get("value_from") for e in container["env"] if e["name"].startswith(("KASEYA", "ZOMENTUM")))
        assert [s["secret_ref"]["name"] for s in container["env_from"] if s.get("secret_ref")] == []
    assert tenant_secret_name(beta) == "zk-tenant-beta-it" and K8S_CONFIG_TAG == "dagster-k8s/config"


def test_a_batch_runs_pod_mounts_each_of_its_tenants_secrets_at_that_tenants_folder(helm_instance, monkeypatch):
    acme, beta = registry_from_text(TENANTS, "tenants.yaml", Path("/etc/zk/tenants"))
    pod = run_pod_manifest(helm_instance, monkeypatch, {PULL_TAG: "batch_01", **kubernetes_run_tags(acme, beta)})
    spec = pod["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    volumes = {volume["name"]: volume["secret"]["secret_name"] for volume in spec["volumes"] if volume.get("secret")}
    assert volumes == {"zk-tenant-acme": "zk-tenant-acme", "zk-tenant-beta-it": "zk-tenant-beta-it"}
    mounts = {mount["mount_path"]: mount["name"] for mount in container["volume_mounts"] if mount["read_only"]}
    assert mounts["/var/run/secrets/zk/acme"] == "zk-tenant-acme"
    assert mounts["/var/run/secrets/zk/beta_it"] == "zk-tenant-beta-it"


def test_a_secret_file_outside_the_tenants_mount_is_named():
    (tenant,) = registry_from_text(TENANTS.split("  beta_it:")[0].replace(
        "/var/run/secrets/zk/acme/kaseya-password", "/var/run/secrets/zk/beta_it/kaseya-password"),
        "tenants.yaml", Path("/etc/zk/tenants"))
    assert secret_files_outside_mount(tenant) == ["kaseya.password"]


def test_the_user_code_deployment_serves_our_code_location_from_the_registry_without_passing_secrets_to_runs():
    (deployment,) = VALUES["dagster-user-deployments"]["deployments"]
    module = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", module]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": False}
    assert {"name": "ZK_TENANTS", "value": "/etc/zk/tenants/tenants.yaml"} in deployment["env"]
    mounts = {mount["name"]: mount["mountPath"] for mount in deployment["volumeMounts"]}
    assert mounts == {"zk-tenants": "/etc/zk/tenants", "zk-tenant-secrets": "/var/run/secrets/zk",
                      "zk-state": "/var/lib/zk"}
    runs = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    assert [volume["name"] for volume in runs["volumes"]] == ["zk-tenants", "zk-state"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f'"--port", "{deployment["port"]}", "--module-name", "{module}"]' in dockerfile
