"""What a Kaseya client spent: requests per endpoint (retries included), logins and token refreshes, for the
run's metadata and the tests; and one step's share of a client the run's steps share (`step_tally`). The
hourly budget those requests are charged to is `kaseya_budget.py`'s."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from zk_pipelines.clients.http import CallCounter
from zk_pipelines.domain.kaseya_endpoints import ENDPOINTS

AUTH_ENDPOINTS = frozenset({ENDPOINTS["authenticate"].label, ENDPOINTS["refresh_token"].label})


@dataclass(frozen=True)
class KaseyaUsage:
    """A reading of a client's counters; `since` gives what was spent between two readings (one step's share
    of a client the run's steps share)."""

    calls: Mapping[str, int]  # requests sent per endpoint label, retries included, auth routes included
    retries: int = 0
    logins: int = 0
    refreshes: int = 0

    @property
    def data_calls(self) -> int:
        """Requests other than login and token refresh."""
        return sum(n for label, n in self.calls.items() if label not in AUTH_ENDPOINTS)

    def since(self, earlier: KaseyaUsage) -> KaseyaUsage:
        calls = {label: n - earlier.calls.get(label, 0) for label, n in self.calls.items()}
        return KaseyaUsage(calls={label: n for label, n in calls.items() if n},
                           retries=self.retries - earlier.retries, logins=self.logins - earlier.logins,
                           refreshes=self.refreshes - earlier.refreshes)


@dataclass
class KaseyaStats:
    """Requests sent per endpoint (retries included) and the retry counter, for metadata and tests. Several
    threads share one client, so every change goes through `_lock`. What a client records also goes to the
    tally of the step running in the recording context, if any (`KaseyaClient.step_usage`)."""

    counter: CallCounter = field(default_factory=CallCounter)
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    logins: int = 0
    refreshes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def _and_step_tally(self) -> tuple[KaseyaStats, ...]:
        tally = _STEP_TALLY.get()
        return (self,) if tally is None or tally is self else (self, tally)

    def record_request(self, label: str, sent: CallCounter) -> None:
        for stats in self._and_step_tally():
            with stats._lock:
                stats.calls[label] += sent.sent
                stats.counter.sent += sent.sent
                stats.counter.retries += sent.retries
                stats.counter.waited_seconds += sent.waited_seconds

    def record_login(self) -> None:
        for stats in self._and_step_tally():
            with stats._lock:
                stats.logins += 1

    def record_refresh(self) -> None:
        for stats in self._and_step_tally():
            with stats._lock:
                stats.refreshes += 1

    def usage(self) -> KaseyaUsage:
        with self._lock:
            return KaseyaUsage(calls=dict(self.calls), retries=self.counter.retries, logins=self.logins,
                               refreshes=self.refreshes)


# The tally of the step that runs in this context: its thread, and the worker threads it starts with a copy of
# its context (`contextvars.copy_context().run`). The steps of a run share one client and may run side by
# side, so a reading of the client's counters before and after a step would count its neighbours' calls too.
_STEP_TALLY: ContextVar[KaseyaStats | None] = ContextVar("kaseya_step_tally", default=None)


@contextmanager
def step_tally() -> Iterator[KaseyaStats]:
    """Counts apart what is recorded within the block by this thread and by the worker threads it starts with a
    copy of its context."""
    tally = KaseyaStats()
    token = _STEP_TALLY.set(tally)
    try:
        yield tally
    finally:
        _STEP_TALLY.reset(token)
