"""The push ledger on a real DuckDB file, and the Won-document poll's pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from zk_pipelines.push.won_documents import (
    POLL_OVERLAP,
    PollCursor,
    WonDocument,
    next_poll,
    won_documents,
)
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.ledger_store import IdMapEntry, upsert_id_map
from zk_pipelines.storage.push_store import (
    ADOPTED,
    FAILED,
    SENT,
    SUCCEEDED,
    UNKNOWN,
    DocumentHeld,
    DocumentIds,
    RequestIntent,
    document_pushes,
    ensure_push_tables,
    finish_document,
    kaseya_id_for,
    last_quote_id,
    pair_pushed_record,
    record_intent,
    requests_in_doubt,
    settle_request,
    start_document,
)

T0 = datetime(2026, 8, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def connection(tmp_path):
    with connect(tmp_path / "tenant.duckdb") as connection:
        ensure_push_tables(connection)
        ensure_push_tables(connection)  # idempotent
        yield connection


def intent(step: int, endpoint: str = "create_opportunity", *, document: str = "D1", version: str = "v1",
           attempt: int = 1) -> RequestIntent:
    return RequestIntent(document, version, "run-1", attempt, step, "kaseya", endpoint, "POST", "/v2/crm/x",
                         {"Subject": "S", "Amount": 1.5}, "why", endpoint.removeprefix("create_"))


def test_each_attempt_at_a_version_is_counted_and_its_outcome_kept(connection):
    assert start_document(connection, "D1", "v1", run_id="r1", fingerprint="f", now=T0) == 1
    finish_document(connection, "D1", "v1", state=FAILED, ids=DocumentIds(account_id=7), writes_sent=1,
                    error="Kaseya refused", now=T0)
    assert start_document(connection, "D1", "v1", run_id="r2", fingerprint="f", now=T0 + timedelta(minutes=1)) == 2
    finish_document(connection, "D1", "v1", state=SUCCEEDED, ids=DocumentIds("Z9", 7, 8, 9, 10), writes_sent=4,
                    error=None, now=T0 + timedelta(minutes=2))
    start_document(connection, "D1", "v2", run_id="r3", fingerprint="f", now=T0 + timedelta(minutes=3))

    rows = document_pushes(connection, "D1")
    assert [(r.document_version, r.state, r.attempts) for r in rows] == [("v2", "running", 1), ("v1", SUCCEEDED, 2)]
    assert (rows[1].ids, rows[1].writes_sent, rows[1].error) == (DocumentIds("Z9", 7, 8, 9, 10), 4, None)


@pytest.mark.parametrize(("holder_state", "holder_run", "started", "version", "alive", "held"), [
    ("running", "r1", T0, "v1", None, True),  # another run is pushing this version
    ("running", "r1", T0, "v2", None, True),  # ... or another version of the same document
    ("running", "r2", T0, "v1", None, False),  # the same run's next attempt (a step retry)
    ("running", "r1", T0 - timedelta(minutes=16), "v1", None, False),  # not a Dagster run, silent: abandoned
    ("running", "r1", T0 - timedelta(hours=3), "v1", True, True),  # a Dagster run still running, however long
    ("running", "r1", T0, "v1", False, False),  # a Dagster run that has finished (failed, terminated)
    (FAILED, "r1", T0, "v1", None, False),
    (SUCCEEDED, "r1", T0, "v1", True, False),
])
def test_a_document_another_run_is_pushing_is_held(connection, holder_state, holder_run, started, version, alive,
                                                   held):
    start_document(connection, "D1", "v1", run_id=holder_run, fingerprint="f", now=started)
    if holder_state != "running":
        finish_document(connection, "D1", "v1", state=holder_state, ids=DocumentIds(), writes_sent=0, error=None,
                        now=started)
    before = [(r.document_version, r.state, r.attempts) for r in document_pushes(connection, "D1")]
    now = T0 + timedelta(seconds=5)
    asked: list[str] = []

    def run_alive(run_id: str) -> bool | None:
        asked.append(run_id)
        return alive

    if held:
        with pytest.raises(DocumentHeld) as caught:
            start_document(connection, "D1", version, run_id="r2", fingerprint="f", now=now, run_alive=run_alive)
        assert (caught.value.run_id, caught.value.since, caught.value.known_run) == (holder_run, started,
                                                                                    alive is not None)
        assert [(r.document_version, r.state, r.attempts) for r in document_pushes(connection, "D1")] == before
    else:
        start_document(connection, "D1", version, run_id="r2", fingerprint="f", now=now, run_alive=run_alive)
        assert next(r for r in document_pushes(connection, "D1") if r.document_version == version).state == "running"
    assert asked == (["r1"] if holder_state == "running" and holder_run == "r1" else [])


def test_writes_without_a_recorded_outcome_are_in_doubt(connection):
    sent = record_intent(connection, intent(1), T0)
    settle_request(connection, sent, state=SENT, response_status=200, record_id="401", now=T0)
    crashed = record_intent(connection, intent(2, "create_quote"), T0)
    lost = record_intent(connection, intent(3, "add_quote_line_item"), T0)
    settle_request(connection, lost, state=UNKNOWN, response_status=502, error="the answer was lost", now=T0)
    record_intent(connection, intent(1, document="D2"), T0)

    doubtful = requests_in_doubt(connection, "D1")

    assert [(r.request_id, r.endpoint, r.state) for r in doubtful] == [
        (crashed, "create_quote", "intent"), (lost, "add_quote_line_item", UNKNOWN)]
    assert doubtful[0].body == {"Subject": "S", "Amount": 1.5}
    settle_request(connection, crashed, state=ADOPTED, record_id="600", now=T0)
    assert [r.request_id for r in requests_in_doubt(connection, "D1")] == [lost]


def test_the_last_quote_of_a_document_comes_from_a_finished_push_or_a_recorded_create(connection):
    assert last_quote_id(connection, "D1") is None
    start_document(connection, "D1", "v1", run_id="r1", fingerprint="f", now=T0)
    finish_document(connection, "D1", "v1", state=SUCCEEDED, ids=DocumentIds(quote_id=600), writes_sent=3,
                    error=None, now=T0)
    assert last_quote_id(connection, "D1") == 600
    created = record_intent(connection, intent(1, "create_quote", version="v2"), T0)
    settle_request(connection, created, state=SENT, record_id="601", now=T0 + timedelta(minutes=5))
    assert last_quote_id(connection, "D1") == 601
    record_intent(connection, intent(2, "create_quote", version="v3"), T0 + timedelta(minutes=9))  # in doubt
    assert last_quote_id(connection, "D1") == 601


def test_a_pushed_pair_never_replaces_the_pulls(connection):
    upsert_id_map(connection, [IdMapEntry("opportunities", "401", "z-pulled", "created", "h", {"name": "n"})], T0)
    pair_pushed_record(connection, "opportunities", 401, "z-other", T0)
    pair_pushed_record(connection, "opportunities", 402, "z-pushed", T0)

    assert kaseya_id_for(connection, "opportunities", "z-pulled") == 401
    assert kaseya_id_for(connection, "opportunities", "z-other") is None
    assert kaseya_id_for(connection, "opportunities", "z-pushed") == 402
    assert connection.execute("SELECT payload_hash FROM zomentum.id_map WHERE kaseya_id = '401'").fetchone() == ("h",)


# --------------------------------------------------------------------------------------------------------
# The Won-document poll


def document(document_id: str, status: str, updated: datetime, revision: str = "r1") -> dict:
    return {"id": document_id, "status": status, "current_revision_id": revision,
            "updated_at": updated.isoformat().replace("+00:00", "Z")}


@pytest.mark.parametrize(("listed", "launched"), [
    ([], []),
    ([document("A", "won", T0 + timedelta(seconds=5))], ["push:A:r1"]),
    ([document("A", "sent", T0 + timedelta(seconds=5)), document("B", "lost", T0)], []),
    ([document("B", "won", T0 + timedelta(seconds=9)), document("A", "won", T0 + timedelta(seconds=5))],
     ["push:A:r1", "push:B:r1"]),
    ([document("A", "won", T0 + timedelta(seconds=5)), document("A", "won", T0 + timedelta(seconds=5))],
     ["push:A:r1"]),
    ([document("K", "won", T0 - timedelta(minutes=1))], []),  # launched before, seen again in the overlap
    ([document("K", "won", T0 + timedelta(seconds=1), "r2")], ["push:K:r2"]),  # a new version of it
])
def test_a_poll_launches_each_won_version_once(listed, launched):
    cursor = PollCursor(T0, {"push:K:r1": T0 - timedelta(minutes=1)})
    found, _ = next_poll(cursor, listed)
    assert [d.run_key for d in found] == launched


def test_the_cursor_moves_to_the_newest_update_and_forgets_keys_older_than_the_overlap():
    cursor = PollCursor(T0, {"push:OLD:r1": T0 - POLL_OVERLAP - timedelta(seconds=1),
                             "push:K:r1": T0 - timedelta(minutes=1)})
    later = T0 + timedelta(minutes=2)
    _, moved = next_poll(cursor, [document("A", "won", later)])
    assert moved.since == later
    assert set(moved.launched) == {"push:K:r1", "push:A:r1"}
    assert PollCursor.from_json(moved.to_json()) == moved
    _, unchanged = next_poll(moved, [])
    assert unchanged == moved


def test_won_documents_are_read_in_update_order():
    listed = [document("B", "won", T0 + timedelta(seconds=2)), document("A", "won", T0 + timedelta(seconds=1))]
    assert won_documents(listed) == [WonDocument("A", "r1", T0 + timedelta(seconds=1)),
                                     WonDocument("B", "r1", T0 + timedelta(seconds=2))]
