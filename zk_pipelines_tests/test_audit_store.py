"""The ledger queries of the audit views on a real DuckDB file, written through the pull's and the push's own
storage functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from zk_pipelines.storage.audit_store import (
    LedgerFilter,
    entity_outcomes,
    find_record_pairs,
    has_ledger,
    has_push_requests,
    ledger_entity_names,
    ledger_entries,
    push_requests_for,
    record_trail,
)
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.ledger_store import IdMapEntry, SyncEvent, record_events, upsert_id_map
from zk_pipelines.storage.pull_store import ensure_pull_tables, insert_rejects
from zk_pipelines.storage.push_store import (
    SENT,
    DocumentIds,
    RequestIntent,
    ensure_push_tables,
    finish_document,
    record_intent,
    settle_request,
    start_document,
)

T0 = datetime(2026, 8, 10, 1, 5, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def write_events(connection, events: list[SyncEvent], run_id: str, when: datetime) -> None:
    record_events(connection, events, run_id=run_id, partition_key=when.strftime("%Y-%m-%d-%H:00"),
                  settings_fingerprint="fp-1", now=when)


def write_rejects(connection, rows: list[dict], run_id: str, when: datetime) -> None:
    insert_rejects(connection, pd.DataFrame(rows), run_id=run_id, partition_key=None, now=when)


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """Two pull runs and one push, as the pipeline writes them."""
    path = tmp_path / "tenant.duckdb"
    with connect(path) as connection:
        ensure_pull_tables(connection)
        write_rejects(connection, [{"entity": "contacts", "kaseya_id": 300004, "check": "email_shape",
                                    "column": "email", "value": "not-an-email", "reason": "contact 300004: e-mail "
                                    "'not-an-email' is not an address"}], "run-a", at(0))
        write_events(connection, [
            SyncEvent("pull", "clients", "created", "100001", "z-client-1", link="https://z/clients/z-client-1"),
            SyncEvent("pull", "clients", "failed", "100002", None, reason="client for Kaseya account 100002: "
                      "Zomentum answered 500", link="https://k/accounts/100002"),
            SyncEvent("pull", "opportunities", "deferred", "400001", None,
                      reason="opportunity 400001: waits for its Kaseya account 100002 to be in Zomentum"),
        ], "run-a", at(0.01))
        upsert_id_map(connection, [IdMapEntry("clients", "100001", "z-client-1", "created", "h1", {"name": "A"})],
                      at(0.01))
        write_events(connection, [
            SyncEvent("pull", "clients", "unchanged", "100001", "z-client-1"),
            SyncEvent("pull", "clients", "created", "100002", "z-client-2", link="https://z/clients/z-client-2"),
            SyncEvent("pull", "opportunities", "created", "400001", "z-opp-1", link="https://z/opportunities/z-opp-1"),
        ], "run-b", at(1))
        upsert_id_map(connection, [IdMapEntry("clients", "100002", "z-client-2", "created", "h2", {"name": "B"}),
                                   IdMapEntry("opportunities", "400001", "z-opp-1", "created", "h3", {"name": "O"})],
                      at(1))
        write_events(connection, [
            SyncEvent("pull", "opportunities", "updated", "400001", "z-opp-1", changed_fields=["name", "amount"]),
        ], "run-c", at(2))
    return path


def push_document(path: Path, *, opportunity: int, zomentum_opportunity: str, account: int, when: datetime) -> None:
    """One push of a Won document, through the push's own ledger functions."""
    with connect(path) as connection:
        ensure_push_tables(connection)
        attempt = start_document(connection, "doc-1", "v1", run_id="push-run", fingerprint="fp-1", now=when)
        requests = [
            (1, "PUT", f"/v2/crm/opportunities/{opportunity}", {"Subject": "Deal"}, "opportunity", str(opportunity)),
            (2, "POST", "/v2/crm/quotes", {"Name": "Q"}, "quote", "700001"),
            (3, "POST", "/v2/inventory/products", {"ProductNumber": "HW-1"}, "product HW-1", "500009"),
        ]
        for step, method, path_, body, key, record_id in requests:
            request_id = record_intent(connection, RequestIntent("doc-1", "v1", "push-run", attempt, step, "kaseya",
                                                                 "endpoint", method, path_, body, f"write {key}", key),
                                       when + timedelta(seconds=step))
            settle_request(connection, request_id, state=SENT, response_status=200, record_id=record_id,
                           now=when + timedelta(seconds=step))
        finish_document(connection, "doc-1", "v1", state="succeeded",
                        ids=DocumentIds(zomentum_opportunity, account, None, opportunity, 700001), writes_sent=3,
                        error=None, now=when + timedelta(seconds=5))
        write_events(connection, [SyncEvent("push", "opportunities", "updated", str(opportunity), zomentum_opportunity,
                                            reason="document doc-1: update opportunity", changed_fields=["Subject"])],
                     "push-run", when + timedelta(seconds=5))


def entries(path: Path, **where) -> list:
    with connect(path, read_only=True) as connection:
        return ledger_entries(connection, LedgerFilter(**where))


def test_the_ledger_is_every_event_and_reject_oldest_first_with_rejects_under_the_zomentum_entity(ledger):
    rows = entries(ledger)
    assert [(r.run_id, r.entity, r.kaseya_id, r.action) for r in rows] == [
        ("run-a", "client_users", "300004", "rejected"),
        ("run-a", "clients", "100001", "created"),
        ("run-a", "clients", "100002", "failed"),
        ("run-a", "opportunities", "400001", "deferred"),
        ("run-b", "clients", "100001", "unchanged"),
        ("run-b", "clients", "100002", "created"),
        ("run-b", "opportunities", "400001", "created"),
        ("run-c", "opportunities", "400001", "updated"),
    ]
    assert rows[0].reason == "contact 300004: e-mail 'not-an-email' is not an address [check email_shape]"
    assert rows[0].is_error and rows[2].is_error and not rows[1].is_error
    assert rows[-1].changed_fields == ("name", "amount")
    assert rows[1].settings_fingerprint == "fp-1"


@pytest.mark.parametrize(("where", "expected"), [
    ({"errors": True}, [("client_users", "300004"), ("clients", "100002")]),  # deferred is not an error
    ({"errors": False, "entities": ("clients",)},
     [("clients", "100001"), ("clients", "100001"), ("clients", "100002")]),
    ({"entities": ("client_users",)}, [("client_users", "300004")]),
    ({"since": at(1)}, [("clients", "100001"), ("clients", "100002"), ("opportunities", "400001"),
                        ("opportunities", "400001")]),
    ({"run_id_prefix": "run-c"}, [("opportunities", "400001")]),
    ({"run_id_prefix": "run-"}, None),  # a prefix selects every run it begins
    ({"run_id_prefix": "nope"}, []),
])
def test_filters_select_entity_status_moment_and_run(ledger, where, expected):
    got = [(r.entity, r.kaseya_id) for r in entries(ledger, **where)]
    assert got == (expected if expected is not None else [(r.entity, r.kaseya_id) for r in entries(ledger)])


def test_a_row_rejected_only_for_a_missing_parent_is_deferred_not_an_error(ledger):
    with connect(ledger) as connection:
        write_rejects(connection, [
            {"entity": "contacts", "kaseya_id": 300009, "check": "known_account", "column": "account_id",
             "value": "100077", "reason": "contact 300009: account id 100077 is not a Kaseya account the pipeline "
                                          "has staged"},
            {"entity": "opportunities", "kaseya_id": 400009, "check": "known_status", "column": "status_id",
             "value": "5", "reason": "opportunity 400009: status id 5 is not staged"},
        ], "run-d", at(3))
    rows = entries(ledger, run_id_prefix="run-d")
    assert [(r.entity, r.kaseya_id, r.action, r.is_error) for r in rows] == [
        ("client_users", "300009", "deferred", False), ("opportunities", "400009", "deferred", False)]
    assert rows[0].reason.endswith("[check known_account]")
    assert [r.kaseya_id for r in entries(ledger, errors=True, since=at(3))] == []


def test_entity_names_include_reject_entities_under_their_zomentum_name(ledger):
    with connect(ledger, read_only=True) as connection:
        assert ledger_entity_names(connection) == ["client_users", "clients", "opportunities"]


@pytest.mark.parametrize("record_id", ["100002", "z-client-2"])
def test_a_record_is_found_by_its_kaseya_or_its_zomentum_id(ledger, record_id):
    with connect(ledger, read_only=True) as connection:
        pairs = find_record_pairs(connection, "clients", record_id)
        assert [(p.kaseya_id, p.zomentum_id, p.link_kind) for p in pairs] == [("100002", "z-client-2", "created")]
        trail = record_trail(connection, "clients", "100002", "z-client-2")
    assert [(e.run_id, e.action) for e in trail] == [("run-a", "failed"), ("run-b", "created")]
    assert "Zomentum answered 500" in trail[0].reason


def test_a_record_that_only_ever_failed_is_found_through_its_events_and_rejects(ledger):
    with connect(ledger, read_only=True) as connection:
        pairs = find_record_pairs(connection, "client_users", "300004")
        assert [(p.kaseya_id, p.zomentum_id, p.link_kind) for p in pairs] == [("300004", None, None)]
        trail = record_trail(connection, "client_users", "300004", None)
        assert [e.action for e in trail] == ["rejected"]
        assert find_record_pairs(connection, "clients", "300004") == []  # the id of another entity
        assert find_record_pairs(connection, "client_users", "999") == []


def test_without_push_tables_there_are_no_push_requests(ledger):
    with connect(ledger, read_only=True) as connection:
        assert not has_push_requests(connection)
        assert push_requests_for(connection, "opportunities", "400001", "z-opp-1") == []


def test_an_opportunity_trail_carries_what_each_push_sent(ledger):
    push_document(ledger, opportunity=400001, zomentum_opportunity="z-opp-1", account=100002, when=at(3))
    with connect(ledger, read_only=True) as connection:
        requests = push_requests_for(connection, "opportunities", "400001", "z-opp-1")
        assert [(r.method, r.path, r.body, r.state, r.record_id, r.run_id) for r in requests] == [
            ("PUT", "/v2/crm/opportunities/400001", {"Subject": "Deal"}, "sent", "400001", "push-run"),
            ("POST", "/v2/crm/quotes", {"Name": "Q"}, "sent", "700001", "push-run"),
            ("POST", "/v2/inventory/products", {"ProductNumber": "HW-1"}, "sent", "500009", "push-run"),
        ]
        # the same push, found from the Zomentum side only
        assert len(push_requests_for(connection, "opportunities", None, "z-opp-1")) == 3
        # a client's trail holds only requests that wrote the account: this push wrote none
        assert push_requests_for(connection, "clients", "100002", "z-client-2") == []
        # an item's: the product the push created
        assert [r.path for r in push_requests_for(connection, "items", "500009", None)] == ["/v2/inventory/products"]
        trail = record_trail(connection, "opportunities", "400001", "z-opp-1")
    assert [(e.direction, e.action) for e in trail] == [("pull", "deferred"), ("pull", "created"),
                                                        ("pull", "updated"), ("push", "updated")]


def test_outcomes_per_entity_count_the_last_run_and_the_last_day(ledger):
    with connect(ledger, read_only=True) as connection:
        assert has_ledger(connection)
        outcomes = {(o.direction, o.entity): o for o in entity_outcomes(connection, since=at(0.5))}
    assert set(outcomes) == {("pull", "client_users"), ("pull", "clients"), ("pull", "opportunities")}
    clients = outcomes[("pull", "clients")]
    assert (clients.last_run_id, clients.last_run_succeeded, clients.last_run_errors) == ("run-b", 2, 0)
    assert (clients.recent_succeeded, clients.recent_errors) == (2, 0)
    contacts = outcomes[("pull", "client_users")]
    assert (contacts.last_run_id, contacts.last_run_succeeded, contacts.last_run_errors) == ("run-a", 0, 1)
    assert (contacts.recent_succeeded, contacts.recent_errors) == (0, 0)
    opportunities = outcomes[("pull", "opportunities")]
    assert (opportunities.last_run_id, opportunities.last_run_succeeded, opportunities.last_run_errors,
            opportunities.last_run_waiting) == ("run-c", 1, 0, 0)
    assert (opportunities.recent_succeeded, opportunities.recent_waiting) == (2, 0)
    with connect(ledger, read_only=True) as connection:
        everything = {(o.direction, o.entity): o for o in entity_outcomes(connection, since=at(-1))}
    assert (everything[("pull", "clients")].recent_succeeded, everything[("pull", "clients")].recent_errors) == (3, 1)
    waited = everything[("pull", "opportunities")]
    assert (waited.recent_succeeded, waited.recent_errors, waited.recent_waiting) == (2, 0, 1)


def test_a_file_without_the_ledger_tables_says_so(tmp_path):
    with connect(tmp_path / "empty.duckdb") as connection:
        connection.execute("CREATE TABLE t (x INTEGER)")
    with connect(tmp_path / "empty.duckdb", read_only=True) as connection:
        assert not has_ledger(connection)
