"""`zk state rebuild`: restore the tenant's id map (`zomentum.id_map`) from what both systems carry, after the
tenant's DuckDB file was lost or restored from an older copy.

Every Zomentum record the pull created or matched carries its Kaseya link in a custom field of its own
("Kaseya account", "Kaseya contact", "Kaseya product", "Kaseya opportunity": `domain.links.LINK_FIELDS`; the
push writes the opportunity's too). Each link is read back to its Kaseya id through the settings' link
templates, and the pair is restored (link kind `rebuilt`) unless the id map already pairs that Kaseya record.
A restored pair has no payload: the next pull takes what it maps as its baseline and writes nothing for it
(as for a pair a push made), so a run after the rebuild creates no duplicate and overwrites nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.commands.state import configured_store
from zk_pipelines.config import ConfigurationError, TenantConfig
from zk_pipelines.domain.entities import KASEYA_LINK_ENTITY, ZOMENTUM_TARGETS
from zk_pipelines.domain.links import LINK_FIELDS
from zk_pipelines.domain.settings_file import load_settings
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import restore_pairs
from zk_pipelines.storage.schema import create_tables
from zk_pipelines.storage.state_store import PostgresStateStore, bind, hydrate, unbind

_ID = "ZK0ID0ZK"


def link_pattern(template_url: str) -> re.Pattern[str]:
    """The Kaseya links of one entity as a pattern capturing the id (from the link with a placeholder id)."""
    return re.compile(re.escape(template_url).replace(_ID, r"(\d+)") + r"\Z")


def run_state_rebuild(env: Mapping[str, str], *, out: TextIO, err: TextIO) -> int:
    try:
        config = TenantConfig.from_env(env)
        if config.settings_path is None or config.zomentum is None:
            raise ConfigurationError("ZK_SETTINGS and the ZOMENTUM_* variables are needed to rebuild the id map")
        settings = load_settings(config.settings_path).for_systems(
            config.kaseya.base_url, config.zomentum.base_url)
    except (ConfigurationError, ValueError) as exc:
        print(f"zk state rebuild: {exc}", file=err)
        return 1
    zomentum = ZomentumClient(config.zomentum)
    pairs: list[tuple[str, str, str]] = []
    for target in ZOMENTUM_TARGETS:
        entity_type, name = LINK_FIELDS[target.name]
        field_ids = {f.id for f in zomentum.custom_fields(entity_type) if f.display_name.lower() == name.lower()}
        if not field_ids:
            continue
        pattern = link_pattern(settings.links.kaseya.url(KASEYA_LINK_ENTITY[target.name], _ID))
        records = (zomentum.all_opportunities() if target.name == "opportunities"
                   else zomentum.iter_records(target.resource))
        for record in records:
            for value in record.get("custom_fields") or []:
                if value.get("id") in field_ids and value.get("values"):
                    found = pattern.match(str(value["values"][0]))
                    if found:
                        pairs.append((target.name, found.group(1), str(record["id"])))
    store = configured_store(env)
    if isinstance(store, PostgresStateStore):  # the id map's truth is there: the replica is brought up to date
        store.migrate()
        bind(config.duckdb_path, store)
        hydrate(config.duckdb_path, store)
    try:
        with connect(config.duckdb_path) as connection:
            create_tables(connection)
            restored = restore_pairs(connection, pairs, datetime.now(UTC))
    finally:
        unbind(config.duckdb_path)
    for target in ZOMENTUM_TARGETS:
        found = sum(1 for entity, _, _ in pairs if entity == target.name)
        print(f"{target.name:<14} {found:>7} linked in Zomentum {restored.get(target.name, 0):>7} restored", file=out)
    return 0
