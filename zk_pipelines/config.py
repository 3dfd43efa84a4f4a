"""The one configuration object of a tenant: credentials, settings file, DuckDB file.

Everything tenant-specific lives behind `TenantConfig`; nothing is read from the environment at import
time. `TenantVariables` is the one list of the environment variables a tenant is configured by (their
names, never their values): `TenantConfig.from_env` reads them for the `zk` commands, and the Dagster
resources (defs/resources.py) bind the same names as `EnvVar`s, so that a run's stored configuration holds
the variables' names and never a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from zk_pipelines.secrets import Secret


class ConfigurationError(ValueError):
    """A required setting is missing or malformed; the message names it."""


DEFAULT_HOURLY_CALL_BUDGET = 1400  # Kaseya allows 1500 calls per hour per endpoint: room for retries and others
DEFAULT_DUCKDB_PATH = "zk_pipelines.duckdb"


@dataclass(frozen=True)
class TenantVariables:
    """The names of the environment variables one tenant is configured by. The defaults are the single
    tenant's; `with_prefix` names another tenant's set (`ACME_KASEYA_PASSWORD`, ...)."""

    kaseya_base_url: str = "KASEYA_BASE_URL"
    kaseya_username: str = "KASEYA_USERNAME"
    kaseya_password: str = "KASEYA_PASSWORD"  # secret
    kaseya_tenant: str = "KASEYA_TENANT"
    kaseya_mfa_code: str = "KASEYA_MFA_CODE"  # secret, optional
    kaseya_hourly_call_budget: str = "KASEYA_HOURLY_CALL_BUDGET"  # optional
    zomentum_base_url: str = "ZOMENTUM_BASE_URL"
    zomentum_refresh_token: str = "ZOMENTUM_REFRESH_TOKEN"  # secret
    zomentum_access_token: str = "ZOMENTUM_ACCESS_TOKEN"  # secret, optional
    settings_path: str = "ZK_SETTINGS"
    duckdb_path: str = "ZK_DUCKDB_PATH"  # optional

    def with_prefix(self, prefix: str) -> TenantVariables:
        return TenantVariables(**{f.name: prefix + getattr(self, f.name) for f in fields(self)})

    def names(self) -> tuple[str, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))


TENANT_VARIABLES = TenantVariables()


@dataclass(frozen=True)
class KaseyaCredentials:
    base_url: str
    username: str
    password: Secret
    tenant: str
    mfa_code: Secret | None = None
    # Client-side hourly budget per route template; Kaseya allows 1500 calls/hour/endpoint.
    hourly_call_budget: int = DEFAULT_HOURLY_CALL_BUDGET

    def secrets(self) -> tuple[Secret, ...]:
        return tuple(s for s in (self.password, self.mfa_code) if s)


@dataclass(frozen=True)
class ZomentumCredentials:
    base_url: str
    refresh_token: Secret
    access_token: Secret | None = None

    def secrets(self) -> tuple[Secret, ...]:
        return tuple(s for s in (self.refresh_token, self.access_token) if s)


@dataclass(frozen=True)
class TenantConfig:
    kaseya: KaseyaCredentials
    zomentum: ZomentumCredentials | None = None
    settings_path: Path | None = None
    duckdb_path: Path = field(default=Path(DEFAULT_DUCKDB_PATH))

    @classmethod
    def from_env(cls, env: Mapping[str, str], variables: TenantVariables = TENANT_VARIABLES) -> TenantConfig:
        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigurationError(f"environment variable {name} is not set")
            return value

        def optional(name: str) -> str | None:
            return env.get(name, "").strip() or None

        mfa_code = optional(variables.kaseya_mfa_code)
        kaseya = KaseyaCredentials(
            base_url=required(variables.kaseya_base_url),
            username=required(variables.kaseya_username),
            password=Secret(required(variables.kaseya_password)),
            tenant=required(variables.kaseya_tenant),
            mfa_code=Secret(mfa_code) if mfa_code else None,
            hourly_call_budget=hourly_call_budget(optional(variables.kaseya_hourly_call_budget),
                                                  variables.kaseya_hourly_call_budget),
        )
        zomentum = None
        if optional(variables.zomentum_base_url):
            access_token = optional(variables.zomentum_access_token)
            zomentum = ZomentumCredentials(
                base_url=required(variables.zomentum_base_url),
                refresh_token=Secret(required(variables.zomentum_refresh_token)),
                access_token=Secret(access_token) if access_token else None,
            )
        settings = optional(variables.settings_path)
        return cls(
            kaseya=kaseya,
            zomentum=zomentum,
            settings_path=Path(settings) if settings else None,
            duckdb_path=Path(optional(variables.duckdb_path) or DEFAULT_DUCKDB_PATH),
        )

    def secrets(self) -> tuple[Secret, ...]:
        return self.kaseya.secrets() + (self.zomentum.secrets() if self.zomentum else ())


def hourly_call_budget(text: str | None, variable: str = TENANT_VARIABLES.kaseya_hourly_call_budget) -> int:
    """The Kaseya calls per hour per endpoint the client allows itself: a whole number from 1 to 1500."""
    if text is None:
        return DEFAULT_HOURLY_CALL_BUDGET
    try:
        value = int(text)
    except ValueError:
        raise ConfigurationError(f"{variable} must be a whole number of calls per hour (1-1500), not {text!r}") from None
    if not 1 <= value <= 1500:
        raise ConfigurationError(f"{variable} must be between 1 and 1500 calls per hour (Kaseya allows 1500), "
                                 f"not {value}")
    return value
