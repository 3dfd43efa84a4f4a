"""Accounts and opportunities are staged a chunk of ids at a time (`records_per_chunk`), so that a long
history's payloads are never all in memory at once. Chunks change nothing: the same `stg` rows, the same
`audit.rejects` lines (an unreadable record still named by its place in the whole batch), the same reports,
whether the pending records and those retried for a missing parent fall in one chunk or many. Compared on
copies of one DuckDB file: the bad-input corpus after a full sync, plus hand-made raw records."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from zk_pipelines.pull.stage import stage_entity
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.raw_store import RawRecord, upsert_incremental_raw

ENTITIES = ("accounts", "opportunities")
WHOLE = 10**9


@pytest.fixture(scope="module")
def corpus_world(tmp_path_factory) -> tuple[Path, datetime, datetime]:
    """The bad-input corpus after a full sync, with hand-made raw records added and the staging of accounts
    and opportunities removed (every raw record pending again): (database, the history's first and last
    `ModifiedOn`)."""
    from zk_pipelines_tests.pipeline_harness import step_errors
    from zk_pipelines_tests.test_reliability_bad_input import corpus_synced

    with corpus_synced(tmp_path_factory.mktemp("corpus")) as (harness, _, result):
        assert result.success, step_errors(result)
    database = harness.database
    with connect(database) as connection:
        first, last = connection.execute(
            "SELECT min(modified_on), max(modified_on) FROM raw.kaseya_opportunities").fetchall()[0]
        early = first + timedelta(minutes=1)
        account = json.loads(connection.execute(
            "SELECT payload FROM raw.kaseya_accounts ORDER BY kaseya_id LIMIT 1").fetchall()[0][0])
        opportunity = json.loads(connection.execute(
            "SELECT payload FROM raw.kaseya_opportunities ORDER BY kaseya_id LIMIT 1").fetchall()[0][0])
        made = {
            "kaseya_accounts": [
                RawRecord(900_001, early, {**account, "id": 900_001.5}),  # an id staging cannot read
                RawRecord(900_002, early, ["not", "an", "object"]),
                RawRecord(900_003, early, {**account, "id": 900_003, "accountName": None}),
            ],
            "kaseya_opportunities": [
                # waits for an account that is not staged: retried by the later pass, though not pending then
                *(RawRecord(900_010 + n, early, {**opportunity, "id": 900_010 + n, "accountId": 999_999})
                  for n in range(5)),
                RawRecord(900_020, early, {**opportunity, "id": 900_020.25}),
            ],
        }
        for table, records in made.items():
            upsert_incremental_raw(connection, table, records, window_start=first, window_end=last,
                                   run_id="hand-made", now=last)
        for entity in ENTITIES:
            connection.execute(f"DELETE FROM stg.kaseya_{entity}")
            connection.execute("DELETE FROM audit.rejects WHERE entity = ?", [entity])
            connection.execute(f"UPDATE raw.kaseya_{entity} SET stage_pending = true")
    return database, first, last


def extracted_again(database: Path, since: datetime) -> None:
    """What an hourly run leaves pending: the records it brought changed (here: those modified since `since`)."""
    with connect(database) as connection:
        for entity in ENTITIES:
            connection.execute(f"UPDATE raw.kaseya_{entity} SET stage_pending = true WHERE modified_on >= ?", [since])


def staged_with(database: Path, copy: Path, last: datetime, chunk: int) -> tuple[list, dict]:
    """Two runs' staging: the whole history pending, then the last hour's records brought again."""
    shutil.copy(database, copy)
    reports = []
    for number in range(2):
        if number:
            extracted_again(copy, last - timedelta(hours=1))
        for entity in ENTITIES:
            report = stage_entity(copy, entity, run_id=f"run-{number}", partition_key="p", now=last,
                                  records_per_chunk=chunk)
            rejects = report.rejects.astype(object).where(report.rejects.notna(), None).values.tolist()
            reports.append((entity, report.read, report.staged, report.rejected_records, report.waiting_records,
                            sorted(map(tuple, rejects), key=repr)))
    with connect(copy, read_only=True) as connection:
        tables = {entity: connection.execute(f"SELECT * FROM stg.kaseya_{entity} ORDER BY kaseya_id").fetchall()
                  for entity in ENTITIES}
        tables["rejects"] = connection.execute(
            "SELECT * EXCLUDE (reject_id) FROM audit.rejects WHERE entity IN ('accounts', 'opportunities') "
            "ORDER BY ALL").fetchall()
    return reports, tables


@pytest.mark.slow
def test_chunks_stage_and_reject_exactly_what_one_whole_read_does(corpus_world, tmp_path):
    database, _, last = corpus_world
    whole = staged_with(database, tmp_path / "whole.duckdb", last, WHOLE)
    for chunk in (1, 3, 7):
        assert staged_with(database, tmp_path / f"chunk{chunk}.duckdb", last, chunk) == whole, chunk
    reports, tables = whole
    # the comparison covered every outcome: staged rows, rejects, waiting records retried by the later run
    assert len(tables["accounts"]) > 30 and len(tables["opportunities"]) > 30
    reasons = [row[7] for row in tables["rejects"]]
    assert any("(record " in reason for reason in reasons)  # the unreadable ids, named by their place
    assert any(r[0] == "opportunities" and r[4] >= 5 for r in reports[2:])  # retried, still waiting
    later_opportunities = reports[3]
    assert later_opportunities[1] > 5  # the later run read the records brought again and the five retried


def test_a_staging_that_fails_midway_leaves_nothing_for_its_retry_to_write_twice(corpus_world, tmp_path,
                                                                                  monkeypatch):
    import zk_pipelines.pull.stage as stage_module

    database, _, last = corpus_world
    copy = tmp_path / "midway.duckdb"
    shutil.copy(database, copy)
    real, calls = stage_module.validate_rows, []

    def fails_on_the_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the disk went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(stage_module, "validate_rows", fails_on_the_third_chunk)
    with pytest.raises(RuntimeError, match="disk went away"):
        stage_entity(copy, "accounts", run_id="run-0", partition_key="p", now=last, records_per_chunk=5)
    with connect(copy, read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM stg.kaseya_accounts").fetchall() == [(0,)]
        assert connection.execute("SELECT count(*) FROM audit.rejects WHERE entity = 'accounts'").fetchall() == [(0,)]
    monkeypatch.setattr(stage_module, "validate_rows", real)
    retried = stage_entity(copy, "accounts", run_id="run-0", partition_key="p", now=last, records_per_chunk=5)
    with connect(copy, read_only=True) as connection:
        lines = connection.execute("SELECT count(*) FROM audit.rejects WHERE entity = 'accounts'").fetchall()
    assert retried.staged > 30 and lines == [(len(retried.rejects),)] and len(retried.rejects) >= 3
