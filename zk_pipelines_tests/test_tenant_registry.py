"""The tenant registry (`ZK_TENANTS`): its format, the `Tenant` each entry becomes, every refusal naming the
tenant and the field, secrets only ever named (never written, never shown), and the deployment without a
registry serving today's single tenant from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from zk_pipelines.config import DEFAULT_DUCKDB_PATH, ConfigurationError, TenantConfig
from zk_pipelines.sandbox.registry import registry_text, secret_variables
from zk_pipelines.secrets import Secret
from zk_pipelines.tenants import (
    DEFAULT_PARTITIONS_START,
    FromEnv,
    FromFile,
    KaseyaSources,
    RegistryError,
    Tenant,
    ZomentumSources,
    deployment_tenants,
    load_registry,
    registry_from_text,
    single_tenant,
)

ACME = """\
tenants:
  acme:
    partitions_start: "2026-12-01-00:00"
    settings: settings/acme.yaml
    state: state/acme.duckdb
    kaseya:
      base_url: https://api.bms.kaseya.com
      username: api@acme.example
      tenant: Acme MSP
      password: {file: secrets/acme/kaseya-password}
      mfa_code: {env: ACME_KASEYA_MFA_CODE}
      hourly_call_budget: 1200
    zomentum:
      base_url: {env: ACME_ZOMENTUM_URL}
      refresh_token: {env: ACME_ZOMENTUM_REFRESH_TOKEN}
      access_token: {file: /var/run/secrets/zk/acme/zomentum-access-token}
"""

SECOND = """\
  beta:
    partitions_start: "2026-12-02-05:00"
    settings: /etc/zk/beta.yaml
    state: {env: BETA_DUCKDB_PATH}
    state_url: {file: /var/run/secrets/zk/beta/state-url}
    kaseya:
      base_url: https://api.bmsemea.kaseya.com
      username: api@beta.example
      tenant: Beta IT
      password: {env: BETA_KASEYA_PASSWORD}
    zomentum:
      base_url: https://api.zomentum.com
      refresh_token: {env: BETA_ZOMENTUM_REFRESH_TOKEN}
"""


def load(text: str, folder: Path = Path("/deploy")) -> tuple[Tenant, ...]:
    return registry_from_text(text, "tenants.yaml", folder)


def problems(text: str) -> list[str]:
    with pytest.raises(RegistryError) as raised:
        load(text)
    assert str(raised.value).startswith("tenant registry tenants.yaml: ")
    return raised.value.problems


def test_an_entry_becomes_a_tenant_with_paths_beside_the_registry_and_secrets_only_named():
    acme, beta = load(ACME + SECOND)
    assert acme == Tenant(
        key="acme", partitions_start="2026-12-01-00:00", settings=Path("/deploy/settings/acme.yaml"),
        state=Path("/deploy/state/acme.duckdb"),
        kaseya=KaseyaSources(base_url="https://api.bms.kaseya.com", username="api@acme.example", tenant="Acme MSP",
                             password=FromFile(Path("/deploy/secrets/acme/kaseya-password")),
                             mfa_code=FromEnv("ACME_KASEYA_MFA_CODE"), hourly_call_budget=1200),
        zomentum=ZomentumSources(base_url=FromEnv("ACME_ZOMENTUM_URL"),
                                 refresh_token=FromEnv("ACME_ZOMENTUM_REFRESH_TOKEN"),
                                 access_token=FromFile(Path("/var/run/secrets/zk/acme/zomentum-access-token"))))
    assert (beta.settings, beta.state, beta.kaseya.mfa_code, beta.kaseya.hourly_call_budget) == (
        Path("/etc/zk/beta.yaml"), FromEnv("BETA_DUCKDB_PATH"), None, None)
    assert (acme.state_url, acme.state_schema) == (None, None)  # its state stays in its DuckDB file
    assert (beta.state_url, beta.state_schema) == (FromFile(Path("/var/run/secrets/zk/beta/state-url")), "zk_beta")
    assert beta.secret_sources() == {"kaseya.password": FromEnv("BETA_KASEYA_PASSWORD"),
                                     "zomentum.refresh_token": FromEnv("BETA_ZOMENTUM_REFRESH_TOKEN"),
                                     "state_url": FromFile(Path("/var/run/secrets/zk/beta/state-url"))}


def test_the_registry_zk_sandbox_writes_loads_as_its_tenants(tmp_path):
    environments = {key: {"KASEYA_BASE_URL": "http://127.0.0.1:8601", "KASEYA_USERNAME": f"api{n}@msp.example",
                          "KASEYA_TENANT": f"Sandbox MSP {n:02d}", "ZOMENTUM_BASE_URL": "http://127.0.0.1:8602"}
                    for n, key in enumerate(("sandbox_01", "sandbox_02"), start=1)}
    path = tmp_path / "tenants.yaml"
    path.write_text(registry_text(environments, "2026-12-07-10:00", tmp_path / "settings.yaml"), encoding="utf-8")
    tenants = load_registry(path)
    assert [t.key for t in tenants] == ["sandbox_01", "sandbox_02"]
    second = tenants[1]
    assert (second.partitions_start, second.settings, second.state) == (
        "2026-12-07-10:00", tmp_path / "settings.yaml", tmp_path / "state" / "sandbox_02.duckdb")
    assert (second.kaseya.password, second.zomentum.refresh_token) == tuple(
        FromEnv(name) for name in secret_variables("sandbox_02").values())
    assert deployment_tenants({"ZK_TENANTS": str(path)}) == tenants


def test_a_tenants_configuration_reads_its_environment_variables_and_secret_files(tmp_path):
    (tmp_path / "secrets" / "acme").mkdir(parents=True)
    (tmp_path / "secrets" / "acme" / "kaseya-password").write_text("kaseya-pass\n")  # kubectl keeps the newline
    acme = load(ACME.replace("/var/run/secrets/zk/acme/zomentum-access-token", "secrets/acme/zomentum-access-token"),
                tmp_path)[0]
    env = {"ACME_ZOMENTUM_URL": "https://api.zomentum.com", "ACME_ZOMENTUM_REFRESH_TOKEN": "refresh-1",
           "ACME_KASEYA_MFA_CODE": "123456"}
    config = acme.config(env)  # the access token's file is absent: optional, so none
    assert config == TenantConfig(
        kaseya=config.kaseya, zomentum=config.zomentum, settings_path=tmp_path / "settings" / "acme.yaml",
        duckdb_path=tmp_path / "state" / "acme.duckdb")
    assert (config.kaseya.password, config.kaseya.mfa_code, config.kaseya.tenant, config.kaseya.hourly_call_budget) \
        == (Secret("kaseya-pass"), Secret("123456"), "Acme MSP", 1200)
    assert (config.zomentum.base_url, config.zomentum.refresh_token, config.zomentum.access_token) == (
        "https://api.zomentum.com", Secret("refresh-1"), None)


@pytest.mark.parametrize(("change", "expected"), [
    (lambda env, folder: env.pop("ACME_ZOMENTUM_REFRESH_TOKEN"),
     "tenant 'acme', zomentum.refresh_token: environment variable ACME_ZOMENTUM_REFRESH_TOKEN is not set"),
    (lambda env, folder: (folder / "secrets" / "acme" / "kaseya-password").unlink(),
     "tenant 'acme', kaseya.password: secret file {folder}/secrets/acme/kaseya-password cannot be read "
     "(No such file or directory)"),
    (lambda env, folder: (folder / "secrets" / "acme" / "kaseya-password").write_text(" \n"),
     "tenant 'acme', kaseya.password: secret file {folder}/secrets/acme/kaseya-password is empty"),
    (lambda env, folder: (folder / "secrets" / "acme" / "kaseya-password").write_bytes(b"\xff\xfe-s3cr3t-pass"),
     "tenant 'acme', kaseya.password: secret file {folder}/secrets/acme/kaseya-password is not UTF-8 text"),
    (lambda env, folder: env.update(ACME_ZOMENTUM_URL="http://zomentum.example"),
     "tenant 'acme': ZOMENTUM_BASE_URL 'http://zomentum.example' cannot be used: plain http would send credentials "
     "unencrypted to zomentum.example; use https (http is accepted for loopback addresses, or anywhere with "
     "ZK_ALLOW_INSECURE_HTTP=1)"),
])
def test_a_value_a_run_cannot_read_is_one_line_naming_the_tenant_field_and_source(tmp_path, change, expected):
    (tmp_path / "secrets" / "acme").mkdir(parents=True)
    (tmp_path / "secrets" / "acme" / "kaseya-password").write_text("s3cr3t-pass")
    acme = load(ACME, tmp_path)[0]
    env = {"ACME_ZOMENTUM_URL": "https://api.zomentum.com", "ACME_ZOMENTUM_REFRESH_TOKEN": "refresh-1"}
    change(env, tmp_path)
    with pytest.raises(ConfigurationError) as raised:
        acme.config(env)
    assert str(raised.value) == expected.format(folder=tmp_path)
    assert "s3cr3t" not in str(raised.value) and "refresh-1" not in str(raised.value)


def _edit(old: str, new: str, text: str = ACME) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize(("text", "expected"), [
    (_edit("password: {file: secrets/acme/kaseya-password}", "password: hunter2-secret"),
     ["tenant 'acme', kaseya.password: a secret is never written in the registry; name where it lives: "
      "{env: NAME} or {file: PATH}"]),
    (_edit("refresh_token: {env: ACME_ZOMENTUM_REFRESH_TOKEN}", "refresh_token: {value: hunter2-secret}"),
     ["tenant 'acme', zomentum.refresh_token: is a mapping of value; expected {env: NAME} or {file: PATH}"]),
    (_edit("username: api@acme.example", "username: {file: user.txt}"),
     ["tenant 'acme', kaseya.username: is a mapping of file; expected {env: NAME}"]),
    (_edit("mfa_code: {env: ACME_KASEYA_MFA_CODE}", "mfa_code: {env: ACME-MFA}"),
     ["tenant 'acme', kaseya.mfa_code: 'ACME-MFA' is not an environment variable's name (letters, digits, _)"]),
    (_edit("    settings: settings/acme.yaml\n", "    setings: settings/acme.yaml\n"),
     ["tenant 'acme', setings: is not a field (did you mean 'settings'?); expected partitions_start, settings, "
      "state, state_url, state_schema, kaseya, zomentum", "tenant 'acme', settings: is missing"]),
    (_edit("      tenant: Acme MSP\n", ""), ["tenant 'acme', kaseya.tenant: is missing"]),
    (_edit('"2026-12-01-00:00"', '"2026-12-01 00:00"'),
     ["tenant 'acme', partitions_start: is '2026-12-01 00:00'; expected the onboarding hour (UTC) as "
      "YYYY-MM-DD-HH:00, quoted"]),
    (_edit('"2026-12-01-00:00"', '"2026-12-01-00:30"'),
     ["tenant 'acme', partitions_start: is '2026-12-01-00:30'; expected the onboarding hour (UTC) as "
      "YYYY-MM-DD-HH:00, quoted"]),
    (_edit("  acme:", "  Acme-MSP:"),
     ["tenant 'Acme-MSP', (name): expected lowercase letters, digits and underscores, starting with a letter, at "
      "most 40 characters"]),
    (_edit("hourly_call_budget: 1200", "hourly_call_budget: 1600"),
     ["tenant 'acme', kaseya.hourly_call_budget: is 1600; expected a whole number of calls per hour from 1 to "
      "1500 (Kaseya allows 1500)"]),
    (_edit("state: state/acme.duckdb", "state_url: postgresql://zk:pa55word@db.internal/zk"),
     ["tenant 'acme', state: is missing", "tenant 'acme', state_url: the URL carries a password; name where it "
      "lives: {env: NAME} or {file: PATH} for the whole URL"]),
    (_edit("state: state/acme.duckdb", "state: state/acme.duckdb\n    state_url: mysql://db.internal/zk"),
     ["tenant 'acme', state_url: is not a PostgreSQL URL (postgresql://HOST/DATABASE)"]),
    (_edit("state: state/acme.duckdb", "state: postgresql://db.internal/zk"),
     ["tenant 'acme', state: is a URL; expected a file path (a PostgreSQL state goes in state_url)"]),
    (_edit("state: state/acme.duckdb", "state: a.duckdb\n    state_url: {env: U}\n    state_schema: Acme"),
     ["tenant 'acme', state_schema: is 'Acme'; expected lower-case letters, digits and '_', starting with a "
      "letter, at most 63 characters"]),
    (_edit("state: state/acme.duckdb", "state: a.duckdb\n    state_url: {env: BETA_URL}\n    state_schema: zk_beta")
     + _edit("/var/run/secrets/zk/beta/state-url}", "BETA_URL}", _edit("{file: ", "{env: ", SECOND)),
     ["tenant 'beta', state_schema: schema zk_beta of environment variable BETA_URL is also tenant 'acme''s "
      "state_schema; each tenant's credentials and state are its own"]),
    (_edit("    kaseya:\n", "    kaseya: []\n    extra:\n"),
     ["tenant 'acme', extra: is not a field; expected partitions_start, settings, state, state_url, state_schema, "
      "kaseya, zomentum",
      "tenant 'acme', kaseya: is a list; expected a mapping of base_url, username, tenant, password, mfa_code, "
      "hourly_call_budget"]),
    ("tenants: {}\n", ["tenants: is a mapping; expected each tenant's name with its entry, at least one"]),
    ("- acme\n", ["(top level): is a list; expected a mapping with `tenants:`"]),
    ("tenant:\n  acme: {}\n", ["tenant: is not a field (did you mean 'tenants'?); expected tenants",
                               "tenants: is missing"]),
    (ACME + ACME.split("\n", 1)[1], ["tenant 'acme', (name): is listed twice (lines 2 and 17); one entry a tenant"]),
    (ACME + _edit("{env: BETA_ZOMENTUM_REFRESH_TOKEN}", "{env: ACME_ZOMENTUM_REFRESH_TOKEN}", SECOND),
     ["tenant 'beta', zomentum.refresh_token: environment variable ACME_ZOMENTUM_REFRESH_TOKEN is also tenant "
      "'acme''s zomentum.refresh_token; each tenant's credentials and state are its own"]),
    (ACME + _edit("state: {env: BETA_DUCKDB_PATH}", "state: ./state/../state/acme.duckdb", SECOND),
     ["tenant 'beta', state: state /deploy/state/acme.duckdb is also tenant 'acme''s state; each tenant's "
      "credentials and state are its own"]),
    (ACME + _edit("base_url: https://api.bmsemea.kaseya.com\n      username: api@beta.example\n      tenant: Beta IT",
                  "base_url: https://api.bms.kaseya.com/\n      username: api@beta.example\n      tenant: acme msp",
                  SECOND),
     ["tenant 'beta', kaseya.tenant: Kaseya company 'acme msp' is also tenant 'acme''s kaseya.tenant; each "
      "tenant's credentials and state are its own"]),
])
def test_a_registry_that_cannot_be_used_is_refused_with_every_problem_naming_tenant_and_field(text, expected):
    found = problems(text)
    assert found == expected
    assert not any("hunter2" in line or "pa55word" in line for line in found)


def test_every_problem_of_every_tenant_is_listed_at_once():
    text = _edit("password: {file: secrets/acme/kaseya-password}", "password: x") + _edit(
        '"2026-12-02-05:00"', "yesterday", SECOND)
    assert problems(text) == [
        "tenant 'acme', kaseya.password: a secret is never written in the registry; name where it lives: "
        "{env: NAME} or {file: PATH}",
        "tenant 'beta', partitions_start: is 'yesterday'; expected the onboarding hour (UTC) as YYYY-MM-DD-HH:00, "
        "quoted"]


def test_a_registry_file_that_cannot_be_read_says_so(tmp_path):
    with pytest.raises(RegistryError, match=r"tenants\.yaml: 1 problem:\n  - the file does not exist \(ZK_TENANTS "
                                            r"names it\)$"):
        deployment_tenants({"ZK_TENANTS": str(tmp_path / "tenants.yaml")})
    (tmp_path / "tenants.yaml").write_text("tenants:\n  acme: {state: [\n")
    with pytest.raises(RegistryError, match=r"  - not valid YAML at line 3, column 1 \("):
        load_registry(tmp_path / "tenants.yaml")


SINGLE_ENV = {"KASEYA_BASE_URL": "https://api.bms.kaseya.com", "KASEYA_USERNAME": "api@msp.example",
              "KASEYA_PASSWORD": "pw-1", "KASEYA_TENANT": "MSP", "ZOMENTUM_BASE_URL": "https://api.zomentum.com",
              "ZOMENTUM_REFRESH_TOKEN": "rt-1", "ZK_SETTINGS": "settings.yaml"}


@pytest.mark.parametrize("extra", [{}, {"KASEYA_MFA_CODE": "654321", "KASEYA_HOURLY_CALL_BUDGET": "900",
                                        "ZOMENTUM_ACCESS_TOKEN": "at-1", "ZK_DUCKDB_PATH": "/data/t.duckdb",
                                        "ZK_PARTITIONS_START": "2026-11-30-08:00",
                                        "ZK_STATE_URL": "postgresql://zk:pw-2@db/zk", "ZK_STATE_SCHEMA": "zk_msp"}])
def test_without_a_registry_the_deployment_serves_the_single_tenant_of_the_environment(extra):
    env = {**SINGLE_ENV, **extra}
    (tenant,) = deployment_tenants(env)
    assert tenant == single_tenant(env)
    assert (tenant.key, tenant.partitions_start) == ("default",
                                                    extra.get("ZK_PARTITIONS_START", DEFAULT_PARTITIONS_START))
    assert tenant.kaseya.password == FromEnv("KASEYA_PASSWORD")
    assert tenant.state == (FromEnv("ZK_DUCKDB_PATH") if extra else DEFAULT_DUCKDB_PATH)
    assert (tenant.kaseya.mfa_code is None) == (not extra)
    assert (tenant.state_url, tenant.state_schema) == ((FromEnv("ZK_STATE_URL"), FromEnv("ZK_STATE_SCHEMA")) if extra
                                                       else (None, None))
    assert tenant.config(env) == TenantConfig.from_env(env)
