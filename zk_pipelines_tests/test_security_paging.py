"""Paging that cannot run away and ids that cannot become paths (docs/security.md): a Zomentum server serving
full pages for ever is stopped at the page ceiling, one ignoring `page` at its first repeated record; a Kaseya
server's `totalRecords` is checked against the rows that arrive and a server ignoring `PageNumber` is caught;
an id that is not an id is refused before any request, and ids are escaped in paths."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr

import pytest

from zk_pipelines import cli
from zk_pipelines.clients import zomentum_models
from zk_pipelines.clients.http import HttpPolicy, NotAnId
from zk_pipelines.clients.kaseya import KaseyaClient, ListingInconsistent
from zk_pipelines.clients.zomentum import (
    ListingInconsistent as ZomentumListingInconsistent,
)
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import KaseyaCredentials, ZomentumCredentials
from zk_pipelines.secrets import Secret
from zk_pipelines_tests.fixtures.hostile import Answer, Request

LOGIN = {"success": True, "error": None, "result": {"accessToken": "access-token-123456",
                                                     "refreshToken": "refresh-token-123456"}}


def json_answer(payload: object) -> Answer:
    return Answer(200, json.dumps(payload), {"Content-Type": "application/json"})


def zomentum_client(server) -> ZomentumClient:
    return ZomentumClient(ZomentumCredentials(server.base_url, Secret("zrt-refresh-1234"), Secret("zat-access-1234")),
                          policy=HttpPolicy(api_name="zomentum", max_attempts=1))


def kaseya_client(server) -> KaseyaClient:
    return KaseyaClient(KaseyaCredentials(server.base_url, "api.user", Secret("password-123"), "Tenant"),
                        policy=HttpPolicy(api_name="Kaseya", max_attempts=1))


def first(limit: int, records):
    """At most `limit` records: without a ceiling a runaway listing would never end."""
    taken = []
    for record in records:
        taken.append(record)
        assert len(taken) <= limit, "the listing ran away"
    return taken


# ----- Zomentum ------------------------------------------------------------------------------------------

def test_a_zomentum_list_of_endless_full_pages_stops_at_the_page_ceiling(hostile, monkeypatch):
    monkeypatch.setattr(zomentum_models, "MAX_LIST_PAGES", 30)

    def endless_pages(request: Request) -> Answer:  # fresh ids on every page, never a short page, no count
        page = int(request.query["page"][0])
        return json_answer({"data": [{"id": f"p{page}-{i}"} for i in range(2)]})

    server = hostile(endless_pages)
    with pytest.raises(ZomentumListingInconsistent, match="past the 30 pages"):
        first(200, zomentum_client(server).iter_records("client/companies", limit=2))
    assert len(server.requests) == 30


def test_a_zomentum_list_whose_count_grows_page_by_page_stops_past_what_its_first_page_counted(hostile):
    server = hostile(lambda request: json_answer({
        "data": [{"id": f"p{request.query['page'][0]}-{i}"} for i in range(2)],
        "filtered_count_map": {"all": 3 * 10 ** int(request.query["page"][0])}}))  # 30, 300, 3000...
    with pytest.raises(ZomentumListingInconsistent, match="past the 16 pages"):
        first(200, zomentum_client(server).iter_records("client/companies", limit=2))
    assert len(server.requests) == 16  # 30 records at 2 a page, and one page for a record added meanwhile


def test_a_zomentum_server_ignoring_the_page_number_is_caught_at_the_first_repeated_record(hostile):
    server = hostile(lambda request: json_answer({"data": [{"id": "a"}, {"id": "b"}]}))
    with pytest.raises(ZomentumListingInconsistent, match="page 2 repeats record a"):
        first(200, zomentum_client(server).iter_records("client/companies", limit=2))


# ----- Kaseya --------------------------------------------------------------------------------------------

def kaseya_list(rows: int, total, *, honour_page: bool = True):
    """A Kaseya server listing `rows` accounts with the given `totalRecords` (None: no total)."""
    def answer(request: Request) -> Answer:
        if request.path.endswith("/authenticate"):
            return json_answer(LOGIN)
        page = int(request.query["PageNumber"][0]) if honour_page else 1
        size = int(request.query["PageSize"][0])
        ids = range((page - 1) * size + 1, min(page * size, rows) + 1)
        payload = {"success": True, "error": None, "result": [{"id": i, "accountName": f"A{i}"} for i in ids]}
        if total is not None:
            payload["totalRecords"] = total
        return json_answer(payload)
    return answer


def test_a_kaseya_list_with_a_true_count_is_read_whole(hostile):
    server = hostile(kaseya_list(127, 127))
    assert [row["id"] for row in kaseya_client(server).iter_accounts()] == list(range(1, 128))


def test_a_kaseya_list_counted_negative_is_paged_to_its_end(hostile):
    server = hostile(kaseya_list(127, -1))
    assert len(list(kaseya_client(server).iter_accounts())) == 127


def test_a_kaseya_list_counted_short_fails_instead_of_loading_part_of_it(hostile):
    server = hostile(kaseya_list(127, 0))
    with pytest.raises(ListingInconsistent, match="more than totalRecords 0"):
        list(kaseya_client(server).iter_accounts())


def test_a_kaseya_list_ending_before_its_count_fails(hostile):
    server = hostile(kaseya_list(127, 150))
    with pytest.raises(ListingInconsistent, match="ended after 127 rows, fewer than totalRecords 150"):
        list(kaseya_client(server).iter_accounts())


@pytest.mark.parametrize("total", [127, None])
def test_a_kaseya_server_ignoring_the_page_number_is_caught(hostile, total):
    server = hostile(kaseya_list(127, total, honour_page=False))
    with pytest.raises(ListingInconsistent, match="page 2 repeats rows of page 1"):
        first(500, kaseya_client(server).iter_accounts())


# ----- ids -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "a/b", "..", "", "id with space", "x?y=1", "%2e%2e"])
def test_a_zomentum_id_that_is_not_an_id_is_refused_before_any_request(hostile, bad_id):
    server = hostile(lambda request: json_answer({"id": "whatever"}))
    client = zomentum_client(server)
    for call in (lambda: client.get("documents", bad_id), lambda: client.update("client/companies", bad_id, {}),
                 lambda: client.download_document(bad_id), lambda: client.document_line_items(bad_id, "r1")):
        with pytest.raises(NotAnId, match="is not a Zomentum id"):
            call()
    assert server.requests == []


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "1/notes", "1.5", -3, True, None])
def test_a_kaseya_id_that_is_not_a_whole_number_is_refused_before_any_request(hostile, bad_id):
    server = hostile(lambda request: json_answer(LOGIN))
    with pytest.raises(NotAnId, match="is not a Kaseya id"):
        kaseya_client(server).account(bad_id)
    assert server.requests == []


def test_ids_of_the_right_form_reach_their_own_path(hostile):
    server = hostile(lambda request: json_answer(LOGIN if request.path.endswith("/authenticate") else
                                                 {"success": True, "result": {"id": 42}}))
    kaseya_client(server).account("42")
    zomentum_client(server).get("documents", "5f1b2c3d-aa.b_c~d")
    assert [r.path for r in server.requests][-2:] == ["/v2/crm/accounts/summary/42", "/v2/documents/5f1b2c3d-aa.b_c~d"]


def test_zk_push_refuses_a_document_id_that_is_a_path_before_sending_anything(hostile, monkeypatch):
    server = hostile(lambda request: json_answer({"access_token": "zat"}))
    monkeypatch.setenv("ZOMENTUM_BASE_URL", server.base_url)
    monkeypatch.setenv("KASEYA_BASE_URL", server.base_url)
    err = io.StringIO()
    with redirect_stderr(err):
        assert cli.main(["push", "../../etc/passwd", "--dry-run"]) == 1
    assert err.getvalue().strip().startswith("zk push: document id '../../etc/passwd' is not a Zomentum id")
    assert len(err.getvalue().strip().splitlines()) == 1
    assert server.requests == []
