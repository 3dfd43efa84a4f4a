"""Dagster resources: one per system (Kaseya, Zomentum, the tenant's state store), and the pull's knobs.

Configuration enters here from the environment, always as `EnvVar`s named by `config.TenantVariables`: a
run's stored configuration (its snapshot in Dagster's storage) holds the variables' names, never a password
or a token. `tenant_resources` is the one place that binds them.

Each resource keeps the run's one client: Dagster initialises a fresh copy of a resource for each run (per
process), and the hourly job runs its steps in that one process (the stock in-process executor), so a run
logs in to Kaseya once and takes one Zomentum access token. Tokens stay in memory: never written to DuckDB,
never passed between processes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import dagster as dg
from pydantic import Field, PrivateAttr

from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import (
    DEFAULT_DUCKDB_PATH,
    INSECURE_HTTP_VARIABLE,
    TENANT_VARIABLES,
    ConfigurationError,
    KaseyaCredentials,
    TenantVariables,
    ZomentumCredentials,
    allow_insecure_http,
    hourly_call_budget,
)
from zk_pipelines.domain.entities import ZOMENTUM_TARGETS
from zk_pipelines.domain.settings import IntegrationSettings
from zk_pipelines.domain.settings_check import ResolvedSettings
from zk_pipelines.domain.settings_file import load_settings, settings_from_text
from zk_pipelines.pull.run_settings import resolved_for_step
from zk_pipelines.secrets import Secret
from zk_pipelines.storage.budget_store import DuckDBBudgetStore, PostgresBudgetStore, budget_store_for
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import ensure_pull_tables
from zk_pipelines.storage.state_store import PostgresStateStore, StateStore, hydrate, open_store, unbind
from zk_pipelines.tenants import FromEnv, FromFile, SecretSource, Tenant, TextSource, read_secret_file


class StateStoreResource(dg.ConfigurableResource):
    """The tenant's state (the id map, the ledgers, snapshot hashes, the Kaseya budget, the resolved settings)
    and its staging tables, in one DuckDB file; and the tenant's settings file."""

    duckdb_path: str = DEFAULT_DUCKDB_PATH
    settings_path: str
    # ZK_STATE_URL / ZK_STATE_SCHEMA: the PostgreSQL state store (storage/state_store.py); without them the
    # durable state stays in the DuckDB file.
    state_url: str | None = None
    state_url_file: str | None = None  # a registry tenant's `state_url: {file: PATH}`: the path, never the URL
    state_schema: str | None = None
    # The systems' addresses: the links' base URLs when the settings file does not set them.
    kaseya_base_url: str | None = None
    zomentum_base_url: str | None = None

    # What every step of a run would otherwise redo: creating the pull's tables (an open of the DuckDB file and
    # some thirty CREATE ... IF NOT EXISTS) and reading back the run's resolved settings.
    _tables_ready: bool = PrivateAttr(default=False)
    _store: StateStore | None = PrivateAttr(default=None)
    _resolved: tuple[str, ResolvedSettings] | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def database_path(self) -> Path:
        return Path(self.duckdb_path)

    def database(self) -> Path:
        """The DuckDB file with the pull's tables in place: created by the run's first step that asks, with the
        state store migrated. With a PostgreSQL state store the file is its replica, brought up to date with
        what other workers wrote at every ask (a few queries when nothing changed)."""
        with self._lock:
            if not self._tables_ready:
                url, schema = self.state_location()
                self._store = open_store(self.database_path, url.reveal() if url else None, schema)
                with connect(self.database_path) as connection:
                    ensure_pull_tables(connection, [target.name for target in ZOMENTUM_TARGETS])
                self._tables_ready = True
            elif isinstance(self._store, PostgresStateStore):
                hydrate(self.database_path, self._store)
        return self.database_path

    def state_location(self) -> tuple[Secret | None, str | None]:
        """The PostgreSQL state store's URL and schema (None: the state lives in the DuckDB file)."""
        return _secret(self.state_url, self.state_url_file, "state_url"), self.state_schema

    def store(self) -> StateStore:
        self.database()
        assert self._store is not None
        return self._store

    def settings_file(self) -> Path:
        if not self.settings_path:
            raise ConfigurationError(f"{TENANT_VARIABLES.settings_path} is not set (path of the settings YAML)")
        return Path(self.settings_path)

    def system_base_urls(self) -> tuple[str | None, str | None]:
        """Kaseya's and Zomentum's base URLs: the links' when the settings file does not set them."""
        return self.kaseya_base_url, self.zomentum_base_url

    def settings(self) -> IntegrationSettings:
        """The integration settings, validated; names are resolved by `settings_resolved`."""
        return load_settings(self.settings_file()).for_systems(*self.system_base_urls())

    def resolved_settings(self) -> ResolvedSettings:
        """The latest resolution `settings_resolved` stored (this run's, when the run materialized it), for the
        settings file as it reads now (`resolved_for_step`), read from DuckDB once per run. The file is read at
        every call: an edit during the run fails the step as `resolved_for_step` does."""
        path = self.settings_file()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            load_settings(path)  # raises SettingsError naming the file and what is wrong
            raise
        with self._lock:
            if self._resolved is not None and self._resolved[0] == text:
                return self._resolved[1]
        settings = settings_from_text(text, str(path))
        resolved = resolved_for_step(self.database(), path, settings)
        resolved = replace(resolved, settings=resolved.settings.for_systems(*self.system_base_urls()))
        with self._lock:
            self._resolved = (text, resolved)
        return resolved

    def budget_store(self) -> DuckDBBudgetStore | PostgresBudgetStore:
        """Where the tenant's Kaseya calls per endpoint are counted across runs, pushes and commands."""
        return budget_store_for(self.database(), self.store())

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        with self._lock:
            self._tables_ready = False
            self._resolved = None
            if self._store is not None:
                unbind(self.database_path)
                self._store = None


def _secret(value: str | None, file: str | None, field: str) -> Secret | None:
    """A secret bound as an EnvVar's value, or as the path of a mounted secret file, read now (a run's start)."""
    if value:
        return Secret(value)
    if file:
        try:
            return Secret(read_secret_file(file))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{field}: {exc}") from None
    return None


def _required_secret(value: str | None, file: str | None, field: str, what: str) -> Secret:
    """`_secret`, for a secret the system cannot be called without (`what`: "a password", "a token")."""
    secret = _secret(value, file, field)
    if secret is None:
        raise ConfigurationError(f"{field}: neither {what} nor a secret file is bound")
    return secret


class _ClosableClient(Protocol):
    def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=_ClosableClient)


class _OneClientPerRun(dg.ConfigurableResource):
    """A system's resource that keeps the run's one client: made on first use (a run that never calls the
    system never logs in), shared by the run's threads, closed when the run ends (callers do not close it)."""

    _client: Any = PrivateAttr(default=None)  # a KaseyaClient or a ZomentumClient, by the subclass
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def run_client(self, make: Callable[[], ClientT]) -> ClientT:
        with self._lock:
            if self._client is None:
                self._client = make()
            return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class KaseyaResource(_OneClientPerRun):
    """Kaseya BMS: the API user's credentials (EnvVars, or the paths of mounted secret files) and the tenant's
    hourly call budget per endpoint."""

    base_url: str
    username: str
    password: str | None = None
    password_file: str | None = None  # a registry tenant's `{file: PATH}`: the path, never the password
    tenant: str
    mfa_code: str | None = None
    mfa_code_file: str | None = None
    hourly_call_budget: str | None = None  # KASEYA_HOURLY_CALL_BUDGET as written; checked when a run starts
    allow_insecure_http: str | None = None  # ZK_ALLOW_INSECURE_HTTP as written (config.check_base_url)

    def credentials(self) -> KaseyaCredentials:
        return KaseyaCredentials(
            base_url=self.base_url, username=self.username, tenant=self.tenant,
            password=_required_secret(self.password, self.password_file, "kaseya.password", "a password"),
            mfa_code=_secret(self.mfa_code, self.mfa_code_file, "kaseya.mfa_code"),
            hourly_call_budget=hourly_call_budget(self.hourly_call_budget),
            allow_insecure_http=allow_insecure_http({INSECURE_HTTP_VARIABLE: self.allow_insecure_http or ""}),
        )

    def client(self, state: StateStoreResource) -> KaseyaClient:
        """The run's Kaseya client (one login; the tenant's budget, kept in the state store, shared with every
        other run and push of the tenant). Its stats add up over the run; a step counts its own calls apart
        (`step_usage`)."""
        return self.run_client(lambda: KaseyaClient(self.credentials(), budget_store=state.budget_store()))


class ZomentumResource(_OneClientPerRun):
    """Zomentum: the API user's refresh token (an EnvVar, or the path of a mounted secret file), and an optional
    access token to start with."""

    base_url: str
    refresh_token: str | None = None
    refresh_token_file: str | None = None
    access_token: str | None = None
    access_token_file: str | None = None
    allow_insecure_http: str | None = None  # ZK_ALLOW_INSECURE_HTTP as written (config.check_base_url)

    def credentials(self) -> ZomentumCredentials:
        return ZomentumCredentials(
            base_url=self.base_url,
            refresh_token=_required_secret(self.refresh_token, self.refresh_token_file, "zomentum.refresh_token",
                                           "a token"),
            access_token=_secret(self.access_token, self.access_token_file, "zomentum.access_token"),
            allow_insecure_http=allow_insecure_http({INSECURE_HTTP_VARIABLE: self.allow_insecure_http or ""}))

    def client(self) -> ZomentumClient:
        """The run's Zomentum client: one access token for the run, since each new token invalidates the one
        before it. Its counter adds up over the run: a step reports `usage().since(<reading at its start>)`."""
        return self.run_client(lambda: ZomentumClient(self.credentials()))


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
    # Records a staging rejected or held back for a parent, read again by id (one call each, on the entity's
    # by-id endpoint) by each later run of staging, rejected first: a fix made in Kaseya after their hour.
    held_back_reads_per_run: int = Field(default=200, ge=0, le=1400)
    # Requests in flight at once inside one step: Kaseya reads (the lists of a run, per-product pricing) and
    # the writes of a load (Zomentum). The Kaseya client also keeps all its requests to 8 in flight
    # (`kaseya_wire.MAX_IN_FLIGHT`). Kaseya limits calls per hour per endpoint (the budget), not concurrency;
    # Zomentum publishes no limit. Both values are assumptions, named with the APIs' other assumptions. At most
    # 10: a client's session keeps 10 connections per host (requests' default), and more threads would only
    # open and drop connections.
    kaseya_concurrency: int = Field(default=8, ge=1, le=10)
    zomentum_concurrency: int = Field(default=8, ge=1, le=10)


def _bound(name: str, env: Mapping[str, str], optional: bool = False) -> str | None:
    """The variable as an EnvVar (resolved when a run starts, from the run worker's environment); an optional
    one only when it is set where the code location loads, else its default."""
    if optional and not (env.get(name) or "").strip():
        return None
    return dg.EnvVar(name)


def tenant_resources(variables: TenantVariables = TENANT_VARIABLES, env: Mapping[str, str] | None = None
                     ) -> dict[str, dg.ConfigurableResource]:
    """The tenant's resources, every value bound to its environment variable by name."""
    env = os.environ if env is None else env
    return {
        "kaseya": KaseyaResource(
            base_url=dg.EnvVar(variables.kaseya_base_url), username=dg.EnvVar(variables.kaseya_username),
            password=dg.EnvVar(variables.kaseya_password), tenant=dg.EnvVar(variables.kaseya_tenant),
            mfa_code=_bound(variables.kaseya_mfa_code, env, optional=True),
            hourly_call_budget=_bound(variables.kaseya_hourly_call_budget, env, optional=True),
            allow_insecure_http=_bound(INSECURE_HTTP_VARIABLE, env, optional=True),
        ),
        "zomentum": ZomentumResource(
            base_url=dg.EnvVar(variables.zomentum_base_url),
            refresh_token=dg.EnvVar(variables.zomentum_refresh_token),
            access_token=_bound(variables.zomentum_access_token, env, optional=True),
            allow_insecure_http=_bound(INSECURE_HTTP_VARIABLE, env, optional=True),
        ),
        "state": StateStoreResource(
            settings_path=dg.EnvVar(variables.settings_path),
            kaseya_base_url=dg.EnvVar(variables.kaseya_base_url),
            zomentum_base_url=dg.EnvVar(variables.zomentum_base_url),
            **({"duckdb_path": dg.EnvVar(variables.duckdb_path)}
               if _bound(variables.duckdb_path, env, optional=True) else {}),
            state_url=_bound(variables.state_url, env, optional=True),
            state_schema=_bound(variables.state_schema, env, optional=True),
        ),
    }


def _value(source: TextSource | Path | int | None) -> object:
    """A registry value as a resource field: text as written (no secret is text), an environment source as the
    EnvVar of its name."""
    if isinstance(source, FromEnv):
        return dg.EnvVar(source.name)
    return None if source is None else str(source)


def _secret_fields(field: str, source: SecretSource | None) -> dict[str, object]:
    if isinstance(source, FromFile):
        return {f"{field}_file": str(source.path)}
    return {field: dg.EnvVar(source.name)} if source is not None else {}


def registry_tenant_resources(tenant: Tenant, env: Mapping[str, str] | None = None
                              ) -> dict[str, dg.ConfigurableResource]:
    """A registry tenant's resources: text values as the registry writes them, environment sources as EnvVars
    (resolved in the run's process), secret files by their path (read there when the run starts). What Dagster
    stores of a run holds names and paths, never a secret."""
    env = os.environ if env is None else env
    kaseya, zomentum = tenant.kaseya, tenant.zomentum
    insecure = _bound(INSECURE_HTTP_VARIABLE, env, optional=True)  # one for the deployment
    return {
        "kaseya": KaseyaResource(
            base_url=_value(kaseya.base_url), username=_value(kaseya.username), tenant=_value(kaseya.tenant),
            hourly_call_budget=_value(kaseya.hourly_call_budget), allow_insecure_http=insecure,
            **_secret_fields("password", kaseya.password), **_secret_fields("mfa_code", kaseya.mfa_code)),
        "zomentum": ZomentumResource(
            base_url=_value(zomentum.base_url), allow_insecure_http=insecure,
            **_secret_fields("refresh_token", zomentum.refresh_token),
            **_secret_fields("access_token", zomentum.access_token)),
        "state": StateStoreResource(
            settings_path=_value(tenant.settings), duckdb_path=_value(tenant.state),
            kaseya_base_url=_value(kaseya.base_url), zomentum_base_url=_value(zomentum.base_url),
            state_schema=_value(tenant.state_schema),
            **(_secret_fields("state_url", tenant.state_url) if not isinstance(tenant.state_url, str)
               else {"state_url": tenant.state_url})),
    }
