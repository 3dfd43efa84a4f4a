"""How the load spreads its records over threads (`pull.load.send_grouped`), with stand-ins for the Zomentum
calls: records of one match key one after another in order, up to `concurrency` in flight, every outcome
recorded on the calling thread, and an unexpected error stopping the load only after what was in flight is
recorded."""

from __future__ import annotations

import threading

import pytest

from zk_pipelines.pull.load import Outcome, send_grouped
from zk_pipelines.storage.ledger_store import SyncEvent


def outcome(position: int) -> Outcome:
    return Outcome(SyncEvent("pull", "clients", "created", str(position), f"z-{position}"), None, 1)


class Recorder:
    def __init__(self) -> None:
        self.recorded: list[int] = []
        self.threads: set[int] = set()

    def __call__(self, position: int, result: Outcome) -> None:
        assert result == outcome(position)
        self.recorded.append(position)
        self.threads.add(threading.get_ident())


def test_every_record_is_sent_once_groups_in_order_and_outcomes_recorded_on_the_calling_thread():
    groups = [[0, 3, 5], [1], [2, 4], [6]]
    sent: list[int] = []
    lock = threading.Lock()
    started = threading.Barrier(3, timeout=10)  # three records in flight at once, or the barrier breaks
    first_of_group = {group[0] for group in groups[:3]}

    def send_one(position: int) -> Outcome:
        if position in first_of_group:
            started.wait()
        with lock:
            sent.append(position)
        return outcome(position)

    record = Recorder()
    send_grouped(groups, send_one, record, concurrency=3, idle=lambda: None)

    assert sorted(sent) == sorted(record.recorded) == list(range(7))
    for group in groups:
        assert [p for p in sent if p in group] == group
        assert [p for p in record.recorded if p in group] == group
    assert record.threads == {threading.get_ident()}


def test_no_more_than_the_concurrency_is_in_flight():
    in_flight, most = 0, 0
    lock = threading.Lock()

    def send_one(position: int) -> Outcome:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        threading.Event().wait(0.01)
        with lock:
            in_flight -= 1
        return outcome(position)

    send_grouped([[n] for n in range(40)], send_one, Recorder(), concurrency=4, idle=lambda: None)

    assert 1 <= most <= 4


def test_an_unexpected_error_stops_new_records_records_those_in_flight_then_is_raised():
    in_flight = threading.Event()
    release = threading.Event()
    sent: list[int] = []

    def send_one(position: int) -> Outcome:
        sent.append(position)
        if position == 0:  # in flight when the error happens; answers after it
            in_flight.set()
            release.wait(10)
            return outcome(0)
        if position == 1:
            in_flight.wait(10)
            threading.Timer(0.2, release.set).start()
            raise KeyError("a bug")
        return outcome(position)

    record = Recorder()
    with pytest.raises(KeyError, match="a bug"):
        send_grouped([[0, 2], [1, 3]], send_one, record, concurrency=2, idle=lambda: None)

    assert sorted(sent) == [0, 1]
    assert record.recorded == [0]


class CreatesEverything:
    """A Zomentum client stand-in that finds nothing and creates every record it is sent."""

    def __init__(self) -> None:
        self.created = 0
        self.lock = threading.Lock()

    def iter_records(self, resource: str):
        return iter(())

    def custom_fields(self, entity_type: str) -> list:
        return []

    def create_custom_field(self, entity_type: str, display_name: str, field_type: str = "text"):
        from zk_pipelines.clients.zomentum_models import CustomField

        return CustomField.from_record({"id": f"cf-{entity_type}", "entity_type": entity_type,
                                        "display_name": display_name, "field_type": field_type})

    def create(self, resource: str, payload: dict) -> dict:
        with self.lock:
            self.created += 1
            return {"id": f"zu-{self.created}", **payload}


def test_a_record_nothing_could_find_again_is_ledgered_as_soon_as_it_is_created(tmp_path, monkeypatch):
    """A contact without an e-mail cannot be matched after a crash: its create is recorded before any later
    outcome, so a process killed after it never leaves it to be created a second time."""
    from datetime import UTC, datetime

    from zk_pipelines.domain.entities import ZOMENTUM_TARGET
    from zk_pipelines.pull import load
    from zk_pipelines.storage.database import connect
    from zk_pipelines.storage.pull_store import MappedRecord, ensure_pull_tables, upsert_mapped
    from zk_pipelines_tests.test_push_plan import _resolved

    now = datetime(2026, 11, 1, tzinfo=UTC)
    database = tmp_path / "tenant.duckdb"
    emails = {"1": "a@example.com", "2": None, "3": "c@example.com", "4": None, "5": "e@example.com"}
    with connect(database) as connection:
        ensure_pull_tables(connection, ["client_users"])
        upsert_mapped(connection, "client_users", [
            MappedRecord(kaseya_id, {"name": {"first": f"N{kaseya_id}", "last": "L"}, "email": email,
                                     "client_company_id": "c-1", "contact_type": "secondary_contact"},
                         f"hash-{kaseya_id}", None, now) for kaseya_id, email in emails.items()], run_id="r", now=now)
    batches: list[list[tuple[str, str]]] = []
    real_record_events = load.record_events

    def recording(connection, events, **kwargs):
        batches.append([(e.kaseya_id, e.action) for e in events])
        return real_record_events(connection, events, **kwargs)

    monkeypatch.setattr(load, "record_events", recording)
    report = load.load_target(database, CreatesEverything(), ZOMENTUM_TARGET["client_users"], _resolved(),
                              run_id="r", partition_key=None, clock=lambda: now, concurrency=1)

    assert report.counts["created"] == 5
    # Each e-mail-less create closes a batch written on its own outcome; the others wait for the usual flush.
    keyless_batches = [batch for batch in batches if batch[-1][0] in ("2", "4")]
    assert len(keyless_batches) == 2
    assert sorted(kaseya_id for batch in batches for kaseya_id, _ in batch) == ["1", "2", "3", "4", "5"]


def test_records_sharing_a_match_key_are_one_group_and_records_without_one_are_another():
    from zk_pipelines.domain.entities import ZOMENTUM_TARGET
    from zk_pipelines.pull.load import key_groups, match_keys
    from zk_pipelines.storage.pull_store import PendingRecord
    from zk_pipelines_tests.test_push_plan import _resolved

    emails = ["a@x.example", None, "B@x.example", "A@X.example", None, "c@x.example", "b@x.example"]
    pending = [PendingRecord(str(i), {"email": email, "name": {"first": "F", "last": "L"}}, f"h{i}", None, False,
                             None, None, None) for i, email in enumerate(emails)]
    pending.append(PendingRecord("7", None, None, "waits for its account", True, None, None, None))

    keys = match_keys(ZOMENTUM_TARGET["client_users"], pending, _resolved(), None)
    groups = key_groups(keys)

    # e-mails compare case-blind; the e-mail-less records and the unsendable one go one at a time, in order
    assert groups == [[0, 3], [1, 4, 7], [2, 6], [5]]
    assert [position for position, key in enumerate(keys) if key is None] == [1, 4, 7]
