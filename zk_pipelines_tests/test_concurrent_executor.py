"""The hourly job's executor (`concurrent_in_process`): independent steps run side by side in the run's
process, steps of one pool one at a time except those of a shared pool (kaseya_api), resources made once per
run, failures and retries as Dagster's own executors handle them."""

from __future__ import annotations

import os
import signal
import threading
import time

import dagster as dg
import pytest
from pydantic import PrivateAttr

from zk_pipelines.defs.executor import concurrent_in_process_executor, execute_in_process

BARRIER_SECONDS = 20.0
POOLS_OF_LIMIT_1 = {"concurrency": {"pools": {"default_limit": 1}}}  # as the project's dagster.yaml


def _job(assets: list, *, max_concurrent: int | None = None, resources: dict | None = None) -> dg.JobDefinition:
    executor = concurrent_in_process_executor
    if max_concurrent is not None:
        executor = concurrent_in_process_executor.configured({"max_concurrent": max_concurrent})
    job = dg.define_asset_job("job", selection=dg.AssetSelection.all(), executor_def=executor)
    return dg.Definitions(assets=assets, jobs=[job], resources=resources or {}).resolve_job_def("job")


class _Spans:
    """When each asset body ran (start, end), from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: dict[str, tuple[float, float]] = {}

    def record(self, name: str, seconds: float) -> None:
        start = time.monotonic()
        time.sleep(seconds)
        with self.lock:
            self.spans[name] = (start, time.monotonic())

    def asset(self, name: str, pool: str | None, seconds: float) -> dg.AssetsDefinition:
        """An asset in `pool` whose body sleeps `seconds`, recorded under `name`."""
        @dg.asset(name=name, pool=pool)
        def body() -> None:
            self.record(name, seconds)
        return body

    def overlap(self, first: str, second: str) -> bool:
        (a_start, a_end), (b_start, b_end) = self.spans[first], self.spans[second]
        return a_start < b_end and b_start < a_end


def _waiting_for_each_other(seconds: float) -> list:
    """Two assets in different pools, each waiting (up to `seconds`) until the other has started."""
    barrier = threading.Barrier(2, timeout=seconds)

    @dg.asset(pool="kaseya_api")
    def extract() -> None:
        barrier.wait()

    @dg.asset(pool="zomentum_api")
    def load() -> None:
        barrier.wait()

    return [extract, load]


def test_steps_in_different_pools_run_at_the_same_time() -> None:
    # Each body waits until the other has started: one step at a time would break the barrier.
    with dg.instance_for_test() as instance:
        result = execute_in_process(_job(_waiting_for_each_other(BARRIER_SECONDS)), instance=instance,
                                    raise_on_error=False)
    assert result.success, [e.event_specific_data.error.message for e in result.get_step_failure_events()]


def test_the_in_process_executor_would_not_have_run_them_together() -> None:
    # The same two bodies under Dagster's execute_in_process (one step at a time): the barrier breaks. This is
    # what makes the test above able to fail.
    result = _job(_waiting_for_each_other(1.0)).execute_in_process(raise_on_error=False)
    assert not result.success


def test_steps_of_a_pool_not_shared_never_overlap_while_other_pools_run_beside_them() -> None:
    spans = _Spans()
    assets = [spans.asset("clients", "zomentum_api", 0.4), spans.asset("items", "zomentum_api", 0.4),
              spans.asset("settings", "zomentum_api", 0.4), spans.asset("staging", "duckdb", 1.0),
              spans.asset("free", None, 1.0)]
    with dg.instance_for_test() as instance:
        result = execute_in_process(_job(assets), instance=instance, raise_on_error=False)
    assert result.success
    zomentum = ["clients", "items", "settings"]
    assert not any(spans.overlap(a, b) for a in zomentum for b in zomentum if a < b), spans.spans
    assert any(spans.overlap(name, "staging") for name in zomentum), spans.spans
    assert spans.overlap("staging", "free")


def _kaseya_extractions_waiting_for_each_other(seconds: float) -> list:
    """Three assets of the kaseya_api pool, each waiting (up to `seconds`) until all three have started."""
    barrier = threading.Barrier(3, timeout=seconds)

    def extraction(name: str) -> dg.AssetsDefinition:
        @dg.asset(name=name, pool="kaseya_api")
        def body() -> None:
            barrier.wait()
        return body

    return [extraction("accounts"), extraction("contacts"), extraction("products")]


def test_the_steps_of_a_shared_pool_run_side_by_side() -> None:
    # kaseya_api is shared by default: the run's extractions share its one client (budget, token, requests in
    # flight). Each body waits until all three have started.
    with dg.instance_for_test(overrides=POOLS_OF_LIMIT_1) as instance:
        result = execute_in_process(_job(_kaseya_extractions_waiting_for_each_other(BARRIER_SECONDS)),
                                    instance=instance, raise_on_error=False)
        claimed = instance.event_log_storage.get_concurrency_info("kaseya_api").claimed_slots
    assert result.success, [e.event_specific_data.error.message for e in result.get_step_failure_events()]
    assert not [e.message for e in result.all_events if "blocked by limit" in (e.message or "")]
    assert claimed == []


def test_a_shared_pool_leaves_a_place_for_a_step_of_another_pool() -> None:
    spans = _Spans()
    kaseya = [f"k{n}" for n in range(5)]
    assets = [spans.asset(name, "kaseya_api", 0.5) for name in kaseya] + [spans.asset("staging", "duckdb", 0.5)]
    with dg.instance_for_test() as instance:
        result = execute_in_process(_job(assets, max_concurrent=4), instance=instance, raise_on_error=False)
    assert result.success
    most_at_once = max(sum(1 for other in kaseya if spans.overlap(name, other)) for name in kaseya)  # itself too
    assert most_at_once == 3, spans.spans
    assert any(spans.overlap("staging", name) for name in kaseya), spans.spans


OTHER_RUN = "0123456789abcdef0123456789abcdef"


def test_no_step_joins_a_shared_pools_slot_while_another_run_waits_for_it() -> None:
    # Another run (a push) asks for the kaseya_api slot this run holds: the run's next Kaseya step does not
    # join the slot but waits for the instance's queue, so the slot goes back as soon as the current one ends.
    spans = _Spans()
    asked = threading.Event()

    @dg.asset(pool="kaseya_api", op_tags={"dagster/priority": "1"})
    def first(context) -> None:
        storage = context.instance.event_log_storage
        assert not storage.claim_concurrency_slot("kaseya_api", OTHER_RUN, "push").is_claimed
        asked.set()
        spans.record("first", 1.0)

        def other_run_gives_up() -> None:  # it never ran: its place in the queue goes, so the test can end
            time.sleep(0.5)
            storage.free_concurrency_slot_for_step(OTHER_RUN, "push")
        threading.Thread(target=other_run_gives_up).start()

    @dg.asset
    def gate() -> None:
        asked.wait(BARRIER_SECONDS)

    @dg.asset(pool="kaseya_api", deps=[gate])
    def second() -> None:
        spans.record("second", 0.2)

    with dg.instance_for_test(overrides=POOLS_OF_LIMIT_1) as instance:
        result = execute_in_process(_job([first, gate, second]), instance=instance, raise_on_error=False)
    assert result.success, [e.event_specific_data.error.message for e in result.get_step_failure_events()]
    assert not spans.overlap("first", "second"), spans.spans


def test_with_no_shared_pool_the_same_steps_run_one_at_a_time() -> None:
    executor = concurrent_in_process_executor.configured({"shared_pools": []})
    job = dg.define_asset_job("job", selection=dg.AssetSelection.all(), executor_def=executor)
    assets = _kaseya_extractions_waiting_for_each_other(1.0)
    result = dg.Definitions(assets=assets, jobs=[job]).resolve_job_def("job")
    with dg.instance_for_test() as instance:
        outcome = execute_in_process(result, instance=instance, raise_on_error=False)
    assert not outcome.success  # the barrier broke: they did not run together


def test_a_shared_pools_slot_is_held_once_by_the_run_until_the_last_of_its_steps_ends() -> None:
    # `first` (higher priority) claims the instance's one kaseya_api slot; `second` runs on it. When `first`
    # ends, the slot stays claimed while `second` runs (another run's Kaseya step must still wait), and it is
    # given back when `second` ends.
    seen: list = []

    @dg.asset(pool="kaseya_api", op_tags={"dagster/priority": "1"})
    def first() -> None:
        time.sleep(0.2)

    @dg.asset(pool="kaseya_api")
    def second(context) -> None:
        deadline = time.monotonic() + BARRIER_SECONDS
        while time.monotonic() < deadline and not context.instance.all_logs(
                context.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS):
            time.sleep(0.05)
        time.sleep(0.5)  # the orchestrating thread handles `first`'s outcome (and would free its slot)
        storage = context.instance.event_log_storage
        seen.extend((slot.run_id, slot.step_key) for slot in storage.get_concurrency_info("kaseya_api").claimed_slots)

    with dg.instance_for_test(overrides=POOLS_OF_LIMIT_1) as instance:
        result = execute_in_process(_job([first, second]), instance=instance, raise_on_error=False)
        claimed = instance.event_log_storage.get_concurrency_info("kaseya_api").claimed_slots
    assert result.success, [e.event_specific_data.error.message for e in result.get_step_failure_events()]
    assert seen == [(result.run_id, "first")]
    assert claimed == []


def test_max_concurrent_one_runs_one_step_at_a_time() -> None:
    spans = _Spans()
    names = {"a": "kaseya_api", "b": "zomentum_api", "c": "duckdb"}
    with dg.instance_for_test() as instance:
        result = execute_in_process(_job([spans.asset(n, p, 0.3) for n, p in names.items()], max_concurrent=1),
                                    instance=instance, raise_on_error=False)
    assert result.success
    assert not any(spans.overlap(a, b) for a in names for b in names if a < b), spans.spans


def test_a_failed_step_stops_its_downstream_and_the_other_branch_completes() -> None:
    @dg.asset(pool="kaseya_api")
    def raw_accounts() -> None:
        raise ValueError("Kaseya said no")

    @dg.asset(deps=[raw_accounts], pool="duckdb")
    def staged_accounts() -> None:
        return None

    @dg.asset(pool="zomentum_api")
    def items() -> None:
        time.sleep(0.2)

    with dg.instance_for_test() as instance:
        result = execute_in_process(_job([raw_accounts, staged_accounts, items]), instance=instance,
                                    raise_on_error=False)
        materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert not result.success
    assert [e.step_key for e in result.get_step_failure_events()] == ["raw_accounts"]
    assert "Kaseya said no" in result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert materialized == {"items"}
    assert "staged_accounts" not in {e.step_key for e in result.all_events if e.is_step_success}


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_a_retried_step_runs_again_and_its_downstream_after_it(delay: float) -> None:
    # With no delay the retry is due at once, possibly before the failed attempt's thread has ended.
    attempts: list[int] = []

    @dg.asset(pool="kaseya_api", retry_policy=dg.RetryPolicy(max_retries=2, delay=delay))
    def flaky(context) -> None:
        attempts.append(context.retry_number)
        if context.retry_number == 0:
            raise ConnectionError("reset")

    @dg.asset(deps=[flaky], pool="duckdb")
    def after() -> None:
        return None

    with dg.instance_for_test() as instance:
        result = execute_in_process(_job([flaky, after]), instance=instance, raise_on_error=False)
    assert result.success
    assert attempts == [0, 1]
    assert not [e for e in result.all_events if "without success or failure" in (e.message or "")]
    assert {e.asset_key.path[-1] for e in result.get_asset_materialization_events()} == {"flaky", "after"}


class _Counted(dg.ConfigurableResource):
    """Counts how often Dagster makes it (per run: once, whichever step asks first)."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        _Counted.made.append(threading.get_ident())


_Counted.made = []


def test_resources_are_made_once_per_run_and_shared_by_steps_running_at_once() -> None:
    _Counted.made.clear()
    barrier = threading.Barrier(3, timeout=BARRIER_SECONDS)
    seen: list[int] = []

    def step(name: str, pool: str):
        @dg.asset(name=name, pool=pool)
        def body(counted: _Counted) -> None:
            seen.append(id(counted))
            barrier.wait()
        return body

    assets = [step("a", "kaseya_api"), step("b", "zomentum_api"), step("c", "duckdb")]
    with dg.instance_for_test() as instance:
        result = execute_in_process(_job(assets, resources={"counted": _Counted()}), instance=instance,
                                    raise_on_error=False)
    assert result.success
    assert len(_Counted.made) == 1
    assert len(set(seen)) == 1 and len(seen) == 3


def test_max_concurrent_must_be_positive() -> None:
    @dg.asset
    def anything() -> None:
        return None

    with pytest.raises(Exception, match="max_concurrent must be at least 1"):
        execute_in_process(_job([anything], max_concurrent=0))


def _sigint_once_started(started: threading.Event) -> threading.Thread:
    """A thread (to start) that sends this process SIGINT, what terminating a run sends, once `started` is set."""
    def interrupt() -> None:
        started.wait(BARRIER_SECONDS)
        os.kill(os.getpid(), signal.SIGINT)
    return threading.Thread(target=interrupt)


def test_an_interrupted_run_starts_no_further_step_and_ends_when_the_running_ones_end() -> None:
    # SIGINT (what terminating a run sends) arrives while the first step runs in its thread: that step ends
    # on its own, the step after it never starts, and the run ends interrupted.
    started = threading.Event()

    @dg.asset(pool="kaseya_api")
    def first() -> None:
        started.set()
        time.sleep(1.0)

    @dg.asset(deps=[first], pool="duckdb")
    def second() -> None:
        return None

    sender = _sigint_once_started(started)
    with dg.instance_for_test() as instance:
        sender.start()
        result = execute_in_process(_job([first, second]), instance=instance, raise_on_error=False)
        sender.join()
        run = instance.get_run_by_id(result.run_id)
    assert not result.success
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert {e.asset_key.path[-1] for e in result.get_asset_materialization_events()} == {"first"}
    assert "second" not in {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}


def test_with_the_instance_pool_limits_a_pools_next_step_waits_for_no_claim_of_its_own_run() -> None:
    # The instance limits each pool to 1, as dagster.yaml does. Steps of one pool (not shared) in the run
    # follow each other without asking the instance for a slot their own run holds (a refused claim is asked
    # again only after a second or more, and Dagster logs the step as blocked).
    spans = _Spans()
    assets = [spans.asset("clients", "zomentum_api", 0.2), spans.asset("items", "zomentum_api", 0.2),
              spans.asset("accounts", "kaseya_api", 0.2)]
    with dg.instance_for_test(overrides=POOLS_OF_LIMIT_1) as instance:
        result = execute_in_process(_job(assets), instance=instance, raise_on_error=False)
        claimed = {pool: instance.event_log_storage.get_concurrency_info(pool).claimed_slots
                   for pool in ("kaseya_api", "zomentum_api")}
    assert result.success
    assert not [e.message for e in result.all_events if "blocked by limit" in (e.message or "")]
    assert not spans.overlap("clients", "items")
    assert claimed == {"kaseya_api": [], "zomentum_api": []}


def test_a_run_that_stops_early_gives_back_the_pool_slots_of_the_steps_still_running() -> None:
    # raise_on_error: the failed step's exception ends the run while another pool's step is still running.
    # That step's slot is given back (else the pool's next run would wait for it).
    other_started = threading.Event()

    @dg.asset(pool="kaseya_api")
    def failing() -> None:
        other_started.wait(BARRIER_SECONDS)
        raise ValueError("Kaseya said no")

    @dg.asset(pool="zomentum_api")
    def slow() -> None:
        other_started.set()
        time.sleep(0.5)

    with dg.instance_for_test(overrides=POOLS_OF_LIMIT_1) as instance:
        with pytest.raises(Exception, match="raw|Kaseya said no|failing"):
            execute_in_process(_job([failing, slow]), instance=instance, raise_on_error=True)
        claimed = {pool: instance.event_log_storage.get_concurrency_info(pool).claimed_slots
                   for pool in ("kaseya_api", "zomentum_api")}
    assert claimed == {"kaseya_api": [], "zomentum_api": []}


class _Stoppable(dg.ConfigurableResource):
    """A resource that learns of the run's interrupt, as TenantResource does (its clients then stop)."""

    _stop: threading.Event = PrivateAttr(default_factory=threading.Event)

    def interrupt_run(self) -> None:
        self._stop.set()

    def wait(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise dg.DagsterExecutionInterruptedError("stopped")


def test_an_interrupt_reaches_a_running_step_through_the_runs_resources() -> None:
    started = threading.Event()

    @dg.asset(pool="zomentum_api")
    def long_load(stoppable: _Stoppable) -> None:
        started.set()
        stoppable.wait(BARRIER_SECONDS)  # a load that would go on for 20 s

    @dg.asset(deps=[long_load], pool="duckdb")
    def audit() -> None:
        return None

    sender = _sigint_once_started(started)
    began = time.monotonic()
    with dg.instance_for_test() as instance:
        sender.start()
        result = execute_in_process(_job([long_load, audit], resources={"stoppable": _Stoppable()}),
                                    instance=instance, raise_on_error=False)
        sender.join()
    assert time.monotonic() - began < BARRIER_SECONDS / 2
    assert not result.success
    assert [e.step_key for e in result.get_step_failure_events()] == ["long_load"]
    assert "audit" not in {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
