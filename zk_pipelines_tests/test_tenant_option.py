"""`zk COMMAND --tenant NAME` with a tenant registry: every command that acts on one tenant's systems or state
chooses its tenant through one helper (commands/tenant_choice.py). Without `--tenant`, a registry of several
tenants is one error naming them; the named tenant's state, settings and credentials are the ones read, from
its own variables and secret files; a sync is that tenant's run, tagged as its schedule's."""

from __future__ import annotations

import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from zk_pipelines.cli import main
from zk_pipelines.defs.jobs import PULL_TAG
from zk_pipelines.defs.partitions import HOURS_TAG, TENANT_TAG
from zk_pipelines.sandbox.launcher import running_sandboxes
from zk_pipelines.sandbox.registry import SETTINGS_EXAMPLE, write_registry
from zk_pipelines.tenants import REGISTRY_VARIABLE
from zk_pipelines_tests.test_tenant_definitions import REGISTRY  # acme (secrets in variables) and globex (a file)

# Every subcommand that acts on one tenant's systems or state.
COMMANDS = [["sync"], ["check"], ["settings", "check"], ["push", "doc-1", "--dry-run"], ["reconcile", "--dry-run"],
            ["audit"], ["history", "client", "1"], ["state", "status"], ["state", "rebuild"]]


def zk(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def registry(tmp_path, monkeypatch):
    (tmp_path / "tenants.yaml").write_text(REGISTRY)
    for key in ("acme", "globex"):
        shutil.copyfile(SETTINGS_EXAMPLE, tmp_path / f"{key}.yaml")
    for name in ("KASEYA_BASE_URL", "KASEYA_PASSWORD", "ZK_DUCKDB_PATH", "ZK_SETTINGS", "ZK_STATE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(REGISTRY_VARIABLE, str(tmp_path / "tenants.yaml"))
    return tmp_path


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_without_tenant_a_registry_of_several_is_one_error_naming_them(registry, argv):
    status, out, err = zk(*argv)
    assert status == 1 and out == ""
    assert err.strip().endswith("lists 2 tenants: name one with --tenant (acme, globex)"), err


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_a_tenant_not_in_the_registry_is_named_with_the_closest_and_the_list(registry, argv):
    status, _, err = zk(*argv, "--tenant", "acmee")
    assert status == 1
    assert "--tenant acmee: not in the tenant registry" in err and "(did you mean acme?); its tenants: acme, globex" \
        in err, err


def test_without_a_registry_only_the_environments_tenant_can_be_named(tmp_path, monkeypatch):
    monkeypatch.delenv(REGISTRY_VARIABLE, raising=False)
    monkeypatch.setenv("ZK_DUCKDB_PATH", str(tmp_path / "one.duckdb"))
    status, _, err = zk("state", "status", "--tenant", "acme")
    assert status == 1 and "--tenant acme: ZK_TENANTS is not set" in err
    status, out, _ = zk("state", "status", "--tenant", "default")
    assert status == 0 and str(tmp_path / "one.duckdb") in out


def test_state_audit_and_history_read_the_named_tenants_state_without_reading_a_credential(registry):
    # No tenant's password or token is set here: finding a tenant's state reads none.
    status, out, _ = zk("state", "migrate", "--tenant", "globex")
    assert status == 0 and str(registry / "globex.duckdb") in out
    assert (registry / "globex.duckdb").exists() and not (registry / "acme.duckdb").exists()
    status, _, err = zk("audit", "--tenant", "acme")
    assert status == 1 and f"no DuckDB file at {registry / 'acme.duckdb'}" in err
    status, _, err = zk("history", "client", "7", "--tenant", "globex")
    assert status == 1 and f"in the ledger ({registry / 'globex.duckdb'})" in err


def test_a_credential_is_read_from_the_named_tenants_own_source(registry):
    status, _, err = zk("check", "--tenant", "acme")
    assert status == 1 and "tenant 'acme', kaseya.password: environment variable ACME_KASEYA_PASSWORD is not set" \
        in err, err
    status, _, err = zk("check", "--tenant", "globex")
    assert status == 1 and "secret file /var/run/secrets/zk/globex/kaseya-password cannot be read" in err


@pytest.fixture(scope="module")
def sandbox_registry(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tenants")
    with running_sandboxes(seed=7, scale="small", tenants=2) as boxes:
        secrets = write_registry(folder / "tenants.yaml", boxes.tenant_environments(),
                                 datetime.now(UTC) - timedelta(hours=3))
        yield folder, secrets


@pytest.fixture
def sandbox_tenants(sandbox_registry, monkeypatch):
    folder, secrets = sandbox_registry
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(REGISTRY_VARIABLE, str(folder / "tenants.yaml"))
    monkeypatch.setenv("ZK_ALLOW_INSECURE_HTTP", "0")
    return folder


def test_check_and_settings_check_reach_the_named_tenants_systems(sandbox_tenants):
    status, out, err = zk("check", "--tenant", "sandbox_02")
    assert status == 0 and "0 failed" in out, out + err
    status, out, err = zk("settings", "check", "--tenant", "sandbox_02")
    assert status == 0 and "every name resolves" in out, out + err


@pytest.mark.slow
def test_zk_sync_for_a_tenant_is_its_run_tagged_as_its_schedules_into_its_own_state(sandbox_tenants, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    hour = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%d-%H:00")
    status, out, err = zk("sync", "--tenant", "sandbox_02", "--hour", hour)
    assert status == 0, out + err
    assert f"for tenant sandbox_02 into {sandbox_tenants / 'state' / 'sandbox_02.duckdb'}" in out
    assert (sandbox_tenants / "state" / "sandbox_02.duckdb").exists()
    assert not (sandbox_tenants / "state" / "sandbox_01.duckdb").exists()
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
    assert {key: run.tags.get(key) for key in (TENANT_TAG, PULL_TAG, HOURS_TAG, "dagster/partition")} == {
        TENANT_TAG: "sandbox_02", PULL_TAG: "sandbox_02", HOURS_TAG: hour, "dagster/partition": "sandbox_02"}
