"""Rate limits: with the sandboxes' limits set low the sync slows down and finishes when the budget allows it;
when it does not, the work stops at the first 429 that asks for more than the policy waits, saying "rate budget
exhausted for <endpoint> ..., resumes next hour", and the next hour (the sandbox clock moved on, the failed
partitions re-run) picks up where it stopped. Kaseya is never hammered: one 429 per spent endpoint."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from zk_pipelines.clients.kaseya import KASEYA_POLICY
from zk_pipelines.domain.kaseya_endpoints import ENDPOINTS
from zk_pipelines_tests.pipeline_harness import (
    PipelineHarness,
    materialization_metadata,
    reset_sandboxes,
    step_errors,
)

PRICING = "/v2/inventory/products/{productIndexId}/pricingLevels"
CONTACTS = "/v2/crm/contacts/summary"
ACCOUNTS = "/v2/crm/accounts/summary"
HOURS = 12  # the hours each backfill covers: enough records, a quick run


@pytest.fixture
def harness(sandboxes, tmp_path) -> PipelineHarness:
    kaseya, zomentum = reset_sandboxes(sandboxes)
    return PipelineHarness(kaseya, zomentum, tmp_path)


def kaseya_statuses(harness: PipelineHarness, route: str) -> list[int]:
    return [e["status"] for e in harness.kaseya.state.requests() if e["route"] == route]


def too_many(harness: PipelineHarness) -> Counter[str]:
    return Counter(e["route"] for e in harness.kaseya.state.requests() if e["status"] == 429)


def step_failure(result, step_key: str):
    return next(e.event_specific_data for e in result.get_step_failure_events() if e.step_key == step_key)


@pytest.mark.slow
def test_within_the_limits_the_sync_waits_out_short_429s_and_finishes_with_every_record(harness):
    kaseya, zomentum = harness.kaseya, harness.zomentum
    products = len(kaseya.state.records("products"))
    kaseya.state.set_knobs(rate_limit=products + 10)  # per endpoint per hour: the per-product pricing fits
    kaseya.state.set_faults(seed=1, rules=[{"kind": "rate_limit_burst", "route": f"GET {ACCOUNTS}", "count": 1,
                                            "length": 2, "retry_after": 1}])
    zomentum.state.set_knobs(rate_limit=20, rate_limit_window_seconds=2)  # its limit is per token per window

    result = harness.backfill(first=harness.current_hour - timedelta(hours=HOURS + 1))

    assert result.success, step_errors(result)
    assert kaseya_statuses(harness, ACCOUNTS) == [429, 429, 200]  # waited as told, then went on
    assert too_many(harness) == Counter({ACCOUNTS: 2})  # the hourly limit itself was never reached
    zomentum_waits = [e for e in zomentum.state.requests() if e["status"] == 429]
    assert zomentum_waits  # Zomentum's limit was met, and waited out: every record is there
    assert len(harness.id_map("items")) == products
    loads = [materialization_metadata(result, f"zomentum_{target}")
             for target in ("clients", "client_users", "opportunities", "items")]
    assert [load["failed"] for load in loads] == [0, 0, 0, 0]
    assert sum(load["zomentum_retry_wait_seconds"] for load in loads) > 0  # the load slowed down, as told


@pytest.mark.slow
def test_past_the_limit_pricing_stops_at_the_first_long_429_and_the_next_hour_prices_the_rest(harness):
    kaseya = harness.kaseya
    products = len(kaseya.state.records("products"))
    limit = products - 10
    kaseya.state.set_knobs(rate_limit=limit)

    first = harness.backfill(first=harness.current_hour - timedelta(hours=HOURS + 1))

    assert first.success, step_errors(first)
    # The 429 ends the pricing: only the reads already in flight then (several are, concurrently) got a 429
    # too, and no call to the spent endpoint was sent after it.
    assert set(too_many(harness)) == {PRICING}
    assert 1 <= too_many(harness)[PRICING] <= harness.tuning.kaseya_concurrency
    stopped = materialization_metadata(first, "raw_kaseya_products")["pricing_stopped"]
    assert stopped.startswith(f"rate budget exhausted for {ENDPOINTS['product_pricing_levels'].label} (")
    assert stopped.endswith("resumes next hour (in 60 min)")
    assert len(harness.id_map("items")) == limit
    waiting = harness.sql("SELECT reason FROM audit.sync_events WHERE entity = 'items' AND action = 'deferred' "
                          "AND run_id = ?", [first.run_id])
    assert len(waiting) == products - limit
    assert all("waits for its Kaseya pricing" in reason for (reason,) in waiting)

    harness.an_hour_passes()  # the next hour: Kaseya's sliding window (and the tenant's budget) has room again
    kaseya.state.clear_requests()
    second = harness.run_hour(harness.current_hour - timedelta(hours=1))

    assert second.success, step_errors(second)
    assert too_many(harness) == Counter()
    assert len(kaseya_statuses(harness, PRICING)) == products - limit  # only the products still unpriced
    assert len(harness.id_map("items")) == products


@pytest.mark.slow
def test_a_listing_endpoint_out_of_budget_fails_its_step_naming_it_and_the_re_run_next_hour_completes(harness):
    kaseya = harness.kaseya
    wait = int(KASEYA_POLICY.max_retry_after) + 3480  # Kaseya's hourly window: nearly an hour to wait
    kaseya.state.set_faults(seed=1, rules=[{"kind": "rate_limit_burst", "route": f"GET {CONTACTS}", "count": 1,
                                            "length": 1, "retry_after": wait}])

    first = harness.backfill(first=harness.current_hour - timedelta(hours=HOURS + 1))

    assert not first.success
    failure = step_failure(first, "raw_kaseya_changes")
    assert failure.user_failure_data.description.startswith(f"rate budget exhausted for GET {CONTACTS} (")
    assert "resumes next hour" in failure.user_failure_data.description
    assert kaseya_statuses(harness, CONTACTS) == [429]  # neither the client nor a step retry called again
    assert [e.step_key for e in first.get_step_failure_events()] == ["raw_kaseya_changes"]
    # The accounts and opportunities listed beside the contacts are kept in raw, pending: the re-run stages
    # them without listing them again. The products, which depend on no list of that step, went on.
    assert harness.sql("SELECT count(*) FROM raw.kaseya_accounts WHERE stage_pending")[0][0] >= 30
    assert harness.id_map("items") and not harness.id_map("clients")

    harness.an_hour_passes(wait)
    second = harness.backfill(first=harness.current_hour - timedelta(hours=HOURS + 1))  # the failed range, re-run

    assert second.success, step_errors(second)
    assert len(harness.id_map("client_users")) > 10
    # (A contact inactive in Kaseya is not created: README, Deactivation.)
    unpaired = harness.sql("SELECT m.kaseya_id FROM mapped.zomentum_client_users m LEFT JOIN zomentum.id_map i "
                           "ON i.entity = 'client_users' AND i.kaseya_id = m.kaseya_id "
                           "WHERE m.problem IS NULL AND i.zomentum_id IS NULL AND m.kaseya_id NOT IN "
                           "(SELECT CAST(kaseya_id AS VARCHAR) FROM stg.kaseya_contacts WHERE is_active = false)")
    assert unpaired == []
