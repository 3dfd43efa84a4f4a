"""What a run's extraction queries (`domain/incremental.py`): its hours with the overlap, reaching back over
whatever earlier runs did not cover, and the whole history for a tenant's first run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from zk_pipelines.domain.incremental import (
    ExtractionWindow,
    extraction_window,
    planned_window,
)

H = datetime(2026, 12, 7, 10, tzinfo=UTC)
OVERLAP = timedelta(minutes=15)


@pytest.mark.parametrize(("covered", "whole_history", "query_from", "why"), [
    (None, False, None, "never covered: the tenant's first run reads everything"),
    (H, True, None, "asked for the whole history"),
    (H, False, H - OVERLAP, "covered up to the window's start: the window with its overlap"),
    (H + timedelta(minutes=40), False, H - OVERLAP, "covered into the window: still the whole window"),
    (H + timedelta(hours=5), False, H - OVERLAP, "an older hour (a backfill of covered hours): just it"),
    (H - timedelta(hours=3), False, H - timedelta(hours=3) - OVERLAP, "three hours missed: read them too"),
])
def test_a_run_queries_its_hours_and_what_no_run_covered(covered, whole_history, query_from, why):
    window = planned_window(H, H + timedelta(hours=1), covered, overlap=OVERLAP, whole_history=whole_history)
    assert (window.query_from, window.query_to) == (query_from, H + timedelta(hours=1)), why


@pytest.mark.parametrize(("query_from", "covered", "after"), [
    (None, None, "end"),  # the whole history: covered up to the window's end
    (H - OVERLAP, H, "end"),  # joins what was covered
    (H - OVERLAP, H + timedelta(hours=9), "covered"),  # an older window leaves a later coverage alone
    (H - OVERLAP, H - timedelta(hours=2), "covered"),  # a gap before it: coverage does not jump over it
])
def test_coverage_grows_only_without_a_gap(query_from, covered, after):
    window = ExtractionWindow(H, H + timedelta(hours=1), query_from, H + timedelta(hours=1))
    expected = window.query_to if after == "end" else covered
    assert window.extends_coverage(covered) == expected


def test_a_window_without_a_lower_bound_covers_every_moment_up_to_its_end():
    window = planned_window(H, H + timedelta(hours=1), None)
    assert window.whole_history and window.covers(datetime(2001, 1, 1, tzinfo=UTC))
    assert not window.covers(H + timedelta(hours=1, seconds=1)) and not window.covers(None)
    assert window.describe().startswith("the beginning of the tenant's history ..")
    assert not extraction_window(H, H + timedelta(hours=1)).whole_history
