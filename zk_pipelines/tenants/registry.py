"""The tenant registry: which tenants one deployment serves, and where each one's configuration comes from.

A YAML file named by `ZK_TENANTS` lists the tenants; without it, the deployment serves today's single tenant,
configured by the environment variables `config.TenantVariables` names (`single_tenant`). The registry holds
no secret: a password or token is named by where it lives, an environment variable (`{env: NAME}`) or a
mounted secret file (`{file: PATH}`, a Kubernetes Secret's key), and read only when a run needs it. The loader
refuses a secret written in the registry, and refuses two tenants that share a secret or a state location, so a
tenant's run can read only its own.

    tenants:
      acme:                                   # the tenant's name: lowercase letters, digits, underscores
        partitions_start: "2026-12-01-00:00"  # the onboarding hour (UTC): the first hourly partition
        settings: settings/acme.yaml          # relative to the registry's folder, or absolute
        state: /var/lib/zk/acme.duckdb        # the DuckDB file (with state_url: this worker's replica)
        state_url: {env: ACME_STATE_URL}      # optional: the PostgreSQL state store (README, State on PostgreSQL)
        state_schema: zk_acme                 # optional: its schema there (default zk_<tenant>)
        kaseya:
          base_url: https://api.bms.kaseya.com
          username: api@acme.example
          tenant: Acme MSP                    # the Kaseya company name
          password: {file: /var/run/secrets/zk/acme/kaseya-password}
          mfa_code: {env: ACME_KASEYA_MFA_CODE}       # optional
          hourly_call_budget: 1400                    # optional (1-1500)
        zomentum:
          base_url: https://api.zomentum.com
          refresh_token: {env: ACME_ZOMENTUM_REFRESH_TOKEN}
          access_token: {env: ACME_ZOMENTUM_ACCESS_TOKEN}   # optional

Text values (URLs, user, company, settings, state, schema) may also be `{env: NAME}`; `state_url`, which may carry a
password, is `{env: NAME}` or `{file: PATH}` (or a URL without a password). Tenants may share one state database,
each in its own schema. A `Tenant` is what a tenant's
Dagster definitions need (`tenants/model.py`).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from zk_pipelines.config import ConfigurationError
from zk_pipelines.domain.settings_file import RepeatedKeysLoader, YamlMapping, closest_names
from zk_pipelines.tenants.model import (
    HOUR_FORMAT,
    FromEnv,
    FromFile,
    KaseyaSources,
    SecretSource,
    Tenant,
    TextSource,
    ZomentumSources,
    single_tenant,
)

REGISTRY_VARIABLE = "ZK_TENANTS"
# A tenant's key names its Kubernetes Secret (`zk-tenant-<key>`, dashes for underscores: at most 63 characters).
TENANT_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
STATE_SCHEMA = re.compile(r"[a-z][a-z0-9_]{0,62}")  # a PostgreSQL schema the state store accepts


class RegistryError(ConfigurationError):
    """The registry cannot be used; the message lists every problem, each naming the tenant and the field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"tenant registry {source}: {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n"
                         f"{lines}")


def deployment_tenants(env: Mapping[str, str]) -> tuple[Tenant, ...]:
    """The tenants this deployment serves: the registry `ZK_TENANTS` names, else the environment's one tenant
    (`single_tenant`), exactly as a deployment without a registry has always run."""
    path = (env.get(REGISTRY_VARIABLE) or "").strip()
    return load_registry(Path(path)) if path else (single_tenant(env),)


def load_registry(path: Path) -> tuple[Tenant, ...]:
    """The registry file's tenants, in its order; `RegistryError` lists every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(str(path), [f"the file does not exist ({REGISTRY_VARIABLE} names it)"]) from None
    except UnicodeDecodeError:
        raise RegistryError(str(path), ["the file is not UTF-8 text"]) from None
    except OSError as exc:
        raise RegistryError(str(path), [f"the file cannot be read ({exc.strerror})"]) from None
    return registry_from_text(text, str(path), path.resolve().parent)


# Every run of a deployment reads the registry when it starts, once per resource; in a batch run, once per tenant
# too. The tenants depend on the text and the folder only (no source is read here), so a text read before is not
# parsed again.
@functools.lru_cache(maxsize=16)
def registry_from_text(text: str, source: str, folder: Path) -> tuple[Tenant, ...]:
    """The tenants of a registry's text; relative paths in it are relative to `folder`."""
    try:
        data = yaml.load(text, Loader=RepeatedKeysLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RegistryError(source, [f"not valid YAML{where} ({getattr(exc, 'problem', None) or exc})"]) from None
    except (ValueError, OverflowError, RecursionError) as exc:
        raise RegistryError(source, [f"a value YAML cannot read ({type(exc).__name__}); quote text values"]) from None
    reader = _Reader(folder)
    tenants = reader.registry(data)
    reader.check_shared(tenants)
    if reader.problems:
        raise RegistryError(source, reader.problems)
    return tenants


# --------------------------------------------------------------------------------------------------------
# Reading the registry: every problem collected, each naming the tenant and the field.

_REQUIRED = object()
_TENANT_FIELDS = {"partitions_start": _REQUIRED, "settings": _REQUIRED, "state": _REQUIRED, "state_url": None,
                  "state_schema": None, "kaseya": _REQUIRED, "zomentum": _REQUIRED}
_KASEYA_FIELDS = {"base_url": _REQUIRED, "username": _REQUIRED, "tenant": _REQUIRED, "password": _REQUIRED,
                  "mfa_code": None, "hourly_call_budget": None}
_ZOMENTUM_FIELDS = {"base_url": _REQUIRED, "refresh_token": _REQUIRED, "access_token": None}
_SECRET_HINT = "a secret is never written in the registry; name where it lives: {env: NAME} or {file: PATH}"
_STATE_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2")


def _kind(value: object) -> str:
    """What a value is, without showing it (it may be a secret written where it should not be)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "empty text" if not value.strip() else "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "nothing" if value is None else type(value).__name__


class _Reader:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.problems: list[str] = []

    def beside(self, path: str) -> Path:
        """A path the registry names: relative ones are relative to its folder; `..` resolved, so one file
        written two ways is seen as one."""
        return Path(os.path.normpath(self.folder / path))

    def problem(self, key: str | None, field: str, what: str) -> None:
        self.problems.append(f"tenant {key!r}, {field}: {what}" if key is not None else f"{field}: {what}")

    def fields(self, key: str | None, path: str, mapping: dict, allowed: Mapping[str, object]) -> None:
        """Keys written twice, unknown keys (with the closest known ones) and missing required keys."""
        for repeated, first, line in getattr(mapping, "repeated", ()):
            self.problem(key, path, f"{repeated!r} is written twice (lines {first} and {line}); keep one")
        for name in mapping:
            if name not in allowed:
                close = closest_names(str(name), list(allowed), limit=2, cutoff=0.6)
                hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
                self.problem(key, f"{path}.{name}" if path else str(name),
                             f"is not a field{hint}; expected {', '.join(allowed)}")
        for name, required in allowed.items():
            if required is _REQUIRED and mapping.get(name) is None:
                self.problem(key, f"{path}.{name}" if path else name, "is missing")

    def registry(self, data: object) -> tuple[Tenant, ...]:
        if not isinstance(data, dict):
            self.problem(None, "(top level)", f"is {_kind(data)}; expected a mapping with `tenants:`")
            return ()
        self.fields(None, "", data, {"tenants": _REQUIRED})
        entries = data.get("tenants")
        if entries is not None and (not isinstance(entries, dict) or not entries):
            self.problem(None, "tenants", f"is {_kind(entries)}; expected each tenant's name with its entry, at "
                                          "least one")
            return ()
        if isinstance(entries, YamlMapping):
            for repeated, first, line in entries.repeated:
                self.problem(str(repeated), "(name)", f"is listed twice (lines {first} and {line}); one entry a "
                                                      "tenant")
        tenants = [self.tenant(key, entry) for key, entry in (entries or {}).items()]
        return tuple(tenant for tenant in tenants if tenant is not None)

    def tenant(self, key: object, entry: object) -> Tenant | None:
        if not isinstance(key, str) or not TENANT_KEY.fullmatch(key):
            self.problem(str(key), "(name)", "expected lowercase letters, digits and underscores, starting with a "
                                             "letter, at most 40 characters")
            return None
        if not isinstance(entry, dict):
            self.problem(key, "(entry)", f"is {_kind(entry)}; expected a mapping of "
                                         f"{', '.join(_TENANT_FIELDS)}")
            return None
        before = len(self.problems)
        self.fields(key, "", entry, _TENANT_FIELDS)
        start = self.hour(key, entry.get("partitions_start"))
        settings = self.path(key, "settings", entry.get("settings"))
        state = self.path(key, "state", entry.get("state"))
        state_url = self.state_url(key, entry.get("state_url"))
        state_schema = self.schema(key, entry.get("state_schema"))
        kaseya = self.section(key, "kaseya", entry.get("kaseya"), _KASEYA_FIELDS)
        zomentum = self.section(key, "zomentum", entry.get("zomentum"), _ZOMENTUM_FIELDS)
        if kaseya is not None:
            kaseya = KaseyaSources(
                base_url=self.text(key, "kaseya.base_url", kaseya.get("base_url")),
                username=self.text(key, "kaseya.username", kaseya.get("username")),
                tenant=self.text(key, "kaseya.tenant", kaseya.get("tenant")),
                password=self.secret(key, "kaseya.password", kaseya.get("password")),
                mfa_code=self.secret(key, "kaseya.mfa_code", kaseya.get("mfa_code")),
                hourly_call_budget=self.budget(key, kaseya.get("hourly_call_budget")))
        if zomentum is not None:
            zomentum = ZomentumSources(
                base_url=self.text(key, "zomentum.base_url", zomentum.get("base_url")),
                refresh_token=self.secret(key, "zomentum.refresh_token", zomentum.get("refresh_token")),
                access_token=self.secret(key, "zomentum.access_token", zomentum.get("access_token")))
        if len(self.problems) > before:
            return None
        if state_url is not None and state_schema is None:
            state_schema = f"zk_{key}"  # a schema per tenant, whatever database they share
        return Tenant(key=key, partitions_start=start, settings=settings, state=state, kaseya=kaseya,
                      zomentum=zomentum, state_url=state_url, state_schema=state_schema)

    def section(self, key: str, name: str, value: object, allowed: Mapping[str, object]) -> dict | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(key, name, f"is {_kind(value)}; expected a mapping of {', '.join(allowed)}")
            return None
        self.fields(key, name, value, allowed)
        return value

    def source(self, key: str, field: str, value: dict, kinds: tuple[str, ...]) -> FromEnv | FromFile | None:
        expected = " or ".join(f"{{{kind}: {'NAME' if kind == 'env' else 'PATH'}}}" for kind in kinds)
        if len(value) != 1 or next(iter(value)) not in kinds:
            self.problem(key, field, f"is a mapping of {', '.join(map(str, value)) or 'nothing'}; expected {expected}")
            return None
        kind, name = next(iter(value.items()))
        if not isinstance(name, str) or not name.strip():
            self.problem(key, field, f"{{{kind}: ...}} names {_kind(name)}; expected {expected}")
            return None
        if kind == "env":
            if not ENV_NAME.fullmatch(name):
                self.problem(key, field, f"{name!r} is not an environment variable's name (letters, digits, _)")
                return None
            return FromEnv(name)
        return FromFile(self.beside(name.strip()))

    def text(self, key: str, field: str, value: object) -> TextSource | None:
        if isinstance(value, dict):
            return self.source(key, field, value, ("env",))
        if isinstance(value, str) and value.strip():
            return value.strip()
        if value is not None:
            self.problem(key, field, f"is {_kind(value)}; expected text or {{env: NAME}}")
        return None

    def secret(self, key: str, field: str, value: object) -> SecretSource | None:
        if isinstance(value, dict):
            return self.source(key, field, value, ("env", "file"))
        if value is not None:
            self.problem(key, field, _SECRET_HINT)
        return None

    def hour(self, key: str, value: object) -> str | None:
        if value is None:
            return None
        try:
            if isinstance(value, str) and datetime.strptime(value, HOUR_FORMAT).strftime(HOUR_FORMAT) == value:
                return value
        except ValueError:
            pass
        self.problem(key, "partitions_start", f"is {value!r}; expected the onboarding hour (UTC) as "
                                              "YYYY-MM-DD-HH:00, quoted")
        return None

    def path(self, key: str, field: str, value: object) -> Path | FromEnv | None:
        found = self.text(key, field, value)
        if isinstance(found, str) and "://" in found:
            self.problem(key, field, "is a URL; expected a file path" + (" (a PostgreSQL state goes in state_url)"
                                                                          if field == "state" else ""))
            return None
        return self.beside(found) if isinstance(found, str) else found

    def schema(self, key: str, value: object) -> TextSource | None:
        found = self.text(key, "state_schema", value)
        if isinstance(found, str) and not STATE_SCHEMA.fullmatch(found):
            self.problem(key, "state_schema", f"is {found!r}; expected lower-case letters, digits and '_', starting "
                                              "with a letter, at most 63 characters")
            return None
        return found

    def state_url(self, key: str, value: object) -> SecretSource | str | None:
        if isinstance(value, dict):
            return self.source(key, "state_url", value, ("env", "file"))
        found = self.text(key, "state_url", value)
        if not isinstance(found, str):
            return found
        try:
            parts = urlsplit(found)
            password = parts.password
        except ValueError:
            parts, password = None, None
        if parts is None or parts.scheme.lower() not in _STATE_SCHEMES or not parts.hostname:
            self.problem(key, "state_url", "is not a PostgreSQL URL (postgresql://HOST/DATABASE)")
        elif password is not None:
            self.problem(key, "state_url", "the URL carries a password; " + _SECRET_HINT.split("; ", 1)[1]
                         + " for the whole URL")
        else:
            return found
        return None

    def budget(self, key: str, value: object) -> int | FromEnv | None:
        if isinstance(value, dict):
            return self.source(key, "kaseya.hourly_call_budget", value, ("env",))
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1500):
            return value
        self.problem(key, "kaseya.hourly_call_budget", f"is {value!r}; expected a whole number of calls per hour "
                                                       "from 1 to 1500 (Kaseya allows 1500)")
        return None

    def check_shared(self, tenants: Iterable[Tenant]) -> None:
        """What one tenant's run may read is its own: no secret source, state location or Kaseya company is
        another tenant's too."""
        owners: dict[object, tuple[str, str]] = {}

        def claim(thing: object, key: str, field: str, what: str) -> None:
            owner = owners.setdefault(thing, (key, field))
            if owner[0] != key:
                self.problem(key, field, f"{what} is also tenant {owner[0]!r}'s {owner[1]}; each tenant's "
                                         "credentials and state are its own")

        for tenant in tenants:
            for field, source in tenant.secret_sources().items():
                if field != "state_url":  # one state database may serve many tenants, a schema each (below)
                    claim(source, tenant.key, field, str(source))
            claim(("state", str(tenant.state)), tenant.key, "state", f"state {tenant.state}")
            if tenant.state_url is not None:
                claim(("state_url", tenant.state_url, tenant.state_schema), tenant.key, "state_schema",
                      f"schema {tenant.state_schema} of {tenant.state_url}")
            if isinstance(tenant.kaseya.base_url, str) and isinstance(tenant.kaseya.tenant, str):
                company = (tenant.kaseya.base_url.rstrip("/").casefold(), tenant.kaseya.tenant.casefold())
                claim(("kaseya", company), tenant.key, "kaseya.tenant", f"Kaseya company {tenant.kaseya.tenant!r}")
