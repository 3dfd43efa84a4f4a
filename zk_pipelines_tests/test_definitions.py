"""The code location loads, and its names are pinned: renaming an asset, check, job, schedule or sensor is a
visible change."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pydantic
import pytest
import yaml

from zk_pipelines.definitions import build_definitions, defs
from zk_pipelines.defs.asset_keys import layer_of
from zk_pipelines.defs.resources import PullTuning

PULL_ASSETS = {
    "raw_kaseya_changes",  # the incremental lists: accounts, contacts, opportunities, time logs
    *(f"raw_kaseya_{name}" for name in ("products", "employees", "opportunity_statuses", "account_types",
                                        "product_categories", "warehouses", "lookups", "contracts")),
    "settings_resolved",
    *(f"stg_kaseya_{name}" for name in ("accounts", "contacts", "opportunities", "products", "employees",
                                        "opportunity_statuses", "contracts", "timelogs")),
    *(f"mapped_zomentum_{name}" for name in ("clients", "client_users", "opportunities", "items")),
    *(f"zomentum_{name}" for name in ("clients", "client_users", "opportunities", "items")),
    "audit_sync_events",
    "push_documents",  # materialized by push_document_job: the push in the lineage
}


def test_the_code_location_loads_lazily_from_the_workspace_module():
    loaded = defs()
    assert isinstance(loaded, dg.Definitions)
    assert loaded.get_repository_def().name


def test_every_pull_asset_check_job_and_schedule_name_is_pinned():
    repository = build_definitions().get_repository_def()
    assets = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert PULL_ASSETS <= assets
    checks = {(key.asset_key.to_user_string(), key.name) for key in repository.asset_graph.asset_check_keys}
    assert {(f"stg_kaseya_{name}", "reject_share_within_limit")
            for name in ("accounts", "contacts", "opportunities", "products")} <= checks
    assert "hourly_sync_job" in {job.name for job in repository.get_all_jobs()}
    schedule = repository.get_schedule_def("hourly_sync_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "hourly_sync_job"


def test_every_step_that_calls_an_api_or_writes_duckdb_is_in_a_pool():
    repository = build_definitions().get_repository_def()
    for key in repository.asset_graph.get_all_asset_keys():
        node = repository.asset_graph.get(key).assets_def
        prefix = layer_of(key)
        if prefix == "push":
            continue  # materialized by the push job's op, in the kaseya_api pool
        pools = {op.pool for op in [node.op]}
        expected = {"raw": "kaseya_api", "settings": "zomentum_api", "stg": "duckdb", "mapped": "duckdb",
                    "zomentum": "zomentum_api"}.get(prefix)
        if expected:
            assert pools == {expected}, key


def test_dagster_yaml_limits_every_pool_to_one():
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "dagster.yaml").read_text())
    assert config["telemetry"] == {"enabled": False}
    assert config["concurrency"]["pools"]["default_limit"] == 1


@pytest.mark.parametrize("knob", ["kaseya_concurrency", "zomentum_concurrency"])
@pytest.mark.parametrize(("value", "accepted"), [(1, True), (8, True), (10, True), (0, False), (11, False)])
def test_requests_in_flight_per_step_stay_within_a_sessions_connections(knob, value, accepted):
    if accepted:
        assert getattr(PullTuning(**{knob: value}), knob) == value
    else:
        with pytest.raises(pydantic.ValidationError, match=knob):
            PullTuning(**{knob: value})


def test_an_unpartitioned_asset_depends_on_an_hourly_partitioned_one_through_its_latest_hour():
    # Dagster's default mapping (every partition) makes each downstream step enumerate every hour since the
    # first partition: after five years of hours, a second per step of every run.
    graph = build_definitions(partitions_start="2021-12-01-00:00").get_repository_def().asset_graph
    checked = 0
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.partitions_def is not None:
            continue
        for parent in node.parent_keys:
            if graph.get(parent).partitions_def is not None:
                mapping = node.assets_def.get_partition_mapping_for_dep(parent)
                assert isinstance(mapping, dg.LastPartitionMapping), (key, parent, mapping)
                checked += 1
    assert checked == 4  # stg_kaseya_accounts, _contacts, _opportunities, _timelogs on their raw lists


def test_loading_the_code_location_warns_of_nothing_even_when_warnings_are_errors():
    # A fresh interpreter (warnings are shown once per process): what `dagster dev`, a run worker or `zk` sees.
    import subprocess
    import sys

    load = ("from zk_pipelines.definitions import defs; from zk_pipelines.defs.push import build_push_job; "
            "defs().get_repository_def().get_all_jobs()")
    result = subprocess.run([sys.executable, "-W", "error", "-c", load], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""


def test_the_catalogue_names_each_assets_owner_layer_system_table_columns_and_freshness():
    graph = build_definitions().get_repository_def().asset_graph
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.owners == ["team:integrations"], name
        layer = {"raw": "raw", "settings": "settings", "stg": "staging", "mapped": "mapped", "zomentum": "load",
                 "audit": "audit", "push": "push"}[layer_of(key)]
        assert node.tags["layer"] == layer, name
        table = node.metadata["dagster/table_name"]
        schema = node.metadata["dagster/column_schema"]
        assert schema.columns, name
        if layer_of(key) in ("raw", "stg", "mapped", "audit", "push", "settings") and name != "raw_kaseya_changes":
            assert table == name.replace("_", ".", 1), name
        if layer_of(key) != "push":
            assert "dagster/code_references" in node.metadata, name
        hourly = layer_of(key) in ("stg", "mapped", "zomentum") or name == "audit_sync_events"
        assert (node.freshness_policy is not None) == hourly, name
    assert graph.get(dg.AssetKey("zomentum_clients")).metadata["dagster/table_name"] == "zomentum.id_map"
    changes = graph.get(dg.AssetKey("raw_kaseya_changes"))
    assert changes.metadata["dagster/table_name"] == \
        "raw.kaseya_accounts, raw.kaseya_contacts, raw.kaseya_opportunities, raw.kaseya_timelogs"
    assert "modified_on" in {c.name for c in changes.metadata["dagster/column_schema"].columns}
    assert {"kaseya"} <= graph.get(dg.AssetKey("raw_kaseya_products")).kinds
    assert {"zomentum"} <= graph.get(dg.AssetKey("zomentum_items")).kinds
    assert graph.get(dg.AssetKey("stg_kaseya_contacts")).tags["system"] == "kaseya"


def test_the_push_reads_what_the_pull_loads_in_the_lineage_and_groups_read_left_to_right():
    graph = build_definitions().get_repository_def().asset_graph
    push = graph.get(dg.AssetKey("push_documents"))
    assert {dg.AssetKey("zomentum_opportunities"), dg.AssetKey("raw_kaseya_products")} <= \
        set(push.parent_keys)
    # Each group's assets depend only on assets of the same or earlier groups, in this order.
    order = ["kaseya_extract", "settings", "staging", "zomentum_sync", "audit", "reconcile", "push"]
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        for parent in node.parent_keys:
            assert order.index(graph.get(parent).group_name) <= order.index(node.group_name), (key, parent)
