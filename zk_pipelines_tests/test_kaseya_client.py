"""The Kaseya client at the HTTP boundary, against the real sandbox server: paging, auth, errors, retries,
the hourly budget. Calls are counted from the sandbox's own request log."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
import requests
from requests.adapters import HTTPAdapter

from zk_pipelines.clients.http import (
    ApiUnavailable,
    AuthenticationError,
    RateLimited,
    ValidationFailed,
    WriteOutcomeUnknown,
)
from zk_pipelines.clients.kaseya import BudgetExhausted, KaseyaClient, RouteBudget
from zk_pipelines.clients.kaseya_wire import KaseyaRecord, parse_json, read_envelope
from zk_pipelines.secrets import Secret
from zk_pipelines_tests.contract import validate_request_body


def control(sandbox, method: str, path: str, **kwargs):
    response = requests.request(method, f"{sandbox.base_url}/_sandbox/{path}", timeout=10, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def sandbox_now(sandbox) -> datetime:
    return datetime.fromisoformat(control(sandbox, "GET", "clock")["now"].replace("Z", "+00:00"))


def logged(sandbox, method: str | None = None, route: str | None = None) -> list[dict]:
    entries = control(sandbox, "GET", "requests")
    return [e for e in entries
            if (method is None or e["method"] == method)
            and (route is None or (e.get("route") or e["path"]).lower() == route.lower())]


def add_accounts(sandbox, count: int, prefix: str = "Paging Test") -> None:
    for i in range(count):
        control(sandbox, "POST", "records/accounts", json={"accountName": f"{prefix} {i:03d}"})


def no_sleep(_: float) -> None:
    return None


@pytest.fixture
def client(kaseya_credentials) -> KaseyaClient:
    return KaseyaClient(kaseya_credentials, sleep=no_sleep)


@pytest.mark.parametrize(("rows", "pages"), [(99, 1), (100, 1), (101, 2), (200, 2), (201, 3)])
def test_pagination_stops_exactly_at_page_boundaries(kaseya, client, rows, pages):
    start = sandbox_now(kaseya)
    add_accounts(kaseya, rows)
    control(kaseya, "DELETE", "requests")

    accounts = list(client.iter_accounts(modified_from=start - timedelta(seconds=1),
                                         modified_to=start + timedelta(hours=1)))

    assert sorted(a["accountName"] for a in accounts) == [f"Paging Test {i:03d}" for i in range(rows)]
    assert len({a["id"] for a in accounts}) == rows
    assert len(logged(kaseya, "GET", "/v2/crm/accounts/summary")) == pages


def test_full_scan_returns_every_seeded_account_once(kaseya, client):
    seeded = control(kaseya, "GET", "records/accounts")
    accounts = list(client.iter_accounts())
    assert sorted(a["id"] for a in accounts) == sorted(r.get("id") or r.get("Id") for r in seeded)


def test_login_then_reads_use_one_token(kaseya, client):
    assert client.user_info()["emailAddress"] == kaseya.username
    client.account_types()
    client.opportunity_statuses()
    assert client.stats.logins == 1
    assert len(logged(kaseya, "POST", "/v2/security/authenticate")) == 1


def test_wrong_password_is_one_clear_error_without_the_password(kaseya, kaseya_credentials):
    creds = replace(kaseya_credentials, password=Secret("not-the-password-123"))
    with pytest.raises(AuthenticationError) as info:
        KaseyaClient(creds, sleep=no_sleep).user_info()
    text = str(info.value)
    assert "rejected the login" in text and kaseya_credentials.username in text
    assert "not-the-password-123" not in text and kaseya.password not in text
    assert "\n" not in text


def test_wrong_tenant_names_the_tenant(kaseya, kaseya_credentials):
    creds = replace(kaseya_credentials, tenant="No Such MSP")
    with pytest.raises(AuthenticationError, match="No Such MSP"):
        KaseyaClient(creds, sleep=no_sleep).user_info()


def test_success_false_is_a_typed_error_with_code_and_message_and_is_not_retried(kaseya, client):
    client.user_info()
    control(kaseya, "DELETE", "requests")
    with pytest.raises(ValidationFailed) as info:
        client.call("create_opportunity", body={"Subject": "Missing everything else"})
    assert info.value.status == 200
    assert info.value.message  # the API's own message, naming what is wrong
    assert "POST /v2/crm/opportunities" in str(info.value)
    assert len(logged(kaseya, "POST", "/v2/crm/opportunities")) == 1


def test_expired_token_mid_pagination_is_renewed_and_paging_continues(kaseya, client):
    start = sandbox_now(kaseya)
    add_accounts(kaseya, 250)
    window = dict(modified_from=start - timedelta(seconds=1), modified_to=start + timedelta(hours=5))
    rows = client.iter_accounts(**window)
    first_page = [next(rows) for _ in range(100)]
    control(kaseya, "POST", "clock/advance", json={"seconds": 3 * 3600})  # every token has expired
    rest = list(rows)

    assert len(first_page) + len(rest) == 250
    assert len({r["id"] for r in first_page + rest}) == 250
    assert client.stats.logins + client.stats.refreshes >= 2
    statuses = [e["status"] for e in logged(kaseya, "GET", "/v2/crm/accounts/summary")]
    assert statuses.count(401) == 1 and statuses.count(200) == 3


def test_token_refreshed_before_expiry_without_a_401(kaseya, kaseya_credentials):
    now = [1_000_000.0]
    client = KaseyaClient(kaseya_credentials, sleep=no_sleep, clock=lambda: now[0])
    client.account_types()
    now[0] += 1200  # our clock says the 20-minute token is about to expire
    client.account_types()
    assert client.stats.refreshes == 1
    assert all(e["status"] == 200 for e in logged(kaseya, "GET", "/v2/system/accounttypes/lookup"))


def test_429_retry_after_is_honoured(kaseya, kaseya_credentials):
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the sandbox's clock moves as if we had waited
        slept.append(seconds)
        control(kaseya, "POST", "clock/advance", json={"seconds": seconds})

    client = KaseyaClient(kaseya_credentials, sleep=sleep)
    client.account_types()
    control(kaseya, "POST", "knobs", json={"rate_limit": 2})
    client.account_types()
    control(kaseya, "POST", "clock/advance", json={"seconds": 3600 - 30})
    client.account_types()  # third call in the hour: 429 with a Retry-After of about 30 s, then ok

    statuses = [e["status"] for e in logged(kaseya, "GET", "/v2/system/accounttypes/lookup")]
    assert statuses[-2:] == [429, 200]
    assert len(slept) == 1 and 1 <= slept[0] <= 60


def test_429_with_a_long_retry_after_is_not_hammered(kaseya, client):
    client.account_types()
    control(kaseya, "POST", "knobs", json={"rate_limit": 1})
    control(kaseya, "DELETE", "requests")
    with pytest.raises(RateLimited) as info:
        client.account_types()
    assert info.value.retry_after and info.value.retry_after > 60
    assert len(logged(kaseya, "GET", "/v2/system/accounttypes/lookup")) == 1


class FailingAdapter(HTTPAdapter):
    """Transport that answers the next `failures` requests matching `method` itself, then passes through."""

    def __init__(self, failures: int, method: str = "GET", status: int = 503, exception: Exception | None = None):
        super().__init__()
        self.failures = failures
        self.method = method
        self.status = status
        self.exception = exception
        self.intercepted = 0

    def send(self, request, **kwargs):
        if request.method == self.method and "/security/" not in request.url and self.failures > 0:
            self.failures -= 1
            self.intercepted += 1
            if self.exception is not None:
                raise self.exception
            response = requests.Response()
            response.status_code = self.status
            response._content = b'{"success": false, "error": {"code": 503, "message": "upstream busy"}}'
            response.request = request
            response.url = request.url
            return response
        return super().send(request, **kwargs)


def client_with(credentials, adapter: HTTPAdapter, sleeps: list[float]) -> KaseyaClient:
    session = requests.Session()
    session.mount("http://", adapter)
    return KaseyaClient(credentials, session=session, sleep=sleeps.append)


def test_a_5xx_burst_on_a_read_is_retried_with_bounded_backoff(kaseya, kaseya_credentials):
    adapter, sleeps = FailingAdapter(failures=3), []
    client = client_with(kaseya_credentials, adapter, sleeps)
    assert client.account_types()
    assert adapter.intercepted == 3
    assert client.stats.counter.retries == 3
    assert len(sleeps) == 3 and all(0 < s <= client.policy.backoff_max for s in sleeps)
    assert sleeps[2] >= sleeps[0] / 2  # grows (with jitter), never unbounded


def test_a_5xx_burst_longer_than_the_retries_fails_with_apiunavailable(kaseya, kaseya_credentials):
    adapter, sleeps = FailingAdapter(failures=100), []
    client = client_with(kaseya_credentials, adapter, sleeps)
    with pytest.raises(ApiUnavailable):
        client.account_types()
    assert adapter.intercepted == client.policy.max_attempts
    assert len(sleeps) == client.policy.max_attempts - 1


@pytest.mark.parametrize("exception", [None, requests.exceptions.ReadTimeout("read timed out")])
def test_a_failed_post_is_never_retried(kaseya, kaseya_credentials, exception):
    adapter, sleeps = FailingAdapter(failures=5, method="POST", exception=exception), []
    client = client_with(kaseya_credentials, adapter, sleeps)
    client.user_info()
    with pytest.raises(WriteOutcomeUnknown, match="may have happened"):
        client.call("create_product_category", body={"Name": "Never twice"})
    assert adapter.intercepted == 1
    assert sleeps == []


def test_hourly_budget_stops_before_the_server_limit_and_reports_usage(kaseya, kaseya_credentials):
    now = [0.0]
    client = KaseyaClient(kaseya_credentials, sleep=no_sleep, budget=RouteBudget(3, clock=lambda: now[0]))
    for _ in range(3):
        client.warehouses()
    with pytest.raises(BudgetExhausted, match="rate budget exhausted for GET /v2/inventory/warehouses/lookup"):
        client.warehouses()
    assert len(logged(kaseya, "GET", "/v2/inventory/warehouses/lookup")) == 3
    assert client.budget.used()["GET /v2/inventory/warehouses/lookup"] == 3
    now[0] += 3601
    client.warehouses()  # the next hour has budget again


def test_products_are_one_row_per_warehouse_and_carry_their_index_id(kaseya, client):
    rows = list(client.iter_products())
    index_ids = {r["productIndexId"] for r in rows}
    assert len(rows) > len(index_ids)  # several warehouses per product
    some = next(iter(index_ids))
    assert client.product_pricing_levels(some)
    assert client.product_suppliers(some)


def test_request_bodies_the_client_sends_follow_the_contract(kaseya, client):
    account = next(client.iter_accounts())
    location_id = account["locations"][0]["id"]
    statuses = client.opportunity_statuses()
    employees = client.employees()
    body = {
        "Subject": "Contract check", "StatusId": statuses[0]["id"], "AccountId": account["id"],
        "AccountLocationId": location_id, "TypeId": client.lookup("opportunity_types")[0]["id"],
        "Probability": 50, "RatingId": client.lookup("opportunity_ratings")[0]["id"],
        "SalesRepresentativeUserId": employees[0]["id"], "Amount": 1200.5,
        "CloseDate": "2026-12-31T00:00:00",
    }
    created, _ = client.call("create_opportunity", body=body)
    assert created["subject"] == "Contract check"
    sent = logged(kaseya, "POST", "/v2/crm/opportunities")[-1]["body"]
    validate_request_body("POST", "/v2/crm/opportunities", sent)


def test_records_and_envelopes_are_read_case_insensitively():
    payload = parse_json('{"Success": true, "RESULT": [{"AccountName": "Ärger GmbH"}], "totalrecords": 1}')
    envelope = read_envelope(payload)
    assert envelope.success and envelope.total_records == 1
    row = envelope.result[0]
    assert isinstance(row, KaseyaRecord)
    assert row["accountName"] == row["ACCOUNTNAME"] == row.get("accountname") == "Ärger GmbH"
    assert "accountname" in row and "nope" not in row


def test_a_bare_dto_is_taken_as_the_result():
    envelope = read_envelope(parse_json('{"id": 5, "accountName": "Bare"}'))
    assert envelope.success and envelope.result["AccountName"] == "Bare"


def test_client_repr_and_errors_hide_the_password(kaseya_credentials):
    client = KaseyaClient(kaseya_credentials)
    assert kaseya_credentials.password.reveal() not in repr(client)
    assert kaseya_credentials.password.reveal() not in repr(kaseya_credentials)
