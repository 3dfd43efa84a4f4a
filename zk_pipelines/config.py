"""The one configuration object of a tenant: credentials, settings file, DuckDB file.

Everything tenant-specific lives behind `TenantConfig`; nothing is read from the environment at import
time. `TenantConfig.from_env` is the only place that knows the environment variable names, and the
Dagster resources (defs/resources.py) build the same object from `EnvVar`s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zk_pipelines.secrets import Secret


class ConfigurationError(ValueError):
    """A required setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class KaseyaCredentials:
    base_url: str
    username: str
    password: Secret
    tenant: str
    mfa_code: Secret | None = None
    # Client-side hourly budget per route template; Kaseya allows 1500 calls/hour/endpoint.
    hourly_call_budget: int = 1400

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
    duckdb_path: Path = field(default=Path("zk_pipelines.duckdb"))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TenantConfig:
        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigurationError(f"environment variable {name} is not set")
            return value

        kaseya = KaseyaCredentials(
            base_url=required("KASEYA_BASE_URL"),
            username=required("KASEYA_USERNAME"),
            password=Secret(required("KASEYA_PASSWORD")),
            tenant=required("KASEYA_TENANT"),
            mfa_code=Secret(env["KASEYA_MFA_CODE"]) if env.get("KASEYA_MFA_CODE") else None,
            hourly_call_budget=int(env.get("KASEYA_HOURLY_CALL_BUDGET", "1400")),
        )
        zomentum = None
        if env.get("ZOMENTUM_BASE_URL"):
            zomentum = ZomentumCredentials(
                base_url=required("ZOMENTUM_BASE_URL"),
                refresh_token=Secret(required("ZOMENTUM_REFRESH_TOKEN")),
                access_token=Secret(env["ZOMENTUM_ACCESS_TOKEN"]) if env.get("ZOMENTUM_ACCESS_TOKEN") else None,
            )
        return cls(
            kaseya=kaseya,
            zomentum=zomentum,
            settings_path=Path(env["ZK_SETTINGS"]) if env.get("ZK_SETTINGS") else None,
            duckdb_path=Path(env.get("ZK_DUCKDB_PATH", "zk_pipelines.duckdb")),
        )

    def secrets(self) -> tuple[Secret, ...]:
        return self.kaseya.secrets() + (self.zomentum.secrets() if self.zomentum else ())
