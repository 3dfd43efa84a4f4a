"""The Zomentum client against the sandbox, counting every request it sends."""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
import requests

from zk_pipelines.clients.http import (
    AuthenticationError,
    HttpPolicy,
    NotFound,
    RateLimited,
    ValidationFailed,
    WriteOutcomeUnknown,
)
from zk_pipelines.clients.zomentum import (
    ACCESS_REJECTED_AFTER_REFRESH,
    REFRESH_REJECTED,
    ZomentumClient,
)
from zk_pipelines.clients.zomentum_models import (
    DocumentLineItem,
    LineItemsFormatError,
    api_root,
    filters_param,
    parse_line_items_csv,
)
from zk_pipelines.config import ZomentumCredentials
from zk_pipelines.sandbox.zomentum import ZomentumSandbox
from zk_pipelines.secrets import Secret

POLICY = HttpPolicy(api_name="zomentum", max_attempts=3)


class Sleeps(list[float]):
    """Records the client's waits instead of sleeping; optionally moves the sandbox clock by them."""

    def __init__(self, sandbox: ZomentumSandbox | None = None) -> None:
        super().__init__()
        self.sandbox = sandbox

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if self.sandbox is not None:
            self.sandbox.state.advance_clock(seconds)


def make_client(credentials: ZomentumCredentials, sleep: Sleeps | None = None, **kwargs: Any) -> ZomentumClient:
    return ZomentumClient(credentials, policy=POLICY, sleep=sleep if sleep is not None else Sleeps(), **kwargs)


@pytest.fixture
def client(zomentum_credentials: ZomentumCredentials) -> ZomentumClient:
    return make_client(zomentum_credentials)


def logged(sandbox: ZomentumSandbox) -> list[tuple[str, int]]:
    return [(entry["route"], entry["status"]) for entry in sandbox.state.requests()]


REFRESH = "/v2/auth0/access_token"


# ----- tokens -------------------------------------------------------------------------------------------

def test_first_call_refreshes_the_access_token_then_reads(zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    users = client.users()

    assert {u["email"] for u in users} == {u["email"] for u in zomentum.state.records("users")}
    assert (client.counter.refreshes, client.counter.reads, client.counter.writes) == (1, 1, 0)
    assert logged(zomentum) == [(REFRESH, 200), ("/v2/users", 200)]


def test_a_configured_access_token_is_used_without_a_refresh(zomentum: ZomentumSandbox) -> None:
    credentials = ZomentumCredentials(zomentum.base_url, Secret(zomentum.refresh_token),
                                      access_token=Secret(zomentum.state.issue_access_token()))
    client = make_client(credentials)

    client.pipelines()

    assert (client.counter.refreshes, client.counter.reads) == (0, 1)


def test_an_invalidated_access_token_is_refreshed_once_and_the_read_repeated(
        zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    client.pipelines()
    zomentum.state.issue_access_token()  # someone else refreshed: the client's token is now invalid

    pipelines = client.pipelines()

    assert [p.name for p in pipelines] == ["Sales Pipeline", "Renewals"]
    assert (client.counter.refreshes, client.counter.reads, client.counter.retries) == (2, 3, 0)
    assert logged(zomentum) == [(REFRESH, 200), ("/v2/pipelines", 200), ("/v2/pipelines", 401), (REFRESH, 200),
                                ("/v2/pipelines", 200)]


def test_an_expired_access_token_is_refreshed(zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    client.users()
    zomentum.state.advance_clock(86400 + 1)

    client.users()

    assert (client.counter.refreshes, client.counter.reads) == (2, 3)


def test_a_rejected_refresh_token_is_one_clear_error_without_retries(zomentum: ZomentumSandbox) -> None:
    client = make_client(ZomentumCredentials(zomentum.base_url, Secret("revoked-refresh-token-1234")))

    with pytest.raises(AuthenticationError) as raised:
        client.users()

    assert str(raised.value) == ("zomentum GET /v2/auth0/access_token HTTP 401: "
                                 f"{REFRESH_REJECTED.format(origin='ZOMENTUM_REFRESH_TOKEN')}")
    assert raised.value.status == 401
    assert (client.counter.refreshes, client.counter.reads, client.counter.retries) == (1, 0, 0)


def test_a_stale_access_token_with_a_rejected_refresh_token_is_the_same_clear_error(
        zomentum: ZomentumSandbox) -> None:
    stale = zomentum.state.issue_access_token()
    zomentum.state.issue_access_token()
    client = make_client(ZomentumCredentials(zomentum.base_url, Secret("revoked-refresh-token-1234"),
                                             access_token=Secret(stale)))

    with pytest.raises(AuthenticationError, match="rejected the refresh token"):
        list(client.clients())

    assert logged(zomentum) == [("/v2/client/companies", 401), (REFRESH, 401)]


def test_a_401_right_after_a_refresh_is_an_authentication_error(
        zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    zomentum.state.set_knobs(access_token_lifetime_seconds=0)  # every token is born expired

    with pytest.raises(AuthenticationError) as raised:
        client.users()

    assert raised.value.message == ACCESS_REJECTED_AFTER_REFRESH
    assert (client.counter.refreshes, client.counter.reads) == (2, 2)


def test_a_401_on_a_write_refreshes_and_sends_the_write_once_more(
        zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    client.users()
    zomentum.state.issue_access_token()

    created = client.create("client/companies", {"name": "Refreshed Writer Ltd"})

    assert [c["id"] for c in zomentum.state.records("client/companies") if c["name"] == "Refreshed Writer Ltd"] == [
        created["id"]]
    assert client.counter.writes == 2
    assert logged(zomentum)[-3:] == [("/v2/client/companies/", 401), (REFRESH, 200), ("/v2/client/companies/", 201)]


class HeldUnauthorized(requests.Session):
    """Holds every 401 answer until `parties` requests have had one, so that they are all in flight with the
    invalidated token at once (on a real API they overlap by chance)."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(method, url, *args, **kwargs)
        if response.status_code == 401:
            self.barrier.wait()
        return response


def test_concurrent_401s_refresh_the_token_once_and_every_request_repeats_with_the_new_one(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials) -> None:
    threads = 6
    client = make_client(zomentum_credentials, session=HeldUnauthorized(threads))
    client.users()
    zomentum.state.issue_access_token()  # the client's token is now invalid
    zomentum.state.clear_requests()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        answers = list(pool.map(lambda _: client.pipelines(), range(threads)))

    assert all([p.name for p in pipelines] == ["Sales Pipeline", "Renewals"] for pipelines in answers)
    assert sorted(logged(zomentum)) == sorted([("/v2/pipelines", 401)] * threads + [(REFRESH, 200)]
                                              + [("/v2/pipelines", 200)] * threads)
    assert (client.counter.refreshes, client.counter.reads, client.counter.writes) == (2, 1 + 2 * threads, 0)
    assert client.counter.sent == 2 + 1 + 2 * threads


def test_the_counter_counts_every_request_of_concurrent_threads(
        zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    def work(n: int) -> None:
        for _ in range(10):
            client.users()
        client.create("client/companies", {"name": f"Concurrent Counting {n} Ltd"})

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(8)))

    sent = zomentum.state.requests()
    assert client.counter.sent == len(sent) == 1 + 8 * 11
    assert (client.counter.refreshes, client.counter.reads, client.counter.writes) == (1, 80, 8)


# ----- paging and filters -------------------------------------------------------------------------------

def add_clients(sandbox: ZomentumSandbox, total: int) -> None:
    existing = len(sandbox.state.records("client/companies"))
    for n in range(total - existing):
        sandbox.state.create_record("client/companies", {"name": f"Paging Client {n:02d}"})


@pytest.mark.parametrize(("total", "pages"), [(9, 2), (10, 2), (11, 3), (15, 3)])
def test_paging_stops_at_the_limit_boundary_without_an_empty_page(
        zomentum: ZomentumSandbox, client: ZomentumClient, total: int, pages: int) -> None:
    add_clients(zomentum, total)

    records = list(client.iter_records("client/companies", limit=5))

    assert [r["id"] for r in records] == [c["id"] for c in zomentum.state.records("client/companies")]
    assert client.counter.reads == pages
    assert [e["query"] for e in zomentum.state.requests()[1:]] == [
        f"count_query_flag=true&page={page}&limit=5" for page in range(1, pages + 1)]


def test_paging_is_lazy(zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    add_clients(zomentum, 20)
    first_six = list(itertools.islice(client.iter_records("client/companies", limit=5), 6))
    assert len(first_six) == 6 and client.counter.reads == 2


def test_updated_since_returns_what_changed_in_the_window(zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    clients = zomentum.state.records("client/companies")
    since = zomentum.state.advance_clock(60)
    for record in clients[:2]:
        zomentum.state.update_record("client/companies", record["id"], {"phone": "+1-555-000-0000"})

    changed = list(client.clients(updated_since=since))

    assert [c["id"] for c in changed] == [c["id"] for c in clients[:2]]
    query = zomentum.state.requests()[-1]["query"]
    assert "filters=updated_at%3Agte%3A" in query


def test_find_by_matches_exactly_and_refuses_values_the_filter_syntax_cannot_carry(
        zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    contact = zomentum.state.records("client/users")[0]

    assert [c["id"] for c in client.find_by("client/users", "email", contact["email"])] == [contact["id"]]
    assert client.find_by("client/users", "email", contact["email"].upper()) == []
    with pytest.raises(ValueError, match="cannot contain ';'"):
        client.find_by("client/companies", "name", "Smith; Jones LLC")


def test_opportunities_of_every_pipeline(zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    every = zomentum.state.records("opportunities")
    default_id = zomentum.state.default_pipeline_id

    assert sorted(o["id"] for o in client.all_opportunities()) == sorted(o["id"] for o in every)
    assert sorted(o["id"] for o in client.opportunities()) == sorted(
        o["id"] for o in every if o["opportunity_pipeline_id"] == default_id)


# ----- errors and retries -------------------------------------------------------------------------------

def test_429_is_retried_a_bounded_number_of_times_honouring_retry_after(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials) -> None:
    zomentum.state.set_knobs(rate_limit=1, rate_limit_window_seconds=60)
    sleeps = Sleeps()
    client = make_client(zomentum_credentials, sleeps)
    client.users()

    with pytest.raises(RateLimited) as raised:
        client.users()

    assert (client.counter.reads, client.counter.retries) == (1 + POLICY.max_attempts, POLICY.max_attempts - 1)
    assert len(sleeps) == POLICY.max_attempts - 1 and all(55 <= s <= 60 for s in sleeps)
    assert raised.value.status == 429 and 55 <= raised.value.retry_after <= 60
    assert [status for _, status in logged(zomentum)] == [200, 200, 429, 429, 429]


def test_a_429_read_succeeds_once_the_retry_after_has_passed(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials) -> None:
    zomentum.state.set_knobs(rate_limit=1, rate_limit_window_seconds=60)
    sleeps = Sleeps(zomentum)
    client = make_client(zomentum_credentials, sleeps)
    client.users()

    users = client.users()

    assert users and (client.counter.reads, client.counter.retries) == (3, 1)
    assert len(sleeps) == 1 and 55 <= sleeps[0] <= 60


def test_a_429_write_was_not_processed_so_it_is_sent_again_and_lands_once(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials) -> None:
    zomentum.state.set_knobs(rate_limit=1, rate_limit_window_seconds=60)
    client = make_client(zomentum_credentials, Sleeps(zomentum))
    client.users()

    client.create("client/companies", {"name": "Patient Writer LLC"})

    assert len([c for c in zomentum.state.records("client/companies") if c["name"] == "Patient Writer LLC"]) == 1
    assert (client.counter.writes, client.counter.retries) == (2, 1)


def test_400_is_validation_failed_naming_the_field_and_not_retried(client: ZomentumClient) -> None:
    with pytest.raises(ValidationFailed) as raised:
        client.create("client/users", {"name": {"first": "Ann"}, "client_company_id": "nope"})

    assert raised.value.status == 400
    assert raised.value.message == "client_company_id: no client company with id 'nope'"
    assert str(raised.value) == ("zomentum POST /v2/client/users/ HTTP 400: "
                                 "client_company_id: no client company with id 'nope'")
    assert (client.counter.writes, client.counter.retries) == (1, 0)


def test_404_is_not_found(client: ZomentumClient) -> None:
    with pytest.raises(NotFound, match="no client company with id 'nope'"):
        client.get("client/companies", "nope")


class LosesWriteAnswers(requests.Session):
    """The write reaches the server and is processed; its answer never comes back."""

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(method, url, *args, **kwargs)
        if method in ("POST", "PUT"):
            raise requests.exceptions.ReadTimeout("read timed out")
        return response


def test_a_write_whose_answer_is_lost_is_not_repeated_and_can_be_found(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials) -> None:
    lossy = make_client(zomentum_credentials, session=LosesWriteAnswers())

    with pytest.raises(WriteOutcomeUnknown):
        lossy.create("client/companies", {"name": "Maybe Created Ltd"})

    assert (lossy.counter.writes, lossy.counter.retries) == (1, 0)
    found = make_client(zomentum_credentials).find_by("client/companies", "name", "Maybe Created Ltd")
    assert len(found) == 1


def test_creates_never_carry_an_id(zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    with pytest.raises(ValueError, match="must not carry an id"):
        client.create("client/companies", {"id": "x", "name": "A"})
    assert zomentum.state.requests() == []


def test_update_sends_only_the_changes(zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    record = zomentum.state.records("client/companies")[0]

    updated = client.update("client/companies", record["id"], {"website": "https://changed.example"})

    assert zomentum.state.requests()[-1]["body"] == {"website": "https://changed.example"}
    assert updated == zomentum.state.get_record("client/companies", record["id"])
    assert {k: v for k, v in updated.items() if k not in ("website", "updated_at")} == {
        k: v for k, v in record.items() if k not in ("website", "updated_at")}


def test_custom_fields_are_listed_by_entity_and_created_once(client: ZomentumClient) -> None:
    created = client.create_custom_field("client_company", "Kaseya Account ID")

    assert created in client.custom_fields("client_company")
    assert created not in client.custom_fields("document")
    with pytest.raises(ValidationFailed, match="^.*display_name: a client_company custom field named"):
        client.create_custom_field("client_company", "kaseya account id")
    with pytest.raises(ValueError):
        client.custom_fields("invoice")


# ----- documents ---------------------------------------------------------------------------------------

def expected_tree(revision_lines: list[dict[str, str]]) -> list[tuple[str, str, Decimal, Decimal, list[Any]]]:
    def node(line: dict[str, str]) -> tuple[str, str, Decimal, Decimal, list[Any]]:
        return (line["line_id"], line["type"], Decimal(line["quantity"]), Decimal(line["sell_price"]),
                [node(child) for child in revision_lines if child["parent_line_id"] == line["line_id"]])
    return [node(line) for line in revision_lines if not line["parent_line_id"]]


def as_tree(lines: tuple[DocumentLineItem, ...]) -> list[tuple[str, str, Decimal, Decimal, list[Any]]]:
    return [(line.line_id, line.type, line.quantity, line.sell_price, as_tree(line.children)) for line in lines]


def test_document_line_items_are_typed_with_bundle_children_attached(
        zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    for document in zomentum.state.records("documents"):
        revision = next(r for r in document["revisions"] if r["id"] == document["current_revision_id"])

        lines = client.document_line_items(document["id"], document["current_revision_id"])

        assert as_tree(lines) == expected_tree(revision["line_items"])
        assert sum((line.amount + sum((c.amount for c in line.children), Decimal(0)) for line in lines),
                   Decimal(0)) == Decimal(str(document["total"])).quantize(Decimal("0.01"))


def test_the_bundle_level_bundle_arrives_as_100_with_three_zero_priced_children(client: ZomentumClient) -> None:
    bundles = [line for document in client.documents(status="won")
               for line in client.document_line_items(document["id"], document["current_revision_id"])
               if line.name == "New Hire Onboarding Bundle"]

    assert bundles
    bundle = bundles[0]
    assert (bundle.is_bundle, bundle.quantity, bundle.sell_price) == (True, Decimal(1), Decimal("100.00"))
    assert [(c.type, c.sell_price, c.parent_line_id) for c in bundle.children] == [
        ("software", Decimal("0.00"), bundle.line_id), ("service", Decimal("0.00"), bundle.line_id),
        ("labor", Decimal("0.00"), bundle.line_id)]


def test_download_document_returns_the_pdf(zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    document = zomentum.state.records("documents")[0]
    expected = resources.files("zk_pipelines.sandbox.zomentum").joinpath("quote.pdf").read_bytes()
    assert client.download_document(document["id"]) == expected


HEADER = "line_id,item_id,name,description,type,quantity,sell_price,cost_price,discount,setup_price,billing_period," \
         "parent_line_id\r\n"


@pytest.mark.parametrize(("csv_text", "expected"), [
    (HEADER, []),
    ("\ufeff" + HEADER + "L1,I1,Widget,,hardware,2,10.50,5,,,one_time,\r\n",
     [("L1", "I1", "Widget", "", "hardware", Decimal(2), Decimal("10.50"), Decimal(5), Decimal(0), Decimal(0),
       "one_time", None, ())]),
    (HEADER + 'L1,I1,"Cable, 2m ""Cat6""","line one\nline two",hardware,1.5,1.00,0,0,0,one_time,\r\n',
     [("L1", "I1", 'Cable, 2m "Cat6"', "line one\nline two", "hardware", Decimal("1.5"), Decimal("1.00"),
       Decimal(0), Decimal(0), Decimal(0), "one_time", None, ())]),
    (HEADER + "C1,I2,Child,,labor,1,0,0,0,0,,B1\r\nB1,I1,Kit,,Bundle,1,100.00,0,0,0,one_time,\r\n",
     [("B1", "I1", "Kit", "", "bundle", Decimal(1), Decimal("100.00"), Decimal(0), Decimal(0), Decimal(0),
       "one_time", None, (DocumentLineItem("C1", "I2", "Child", "", "labor", Decimal(1), Decimal(0), Decimal(0),
                                           Decimal(0), Decimal(0), None, "B1"),))]),
    (f"{HEADER}L1,,Custom line,東京 テック,service,1,3.00,0,0,0,monthly,\r\n",
     [("L1", None, "Custom line", "東京 テック", "service", Decimal(1), Decimal("3.00"), Decimal(0), Decimal(0),
       Decimal(0), "monthly", None, ())]),
], ids=["empty", "bom-and-empty-amounts", "quoting", "child-before-parent", "no-item-unicode"])
def test_line_item_csv_parsing(csv_text: str, expected: list[tuple[Any, ...]]) -> None:
    assert [tuple(vars(line).values()) for line in parse_line_items_csv(csv_text)] == expected


@pytest.mark.parametrize(("csv_text", "message"), [
    ("line_id,name\r\nL1,x\r\n", "lacks the column(s) item_id, description, type, quantity, sell_price"),
    (HEADER + "L1,I1,x,,hardware,,1,0,0,0,one_time,\r\n", "row 2: quantity is empty"),
    (HEADER + "L1,I1,x,,hardware,one,1,0,0,0,one_time,\r\n", "row 2: quantity 'one' is not a number"),
    (HEADER + "L1,I1,x,,hardware,1,1,0,0,0,one_time,L9\r\n", "line L1 points at parent L9"),
    (HEADER + "L1,I1,x,,labor,1,1,0,0,0,,L2\r\nL2,I1,y,,labor,1,1,0,0,0,,L1\r\n", "parents form a cycle"),
])
def test_malformed_line_item_csv_is_refused_saying_where(csv_text: str, message: str) -> None:
    with pytest.raises(LineItemsFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_line_items_csv(csv_text)


# ----- configuration, secrets, probe ----------------------------------------------------------------------

@pytest.mark.parametrize(("base_url", "root"), [
    ("https://api.zomentum.com", "https://api.zomentum.com/v2"),
    ("https://api.zomentum.com/", "https://api.zomentum.com/v2"),
    ("https://api.zomentum.com/v2", "https://api.zomentum.com/v2"),
    ("https://api.zomentum.com/v2/", "https://api.zomentum.com/v2"),
    (" http://127.0.0.1:8602 ", "http://127.0.0.1:8602/v2"),
    ("https://proxy.example/zomentum/v2", "https://proxy.example/zomentum/v2"),
])
def test_base_url_with_or_without_v2_means_the_same_api_root(base_url: str, root: str) -> None:
    assert api_root(base_url) == root


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, None),
    ({"equals": {"email": "a@b.example"}}, "email:eq:a@b.example;"),
    ({"equals": {"is_active": True, "close_probability": 50}}, "is_active:eq:true;close_probability:eq:50;"),
    ({"equals": {"status": "won"}, "updated_since": __import__("datetime").datetime(2026, 1, 2, 3, 4, 5)},
     "status:eq:won;updated_at:gte:2026-01-02T03:04:05.000Z;"),
    ({"updated_until": __import__("datetime").datetime.fromisoformat("2026-01-02T03:04:05+02:00")},
     "updated_at:lte:2026-01-02T01:04:05.000Z;"),
])
def test_filters_param(kwargs: dict[str, Any], expected: str | None) -> None:
    assert filters_param(**kwargs) == expected


def test_secrets_never_reach_logs_errors_or_reprs(
        zomentum: ZomentumSandbox, zomentum_credentials: ZomentumCredentials, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(zomentum_credentials)
    client.users()
    access_token = client._access_token.reveal()
    bad = make_client(replace(zomentum_credentials, refresh_token=Secret("wrong-refresh-token-5678")))
    with pytest.raises(AuthenticationError) as raised:
        bad.users()

    assert "refresh_token=***" in caplog.text  # urllib3 did log the refresh URL, masked
    for secret in (zomentum.refresh_token, access_token, "wrong-refresh-token-5678"):
        assert secret not in caplog.text
        assert secret not in str(raised.value)
        assert secret not in repr(client) + repr(bad) + repr(zomentum_credentials)


def test_probe_refreshes_then_reads_each_endpoint_once(zomentum: ZomentumSandbox, client: ZomentumClient) -> None:
    checks = client.probe_endpoints()

    assert [(c.api, c.endpoint, c.ok, c.detail) for c in checks] == [
        ("zomentum", f"GET /v2/{path}", True, "ok") for path in (
            "auth0/access_token", "client/companies", "client/users", "opportunities", "pipelines", "items", "users",
            "custom/fields?entity_type=client_company", "documents",
            "documents/{id}/revisions/{revision_id}/downloadproducts/")]
    assert (client.counter.refreshes, client.counter.reads) == (1, 9)


def test_probe_with_a_rejected_refresh_token_reports_one_actionable_failure(zomentum: ZomentumSandbox) -> None:
    client = make_client(ZomentumCredentials(zomentum.base_url, Secret("revoked-refresh-token-1234")))

    checks = client.probe_endpoints()

    assert [(c.endpoint, c.ok) for c in checks] == [("GET /v2/auth0/access_token", False)]
    assert REFRESH_REJECTED.format(origin="ZOMENTUM_REFRESH_TOKEN") in checks[0].detail
    assert "revoked-refresh-token-1234" not in checks[0].line()


def test_probe_reports_an_unreachable_api(zomentum: ZomentumSandbox) -> None:
    from zk_pipelines.sandbox.runtime import free_port

    client = make_client(ZomentumCredentials(f"http://127.0.0.1:{free_port()}", Secret(zomentum.refresh_token)))

    checks = client.probe_endpoints()

    assert [(c.endpoint, c.ok) for c in checks] == [("GET /v2/auth0/access_token", False)]
    assert "no answer after 3 attempts" in checks[0].detail
    assert zomentum.refresh_token not in checks[0].detail
