"""The benchmark's bulk reference (`benchmarks/bulk_change_detection.py`) gives exactly what the per-record
path gives, so the benchmark compares like with like: the same valid rows and
rejects as `validate_rows`, the same payload hash as `payload_hash(map_client_user(...))`, and the change
of each contact against the hashes last sent."""

from __future__ import annotations

import importlib.util
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from zk_pipelines.domain.change_detection import canonical_json, payload_hash
from zk_pipelines.domain.staging_schemas import validate_rows
from zk_pipelines.domain.zomentum_mapping import map_client_user


def _benchmark_module(name: str):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bulk = _benchmark_module("bulk_change_detection")
CHANGED, NEW, UNCHANGED, WAITING = bulk.CHANGED, bulk.NEW, bulk.UNCHANGED, bulk.WAITING
CONTACT_COLUMNS = bulk.CONTACT_COLUMNS
client_user_payloads, detect_changes, validate_contacts = (bulk.client_user_payloads, bulk.detect_changes,
                                                           bulk.validate_contacts)

MOMENT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
KNOWN_ACCOUNTS = {10, 11, 12}
CLIENTS = {10: "zc-10", 11: 'zc-"11"'}  # account 12 is staged but not in Zomentum yet


def contact(kaseya_id: int | None = 1, **fields) -> dict:
    row = {"kaseya_id": kaseya_id, "account_id": 10, "account_name": "Acme", "location_id": 7, "first_name": "Ann",
           "last_name": "Lee", "job_title": "CFO", "email": "ann@acme.example", "phone": "+1 555 0100",
           "is_poc": True, "is_active": True, "created_on": MOMENT - timedelta(days=1), "modified_on": MOMENT}
    row.update(fields)
    return row


def typed(rows: list[dict]) -> pd.DataFrame:
    """Rows typed as validate_rows types them (the bulk path's input)."""
    frame = pd.DataFrame(rows, columns=[name for name, _ in CONTACT_COLUMNS])
    for name, kind in CONTACT_COLUMNS:
        if kind == "BIGINT":
            frame[name] = pd.array(frame[name].tolist(), dtype="Int64")
        elif kind == "BOOLEAN":
            frame[name] = pd.array(frame[name].tolist(), dtype="boolean")
        elif kind == "TIMESTAMPTZ":
            frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[us, UTC]")
        else:
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return frame


def per_record(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return validate_rows("contacts", frame, known_ids={"accounts": KNOWN_ACCOUNTS})


def reject_lines(rejects: pd.DataFrame) -> list[tuple]:
    return sorted((str(r.kaseya_id), r.check, r.column, r.value, r.reason) for r in rejects.itertuples())


@pytest.mark.parametrize("rows", [
    pytest.param([contact(1), contact(2, email=None, job_title=None, phone=None)], id="all valid"),
    pytest.param([contact(1, first_name=None)], id="missing first name"),
    pytest.param([contact(1, email="not-an-email")], id="e-mail of the wrong shape"),
    pytest.param([contact(1, account_id=99)], id="unknown account"),
    pytest.param([contact(1, account_id=None)], id="no account"),
    pytest.param([contact(None)], id="no id"),
    pytest.param([contact(1, is_poc=None)], id="no POC flag"),
    pytest.param([contact(1, job_title=5)], id="text column holding a number"),
    pytest.param([contact(1, first_name="Old", modified_on=MOMENT - timedelta(hours=1)), contact(1)],
                 id="duplicate: the later modification wins"),
    pytest.param([contact(1), contact(1, first_name="Old", modified_on=MOMENT - timedelta(hours=1))],
                 id="duplicate read later but modified earlier"),
    pytest.param([contact(1), contact(1, email="bad")], id="duplicate tie: the last read wins, invalid"),
    pytest.param([contact(1, modified_on=None), contact(1, first_name="Dated")], id="a missing moment is oldest"),
    pytest.param([contact(3, email="x"), contact(2), contact(1, first_name=None), contact(4)],
                 id="order kept around rejects"),
])
def test_bulk_validation_keeps_and_rejects_what_validate_rows_does(rows):
    frame = typed(rows)
    expected_valid, expected_rejects = per_record(frame)

    valid, rejects = validate_contacts(frame, KNOWN_ACCOUNTS)

    pd.testing.assert_frame_equal(valid, expected_valid)
    assert reject_lines(rejects) == reject_lines(expected_rejects)


@pytest.mark.parametrize("fields", [
    pytest.param({}, id="plain"),
    pytest.param({"first_name": 'Jo "JJ"', "last_name": "Back\\slash"}, id="quote and backslash"),
    pytest.param({"first_name": "Zoë", "last_name": "Nguyễn", "job_title": "東京 オフィス"}, id="non-ASCII as is"),
    pytest.param({"first_name": "Tab\there", "job_title": "line\nbreak"}, id="characters JSON escapes"),
    pytest.param({"email": None, "job_title": None, "phone": None, "last_name": None}, id="nulls"),
    pytest.param({"is_poc": False}, id="secondary contact"),
    pytest.param({"is_poc": None}, id="no POC flag: secondary"),
    pytest.param({"account_id": 11}, id="client id needing escapes"),
])
def test_the_bulk_payload_hashes_as_the_per_record_mapper_does(fields):
    frame = typed([contact(1, **fields)])
    row = frame.iloc[0].to_dict()

    (bulk,) = client_user_payloads(frame, CLIENTS).to_dict("records")

    expected = map_client_user(row, CLIENTS[int(row["account_id"])])
    assert bulk["payload"] == canonical_json(expected)
    assert bulk["payload_hash"] == payload_hash(expected)
    assert (bulk["kaseya_id"], bulk["client_id"]) == ("1", CLIENTS[int(row["account_id"])])


def test_a_contact_whose_account_is_not_in_zomentum_has_no_payload_and_waits():
    payloads = client_user_payloads(typed([contact(1, account_id=12), contact(2)]), CLIENTS)

    assert payloads["payload"].tolist()[0] is None and payloads["payload_hash"].tolist()[0] is None
    assert detect_changes(payloads, {}).tolist() == [WAITING, NEW]


def test_each_contact_is_new_changed_or_unchanged_against_the_hashes_last_sent():
    frame = typed([contact(1), contact(2), contact(3)])
    payloads = client_user_payloads(frame, CLIENTS)
    sent = {"1": payloads["payload_hash"][0], "2": "the hash of an older payload"}

    assert detect_changes(payloads, sent).tolist() == [UNCHANGED, CHANGED, NEW]


def test_a_mixed_batch_matches_the_per_record_path_row_for_row():
    draw = random.Random(11)
    rows = []
    for n in range(600):
        rows.append(contact(
            draw.randrange(1, 500), account_id=draw.choice([10, 11, 12, 99, None]),
            first_name=draw.choice(["Ann", "Zoë", 'Jo "JJ"', None, "Tab\tbed"]),
            last_name=draw.choice(["Lee", None, "Back\\slash"]),
            email=draw.choice([f"p{n}@acme.example", None, "bad-address"]),
            job_title=draw.choice(["CFO", None, "東京"]), is_poc=draw.choice([True, False, None]),
            modified_on=MOMENT - timedelta(minutes=draw.randrange(0, 5))))
    frame = typed(rows)
    expected_valid, expected_rejects = per_record(frame)

    valid, rejects = validate_contacts(frame, KNOWN_ACCOUNTS)
    payloads = client_user_payloads(valid, CLIENTS)

    pd.testing.assert_frame_equal(valid, expected_valid)
    assert reject_lines(rejects) == reject_lines(expected_rejects)
    expected_hashes = []
    for row in expected_valid.to_dict("records"):
        client = CLIENTS.get(int(row["account_id"]))
        expected_hashes.append(payload_hash(map_client_user(row, client)) if client else None)
    assert payloads["payload_hash"].tolist() == expected_hashes
