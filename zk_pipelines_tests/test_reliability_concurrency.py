"""Concurrency: runs that meet on the tenant's one DuckDB file (one writer at a time) wait for it, never fail
on its lock: a backfill, the hourly run the schedule launches while it runs, and a push launched at the same
moment as that hourly run, each in its own process as Dagster runs them, sharing the instance (and its
pools) and the file."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest

from benchmarks.reliability_report import WonDocument, make_won_documents
from zk_pipelines.domain.push_plan.markers import document_markers
from zk_pipelines_tests.test_reliability_crash import jobs  # noqa: F401  (a fixture)


@pytest.mark.slow
def test_a_backfill_the_hourly_run_meanwhile_and_a_push_at_the_same_moment_all_succeed(jobs):  # noqa: F811
    kaseya, zomentum = jobs.kaseya, jobs.zomentum
    (document_id,) = make_won_documents(kaseya, zomentum, [WonDocument(True, 0, (("Rack Shelf 1U", 1),))])

    # Zomentum answers a little late, so the backfill is still loading when the schedule's run starts.
    zomentum.state.set_faults(seed=1, rules=[{"kind": "latency", "seconds": 0.03}])
    backfill = jobs.start_backfill(hours=6)
    deadline = time.monotonic() + 60
    while "RUN_START" not in backfill.log.read_text():
        assert backfill.process.poll() is None and time.monotonic() < deadline, backfill.output()
        time.sleep(0.05)
    started = [backfill, jobs.start_hour(jobs.current_hour - timedelta(hours=1)), jobs.start_push(document_id)]
    for job in started:
        job.finished(timeout=150)

    outcomes = [(job.process.returncode, job.output()) for job in started]
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    assert not any("lock" in output.lower() for _, output in outcomes)
    runs = jobs.runs()
    assert len(runs) == 3 and {run.status.value for run in runs} == {"SUCCESS"}
    with jobs.instance() as instance:
        backfill, hourly = (instance.get_run_record_by_id(run.run_id) for run in runs
                            if run.job_name == "hourly_sync_job")
    assert max(backfill.start_time, hourly.start_time) < min(backfill.end_time, hourly.end_time)  # they overlapped
    # The two pulls loaded the same hours' records one after the other: each record once.
    names = Counter(c["name"] for c in zomentum.state.records("client/companies"))
    emails = Counter(u["email"] for u in zomentum.state.records("client/users") if u["email"])
    assert max(names.values()) == max(emails.values()) == 1
    ids = jobs.sql("SELECT entity, zomentum_id FROM zomentum.id_map")
    assert len(ids) == len(set(ids))
    (opportunity,) = [o for o in kaseya.state.records("opportunities")
                      if document_id in document_markers(o.get("description"))]
    assert jobs.sql("SELECT state FROM push.documents WHERE document_id = ?", [document_id]) == [("succeeded",)]
    assert opportunity["status"] == "Closed Won"
