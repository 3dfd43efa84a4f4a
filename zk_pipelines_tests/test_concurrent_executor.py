"""The hourly job's executor (`concurrent_in_process`): independent steps run side by side in the run's
process, steps of one pool one at a time, resources made once per run, failures and retries as Dagster's
own executors handle them."""

from __future__ import annotations

import os
import signal
import threading
import time

import dagster as dg
import pytest

from zk_pipelines.defs.executor import concurrent_in_process_executor, execute_in_process

BARRIER_SECONDS = 20.0


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


def test_steps_of_one_pool_never_overlap_while_other_pools_run_beside_them() -> None:
    spans = _Spans()

    def in_pool(name: str, pool: str | None, seconds: float):
        @dg.asset(name=name, pool=pool)
        def body() -> None:
            spans.record(name, seconds)
        return body

    assets = [in_pool("accounts", "kaseya_api", 0.4), in_pool("contacts", "kaseya_api", 0.4),
              in_pool("products", "kaseya_api", 0.4), in_pool("settings", "zomentum_api", 1.0),
              in_pool("free", None, 1.0)]
    with dg.instance_for_test() as instance:
        result = execute_in_process(_job(assets), instance=instance, raise_on_error=False)
    assert result.success
    kaseya = ["accounts", "contacts", "products"]
    assert not any(spans.overlap(a, b) for a in kaseya for b in kaseya if a < b), spans.spans
    assert any(spans.overlap(name, "settings") for name in kaseya), spans.spans
    assert spans.overlap("settings", "free")


def test_max_concurrent_one_runs_one_step_at_a_time() -> None:
    spans = _Spans()

    def body_for(name: str, pool: str):
        @dg.asset(name=name, pool=pool)
        def body() -> None:
            spans.record(name, 0.3)
        return body

    names = {"a": "kaseya_api", "b": "zomentum_api", "c": "duckdb"}
    with dg.instance_for_test() as instance:
        result = execute_in_process(_job([body_for(n, p) for n, p in names.items()], max_concurrent=1),
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


def test_a_retried_step_runs_again_and_its_downstream_after_it() -> None:
    attempts: list[int] = []

    @dg.asset(pool="kaseya_api", retry_policy=dg.RetryPolicy(max_retries=2, delay=0.2))
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

    def interrupt() -> None:
        started.wait(BARRIER_SECONDS)
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt)
    with dg.instance_for_test() as instance:
        sender.start()
        result = execute_in_process(_job([first, second]), instance=instance, raise_on_error=False)
        sender.join()
        run = instance.get_run_by_id(result.run_id)
    assert not result.success
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert {e.asset_key.path[-1] for e in result.get_asset_materialization_events()} == {"first"}
    assert "second" not in {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
