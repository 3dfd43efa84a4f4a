"""A registry drives a tenant's Dagster resources: the registry `zk sandbox --tenants 3` writes (one tenant's
password moved to a mounted secret file), loaded, bound per tenant, and used by real runs against the
multi-tenant sandboxes: each tenant's run logs in to its own Kaseya company and Zomentum account and keeps its
own state file, and what Dagster stores of the runs holds variable names and file paths, never a secret."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import ConfigurationError
from zk_pipelines.defs.resources import KaseyaResource, StateStoreResource, ZomentumResource, registry_tenant_resources
from zk_pipelines.sandbox.launcher import running_sandboxes
from zk_pipelines.sandbox.registry import write_registry
from zk_pipelines.tenants import FromFile, Tenant, load_registry
from zk_pipelines_tests.secret_scan import leaks

COMPANIES = {"sandbox_01": "Sandbox MSP Ltd", "sandbox_02": "Sandbox MSP 02", "sandbox_03": "Sandbox MSP 03"}


@dataclass(frozen=True)
class Deployment:
    tenants: tuple[Tenant, ...]
    secrets: dict[str, str]  # every secret's value, by the variable the registry names (or that held it)
    folder: Path


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("deployment")
    with running_sandboxes(seed=7, scale="small", tenants=3) as boxes:
        secrets = write_registry(folder / "tenants.yaml", boxes.tenant_environments(), datetime.now(UTC))
        # Tenant 2's Kaseya password comes from a mounted Secret's key, as on Kubernetes.
        (folder / "secrets").mkdir()
        (folder / "secrets" / "kaseya-password").write_text(secrets["SANDBOX_02_KASEYA_PASSWORD"] + "\n")
        registry = folder / "tenants.yaml"
        registry.write_text(registry.read_text().replace("{env: SANDBOX_02_KASEYA_PASSWORD}",
                                                         "{file: secrets/kaseya-password}"))
        yield Deployment(load_registry(registry), secrets, folder)


@dg.asset
def tenant_probe(kaseya: KaseyaResource, zomentum: ZomentumResource, state: StateStoreResource) -> dg.Output[None]:
    client = kaseya.client(state)
    return dg.Output(None, metadata={
        "company": client.user_info()["businessName"],
        "accounts": sorted(a["accountName"] for a in client.iter_accounts()),
        "clients": sorted(c["id"] for c in zomentum.client().clients()),
        "state": str(state.database()),
    })


def test_each_registry_tenants_run_reaches_its_own_company_account_and_state(deployment, monkeypatch, postgres_url,
                                                                            tmp_path):
    # Tenant 3 keeps its state in PostgreSQL, the URL (with its password) in a mounted secret file.
    (tmp_path / "state-url").write_text(postgres_url + "\n")
    tenants = [*deployment.tenants[:2], replace(deployment.tenants[2], state_url=FromFile(tmp_path / "state-url"),
                                                state_schema="zk_sandbox_03")]
    env_secrets = {name: value for name, value in deployment.secrets.items() if name != "SANDBOX_02_KASEYA_PASSWORD"}
    for name, value in env_secrets.items():
        monkeypatch.setenv(name, value)
    seen = {}
    with dg.instance_for_test() as instance:
        for tenant in tenants:
            result = dg.materialize([tenant_probe], resources=registry_tenant_resources(tenant, env={}),
                                    instance=instance, tags={"zk/pull": tenant.key})
            assert result.success
            metadata = result.asset_materializations_for_node("tenant_probe")[0].metadata
            seen[tenant.key] = {key: value.value for key, value in metadata.items()}
            job = dg.serialize_value(instance.get_run_by_id(result.run_id))
            assert leaks([job], [*deployment.secrets.values(), postgres_url]) == []
    assert {key: found["company"] for key, found in seen.items()} == COMPANIES
    assert seen["sandbox_02"]["state"] == str(deployment.folder / "state" / "sandbox_02.duckdb")
    assert (deployment.folder / "state" / "sandbox_03.duckdb").exists()
    for key, found in seen.items():
        others = [other for other in seen if other != key]
        assert found["accounts"] and found["clients"]
        assert all(not set(found["accounts"]) & set(seen[o]["accounts"]) for o in others)
        assert all(not set(found["clients"]) & set(seen[o]["clients"]) for o in others)
    assert all(name.endswith("(02)") for name in seen["sandbox_02"]["accounts"])
    connection = psycopg2.connect(postgres_url)
    with connection.cursor() as cursor:  # the store created and migrated the tenant's own schema
        cursor.execute("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'zk_%'")
        assert [row[0] for row in cursor.fetchall()] == ["zk_sandbox_03"]
    connection.close()


def test_the_resources_hold_names_and_paths_never_a_secret(deployment):
    tenant = deployment.tenants[1]
    resources = registry_tenant_resources(tenant, env={})
    assert resources["kaseya"].password is None
    assert resources["kaseya"].password_file == str(deployment.folder / "secrets" / "kaseya-password")
    stored = dg.serialize_value(dg.Definitions(assets=[tenant_probe], resources=resources)
                                .resolve_implicit_global_asset_job_def().get_job_snapshot())
    assert "SANDBOX_02_ZOMENTUM_REFRESH_TOKEN" in stored and "kaseya-password" in stored
    assert leaks([stored], deployment.secrets.values()) == []


def test_a_tenant_whose_secret_file_is_missing_fails_its_own_run_with_the_reason(deployment, monkeypatch,
                                                                                tmp_path):
    tenant = deployment.tenants[1]
    moved = tmp_path / "kaseya-password"
    (deployment.folder / "secrets" / "kaseya-password").rename(moved)
    monkeypatch.setenv("SANDBOX_02_ZOMENTUM_REFRESH_TOKEN", deployment.secrets["SANDBOX_02_ZOMENTUM_REFRESH_TOKEN"])
    try:
        with pytest.raises(ConfigurationError) as raised:
            dg.materialize([tenant_probe], resources=registry_tenant_resources(tenant, env={}))
    finally:
        moved.rename(deployment.folder / "secrets" / "kaseya-password")
    assert str(raised.value) == (f"kaseya.password: secret file {deployment.folder}/secrets/kaseya-password cannot "
                                 "be read (No such file or directory)")


def test_a_run_makes_each_systems_client_once_and_closes_it_when_the_run_ends(monkeypatch, tmp_path):
    closed: list[object] = []
    for client_class in (KaseyaClient, ZomentumClient):
        monkeypatch.setattr(client_class, "close", lambda self, close=client_class.close: (closed.append(self),
                                                                                            close(self)))
    made: dict[str, list[object]] = {"kaseya": [], "zomentum": []}

    @dg.asset
    def two_steps_worth(kaseya: KaseyaResource, zomentum: ZomentumResource, state: StateStoreResource) -> None:
        for _ in range(2):  # no network: a client logs in and takes a token on its first request only
            made["kaseya"].append(kaseya.client(state))
            made["zomentum"].append(zomentum.client())
        assert closed == []  # callers do not close the run's clients

    resources = {
        "kaseya": KaseyaResource(base_url="https://kaseya.invalid", username="api", password="pw", tenant="MSP"),
        "zomentum": ZomentumResource(base_url="https://zomentum.invalid", refresh_token="refresh"),
        "state": StateStoreResource(duckdb_path=str(tmp_path / "zk.duckdb"), settings_path=str(tmp_path / "s.yaml")),
    }
    assert dg.materialize([two_steps_worth], resources=resources).success
    assert made["kaseya"][0] is made["kaseya"][1] and made["zomentum"][0] is made["zomentum"][1]
    assert len(closed) == 2 and {id(c) for c in closed} == {id(made["kaseya"][0]), id(made["zomentum"][0])}
