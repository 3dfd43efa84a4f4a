"""One Kaseya client shared by threads and by a run's steps: one login, one token renewal however many threads
hold the expired token, concurrent per-product pricing reads that keep what arrived when the budget or the API
stops them. Calls and logins are counted in the sandbox's own request log."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from zk_pipelines.clients.http import ValidationFailed
from zk_pipelines.clients.kaseya import BudgetExhausted, KaseyaClient, RouteBudget
from zk_pipelines.domain.entities import KASEYA_SOURCES
from zk_pipelines.domain.kaseya_endpoints import ENDPOINTS
from zk_pipelines.pull.extract import extract_snapshot, refresh_product_pricing
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import ensure_pull_tables

LOGIN = "/v2/security/authenticate"
REFRESH = "/v2/security/refreshtoken"
ACCOUNT_TYPES = "/v2/system/accounttypes/lookup"
PRICING_ROUTES = ("/v2/inventory/products/{productIndexId}/pricingLevels",
                  "/v2/inventory/products/{productIndexId}/suppliers/lookup",
                  "/v2/inventory/products/{productIndexId}/defaultcost")
THREADS = 12


def routed(sandbox, route: str) -> list[dict]:
    return [e for e in sandbox.state.requests() if (e.get("route") or "").lower() == route.lower()]


def in_threads(count: int, work) -> None:
    """Run `work()` in `count` threads released together; re-raise the first failure."""
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def test_threads_starting_together_share_one_login(kaseya, kaseya_credentials):
    client = KaseyaClient(kaseya_credentials)

    in_threads(THREADS, client.account_types)

    assert len(routed(kaseya, LOGIN)) == 1
    assert [e["status"] for e in routed(kaseya, ACCOUNT_TYPES)] == [200] * THREADS
    usage = client.stats.usage()
    assert (usage.logins, usage.refreshes, usage.data_calls) == (1, 0, THREADS)
    assert client.budget.used()[f"GET {ACCOUNT_TYPES}"] == THREADS


def test_an_expired_token_held_by_every_thread_is_renewed_once(kaseya, kaseya_credentials):
    client = KaseyaClient(kaseya_credentials)
    client.account_types()
    # Every access token expires on the sandbox's clock; ours has not moved, so each thread sends the old
    # token and gets a 401.
    kaseya.state.advance_clock(kaseya.state.knobs.token_lifetime_seconds + 60)
    kaseya.state.clear_requests()

    in_threads(THREADS, lambda: [client.account_types() for _ in range(3)])

    assert len(routed(kaseya, REFRESH)) == 1 and routed(kaseya, LOGIN) == []
    statuses = [e["status"] for e in routed(kaseya, ACCOUNT_TYPES)]
    assert statuses.count(200) == 3 * THREADS
    assert 1 <= statuses.count(401) <= THREADS  # only the first call of a thread can carry the old token
    usage = client.stats.usage()
    assert (usage.logins, usage.refreshes) == (1, 1)
    assert usage.data_calls == len(statuses) + 1  # the call before the expiry


# --- per-product pricing ----------------------------------------------------------------------------------


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "pricing.duckdb"
    with connect(path) as connection:
        ensure_pull_tables(connection)
    return path


def product_ids(kaseya, count: int) -> list[int]:
    return sorted({p["productIndexId"] for p in kaseya.state.records("products")})[:count]


def stored_pricing(database) -> dict[int, tuple]:
    with duckdb.connect(str(database), read_only=True) as connection:
        rows = connection.execute("SELECT product_index_id, pricing_levels, suppliers, default_cost, run_id "
                                  "FROM raw.kaseya_product_pricing").fetchall()
    return {row[0]: row[1:] for row in rows}


def fully_answered(kaseya) -> set[int]:
    """Products whose three pricing calls were answered 200 (by the sandbox's log)."""
    answered: dict[int, int] = {}
    for entry in kaseya.state.requests():
        if entry.get("route") in PRICING_ROUTES and entry["status"] == 200 and not entry.get("fault"):
            index_id = int(entry["path"].split("/")[4])
            answered[index_id] = answered.get(index_id, 0) + 1
    return {index_id for index_id, calls in answered.items() if calls == 3}


def refresh(client, database, ids, concurrency: int):
    return refresh_product_pricing(client, database, ids, calls_per_hour=1000, max_age=timedelta(hours=24),
                                   run_id="run-1", now=datetime.now(UTC), concurrency=concurrency)


def test_pricing_reads_overlap_up_to_the_concurrency(kaseya, kaseya_credentials, database):
    ids = product_ids(kaseya, 8)
    client = KaseyaClient(kaseya_credentials)
    client.user_info()
    held = 0.4
    kaseya.state.set_faults(seed=1, rules=[{"kind": "latency", "route": f"GET {route}", "seconds": held}
                                           for route in PRICING_ROUTES])
    kaseya.state.clear_requests()

    result = refresh(client, database, ids, concurrency=4)

    assert (result.refreshed, result.calls, result.stopped) == (8, 24, None)
    stored = stored_pricing(database)
    assert sorted(stored) == ids and {row[3] for row in stored.values()} == {"run-1"}
    # The sandbox logs a request before holding its answer, so a client waiting for each answer before its
    # next request logs at most one request per thread within any span shorter than the hold.
    logged = sorted(datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for e in kaseya.state.requests()
                    if e.get("route") in PRICING_ROUTES)
    assert len(logged) == 24
    together = max(sum(1 for other in logged if moment <= other < moment + timedelta(seconds=held * 0.9))
                   for moment in logged)
    assert 2 <= together <= 4


def logged_together(kaseya, routes, held: float) -> int:
    """The most requests to `routes` the sandbox logged within any span shorter than `held` (it logs a request
    before holding its answer `held` seconds): how many were in flight at once."""
    logged = sorted(datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for e in kaseya.state.requests()
                    if e.get("route") in routes)
    return max(sum(1 for other in logged if moment <= other < moment + timedelta(seconds=held * 0.9))
               for moment in logged)


def test_a_client_has_at_most_its_requests_in_flight_whichever_threads_send_them(kaseya, kaseya_credentials):
    # A run's Kaseya extractions run side by side through one client, each with its own worker threads: the
    # client, not each step, keeps the requests in flight to its cap.
    client = KaseyaClient(kaseya_credentials, max_in_flight=3)
    client.user_info()
    held = 0.4
    kaseya.state.set_faults(seed=1, rules=[{"kind": "latency", "route": f"GET {ACCOUNT_TYPES}", "seconds": held}])
    kaseya.state.clear_requests()

    in_threads(9, client.account_types)

    assert len(routed(kaseya, ACCOUNT_TYPES)) == 9
    assert 2 <= logged_together(kaseya, (ACCOUNT_TYPES,), held) <= 3


def test_a_request_gives_up_its_place_in_flight_while_it_sleeps_before_a_retry(kaseya, kaseya_credentials):
    # A Retry-After may be two minutes: the other threads' requests must not wait behind a sleeper.
    places_free_while_asleep: list[bool] = []

    def sleep(seconds: float) -> None:
        free = client._in_flight.acquire(blocking=False)
        if free:
            client._in_flight.release()
        places_free_while_asleep.append(free)

    client = KaseyaClient(kaseya_credentials, max_in_flight=1, sleep=sleep)
    client.user_info()
    kaseya.state.set_faults(seed=1, rules=[{"kind": "http_error", "route": f"GET {ACCOUNT_TYPES}", "count": 1,
                                            "statuses": [503]}])

    client.account_types()

    assert places_free_while_asleep == [True]
    assert client._in_flight.acquire(blocking=False)  # and it was taken back: one place, free again


def test_each_step_counts_its_own_calls_while_another_step_uses_the_same_client(kaseya, kaseya_credentials,
                                                                                 database):
    # Two steps at once through the run's one client: the pricing step's worker threads count to it, the
    # other step's calls to the other, and the client's own counters hold both.
    ids = product_ids(kaseya, 6)
    client = KaseyaClient(kaseya_credentials)
    client.user_info()
    kaseya.state.set_faults(seed=1, rules=[{"kind": "latency", "route": f"GET {route}", "seconds": 0.05}
                                           for route in (*PRICING_ROUTES, ACCOUNT_TYPES)])
    before = client.stats.usage()
    tallies = {}

    def pricing_step() -> None:
        with client.step_usage() as tally:
            refresh(client, database, ids, concurrency=3)
        tallies["pricing"] = tally.usage()

    def lookup_step() -> None:
        with client.step_usage() as tally:
            for _ in range(5):
                client.account_types()
        tallies["lookup"] = tally.usage()

    steps = [threading.Thread(target=pricing_step), threading.Thread(target=lookup_step)]
    for step in steps:
        step.start()
    for step in steps:
        step.join()

    assert tallies["pricing"].data_calls == 18
    assert all(label.startswith("GET /v2/inventory/products/{") for label in tallies["pricing"].calls)
    assert tallies["lookup"].calls == {ENDPOINTS["account_types"].label: 5}
    assert client.stats.usage().since(before).data_calls == 23


def test_a_spent_budget_stops_the_refresh_and_keeps_every_product_fully_read(kaseya, kaseya_credentials,
                                                                              database):
    ids = product_ids(kaseya, 10)
    client = KaseyaClient(kaseya_credentials, budget=RouteBudget(5))
    kaseya.state.clear_requests()

    result = refresh(client, database, ids, concurrency=4)

    assert result.stopped and "rate budget exhausted" in result.stopped
    assert result.refreshed == 5
    assert set(stored_pricing(database)) == fully_answered(kaseya)
    assert len(fully_answered(kaseya)) == 5


def test_an_api_error_mid_refresh_is_raised_after_the_products_read_are_stored(kaseya, kaseya_credentials,
                                                                               database):
    ids = product_ids(kaseya, 10)
    client = KaseyaClient(kaseya_credentials)
    kaseya.state.set_faults(seed=1, rules=[{"kind": "success_false", "route": f"GET {PRICING_ROUTES[1]}",
                                            "after": 3, "count": 1}])
    kaseya.state.clear_requests()

    with pytest.raises(ValidationFailed):
        refresh(client, database, ids, concurrency=4)

    stored = set(stored_pricing(database))
    assert stored == fully_answered(kaseya)
    assert 3 <= len(stored) < len(ids)


def test_after_kaseyas_long_429_no_thread_calls_the_spent_endpoint_again(kaseya, kaseya_credentials, database):
    ids = product_ids(kaseya, 12)
    client = KaseyaClient(kaseya_credentials)
    client.user_info()
    kaseya.state.set_knobs(rate_limit=5)  # Kaseya's own hourly limit per endpoint, far below our budget
    kaseya.state.clear_requests()

    result = refresh(client, database, ids, concurrency=4)

    assert result.stopped and result.stopped.startswith(
        f"rate budget exhausted for {ENDPOINTS['product_pricing_levels'].label} (Kaseya answered 429")
    statuses = [e["status"] for e in routed(kaseya, PRICING_ROUTES[0])]
    # Five answered; a 429 for at most each request already in flight when the first 429 came back.
    assert statuses.count(200) == 5 and 1 <= statuses.count(429) <= 4 and len(statuses) <= 9
    assert set(stored_pricing(database)) == fully_answered(kaseya) and len(fully_answered(kaseya)) == 5
    sent = len(kaseya.state.requests())
    with pytest.raises(BudgetExhausted):  # the client remembers Kaseya's answer: no request is sent
        client.product_pricing_levels(ids[-1])
    assert len(kaseya.state.requests()) == sent


@pytest.mark.parametrize("source_name", ["lookups", "products"])
def test_concurrent_snapshot_reads_store_the_same_rows_as_one_at_a_time(kaseya, kaseya_credentials, tmp_path,
                                                                      source_name):
    source = next(s for s in KASEYA_SOURCES if s.name == source_name)
    client = KaseyaClient(kaseya_credentials)
    stored = []
    for concurrency in (1, 8):
        path = tmp_path / f"snapshot-{concurrency}.duckdb"
        with connect(path) as connection:
            ensure_pull_tables(connection)
        extract_snapshot(client, path, source, run_id="run-1", now=datetime.now(UTC), concurrency=concurrency)
        with duckdb.connect(str(path), read_only=True) as connection:
            stored.append(connection.execute(
                f"SELECT kaseya_key, payload, content_hash FROM raw.{source.raw_table} ORDER BY kaseya_key"
            ).fetchall())
    assert stored[0] == stored[1] and len(stored[0]) > 3
