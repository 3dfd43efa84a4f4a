"""Convergence under faults: the full sync, run with a few percent of every fault kind injected and re-run
while anything failed (as a data engineer re-runs the failed range from the UI), ends with exactly what the
same sync makes without faults, compared in Zomentum's own records. The scenario is the reliability report's
(`benchmarks/reliability_report.py`), so the table the README quotes is what this test asserts; the pushes'
counterpart is `test_reliability_push_convergence.py`."""

from __future__ import annotations

import pytest

from benchmarks.reliability_report import (
    KASEYA_FAULT_KINDS,
    ZOMENTUM_FAULT_KINDS,
    ZOMENTUM_RESOURCES,
    compare,
    pull_convergence,
    render_table,
    seeded_ids,
    zomentum_holdings,
)

RATE = 0.02  # of the requests, per fault kind


def test_the_comparison_sees_a_duplicate_a_missing_and_a_changed_record(sandboxes):
    _, zomentum = sandboxes
    zomentum.state.reset(seed=7, scale="small_recent")
    seeded = seeded_ids(zomentum, ZOMENTUM_RESOURCES)
    before = zomentum_holdings(zomentum, seeded)
    client = zomentum.state.records("client/companies")[0]
    zomentum.state.create_record("client/companies", {"name": client["name"]})
    assert compare("Zomentum", before, zomentum_holdings(zomentum, seeded)).duplicates == 1

    zomentum.state.reset(seed=7, scale="small_recent")
    user = zomentum.state.records("client/users")[0]
    zomentum.state.update_record("client/users", user["id"], {"job_title": "Changed"})
    tally = compare("Zomentum", before, zomentum_holdings(zomentum, seeded))
    assert (tally.duplicates, tally.missing, tally.differing) == (0, 1, 1)


@pytest.mark.slow
def test_a_full_sync_under_every_fault_re_run_until_clean_equals_the_fault_free_sync(sandboxes, tmp_path):
    kaseya, zomentum = sandboxes

    result = pull_convergence(kaseya, zomentum, tmp_path, rate=RATE, fault_seed=1)

    print(render_table([result]))
    assert set(result.faults) == set(KASEYA_FAULT_KINDS) | set(ZOMENTUM_FAULT_KINDS)  # every kind struck
    assert result.failures == []
    (tally,) = result.tallies
    assert (tally.duplicates, tally.missing, tally.differing) == (0, 0, 0), tally.examples
    assert tally.found == tally.expected > 200
    assert result.leaked == []
