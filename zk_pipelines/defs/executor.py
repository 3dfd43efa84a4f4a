"""The hourly job's executor: every step in the run's one process, independent steps side by side.

Dagster's in-process executor runs one step at a time, so a run waits for each step's API round trips in
turn (a small tenant's initial sync: ~65 rounds one after another). Its multiprocess executor runs steps
side by side but starts a process, imports the code and logs in to both APIs once per step. This executor
is the in-process one with a thread per running step: one process, the resources initialised once (one
Kaseya login and one Zomentum token per run, as before), and a step that waits for an API lets another
step work (a Kaseya extraction beside a staging step beside a Zomentum load).

Within a run, the steps of one concurrency pool hold the instance's slot of that pool together or one at a
time. The steps of a *shared* pool (`shared_pools`, default `kaseya_api`) run side by side, up to
`max_concurrent` - 1 of them (a place is left for a step of another pool): the Kaseya extractions share the
run's one client, and so its per-endpoint budget, its token and its cap on requests in flight, so the
pool's slot stands for the run, not for one step. The first of them claims the slot and the last to end
gives it back; while another run waits for the pool, no further step joins them, so the slot goes back to
the instance's queue. The other pools' steps (`zomentum_api`, whose loads follow one another by their
dependencies anyway, and `duckdb`, whose steps are CPU work in this process and gained nothing side by side
when measured) run one at a time, whatever the instance's limits. Across runs the instance's pool limits
apply as with any executor. The default limit of steps at once (`max_concurrent`, 4) leaves room for three
Kaseya extractions beside a staging step.

Built on Dagster's own plan-execution pieces (the same ones the in-process executor uses), which Dagster
does not publish as API: `constraints.txt` pins the Dagster version this is written against.
"""

from __future__ import annotations

import itertools
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.compute_logs import create_compute_log_file_key
from dagster._core.execution.context.system import (
    PlanExecutionContext,
    PlanOrchestrationContext,
    StepExecutionContext,
)
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.execute_in_process import (
    core_execute_in_process,
    merge_run_tags,
    type_check_and_normalize_args,
)
from dagster._core.execution.plan.execute_plan import (
    _handle_compute_log_setup_error,
    _handle_compute_log_teardown_error,
    _trigger_hook,
    dagster_event_sequence_for_step,
)
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.base import Executor
from dagster._core.storage.dagster_run import DagsterRun
from dagster._utils.interrupts import check_captured_interrupt, pop_captured_interrupt

DEFAULT_MAX_CONCURRENT = 4
DEFAULT_SHARED_POOLS = ("kaseya_api",)
IDLE_WAKE_SECONDS = 0.5
IDLE_POLL_SECONDS = 0.05


@dataclass
class _RunningStep:
    step_context: StepExecutionContext
    thread: threading.Thread
    events: list[DagsterEvent] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.step_context.step.key


_FINISHED = object()


class _RunPools(InstanceConcurrencyContext):
    """The instance's pool slots (Dagster's own claims, across runs) and, within this run, who holds each
    pool: one step at a time, or, for a shared pool, up to `most_sharing` of its steps on the one slot the
    first of them claimed (kept until the last of them ends; no step joins them while another run waits for
    the pool, so the slot goes back to the instance's queue). While a step of this run waits for a pool's
    slot, the pool's other steps are not offered to the instance (a refused claim is asked again only after
    a second or more, and each would queue apart)."""

    def __init__(self, instance: dg.DagsterInstance, dagster_run: DagsterRun, shared_pools: frozenset[str],
                 most_sharing: int = 1) -> None:
        super().__init__(instance, dagster_run)
        self._shared = shared_pools
        self._most_sharing = most_sharing
        self._holders: dict[str, set[str]] = {}  # pool -> the steps of this run running in it
        self._claimant: dict[str, str] = {}  # pool -> the step whose claim holds the instance's slot
        self._asking: dict[str, str] = {}  # pool -> the step of this run waiting for the instance's slot

    def claim(self, concurrency_key: str, step_key: str, step_priority: int = 0) -> bool:
        holders = self._holders.get(concurrency_key)
        if holders and step_key not in holders:
            if (concurrency_key not in self._shared or len(holders) >= self._most_sharing
                    or self._other_runs_wait_for(concurrency_key)):
                return False
            holders.add(step_key)  # on the slot the run holds
            return True
        if self._asking.setdefault(concurrency_key, step_key) != step_key:
            return False
        if not super().claim(concurrency_key, step_key, step_priority):
            return False
        del self._asking[concurrency_key]
        self._holders.setdefault(concurrency_key, set()).add(step_key)
        self._claimant[concurrency_key] = step_key
        return True

    def _other_runs_wait_for(self, pool: str) -> bool:
        storage = self._instance.event_log_storage
        if not storage.supports_global_concurrency_limits:
            return False
        return bool(storage.get_concurrency_info(pool).pending_run_ids - {self._run_id})

    def free_step(self, step_key: str) -> None:
        for pool, holders in list(self._holders.items()):
            if step_key in holders:
                holders.discard(step_key)
                if holders:
                    return  # the slot stays with the pool's steps still running
                del self._holders[pool]
                super().free_step(self._claimant.pop(pool))
        if step_key not in self._claimant.values():
            super().free_step(step_key)


def _run_step(ticket: int, step_context: StepExecutionContext, previous_attempt: threading.Thread | None,
              outbox: queue.Queue) -> None:
    """A step's thread: its events go to the orchestrating thread, in order, then `_FINISHED` (or the
    exception Dagster's own handling let through, which ends the run as it would in process). A retry starts
    once the thread of the attempt before it has ended."""
    try:
        if previous_attempt is not None:
            previous_attempt.join()
        for event in dagster_event_sequence_for_step(step_context):
            outbox.put((ticket, event))
    except BaseException:  # noqa: BLE001 - handed to the orchestrating thread, which raises it
        outbox.put((ticket, sys.exc_info()[1]))
    finally:
        outbox.put((ticket, _FINISHED))


def _tell_resources_of_interrupt(job_context: PlanExecutionContext) -> None:
    """Call `interrupt_run()` on each of the run's resources that has one (`TenantResource`: its API clients
    then raise Dagster's interrupt at their next request, in whichever step's thread makes it)."""
    for resource in job_context.scoped_resources_builder.resource_instance_dict.values():
        interrupt_run = getattr(resource, "interrupt_run", None)
        if callable(interrupt_run):
            interrupt_run()


def concurrent_plan_iterator(
    job_context: PlanExecutionContext, execution_plan: ExecutionPlan, max_concurrent: int,
    shared_pools: frozenset[str] = frozenset(),
) -> Iterator[DagsterEvent]:
    """Dagster's `inner_plan_execution_iterator` (the in-process executor's loop) with each step in a thread
    of its own: the steps whose inputs are ready start (up to `max_concurrent`), and their events are
    handled here, in this thread, as they come."""
    compute_log_manager = job_context.instance.compute_log_manager
    step_keys = [step.key for step in execution_plan.get_steps_to_execute_in_topo_order()]
    outbox: queue.Queue = queue.Queue()
    running: dict[int, _RunningStep] = {}  # by ticket: a step's retry may start before its last thread ends
    tickets = itertools.count()
    # A shared pool's steps leave at least one place to the other pools' steps (a staging step beside them).
    most_sharing = max(1, max_concurrent - 1)
    with _RunPools(job_context.instance, job_context.dagster_run, shared_pools, most_sharing
                   ) as instance_concurrency, \
            execution_plan.start(retry_mode=job_context.retry_mode, max_concurrent=max_concurrent,
                                 instance_concurrency_context=instance_concurrency,
                                 step_dependency_config=job_context.step_dependency_config) as active_execution, \
            ExitStack() as capture_stack:
        file_key = create_compute_log_file_key()
        log_key = compute_log_manager.build_log_key_for_run(job_context.run_id, file_key)
        try:
            log_context = capture_stack.enter_context(compute_log_manager.capture_logs(log_key))
            yield DagsterEvent.capture_logs(job_context, step_keys, log_key, log_context)
        except Exception:
            yield from _handle_compute_log_setup_error(job_context, sys.exc_info())

        interrupted = False
        try:
            while not active_execution.is_complete:
                # A terminated run (SIGTERM/SIGINT, which Dagster captures in this thread): no step starts
                # after it, the resources are told (a step's thread cannot be interrupted from here as the
                # in-process executor interrupts its one step: the run's API clients stop it at its next
                # request), and the run ends as interrupted once the running steps have ended.
                if not interrupted and check_captured_interrupt():
                    interrupted = True
                    _tell_resources_of_interrupt(job_context)
                if interrupted and not running:
                    pop_captured_interrupt()
                    raise dg.DagsterExecutionInterruptedError("the run was interrupted; no further step started")
                for step in [] if interrupted else active_execution.get_steps_to_execute():  # max_concurrent
                    step_context = job_context.for_step(step, active_execution.get_known_state())
                    previous = next((r.thread for r in running.values() if r.key == step.key), None)
                    ticket = next(tickets)
                    thread = threading.Thread(target=_run_step, name=f"step {step.key}", daemon=True,
                                              args=(ticket, step_context, previous, outbox))
                    running[ticket] = _RunningStep(step_context, thread)
                    thread.start()

                yield from active_execution.concurrency_event_iterator(job_context)

                # Until a running step has news, or a retry's wait or another run's pool slot may be over.
                # sleep_interval is 0 or less when neither is pending (or one is due now): then a short wait
                # when nothing runs, and a bounded one when steps run (their news ends it at once).
                interval = active_execution.sleep_interval()
                if not running:
                    time.sleep(interval if interval > 0 else IDLE_POLL_SECONDS)
                    continue
                try:
                    ticket, item = outbox.get(timeout=interval if interval > 0 else IDLE_WAKE_SECONDS)
                except queue.Empty:
                    continue
                current = running[ticket]
                if item is _FINISHED:
                    del running[ticket]
                    if not any(other.key == current.key for other in running.values()):  # no retry under way
                        instance_concurrency.free_step(current.key)  # already freed unless it had no outcome
                        active_execution.verify_complete(job_context, current.key)
                    for event in active_execution.plan_events_iterator(job_context):
                        current.events.append(event)
                        yield event
                    yield from _trigger_hook(current.step_context, current.events)
                elif isinstance(item, BaseException):
                    raise item
                else:
                    current.events.append(item)
                    yield item
                    active_execution.handle_event(item)
        finally:
            # On an error or an interrupt no new step starts; the steps already running end on their own
            # (their events still reach the event log), and their pool slots are given back to the instance
            # here, since their outcomes are no longer handled (a slot kept would hold up the pool's next run).
            for current in list(running.values()):
                current.thread.join()
                instance_concurrency.free_step(current.key)

        try:
            capture_stack.close()
        except Exception:
            yield from _handle_compute_log_teardown_error(job_context, sys.exc_info())


class ConcurrentInProcessExecutor(Executor):
    def __init__(self, retries: RetryMode, max_concurrent: int, shared_pools: frozenset[str] = frozenset()
                 ) -> None:
        self._retries = retries
        self.max_concurrent = max_concurrent
        self.shared_pools = shared_pools

    @property
    def retries(self) -> RetryMode:
        return self._retries

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
                ) -> Iterator[DagsterEvent]:
        step_keys = execution_plan.step_keys_to_execute
        yield DagsterEvent.engine_event(
            plan_context, f"Executing steps in process (pid: {os.getpid()}), up to {self.max_concurrent} at once",
            event_specific_data=EngineEventData.in_process(os.getpid(), step_keys),
        )
        yield from iter(ExecuteRunWithPlanIterable(
            execution_plan=plan_context.execution_plan,
            iterator=lambda job_context, execution_plan: concurrent_plan_iterator(
                job_context, execution_plan, self.max_concurrent, self.shared_pools),
            execution_context_manager=PlanExecutionContextManager(
                job=plan_context.job, retry_mode=plan_context.retry_mode,
                execution_plan=plan_context.execution_plan, run_config=plan_context.run_config,
                dagster_run=plan_context.dagster_run, instance=plan_context.instance,
                raise_on_error=plan_context.raise_on_error, output_capture=plan_context.output_capture,
            ),
        ))
        yield DagsterEvent.engine_event(
            plan_context, f"Finished steps in process (pid: {os.getpid()})",
            event_specific_data=EngineEventData.in_process(os.getpid(), step_keys),
        )


@dg.executor(
    name="concurrent_in_process",
    config_schema={
        "retries": get_retries_config(),
        "max_concurrent": dg.Field(int, default_value=DEFAULT_MAX_CONCURRENT, is_required=False,
                                   description="Steps running at once in the run's process."),
        "shared_pools": dg.Field([str], default_value=list(DEFAULT_SHARED_POOLS), is_required=False,
                                 description="Pools whose steps in one run run side by side on the run's one slot "
                                             "of the pool; the other pools' steps run one at a time."),
    },
)
def concurrent_in_process_executor(init_context: dg.InitExecutorContext) -> ConcurrentInProcessExecutor:
    """All steps in one process, independent steps side by side (one thread each); within the run, one step
    per pool at a time except for the shared pools."""
    config = init_context.executor_config
    max_concurrent = int(config["max_concurrent"])
    if max_concurrent < 1:
        raise ValueError(f"concurrent_in_process executor: max_concurrent must be at least 1, not {max_concurrent}")
    return ConcurrentInProcessExecutor(retries=RetryMode.from_config(config["retries"]),
                                       max_concurrent=max_concurrent, shared_pools=frozenset(config["shared_pools"]))


def execute_in_process(job: dg.JobDefinition, *, instance: dg.DagsterInstance | None = None,
                       partition_key: str | None = None, tags: Mapping[str, str] | None = None,
                       resources: Mapping[str, object] | None = None, run_config: Mapping[str, Any] | None = None,
                       raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """`job.execute_in_process(...)` with the job's own executor: Dagster's swaps in its one-step-at-a-time
    in-process executor, so a run of the hourly job from Python (the demo, the tests, the benchmarks) would
    not run as the deployed job does. The rest is Dagster's `execute_in_process` as it stands (the partition
    key is checked by `merge_run_tags`)."""
    run_config, _, _, resource_defs, partition_key, _ = type_check_and_normalize_args(
        run_config=run_config, partition_key=partition_key, resources=resources)
    ephemeral = job.as_ephemeral_job(resource_defs=resource_defs, input_values={}).with_executor_def(job.executor_def)
    if not run_config and ephemeral.partitioned_config and partition_key:
        run_config = ephemeral.partitioned_config.get_run_config_for_partition_key(partition_key)
    return core_execute_in_process(
        job=InMemoryJob(job_def=ephemeral), run_config=run_config, instance=instance, output_capturing_enabled=True,
        raise_on_error=raise_on_error, run_id=None, asset_selection=frozenset(),
        run_tags=merge_run_tags(job_def=job, partition_key=partition_key, tags=tags, asset_selection=[],
                                instance=instance, run_config=run_config),
    )
