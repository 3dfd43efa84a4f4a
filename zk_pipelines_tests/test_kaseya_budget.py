"""The tenant's Kaseya budget is one per tenant, not per run: every client of the tenant (the hourly run, a
backfill, the pushes, in any process) takes its calls from one store, in leases, and no endpoint goes past its
hourly limit between them. Tested against both stores with the same tests."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from zk_pipelines.clients.kaseya_budget import (
    BudgetExhausted,
    MemoryBudgetStore,
    RouteBudget,
)
from zk_pipelines.domain.kaseya_endpoints import ENDPOINTS
from zk_pipelines.storage.budget_store import DuckDBBudgetStore

ACCOUNTS = ENDPOINTS["accounts"]
CONTACTS = ENDPOINTS["contacts"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "duckdb"])
def store(request, tmp_path):
    return MemoryBudgetStore() if request.param == "memory" else DuckDBBudgetStore(tmp_path / "tenant.duckdb")


def take(budget: RouteBudget, endpoint, times: int) -> int:
    taken = 0
    for _ in range(times):
        try:
            budget.take(endpoint)
        except BudgetExhausted:
            break
        taken += 1
    return taken


def test_two_clients_of_a_tenant_share_each_endpoints_hourly_limit(store):
    clock = Clock()
    run, push = RouteBudget(30, clock, store), RouteBudget(30, clock, store)
    assert take(run, ACCOUNTS, 20) == 20
    lease = run._leases[ACCOUNTS.label]
    held = lease.calls - lease.used
    assert held > 0  # the run's open lease holds calls it has not used yet
    # The push gets what is left beside the run's calls and its lease...
    assert take(push, ACCOUNTS, 30) == 30 - 20 - held
    run.settle()  # ... and once the run is done, what its lease did not use.
    assert take(push, ACCOUNTS, 30) == held
    assert push.sent()[ACCOUNTS.label] + run.sent()[ACCOUNTS.label] == 30
    with pytest.raises(BudgetExhausted, match=r"for this tenant, across runs and pushes\), resumes next hour"):
        push.take(ACCOUNTS)
    assert take(push, CONTACTS, 5) == 5  # the limit is per endpoint
    clock.now += 3601  # an hour later the calls have left the window
    assert take(RouteBudget(30, clock, store), ACCOUNTS, 30) == 30


def test_what_each_client_reports_as_taken_this_hour_is_the_tenants(store):
    clock = Clock()
    run, push = RouteBudget(100, clock, store), RouteBudget(100, clock, store)
    take(run, ACCOUNTS, 3)
    take(push, ACCOUNTS, 2)
    # a client's own calls, and the other's calls and lease (used or held: neither can be given to anyone else)
    assert run.used()[ACCOUNTS.label] == 3 + push._leases[ACCOUNTS.label].calls
    assert push.used()[ACCOUNTS.label] == 2 + run._leases[ACCOUNTS.label].calls
    run.settle()
    push.settle()
    assert run.used()[ACCOUNTS.label] == push.used()[ACCOUNTS.label] == 5


def test_an_endpoint_kaseya_declared_spent_is_not_called_by_another_client(store):
    clock = Clock()
    run, push = RouteBudget(100, clock, store), RouteBudget(100, clock, store)
    run.spent_by_kaseya(ACCOUNTS, BudgetExhausted("Kaseya", ACCOUNTS.label, "Kaseya answered 429", retry_after=600))
    with pytest.raises(BudgetExhausted, match="Kaseya answered 429"):
        push.take(ACCOUNTS)
    clock.now += 601
    assert take(push, ACCOUNTS, 1) == 1


def _spend(database: str, calls: int, limit: int, queue) -> None:
    budget = RouteBudget(limit, store=DuckDBBudgetStore(Path(database)))
    taken = take(budget, ACCOUNTS, calls)
    budget.settle()
    queue.put(taken)


def test_processes_of_a_tenant_share_its_budget_through_the_state_store(tmp_path):
    database = str(tmp_path / "tenant.duckdb")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    first = context.Process(target=_spend, args=(database, 25, 40, queue))
    first.start()
    first.join(60)
    second = context.Process(target=_spend, args=(database, 25, 40, queue))
    second.start()
    second.join(60)
    assert [queue.get(timeout=5), queue.get(timeout=5)] == [25, 15]


def test_a_process_that_dies_with_a_lease_open_leaves_it_counted(tmp_path):
    store = DuckDBBudgetStore(tmp_path / "tenant.duckdb")
    died = RouteBudget(50, store=store)
    take(died, ACCOUNTS, 1)  # leased FIRST_LEASE calls, used one, never settled
    lease = died._leases[ACCOUNTS.label].calls
    assert take(RouteBudget(50, store=store), ACCOUNTS, 50) == 50 - lease
