"""Running the hourly job in this process against a Dagster instance, as `zk sync` and `zk demo` do: the job's
own (in-process) executor, the resources bound to the environment as the code location binds them, so that
what is recorded in the instance (the run's configuration and snapshot) is what a scheduled run records."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg

from zk_pipelines.defs.jobs import HOURLY_JOB
from zk_pipelines.defs.kaseya_extract import CHANGES_STEP
from zk_pipelines.defs.loggers import terminal_run_loggers
from zk_pipelines.defs.partitions import HOURS_TAG, RANGE_END_TAG, RANGE_START_TAG, hours_tag

HOUR_KEY = "%Y-%m-%d-%H:00"
REPO = Path(__file__).resolve().parents[2]
# Dagster's console logger prints a DEBUG line per event (one per partition of a range): the run's events are in
# the instance's event log (the UI), the terminal shows errors only.
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def prepare_dagster_home(home: Path) -> Path:
    """A Dagster instance directory: the dagster.yaml it holds (a production instance, e.g. deploy/dagster.yaml
    on PostgreSQL) is kept; a new or empty one gets this repository's local dagster.yaml."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    return home


def hour_key(moment: datetime) -> str:
    return moment.strftime(HOUR_KEY)


def last_complete_hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def run_hourly_job(definitions: dg.Definitions, instance: dg.DagsterInstance, first_hour: datetime,
                   last_hour: datetime | None = None, *, whole_history: bool = False,
                   event_log: Path | None = None, tags: dict[str, str] | None = None,
                   tenant: str | None = None) -> dg.ExecuteInProcessResult:
    """One run of the hourly job for an hour or a range of hours (one run, one query per list); with `tenant`,
    a registry deployment's run for that tenant's partition, as its schedule asks for it. With `event_log`,
    Dagster's events go to that file and a line per phase to stdout; else errors only."""
    job = definitions.resolve_job_def(HOURLY_JOB)
    run_config: dict = terminal_run_loggers(event_log) if event_log else dict(QUIET)
    if whole_history:
        run_config["ops"] = {CHANGES_STEP: {"config": {"whole_history": True}}}
    last_hour = last_hour or first_hour
    if tenant is not None:  # the partition is the tenant (which gives the run its tags), the hours a tag
        return job.execute_in_process(instance=instance, partition_key=tenant, run_config=run_config,
                                      raise_on_error=False, tags={**(tags or {}), HOURS_TAG: hours_tag(first_hour,
                                                                                                      last_hour)})
    if last_hour == first_hour:
        return job.execute_in_process(instance=instance, partition_key=hour_key(first_hour), run_config=run_config,
                                      raise_on_error=False, tags=tags)
    return job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False, tags={
        **(tags or {}), RANGE_START_TAG: hour_key(first_hour), RANGE_END_TAG: hour_key(last_hour)})
