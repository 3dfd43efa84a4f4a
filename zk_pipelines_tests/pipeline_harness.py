"""Running the real Dagster job against both sandboxes, for pipeline tests.

The sandboxes run at scale `small_recent` (their history in the last two days), so a backfill of the whole
history is ~50 hourly partitions in one run.
"""

from __future__ import annotations

import copy
import itertools
import os
import shutil
import threading
import warnings
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import yaml

from zk_pipelines.config import TENANT_VARIABLES, TenantVariables
from zk_pipelines.definitions import build_definitions
from zk_pipelines.defs.kaseya_extract import CHANGES_STEP
from zk_pipelines.defs.resources import PullTuning
from zk_pipelines.sandbox.kaseya import KaseyaSandbox
from zk_pipelines.sandbox.zomentum import ZomentumSandbox

REPO = Path(__file__).resolve().parents[1]
HOUR_KEY = "%Y-%m-%d-%H:00"

warnings.filterwarnings("ignore", category=dg.BetaWarning)

_TENANTS = itertools.count(1)


def tenant_environment(kaseya: KaseyaSandbox, zomentum: ZomentumSandbox, settings: Path, database: Path,
                       prefix: str | None = None, *, kaseya_password: str | None = None,
                       zomentum_refresh_token: str | None = None, state_url: str | None = None,
                       state_schema: str | None = None) -> TenantVariables:
    """Set a tenant's environment variables (under a prefix of its own, so that harnesses side by side never
    share one) and name them: the resources bind these names, as in production, never the values (a literal
    value would be stored in the run's job snapshot as the resource's config default). `kaseya_password` and
    `zomentum_refresh_token`: credentials other than the sandboxes' own (a wrong password, a revoked token)."""
    variables = TENANT_VARIABLES.with_prefix(prefix or f"ZK_TEST_{next(_TENANTS)}_")
    os.environ.update({
        variables.kaseya_base_url: kaseya.base_url, variables.kaseya_username: kaseya.username,
        variables.kaseya_password: kaseya_password or kaseya.password, variables.kaseya_tenant: kaseya.tenant,
        variables.zomentum_base_url: zomentum.base_url,
        variables.zomentum_refresh_token: zomentum_refresh_token or zomentum.refresh_token,
        variables.settings_path: str(settings), variables.duckdb_path: str(database),
    })
    if state_url:  # the PostgreSQL state store (read where the code location loads: set before it builds)
        os.environ.update({variables.state_url: state_url, variables.state_schema: state_schema or "zk_default"})
    return variables


def reset_sandboxes(sandboxes: tuple[KaseyaSandbox, ZomentumSandbox], *, seed: int = 7
                    ) -> tuple[KaseyaSandbox, ZomentumSandbox]:
    """Both sandboxes (the conftest's `sandboxes` pair) back to a fresh `small_recent` world of `seed`."""
    kaseya, zomentum = sandboxes
    kaseya.state.reset(seed=seed, scale="small_recent")
    zomentum.state.reset(seed=seed, scale="small_recent")
    return kaseya, zomentum


_LOCKS = (type(threading.Lock()), type(threading.RLock()))


def _locks_in(root: Any) -> dict[int, Any]:
    """Every lock reachable from `root` (through attributes, mappings and sequences), keyed by id: a deepcopy
    memo that makes a copy share the live locks (a lock cannot be copied, and the sandbox's server thread holds
    these very objects)."""
    found: dict[int, Any] = {}
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, (str, bytes, int, float, type(None), type)) or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, _LOCKS):
            found[id(node)] = node
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple, set, frozenset, deque)):
            stack.extend(node)
        elif hasattr(node, "__dict__"):
            stack.extend(vars(node).values())
    return found


def _copied(attributes: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(attributes, _locks_in(attributes))


@dataclass
class SyncedTenant:
    """A tenant synced once (a module fixture's backfill), that each test of the module starts from as if it had
    synced the tenant itself: `harness(tmp)` puts both sandboxes back exactly as the sync left them (records,
    clocks, tokens, request logs) and gives a harness of the same mode and hours over a copy of the tenant's
    DuckDB file, with a Dagster instance of its own. Only for the DuckDB state store."""

    sandboxes: tuple[KaseyaSandbox, ZomentumSandbox]
    mode: str
    now: datetime
    database: Path
    kaseya_state: dict[str, Any]
    zomentum_state: dict[str, Any]

    @classmethod
    def of(cls, harness: PipelineHarness) -> SyncedTenant:
        """The state `harness` (on the DuckDB state store, with no run in progress) is in now."""
        if harness.state_url:
            raise ValueError("a synced tenant is kept for the DuckDB state store only")
        return cls((harness.kaseya, harness.zomentum), harness.mode, harness.now, harness.database,
                   _copied(vars(harness.kaseya.state)), _copied(vars(harness.zomentum.state)))

    def harness(self, tmp: Path) -> PipelineHarness:
        kaseya, zomentum = self.sandboxes
        for state, kept in ((kaseya.state, self.kaseya_state), (zomentum.state, self.zomentum_state)):
            attributes = vars(state)
            attributes.clear()
            attributes.update(_copied(kept))
        for name in (self.database.name, self.database.name + ".wal"):
            if (self.database.parent / name).exists():
                shutil.copyfile(self.database.parent / name, tmp / name)
        return PipelineHarness(kaseya, zomentum, tmp, mode=self.mode, now=self.now)


def hour_key(moment: datetime) -> str:
    return moment.strftime(HOUR_KEY)


def write_settings(path: Path, **changes: Any) -> Path:
    settings = yaml.safe_load((REPO / "settings.example.yaml").read_text())
    for dotted, value in changes.items():
        node = settings
        *parents, leaf = dotted.split(".")
        for name in parents:
            node = node[name]
        node[leaf] = value
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


@dataclass
class PipelineHarness:
    kaseya: KaseyaSandbox
    zomentum: ZomentumSandbox
    tmp: Path
    mode: str = "kaseya_as_crm"
    tuning: PullTuning = field(default_factory=PullTuning)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    instance: dg.DagsterInstance | None = None  # default: an ephemeral one
    # Credentials other than the sandboxes' own (a wrong password, a revoked refresh token).
    kaseya_password: str | None = None
    zomentum_refresh_token: str | None = None
    # The PostgreSQL state store (ZK_STATE_URL) and the tenant's schema in it; None: state in the DuckDB file.
    state_url: str | None = None
    state_schema: str = "zk_default"

    def __post_init__(self) -> None:
        self.current_hour = self.now.replace(minute=0, second=0, microsecond=0)
        self.partitions_start = self.current_hour - timedelta(hours=50)  # the history is the last 48 hours
        self.database = self.tmp / "tenant.duckdb"
        self.settings_path = write_settings(self.tmp / "settings.yaml", mode=self.mode)
        self.instance = self.instance or dg.DagsterInstance.ephemeral()
        self.variables = tenant_environment(self.kaseya, self.zomentum, self.settings_path, self.database,
                                            kaseya_password=self.kaseya_password,
                                            zomentum_refresh_token=self.zomentum_refresh_token,
                                            state_url=self.state_url, state_schema=self.state_schema)
        self.definitions = self.build()

    def build(self) -> dg.Definitions:
        return build_definitions(partitions_start=hour_key(self.partitions_start), variables=self.variables,
                                 tuning=self.tuning)

    @property
    def job(self) -> dg.JobDefinition:
        return self.definitions.resolve_job_def("hourly_sync_job")

    def backfill(self, first: datetime | None = None, last: datetime | None = None) -> dg.ExecuteInProcessResult:
        """One run over a range of hourly partitions (default: the whole history up to two hours ago)."""
        first = first or self.partitions_start
        last = last or self.current_hour - timedelta(hours=2)
        return self.job.execute_in_process(instance=self.instance, raise_on_error=False, tags={
            "dagster/asset_partition_range_start": hour_key(first),
            "dagster/asset_partition_range_end": hour_key(last),
        })

    def reexecute_from_failure(self, run_id: str) -> dg.JobExecutionResult:
        """What the UI's "Re-execute from failure" launches: a run of the parent run's failed steps and those
        they stopped, with its tags (its hours); the steps that succeeded, the extraction among them, do not run
        again. The job is rebuilt from plain values, as a run worker rebuilds it, in this process."""
        prefix = self.variables.kaseya_base_url.removesuffix(TENANT_VARIABLES.kaseya_base_url)
        job = dg.build_reconstructable_job(__name__, hourly_sync_job.__name__, reconstructable_kwargs={
            "partitions_start": hour_key(self.partitions_start), "variables_prefix": prefix,
            "tuning": self.tuning.model_dump()})
        with dg.execute_job(job, self.instance, raise_on_error=False,
                            reexecution_options=dg.ReexecutionOptions.from_failure(run_id, self.instance)) as result:
            return result

    def run_hour(self, start: datetime, *, whole_history: bool = False) -> dg.ExecuteInProcessResult:
        run_config = {"ops": {CHANGES_STEP: {"config": {"whole_history": True}}}} if whole_history else None
        return self.job.execute_in_process(instance=self.instance, partition_key=hour_key(start),
                                           raise_on_error=False, run_config=run_config)

    def sql(self, query: str, params: Any = None) -> list[tuple]:
        with duckdb.connect(str(self.database), read_only=True) as connection:
            return connection.execute(query, params or []).fetchall()

    def id_map(self, entity: str) -> dict[str, str]:
        return dict(self.sql("SELECT kaseya_id, zomentum_id FROM zomentum.id_map WHERE entity = ?", [entity]))

    def zomentum_writes(self) -> list[dict]:
        return [e for e in self.zomentum.state.requests() if e["method"] in ("POST", "PUT")
                and e["path"].startswith("/v2/")]

    def set_modified_on(self, entity: str, kaseya_id: int, moment: datetime) -> None:
        """Pin a Kaseya record's ModifiedOn (the sandbox clock only moves forward, so an edit "made in an
        earlier hour" is placed there by hand)."""
        state = self.kaseya.state
        with state.lock:
            table = getattr(state.tenant, entity)
            table[kaseya_id].stamps.modified_on = moment.astimezone(UTC)

    def an_hour_passes(self, seconds: float = 3600) -> None:
        """Time moves on for both sides: the Kaseya sandbox's clock (its sliding hourly limit), and the tenant's
        budget in the state store (the calls and the 429s it counts are that much older)."""
        self.kaseya.state.advance_clock(seconds)
        with duckdb.connect(str(self.database)) as connection:
            connection.execute("UPDATE budget.kaseya_grants SET granted_at = granted_at - ?", [seconds])
            connection.execute("UPDATE budget.kaseya_spent SET until = until - ?", [seconds])

    def kaseya_records(self, entity: str) -> list[dict]:
        return self.kaseya.state.records(entity)

    def zomentum_records(self, resource: str) -> dict[str, dict]:
        return {r["id"]: r for r in self.zomentum.state.records(resource)}


def hourly_sync_job(*, partitions_start: str, variables_prefix: str, tuning: dict[str, Any]) -> dg.JobDefinition:
    """A harness tenant's hourly job from plain values (what `build_reconstructable_job` can carry)."""
    variables = TENANT_VARIABLES.with_prefix(variables_prefix)
    return build_definitions(partitions_start=partitions_start, variables=variables,
                             tuning=PullTuning(**tuning)).resolve_job_def("hourly_sync_job")


def step_errors(result: dg.ExecuteInProcessResult) -> list[str]:
    return [f"{event.step_key}: {event.event_specific_data.error.to_string()}"
            for event in result.get_step_failure_events()]


def materialization_metadata(result: dg.ExecuteInProcessResult, asset: str, partition: str | None = None
                             ) -> dict[str, Any]:
    """The metadata of the asset's materialization in the run: of `partition`, by default the last one (a
    partitioned step reports the run's figures on the run's last partition)."""
    key = dg.AssetKey(asset.split("/"))
    found = [event.event_specific_data.materialization for event in result.get_asset_materialization_events()
             if event.event_specific_data.materialization.asset_key == key
             and (partition is None or event.event_specific_data.materialization.partition == partition)]
    if not found:
        raise AssertionError(f"{asset} was not materialized" + (f" for {partition}" if partition else ""))
    return {name: value.value for name, value in found[-1].metadata.items()}
