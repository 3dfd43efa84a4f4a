"""One Kaseya sandbox, several companies: each logs in with its own `Tenant` and API user, reads only its own
records, and keeps its own tokens, knobs, fault plan, rate limit, clock and request log. Tenant 1 is exactly
the single-tenant sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from zk_pipelines.sandbox.kaseya import KaseyaSandbox, KaseyaState, start_kaseya_sandbox
from zk_pipelines.sandbox.kaseya.records import TENANT_ID_STRIDE
from zk_pipelines.sandbox.kaseya.tenants import KaseyaTenants
from zk_pipelines.sandbox.tenancy import sandbox_tenants

SEEDED_AT = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
ENTITIES = ["accounts", "contacts", "opportunities", "products", "quotes", "services", "categories", "employees"]


@pytest.fixture(scope="module")
def companies_sandbox() -> Iterator[KaseyaSandbox]:
    with start_kaseya_sandbox(seed=7, scale="small", tenants=3, seeded_at=SEEDED_AT) as sandbox:
        yield sandbox


@pytest.fixture
def companies(companies_sandbox: KaseyaSandbox) -> KaseyaSandbox:
    for state in companies_sandbox.companies.seeded():
        state.reset()
    return companies_sandbox


def login(sandbox: KaseyaSandbox, tenant: int, **overrides: str) -> requests.Response:
    credentials = sandbox.login(tenant)
    form = {"UserName": credentials.username, "Password": credentials.password, "Tenant": credentials.tenant,
            "GrantType": "password", **overrides}
    return requests.post(f"{sandbox.base_url}/v2/security/authenticate", data=form, timeout=10)


def token_of(sandbox: KaseyaSandbox, tenant: int) -> str:
    payload = login(sandbox, tenant).json()
    assert payload["success"], payload
    return payload["result"]["accessToken"]


def get(sandbox: KaseyaSandbox, token: str, path: str, **kwargs) -> requests.Response:
    return requests.get(f"{sandbox.base_url}{path}", headers={"Authorization": f"Bearer {token}",
                                                              **kwargs.pop("headers", {})}, timeout=10, **kwargs)


def accounts(sandbox: KaseyaSandbox, token: str) -> list[dict]:
    response = get(sandbox, token, "/v2/crm/accounts/summary", params={"PageSize": 100})
    assert response.status_code == 200, response.text
    return response.json()["result"]


def test_each_company_logs_in_with_its_own_login_and_reads_only_its_own_accounts(companies):
    seen: dict[int, list[dict]] = {}
    for number in (1, 2, 3):
        token = token_of(companies, number)
        seen[number] = accounts(companies, token)
        user = get(companies, token, "/v2/security/userinfo").json()["result"]
        assert (user["businessName"], user["emailAddress"]) == (companies.login(number).tenant,
                                                               companies.login(number).username)
        assert {a["tenantName"] for a in seen[number]} == {companies.login(number).tenant}
    assert [companies.login(n).tenant for n in (1, 2, 3)] == ["Sandbox MSP Ltd", "Sandbox MSP 02", "Sandbox MSP 03"]
    assert len({companies.login(n).username for n in (1, 2, 3)}) == len({companies.login(n).password
                                                                           for n in (1, 2, 3)}) == 3
    for number, rows in seen.items():
        others = {a["id"] for other, their in seen.items() if other != number for a in their}
        assert rows and others.isdisjoint(a["id"] for a in rows)
        assert all(a["id"] // TENANT_ID_STRIDE == number - 1 for a in rows)
        if number > 1:
            assert all(a["accountName"].endswith(f" ({number:02d})") for a in rows)
    assert not any(a["accountName"].endswith(("(02)", "(03)")) for a in seen[1])


@pytest.mark.parametrize(("tenant", "overrides", "expected"), [
    (2, {"UserName": "api.employee@msp.example", "Password": "kaseya-sandbox-pass-7Q!"},
     "Invalid username or password."),  # tenant 1's API user is not company 2's
    (1, {"Password": "kaseya-sandbox-pass-03-f933e7f2"}, "Invalid username or password."),
    (2, {"Tenant": "Sandbox MSP 04"}, "Tenant 'Sandbox MSP 04' was not found"),
    (2, {"Tenant": "sandbox_02"}, "Tenant 'sandbox_02' was not found"),  # the registry key is no company name
    (2, {"Tenant": "2"}, "Tenant '2' was not found"),
])
def test_a_login_that_mixes_companies_or_names_none_is_refused_as_kaseya_refuses_it(companies, tenant, overrides,
                                                                                  expected):
    response = login(companies, tenant, **overrides)
    payload = response.json()
    assert response.status_code == 200 and payload["success"] is False and payload["result"] is None, payload
    assert payload["error"]["message"].startswith(expected)


def test_the_company_name_is_matched_in_any_case(companies):
    assert login(companies, 2, Tenant="  sandbox msp 02 ").json()["success"]


def test_a_token_cannot_reach_another_companys_records(companies):
    token_one, token_two = token_of(companies, 1), token_of(companies, 2)
    theirs = accounts(companies, token_two)[0]["id"]
    assert get(companies, token_one, f"/v2/crm/accounts/summary/{theirs}").status_code == 404
    # The API has no tenant parameter: whatever the request says besides the token, the token decides.
    for extra in ({"params": {"tenant": "2", "Tenant": "Sandbox MSP 02"}},
                  {"headers": {"Tenant": "Sandbox MSP 02", "X-Tenant": "sandbox_02"}}):
        response = get(companies, token_one, "/v2/crm/accounts/summary", **extra)
        assert {a["tenantName"] for a in response.json()["result"]} == {"Sandbox MSP Ltd"}
    assert companies.tenant_state(1).tokens.holds(token_one) and not companies.tenant_state(2).tokens.holds(token_one)


def test_a_refresh_stays_within_its_company(companies):
    one = login(companies, 1).json()["result"]
    two = login(companies, 2).json()["result"]

    def refresh(access: str, refresh_token: str) -> dict:
        return requests.post(f"{companies.base_url}/v2/security/refreshtoken", timeout=10,
                             data={"AccessToken": access, "RefreshToken": refresh_token}).json()

    assert refresh(one["accessToken"], two["refreshToken"])["success"] is False
    renewed = refresh(two["accessToken"], two["refreshToken"])
    assert renewed["success"], renewed
    assert {a["tenantName"] for a in accounts(companies, renewed["result"]["accessToken"])} == {"Sandbox MSP 02"}
    assert get(companies, one["accessToken"], "/v2/security/userinfo").status_code == 200


def _deny_accounts(state: KaseyaState) -> None:
    state.set_knobs(denied_routes=["GET /v2/crm/accounts/summary"])


@pytest.mark.parametrize("upset", [
    pytest.param(lambda state: state.set_faults(seed=1, rules=[{"kind": "http_error", "statuses": [503]}]),
                 id="fault plan"),
    pytest.param(lambda state: state.set_knobs(rate_limit=1), id="rate limit"),
    pytest.param(lambda state: state.set_knobs(api_access=False), id="no API access"),
    pytest.param(_deny_accounts, id="denied route"),
    pytest.param(lambda state: state.advance_clock(3 * 3600), id="clock past the token lifetime"),
])
def test_what_is_done_to_one_company_leaves_the_others_alone(companies, upset):
    before = {n: companies.tenant_state(n).records("accounts") for n in (2, 3)}
    tokens = {n: token_of(companies, n) for n in (1, 2, 3)}
    upset(companies.tenant_state(1))
    get(companies, tokens[1], "/v2/crm/accounts/summary")  # spends tenant 1's one call of the hour, if limited
    assert get(companies, tokens[1], "/v2/crm/accounts/summary").status_code != 200
    for n in (2, 3):
        for _ in range(2):
            assert len(accounts(companies, tokens[n])) == len(before[n])
        assert companies.tenant_state(n).records("accounts") == before[n]
        assert companies.tenant_state(n).fault_plan()["rules"] == []


def test_an_edit_in_one_company_shows_only_there(companies):
    one, two = companies.tenant_state(1), companies.tenant_state(2)
    account_id = one.records("accounts")[0]["id"]
    one.update_record("accounts", account_id, {"accountName": "Renamed In Tenant One"})
    created = two.create_record("accounts", {"accountName": "Only In Tenant Two", "accountType": "Customer",
                                             "businessType": "Enterprise"})
    names = {n: {a["accountName"] for a in accounts(companies, token_of(companies, n))} for n in (1, 2, 3)}
    assert "Renamed In Tenant One" in names[1] and "Renamed In Tenant One" not in names[2] | names[3]
    assert created["id"] // TENANT_ID_STRIDE == 1
    assert all("Only In Tenant Two" not in names[n] for n in (1, 3))


def test_each_company_logs_its_own_requests_and_tenant_one_the_unaddressed(companies):
    token_of(companies, 2)
    login(companies, 2, Tenant="No Such MSP")
    get(companies, "not-a-token", "/v2/crm/accounts/summary")
    logged = {n: [(e["path"], e["status"]) for e in companies.tenant_state(n).requests()] for n in (1, 2)}
    assert logged[2] == [("/v2/security/authenticate", 200)]
    assert logged[1] == [("/v2/security/authenticate", 200), ("/v2/crm/accounts/summary", 401)]


@pytest.mark.parametrize(("address", "number"), [
    ({}, 1), ({"tenant": "2"}, 2), ({"tenant": "sandbox_03"}, 3), ({"tenant": "Sandbox MSP 02"}, 2),
])
def test_the_control_surface_addresses_a_company_with_the_tenant_parameter(companies, address, number):
    url = f"{companies.base_url}/_sandbox"
    changed = requests.post(f"{url}/knobs", params=address, json={"rate_limit": 7}, timeout=10)
    assert changed.status_code == 200
    assert [companies.tenant_state(n).knobs.rate_limit for n in (1, 2, 3)] == [7 if n == number else 1500
                                                                              for n in (1, 2, 3)]
    rows = requests.get(f"{url}/records/accounts", params=address, timeout=10).json()
    assert rows == companies.tenant_state(number).records("accounts")


def test_an_unknown_tenant_on_the_control_surface_is_a_404_naming_the_known_ones(companies):
    response = requests.get(f"{companies.base_url}/_sandbox/requests", params={"tenant": "sandbox_04"}, timeout=10)
    assert response.status_code == 404
    assert "sandbox_01..sandbox_03" in response.json()["error"]
    with pytest.raises(KeyError):
        companies.tenant_state(4)


def test_companies_past_the_first_are_seeded_on_first_use_as_of_the_sandbox_start():
    with start_kaseya_sandbox(seed=7, scale="small", tenants=3, seeded_at=SEEDED_AT) as sandbox:
        listed = requests.get(f"{sandbox.base_url}/_sandbox/tenants", timeout=10).json()
        assert [(t["key"], t["tenant"], t["seeded"]) for t in listed] == [
            ("sandbox_01", "Sandbox MSP Ltd", True), ("sandbox_02", "Sandbox MSP 02", False),
            ("sandbox_03", "Sandbox MSP 03", False)]
        token_of(sandbox, 3)
        assert [sandbox.companies.is_seeded(n) for n in (1, 2, 3)] == [True, False, True]
        third = sandbox_tenants(7, 3)[2]
        eager = KaseyaState(third.seed, "small", seeded_at=SEEDED_AT, number=3)
        for entity in ENTITIES:
            assert sandbox.tenant_state(3).records(entity) == eager.records(entity)


@pytest.mark.parametrize("entity", ENTITIES)
def test_tenant_one_of_many_is_the_single_tenant_sandbox(entity):
    single = KaseyaState(7, "small", seeded_at=SEEDED_AT)
    many = KaseyaTenants(7, "small", count=20, seeded_at=SEEDED_AT)
    assert many.state(1).records(entity) == single.records(entity)
    assert many.state("sandbox_01").login == single.login
