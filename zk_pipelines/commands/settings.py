"""`zk settings check` and `zk settings show`: the settings file resolved against the live systems."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from zk_pipelines.catalogs import fetch_kaseya_catalog, fetch_zomentum_catalog
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.commands.tenant_choice import tenant_config
from zk_pipelines.config import ConfigurationError
from zk_pipelines.domain.settings_check import check_settings, render_problems, render_settings, resolve_settings
from zk_pipelines.domain.settings_file import load_settings


def run_settings_command(action: str, env: Mapping[str, str], out: TextIO, tenant: str | None = None) -> int:
    config = tenant_config(env, tenant)
    if config.settings_path is None:
        raise ConfigurationError("environment variable ZK_SETTINGS is not set (path of the settings YAML)")
    if config.zomentum is None:
        raise ConfigurationError("environment variable ZOMENTUM_BASE_URL is not set")
    settings = load_settings(config.settings_path)
    kaseya = fetch_kaseya_catalog(KaseyaClient(config.kaseya))
    zomentum = fetch_zomentum_catalog(ZomentumClient(config.zomentum))
    problems = check_settings(settings, kaseya, zomentum)
    if problems:
        print(render_problems(problems), file=out)
        return 1
    if action == "check":
        print(f"{config.settings_path}: every name resolves in Kaseya and Zomentum", file=out)
        return 0
    print(render_settings(resolve_settings(settings, kaseya, zomentum)), file=out)
    return 0
