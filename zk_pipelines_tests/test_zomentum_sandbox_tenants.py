"""One Zomentum sandbox, several accounts told apart by their tokens: each refreshes with its own refresh token,
reads only its own records, and keeps its own access token, knobs, fault plan, rate limit, clock and request
log. Account 1 is exactly the single-account sandbox; account n is the MSP of Kaseya company n."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from zk_pipelines.sandbox.kaseya.tenants import KaseyaTenants
from zk_pipelines.sandbox.zomentum import REFRESH_TOKEN, ZomentumSandbox, ZomentumState, start_zomentum_sandbox
from zk_pipelines.sandbox.zomentum.accounts import ZomentumAccounts

SEEDED_AT = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
RESOURCES = ["client/companies", "client/users", "opportunities", "pipelines", "items", "documents", "users",
             "custom/fields"]


@pytest.fixture(scope="module")
def accounts_sandbox() -> Iterator[ZomentumSandbox]:
    with start_zomentum_sandbox(seed=7, scale="small", tenants=3, seeded_at=SEEDED_AT) as sandbox:
        yield sandbox


@pytest.fixture
def accounts(accounts_sandbox: ZomentumSandbox) -> ZomentumSandbox:
    for state in accounts_sandbox.accounts.seeded():
        state.reset()
    return accounts_sandbox


def refresh(sandbox: ZomentumSandbox, refresh_token: str) -> requests.Response:
    return requests.get(f"{sandbox.api_url}/auth0/access_token", params={"refresh_token": refresh_token}, timeout=10)


def token_of(sandbox: ZomentumSandbox, number: int) -> str:
    response = refresh(sandbox, sandbox.refresh_token_of(number))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def get(sandbox: ZomentumSandbox, token: str, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sandbox.api_url}/{path}", params=params, headers={"Authorization": f"Bearer {token}"},
                        timeout=10)


def clients(sandbox: ZomentumSandbox, token: str) -> list[dict[str, Any]]:
    response = get(sandbox, token, "client/companies", limit=1000)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_each_account_refreshes_with_its_own_token_and_reads_only_its_own_clients(accounts):
    seen = {n: clients(accounts, token_of(accounts, n)) for n in (1, 2, 3)}
    assert accounts.refresh_token_of(1) == accounts.refresh_token == REFRESH_TOKEN
    assert len({accounts.refresh_token_of(n) for n in (1, 2, 3)}) == 3
    for number, rows in seen.items():
        others = {c["id"] for other, theirs in seen.items() if other != number for c in theirs}
        assert rows and others.isdisjoint(c["id"] for c in rows)
        if number > 1:
            assert all(c["name"].endswith(f" ({number:02d})") for c in rows)
    assert not any(c["name"].endswith(("(02)", "(03)")) for c in seen[1])


def test_a_refresh_of_one_account_leaves_the_others_tokens_valid(accounts):
    first, second = token_of(accounts, 1), token_of(accounts, 2)
    token_of(accounts, 2)  # account 2's previous token is retired; account 1's is not
    assert get(accounts, first, "users").status_code == 200
    retired = get(accounts, second, "users")
    assert (retired.status_code, retired.json()["message"]) == (401, "the access token was invalidated by a newer one")


def test_an_access_token_cannot_reach_another_accounts_records(accounts):
    first, second = token_of(accounts, 1), token_of(accounts, 2)
    theirs = clients(accounts, second)[0]["id"]
    assert get(accounts, first, f"client/companies/{theirs}").status_code == 404
    assert accounts.tenant_state(1).holds(first) and not accounts.tenant_state(2).holds(first)


@pytest.mark.parametrize(("refresh_token", "status", "message"), [
    ("zomentum-sandbox-refresh-token-04-00000000", 401, "the refresh token is invalid or has been revoked"),
    ("sandbox_02", 401, "the refresh token is invalid or has been revoked"),
    ("", 400, "refresh_token: is required"),
])
def test_a_refresh_token_of_no_account_is_refused_as_today(accounts, refresh_token, status, message):
    response = refresh(accounts, refresh_token)
    assert (response.status_code, response.json()["message"]) == (status, message)
    assert [e["status"] for e in accounts.tenant_state(1).requests()] == [status]


@pytest.mark.parametrize("upset", [
    pytest.param(lambda state: state.set_faults(seed=1, rules=[{"kind": "http_error", "statuses": [503]}]),
                 id="fault plan"),
    pytest.param(lambda state: state.set_knobs(rate_limit=1), id="rate limit"),
    pytest.param(lambda state: state.advance_clock(2 * 86400), id="clock past the token lifetime"),
])
def test_what_is_done_to_one_account_leaves_the_others_alone(accounts, upset):
    tokens = {n: token_of(accounts, n) for n in (1, 2, 3)}
    upset(accounts.tenant_state(1))
    get(accounts, tokens[1], "users")  # spends account 1's one request of the window, if limited
    assert get(accounts, tokens[1], "users").status_code != 200
    for n in (2, 3):
        for _ in range(2):
            assert get(accounts, tokens[n], "users").status_code == 200
        assert accounts.tenant_state(n).fault_plan()["rules"] == []


def test_a_document_made_in_one_account_shows_only_there(accounts):
    two = accounts.tenant_state(2)
    client = two.records("client/companies")[0]
    item = two.records("items")[0]
    made = two.create_document(client["id"], [{"item_id": item["id"], "quantity": 1}], name="Only In Account Two")
    names = {n: {d["name"] for d in get(accounts, token_of(accounts, n), "documents", limit=1000).json()["data"]}
             for n in (1, 2, 3)}
    assert made["name"] in names[2] and made["name"] not in names[1] | names[3]


@pytest.mark.parametrize(("address", "number"), [({}, 1), ({"tenant": "3"}, 3), ({"tenant": "sandbox_02"}, 2)])
def test_the_control_surface_addresses_an_account_with_the_tenant_parameter(accounts, address, number):
    url = f"{accounts.base_url}/_sandbox"
    assert requests.post(f"{url}/knobs", params=address, json={"rate_limit": 5}, timeout=10).status_code == 200
    assert [accounts.tenant_state(n).knobs()["rate_limit"] for n in (1, 2, 3)] == [5 if n == number else None
                                                                                  for n in (1, 2, 3)]
    rows = requests.get(f"{url}/records/client/companies", params=address, timeout=10).json()
    assert rows == accounts.tenant_state(number).records("client/companies")
    unknown = requests.get(f"{url}/clock", params={"tenant": "sandbox_09"}, timeout=10)
    assert unknown.status_code == 404 and "sandbox_01..sandbox_03" in unknown.json()["message"]


def test_accounts_past_the_first_are_seeded_on_their_first_refresh():
    with start_zomentum_sandbox(seed=7, scale="small", tenants=3, seeded_at=SEEDED_AT) as sandbox:
        listed = requests.get(f"{sandbox.base_url}/_sandbox/tenants", timeout=10).json()
        assert [(t["key"], t["seeded"]) for t in listed] == [("sandbox_01", True), ("sandbox_02", False),
                                                             ("sandbox_03", False)]
        token_of(sandbox, 2)
        assert [sandbox.accounts.is_seeded(n) for n in (1, 2, 3)] == [True, True, False]


@pytest.mark.parametrize("resource", RESOURCES)
def test_account_one_of_many_is_the_single_account_sandbox(resource):
    single = ZomentumState(7, "small", seeded_at=SEEDED_AT)
    many = ZomentumAccounts(7, "small", count=20, seeded_at=SEEDED_AT)
    assert many.state(1).records(resource) == single.records(resource)


@pytest.mark.parametrize("number", [1, 2, 5])
def test_account_n_is_the_msp_of_kaseya_company_n(number):
    """As in a single-tenant sandbox, every tenth Kaseya account of a company is a Zomentum client of its account
    under the very same name, and no other tenant's."""
    kaseya = KaseyaTenants(7, "small", count=5, seeded_at=SEEDED_AT)
    zomentum = ZomentumAccounts(7, "small", count=5, seeded_at=SEEDED_AT)
    names = {n: {a["accountName"] for a in kaseya.state(n).records("accounts")} for n in (1, 2, 5)}
    client_names = {c["name"] for c in zomentum.state(number).records("client/companies")}
    assert len(names[number] & client_names) == len(names[number]) // 10
    assert all(not (names[other] & client_names) for other in names if other != number)
