"""`zk state rebuild`: restore the tenant's id map (`zomentum.id_map`) from what both systems carry, after the
tenant's state (its DuckDB file, or its PostgreSQL schema) was lost or restored from an older copy.

Every Zomentum record the pull created or matched carries its Kaseya link in a custom field of its own
("Kaseya account", "Kaseya contact", "Kaseya product", "Kaseya opportunity": `domain.links.LINK_FIELDS`; the
push writes the opportunity's too). Each link is read back to its Kaseya id through the settings' link
templates. What the push created in Kaseya carries its marker instead (`domain.links.marker_pairs`): Kaseya's
accounts and opportunities are read whole, page by page through the Kaseya client and within the tenant's
hourly budget, and the Zomentum documents their markers name. Every pair is restored (link kind `rebuilt`)
unless the id map already pairs that Kaseya or that Zomentum record; Zomentum's links come first.
A restored pair has no payload: the next pull takes what it maps as its baseline and writes nothing for it
(as for a pair a push made), so a run or a push after the rebuild creates no duplicate and overwrites nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from zk_pipelines.clients.http import ApiError
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.commands.tenant_choice import tenant_config
from zk_pipelines.config import ConfigurationError
from zk_pipelines.domain.entities import KASEYA_LINK_ENTITY, ZOMENTUM_TARGETS
from zk_pipelines.domain.links import LINK_FIELDS, MARKED_ENTITIES, marker_pairs
from zk_pipelines.domain.push_plan.markers import client_markers, document_markers
from zk_pipelines.domain.settings import IntegrationSettings
from zk_pipelines.domain.settings_file import load_settings
from zk_pipelines.storage.budget_store import budget_store_for
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import restore_pairs
from zk_pipelines.storage.schema import create_tables
from zk_pipelines.storage.state_store import StateStoreError, unbind

_ID = "ZK0ID0ZK"

Pair = tuple[str, str, str]  # (entity, Kaseya id, Zomentum id)


def link_pattern(template_url: str) -> re.Pattern[str]:
    """The Kaseya links of one entity as a pattern capturing the id (from the link with a placeholder id)."""
    return re.compile(re.escape(template_url).replace(_ID, r"(\d+)") + r"\Z")


def zomentum_links(zomentum: ZomentumClient, settings: IntegrationSettings) -> tuple[list[Pair], dict[str, set[str]]]:
    """The pairs Zomentum's link fields name, and the ids of the Zomentum records a marker may name."""
    pairs: list[Pair] = []
    existing: dict[str, set[str]] = {}
    for target in ZOMENTUM_TARGETS:
        entity_type, name = LINK_FIELDS[target.name]
        field_ids = {f.id for f in zomentum.custom_fields(entity_type) if f.display_name.lower() == name.lower()}
        if not field_ids and target.name not in MARKED_ENTITIES:
            continue
        pattern = link_pattern(settings.links.kaseya.url(KASEYA_LINK_ENTITY[target.name], _ID))
        records = (zomentum.all_opportunities() if target.name == "opportunities"
                   else zomentum.iter_records(target.resource))
        ids = existing.setdefault(target.name, set())
        for record in records:
            ids.add(str(record["id"]))
            for value in record.get("custom_fields") or []:
                if value.get("id") in field_ids and value.get("values"):
                    found = pattern.match(str(value["values"][0]))
                    if found:
                        pairs.append((target.name, found.group(1), str(record["id"])))
    return pairs, existing


def kaseya_markers(kaseya: KaseyaClient, zomentum: ZomentumClient, existing: Mapping[str, set[str]]) -> list[Pair]:
    """The pairs the push's markers name: every Kaseya account and opportunity is read (only the marked ones are
    kept), then the Zomentum documents when any is marked."""
    accounts = [row for row in kaseya.iter_accounts() if client_markers(row.get("description"))]
    opportunities = [row for row in kaseya.iter_opportunities() if document_markers(row.get("description"))]
    named = {document_id for row in opportunities for document_id in document_markers(row.get("description"))}
    documents: dict[str, Any] = {}
    if named:
        documents = {str(d["id"]): d for d in zomentum.documents() if str(d["id"]) in named}
    return marker_pairs(accounts, opportunities, documents, existing)


def run_state_rebuild(env: Mapping[str, str], *, out: TextIO, err: TextIO, tenant: str | None = None) -> int:
    try:
        config = tenant_config(env, tenant)
        if config.settings_path is None or config.zomentum is None:
            raise ConfigurationError("ZK_SETTINGS and the ZOMENTUM_* variables are needed to rebuild the id map")
        settings = load_settings(config.settings_path).for_systems(
            config.kaseya.base_url, config.zomentum.base_url)
        store = config.state_store()  # PostgreSQL: its DuckDB replica is brought up to date
    except (ConfigurationError, StateStoreError, ValueError) as exc:
        print(f"zk state rebuild: {exc}", file=err)
        return 1
    zomentum = ZomentumClient(config.zomentum)
    # Outside a run, the client counts its calls in the tenant's budget like the runs and pushes do.
    kaseya = KaseyaClient(config.kaseya, budget_store=budget_store_for(config.duckdb_path, store))
    try:
        try:
            linked, existing = zomentum_links(zomentum, settings)
            marked = kaseya_markers(kaseya, zomentum, existing)
        except ApiError as exc:
            # A partial read would restore a partial id map that looks whole: nothing is written.
            print(f"zk state rebuild: {exc}; nothing was restored: run it again", file=err)
            return 1
        with connect(config.duckdb_path) as connection:
            create_tables(connection)
            restored = restore_pairs(connection, [*linked, *marked], datetime.now(UTC))
    finally:
        kaseya.close()
        unbind(config.duckdb_path)
        store.close()
    for target in ZOMENTUM_TARGETS:
        found = sum(1 for entity, _, _ in linked if entity == target.name)
        by_marker = sum(1 for entity, _, _ in marked if entity == target.name)
        print(f"{target.name:<14} {found:>7} linked in Zomentum {by_marker:>7} marked in Kaseya "
              f"{restored.get(target.name, 0):>7} restored", file=out)
    return 0
