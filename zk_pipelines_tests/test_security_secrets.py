"""Secrets in every form they travel in (docs/security.md): redaction of the raw, URL-encoded, form-encoded,
JSON-escaped and base64 (Basic header) forms; the word "password" left alone; no configuration object's repr
shows a secret; an error answer that quotes the request back (the sandboxes' `echo_request`) leaves no secret
in the error."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, quote_plus, urlencode

import pytest

from zk_pipelines.clients.http import ApiError
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import (
    ConfigurationError,
    KaseyaCredentials,
    TenantConfig,
    ZomentumCredentials,
)
from zk_pipelines.secrets import MASK, Secret, redact
from zk_pipelines_tests.fixtures.hostile import Answer

# Every character that one encoding or another rewrites: a space, quotes, a backslash, '+', '&', '/', '%',
# '@', non-ASCII.
PASSWORD = 'p@ss "wo/rd"+&100%\\é-Xq81'


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("form", [
    pytest.param(PASSWORD, id="raw"),
    pytest.param(quote(PASSWORD, safe=""), id="url-encoded"),
    pytest.param(quote(PASSWORD), id="url-encoded-path"),
    pytest.param(urlencode({"Password": PASSWORD}), id="form-encoded"),
    pytest.param(quote_plus(PASSWORD), id="quote-plus"),
    pytest.param(json.dumps({"Password": PASSWORD}), id="json-escaped"),
    pytest.param(json.dumps({"Password": PASSWORD}, ensure_ascii=False), id="json-utf8"),
    pytest.param(json.dumps(json.dumps({"Password": PASSWORD})), id="json-in-json"),
    pytest.param(repr({"Password": PASSWORD}), id="python-repr"),
    pytest.param(f"Authorization: {basic('api.user', PASSWORD)}", id="basic-header"),
    pytest.param(base64.b64encode(f"xy:{PASSWORD}:z".encode()).decode(), id="base64-at-offset"),
])
def test_every_form_a_secret_travels_in_is_masked(form):
    text = f"the server said: {form} (end)"
    redacted = redact(text, [Secret(PASSWORD)])
    assert PASSWORD not in redacted and form not in redacted
    assert redacted.startswith("the server said: ") and redacted.endswith(" (end)")
    assert MASK in redacted


def test_any_basic_credentials_are_masked_whoever_they_name():
    assert redact(f"sent {basic('someone', 'not-a-known-secret')} to it", []) == f"sent Basic {MASK} to it"


def test_the_word_password_is_not_masked_by_accident(hostile):
    """A refused login used to mask the form's every value: `GrantType=password`, the user name, the tenant."""
    refusal = {"success": False, "result": None, "error": {"code": 401, "message": "Invalid username or password "
                                                           "for api.user at Tenant Ltd"}}
    server = hostile(lambda request: Answer(401, json.dumps(refusal), {"Content-Type": "application/json"}))
    client = KaseyaClient(KaseyaCredentials(server.base_url, "api.user", Secret("wrong-Xq81-secret"), "Tenant Ltd"))
    with pytest.raises(ApiError) as refused:
        client.login()
    assert "Invalid username or password for api.user at Tenant Ltd" in refused.value.message
    assert "wrong-Xq81-secret" not in str(refused.value)


def test_an_error_answer_that_quotes_the_login_back_shows_no_form_of_the_password(kaseya):
    kaseya.state.set_faults(seed=1, rules=[{"kind": "echo_request", "route": "POST /v2/security/authenticate"}])
    try:
        client = KaseyaClient(KaseyaCredentials(kaseya.base_url, kaseya.username, Secret(kaseya.password),
                                                kaseya.tenant))
        with pytest.raises(ApiError) as refused:
            client.login()
    finally:
        kaseya.state.clear_faults()
    text = f"{refused.value} {refused.value!r}"
    assert "echo_request" in text and "Password=" in text  # the server did quote the form back
    assert "GrantType=password" in text
    for form in (kaseya.password, quote_plus(kaseya.password), quote(kaseya.password, safe="")):
        assert form not in text


def test_an_error_answer_that_quotes_a_read_back_shows_no_token(zomentum):
    zomentum.state.set_faults(seed=1, rules=[{"kind": "echo_request", "route": "GET /v2/users"}])
    client = ZomentumClient(ZomentumCredentials(zomentum.base_url, Secret(zomentum.refresh_token)))
    try:
        with pytest.raises(ApiError) as refused:
            client.users()
    finally:
        zomentum.state.clear_faults()
    token = client._access_token.reveal()
    assert "authorization: Bearer" in str(refused.value)  # the header was quoted back...
    assert token not in str(refused.value)  # ...without the token


def test_the_error_text_of_an_answer_without_a_message_is_not_the_answer_body(hostile):
    """A proxy's error page may quote the request (its body, its headers): only the HTTP reason is shown."""
    page = "<html>Bad gateway. Your request was: " + "Authorization: Bearer zat_abcdef123456 " * 3 + "</html>"
    server = hostile(lambda request: Answer(502, page, {"Content-Type": "text/html"}))
    client = ZomentumClient(ZomentumCredentials(server.base_url, Secret("zrt_refresh"), Secret("zat_other")))
    with pytest.raises(ApiError) as refused:
        client.create("client/companies", {"name": "X"})
    assert "Bad Gateway" in str(refused.value)
    assert "Your request was" not in str(refused.value) and "zat_abcdef123456" not in str(refused.value)


def test_no_configuration_object_shows_a_secret_in_its_repr(tmp_path: Path):
    env = {"KASEYA_BASE_URL": "https://bms.example", "KASEYA_USERNAME": "api.user", "KASEYA_PASSWORD": PASSWORD,
           "KASEYA_TENANT": "Tenant", "KASEYA_MFA_CODE": "mfa-123456", "ZOMENTUM_BASE_URL": "https://z.example",
           "ZOMENTUM_REFRESH_TOKEN": "zrt_refresh_secret", "ZOMENTUM_ACCESS_TOKEN": "zat_access_secret",
           "ZK_SETTINGS": str(tmp_path / "s.yaml"), "ZK_DUCKDB_PATH": str(tmp_path / "t.duckdb")}
    config = TenantConfig.from_env(env)
    objects = [config, config.kaseya, config.zomentum, replace(config.kaseya, hourly_call_budget=5),
               KaseyaClient(config.kaseya), ZomentumClient(config.zomentum), Secret(PASSWORD)]
    secrets = [PASSWORD, "mfa-123456", "zrt_refresh_secret", "zat_access_secret"]
    for thing in objects:
        for text in (repr(thing), str(thing), f"{thing}", f"{thing!r:>20}"):
            assert redact(text, secrets) == text, f"{type(thing).__name__} shows a secret: {text}"
    assert "api.user" in repr(config.kaseya)  # what is not secret still shows
    # A password in the base URL would be in every repr (and sent as Basic auth): refused, and not echoed.
    with pytest.raises(ConfigurationError) as refused:
        KaseyaCredentials(f"https://api.user:{quote(PASSWORD, safe='')}@bms.example", "api.user", Secret(PASSWORD),
                          "Tenant")
    assert "KASEYA_BASE_URL" in str(refused.value) and redact(str(refused.value), secrets) == str(refused.value)
