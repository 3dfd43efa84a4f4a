"""The settings a run uses: resolved once at the start of the run against the live names (the Kaseya
lookups the run just extracted, Zomentum's pipelines and users), stored with their fingerprint, and read
back by the later steps of the run (once per run: `TenantResource.resolved_settings`), so that every step
maps with the same resolution."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from zk_pipelines.catalogs import (
    catalogs_from_json,
    catalogs_to_json,
    fetch_zomentum_catalog,
    kaseya_catalog_from_rows,
)
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import ConfigurationError
from zk_pipelines.domain.settings import IntegrationSettings, settings_fingerprint
from zk_pipelines.domain.settings_check import ResolvedSettings, resolve_settings
from zk_pipelines.domain.settings_file import load_settings
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import latest_resolved_settings, save_resolved_settings
from zk_pipelines.storage.raw_store import read_snapshot


def resolve_for_run(database: Path, settings_path: Path, zomentum: ZomentumClient, *, run_id: str,
                    now: datetime) -> ResolvedSettings:
    """Raises SettingsError (naming every unknown name and its closest matches) rather than let the run
    sync with a wrong mapping."""
    settings = load_settings(settings_path)
    with connect(database) as connection:
        lookups = read_snapshot(connection, "kaseya_lookups")
        rows = {
            "opportunity_statuses": read_snapshot(connection, "kaseya_opportunity_statuses"),
            "warehouses": read_snapshot(connection, "kaseya_warehouses"),
            "product_categories": read_snapshot(connection, "kaseya_product_categories"),
            "employees": read_snapshot(connection, "kaseya_employees"),
            "quote_statuses": [r for r in lookups if r.get("table") == "QuoteStatus"],
            "labour_periods": [r for r in lookups if r.get("table") == "LabourPeriod"],
        }
    kaseya = kaseya_catalog_from_rows(rows)
    zomentum_catalog = fetch_zomentum_catalog(zomentum)
    resolved = resolve_settings(settings, kaseya, zomentum_catalog)
    with connect(database) as connection:
        save_resolved_settings(connection, resolved.fingerprint, catalogs_to_json(kaseya, zomentum_catalog),
                               run_id=run_id, now=now)
    return resolved


def resolved_for_step(database: Path, settings_path: Path, settings: IntegrationSettings | None = None
                      ) -> ResolvedSettings:
    """The latest stored resolution, for `settings` (default: the file's settings, read now); raises
    ConfigurationError when the settings are not the ones it was resolved for."""
    settings = settings or load_settings(settings_path)
    with connect(database) as connection:
        stored = latest_resolved_settings(connection)
    if stored is None:
        raise ConfigurationError("the settings have not been resolved yet: materialize settings_resolved first")
    fingerprint, catalogs = stored
    if fingerprint != settings_fingerprint(settings):
        raise ConfigurationError(
            f"{settings_path} changed since the run resolved it (fingerprint {fingerprint[:12]}); re-run the "
            "whole job so that every step maps with the same settings")
    kaseya, zomentum = catalogs_from_json(catalogs)
    return resolve_settings(settings, kaseya, zomentum)
