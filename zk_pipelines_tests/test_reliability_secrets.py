"""Secrets: after a sync and pushes that failed in many ways, the password, the refresh token and every token
the sandboxes issued appear nowhere (log lines, exception texts, run metadata and tags, ledger rows, any DuckDB
table, `zk` output), in no form: raw, URL-encoded, JSON-escaped or base64 (`secret_scan`), also after runs with
wrong credentials, expired tokens, every fault kind and error answers that quote the request back. The clients
verify TLS on every request; the demo's servers listen on 127.0.0.1 only; the sandboxes refuse a request
without a valid token as the real services do."""

from __future__ import annotations

import base64
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import dagster as dg
import pytest
import requests
import yaml
from requests.adapters import HTTPAdapter

from benchmarks.reliability_report import (
    IssuedTokens,
    LogLines,
    WonDocument,
    dagster_text,
    duckdb_text,
    leaks,
    make_won_documents,
)
from zk_pipelines import cli
from zk_pipelines.clients.http import ApiError
from zk_pipelines.clients.kaseya import KASEYA_POLICY, KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import KaseyaCredentials, ZomentumCredentials
from zk_pipelines.push.failures import PushFailed
from zk_pipelines.push.orchestration import PushSources, push_document
from zk_pipelines.sandbox.faults import FAULT_KINDS, SUCCESS_FALSE
from zk_pipelines.sandbox.kaseya.app import ROUTES as KASEYA_ROUTES
from zk_pipelines.sandbox.launcher import running_sandboxes
from zk_pipelines.secrets import Secret, base64_fragments, secret_forms
from zk_pipelines_tests import secret_scan
from zk_pipelines_tests.pipeline_harness import (
    PipelineHarness,
    reset_sandboxes,
    step_errors,
    write_settings,
)

WRONG_PASSWORD = "wrong-password-Xq81!zz"  # a mistyped secret is still a secret
WRONG_REFRESH_TOKEN = "revoked-refresh-token-77ab"
# A wrong password with every character some encoding rewrites: its URL-encoded, JSON-escaped and base64 forms
# all differ from it, so a leak in any of them is a leak the raw search alone would miss.
ENCODED_WRONG_PASSWORD = 'wrong "pa ss"+&=/\\é%-Xq81'


@pytest.mark.slow
def test_no_secret_reaches_logs_errors_run_metadata_the_ledger_duckdb_or_zk_output(sandboxes, tmp_path, capsys,
                                                                                     monkeypatch):
    kaseya, zomentum = reset_sandboxes(sandboxes)
    (document_id,) = make_won_documents(kaseya, zomentum, [WonDocument(True, 0, (("Rack Shelf 1U", 1),))])
    # Failures of every sort: tokens expiring mid-run (renewals), refused and lost writes, server errors.
    kaseya.state.set_faults(seed=2, rules=[
        {"kind": "token_expiry", "rate": 0.05},
        {"kind": "http_error", "rate": 0.05},
        {"kind": "success_false", "route": "POST /v2/crm/opportunities", "count": 1},
    ])
    zomentum.state.set_faults(seed=2, rules=[
        {"kind": "token_expiry", "rate": 0.05},
        {"kind": "http_error", "method": "POST", "rate": 0.2},
        {"kind": "lost_answer", "method": "POST", "count": 2},
    ])
    tokens, logs, texts = IssuedTokens(), LogLines(), []
    harness = PipelineHarness(kaseya, zomentum, tmp_path)
    with tokens.recording(kaseya, zomentum), logs.installed():
        harness.backfill(first=harness.current_hour - timedelta(hours=7))
        settings = write_settings(tmp_path / "push.yaml", mode="zomentum_as_crm")
        credentials = KaseyaCredentials(kaseya.base_url, kaseya.username, Secret(kaseya.password), kaseya.tenant)
        for attempt in range(3):  # the first attempt meets Kaseya's refusal; the next ones may meet more faults
            sources = PushSources(KaseyaClient(credentials), ZomentumClient(
                ZomentumCredentials(zomentum.base_url, Secret(zomentum.refresh_token))), settings, harness.database)
            try:
                push_document(sources, document_id, run_id=f"push-{attempt}")
            except PushFailed as failure:
                texts += [str(failure), repr(failure)]
        for wrong in (KaseyaClient(replace(credentials, password=Secret(WRONG_PASSWORD))).user_info,
                      ZomentumClient(ZomentumCredentials(zomentum.base_url, Secret(WRONG_REFRESH_TOKEN))).users):
            with pytest.raises(ApiError) as refused:
                wrong()
            texts += [str(refused.value), repr(refused.value)]

        monkeypatch.setenv("KASEYA_BASE_URL", kaseya.base_url)
        monkeypatch.setenv("KASEYA_USERNAME", kaseya.username)
        monkeypatch.setenv("KASEYA_TENANT", kaseya.tenant)
        monkeypatch.setenv("ZOMENTUM_BASE_URL", zomentum.base_url)
        monkeypatch.setenv("ZK_SETTINGS", str(harness.settings_path))
        monkeypatch.setenv("ZK_DUCKDB_PATH", str(harness.database))
        client_id = next(iter(harness.id_map("clients")))
        for password, refresh in ((WRONG_PASSWORD, WRONG_REFRESH_TOKEN), (kaseya.password, zomentum.refresh_token)):
            monkeypatch.setenv("KASEYA_PASSWORD", password)
            monkeypatch.setenv("ZOMENTUM_REFRESH_TOKEN", refresh)
            for command in (["check"], ["settings", "show"], ["push", document_id, "--dry-run"],
                            ["audit", "--format", "csv"], ["audit", "--status", "error"],
                            ["history", "client", client_id]):
                cli.main(command)
        kaseya.state.clear_faults()
        zomentum.state.clear_faults()
    printed = capsys.readouterr()
    texts += [printed.out, printed.err, *logs.lines, *duckdb_text(harness.database), *dagster_text(harness.instance)]
    secrets = {kaseya.password, zomentum.refresh_token, WRONG_PASSWORD, WRONG_REFRESH_TOKEN, *tokens.values}

    assert leaks(texts, secrets) == []
    # The scan had something to find: tokens were issued and renewed, things failed and were explained.
    assert len(tokens.values) >= 6
    assert harness.sql("SELECT count(*) FROM audit.sync_events WHERE action = 'failed'")[0][0] > 0
    assert any("Kaseya refused POST /v2/crm/opportunities" in text for text in texts)
    assert any("rejected the login" in text for text in texts)
    assert any("urllib3" in line and "/v2/auth0/access_token" in line for line in logs.lines)
    assert "0 failed" in printed.out and "rejected the login" in printed.out  # `zk check` ran, both ways


class RecordingAdapter(HTTPAdapter):
    """Sends for real, noting the `verify` each request was sent with."""

    def __init__(self) -> None:
        super().__init__()
        self.verify: list[Any] = []

    def send(self, request, **kwargs):
        self.verify.append(kwargs.get("verify"))
        return super().send(request, **kwargs)


def test_both_clients_verify_tls_on_every_request(sandboxes):
    kaseya, zomentum = reset_sandboxes(sandboxes)
    adapters = []
    for make in (lambda session: KaseyaClient(KaseyaCredentials(kaseya.base_url, kaseya.username,
                                                                Secret(kaseya.password), kaseya.tenant),
                                              session=session),
                 lambda session: ZomentumClient(ZomentumCredentials(zomentum.base_url, Secret(zomentum.refresh_token)),
                                                session=session)):
        session, adapter = requests.Session(), RecordingAdapter()
        session.mount("http://", adapter)
        checks = make(session).probe_endpoints()
        assert checks and all(check.ok for check in checks), checks
        adapters.append(adapter)
    assert KASEYA_POLICY.verify_tls and ZomentumClient(ZomentumCredentials("https://z", Secret("t"))).policy.verify_tls
    for adapter in adapters:
        # `True`, or the CA bundle requests verifies against (REQUESTS_CA_BUNDLE); never `False`.
        assert len(adapter.verify) > 5
        assert all(verify is True or (isinstance(verify, str) and Path(verify).exists()) for verify in adapter.verify)


def test_the_demo_and_zk_sandbox_listen_on_127_0_0_1_only():
    assert cli.build_parser().parse_args(["sandbox"]).host == "127.0.0.1"
    with running_sandboxes(seed=7, scale="small_recent") as boxes:  # as `zk demo` starts them
        for server in (boxes.kaseya.server, boxes.zomentum.server):
            bound = {sock.getsockname()[0] for s in server._server.servers for sock in s.sockets}
            assert bound == {"127.0.0.1"}
            assert server.base_url.startswith("http://127.0.0.1:")
        outside = [address for *_, (address, _) in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
                   if not address.startswith("127.")]
        for address in outside:  # from another interface of this machine, nothing answers
            with pytest.raises(OSError):
                socket.create_connection((address, boxes.kaseya.server.port), timeout=2).close()


def _kaseya_requests(base_url: str) -> Iterator[tuple[str, str, str]]:
    for route in KASEYA_ROUTES:
        if not route.anonymous:
            yield route.method, f"{route.method} {route.template}", base_url + re.sub(r"\{[^}]+\}", "1", route.template)


def test_the_sandboxes_refuse_every_api_request_without_a_valid_token(sandboxes):
    kaseya, zomentum = reset_sandboxes(sandboxes)
    kaseya.state.set_knobs(token_lifetime_seconds=60)
    expired = KaseyaClient(KaseyaCredentials(kaseya.base_url, kaseya.username, Secret(kaseya.password),
                                             kaseya.tenant))
    expired.login()
    kaseya.state.advance_clock(120)
    expired_token = expired._token.access
    before = {entity: kaseya.state.records(entity) for entity in ("accounts", "contacts", "opportunities", "quotes")}
    answers: dict[str, set[tuple[int, bool]]] = {}
    for method, label, url in _kaseya_requests(kaseya.base_url):
        for header in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Bearer {expired_token}"},
                       {"Authorization": "Basic YXBpOnBhc3M="}):
            response = requests.request(method, url, headers=header, json={} if method != "GET" else None, timeout=10)
            answers.setdefault(label, set()).add((response.status_code, response.json()["success"]))
    assert {label: answer for label, answer in answers.items() if answer != {(401, False)}} == {}
    assert len(answers) > 40
    assert {entity: kaseya.state.records(entity) for entity in before} == before  # nothing was written

    contract = yaml.safe_load(requests.get(f"{zomentum.base_url}/_sandbox/openapi.yaml", timeout=10).text)
    refused = set()
    for path, operations in contract["paths"].items():
        if not path.startswith("/v2/") or "access_token" in path:
            continue
        url = zomentum.base_url + re.sub(r"\{[^}]+\}", "1", path)
        for method in (m.upper() for m in operations if m in ("get", "post", "put")):
            for header in ({}, {"Authorization": "Bearer zat_not-a-token"}):
                response = requests.request(method, url, headers=header, json={} if method != "GET" else None,
                                            timeout=10)
                refused.add((path, method, response.status_code))
    assert len(refused) > 20 and {status for *_, status in refused} == {401}


# ----- every form, every store ----------------------------------------------------------------------------

def test_the_scan_finds_a_secret_in_every_form_it_travels_in():
    secret = ENCODED_WRONG_PASSWORD
    basic = base64.b64encode(f"api.user:{secret}".encode()).decode()
    forms = [secret, quote(secret, safe=""), urlencode({"Password": secret}), json.dumps({"p": secret}),
             json.dumps(json.dumps({"p": secret})), repr({"p": secret}), f"Authorization: Basic {basic}",
             base64.urlsafe_b64encode(secret.encode()).decode()]
    for form in forms:
        assert secret_scan.leaks([f"some text {form} more text"], [secret]), form
    # ...every whole form the redaction masks, too (its base64 fragments are parts of a larger token); and
    # nothing in a text without the secret
    whole_forms = secret_forms(secret) - base64_fragments(secret)
    assert len(whole_forms) >= 6 and all(secret_scan.leaks([form], [secret]) for form in whole_forms)
    assert secret_scan.leaks(["Password=***&GrantType=password Basic ***"], [secret]) == []


def _every_fault_kind(sandbox: str) -> list[dict[str, Any]]:
    parameters = {"latency": {"seconds": 0.05}, "read_timeout": {"seconds": 0.05}, "lost_answer": {"seconds": 0.0},
                  "rate_limit_burst": {"retry_after": 0, "length": 2}}
    kinds = [kind for kind in FAULT_KINDS if sandbox == "kaseya" or kind != SUCCESS_FALSE]
    # Each kind strikes once at a fixed read (threads reorder requests, so a rate alone may miss a kind), then
    # at random.
    once = [{"kind": kind, "method": "GET", "after": 10 + 3 * position, "count": 1, **parameters.get(kind, {})}
            for position, kind in enumerate(kinds)]
    return [*once, *({"kind": kind, "rate": 0.03, **parameters.get(kind, {})} for kind in kinds)]


@pytest.mark.slow
def test_no_form_of_a_secret_reaches_any_store_after_wrong_credentials_expired_tokens_faults_and_echoes(
        sandboxes, tmp_path, capfd, monkeypatch):
    kaseya, zomentum = reset_sandboxes(sandboxes)
    for folder in ("dagster", "right", "wrong"):
        (tmp_path / folder).mkdir()
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster"))
    echo_login = {"kind": "echo_request", "route": "POST /v2/security/authenticate", "count": 2}
    echo_refresh = {"kind": "echo_request", "route": "POST /v2/security/refreshtoken", "count": 1}
    # Every fault kind on both sides, tokens expiring mid-run (renewals), and answers quoting requests back.
    kaseya.state.set_faults(seed=3, rules=[echo_login, echo_refresh, {"kind": "echo_request", "rate": 0.03},
                                           *_every_fault_kind("kaseya")])
    zomentum.state.set_faults(seed=3, rules=[{"kind": "echo_request", "rate": 0.03, "status": 500},
                                             *_every_fault_kind("zomentum")])
    tokens, logs = IssuedTokens(), LogLines()
    right = PipelineHarness(kaseya, zomentum, tmp_path / "right", instance=instance)
    wrong = PipelineHarness(kaseya, zomentum, tmp_path / "wrong", instance=instance,
                            kaseya_password=ENCODED_WRONG_PASSWORD, zomentum_refresh_token=WRONG_REFRESH_TOKEN)
    with tokens.recording(kaseya, zomentum), logs.installed():
        faulted = right.backfill(first=right.current_hour - timedelta(hours=4))
        refused = wrong.run_hour(wrong.current_hour - timedelta(hours=3))
        struck = {kind for sandbox in (kaseya, zomentum) for kind in sandbox.state.fault_counts()}
        # The commands, with the right credentials and then wrong ones: only the login's echo stays (a fault
        # left striking at random would fail `zk check` for a reason other than the credentials).
        kaseya.state.set_faults(seed=4, rules=[{**echo_login, "count": 1}])
        zomentum.state.clear_faults()
        environment = {"KASEYA_BASE_URL": kaseya.base_url, "KASEYA_USERNAME": kaseya.username,
                       "KASEYA_TENANT": kaseya.tenant, "ZOMENTUM_BASE_URL": zomentum.base_url,
                       "ZK_SETTINGS": str(right.settings_path), "ZK_DUCKDB_PATH": str(right.database)}
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        for password, refresh in ((ENCODED_WRONG_PASSWORD, WRONG_REFRESH_TOKEN),
                                  (kaseya.password, zomentum.refresh_token)):
            monkeypatch.setenv("KASEYA_PASSWORD", password)
            monkeypatch.setenv("ZOMENTUM_REFRESH_TOKEN", refresh)
            for command in (["check"], ["settings", "show"], ["audit", "--format", "csv"],
                            ["audit", "--format", "json"], ["audit", "--status", "error"]):
                cli.main(command)
        kaseya.state.clear_faults()
        zomentum.state.clear_faults()
    printed = capfd.readouterr()
    texts = [printed.out, printed.err, *logs.lines, *duckdb_text(right.database), *duckdb_text(wrong.database),
             *secret_scan.dagster_texts(instance), *secret_scan.file_texts(tmp_path / "dagster")]
    secrets = {kaseya.password, zomentum.refresh_token, ENCODED_WRONG_PASSWORD, WRONG_REFRESH_TOKEN, *tokens.values}

    assert secret_scan.leaks(texts, secrets) == []
    # The scan had something to find: tokens were issued and renewed, every kind of fault struck, requests
    # were quoted back (the form with its password among them), and the failures were explained.
    assert len(tokens.values) >= 4
    assert struck == {*FAULT_KINDS, "echo_request"}, struck
    assert any("echo_request" in text and "Password=***" in text for text in texts)
    assert not refused.success and any("rejected" in error for error in step_errors(refused))
    assert faulted.get_step_failure_events() or faulted.success
    assert "Password=***" in printed.out  # `zk check` showed the echoed login, masked...
    assert "0 failed" in printed.out and "rejected the login" in printed.out + printed.err  # ...and ran both ways
