"""The reconciliation's Dagster objects by name, and its share of the tenant's Kaseya budget."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg
import pytest

from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.kaseya_budget import BudgetExhausted, MemoryBudgetStore
from zk_pipelines.config import KaseyaCredentials
from zk_pipelines.definitions import build_definitions
from zk_pipelines.defs.jobs import HOURLY_JOB, PULL_TAG
from zk_pipelines.reconcile.run import RECONCILE_BUDGET_SHARE, chosen_entities, reconcile_client
from zk_pipelines.secrets import Secret


def test_the_reconcile_job_schedule_asset_and_check_are_pinned():
    repository = build_definitions().get_repository_def()
    checks = {(key.asset_key.to_user_string(), key.name) for key in repository.asset_graph.asset_check_keys}
    assert ("audit_reconciliation", "drift_within_threshold") in checks
    job = repository.get_job("reconcile_job")
    assert job.tags[PULL_TAG] == "default"  # one pull-tagged run per tenant at a time: never beside the pull
    assert [node.name for node in job.nodes] == ["audit_reconciliation"]
    assert "audit_reconciliation" not in [node.name for node in repository.get_job(HOURLY_JOB).nodes]
    schedule = repository.get_schedule_def("daily_reconcile_schedule")
    assert (schedule.job_name, schedule.cron_schedule, schedule.default_status) == \
        ("reconcile_job", "35 3 * * *", dg.DefaultScheduleStatus.RUNNING)
    assert schedule.evaluate_tick(dg.build_schedule_context()).run_requests[0].run_config == \
        {"ops": {"audit_reconciliation": {"config": {"repair": True}}}}


@pytest.mark.parametrize(("names", "chosen"), [
    (None, ("clients", "client_users", "opportunities", "items")),
    (["products", "accounts"], ("clients", "items")),
    (["contact", "opportunities"], ("client_users", "opportunities")),
])
def test_entities_are_named_either_way_and_taken_in_load_order(names, chosen):
    assert chosen_entities(names) == chosen


def test_an_unknown_entity_is_one_error_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown entity 'quotes'; reconcile one of clients, client_users"):
        chosen_entities(["quotes"])


def test_reconcile_takes_kaseya_calls_only_while_the_hour_is_under_its_share(sandboxes):
    kaseya, _ = sandboxes
    kaseya.state.reset(seed=7, scale="small_recent")
    credentials = replace(KaseyaCredentials(kaseya.base_url, kaseya.username, Secret(kaseya.password),
                                            kaseya.tenant), hourly_call_budget=40)
    store = MemoryBudgetStore()  # the tenant's one count, shared by the pull and the reconciliation
    share = int(40 * RECONCILE_BUDGET_SHARE)
    reconciler = reconcile_client(credentials, store)
    assert reconciler.budget.hourly_limit == share
    pull = KaseyaClient(credentials, budget_store=store)
    try:
        pages = 0
        for _ in pull.paginate("accounts", page_size=2):  # the pull spends the share on this endpoint
            pages += 1
            if pages >= 2 * share:
                break
        pull.close()
        with pytest.raises(BudgetExhausted):
            list(reconciler.iter_accounts())
        again = KaseyaClient(credentials, budget_store=store)
        assert list(again.paginate("accounts", page_size=100))  # the pull still has the rest of the hour
        again.close()
    finally:
        reconciler.close()
