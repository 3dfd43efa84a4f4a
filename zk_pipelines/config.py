"""The one configuration object of a tenant: credentials, settings file, DuckDB file.

Everything tenant-specific lives behind `TenantConfig`; nothing is read from the environment at import
time. `TenantVariables` is the one list of the environment variables a tenant is configured by (their
names, never their values): `TenantConfig.from_env` reads them for the `zk` commands, and the Dagster
resources (defs/resources.py) bind the same names as `EnvVar`s, so that a run's stored configuration holds
the variables' names and never a secret.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from zk_pipelines.domain.errors import ConfigurationError
from zk_pipelines.secrets import Secret

if TYPE_CHECKING:
    from zk_pipelines.storage.state_store import StateStore


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
    state_url: str = "ZK_STATE_URL"  # optional (PostgreSQL state store); secret: it may hold a password
    state_schema: str = "ZK_STATE_SCHEMA"  # optional: the tenant's schema in the PostgreSQL state store

    def with_prefix(self, prefix: str) -> TenantVariables:
        return TenantVariables(**{f.name: prefix + getattr(self, f.name) for f in fields(self)})

    def names(self) -> tuple[str, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def secrets(self) -> tuple[str, ...]:
        return (self.kaseya_password, self.kaseya_mfa_code, self.zomentum_refresh_token, self.zomentum_access_token,
                self.state_url)


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
    allow_insecure_http: bool = False  # ZK_ALLOW_INSECURE_HTTP (see `check_base_url`)
    # Where the login's values were read, as a refused login names them (never a value): the single tenant's
    # variables, or a registry tenant's sources (`Tenant.config`).
    origin: str = field(default=(f"{TENANT_VARIABLES.kaseya_username}, {TENANT_VARIABLES.kaseya_password} and "
                                 f"{TENANT_VARIABLES.kaseya_tenant} (the company name)"), compare=False)

    def __post_init__(self) -> None:
        check_base_url(self.base_url, TENANT_VARIABLES.kaseya_base_url, allow_insecure_http=self.allow_insecure_http)
        check_call_budget(self.hourly_call_budget)

    def secrets(self) -> tuple[Secret, ...]:
        return tuple(s for s in (self.password, self.mfa_code) if s)


@dataclass(frozen=True)
class ZomentumCredentials:
    base_url: str
    refresh_token: Secret
    access_token: Secret | None = None
    allow_insecure_http: bool = False  # ZK_ALLOW_INSECURE_HTTP (see `check_base_url`)
    # Where the refresh token was read, as a refusal names it (a description: not part of the credentials' value).
    origin: str = field(default=TENANT_VARIABLES.zomentum_refresh_token, compare=False)

    def __post_init__(self) -> None:
        check_base_url(self.base_url, TENANT_VARIABLES.zomentum_base_url,
                       allow_insecure_http=self.allow_insecure_http)

    def secrets(self) -> tuple[Secret, ...]:
        return tuple(s for s in (self.refresh_token, self.access_token) if s)


@dataclass(frozen=True)
class TenantConfig:
    kaseya: KaseyaCredentials
    zomentum: ZomentumCredentials | None = None
    settings_path: Path | None = None
    duckdb_path: Path = field(default=Path(DEFAULT_DUCKDB_PATH))
    state_url: Secret | None = None  # the PostgreSQL state store; None: the state lives in the DuckDB file
    state_schema: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], variables: TenantVariables = TENANT_VARIABLES) -> TenantConfig:
        check_environment_text(env, (*variables.names(), INSECURE_HTTP_VARIABLE))
        insecure = allow_insecure_http(env)

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
            allow_insecure_http=insecure,
        )
        zomentum = None
        if optional(variables.zomentum_base_url):
            access_token = optional(variables.zomentum_access_token)
            zomentum = ZomentumCredentials(
                base_url=required(variables.zomentum_base_url),
                refresh_token=Secret(required(variables.zomentum_refresh_token)),
                access_token=Secret(access_token) if access_token else None,
                allow_insecure_http=insecure,
            )
        settings = optional(variables.settings_path)
        return cls(
            kaseya=kaseya,
            zomentum=zomentum,
            settings_path=Path(settings) if settings else None,
            duckdb_path=Path(optional(variables.duckdb_path) or DEFAULT_DUCKDB_PATH),
            state_url=Secret(state_url) if (state_url := optional(variables.state_url)) else None,
            state_schema=optional(variables.state_schema),
        )

    def secrets(self) -> tuple[Secret, ...]:
        return (self.kaseya.secrets() + (self.zomentum.secrets() if self.zomentum else ())
                + ((self.state_url,) if self.state_url else ()))

    def state_store(self) -> StateStore:
        """The tenant's state store, migrated (and, for PostgreSQL, its DuckDB replica brought up to date)."""
        from zk_pipelines.storage.state_store import open_store

        return open_store(self.duckdb_path, self.state_url.reveal() if self.state_url else None, self.state_schema)


# --------------------------------------------------------------------------------------------------------
# Validation: a configuration value that cannot be used is refused with one line naming it, before anything is
# sent. Values are shown with any credential masked.

INSECURE_HTTP_VARIABLE = "ZK_ALLOW_INSECURE_HTTP"  # one for the deployment, not per tenant
ENVIRONMENT_VARIABLES = (*TENANT_VARIABLES.names(), INSECURE_HTTP_VARIABLE)
SECRET_VARIABLES = TENANT_VARIABLES.secrets()
_TRUE, _FALSE = ("1", "true", "yes"), ("", "0", "false", "no")


def check_environment_text(env: Mapping[str, str], names: Iterable[str]) -> None:
    """Python hands bytes that are not UTF-8 on as lone surrogates, which fail later, far from the variable
    (in an HTTP header, a print, a path)."""
    for name in names:
        value = env.get(name)
        if value is None:
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigurationError(f"environment variable {name} is not UTF-8 text") from None


def allow_insecure_http(env: Mapping[str, str]) -> bool:
    value = env.get(INSECURE_HTTP_VARIABLE, "").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ConfigurationError(f"environment variable {INSECURE_HTTP_VARIABLE} is {value!r}; expected 1 or 0")
    return value in _TRUE


def hourly_call_budget(text: str | None, variable: str = TENANT_VARIABLES.kaseya_hourly_call_budget) -> int:
    """The Kaseya calls per hour per endpoint the tenant's clients allow themselves (the variable as written)."""
    if text is None:
        return DEFAULT_HOURLY_CALL_BUDGET
    try:
        return check_call_budget(int(text))
    except (ValueError, ConfigurationError):
        raise ConfigurationError(f"environment variable {variable} is {text!r}; expected a whole number of calls per "
                                 "hour, from 1 to 1500 (Kaseya allows 1500)") from None


def check_call_budget(budget: object) -> int:
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= 1500:
        raise ConfigurationError(f"KASEYA_HOURLY_CALL_BUDGET {budget!r}: expected a whole number of calls per hour, "
                                 "from 1 to 1500 (Kaseya allows 1500)")
    return budget


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: this machine (the sandboxes), where plain http crosses no network."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(value: str) -> str:
    """The value as a message may show it: a userinfo part (`user:password@`) masked."""
    scheme, separator, rest = value.partition("://")
    if separator and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return value


def check_base_url(value: object, variable: str, *, allow_insecure_http: bool = False) -> str:
    """A base URL the clients may send credentials to: https, or http to a loopback address (or anywhere when
    ZK_ALLOW_INSECURE_HTTP=1, for a TLS-terminating proxy on a trusted network); a host, a valid port, no
    credentials of its own (requests would send them as Basic auth), no query or fragment."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{variable} is empty; expected an address such as https://api.example.com")
    shown = _shown(value)
    problem = None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:  # a port out of range or not a number, a malformed IPv6 host
        parts, port, problem = None, None, f"it is not a valid address ({exc})"
    if problem is None and any(c.isspace() or ord(c) < 32 for c in value):
        problem = "it contains spaces or control characters"
    elif problem is None and parts.scheme.lower() not in ("http", "https"):
        problem = f"the scheme must be https, not {parts.scheme or 'missing'!r}"
    elif problem is None and not parts.hostname:
        problem = "it names no host"
    elif problem is None and (parts.username is not None or parts.password is not None):
        problem = "it carries credentials (user:password@); give them in their own variables"
    elif problem is None and port == 0:
        problem = "port 0 is not a port"
    elif problem is None and (parts.query or parts.fragment or value.rstrip().endswith(("?", "#"))):
        problem = "it has a query or fragment; give the address only"
    elif problem is None and parts.scheme.lower() == "http" and not allow_insecure_http \
            and not is_loopback(parts.hostname):
        problem = (f"plain http would send credentials unencrypted to {parts.hostname}; use https (http is accepted "
                   f"for loopback addresses, or anywhere with {INSECURE_HTTP_VARIABLE}=1)")
    if problem is not None:
        raise ConfigurationError(f"{variable} {shown!r} cannot be used: {problem}")
    return value
