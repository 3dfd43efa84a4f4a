"""Loggers for runs executed in a terminal (`zk sync`, `zk demo`): Dagster's event log to a file the command
names, and one progress line per phase of the hourly sync, with its counts, as the phase ends.

They are the code location's loggers beside Dagster's console logger; a run uses them only when its
configuration names them (`terminal_run_loggers`), so a run launched from the UI logs as Dagster's default.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from zk_pipelines.defs.asset_keys import step_prefix
from zk_pipelines.domain.entities import INCREMENTAL_SOURCES

EVENT_FILE_LOGGER = "event_log_file"
PROGRESS_LOGGER = "progress"


@dataclass(frozen=True)
class Phase:
    """Steps of the hourly sync that make one phase, by their step keys' beginnings, and the materialization
    metadata summed into its progress line: (metadata key, label)."""

    name: str
    step_prefixes: tuple[str, ...]
    counts: tuple[tuple[str, str], ...]


PHASES = (
    Phase("extract", (step_prefix("raw"), "kaseya_catalogue"),
          (*((f"{source.name}_rows", source.name) for source in INCREMENTAL_SOURCES),
           ("rows", "catalogue rows"), ("kaseya_calls", "Kaseya calls"), ("step_kaseya_calls", "Kaseya calls"))),
    Phase("settings", (step_prefix("settings"),), (("zomentum_calls", "Zomentum calls"),)),
    Phase("staging", (step_prefix("stg"),), (("rows_staged", "staged"), ("records_rejected", "rejected"),
                                   ("records_waiting_for_parent", "waiting for a parent"))),
    Phase("mapping", (step_prefix("mapped"),), (("mapped", "mapped"), ("waiting", "waiting"))),
    Phase("load", (step_prefix("zomentum"),), tuple((action, action) for action in (
        "created", "matched", "updated", "unchanged", "deferred", "failed"))),
    Phase("audit", (step_prefix("audit"),), (("succeeded_this_run", "succeeded"), ("errors_this_run", "errors"))),
)


def phase_of(step_key: str) -> Phase | None:
    return next((phase for phase in PHASES if step_key.startswith(phase.step_prefixes)), None)


@dataclass
class PhaseProgress:
    phase: Phase
    steps: set[str]
    done: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    started: float | None = None
    printed: bool = False

    def line(self) -> str:
        labels = dict.fromkeys(label for _, label in self.phase.counts)
        shown = ", ".join(f"{self.counts[label]:,} {label}" for label in labels if self.counts.get(label))
        text = f"  {self.phase.name:<9}{len(self.done):>3}/{len(self.steps)} steps"
        if self.started is not None:
            text += f"  {time.monotonic() - self.started:5.1f} s"
        if self.done:
            text += f"  {shown or 'nothing to do'}"
        if self.skipped:
            text += f"  ({len(self.skipped)} not run: {', '.join(sorted(self.skipped))})"
        for step, reason in self.failed.items():
            text += f"\n  {'':<9}FAILED {step}: {reason}"
        return text


class RunProgress:
    """A run's phases. Dagster makes a run's loggers more than once (orchestration, execution), each
    seeing some of its events: they share this."""

    def __init__(self, step_keys: list[str]) -> None:
        self.phases: list[PhaseProgress] = []
        for phase in PHASES:
            steps = {key for key in step_keys if phase_of(key) is phase}
            if steps:
                self.phases.append(PhaseProgress(phase, steps))


_RUNS: dict[str, RunProgress] = {}


class ProgressHandler(logging.Handler):
    """Reads Dagster's events as the run emits them; prints a phase's line once its last step has ended."""

    def __init__(self, run: RunProgress, stream) -> None:
        super().__init__(level=logging.DEBUG)
        self.stream = stream
        self.phases = run.phases

    def _progress(self, step_key: str | None) -> PhaseProgress | None:
        return next((p for p in self.phases if step_key in p.steps), None)

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "dagster_meta", {}).get("dagster_event")
        if event is None:
            return
        kind = event.event_type_value
        if kind in ("PIPELINE_SUCCESS", "PIPELINE_FAILURE"):
            self.flush_phases()
            return
        progress = self._progress(event.step_key)
        if progress is None:
            return
        if kind == "STEP_START" and progress.started is None:
            progress.started = time.monotonic()
        elif kind == "ASSET_MATERIALIZATION":
            metadata = event.event_specific_data.materialization.metadata
            for key, label in progress.phase.counts:
                value = metadata.get(key)
                if isinstance(value, dg.IntMetadataValue) and value.value is not None:
                    progress.counts[label] = progress.counts.get(label, 0) + value.value
        elif kind == "STEP_SUCCESS":
            progress.done.add(event.step_key)
        elif kind == "STEP_FAILURE":
            error = event.event_specific_data.error
            message = (error.message if error else "").strip().splitlines()
            progress.failed[event.step_key] = message[0] if message else "failed"
        elif kind == "STEP_SKIPPED":
            progress.skipped.add(event.step_key)
        if len(progress.done) + len(progress.failed) + len(progress.skipped) == len(progress.steps):
            self._print(progress)

    def _print(self, progress: PhaseProgress) -> None:
        if not progress.printed:
            progress.printed = True
            print(progress.line(), file=self.stream, flush=True)

    def flush_phases(self) -> None:
        """At the run's end, the phases whose steps did not all end (a failure upstream stopped them)."""
        if not any(p.started is not None for p in self.phases):
            return
        for progress in self.phases:
            progress.skipped |= progress.steps - progress.done - set(progress.failed) - progress.skipped
            self._print(progress)


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.Logger(name, level=logging.DEBUG)  # not registered: one per run
    logger.addHandler(handler)
    return logger


@dg.logger(description="One line per phase of the hourly sync as it ends, with its counts, on stdout.")
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    job = init_context.job_def
    run_id = init_context.run_id or ""
    if run_id not in _RUNS:
        _RUNS[run_id] = RunProgress([node.name for node in job.graph.nodes] if job is not None else [])
    return _logger(f"zk.progress.{run_id}", ProgressHandler(_RUNS[run_id], sys.stdout))


@dg.logger(config_schema={"path": dg.Field(str, description="the file the run's events are appended to")},
           description="Every event of the run, one line each, appended to a file.")
def event_log_file_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    path = Path(init_context.logger_config["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    return _logger(f"zk.events.{init_context.run_id}", handler)


def code_location_loggers() -> dict[str, dg.LoggerDefinition]:
    return {"console": dg.colored_console_logger, PROGRESS_LOGGER: progress_logger,
            EVENT_FILE_LOGGER: event_log_file_logger}


def terminal_run_loggers(event_log: Path, *, progress: bool = True) -> dict:
    """The run configuration's `loggers` for a run in a terminal: events to `event_log`, progress lines."""
    loggers: dict = {EVENT_FILE_LOGGER: {"config": {"path": str(event_log)}}}
    if progress:
        loggers[PROGRESS_LOGGER] = {}
    return {"loggers": loggers}
