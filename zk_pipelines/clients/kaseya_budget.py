"""The tenant's Kaseya call budget: each endpoint (route template) under `hourly_limit` calls in any hour.

Kaseya allows 1500 calls per hour per endpoint, per tenant: the hourly run, a backfill, the pushes and a
reconcile all spend the same allowance. So the count lives in a `BudgetStore` shared by them (the tenant's
state store; `MemoryBudgetStore` for one process alone, as `zk check` is), and a client takes calls from it in
leases: a grant of a few calls at a time, recorded in the store before they are sent, settled with the
number actually sent when the client is done with it (or closed). A process that dies with a lease open
leaves it counted in full for the rest of the hour: the budget errs on the side of Kaseya's limit.

Plain Python: the store is handed in (storage/budget_store.py keeps it in the tenant's DuckDB file).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from zk_pipelines.clients.http import RateLimited
from zk_pipelines.domain.kaseya_endpoints import Endpoint

HOUR = 3600.0
# The first lease of an endpoint, doubled with each further lease of the client up to `MAX_LEASE`: a quiet
# hour's single page takes one small lease, a thousand products' pricing a few large ones.
FIRST_LEASE = 8
MAX_LEASE = 256


class BudgetExhausted(RateLimited):
    """The hourly budget of one endpoint is spent; the work resumes next hour."""


@dataclass(frozen=True)
class Grant:
    grant_id: int
    calls: int  # granted; 0 when the endpoint's hour is spent
    retry_after: float = 0.0  # seconds until the oldest call of the hour leaves it (when nothing was granted)


@dataclass(frozen=True)
class Spent:
    until: float  # epoch seconds
    message: str


class BudgetStore(Protocol):
    """Where an endpoint's calls of the last hour are counted, across every client of the tenant."""

    def grant(self, endpoint: str, wanted: int, hourly_limit: int, now: float) -> Grant:
        """Up to `wanted` calls, as many as the last hour leaves of `hourly_limit` (recorded at once)."""

    def settle(self, grant_id: int, used: int) -> None:
        """The grant's calls actually sent (the rest go back to the budget)."""

    def mark_spent(self, endpoint: str, until: float, message: str) -> None:
        """Kaseya itself declared the endpoint spent (a 429 with a long wait): no call before `until`."""

    def spent(self, endpoint: str, now: float) -> Spent | None:
        ...

    def used(self, now: float) -> dict[str, int]:
        """Calls counted per endpoint in the last hour (open grants in full)."""


class MemoryBudgetStore:
    """A store in this process's memory: the budget of one process alone."""

    def __init__(self) -> None:
        self._grants: dict[int, tuple[str, float, int]] = {}  # id -> (endpoint, granted at, calls)
        self._spent: dict[str, Spent] = {}
        self._lock = threading.Lock()
        self._next_id = 1

    def _trim(self, now: float) -> None:
        for grant_id in [g for g, (_, at, _) in self._grants.items() if at <= now - HOUR]:
            del self._grants[grant_id]

    def grant(self, endpoint: str, wanted: int, hourly_limit: int, now: float) -> Grant:
        with self._lock:
            self._trim(now)
            mine = [(at, calls) for label, at, calls in self._grants.values() if label == endpoint and calls]
            left = hourly_limit - sum(calls for _, calls in mine)
            grant_id, self._next_id = self._next_id, self._next_id + 1
            calls = max(0, min(wanted, left))
            if calls:
                self._grants[grant_id] = (endpoint, now, calls)
                return Grant(grant_id, calls)
            oldest = min((at for at, _ in mine), default=now)
            return Grant(grant_id, 0, retry_after=max(0.0, oldest + HOUR - now))

    def settle(self, grant_id: int, used: int) -> None:
        with self._lock:
            if grant_id in self._grants:
                endpoint, at, _ = self._grants[grant_id]
                self._grants[grant_id] = (endpoint, at, used)

    def mark_spent(self, endpoint: str, until: float, message: str) -> None:
        with self._lock:
            self._spent[endpoint] = Spent(until, message)

    def spent(self, endpoint: str, now: float) -> Spent | None:
        with self._lock:
            spent = self._spent.get(endpoint)
            return spent if spent is not None and now < spent.until else None

    def used(self, now: float) -> dict[str, int]:
        with self._lock:
            self._trim(now)
            totals: dict[str, int] = {}
            for endpoint, _, calls in self._grants.values():
                totals[endpoint] = totals.get(endpoint, 0) + calls
            return {endpoint: calls for endpoint, calls in sorted(totals.items()) if calls}


@dataclass
class _Lease:
    grant_id: int
    calls: int
    used: int = 0


class RouteBudget:
    """One client's share of the tenant's budget: `take` before every request (retries included)."""

    def __init__(self, hourly_limit: int, clock: Callable[[], float] = time.time,
                 store: BudgetStore | None = None) -> None:
        self.hourly_limit = hourly_limit
        self._clock = clock
        self.store: BudgetStore = store if store is not None else MemoryBudgetStore()
        self._leases: dict[str, _Lease] = {}
        self._next_size: dict[str, int] = {}
        self._sent: dict[str, int] = {}  # this client's calls per endpoint (for `used`)
        # What the store said (or this client learnt) of endpoints Kaseya declared spent, checked at every call;
        # the store is asked again with each new lease, for what another process learnt.
        self._spent: dict[str, Spent] = {}
        self._lock = threading.Lock()

    def take(self, endpoint: Endpoint) -> None:
        label = endpoint.label
        with self._lock:
            now = self._clock()
            lease = self._leases.get(label)
            if lease is None or lease.used >= lease.calls:
                spent = self.store.spent(label, now)
                if spent is not None:
                    self._spent[label] = spent
            spent = self._spent.get(label)
            if spent is not None and now < spent.until:
                raise BudgetExhausted("Kaseya", label, spent.message, status=429, retry_after=spent.until - now)
            if lease is None or lease.used >= lease.calls:
                if lease is not None:
                    self.store.settle(lease.grant_id, lease.used)
                size = self._next_size.get(label, FIRST_LEASE)
                self._next_size[label] = min(size * 2, MAX_LEASE)
                grant = self.store.grant(label, size, self.hourly_limit, now)
                if not grant.calls:
                    self._leases.pop(label, None)
                    wait = grant.retry_after
                    raise BudgetExhausted(
                        "Kaseya", label,
                        f"rate budget exhausted for {label} ({self.hourly_limit} calls/hour for this tenant, across "
                        f"runs and pushes), resumes next hour (in {wait / 60:.0f} min)",
                        retry_after=wait,
                    )
                lease = self._leases[label] = _Lease(grant.grant_id, grant.calls)
            lease.used += 1
            self._sent[label] = self._sent.get(label, 0) + 1

    def spent_by_kaseya(self, endpoint: Endpoint, answer: BudgetExhausted) -> None:
        """Kaseya answered 429 with a wait beyond the policy: no more calls to the endpoint until then, from
        any thread or process of the tenant (requests already in flight may still collect a 429 each)."""
        with self._lock:
            spent = self._spent[endpoint.label] = Spent(self._clock() + (answer.retry_after or 0), answer.message)
            self.store.mark_spent(endpoint.label, spent.until, spent.message)

    def settle(self) -> None:
        """Give back what the open leases did not use (the client is done)."""
        with self._lock:
            for label, lease in list(self._leases.items()):
                self.store.settle(lease.grant_id, lease.used)
                del self._leases[label]

    def used(self) -> dict[str, int]:
        """Each endpoint's calls of the last hour taken by the tenant's clients: this client's calls, and the
        others' calls and open leases (held for them: no one else may spend those either)."""
        with self._lock:
            totals = self.store.used(self._clock())
            for label, lease in self._leases.items():
                totals[label] = totals.get(label, 0) - (lease.calls - lease.used)
            return {label: calls for label, calls in sorted(totals.items()) if calls > 0}

    def sent(self) -> dict[str, int]:
        with self._lock:
            return dict(self._sent)
