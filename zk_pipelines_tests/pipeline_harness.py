"""Running the real Dagster job against both sandboxes, for pipeline tests.

The sandboxes run at scale `small_recent` (their history in the last two days), so a backfill of the whole
history is ~50 hourly partitions in one run.
"""

from __future__ import annotations

import os
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import yaml

from zk_pipelines.definitions import build_definitions
from zk_pipelines.defs.executor import execute_in_process
from zk_pipelines.defs.resources import PullTuning, TenantResource
from zk_pipelines.sandbox.kaseya import KaseyaSandbox
from zk_pipelines.sandbox.zomentum import ZomentumSandbox

REPO = Path(__file__).resolve().parents[1]
HOUR_KEY = "%Y-%m-%d-%H:00"

warnings.filterwarnings("ignore", category=dg.BetaWarning)


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

    def __post_init__(self) -> None:
        self.current_hour = self.now.replace(minute=0, second=0, microsecond=0)
        self.partitions_start = self.current_hour - timedelta(hours=50)  # the history is the last 48 hours
        self.database = self.tmp / "tenant.duckdb"
        self.settings_path = write_settings(self.tmp / "settings.yaml", mode=self.mode)
        self.instance = self.instance or dg.DagsterInstance.ephemeral()
        # Secrets reach the resource through `EnvVar`, as in production (`defs/resources.tenant_from_env`): a
        # literal value would be stored in the run's job snapshot as the resource's config default. One
        # variable name per harness, so harnesses of one test process never read each other's.
        prefix = f"ZK_TEST_{uuid.uuid4().hex[:8].upper()}"
        self.secret_variables = {f"{prefix}_KASEYA_PASSWORD": self.kaseya_password or self.kaseya.password,
                                 f"{prefix}_ZOMENTUM_REFRESH_TOKEN": self.zomentum_refresh_token
                                 or self.zomentum.refresh_token}
        os.environ.update(self.secret_variables)
        self.definitions = self.build()

    def tenant(self) -> TenantResource:
        password, refresh_token = self.secret_variables
        return TenantResource(
            kaseya_base_url=self.kaseya.base_url, kaseya_username=self.kaseya.username,
            kaseya_password=dg.EnvVar(password), kaseya_tenant=self.kaseya.tenant,
            zomentum_base_url=self.zomentum.base_url, zomentum_refresh_token=dg.EnvVar(refresh_token),
            settings_path=str(self.settings_path), duckdb_path=str(self.database),
        )

    def build(self) -> dg.Definitions:
        return build_definitions(partitions_start=hour_key(self.partitions_start), tenant=self.tenant(),
                                 tuning=self.tuning)

    @property
    def job(self) -> dg.JobDefinition:
        return self.definitions.resolve_job_def("hourly_sync_job")

    def backfill(self, first: datetime | None = None, last: datetime | None = None) -> dg.ExecuteInProcessResult:
        """One run over a range of hourly partitions (default: the whole history up to two hours ago)."""
        first = first or self.partitions_start
        last = last or self.current_hour - timedelta(hours=2)
        return execute_in_process(self.job, instance=self.instance, raise_on_error=False, tags={
            "dagster/asset_partition_range_start": hour_key(first),
            "dagster/asset_partition_range_end": hour_key(last),
        })

    def run_hour(self, start: datetime) -> dg.ExecuteInProcessResult:
        return execute_in_process(self.job, instance=self.instance, partition_key=hour_key(start),
                                  raise_on_error=False)

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

    def kaseya_records(self, entity: str) -> list[dict]:
        return self.kaseya.state.records(entity)

    def zomentum_records(self, resource: str) -> dict[str, dict]:
        return {r["id"]: r for r in self.zomentum.state.records(resource)}


def step_errors(result: dg.ExecuteInProcessResult) -> list[str]:
    return [f"{event.step_key}: {event.event_specific_data.error.to_string()}"
            for event in result.get_step_failure_events()]


def materialization_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    key = dg.AssetKey(asset.split("/"))
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key == key:
            return {name: value.value for name, value in materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")
