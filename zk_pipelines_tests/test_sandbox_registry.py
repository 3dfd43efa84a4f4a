"""`zk sandbox --tenants N --registry PATH` as a person runs it: a real process serving N tenants, the tenant
registry it writes (the pipeline's fixed format, secrets only as `{env: NAME}`), and the export lines that give
those names values; the registry's credentials log in to each tenant with the project's own clients."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import redirect_stderr
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from zk_pipelines.cli import main
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.commands.settings import run_settings_command
from zk_pipelines.config import KaseyaCredentials, ZomentumCredentials
from zk_pipelines.sandbox.launcher import running_sandboxes
from zk_pipelines.sandbox.runtime import free_port
from zk_pipelines.secrets import Secret
from zk_pipelines_tests.zk_sandbox_process import REPO, zk_sandbox

TENANTS = ("sandbox_01", "sandbox_02", "sandbox_03")
COMPANIES = ("Sandbox MSP Ltd", "Sandbox MSP 02", "Sandbox MSP 03")
USERNAMES = ("api.employee@msp.example", "api.employee02@msp.example", "api.employee03@msp.example")


@dataclass(frozen=True)
class Launched:
    registry: Path
    exported: dict[str, str]
    kaseya_url: str
    zomentum_url: str
    started: datetime


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    """`zk sandbox --tenants 3` in its own process, its working directory elsewhere than the registry's."""
    registry = tmp_path_factory.mktemp("deployment") / "tenants.yaml"
    ports = [free_port(), free_port()]
    started = datetime.now(UTC)
    with zk_sandbox("--scale", "small", "--tenants", "3", "--registry", str(registry),
                    "--kaseya-port", str(ports[0]), "--zomentum-port", str(ports[1])) as exported:
        yield Launched(registry, exported, f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}", started)


def entry(launched: Launched, key: str) -> dict:
    return yaml.safe_load(launched.registry.read_text(encoding="utf-8"))["tenants"][key]


def test_the_registry_has_the_pipelines_format_with_every_tenant(launched):
    text = launched.registry.read_text(encoding="utf-8")
    onboarding = entry(launched, "sandbox_01")["partitions_start"]
    assert onboarding in {f"{moment - timedelta(hours=2):%Y-%m-%d-%H}:00"
                          for moment in (launched.started, datetime.now(UTC))}  # `zk sandbox` started meanwhile
    settings = REPO / "settings.example.yaml"
    assert text.splitlines()[:3] == [
        "# zk_pipelines tenant registry (ZK_TENANTS=<this file>): one Dagster deployment, one entry per tenant.",
        "tenants:",
        "  sandbox_01:                                 # the tenant's name: lowercase letters, digits, underscores",
    ]
    assert yaml.safe_load(text) == {"tenants": {key: {
        "partitions_start": onboarding,
        "settings": str(settings),
        "state": f"state/{key}.duckdb",
        "kaseya": {"base_url": launched.kaseya_url, "username": username, "tenant": company,
                   "password": {"env": f"{key.upper()}_KASEYA_PASSWORD"}},
        "zomentum": {"base_url": launched.zomentum_url,
                     "refresh_token": {"env": f"{key.upper()}_ZOMENTUM_REFRESH_TOKEN"}},
    } for key, company, username in zip(TENANTS, COMPANIES, USERNAMES, strict=True)}}
    assert f'    partitions_start: "{onboarding}"      # the onboarding hour (UTC), YYYY-MM-DD-HH:00' in text
    assert (launched.registry.parent / "state").is_dir()


def test_the_registrys_secret_names_are_the_exported_lines_and_no_secret_is_written(launched):
    named = {entry(launched, key)[system][field]["env"] for key in TENANTS
             for system, field in (("kaseya", "password"), ("zomentum", "refresh_token"))}
    assert named == set(launched.exported) - {"ZK_TENANTS"}
    assert launched.exported["ZK_TENANTS"] == str(launched.registry)
    text = launched.registry.read_text(encoding="utf-8")
    assert not any(launched.exported[name] in text for name in named)
    assert len({launched.exported[name] for name in named}) == len(named)


def _credentials(launched: Launched, key: str) -> tuple[KaseyaCredentials, ZomentumCredentials]:
    tenant = entry(launched, key)
    kaseya, zomentum = tenant["kaseya"], tenant["zomentum"]
    return (KaseyaCredentials(base_url=kaseya["base_url"], username=kaseya["username"], tenant=kaseya["tenant"],
                              password=Secret(launched.exported[kaseya["password"]["env"]])),
            ZomentumCredentials(base_url=zomentum["base_url"],
                                refresh_token=Secret(launched.exported[zomentum["refresh_token"]["env"]])))


def test_each_tenants_registry_credentials_log_in_to_its_own_records(launched):
    account_names, client_ids = {}, {}
    for number, key in enumerate(TENANTS, start=1):
        kaseya_credentials, zomentum_credentials = _credentials(launched, key)
        kaseya = KaseyaClient(kaseya_credentials)
        assert kaseya.user_info()["businessName"] == COMPANIES[number - 1]
        account_names[key] = {a["accountName"] for a in kaseya.iter_accounts()}
        client_ids[key] = {c["id"] for c in ZomentumClient(zomentum_credentials).clients()}
        kaseya.close()
        if number > 1:
            assert all(name.endswith(f"({number:02d})") for name in account_names[key])
    assert all(not (account_names[a] & account_names[b]) and not (client_ids[a] & client_ids[b])
               for a in TENANTS for b in TENANTS if a < b)


@pytest.mark.parametrize("key", ["sandbox_02", "sandbox_03"])
def test_the_shared_settings_example_resolves_in_every_tenant(launched, key):
    kaseya, zomentum = _credentials(launched, key)
    env = {"KASEYA_BASE_URL": kaseya.base_url, "KASEYA_USERNAME": kaseya.username, "KASEYA_TENANT": kaseya.tenant,
           "KASEYA_PASSWORD": kaseya.password.reveal(), "ZOMENTUM_BASE_URL": zomentum.base_url,
           "ZOMENTUM_REFRESH_TOKEN": zomentum.refresh_token.reveal(), "ZK_SETTINGS": entry(launched, key)["settings"]}
    out = io.StringIO()
    assert run_settings_command("check", env, out) == 0, out.getvalue()


@pytest.mark.parametrize("value", ["0", "201", "-3", "x", "1.5", "", "²"])
def test_a_bad_tenant_count_is_one_line_and_starts_nothing(value):
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["sandbox", "--tenants", value, "--kaseya-port", "1", "--zomentum-port", "1"]) == 1
    assert err.getvalue().splitlines() == [f"zk sandbox: --tenants takes a whole number from 1 to 200, not {value!r}"]


def test_two_hundred_tenants_start_at_once_and_the_last_serves_int32_ids():
    began = time.monotonic()
    with running_sandboxes(seed=7, scale="small", tenants=200) as boxes:
        assert time.monotonic() - began < 5  # only tenant 1 is seeded up front (~15 ms a tenant)
        assert len(boxes.kaseya.companies.seeded()) == len(boxes.zomentum.accounts.seeded()) == 1
        environments = boxes.tenant_environments()
        assert list(environments)[-1] == "sandbox_200" and environments["sandbox_01"] == boxes.environment()
        assert len({env["KASEYA_PASSWORD"] for env in environments.values()}) == 200
        last = environments["sandbox_200"]
        kaseya = KaseyaClient(KaseyaCredentials(base_url=last["KASEYA_BASE_URL"], username=last["KASEYA_USERNAME"],
                                                tenant=last["KASEYA_TENANT"],
                                                password=Secret(last["KASEYA_PASSWORD"])))
        assert max(a["id"] for a in kaseya.iter_accounts()) < 2**31
        kaseya.close()
        assert boxes.kaseya.tenant_state(200).tenant.ids.next("stock") < 2**31  # the kind with the highest ids
