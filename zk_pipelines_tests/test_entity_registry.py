"""Every entity of the registry (`domain/entities.py`) goes through every layer: its tables exist, its assets
and checks exist, a round trip through the Kaseya sandbox extracts and stages it, and its rejects carry their
reasons. The entities are read from the registry: a new row is covered without a line here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pandas as pd
import pytest

from zk_pipelines.clients.kaseya import PROBED_READS, KaseyaClient
from zk_pipelines.definitions import build_definitions
from zk_pipelines.defs.kaseya_extract import raw_key
from zk_pipelines.domain.entities import (
    INCREMENTAL_SOURCES,
    KASEYA_SOURCE,
    KASEYA_SOURCES,
    SNAPSHOT_SOURCES,
    STAGED_SOURCES,
    ZOMENTUM_TARGETS,
)
from zk_pipelines.domain.kaseya_endpoints import ENDPOINTS
from zk_pipelines.domain.staging_schemas import REASONS, model_columns, validate_rows
from zk_pipelines.pull.extract import extract_changes, extract_snapshots, refresh_product_pricing
from zk_pipelines.pull.stage import stage_entity
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import ensure_pull_tables

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
STAGED = [source.name for source in STAGED_SOURCES]


def staging_order() -> list[str]:
    """The staged entities, each after the entities it reads (its `upstream`)."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name not in ordered:
            for parent in KASEYA_SOURCE[name].staging.upstream:
                visit(parent)
            ordered.append(name)

    for name in STAGED:
        visit(name)
    return ordered


def test_the_registry_is_consistent():
    assert len({source.name for source in KASEYA_SOURCES}) == len(KASEYA_SOURCES)
    for source in KASEYA_SOURCES:
        assert source.endpoint in ENDPOINTS and ENDPOINTS[source.endpoint].method == "GET", source.name
        assert source.endpoint in {endpoint for endpoint, _ in PROBED_READS}  # `zk check` reads it
        if source.staging is None:
            continue
        staging = source.staging
        assert (staging.stager is None) != (not staging.fields), f"{source.name}: a stager or a field spec"
        columns = dict(model_columns(staging.model))
        assert set(staging.fields) <= set(columns) - {"kaseya_id"}, source.name
        assert set(staging.upstream) <= set(STAGED), source.name
        assert {key.target for key in staging.foreign_keys} <= set(staging.upstream), source.name
        assert {key.column for key in staging.foreign_keys} <= set(columns), source.name
    for target in ZOMENTUM_TARGETS:
        assert target.source in STAGED and callable(target.mapper)


def test_every_entity_has_its_tables(tmp_path):
    path = tmp_path / "tenant.duckdb"
    with connect(path) as connection:
        ensure_pull_tables(connection, [target.name for target in ZOMENTUM_TARGETS])
    with duckdb.connect(str(path), read_only=True) as connection:
        tables = {f"{schema}.{name}" for schema, name in connection.execute(
            "SELECT table_schema, table_name FROM information_schema.tables").fetchall()}
        for source in KASEYA_SOURCES:
            assert f"raw.{source.raw_table}" in tables
        for source in STAGED_SOURCES:
            stg = connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'stg' "
                "AND table_name = $table ORDER BY ordinal_position", {"table": source.raw_table}).fetchall()
            declared = model_columns(source.staging.model)
            assert [(name, kind.replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE")) for name, kind in declared] \
                == stg[:len(declared)], source.name
        for target in ZOMENTUM_TARGETS:
            assert f"mapped.zomentum_{target.name}" in tables


def test_every_entity_has_its_assets_and_checks():
    graph = build_definitions().get_repository_def().asset_graph
    keys = graph.get_all_asset_keys()
    checks = {(key.asset_key, key.name) for key in graph.asset_check_keys}
    for source in KASEYA_SOURCES:
        assert raw_key(source) in keys, source.name
    for source in STAGED_SOURCES:
        key = dg.AssetKey(["stg", source.raw_table])
        assert key in keys, source.name
        assert ((key, "reject_share_within_limit") in checks) == source.staging.checked, source.name
        parents = graph.get(key).parent_keys
        assert raw_key(source) in parents
        assert {f"kaseya_{name}" for name in source.staging.upstream} <= {p.path[-1] for p in parents}
    for target in ZOMENTUM_TARGETS:
        assert {("mapped", f"zomentum_{target.name}"), ("zomentum", target.name)} <= {tuple(k.path) for k in keys}


@pytest.fixture(scope="module")
def staged_from_the_sandbox(kaseya_sandbox, tmp_path_factory):
    """Every list of the registry extracted from the Kaseya sandbox, and every staged entity staged, in the
    order of their dependencies: {entity: (raw rows, staged rows, its StageReport)}."""
    from zk_pipelines.config import KaseyaCredentials
    from zk_pipelines.secrets import Secret
    from zk_pipelines_tests.fixtures.kaseya import SCALE, SEED

    kaseya_sandbox.state.reset(seed=SEED, scale=SCALE)
    client = KaseyaClient(KaseyaCredentials(base_url=kaseya_sandbox.base_url, username=kaseya_sandbox.username,
                                            password=Secret(kaseya_sandbox.password), tenant=kaseya_sandbox.tenant))
    path = tmp_path_factory.mktemp("registry") / "tenant.duckdb"
    with connect(path) as connection:
        ensure_pull_tables(connection)
    now = datetime.now(UTC)
    changes = extract_changes(client, path, INCREMENTAL_SOURCES, now - timedelta(hours=1), now,
                              overlap=timedelta(minutes=15), whole_history=True, run_id="run-1", now=now)
    snapshots = extract_snapshots(client, path, SNAPSHOT_SOURCES, run_id="run-1", now=now, concurrency=4)
    for name, result in {**changes, **snapshots}.items():
        assert not isinstance(result, BaseException), (name, result)
    with connect(path, read_only=True) as connection:
        product_ids = [int(key) for (key,) in connection.execute("SELECT kaseya_key FROM raw.kaseya_products")
                       .fetchall()]
    refresh_product_pricing(client, path, product_ids, calls_per_hour=1000, max_age=timedelta(hours=24),
                            run_id="run-1", now=now)
    reports = {name: stage_entity(path, name, run_id="run-1", partition_key=None, now=now)
               for name in staging_order()}
    outcome = {}
    with connect(path, read_only=True) as connection:
        for source in KASEYA_SOURCES:
            raw = connection.execute(f"SELECT count(*) FROM raw.{source.raw_table}").fetchone()[0]
            staged = (connection.execute(f"SELECT count(*) FROM stg.{source.raw_table}").fetchone()[0]
                      if source.staging is not None else None)
            outcome[source.name] = (raw, staged, reports.get(source.name))
    return outcome


@pytest.mark.parametrize("entity", [source.name for source in KASEYA_SOURCES])
def test_a_round_trip_through_the_sandbox_extracts_and_stages_every_entity(staged_from_the_sandbox, entity):
    raw, staged, report = staged_from_the_sandbox[entity]
    assert raw > 0, f"the sandbox served no {entity}"
    if KASEYA_SOURCE[entity].staging is not None:
        assert staged > 0 and report.staged == staged, (entity, report)
        assert report.rejected_records == 0, report.rejects.to_dict("records")


def _checks_of(source) -> set[str]:
    from zk_pipelines.domain.staging_schemas import _check_name

    schema = source.staging.model.to_schema()
    names = {_check_name(check.name) for column in schema.columns.values() for check in column.checks}
    names |= {_check_name(check.name) for check in schema.checks}
    if any(not column.nullable for column in schema.columns.values()):
        names.add("not_nullable")
    return names


@pytest.mark.parametrize("entity", STAGED)
def test_every_check_of_every_model_has_its_reason_declared(entity):
    assert _checks_of(KASEYA_SOURCE[entity]) <= set(REASONS), entity
    for key in KASEYA_SOURCE[entity].staging.foreign_keys:
        assert key.reason


@pytest.mark.parametrize("entity", STAGED)
def test_rejects_carry_reasons_naming_the_record(entity):
    source = KASEYA_SOURCE[entity]
    label = source.staging.label
    # A record that is not an object, one without its key, and one whose every required column is missing.
    rows = source.stage(["not a record", {"Nothing": 1}], inputs=_NoInputs())
    required = [name for name, column in source.staging.model.to_schema().columns.items()
                if not column.nullable and name != "kaseya_id"]
    row = {"kaseya_id": 424242}
    valid, rejects = validate_rows(entity, pd.DataFrame([*rows, row], dtype=object),
                                   known_ids={key.target: set() for key in source.staging.foreign_keys})
    assert list(valid["kaseya_id"]) == ([] if required else [424242])
    assert rejects["reason"].notna().all() and (rejects["reason"].str.len() > 20).all()
    assert all(reason.startswith(label) for reason in rejects["reason"])
    about = rejects[rejects["kaseya_id"] == 424242]
    if required:
        assert set(about["column"]) >= set(required), about.to_dict("records")
        assert all(" failed the check " not in reason for reason in about["reason"])


class _NoInputs:
    employee_emails: dict = {}
    product_pricing: dict = {}


def _extracted(kaseya, tmp_path):
    """A tenant's DuckDB holding every list of the registry as the sandbox serves it, nothing staged yet."""
    from zk_pipelines.config import KaseyaCredentials
    from zk_pipelines.secrets import Secret

    client = KaseyaClient(KaseyaCredentials(base_url=kaseya.base_url, username=kaseya.username,
                                            password=Secret(kaseya.password), tenant=kaseya.tenant))
    path = tmp_path / "tenant.duckdb"
    with connect(path) as connection:
        ensure_pull_tables(connection)
    now = datetime.now(UTC)
    extract_changes(client, path, INCREMENTAL_SOURCES, now - timedelta(hours=1), now, overlap=timedelta(minutes=15),
                    whole_history=True, run_id="run-1", now=now)
    extract_snapshots(client, path, SNAPSHOT_SOURCES, run_id="run-1", now=now, concurrency=4)
    return path


@pytest.mark.parametrize("entity", [s.name for s in STAGED_SOURCES if s.staging.foreign_keys])
def test_a_row_whose_reference_is_not_staged_yet_waits_and_is_staged_once_it_is(kaseya, tmp_path, entity):
    path = _extracted(kaseya, tmp_path)
    first = stage_entity(path, entity, run_id="run-1", partition_key=None, now=NOW)
    assert first.read > 0 and first.staged == 0 and first.rejected_records == 0
    assert first.waiting_records == first.read  # rejected by its reference checks alone: it waits
    for name in staging_order():
        if name != entity:
            stage_entity(path, name, run_id="run-2", partition_key=None, now=NOW + timedelta(minutes=1))
    again = stage_entity(path, entity, run_id="run-3", partition_key=None, now=NOW + timedelta(minutes=2))
    assert again.staged == first.read and again.waiting_records == 0


def test_zk_check_reads_every_entitys_endpoint(kaseya, kaseya_credentials):
    checks = KaseyaClient(kaseya_credentials).probe_endpoints()
    assert all(check.ok for check in checks), [check.line() for check in checks if not check.ok]
    probed = {check.endpoint for check in checks}
    for source in KASEYA_SOURCES:
        if source.endpoint != "lookup":  # one line per lookup table, with its name in the path
            assert ENDPOINTS[source.endpoint].label in probed, source.name
