"""Fault injection in both sandboxes, over real HTTP: each kind on the wire, the plan's seeded replay,
scoping, `count`/`after`, and the two clients under faults (retries, lost answers, token expiry mid-paging,
unreadable answers). Client read timeouts are 0.5 s at most, so holds end as soon as the client gives up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests

from zk_pipelines.clients.http import (
    ApiError,
    ApiUnavailable,
    HttpPolicy,
    ValidationFailed,
    WriteOutcomeUnknown,
)
from zk_pipelines.clients.kaseya import KASEYA_POLICY, KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import KaseyaCredentials, ZomentumCredentials
from zk_pipelines.sandbox.faults import FAULT_KINDS, FaultInjector, ServedRoute
from zk_pipelines.sandbox.kaseya import KaseyaSandbox
from zk_pipelines.sandbox.zomentum import ZomentumSandbox

SHORT_READ = 0.5  # the client read timeout of tests that make a client time out
HELD = 5.0  # a hold well past SHORT_READ; it ends when the client gives up


# ----- one way to speak to either sandbox ---------------------------------------------------------------

class Wire:
    """Raw HTTP to one sandbox's API and control surface; the subclasses say what differs."""

    name: str
    read_path: str  # a list read
    read_route: str
    one_route: str  # a read by id, spelled with other parameter names and case
    write_route: str
    auth_route: str
    created_status: int
    page_params: dict[str, Any]

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.session = requests.Session()
        self.token = ""

    @property
    def base(self) -> str:
        return self.sandbox.base_url

    def control(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.base}/_sandbox/{path}", timeout=10, **kwargs)

    def set_faults(self, **plan: Any) -> dict[str, Any]:
        response = self.control("POST", "faults", json=plan)
        assert response.status_code == 200, response.text
        return response.json()

    def api(self, method: str, path: str, *, timeout: float = 10.0, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.base}{path}", headers={"Authorization": f"Bearer {self.token}"},
                                    timeout=(5, timeout), **kwargs)

    def read(self, **kwargs: Any) -> requests.Response:
        return self.api("GET", self.read_path, params=self.page_params, **kwargs)

    def log(self) -> list[dict[str, Any]]:
        return self.control("GET", "requests").json()

    def faults_seen(self) -> list[dict[str, Any] | None]:
        return [entry["fault"] for entry in self.log()]


class KaseyaWire(Wire):
    name = "kaseya"
    read_path = "/v2/crm/accounts/summary"
    read_route = "GET /v2/crm/accounts/summary"
    one_route = "get /V2/CRM/Accounts/Summary/{accountId}"
    write_route = "POST /v2/crm/accounts"
    auth_route = "POST /v2/security/authenticate"
    created_status = 200
    page_params = {"PageSize": 5}

    def __init__(self, sandbox: KaseyaSandbox) -> None:
        super().__init__(sandbox)
        self.refresh_token = ""

    def _tokens(self, response: requests.Response) -> requests.Response:
        if response.status_code == 200 and response.json()["success"]:
            result = response.json()["result"]
            self.token, self.refresh_token = result["accessToken"], result["refreshToken"]
        return response

    def login(self) -> requests.Response:
        return self._tokens(self.session.post(f"{self.base}/v2/security/authenticate", timeout=10, data={
            "UserName": self.sandbox.username, "Password": self.sandbox.password, "Tenant": self.sandbox.tenant,
            "GrantType": "password"}))

    def refresh(self) -> requests.Response:
        return self._tokens(self.session.post(f"{self.base}/v2/security/refreshtoken", timeout=10, data={
            "AccessToken": self.token, "RefreshToken": self.refresh_token}))

    def create(self, name: str, **kwargs: Any) -> requests.Response:
        return self.api("POST", "/v2/crm/accounts", json=account_body(self.sandbox, name), **kwargs)

    def created(self, name: str) -> bool:
        return any(a["accountName"] == name for a in self.sandbox.state.records("accounts"))

    def other_read(self) -> requests.Response:
        return self.api("GET", "/v2/crm/contacts/summary", params={"PageSize": 5})

    def read_one(self) -> requests.Response:
        return self.api("GET", f"/v2/crm/accounts/summary/{self.sandbox.state.records('accounts')[0]['id']}")

    def error_message(self, response: requests.Response) -> str:
        payload = response.json()
        assert payload["success"] is False and payload["result"] is None, payload
        assert payload["error"]["code"] == response.status_code or response.status_code == 200, payload
        return payload["error"]["message"]

    def refusal(self, response: requests.Response) -> str:
        return response.json()["error"]


class ZomentumWire(Wire):
    name = "zomentum"
    read_path = "/v2/client/companies"
    read_route = "GET /v2/client/companies"
    one_route = "GET /v2/CLIENT/companies/{company}"
    write_route = "POST /v2/client/companies/"
    auth_route = "GET /v2/auth0/access_token"
    created_status = 201
    page_params = {"limit": 5}

    def login(self) -> requests.Response:
        return self.refresh()

    def refresh(self) -> requests.Response:
        response = self.session.get(f"{self.base}/v2/auth0/access_token",
                                    params={"refresh_token": self.sandbox.refresh_token}, timeout=10)
        if response.status_code == 200:
            self.token = response.json()["access_token"]
        return response

    def create(self, name: str, **kwargs: Any) -> requests.Response:
        return self.api("POST", "/v2/client/companies/", json={"name": name}, **kwargs)

    def created(self, name: str) -> bool:
        return any(c["name"] == name for c in self.sandbox.state.records("client/companies"))

    def other_read(self) -> requests.Response:
        return self.api("GET", "/v2/client/users", params={"limit": 5})

    def read_one(self) -> requests.Response:
        return self.api("GET", f"/v2/client/companies/{self.sandbox.state.records('client/companies')[0]['id']}")

    def error_message(self, response: requests.Response) -> str:
        payload = response.json()
        assert payload["status_code"] == response.status_code, payload
        return payload["message"]

    def refusal(self, response: requests.Response) -> str:
        return response.json()["message"]


def account_body(sandbox: KaseyaSandbox, name: str) -> dict[str, Any]:
    tenant = sandbox.state.tenant
    return {"AccountName": name, "AccountTypeId": tenant.account_type_named("Customer").id,
            "BusinessTypeId": tenant.lookup("BusinessType").rows[0].id,
            "AccountManagerId": next(iter(tenant.employees.values())).id,
            "Locations": [{"LocationName": "Head Office", "IsMain": True, "IsActive": True, "Addresses": []}]}


@pytest.fixture(params=["kaseya", "zomentum"])
def wire(request: pytest.FixtureRequest) -> Iterator[KaseyaWire | ZomentumWire]:
    sandbox = request.getfixturevalue(request.param)
    speaker = KaseyaWire(sandbox) if request.param == "kaseya" else ZomentumWire(sandbox)
    assert speaker.login().status_code == 200
    speaker.control("DELETE", "requests")
    yield speaker
    speaker.session.close()


def rule(wire: Wire, kind: str, **fields: Any) -> dict[str, Any]:
    """A rule on the wire's list read unless `route` says otherwise."""
    return {"kind": kind, "route": wire.read_route, **fields}


def raised_or_returned(call: Any) -> Any:
    """What a client call returned, or the API error it raised."""
    try:
        return call()
    except ApiError as exc:
        return exc


def outcome(send: Any) -> int | str:
    """The status of a request, or the name of the exception `requests` raised instead."""
    try:
        return send().status_code
    except requests.RequestException as exc:
        return type(exc).__name__


# ----- the plan on the control surface ------------------------------------------------------------------

def test_a_plan_is_set_shown_counted_and_cleared_over_http_and_in_python(wire: Wire) -> None:
    shown = wire.set_faults(seed=42, rules=[rule(wire, "http_error", statuses=[503], count=1)])

    assert shown["seed"] == 42
    assert shown["rules"] == [{"kind": "http_error", "route": wire.read_route.split()[1], "method": "GET",
                               "rate": 1.0, "count": 1, "after": 0, "statuses": [503], "matched": 0,
                               "injected": 0}]
    assert [wire.read().status_code for _ in range(3)] == [503, 200, 200]
    view = wire.control("GET", "faults").json()
    assert (view["rules"][0]["matched"], view["rules"][0]["injected"]) == (3, 1)
    assert view["injected"] == wire.sandbox.state.fault_counts() == {"http_error": {wire.read_route: 1}}

    assert wire.control("DELETE", "faults").status_code == 204
    assert wire.sandbox.state.fault_plan() == {"seed": None, "rules": [], "injected": {}}
    assert wire.read().status_code == 200

    wire.sandbox.state.set_faults(seed=3, rules=[rule(wire, "http_error", statuses=[502])])
    assert wire.control("GET", "faults").json()["seed"] == 3
    assert wire.read().status_code == 502
    wire.sandbox.state.clear_faults()
    assert wire.read().status_code == 200


def test_a_plan_without_a_seed_draws_one_and_shows_it_for_the_replay(wire: Wire) -> None:
    assert isinstance(wire.set_faults(rules=[])["seed"], int)


def test_reset_clears_the_plan_and_its_counters(wire: Wire) -> None:
    wire.set_faults(seed=1, rules=[rule(wire, "http_error")])
    assert wire.read().status_code >= 500

    wire.control("POST", "reset", json={})
    wire.login()

    assert wire.control("GET", "faults").json() == {"seed": None, "rules": [], "injected": {}}
    assert wire.read().status_code == 200


BAD_PLANS = [
    ({"rules": [{"kind": "meteor_strike"}]}, "rules[0].kind: 'meteor_strike' is not one of"),
    ({"rules": [{"kind": "http_error", "rate": 1.5}]}, "rules[0].rate: must be between 0 and 1"),
    ({"rules": [{"kind": "http_error", "statuses": [404]}]}, "rules[0].statuses: must be a non-empty list of 5xx"),
    ({"rules": [{"kind": "http_error", "seconds": 1}]}, "rules[0]: seconds does not apply to http_error"),
    ({"rules": [{"kind": "latency"}]}, "rules[0].seconds: required for latency"),
    ({"rules": [{"kind": "read_timeout", "seconds": 0}]}, "rules[0].seconds: must be a positive number"),
    ({"rules": [{"kind": "rate_limit_burst", "length": 0}]}, "rules[0].length: must be a whole number, 1 or more"),
    ({"rules": [{"kind": "lost_answer", "count": 0}]}, "rules[0].count: must be a whole number, 1 or more"),
    ({"rules": [{"kind": "latency", "seconds": 1, "route": "/v2/no/such/route"}]},
     "rules[0].route: /v2/no/such/route matches no route this sandbox serves"),
    ({"rules": [{"kind": "latency", "seconds": 1, "route": "GET /v2/x", "method": "POST"}]},
     "rules[0]: route says GET but method says POST"),
    ({"rules": [{"kind": "latency", "seconds": 1, "route": "v2/crm"}]}, "rules[0].route: give a route template"),
    ({"seed": "abc"}, "seed: must be an integer"),
    ({"rule": []}, "rule: unknown (a fault plan has a seed and rules)"),
]


@pytest.mark.parametrize(("plan", "expected"), BAD_PLANS)
def test_a_bad_plan_is_refused_naming_the_rule_and_field(wire: Wire, plan: dict[str, Any], expected: str) -> None:
    kept = wire.set_faults(seed=8, rules=[rule(wire, "latency", seconds=0.01)])

    response = wire.control("POST", "faults", json=plan)

    assert response.status_code == 400
    assert expected in wire.refusal(response)
    assert wire.control("GET", "faults").json() == kept  # the plan in force stays


def test_token_expiry_cannot_target_the_route_that_hands_out_tokens(wire: Wire) -> None:
    response = wire.control("POST", "faults", json={"rules": [{"kind": "token_expiry", "route": wire.auth_route}]})

    assert response.status_code == 400
    assert "token_expiry needs a route called with a bearer token" in wire.refusal(response)


def test_success_false_is_kaseya_only(zomentum: ZomentumSandbox) -> None:
    response = requests.post(f"{zomentum.base_url}/_sandbox/faults", json={"rules": [{"kind": "success_false"}]},
                             timeout=10)

    assert response.status_code == 400
    assert "rules[0].kind: 'success_false' is not one of" in response.json()["message"]


# ----- each kind on the wire ------------------------------------------------------------------------------

def test_http_error_answers_a_listed_status_in_the_api_s_own_error_shape(wire: Wire) -> None:
    wire.set_faults(seed=5, rules=[rule(wire, "http_error", statuses=[500, 502, 503], count=4)])

    answers = [wire.read() for _ in range(4)]

    assert {a.status_code for a in answers} <= {500, 502, 503}
    assert all("injected by the sandbox's fault plan" in wire.error_message(a) for a in answers)
    assert wire.faults_seen() == [{"kind": "http_error", "rule": 0, "status": a.status_code} for a in answers]
    assert [e["status"] for e in wire.log()] == [a.status_code for a in answers]


def test_a_rate_limit_burst_is_length_429s_with_retry_after_then_the_route_answers(wire: Wire) -> None:
    wire.set_faults(seed=1, rules=[rule(wire, "rate_limit_burst", length=3, retry_after=7, count=1)])

    answers = [wire.read() for _ in range(5)]

    assert [a.status_code for a in answers] == [429, 429, 429, 200, 200]
    assert [a.headers.get("Retry-After") for a in answers[:3]] == ["7", "7", "7"]
    assert "injected" in wire.error_message(answers[0])
    assert wire.sandbox.state.fault_counts() == {"rate_limit_burst": {wire.read_route: 3}}


def test_a_connection_reset_is_a_connection_error_with_no_answer(wire: Wire) -> None:
    wire.set_faults(seed=1, rules=[rule(wire, "connection_reset", count=1)])

    with pytest.raises(requests.ConnectionError):
        wire.read()

    assert wire.read().status_code == 200  # the next request opens a new connection
    assert [(e["status"], e["fault"]) for e in wire.log()] == [
        (0, {"kind": "connection_reset", "rule": 0}), (200, None)]


def test_read_timeout_holds_the_answer_past_a_shorter_client_timeout_then_drops_it(wire: Wire) -> None:
    wire.set_faults(seed=1, rules=[rule(wire, "read_timeout", seconds=HELD, count=1),
                                   rule(wire, "read_timeout", seconds=0.2, after=1, count=1)])

    with pytest.raises(requests.exceptions.ReadTimeout):
        wire.read(timeout=SHORT_READ)
    with pytest.raises(requests.ConnectionError):  # a client that waits longer than the hold: no answer either
        wire.read(timeout=HELD)

    assert wire.read().status_code == 200
    assert [(e["status"], (e["fault"] or {}).get("kind")) for e in wire.log()] == [
        (0, "read_timeout"), (0, "read_timeout"), (200, None)]


def test_latency_delays_an_intact_answer(wire: Wire) -> None:
    clean = wire.read().json()
    wire.control("DELETE", "requests")
    wire.set_faults(seed=1, rules=[rule(wire, "latency", seconds=HELD, count=1),
                                   rule(wire, "latency", seconds=0.05, after=1, count=1)])

    with pytest.raises(requests.exceptions.ReadTimeout):  # the delay is real
        wire.read(timeout=SHORT_READ)
    late = wire.read()

    assert late.status_code == 200 and late.json() == clean
    assert wire.faults_seen() == [{"kind": "latency", "rule": 0, "seconds": HELD},
                                  {"kind": "latency", "rule": 1, "seconds": 0.05}]


def test_malformed_json_is_a_success_whose_body_is_cut_short(wire: Wire) -> None:
    wire.set_faults(seed=1, rules=[rule(wire, "malformed_json", count=1)])

    cut, clean = wire.read(), wire.read()

    assert cut.status_code == 200 and "json" in cut.headers["content-type"]
    with pytest.raises(ValueError):
        json.loads(cut.text)
    assert clean.content.startswith(cut.content) and len(cut.content) < len(clean.content)  # cut as bytes
    assert wire.faults_seen() == [{"kind": "malformed_json", "rule": 0}, None]


def test_token_expiry_answers_401_and_the_token_stays_expired_until_refreshed(wire: Wire) -> None:
    wire.set_faults(seed=1, rules=[rule(wire, "token_expiry", after=1, count=1)])

    statuses = [wire.read().status_code for _ in range(3)]
    assert wire.refresh().status_code == 200
    after_refresh = wire.read().status_code

    assert statuses == [200, 401, 401]
    assert after_refresh == 200
    read_faults = [e["fault"] for e in wire.log() if e["route"] == wire.read_route.split()[1]]
    assert read_faults == [None, {"kind": "token_expiry", "rule": 0}, None, None]


@pytest.mark.parametrize(("seconds", "timeout", "seen"), [(0, 10.0, "ConnectionError"),
                                                          (HELD, SHORT_READ, "ReadTimeout")])
def test_a_lost_answer_leaves_the_write_applied(wire: Wire, seconds: float, timeout: float, seen: str) -> None:
    wire.set_faults(seed=1, rules=[rule(wire, "lost_answer", route=wire.write_route, seconds=seconds)])

    assert outcome(lambda: wire.create("Lost Answer Ltd", timeout=timeout)) == seen

    assert wire.created("Lost Answer Ltd")
    [entry] = wire.log()
    assert entry["status"] == 0
    assert entry["fault"]["kind"] == "lost_answer" and entry["fault"]["withheld_status"] in (200, 201)


WRITE_REFUSALS = [
    ({"kind": "http_error", "statuses": [503]}, 503),
    ({"kind": "rate_limit_burst", "length": 1}, 429),
    ({"kind": "token_expiry"}, 401),
    ({"kind": "connection_reset"}, "ConnectionError"),
    ({"kind": "read_timeout", "seconds": HELD}, "ReadTimeout"),
]


@pytest.mark.parametrize(("fault", "seen"), WRITE_REFUSALS, ids=[f["kind"] for f, _ in WRITE_REFUSALS])
def test_a_fault_before_the_operation_leaves_the_write_unapplied(wire: Wire, fault: dict[str, Any],
                                                                   seen: int | str) -> None:
    wire.set_faults(seed=1, rules=[{**fault, "route": wire.write_route, "count": 1}])

    timeout = SHORT_READ if fault["kind"] == "read_timeout" else 10.0
    assert outcome(lambda: wire.create("Never Written Ltd", timeout=timeout)) == seen

    assert not wire.created("Never Written Ltd")
    assert [e["fault"]["kind"] for e in wire.log()] == [fault["kind"]]


def test_kaseya_success_false_is_a_200_envelope_saying_it_was_injected_and_nothing_is_written(
        kaseya: KaseyaSandbox) -> None:
    speaker = KaseyaWire(kaseya)
    speaker.login()
    speaker.set_faults(seed=1, rules=[{"kind": "success_false", "route": "POST /v2/crm/accounts", "count": 1},
                                      {"kind": "success_false", "route": speaker.read_route, "count": 1}])

    write, read = speaker.create("Refused Ltd"), speaker.read()

    assert (write.status_code, read.status_code) == (200, 200)
    assert "injected by the sandbox's fault plan: success_false" in speaker.error_message(write)
    assert "injected" in speaker.error_message(read)
    assert not speaker.created("Refused Ltd")
    assert kaseya.state.fault_counts() == {"success_false": {"GET /v2/crm/accounts/summary": 1,
                                                             "POST /v2/crm/accounts": 1}}


# ----- seeds, scoping, count and after --------------------------------------------------------------------

def replay(wire: Wire, seed: int, reads: int = 30) -> list[tuple[int, dict[str, Any] | None]]:
    """The same reads under the same mixed plan: what each answered and which fault it got."""
    wire.set_faults(seed=seed, rules=[rule(wire, "rate_limit_burst", rate=0.1, length=2),
                                      rule(wire, "http_error", rate=0.3),
                                      rule(wire, "malformed_json", rate=0.2)])
    wire.control("DELETE", "requests")
    for _ in range(reads):
        wire.read()
    return [(entry["status"], entry["fault"]) for entry in wire.log()]


def test_the_same_seed_and_requests_inject_the_same_faults(wire: Wire) -> None:
    first, again, other = replay(wire, seed=2024), replay(wire, seed=2024), replay(wire, seed=2025)

    assert first == again
    assert first != other
    kinds = {fault["kind"] if fault else None for _, fault in first}
    assert kinds == {None, "rate_limit_burst", "http_error", "malformed_json"}  # the rates apply, none is all


def test_a_rule_strikes_only_its_route_and_method(wire: Wire) -> None:
    wire.set_faults(seed=1, rules=[rule(wire, "http_error", statuses=[502])])
    assert (wire.read().status_code, wire.other_read().status_code, wire.create("Scoped Ltd").status_code) == (
        502, 200, wire.created_status)

    wire.set_faults(seed=1, rules=[{"kind": "http_error", "statuses": [502], "method": "POST"}])
    assert (wire.read().status_code, wire.create("Scoped Three Ltd").status_code) == (200, 502)

    wire.set_faults(seed=1, rules=[{"kind": "http_error", "statuses": [502], "route": wire.one_route}])
    assert (wire.read_one().status_code, wire.read().status_code) == (502, 200)


def test_rules_without_a_route_spare_the_control_surface_and_the_token_route(wire: Wire) -> None:
    wire.set_faults(seed=1, rules=[{"kind": "http_error", "statuses": [503]}])

    assert wire.control("GET", "clock").status_code == 200
    assert wire.refresh().status_code == 200
    assert wire.read().status_code == 503

    wire.set_faults(seed=1, rules=[{"kind": "http_error", "statuses": [503], "route": wire.auth_route}])
    assert wire.login().status_code == 503
    assert wire.read().status_code == 200


def test_after_skips_the_first_matching_requests_and_count_caps_the_injections(wire: Wire) -> None:
    wire.set_faults(seed=1, rules=[rule(wire, "http_error", statuses=[500], after=2, count=2)])

    assert [wire.read().status_code for _ in range(6)] == [200, 200, 500, 500, 200, 200]


def test_a_burst_counts_once_against_count(wire: Wire) -> None:
    wire.set_faults(seed=1, rules=[rule(wire, "rate_limit_burst", length=2, count=2)])

    assert [wire.read().status_code for _ in range(5)] == [429, 429, 429, 429, 200]


def test_the_first_rule_that_strikes_decides_and_every_matching_rule_counts_the_request(wire: Wire) -> None:
    wire.set_faults(seed=1, rules=[rule(wire, "http_error", statuses=[500], count=1),
                                   rule(wire, "http_error", statuses=[503], after=1, count=1)])

    assert [wire.read().status_code for _ in range(3)] == [500, 503, 200]


def test_a_rate_of_zero_never_strikes(wire: Wire) -> None:
    wire.set_faults(seed=1, rules=[rule(wire, "connection_reset", rate=0)])

    assert [wire.read().status_code for _ in range(5)] == [200] * 5
    assert wire.sandbox.state.fault_counts() == {}


def test_the_plan_checks_routes_only_once_a_sandbox_serves_them() -> None:
    injector = FaultInjector(FAULT_KINDS)
    injector.configure({"rules": [{"kind": "latency", "seconds": 1, "route": "/v2/anything"}]})
    injector.serve([ServedRoute("GET", "/v2/things/{id}")])

    with pytest.raises(ValueError, match="matches no route"):
        injector.configure({"rules": [{"kind": "latency", "seconds": 1, "route": "/v2/anything"}]})
    assert injector.configure({"rules": [{"kind": "latency", "seconds": 1, "route": "GET /V2/Things/{thingId}/"}]})


# ----- the Kaseya client under faults ---------------------------------------------------------------------

class Sleeps(list[float]):
    """Records the client's waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def kaseya_client(credentials: KaseyaCredentials, sleeps: Sleeps | None = None, **policy: Any) -> KaseyaClient:
    return KaseyaClient(credentials, policy=replace(KASEYA_POLICY, **policy),
                        sleep=sleeps if sleeps is not None else Sleeps())


def kaseya_route_log(kaseya: KaseyaSandbox, route: str) -> list[tuple[int, str | None]]:
    return [(e["status"], e["fault"] and e["fault"]["kind"]) for e in kaseya.state.requests() if e["route"] == route]


ACCOUNTS = "/v2/crm/accounts/summary"
# Failures a read is retried through; only the timeout needs the short client read timeout.
READ_FAILURES = [
    ({"kind": "http_error", "count": 2}, {}),
    ({"kind": "connection_reset", "count": 2}, {}),
    ({"kind": "read_timeout", "seconds": HELD, "count": 1}, {"read_timeout": SHORT_READ}),
]


def all_account_ids(kaseya: KaseyaSandbox) -> list[int]:
    return sorted(a["id"] for a in kaseya.state.records("accounts"))


@pytest.mark.parametrize(("fault", "policy"), READ_FAILURES, ids=["5xx", "reset", "read_timeout"])
def test_kaseya_reads_are_retried_through_failures_and_succeed(
        kaseya: KaseyaSandbox, kaseya_credentials: KaseyaCredentials, fault: dict[str, Any],
        policy: dict[str, Any]) -> None:
    client = kaseya_client(kaseya_credentials, **policy)
    kaseya.state.set_faults(seed=9, rules=[{**fault, "route": f"GET {ACCOUNTS}"}])

    accounts = list(client.iter_accounts())

    assert sorted(a["id"] for a in accounts) == all_account_ids(kaseya)
    assert client.stats.counter.retries == fault["count"]
    assert [kind for _, kind in kaseya_route_log(kaseya, ACCOUNTS)] == [fault["kind"]] * fault["count"] + [None]


def test_kaseya_reads_wait_out_a_429_burst_as_retry_after_says(
        kaseya: KaseyaSandbox, kaseya_credentials: KaseyaCredentials) -> None:
    sleeps = Sleeps()
    client = kaseya_client(kaseya_credentials, sleeps)
    kaseya.state.set_faults(seed=9, rules=[{"kind": "rate_limit_burst", "route": f"GET {ACCOUNTS}", "length": 3,
                                            "retry_after": 4, "count": 1}])

    accounts = list(client.iter_accounts())

    assert sorted(a["id"] for a in accounts) == all_account_ids(kaseya)
    assert sleeps == [4.0, 4.0, 4.0]
    assert [status for status, _ in kaseya_route_log(kaseya, ACCOUNTS)] == [429, 429, 429, 200]


@pytest.mark.parametrize(("seconds", "policy"), [(0, {}), (HELD, {"read_timeout": SHORT_READ})],
                         ids=["reset", "timeout"])
def test_kaseya_create_with_a_lost_answer_is_write_outcome_unknown_and_the_account_exists(
        kaseya: KaseyaSandbox, kaseya_credentials: KaseyaCredentials, seconds: float, policy: dict) -> None:
    client = kaseya_client(kaseya_credentials, **policy)
    kaseya.state.set_faults(seed=9, rules=[{"kind": "lost_answer", "route": "POST /v2/crm/accounts",
                                            "seconds": seconds}])

    with pytest.raises(WriteOutcomeUnknown):
        client.call("create_account", body=account_body(kaseya, "Maybe Created Ltd"))

    assert [a["accountName"] for a in kaseya.state.records("accounts")].count("Maybe Created Ltd") == 1
    assert kaseya_route_log(kaseya, "/v2/crm/accounts") == [(0, "lost_answer")]  # never repeated blindly


def test_kaseya_create_refused_by_a_5xx_is_not_repeated_and_not_applied(
        kaseya: KaseyaSandbox, kaseya_credentials: KaseyaCredentials) -> None:
    client = kaseya_client(kaseya_credentials)
    kaseya.state.set_faults(seed=9, rules=[{"kind": "http_error", "route": "POST /v2/crm/accounts",
                                            "statuses": [503]}])

    with pytest.raises(WriteOutcomeUnknown):
        client.call("create_account", body=account_body(kaseya, "Not Created Ltd"))

    assert "Not Created Ltd" not in [a["accountName"] for a in kaseya.state.records("accounts")]
    assert kaseya_route_log(kaseya, "/v2/crm/accounts") == [(503, "http_error")]


def test_kaseya_token_expiry_in_the_middle_of_paging_is_renewed_and_the_page_repeated(
        kaseya: KaseyaSandbox, kaseya_credentials: KaseyaCredentials) -> None:
    client = kaseya_client(kaseya_credentials)
    kaseya.state.set_faults(seed=9, rules=[{"kind": "token_expiry", "route": f"GET {ACCOUNTS}", "after": 1,
                                            "count": 1}])

    ids = [a["id"] for a in client.paginate("accounts", page_size=15)]

    assert sorted(ids) == all_account_ids(kaseya) and len(ids) == len(set(ids))
    assert (client.stats.logins, client.stats.refreshes) == (1, 1)
    assert kaseya_route_log(kaseya, ACCOUNTS) == [(200, None), (401, "token_expiry"), (200, None), (200, None)]
    pages = [e["query"] for e in kaseya.state.requests() if e["route"] == ACCOUNTS]
    assert [q.split("PageNumber=")[1].split("&")[0] for q in pages] == ["1", "2", "2", "3"]


def test_kaseya_malformed_json_on_a_read_is_read_again(
        kaseya: KaseyaSandbox, kaseya_credentials: KaseyaCredentials) -> None:
    client = kaseya_client(kaseya_credentials)
    route = "/v2/system/accounttypes/lookup"
    kaseya.state.set_faults(seed=9, rules=[{"kind": "malformed_json", "route": f"GET {route}", "count": 1}])

    assert client.account_types() == kaseya_client(kaseya_credentials).account_types()

    assert kaseya_route_log(kaseya, route)[:2] == [(200, "malformed_json"), (200, None)]
    assert client.stats.counter.retries == 1


def test_kaseya_malformed_json_on_every_attempt_of_a_read_is_a_typed_error(
        kaseya: KaseyaSandbox, kaseya_credentials: KaseyaCredentials) -> None:
    client = kaseya_client(kaseya_credentials, max_attempts=2)
    kaseya.state.set_faults(seed=9, rules=[{"kind": "malformed_json", "route": "GET /v2/system/accounttypes/lookup",
                                            "count": 2}])

    with pytest.raises(ApiError) as raised:
        client.account_types()

    assert isinstance(raised.value, ApiUnavailable) and not isinstance(raised.value, ValueError)
    assert "not JSON" in raised.value.message
    assert client.account_types()  # the next answer is whole again


def test_kaseya_success_false_on_a_read_is_a_validation_error_carrying_the_message(
        kaseya: KaseyaSandbox, kaseya_credentials: KaseyaCredentials) -> None:
    client = kaseya_client(kaseya_credentials)
    kaseya.state.set_faults(seed=9, rules=[{"kind": "success_false", "route": "GET /v2/system/accounttypes/lookup"}])

    with pytest.raises(ValidationFailed, match="injected by the sandbox's fault plan") as raised:
        client.account_types()

    assert (raised.value.status, raised.value.code) == (200, 500)
    assert client.stats.counter.retries == 0


@pytest.mark.parametrize(("fault", "statuses"), [
    ({"kind": "token_expiry"}, [401, 200]),
    ({"kind": "rate_limit_burst", "length": 2}, [429, 429, 200]),
], ids=["token_expiry", "429"])
def test_kaseya_create_refused_with_401_or_429_is_repeated_and_applied_once(
        kaseya: KaseyaSandbox, kaseya_credentials: KaseyaCredentials, fault: dict[str, Any],
        statuses: list[int]) -> None:
    client = kaseya_client(kaseya_credentials)
    kaseya.state.set_faults(seed=9, rules=[{**fault, "route": "POST /v2/crm/accounts", "count": 1}])

    created, _ = client.call("create_account", body=account_body(kaseya, "Created Once Ltd"))

    assert created["accountName"] == "Created Once Ltd"
    assert [a["accountName"] for a in kaseya.state.records("accounts")].count("Created Once Ltd") == 1
    assert [status for status, _ in kaseya_route_log(kaseya, "/v2/crm/accounts")] == statuses


def test_kaseya_create_with_a_malformed_answer_is_write_outcome_unknown(
        kaseya: KaseyaSandbox, kaseya_credentials: KaseyaCredentials) -> None:
    client = kaseya_client(kaseya_credentials)
    kaseya.state.set_faults(seed=9, rules=[{"kind": "malformed_json", "route": "POST /v2/crm/accounts"}])

    failure = raised_or_returned(lambda: client.call("create_account", body=account_body(kaseya, "Garbled Answer Ltd")))

    assert [a["accountName"] for a in kaseya.state.records("accounts")].count("Garbled Answer Ltd") == 1
    assert isinstance(failure, WriteOutcomeUnknown), repr(failure)


# ----- the Zomentum client under faults -------------------------------------------------------------------

COMPANIES = "/v2/client/companies"


def zomentum_client(credentials: ZomentumCredentials, sleeps: Sleeps | None = None,
                    **policy: Any) -> ZomentumClient:
    return ZomentumClient(credentials, policy=HttpPolicy(api_name="zomentum", **policy),
                          sleep=sleeps if sleeps is not None else Sleeps())


def zomentum_route_log(zomentum: ZomentumSandbox, route: str) -> list[tuple[int, str | None]]:
    return [(e["status"], e["fault"] and e["fault"]["kind"]) for e in zomentum.state.requests()
            if e["route"] == route]


def all_company_ids(zomentum: ZomentumSandbox) -> list[str]:
    return sorted(c["id"] for c in zomentum.state.records("client/companies"))


@pytest.mark.parametrize(("fault", "policy"), READ_FAILURES, ids=["5xx", "reset", "read_timeout"])
def test_zomentum_reads_are_retried_through_failures_and_succeed(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials, fault: dict[str, Any],
        policy: dict[str, Any]) -> None:
    client = zomentum_client(zomentum_credentials, **policy)
    zomentum.state.set_faults(seed=9, rules=[{**fault, "route": f"GET {COMPANIES}"}])

    companies = list(client.clients())

    assert sorted(c["id"] for c in companies) == all_company_ids(zomentum)
    assert client.counter.retries == fault["count"]
    assert [kind for _, kind in zomentum_route_log(zomentum, COMPANIES)] == [fault["kind"]] * fault["count"] + [None]


def test_zomentum_reads_wait_out_a_429_burst_as_retry_after_says(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials) -> None:
    sleeps = Sleeps()
    client = zomentum_client(zomentum_credentials, sleeps)
    zomentum.state.set_faults(seed=9, rules=[{"kind": "rate_limit_burst", "route": f"GET {COMPANIES}", "length": 3,
                                              "retry_after": 4, "count": 1}])

    companies = list(client.clients())

    assert sorted(c["id"] for c in companies) == all_company_ids(zomentum)
    assert sleeps == [4.0, 4.0, 4.0]
    assert [status for status, _ in zomentum_route_log(zomentum, COMPANIES)] == [429, 429, 429, 200]


@pytest.mark.parametrize(("seconds", "policy"), [(0, {}), (HELD, {"read_timeout": SHORT_READ})],
                         ids=["reset", "timeout"])
def test_zomentum_create_with_a_lost_answer_is_write_outcome_unknown_and_the_record_exists(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials, seconds: float, policy: dict) -> None:
    client = zomentum_client(zomentum_credentials, **policy)
    zomentum.state.set_faults(seed=9, rules=[{"kind": "lost_answer", "route": f"POST {COMPANIES}",
                                              "seconds": seconds}])

    with pytest.raises(WriteOutcomeUnknown):
        client.create("client/companies", {"name": "Maybe Created Ltd"})

    assert (client.counter.writes, client.counter.retries) == (1, 0)
    assert len(client.find_by("client/companies", "name", "Maybe Created Ltd")) == 1


def test_zomentum_create_refused_by_a_5xx_is_not_repeated_and_not_applied(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials) -> None:
    client = zomentum_client(zomentum_credentials)
    zomentum.state.set_faults(seed=9, rules=[{"kind": "http_error", "route": f"POST {COMPANIES}",
                                              "statuses": [502]}])

    with pytest.raises(WriteOutcomeUnknown):
        client.create("client/companies", {"name": "Not Created Ltd"})

    assert "Not Created Ltd" not in [c["name"] for c in zomentum.state.records("client/companies")]
    assert zomentum_route_log(zomentum, f"{COMPANIES}/") == [(502, "http_error")]


def test_zomentum_token_expiry_in_the_middle_of_paging_is_refreshed_and_the_page_repeated(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials) -> None:
    client = zomentum_client(zomentum_credentials)
    zomentum.state.set_faults(seed=9, rules=[{"kind": "token_expiry", "route": f"GET {COMPANIES}", "after": 1,
                                              "count": 1}])

    ids = [c["id"] for c in client.iter_records("client/companies", limit=3)]

    assert sorted(ids) == all_company_ids(zomentum) and len(ids) == len(set(ids))
    assert client.counter.refreshes == 2  # the first token, then the one after the expiry
    assert zomentum_route_log(zomentum, COMPANIES) == [(200, None), (401, "token_expiry"), (200, None), (200, None)]
    pages = [e["query"] for e in zomentum.state.requests() if e["route"] == COMPANIES]
    assert [q.split("page=")[1].split("&")[0] for q in pages] == ["1", "2", "2", "3"]


def test_zomentum_malformed_json_on_a_read_is_read_again(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials) -> None:
    client = zomentum_client(zomentum_credentials)
    expected = list(client.clients())
    zomentum.state.set_faults(seed=9, rules=[{"kind": "malformed_json", "route": f"GET {COMPANIES}", "count": 1}])

    assert list(client.clients()) == expected

    assert (200, "malformed_json") in zomentum_route_log(zomentum, COMPANIES)
    assert sum(zomentum.state.fault_counts()["malformed_json"].values()) == 1


def test_zomentum_malformed_json_on_every_attempt_of_a_read_is_a_typed_error(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials) -> None:
    client = zomentum_client(zomentum_credentials, max_attempts=2)
    zomentum.state.set_faults(seed=9, rules=[{"kind": "malformed_json", "route": f"GET {COMPANIES}", "count": 2}])

    with pytest.raises(ApiError) as raised:
        list(client.clients())

    assert not isinstance(raised.value, ValueError)
    assert "not JSON" in raised.value.message
    assert list(client.clients())  # the next answer is whole again


@pytest.mark.parametrize(("fault", "statuses"), [
    ({"kind": "token_expiry"}, [401, 201]),
    ({"kind": "rate_limit_burst", "length": 2}, [429, 429, 201]),
], ids=["token_expiry", "429"])
def test_zomentum_create_refused_with_401_or_429_is_repeated_and_applied_once(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials, fault: dict[str, Any],
        statuses: list[int]) -> None:
    client = zomentum_client(zomentum_credentials)
    zomentum.state.set_faults(seed=9, rules=[{**fault, "route": f"POST {COMPANIES}", "count": 1}])

    created = client.create("client/companies", {"name": "Created Once Ltd"})

    assert created["name"] == "Created Once Ltd"
    assert [c["name"] for c in zomentum.state.records("client/companies")].count("Created Once Ltd") == 1
    assert [status for status, _ in zomentum_route_log(zomentum, f"{COMPANIES}/")] == statuses


def test_zomentum_create_with_a_malformed_answer_is_write_outcome_unknown(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials) -> None:
    client = zomentum_client(zomentum_credentials)
    zomentum.state.set_faults(seed=9, rules=[{"kind": "malformed_json", "route": f"POST {COMPANIES}"}])

    failure = raised_or_returned(lambda: client.create("client/companies", {"name": "Garbled Answer Ltd"}))

    assert [c["name"] for c in zomentum.state.records("client/companies")].count("Garbled Answer Ltd") == 1
    assert isinstance(failure, WriteOutcomeUnknown), repr(failure)


LINE_ITEMS = "GET /v2/documents/{document_id}/revisions/{revision_id}/downloadproducts/"


def test_zomentum_a_truncated_line_item_csv_is_a_typed_error_never_fewer_lines(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials) -> None:
    client = zomentum_client(zomentum_credentials)
    accepted = []
    for document in zomentum.state.records("documents"):
        zomentum.state.set_faults(seed=9, rules=[{"kind": "malformed_json", "route": LINE_ITEMS, "count": 1}])
        got = raised_or_returned(lambda document=document: client.document_line_items(
            document["id"], document["current_revision_id"]))
        if not isinstance(got, ApiError):
            accepted.append((document["name"], got))

    assert accepted == []


def test_zomentum_a_truncated_pdf_is_a_typed_error(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials) -> None:
    client = zomentum_client(zomentum_credentials)
    document_id = zomentum.state.records("documents")[0]["id"]
    zomentum.state.set_faults(seed=9, rules=[{"kind": "malformed_json", "route": "GET /v2/documents/download/{id}",
                                              "count": 1}])

    got = raised_or_returned(lambda: client.download_document(document_id))

    assert isinstance(got, ApiError), f"{len(got)} bytes accepted"
