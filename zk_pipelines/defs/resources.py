"""Dagster resources: the one place where configuration enters from the environment (`EnvVar`).

`TenantResource` holds everything tenant-specific and hands it on as the one `TenantConfig` object;
`PullTuning` holds the pull's knobs, which have defaults and are not secrets.
"""

from __future__ import annotations

import threading
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import ConfigurationError, KaseyaCredentials, TenantConfig, ZomentumCredentials
from zk_pipelines.domain.entities import ZOMENTUM_TARGETS
from zk_pipelines.domain.settings import IntegrationSettings, load_settings, settings_from_text
from zk_pipelines.domain.settings_check import ResolvedSettings
from zk_pipelines.pull.run_settings import resolved_for_step
from zk_pipelines.secrets import Secret
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import ensure_pull_tables


class TenantResource(dg.ConfigurableResource):
    """One MSP tenant: Kaseya and Zomentum credentials, the settings file and the DuckDB file."""

    kaseya_base_url: str
    kaseya_username: str
    kaseya_password: str
    kaseya_tenant: str
    kaseya_hourly_call_budget: int = 1400
    zomentum_base_url: str
    zomentum_refresh_token: str
    settings_path: str
    duckdb_path: str = "zk_pipelines.duckdb"

    # The run's one Kaseya client (one login, one hourly budget per endpoint for every step of the run).
    # Dagster initialises a fresh copy of the resource for each run (per process), so this private state is
    # the run's and the tenant's own: one deployment serving several tenants has one TenantResource each.
    # The hourly job's executor (`defs/executor.py`) runs every step in the run's one process, several at once
    # in threads, so every step of the run shares it (the client and these caches are thread-safe); a
    # multiprocess executor would initialise the resource in each step's process, so each step process would
    # log in once. Tokens stay in memory: never written to DuckDB, never passed between processes.
    _run_kaseya: KaseyaClient | None = PrivateAttr(default=None)
    # Likewise the run's one Zomentum client: one access token for the run. A token per step would cost a
    # refresh call per step, and each new token invalidates the one before it.
    _run_zomentum: ZomentumClient | None = PrivateAttr(default=None)
    # What every step of a run would otherwise redo: creating the pull's tables (an open of the DuckDB file
    # and some thirty CREATE ... IF NOT EXISTS) and reading back the run's resolved settings.
    _run_tables_ready: bool = PrivateAttr(default=False)
    _run_resolved: tuple[str, ResolvedSettings] | None = PrivateAttr(default=None)
    _run_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    # Set when the run is terminated (`interrupt_run`, called by the hourly job's executor): the run's clients
    # then raise Dagster's interrupt before their next request, in whichever step's thread makes it. The
    # in-process executor interrupts its one running step itself; steps in threads can only be stopped so.
    _run_interrupted: threading.Event = PrivateAttr(default_factory=threading.Event)
    _run_database_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)  # held during DuckDB I/O

    def config(self) -> TenantConfig:
        if not self.settings_path:
            raise ConfigurationError("ZK_SETTINGS is not set (path of the settings YAML)")
        return TenantConfig(
            kaseya=KaseyaCredentials(
                base_url=self.kaseya_base_url, username=self.kaseya_username, password=Secret(self.kaseya_password),
                tenant=self.kaseya_tenant, hourly_call_budget=self.kaseya_hourly_call_budget,
            ),
            zomentum=ZomentumCredentials(base_url=self.zomentum_base_url,
                                         refresh_token=Secret(self.zomentum_refresh_token)),
            settings_path=Path(self.settings_path),
            duckdb_path=Path(self.duckdb_path),
        )

    def settings(self) -> IntegrationSettings:
        """The integration settings (ZK_SETTINGS), validated; names are resolved by `settings/resolved`."""
        config = self.config()
        assert config.settings_path is not None
        return load_settings(config.settings_path)

    def kaseya_client(self) -> KaseyaClient:
        """The run's Kaseya client, made on first use (a run that never calls Kaseya never logs in). Its
        `stats` add up over the run's steps, which run side by side: a step counts its own calls apart
        (`step_usage`), and the client keeps the requests of all of them in flight to its cap."""
        with self._run_lock:
            if self._run_kaseya is None:
                self._run_kaseya = KaseyaClient(self.config().kaseya, checkpoint=self._stop_if_interrupted)
            return self._run_kaseya

    def pull_database(self) -> Path:
        """The tenant's DuckDB file with the pull's tables in place: created by the run's first step that asks,
        not by every step."""
        config = self.config()
        with self._run_database_lock:
            if not self._run_tables_ready:
                with connect(config.duckdb_path) as connection:
                    ensure_pull_tables(connection, [target.name for target in ZOMENTUM_TARGETS])
                self._run_tables_ready = True
        return config.duckdb_path

    def resolved_settings(self) -> ResolvedSettings:
        """The latest resolution `settings/resolved` stored (this run's, when the run materialized it), for
        the settings file as it reads now (`resolved_for_step`), read from DuckDB once per run. The file is
        read at every call: an edit during the run fails the step as `resolved_for_step` does."""
        config = self.config()
        assert config.settings_path is not None
        try:
            text = config.settings_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            load_settings(config.settings_path)  # raises SettingsError naming the file and what is wrong
            raise
        with self._run_database_lock:
            if self._run_resolved is not None and self._run_resolved[0] == text:
                return self._run_resolved[1]
            settings = settings_from_text(text, str(config.settings_path))
            resolved = resolved_for_step(config.duckdb_path, config.settings_path, settings)
            self._run_resolved = (text, resolved)
            return resolved

    def interrupt_run(self) -> None:
        """The run was terminated: its API clients send nothing more (see `_stop_if_interrupted`)."""
        self._run_interrupted.set()

    def _stop_if_interrupted(self) -> None:
        if self._run_interrupted.is_set():
            raise dg.DagsterExecutionInterruptedError("the run was terminated: no further Kaseya or Zomentum request")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        with self._run_lock:
            if self._run_kaseya is not None:
                self._run_kaseya.close()
                self._run_kaseya = None
            if self._run_zomentum is not None:
                self._run_zomentum.close()
                self._run_zomentum = None
        with self._run_database_lock:
            self._run_tables_ready = False
            self._run_resolved = None
        self._run_interrupted.clear()

    def zomentum_client(self) -> ZomentumClient:
        """The run's Zomentum client, made on first use and closed when the run ends (callers do not close
        it). Its `counter` adds up over the run: a step reports `usage().since(<reading at its start>)`."""
        with self._run_lock:
            if self._run_zomentum is None:
                zomentum = self.config().zomentum
                assert zomentum is not None
                self._run_zomentum = ZomentumClient(zomentum, checkpoint=self._stop_if_interrupted)
            return self._run_zomentum


class PullTuning(dg.ConfigurableResource):
    """Knobs of the hourly pull."""

    overlap_minutes: int = 15  # how far before each window the Kaseya query starts
    max_reject_share: float = 0.2  # above this share of rejected rows, the blocking check stops the load...
    min_rejects_to_block: int = 5  # ...once at least this many rows are rejected (a quiet hour's one bad row
    # is reported, not allowed to stop the load)
    # Per-product pricing: calls per pricing endpoint (= products) per run, and how old a price may get before
    # it is read again. Kaseya allows 1500 calls per hour per endpoint.
    pricing_calls_per_hour: int = 1000
    pricing_max_age_hours: int = 24
    # Requests in flight at once inside one step: per-product pricing reads (Kaseya) and the writes of a
    # load (Zomentum). The run's Kaseya extractions run side by side through one client, which also keeps
    # all their requests together to 8 in flight (`kaseya_wire.MAX_IN_FLIGHT`). Kaseya limits calls per hour
    # per endpoint (the budget), not concurrency; Zomentum publishes no limit. Both values are assumptions,
    # named with the APIs' other assumptions. At most 10: a client's session keeps 10 connections per host
    # (requests' default), and more threads would only open and drop connections.
    kaseya_concurrency: int = Field(default=8, ge=1, le=10)
    zomentum_concurrency: int = Field(default=8, ge=1, le=10)


def tenant_from_env() -> TenantResource:
    return TenantResource(
        kaseya_base_url=dg.EnvVar("KASEYA_BASE_URL"),
        kaseya_username=dg.EnvVar("KASEYA_USERNAME"),
        kaseya_password=dg.EnvVar("KASEYA_PASSWORD"),
        kaseya_tenant=dg.EnvVar("KASEYA_TENANT"),
        zomentum_base_url=dg.EnvVar("ZOMENTUM_BASE_URL"),
        zomentum_refresh_token=dg.EnvVar("ZOMENTUM_REFRESH_TOKEN"),
        settings_path=dg.EnvVar("ZK_SETTINGS"),
        duckdb_path=dg.EnvVar("ZK_DUCKDB_PATH"),
    )
