"""The HTTP policy against a hostile server (docs/security.md): redirects that would carry credentials elsewhere
are refused with the target named, a login's or a write's is never followed; an answer is bounded in size, in
time (a server dripping a byte at a time is cut at the deadline) and in JSON nesting, each with its own error."""

from __future__ import annotations

import json
import time

import pytest

from zk_pipelines.clients.http import (
    AnswerTooDeep,
    AnswerTooLarge,
    AnswerTooSlow,
    HttpPolicy,
    RedirectRefused,
    WriteOutcomeUnknown,
)
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import KaseyaCredentials, ZomentumCredentials
from zk_pipelines.secrets import Secret
from zk_pipelines_tests.fixtures.hostile import Answer, Request

PASSWORD = "kaseya-Password-!x9"
TOKEN = "kaseya-access-token-1234567890"
LOGIN = {"success": True, "error": None, "result": {"accessToken": TOKEN, "refreshToken": "r-token-1234567890",
                                                     "accessTokenExpireOn": None}}


def json_answer(payload: object, status: int = 200) -> Answer:
    return Answer(status, json.dumps(payload), {"Content-Type": "application/json"})


def kaseya_server(hostile, on_api):
    """A server that logs the client in and answers every other request with `on_api(request)`."""
    return hostile(lambda request: json_answer(LOGIN) if request.path.endswith("/authenticate") else on_api(request))


def kaseya_client(server, **policy) -> KaseyaClient:
    return KaseyaClient(KaseyaCredentials(server.base_url, "api.user", Secret(PASSWORD), "Tenant"),
                        policy=HttpPolicy(api_name="Kaseya", max_attempts=2, backoff_base=0.01, **policy))


def zomentum_client(server, **policy) -> ZomentumClient:
    return ZomentumClient(ZomentumCredentials(server.base_url, Secret("zrt-refresh-1234"), Secret("zat-access-1234")),
                          policy=HttpPolicy(api_name="zomentum", max_attempts=2, backoff_base=0.01, **policy))


# ----- redirects ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [307, 308])
def test_a_redirected_login_is_not_followed_and_the_password_goes_nowhere_else(hostile, status):
    capture = hostile(lambda request: json_answer(LOGIN))  # would hand out its own tokens
    server = hostile(lambda request: Answer(status, headers={"Location": capture.url(request.path)}))
    client = kaseya_client(server)
    with pytest.raises(RedirectRefused) as refused:
        client.login()
    assert capture.requests == []
    assert capture.url("/v2/security/authenticate") in str(refused.value)  # the target is named
    assert PASSWORD not in str(refused.value) and client._token is None


def test_a_write_redirected_even_to_its_own_origin_is_not_followed(hostile):
    def answer(request: Request) -> Answer:
        if request.path == "/v2/crm/accounts":
            return Answer(308, headers={"Location": "/v2/crm/accounts/elsewhere"})
        return json_answer({"success": True, "result": {"id": 1}})

    server = kaseya_server(hostile, answer)
    with pytest.raises(RedirectRefused, match="elsewhere"):
        kaseya_client(server).call("create_account", body={"AccountName": "X"})
    assert [request.path for request in server.requests if request.method == "POST"][-1] == "/v2/crm/accounts"
    assert not any(request.path.endswith("elsewhere") for request in server.requests)


def test_a_read_follows_a_redirect_within_its_origin_but_not_to_another(hostile):
    capture = hostile(lambda request: json_answer({"data": [], "filtered_count_map": {"all": 0}}))

    def answer(request: Request) -> Answer:
        if request.path == "/v2/users":
            return Answer(302, headers={"Location": "/v2/users-moved?limit=1000&page=1"})
        if request.path == "/v2/users-moved":
            return json_answer({"data": [{"id": "u1"}], "filtered_count_map": {"all": 1}})
        return Answer(301, headers={"Location": capture.url("/v2/items")})

    server = hostile(answer)
    client = zomentum_client(server)
    assert client.users() == [{"id": "u1"}]
    with pytest.raises(RedirectRefused) as refused:
        list(client.items())
    assert capture.requests == []  # the bearer token never reached the other origin
    assert capture.url("/v2/items") in str(refused.value) and "another origin" in str(refused.value)


# ----- size, time, nesting -----------------------------------------------------------------------------------

def test_an_answer_larger_than_the_cap_is_refused(hostile):
    big = json.dumps({"data": [{"id": str(i), "name": "x" * 100} for i in range(2000)]})
    server = hostile(lambda request: json_answer(json.loads(big)) if request.path == "/v2/users" else
                     Answer(200, pieces=iter([big.encode()[i:i + 4096] for i in range(0, len(big), 4096)])))
    client = zomentum_client(server, max_body_bytes=100_000)
    with pytest.raises(AnswerTooLarge, match="100,000"):  # announced by Content-Length
        client.users()
    with pytest.raises(AnswerTooLarge, match="100,000"):  # not announced: counted while read
        list(client.items())


def test_a_server_dripping_one_byte_at_a_time_is_cut_at_the_deadline(hostile):
    body = json.dumps({"data": [], "filtered_count_map": {"all": 0}}).encode()
    # One byte every 0.2 s: the read timeout (5 s) never strikes; the whole body would take ~9 s.
    server = hostile(lambda request: Answer(200, pieces=iter([body[i:i + 1] for i in range(len(body))]),
                                            drip_seconds=0.2))
    client = zomentum_client(server, deadline_seconds=1.0, read_timeout=5.0)
    started = time.monotonic()
    with pytest.raises(AnswerTooSlow, match="after 1 s"):
        client.users()
    assert time.monotonic() - started < 3.0
    assert len(server.requests) == 1  # not retried: a slow server stays slow


def test_a_write_whose_answer_drips_past_the_deadline_is_of_unknown_outcome(hostile):
    server = hostile(lambda request: Answer(201, pieces=iter([b"{"] + [b" "] * 50), drip_seconds=0.1))
    with pytest.raises(WriteOutcomeUnknown, match="still arriving"):
        zomentum_client(server, deadline_seconds=0.5).create("client/companies", {"name": "X"})
    assert len(server.requests) == 1


@pytest.mark.parametrize("depth", [100, 100_000])
def test_json_nested_deeper_than_the_limit_is_a_typed_error_not_a_recursion_error(hostile, depth):
    deep = "[" * depth + "]" * depth
    kaseya = kaseya_server(hostile, lambda request: Answer(200, deep, {"Content-Type": "application/json"}))
    with pytest.raises(AnswerTooDeep, match="deeper than 64"):
        kaseya_client(kaseya).user_info()
    zomentum = hostile(lambda request: Answer(200, '{"data": ' + deep + "}", {"Content-Type": "application/json"}))
    with pytest.raises(AnswerTooDeep, match="deeper than 64"):
        zomentum_client(zomentum).users()
