"""Hostile configuration gets one line naming the variable, file, key or value, and no traceback
(docs/security.md): base URLs that are not https URLs (or plain http off this machine), ports out of range,
call budgets that are not budgets, environment values that are not UTF-8, settings YAML nested 50k deep, link
templates with a format spec, `--since` past year 1, DuckDB paths that are not DuckDB files; an unexpected
error is one line plus the file the traceback went to."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from zk_pipelines import cli
from zk_pipelines.config import ConfigurationError, TenantConfig
from zk_pipelines.domain.settings import SettingsError
from zk_pipelines.domain.settings_file import load_settings, settings_from_text
from zk_pipelines_tests.pipeline_harness import REPO, write_settings

PASSWORD = "config-test-Password-91!"
BASE_ENV = {"KASEYA_BASE_URL": "https://bms.example", "KASEYA_USERNAME": "api.user", "KASEYA_PASSWORD": PASSWORD,
            "KASEYA_TENANT": "Tenant", "ZOMENTUM_BASE_URL": "https://api.zomentum.example",
            "ZOMENTUM_REFRESH_TOKEN": "zrt-config-test-token"}


def zk(monkeypatch, capsys, argv: list[str], **env: str) -> tuple[int, str]:
    """Run `zk` in this process with the environment given (and nothing else of ours); (status, stderr)."""
    for name in (*BASE_ENV, "ZK_SETTINGS", "ZK_DUCKDB_PATH", "ZK_ALLOW_INSECURE_HTTP", "KASEYA_HOURLY_CALL_BUDGET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status = cli.main(argv)
    err = capsys.readouterr().err
    return status, err


def assert_one_line(err: str, *expected: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0], lines[0]
    assert PASSWORD not in err


@pytest.mark.parametrize("variable, value, reason", [
    ("KASEYA_BASE_URL", "not a url", "spaces"),
    ("KASEYA_BASE_URL", "bms.example", "scheme must be https"),
    ("KASEYA_BASE_URL", "ftp://bms.example", "scheme must be https, not 'ftp'"),
    ("KASEYA_BASE_URL", "file:///etc/passwd", "scheme must be https"),
    ("KASEYA_BASE_URL", "https://bms.example:99999", "not a valid address"),
    ("KASEYA_BASE_URL", "https://bms.example:0", "port 0"),
    ("KASEYA_BASE_URL", "https://bms.example:http", "not a valid address"),
    ("KASEYA_BASE_URL", "https://", "names no host"),
    ("KASEYA_BASE_URL", "https://bms.example/?tenant=x", "query or fragment"),
    ("KASEYA_BASE_URL", f"https://api.user:{PASSWORD}@bms.example", "carries credentials"),
    ("KASEYA_BASE_URL", "http://bms.example", "plain http would send credentials unencrypted to bms.example"),
    ("ZOMENTUM_BASE_URL", "http://10.0.0.5:8602", "plain http"),
    ("ZOMENTUM_BASE_URL", "gopher://z", "scheme must be https"),
    ("KASEYA_HOURLY_CALL_BUDGET", "abc", "expected a whole number"),
    ("KASEYA_HOURLY_CALL_BUDGET", "0", "expected a whole number"),
    ("KASEYA_HOURLY_CALL_BUDGET", "-5", "expected a whole number"),
    ("ZK_ALLOW_INSECURE_HTTP", "maybe", "expected 1 or 0"),
    ("KASEYA_PASSWORD", b"caf\xe9-latin-1".decode("utf-8", "surrogateescape"), "is not UTF-8 text"),
    ("KASEYA_TENANT", b"\xff\xfe".decode("utf-8", "surrogateescape"), "is not UTF-8 text"),
])
def test_a_hostile_configuration_value_is_one_line_naming_it(monkeypatch, capsys, variable, value, reason):
    with pytest.raises(ConfigurationError) as refused:
        TenantConfig.from_env({**BASE_ENV, variable: value})
    assert variable in str(refused.value) and reason in str(refused.value)
    assert PASSWORD not in str(refused.value)
    status, err = zk(monkeypatch, capsys, ["check"], **{**BASE_ENV, variable: value})
    assert status == 1
    assert_one_line(err, "zk check: ", variable, reason)


def test_plain_http_is_accepted_for_this_machine_and_with_the_explicit_setting():
    for url in ("http://127.0.0.1:8601", "http://127.8.9.10", "http://localhost:8602", "http://[::1]:8601"):
        assert TenantConfig.from_env({**BASE_ENV, "KASEYA_BASE_URL": url}).kaseya.base_url == url
    remote = {**BASE_ENV, "KASEYA_BASE_URL": "http://bms.internal", "ZOMENTUM_BASE_URL": "http://z.internal"}
    config = TenantConfig.from_env({**remote, "ZK_ALLOW_INSECURE_HTTP": "1"})
    assert config.kaseya.allow_insecure_http and config.zomentum.allow_insecure_http
    with pytest.raises(ConfigurationError):
        TenantConfig.from_env({**remote, "ZK_ALLOW_INSECURE_HTTP": "0"})


def test_a_settings_file_nested_50k_deep_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    deep = tmp_path / "deep.yaml"
    deep.write_text("mode: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(SettingsError, match="nests too deep"):
        load_settings(deep)
    status, err = zk(monkeypatch, capsys, ["settings", "show"], **BASE_ENV, ZK_SETTINGS=str(deep))
    assert status == 1
    assert_one_line(err, "zk settings: ", str(deep), "nests too deep")


def test_a_link_template_with_a_format_spec_is_refused_when_the_settings_load(tmp_path, monkeypatch, capsys):
    settings = write_settings(tmp_path / "s.yaml", links={"kaseya": {"account": "{base_url}/crm/accounts/{id:x}"},
                                                          "zomentum": {"client": "{base_url}/c/{id!r}"}})
    with pytest.raises(SettingsError) as refused:
        load_settings(settings)
    assert [problem.path for problem in refused.value.problems] == ["links.kaseya.account", "links.zomentum.client"]
    assert "formats {id}" in str(refused.value)
    database = tmp_path / "t.duckdb"
    duckdb.connect(str(database)).close()
    status, err = zk(monkeypatch, capsys, ["audit"], ZK_SETTINGS=str(settings), ZK_DUCKDB_PATH=str(database))
    assert status == 1
    assert_one_line(err, "zk audit: ", "links.kaseya.account", "{id:x}")


def test_audit_since_before_year_one_is_one_line(tmp_path, monkeypatch, capsys):
    database = tmp_path / "t.duckdb"
    duckdb.connect(str(database)).close()
    status, err = zk(monkeypatch, capsys, ["audit", "--since", "999999999d"], ZK_DUCKDB_PATH=str(database))
    assert status == 1
    assert_one_line(err, "zk audit: ", "999999999d", "before year 1")


def _truncated(path: Path) -> Path:
    with duckdb.connect(str(path)) as connection:
        connection.execute("CREATE SCHEMA audit; "
                           "CREATE TABLE audit.sync_events AS SELECT range AS i FROM range(200000)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


@pytest.mark.parametrize("make, says", [
    (lambda p: (p.write_text("not a database\n"), p)[1], "is not a DuckDB database file"),
    (lambda p: (p.mkdir(), p)[1], "is a directory"),
    (lambda p: (p.write_bytes(b""), p)[1], "is not a DuckDB database file"),
    (_truncated, "is a damaged or truncated DuckDB file"),
])
def test_a_duckdb_path_that_is_not_a_usable_file_is_named_for_what_it_is(tmp_path, monkeypatch, capsys, make, says):
    path = make(tmp_path / "tenant.duckdb")
    started = time.monotonic()
    status, err = zk(monkeypatch, capsys, ["audit"], ZK_DUCKDB_PATH=str(path))
    assert status == 1
    assert_one_line(err, "zk audit: ", str(path), says)
    assert "in use" not in err and time.monotonic() - started < 10  # not taken for a lock, not waited on


def test_zk_sandbox_refuses_a_port_out_of_range_instead_of_running_for_ever(capsys):
    for port in ("99999", "-1", "http"):
        with pytest.raises(SystemExit) as exited:
            cli.main(["sandbox", "--kaseya-port", port])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert "--kaseya-port" in err and "port" in err.splitlines()[-1]


def test_an_unexpected_error_is_one_line_and_its_traceback_goes_to_a_file_without_secrets(monkeypatch, capsys):
    import zk_pipelines.commands.audit

    def broken(*args, **kwargs):
        raise RuntimeError(f"a bug met the password {PASSWORD}")

    monkeypatch.setattr(zk_pipelines.commands.audit, "run_audit", broken)
    status, err = zk(monkeypatch, capsys, ["audit"], **BASE_ENV)
    assert status == 1
    assert_one_line(err, "zk audit: unexpected error (RuntimeError: a bug met the password ***)",
                    "the full traceback is in ")
    written = Path(re.search(r"the full traceback is in (\S+)$", err.strip()).group(1))
    try:
        text = written.read_text()
        assert "Traceback" in text and "in broken" in text and PASSWORD not in text
        assert oct(written.stat().st_mode & 0o777) == oct(0o600)
    finally:
        written.unlink()


def test_the_example_settings_still_load(tmp_path):
    """The example's link templates are plain placeholders: the stricter check refuses none of them."""
    assert settings_from_text((REPO / "settings.example.yaml").read_text())
    assert yaml.safe_load((REPO / "settings.example.yaml").read_text())
    assert os.path.exists(REPO / "settings.example.yaml")
