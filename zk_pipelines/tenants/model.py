"""A tenant of the deployment: its name, its onboarding hour, and where each of its values comes from.

A `Tenant` holds what a tenant's Dagster definitions need and never a secret's value: a password or token is
named by where it lives, an environment variable (`FromEnv`) or a mounted secret file (`FromFile`, a
Kubernetes Secret's key), and read only when a run needs it (`Tenant.config`, or the resources
`defs/resources.py` binds). `single_tenant` is the deployment without a registry: today's one tenant, every value
from the variables `config.TenantVariables` names. The registry file is read by `tenants/registry.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from zk_pipelines.config import (
    DEFAULT_DUCKDB_PATH,
    TENANT_VARIABLES,
    ConfigurationError,
    KaseyaCredentials,
    TenantConfig,
    TenantVariables,
    ZomentumCredentials,
    allow_insecure_http,
    check_call_budget,
)
from zk_pipelines.secrets import Secret

PARTITIONS_START_VARIABLE = "ZK_PARTITIONS_START"  # the single tenant's onboarding hour
DEFAULT_PARTITIONS_START = "2026-08-01-00:00"
DEFAULT_TENANT = "default"  # the one tenant a deployment without a registry serves
HOUR_FORMAT = "%Y-%m-%d-%H:00"
# A secret file is a Kubernetes Secret's key, or a file an operator wrote: bounded, so a wrong path (a log, a
# device) fails with a reason instead of reading without end.
MAX_SECRET_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class FromEnv:
    """A value read from an environment variable of the process that needs it (a run worker, a run pod)."""

    name: str

    def __str__(self) -> str:
        return f"environment variable {self.name}"


@dataclass(frozen=True)
class FromFile:
    """A secret read from a file (a mounted Kubernetes Secret's key), surrounding whitespace dropped."""

    path: Path

    def __str__(self) -> str:
        return f"secret file {self.path}"


SecretSource = FromEnv | FromFile
TextSource = str | FromEnv


@dataclass(frozen=True)
class KaseyaSources:
    base_url: TextSource
    username: TextSource
    tenant: TextSource  # the Kaseya company name
    password: SecretSource
    mfa_code: SecretSource | None = None
    hourly_call_budget: int | FromEnv | None = None  # None: config.DEFAULT_HOURLY_CALL_BUDGET


@dataclass(frozen=True)
class ZomentumSources:
    base_url: TextSource
    refresh_token: SecretSource
    access_token: SecretSource | None = None


@dataclass(frozen=True)
class Tenant:
    """One tenant of the deployment: what its Dagster definitions need, never a secret's value."""

    key: str  # names its assets' prefix, its runs' `zk/pull` and `zk/push` tags, its Kubernetes Secret
    partitions_start: str  # YYYY-MM-DD-HH:00, UTC: the onboarding hour
    settings: Path | FromEnv  # the settings file (absolute when the registry named it)
    state: Path | TextSource  # the tenant's DuckDB file (absolute when the registry named it); with a
    # PostgreSQL state store, this worker's replica of it
    kaseya: KaseyaSources
    zomentum: ZomentumSources
    state_url: SecretSource | str | None = None  # the PostgreSQL state store (storage/state_store.py), if any
    state_schema: TextSource | None = None  # the tenant's schema there

    def secret_sources(self) -> dict[str, SecretSource]:
        """Every source of a secret, by its field in the registry (`kaseya.password`)."""
        named = {"kaseya.password": self.kaseya.password, "kaseya.mfa_code": self.kaseya.mfa_code,
                 "zomentum.refresh_token": self.zomentum.refresh_token,
                 "zomentum.access_token": self.zomentum.access_token}
        if self.state_url is not None and not isinstance(self.state_url, str):  # it may carry a password
            named["state_url"] = self.state_url
        return {field: source for field, source in named.items() if source is not None}

    def origin_of(self, *fields: str) -> str:
        """Registry fields and where each value is read (a variable, a file, the registry), never a value: what a
        message asking a person to fix the tenant's credentials names."""
        named = []
        for field in fields:
            system, _, name = field.partition(".")
            source = getattr(self.kaseya if system == "kaseya" else self.zomentum, name)
            named.append(f"{field} ({source if isinstance(source, FromEnv | FromFile) else 'in the registry'})")
        listed = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
        return f"tenant {self.key}'s {listed}"  # a key is lowercase letters, digits and underscores

    def login_origin(self) -> str:
        """What a refused Kaseya login asks a person to check."""
        mfa = ["kaseya.mfa_code"] if self.kaseya.mfa_code else []
        return self.origin_of("kaseya.username", "kaseya.password", *mfa, "kaseya.tenant")

    def config(self, env: Mapping[str, str]) -> TenantConfig:
        """The tenant's configuration with every source read (environment variables from `env`, secret files
        from disk), as `zk` commands and tests use it; a missing or unreadable value is a `ConfigurationError`
        naming the tenant, the field and the source, never the value."""
        insecure = allow_insecure_http(env)

        def text(field: str, source: TextSource | None) -> str | None:
            return _read(self.key, field, source, env)

        def secret(field: str, source: SecretSource | None, required: bool = True) -> Secret | None:
            value = _read(self.key, field, source, env, required)
            return Secret(value) if value is not None else None

        budget = self.kaseya.hourly_call_budget
        if isinstance(budget, FromEnv):
            budget_text = _read(self.key, "kaseya.hourly_call_budget", budget, env, required=False)
            try:
                budget = None if budget_text is None else check_call_budget(int(budget_text))
            except (ValueError, ConfigurationError):
                raise ConfigurationError(f"tenant {self.key!r}, kaseya.hourly_call_budget: {budget} is "
                                         f"{budget_text!r}; expected a whole number from 1 to 1500") from None
        try:
            kaseya = KaseyaCredentials(
                base_url=text("kaseya.base_url", self.kaseya.base_url),
                username=text("kaseya.username", self.kaseya.username),
                tenant=text("kaseya.tenant", self.kaseya.tenant),
                password=secret("kaseya.password", self.kaseya.password),
                mfa_code=secret("kaseya.mfa_code", self.kaseya.mfa_code, required=False),
                **({"hourly_call_budget": budget} if budget is not None else {}),
                allow_insecure_http=insecure, origin=self.login_origin())
            zomentum = ZomentumCredentials(
                base_url=text("zomentum.base_url", self.zomentum.base_url),
                refresh_token=secret("zomentum.refresh_token", self.zomentum.refresh_token),
                access_token=secret("zomentum.access_token", self.zomentum.access_token, required=False),
                allow_insecure_http=insecure, origin=self.origin_of("zomentum.refresh_token"))
        except ConfigurationError as exc:
            if str(exc).startswith(f"tenant {self.key!r}"):
                raise
            raise ConfigurationError(f"tenant {self.key!r}: {exc}") from None
        state_url = self.state_url if isinstance(self.state_url, str) else secret("state_url", self.state_url)
        return TenantConfig(kaseya=kaseya, zomentum=zomentum, settings_path=Path(text("settings", self.settings)),
                            duckdb_path=Path(text("state", self.state)),
                            state_url=Secret(state_url) if isinstance(state_url, str) else state_url,
                            state_schema=_read(self.key, "state_schema", self.state_schema, env, required=False))


    def location_variables(self, env: Mapping[str, str], variables: TenantVariables = TENANT_VARIABLES
                           ) -> dict[str, str]:
        """The tenant's settings file, state location and systems' addresses, read now, by the single tenant's
        variables (what the `zk` commands that read the state read); no credential is read."""
        values = {variables.settings_path: _read(self.key, "settings", self.settings, env),
                  variables.duckdb_path: _read(self.key, "state", self.state, env),
                  variables.state_url: _read(self.key, "state_url", self.state_url, env, required=False),
                  variables.state_schema: _read(self.key, "state_schema", self.state_schema, env, required=False),
                  variables.kaseya_base_url: _read(self.key, "kaseya.base_url", self.kaseya.base_url, env),
                  variables.zomentum_base_url: _read(self.key, "zomentum.base_url", self.zomentum.base_url, env)}
        return {name: value for name, value in values.items() if value is not None}


def read_secret_file(path: str | Path) -> str:
    """A mounted secret's value, without the newline `kubectl create secret --from-file` keeps. Errors name the
    file and the reason, never what it holds."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"secret file {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigurationError(f"secret file {path} is over {MAX_SECRET_FILE_BYTES} bytes; expected one "
                                 "password or token")
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigurationError(f"secret file {path} is not UTF-8 text") from None
    if not value:
        raise ConfigurationError(f"secret file {path} is empty")
    return value


def _read(key: str, field: str, source: TextSource | Path | FromFile | None, env: Mapping[str, str],
          required: bool = True) -> str | None:
    if source is None or isinstance(source, str | Path):
        return None if source is None else str(source)
    if isinstance(source, FromFile):
        if not required and not source.path.exists():  # an optional key the mounted Secret does not hold
            return None
        try:
            return read_secret_file(source.path)
        except ConfigurationError as exc:
            raise ConfigurationError(f"tenant {key!r}, {field}: {exc}") from None
    value = (env.get(source.name) or "").strip()
    if value:
        return value
    if required:
        raise ConfigurationError(f"tenant {key!r}, {field}: {source} is not set")
    return None


def single_tenant(env: Mapping[str, str], variables: TenantVariables = TENANT_VARIABLES) -> Tenant:
    """Today's tenant, named `default`, every value read from the variables `variables` names when a run
    needs it; the optional ones only when set here (as `defs/resources.py` binds them), and the onboarding
    hour from `ZK_PARTITIONS_START`, read now."""

    def optional(name: str) -> FromEnv | None:
        return FromEnv(name) if (env.get(name) or "").strip() else None

    start = (env.get(PARTITIONS_START_VARIABLE) or "").strip() or DEFAULT_PARTITIONS_START
    return Tenant(
        key=DEFAULT_TENANT, partitions_start=start, settings=FromEnv(variables.settings_path),
        state=optional(variables.duckdb_path) or DEFAULT_DUCKDB_PATH,
        kaseya=KaseyaSources(
            base_url=FromEnv(variables.kaseya_base_url), username=FromEnv(variables.kaseya_username),
            tenant=FromEnv(variables.kaseya_tenant), password=FromEnv(variables.kaseya_password),
            mfa_code=optional(variables.kaseya_mfa_code),
            hourly_call_budget=optional(variables.kaseya_hourly_call_budget)),
        zomentum=ZomentumSources(
            base_url=FromEnv(variables.zomentum_base_url), refresh_token=FromEnv(variables.zomentum_refresh_token),
            access_token=optional(variables.zomentum_access_token)),
        state_url=optional(variables.state_url), state_schema=optional(variables.state_schema),
    )
