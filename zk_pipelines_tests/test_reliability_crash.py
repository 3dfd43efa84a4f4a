"""Crash and resume: the sync process killed with SIGKILL in the middle of the load into Zomentum, then run
again as the schedule would, leaves every record exactly once, and the ledger says what each run did.

The job runs in its own process, as Dagster runs it (`DAGSTER_HOME` with the repository's dagster.yaml, the
tenant's configuration from the environment); the sandboxes stay in the test process, so the test sees
Zomentum's request log while the job writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from zk_pipelines.defs.local_runs import prepare_dagster_home
from zk_pipelines.sandbox.kaseya import KaseyaSandbox
from zk_pipelines.sandbox.zomentum import ZomentumSandbox
from zk_pipelines.storage.state_store import open_store, unbind
from zk_pipelines_tests.pipeline_harness import REPO, hour_key, reset_sandboxes, write_settings

JOB_SCRIPT = """
import os, sys
import dagster as dg
from zk_pipelines.definitions import build_definitions

definitions = build_definitions(partitions_start=os.environ["ZK_PARTITIONS_START"])
instance = dg.DagsterInstance.get()
if sys.argv[1] == "push":
    from zk_pipelines.defs.push import PUSH_JOB, push_run_config
    result = definitions.resolve_job_def(PUSH_JOB).execute_in_process(
        run_config=push_run_config(sys.argv[2]), instance=instance, raise_on_error=False)
else:
    first, last = sys.argv[1], sys.argv[2]
    job = definitions.resolve_job_def("hourly_sync_job")
    if first == last:
        result = job.execute_in_process(partition_key=first, instance=instance, raise_on_error=False)
    else:
        result = job.execute_in_process(instance=instance, raise_on_error=False, tags={
            "dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last})
for event in result.get_step_failure_events():
    print("STEP FAILED", event.step_key, event.event_specific_data.error.message.strip(), flush=True)
print("RUN", result.run_id, "success" if result.success else "failure", flush=True)
sys.exit(0 if result.success else 1)
"""


BACKFILL_HOURS = 12
KILL_AFTER_CREATES = 40


@dataclass
class JobProcesses:
    """Runs the tenant's Dagster jobs in processes of their own, against the sandboxes, one DuckDB file and one
    Dagster instance."""

    kaseya: KaseyaSandbox
    zomentum: ZomentumSandbox
    directory: Path
    now: datetime
    # The PostgreSQL server of the state store and of Dagster's instance (deploy/dagster.yaml); None: the
    # embedded default (state in the one DuckDB file, Dagster on SQLite). With PostgreSQL each process has a
    # DuckDB cache of its own, as each worker (pod) would: they share nothing but the database.
    postgres_url: str | None = None

    def __post_init__(self) -> None:
        self.started: list[JobProcess] = []
        self.current_hour = self.now.replace(minute=0, second=0, microsecond=0)
        self.partitions_start = self.current_hour - timedelta(hours=50)
        self.database = self.directory / "tenant.duckdb"
        home = self.directory / "dagster_home"
        if self.postgres_url:
            home.mkdir()
            (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
        self.home = prepare_dagster_home(home)
        self.settings = write_settings(self.directory / "settings.yaml", mode="zomentum_as_crm")
        with self.instance() as instance:  # its storage created once, before processes race to create it
            instance.get_runs()

    def environment(self) -> dict[str, str]:
        return {**os.environ, "DAGSTER_HOME": str(self.home), "ZK_PARTITIONS_START": hour_key(self.partitions_start),
                "KASEYA_BASE_URL": self.kaseya.base_url, "KASEYA_USERNAME": self.kaseya.username,
                "KASEYA_PASSWORD": self.kaseya.password, "KASEYA_TENANT": self.kaseya.tenant,
                "ZOMENTUM_BASE_URL": self.zomentum.base_url, "ZOMENTUM_REFRESH_TOKEN": self.zomentum.refresh_token,
                "ZK_SETTINGS": str(self.settings), "ZK_DUCKDB_PATH": str(self.database),
                **({"ZK_STATE_URL": self.postgres_url, "DAGSTER_POSTGRES_URL": self.dagster_url}
                   if self.postgres_url else {})}

    @property
    def dagster_url(self) -> str:
        assert self.postgres_url
        return self.postgres_url.replace("postgresql://", "postgresql+psycopg2://", 1)

    def start(self, *args: str) -> JobProcess:
        # The output goes to a file: Dagster's console log would fill a pipe nobody reads while the job runs.
        log = self.directory / f"job-{len(self.started)}.log"
        environment = self.environment()
        if self.postgres_url:
            self.database = self.directory / f"worker-{len(self.started)}" / "tenant.duckdb"
            environment["ZK_DUCKDB_PATH"] = str(self.database)
        with log.open("w") as out:
            process = subprocess.Popen([sys.executable, "-c", JOB_SCRIPT, *args], cwd=REPO, env=environment,
                                       stdout=out, stderr=subprocess.STDOUT)
        self.started.append(JobProcess(process, log))
        return self.started[-1]

    def stop_all(self) -> None:
        for job in self.started:
            if job.process.poll() is None:
                job.process.kill()
                job.process.wait()

    def start_backfill(self, hours: int = BACKFILL_HOURS) -> JobProcess:
        """The half day up to two hours ago, in one run (Dagster records a planned materialization per partition
        and asset before the run starts: a short range keeps that quick)."""
        return self.start(hour_key(self.current_hour - timedelta(hours=hours + 1)),
                          hour_key(self.current_hour - timedelta(hours=2)))

    def start_hour(self, start: datetime) -> JobProcess:
        return self.start(hour_key(start), hour_key(start))

    def start_push(self, document_id: str) -> JobProcess:
        return self.start("push", document_id)

    def sql(self, query: str, params: list | None = None) -> list[tuple]:
        """A query of the last process's DuckDB file (with PostgreSQL: its replica brought up to date first,
        so the durable tables read as the store holds them)."""
        if self.postgres_url:
            open_store(self.database, self.postgres_url)
            unbind(self.database)
        with duckdb.connect(str(self.database), read_only=True) as connection:
            return connection.execute(query, params or []).fetchall()

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def runs(self) -> list[dg.DagsterRun]:
        """Oldest first."""
        with self.instance() as instance:
            return list(reversed(instance.get_runs()))

    def pool_holders(self, pool: str) -> list[str]:
        with self.instance() as instance:
            return [slot.run_id for slot in instance.event_log_storage.get_concurrency_info(pool).claimed_slots]

    def mark_failed(self, run_id: str) -> None:
        """What an operator (the UI's Terminate) or run monitoring does for a run whose process died: mark it
        failed, and free the pool slots it held (what the daemon's run monitoring does once dagster.yaml's
        `free_slots_after_run_end_seconds` have passed)."""
        with self.instance() as instance:
            instance.report_run_failed(instance.get_run_by_id(run_id))
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)


@dataclass
class JobProcess:
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return "\n".join(line for line in self.log.read_text().splitlines()
                         if line.startswith(("RUN ", "STEP FAILED")) or "Error" in line)

    def finished(self, timeout: float = 120) -> str:
        """The job's outcome lines (`RUN <id> success|failure`, failed steps, errors) once it has ended."""
        self.process.wait(timeout=timeout)
        return self.output()

    @property
    def succeeded(self) -> bool:
        return self.process.returncode == 0


@pytest.fixture(params=["duckdb", "postgresql"])
def jobs(request, sandboxes, tmp_path, monkeypatch) -> Iterator[JobProcesses]:
    """The tenant's jobs, with the state and the instance in DuckDB/SQLite or both on PostgreSQL."""
    kaseya, zomentum = reset_sandboxes(sandboxes)
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    if url:  # the test process reads the instance too
        monkeypatch.setenv("DAGSTER_POSTGRES_URL", url.replace("postgresql://", "postgresql+psycopg2://", 1))
    jobs = JobProcesses(kaseya, zomentum, tmp_path, datetime.now(UTC), postgres_url=url)
    yield jobs
    jobs.stop_all()


def created_in_zomentum(zomentum: ZomentumSandbox) -> list[dict]:
    return [e for e in zomentum.state.requests() if e["method"] == "POST" and e["path"].startswith("/v2/")
            and (e["fault"] or {}).get("withheld_status", e["status"]) in (200, 201)]


@pytest.mark.slow
def test_a_sync_killed_in_the_middle_of_the_load_then_run_again_has_every_record_exactly_once(jobs):
    zomentum = jobs.zomentum
    seeded = {resource: {r["id"] for r in zomentum.state.records(resource)}
              for resource in ("client/companies", "client/users", "opportunities", "items")}
    # Zomentum answers creates a little late (the record exists at once), so the kill lands between a create
    # and the moment the pipeline records it.
    zomentum.state.set_faults(seed=1, rules=[{"kind": "latency", "method": "POST", "seconds": 0.1}])
    first = jobs.start_backfill()
    deadline = time.monotonic() + 90
    while len(created_in_zomentum(zomentum)) < KILL_AFTER_CREATES:
        assert first.process.poll() is None, first.output()
        assert time.monotonic() < deadline, f"the load never reached {KILL_AFTER_CREATES} creates"
        time.sleep(0.01)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    created_before_the_kill = len(created_in_zomentum(zomentum))
    zomentum.state.clear_faults()
    (killed,) = jobs.runs()
    assert killed.status == dg.DagsterRunStatus.STARTED  # the instance never heard it end
    if jobs.postgres_url is None:
        # ... and it still holds the Zomentum pool's one slot (the repository's dagster.yaml counts pools per
        # step): until it is marked failed and the slot freed (the UI's Terminate and "free slots", or run
        # monitoring), the next run waits for that slot.
        assert jobs.pool_holders("zomentum_api") == [killed.run_id]
    else:
        # deploy/dagster.yaml counts pools per run, in the queue: no step claimed a slot; the killed run counts
        # against its pools while it stays STARTED, until it is marked failed.
        assert jobs.pool_holders("zomentum_api") == []
    jobs.mark_failed(killed.run_id)
    assert jobs.pool_holders("zomentum_api") == []

    second = jobs.start_backfill()

    second.finished()
    assert second.succeeded, second.output()
    killed_run, resumed_run = killed.run_id, jobs.runs()[-1].run_id
    # Every Zomentum record the pull made, across both runs, is in the id map exactly once, and nothing
    # Zomentum holds is there twice.
    made = {resource: [r for r in zomentum.state.records(resource) if r["id"] not in seeded[resource]]
            for resource in seeded}
    id_map = jobs.sql("SELECT entity, kaseya_id, zomentum_id, link_kind FROM zomentum.id_map")
    mapped = Counter(zomentum_id for _, _, zomentum_id, _ in id_map)
    assert max(mapped.values()) == 1
    for resource, records in made.items():
        assert all(mapped[r["id"]] == 1 for r in records), resource
    names = Counter(c["name"] for c in zomentum.state.records("client/companies"))
    emails = Counter(u["email"] for u in zomentum.state.records("client/users") if u["email"])
    parts = Counter(i["manufacturer_part_number"] for i in zomentum.state.records("items")
                    if i["manufacturer_part_number"])
    links = Counter(v for o in zomentum.state.records("opportunities") for f in o["custom_fields"]
                    for v in f["values"])
    assert max(names.values()) == max(emails.values()) == max(parts.values()) == max(links.values()) == 1
    # Every record the pull mapped (none waiting) is paired: nothing is missing.
    # (An account or contact inactive in Kaseya is not created: README, Deactivation.)
    for entity, source in (("clients", "accounts"), ("client_users", "contacts"), ("opportunities", None),
                           ("items", None)):
        inactive = (f" AND m.kaseya_id NOT IN (SELECT CAST(kaseya_id AS VARCHAR) FROM stg.kaseya_{source} "
                    "WHERE is_active = false)") if source else ""
        unpaired = jobs.sql(f"SELECT m.kaseya_id FROM mapped.zomentum_{entity} m LEFT JOIN zomentum.id_map i "
                            "ON i.entity = ? AND i.kaseya_id = m.kaseya_id "
                            "WHERE m.problem IS NULL AND i.zomentum_id IS NULL" + inactive, [entity])
        assert unpaired == [], entity

    # The ledger: what the killed run recorded before it died, the rest found (adopted) or created by the
    # re-run; each record the two runs made accounts for exactly one POST.
    events = jobs.sql("SELECT run_id, action, entity, zomentum_id FROM audit.sync_events "
                      "WHERE action IN ('created', 'matched')")
    recorded_by_killed = {z for run, action, _, z in events if run == killed_run and action == "created"}
    created_by_resumed = {z for run, action, _, z in events if run == resumed_run and action == "created"}
    adopted_by_resumed = {z for run, action, entity, z in events if run == resumed_run and action == "matched"
                          and z not in {s for ids in seeded.values() for s in ids}}
    assert 0 < len(recorded_by_killed) < created_before_the_kill  # it died with creates it had not recorded
    assert adopted_by_resumed  # ... which the re-run found and adopted rather than created again
    all_made = {r["id"] for records in made.values() for r in records}
    assert recorded_by_killed | created_by_resumed | adopted_by_resumed == all_made
    assert not recorded_by_killed & created_by_resumed
    assert len(created_in_zomentum(zomentum)) == len(all_made) + 4  # + the Kaseya link field of each entity type
