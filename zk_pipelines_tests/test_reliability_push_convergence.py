"""Convergence under faults, the push: a batch of Won documents pushed into Kaseya with a few percent of every
fault kind injected, each failed push re-launched until it goes through, ends with exactly what the same
pushes make without faults, in Kaseya's records and Zomentum's (the opportunities' Kaseya links). The scenario
is the reliability report's (`benchmarks/reliability_report.py`)."""

from __future__ import annotations

import pytest

from benchmarks.reliability_report import (
    KASEYA_FAULT_KINDS,
    ZOMENTUM_FAULT_KINDS,
    push_convergence,
    render_table,
)

RATE = 0.02  # of the requests, per fault kind


@pytest.mark.slow
def test_a_batch_of_won_pushes_under_every_fault_re_pushed_until_clean_equals_the_fault_free_pushes(
        sandboxes, tmp_path):
    kaseya, zomentum = sandboxes

    result = push_convergence(kaseya, zomentum, tmp_path, rate=RATE, fault_seed=1)

    print(render_table([result]))
    assert set(result.faults) == set(KASEYA_FAULT_KINDS) | set(ZOMENTUM_FAULT_KINDS)
    assert result.failures == []
    for tally in result.tallies:
        assert (tally.duplicates, tally.missing, tally.differing) == (0, 0, 0), (tally.sandbox, tally.examples)
        assert tally.found == tally.expected
    assert result.leaked == []
