"""The tenant registry `zk sandbox --tenants N` writes: one entry per sandbox tenant, ready for `ZK_TENANTS`.

The format is the pipeline's (its registry loader reads exactly this). Secrets are never written: each is
`{env: NAME}`, and `zk sandbox` prints the `export NAME=...` lines that give them values. Every tenant shares
the repository's `settings.example.yaml`, which holds for every sandbox tenant: the names it uses (Kaseya
statuses, warehouses, categories, the `Hourly` labour period, quote statuses; Zomentum's two pipelines and
their stages) are fixed tables of both seeds, not drawn from the seed, and its two e-mails are the same in
every tenant (`api.user@msp.example` is each Zomentum account's API user; `anna.adams0@msp.example` is
employee 0 of every world, whose employees do not depend on the seed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

import yaml

# The onboarding hour a written registry gives every tenant: two hours before `zk sandbox` started, so a
# first sync has complete hours to cover at once.
ONBOARDED_HOURS_AGO = 2
STATE_DIRECTORY = "state"  # beside the registry: one DuckDB file per tenant
SETTINGS_EXAMPLE = Path(__file__).resolve().parents[2] / "settings.example.yaml"

_HEADER = ("# zk_pipelines tenant registry (ZK_TENANTS=<this file>): one Dagster deployment, one entry per "
           "tenant.")
# The registry's comments, on its first entry (the others repeat its shape).
_COMMENTS = {
    "key": "the tenant's name: lowercase letters, digits, underscores",
    "partitions_start": "the onboarding hour (UTC), YYYY-MM-DD-HH:00",
    "settings": "the settings file (a path relative to this file, or absolute)",
    "state": "the tenant's state: a DuckDB file (relative or absolute)",
}
_COMMENT_COLUMN = 46


def secret_variables(key: str) -> dict[str, str]:
    """The environment variables that hold a tenant's secrets, by the single-tenant variable they stand for."""
    return {"KASEYA_PASSWORD": f"{key.upper()}_KASEYA_PASSWORD",
            "ZOMENTUM_REFRESH_TOKEN": f"{key.upper()}_ZOMENTUM_REFRESH_TOKEN"}


def onboarding_hour(started: datetime) -> str:
    hour = started.replace(minute=0, second=0, microsecond=0) - timedelta(hours=ONBOARDED_HOURS_AGO)
    return hour.strftime("%Y-%m-%d-%H:00")


def _scalar(value: str) -> str:
    """The value as YAML: bare where YAML reads it back as this very string, else double-quoted."""
    try:
        bare = yaml.safe_load(f"k: {value}") == {"k": value}
    except yaml.YAMLError:
        bare = False
    return value if bare else json.dumps(value, ensure_ascii=False)


def _line(indent: int, text: str, comment: str | None) -> str:
    line = " " * indent + text
    return f"{line.ljust(_COMMENT_COLUMN - 1)} # {comment}" if comment else line


def registry_text(environments: Mapping[str, Mapping[str, str]], partitions_start: str, settings: Path) -> str:
    """The registry of the tenants whose single-tenant environments (`Sandboxes.tenant_environments()`) are
    given, keyed by tenant name."""
    lines = [_HEADER, "tenants:"]
    for position, (key, env) in enumerate(environments.items()):
        comment = (_COMMENTS if position == 0 else {}).get
        secret = secret_variables(key)
        lines += [
            _line(2, f"{key}:", comment("key")),
            _line(4, f'partitions_start: "{partitions_start}"', comment("partitions_start")),
            _line(4, f"settings: {_scalar(str(settings))}", comment("settings")),
            _line(4, f"state: {_scalar(f'{STATE_DIRECTORY}/{key}.duckdb')}", comment("state")),
            "    kaseya:",
            f"      base_url: {_scalar(env['KASEYA_BASE_URL'])}",
            f"      username: {_scalar(env['KASEYA_USERNAME'])}",
            f"      tenant: {_scalar(env['KASEYA_TENANT'])}",
            f"      password: {{env: {secret['KASEYA_PASSWORD']}}}",
            "    zomentum:",
            f"      base_url: {_scalar(env['ZOMENTUM_BASE_URL'])}",
            f"      refresh_token: {{env: {secret['ZOMENTUM_REFRESH_TOKEN']}}}",
        ]
    return "\n".join(lines) + "\n"


def write_registry(path: Path, environments: Mapping[str, Mapping[str, str]], started: datetime,
                   settings: Path = SETTINGS_EXAMPLE) -> dict[str, str]:
    """Write the registry (and the state directory beside it); returns the secrets' variables and values, in
    the registry's order, for the `export` lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / STATE_DIRECTORY).mkdir(exist_ok=True)
    path.write_text(registry_text(environments, onboarding_hour(started), settings), encoding="utf-8")
    return {variable: env[name] for key, env in environments.items()
            for name, variable in secret_variables(key).items()}
