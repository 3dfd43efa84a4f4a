"""`zk tenants [--check]`: what a person runs before the registry goes into a deployment: every tenant and
where its values come from, and with --check whether each can be read here; no value is ever printed."""

from __future__ import annotations

from pathlib import Path

from zk_pipelines.cli import main

REPO = Path(__file__).resolve().parents[1]

REGISTRY = """\
tenants:
  acme:
    partitions_start: "2026-12-01-00:00"
    settings: {settings}
    state: state/acme.duckdb
    kaseya:
      base_url: https://api.bms.kaseya.com
      username: api@acme.example
      tenant: Acme MSP
      password: {{file: secrets/acme-kaseya-password}}
    zomentum:
      base_url: https://api.zomentum.com
      refresh_token: {{env: ACME_ZOMENTUM_REFRESH_TOKEN}}
  beta:
    partitions_start: "2026-12-02-00:00"
    settings: beta.settings.yaml
    state: state/beta.duckdb
    kaseya:
      base_url: https://api.bms.kaseya.com
      username: api@beta.example
      tenant: Beta IT
      password: {{env: BETA_KASEYA_PASSWORD}}
    zomentum:
      base_url: https://api.zomentum.com
      refresh_token: {{env: BETA_ZOMENTUM_REFRESH_TOKEN}}
"""


def test_zk_tenants_lists_each_tenants_sources_and_check_says_which_cannot_be_used(tmp_path, monkeypatch, capsys):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "acme-kaseya-password").write_text("acme-pass-1\n")
    (tmp_path / "tenants.yaml").write_text(REGISTRY.format(settings=REPO / "settings.example.yaml"))
    monkeypatch.setenv("ZK_TENANTS", str(tmp_path / "tenants.yaml"))
    monkeypatch.setenv("ACME_ZOMENTUM_REFRESH_TOKEN", "acme-token-1")
    monkeypatch.setenv("BETA_KASEYA_PASSWORD", "beta-pass-1")
    monkeypatch.delenv("BETA_ZOMENTUM_REFRESH_TOKEN", raising=False)

    assert main(["tenants"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == [
        f"acme: onboarded 2026-12-01-00:00, settings {REPO}/settings.example.yaml, state {tmp_path}/state/acme.duckdb",
        f"  kaseya.password: secret file {tmp_path}/secrets/acme-kaseya-password",
        "  zomentum.refresh_token: environment variable ACME_ZOMENTUM_REFRESH_TOKEN",
        f"beta: onboarded 2026-12-02-00:00, settings {tmp_path}/beta.settings.yaml, state {tmp_path}/state/beta.duckdb",
        "  kaseya.password: environment variable BETA_KASEYA_PASSWORD",
        "  zomentum.refresh_token: environment variable BETA_ZOMENTUM_REFRESH_TOKEN",
    ]

    assert main(["tenants", "--check"]) == 1
    checked = capsys.readouterr().out
    assert checked.splitlines()[3:] == [
        "  ok: every value and the settings file read here",
        listed[3], listed[4], listed[5],
        "  cannot be used: tenant 'beta', zomentum.refresh_token: environment variable BETA_ZOMENTUM_REFRESH_TOKEN "
        "is not set",
        "1 of 2 tenants ready",
    ]
    monkeypatch.setenv("BETA_ZOMENTUM_REFRESH_TOKEN", "beta-token-1")
    assert main(["tenants", "--check"]) == 1  # now its settings file is the problem
    assert f"  cannot be used: {tmp_path}/beta.settings.yaml: (file): does not exist" in capsys.readouterr().out
    for secret in ("acme-pass-1", "acme-token-1", "beta-pass-1", "beta-token-1"):
        assert secret not in listed and secret not in checked


def test_zk_tenants_lists_every_registry_problem_one_a_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "tenants.yaml").write_text("tenants:\n  acme:\n    settings: a.yaml\n    kaseya: {password: pw}\n")
    monkeypatch.setenv("ZK_TENANTS", str(tmp_path / "tenants.yaml"))
    assert main(["tenants"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"tenant registry {tmp_path}/tenants.yaml: 7 problems",
        "  tenant 'acme', partitions_start: is missing",
        "  tenant 'acme', state: is missing",
        "  tenant 'acme', zomentum: is missing",
        "  tenant 'acme', kaseya.base_url: is missing",
        "  tenant 'acme', kaseya.username: is missing",
        "  tenant 'acme', kaseya.tenant: is missing",
        "  tenant 'acme', kaseya.password: a secret is never written in the registry; name where it lives: "
        "{env: NAME} or {file: PATH}",
    ]
