"""A registry tenant's refused credentials are named where they were read: the tenant, the registry field and
its environment variable or secret file, never the single tenant's variables, never the value.

Against the sandboxes: one tenant reads a wrong password and refresh token from environment variables of its
own, the other from mounted secret files."""

from __future__ import annotations

import pytest

from zk_pipelines.clients.http import AuthenticationError
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.tenants import Tenant, registry_from_text

WRONG_PASSWORD = "wrong-password-5831"
WRONG_TOKEN = "revoked-refresh-token-7702"
REGISTRY = """
tenants:
  {key}:
    partitions_start: "2026-12-01-00:00"
    settings: settings.yaml
    state: state.duckdb
    kaseya: {{base_url: "{kaseya}", username: "{username}", tenant: "{company}", password: {password}}}
    zomentum: {{base_url: "{zomentum}", refresh_token: {token}}}
"""
SOURCES = {  # the registry's sources, and how a message names them
    "envy": ("{env: ENVY_KASEYA_PASSWORD}", "environment variable ENVY_KASEYA_PASSWORD",
             "{env: ENVY_ZOMENTUM_REFRESH_TOKEN}", "environment variable ENVY_ZOMENTUM_REFRESH_TOKEN"),
    "filed": ("{file: secrets/kaseya-password}", "secret file {folder}/secrets/kaseya-password",
              "{file: secrets/zomentum-refresh-token}", "secret file {folder}/secrets/zomentum-refresh-token"),
}
ENV = {"ENVY_KASEYA_PASSWORD": WRONG_PASSWORD, "ENVY_ZOMENTUM_REFRESH_TOKEN": WRONG_TOKEN}


@pytest.fixture(params=["envy", "filed"])
def tenant(request, sandboxes, tmp_path) -> tuple[Tenant, str, str]:
    """The tenant with wrong credentials from one kind of source, and where a message should say each is read."""
    kaseya, zomentum = sandboxes
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "kaseya-password").write_text(WRONG_PASSWORD + "\n")
    (tmp_path / "secrets" / "zomentum-refresh-token").write_text(WRONG_TOKEN + "\n")
    password, password_where, token, token_where = SOURCES[request.param]
    text = REGISTRY.format(key=request.param, kaseya=kaseya.base_url, username=kaseya.username,
                           company=kaseya.tenant, zomentum=zomentum.base_url, password=password, token=token)
    (entry,) = registry_from_text(text, "tenants.yaml", tmp_path)
    return entry, password_where.format(folder=tmp_path), token_where.format(folder=tmp_path)


def refused(call) -> str:
    with pytest.raises(AuthenticationError) as raised:
        call()
    return str(raised.value)


def test_a_refused_kaseya_login_names_the_tenant_and_where_its_password_was_read(tenant):
    entry, password_where, _ = tenant
    config = entry.config(ENV)
    text = refused(lambda: KaseyaClient(config.kaseya).user_info())
    assert f"Check tenant {entry.key}'s kaseya.username (in the registry), kaseya.password ({password_where}) " \
           "and kaseya.tenant (in the registry)" in text
    assert "KASEYA_USERNAME" not in text and WRONG_PASSWORD not in text


def test_a_refused_zomentum_refresh_token_names_the_tenant_and_where_it_was_read(tenant):
    entry, _, token_where = tenant
    config = entry.config(ENV)
    text = refused(lambda: ZomentumClient(config.zomentum).users())
    assert text.endswith(f"and set tenant {entry.key}'s zomentum.refresh_token ({token_where})")
    assert WRONG_TOKEN not in text
