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
from zk_pipelines.pull.stage import STAGED_IN_SQL, stage_entity
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import ensure_pull_tables
from zk_pipelines_tests.contacts_in_sql import stage_contacts_in_sql

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
        ways = [staging.stager is not None, bool(staging.fields), staging.staged_in_sql]
        assert ways.count(True) == 1, f"{source.name}: a stager, a field spec or staged in SQL"
        columns = dict(model_columns(staging.model))
        assert set(staging.fields) <= set(columns) - {"kaseya_id"}, source.name
        assert set(staging.upstream) <= set(STAGED), source.name
        assert {key.target for key in staging.foreign_keys} <= set(staging.upstream), source.name
        assert {key.column for key in staging.foreign_keys} <= set(columns), source.name
    for target in ZOMENTUM_TARGETS:
        assert target.source in STAGED and callable(target.mapper)
    # the entities staged in SQL are the registry's, each with its SQL stager
    assert set(STAGED_IN_SQL) == {source.name for source in STAGED_SOURCES if source.staging.staged_in_sql}


def test_an_entity_staged_in_sql_has_no_per_record_stager():
    with pytest.raises(ValueError, match="contacts are staged in SQL"):
        KASEYA_SOURCE["contacts"].stage([{"id": 1}], inputs=_NoInputs())


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
        key = dg.AssetKey(f"stg_{source.raw_table}")
        assert key in keys, source.name
        assert ((key, "reject_share_within_limit") in checks) == source.staging.checked, source.name
        parents = graph.get(key).parent_keys
        assert raw_key(source) in parents
        assert {f"stg_kaseya_{name}" for name in source.staging.upstream} <= {p.path[-1] for p in parents}
    for target in ZOMENTUM_TARGETS:
        assert {f"mapped_zomentum_{target.name}", f"zomentum_{target.name}"} <= {k.to_user_string() for k in keys}


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
    records = ["not a record", {"Nothing": 1}]
    rows = (stage_contacts_in_sql(records) if source.staging.staged_in_sql
            else source.stage(records, inputs=_NoInputs()))
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


# --- no list of entities is kept by hand ---------------------------------------------------------------------

# A child process that adds one Kaseya list and one Zomentum target to the registry (re-running entities.py with
# two more rows, before anything else reads it), then reads every list the product derives from the registry.
_WITH_AN_EXTRA_ENTITY = r'''
import json, sys
from pathlib import Path

import yaml

import zk_pipelines.domain.entities as entities

text = Path(entities.__file__).read_text(encoding="utf-8")
rows = {
    "\nKASEYA_SOURCE = {": "KASEYA_SOURCES = (*KASEYA_SOURCES, _dc.replace(next(s for s in KASEYA_SOURCES "
                           "if s.name == 'employees'), name='agreements'))",
    "\nZOMENTUM_TARGET = {": "ZOMENTUM_TARGETS = (*ZOMENTUM_TARGETS, _dc.replace(ZOMENTUM_TARGETS[0], "
                            "name='agreement_links', resource='agreements', source='agreements', family='agreements', "
                            "label='agreement', kaseya_link='agreement', zomentum_link='agreement_link', "
                            "custom_field_entity='agreement', kind='agreement', synonyms=('pacts',)))",
}
for marker, row in rows.items():
    assert text.count(marker) == 1, marker
    text = text.replace(marker, f"\nimport dataclasses as _dc\n{row}\n{marker}")
exec(compile(text, entities.__file__, "exec"), entities.__dict__)

from zk_pipelines.audit.query import ENTITY_ALIASES, HISTORY_KINDS
from zk_pipelines.cli import build_parser
from zk_pipelines.defs.push import PUSH_READS
from zk_pipelines.domain.links import LINK_FIELDS
from zk_pipelines.domain.settings import SettingsError, effective_settings
from zk_pipelines.domain.settings_file import parse_settings
from zk_pipelines.pull import load
from zk_pipelines.push.catalogue import PLAIN_SNAPSHOTS
from zk_pipelines.push.orchestration import _KASEYA_LINK_ENTITY
from zk_pipelines.reconcile.run import chosen_entities

settings = yaml.safe_load(Path(sys.argv[1]).read_text(encoding="utf-8"))
try:
    parse_settings(settings)
    missing = None
except SettingsError as exc:
    missing = str(exc)
settings["sync"]["agreements"] = True
parsed = parse_settings(settings)
print(json.dumps({
    "settings without the family": missing,
    "families": parsed.sync.families(),
    "effective sync": effective_settings(parsed)["sync"],
    "audit aliases": {alias: name for alias, name in ENTITY_ALIASES.items() if name == "agreement_links"},
    "history kinds": HISTORY_KINDS,
    "zk history KIND": build_parser().parse_args(["history", "agreement", "1"]).kind,
    "zk reconcile": chosen_entities(["agreement", "agreements"]),
    "push links": _KASEYA_LINK_ENTITY,
    "link fields": LINK_FIELDS,
    "active flag": list(load.ACTIVE_FLAG_SOURCES),
    "push reads": [key.to_user_string() for key in PUSH_READS],
    "push catalogue": list(PLAIN_SNAPSHOTS),
}))
'''


def test_an_entity_added_to_the_registry_appears_in_every_list_derived_from_it():
    import json
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "settings.example.yaml"
    result = subprocess.run([sys.executable, "-c", _WITH_AN_EXTRA_ENTITY, str(example)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lists = json.loads(result.stdout.strip().splitlines()[-1])
    assert "sync.agreements: missing" in lists["settings without the family"]
    assert lists["families"][-1] == "agreements" and lists["effective sync"]["agreements"] is True
    assert lists["audit aliases"] == dict.fromkeys(
        ("agreement_links", "agreements", "agreement", "agreement_link", "pacts"), "agreement_links")
    assert lists["history kinds"]["agreement"] == "agreement_links"
    assert lists["zk history KIND"] == "agreement"
    assert lists["zk reconcile"] == ["agreement_links"]
    assert lists["push links"]["agreement_links"] == "agreement"
    assert lists["link fields"]["agreement_links"] == ["agreement", "Kaseya agreement"]
    assert "agreements" in lists["active flag"]  # its model (the employees') has `is_active`
    assert "zomentum_agreement_links" in lists["push reads"]
    assert "agreements" in lists["push catalogue"]


# Literal collections in the product naming two or more of the registry's entities, and why each is not a list
# of entities kept by hand: (file, the entity names in it) -> why.
NOT_ENTITY_LISTS = {
    ("catalogs.py", ("opportunity_statuses", "warehouses", "product_categories", "employees")):
        "the settings catalogue: the Kaseya lists a setting names a record of (with two lookup tables), fixed by "
        "the settings' fields (settings_check.KaseyaCatalog), not by the entities pulled",
    ("pull/run_settings.py", ("opportunity_statuses", "warehouses", "product_categories", "employees")):
        "the settings catalogue, read from the pull's snapshots (see catalogs.py)",
    ("push/catalogue.py", ("opportunity_statuses", "warehouses", "product_categories", "employees")):
        "the settings catalogue by the push's names (see catalogs.py)",
    ("clients/zomentum_models.py", ("client_company", "client_user", "opportunity", "item")):
        "Zomentum's own enum of custom-field entity types (its contract), checked against its OpenAPI document",
    ("defs/push.py", ("products", "employees", "opportunity_statuses", "product_categories", "warehouses",
                      "lookups")):
        "the Kaseya snapshots a push reads its catalogue from: the push's own need, not every entity",
    ("domain/settings.py", ("account", "contact", "opportunity", "product")):
        "the default link templates (URL layouts) per record kind, push-only kinds included; "
        "test_every_link_kind_of_the_registry_has_a_default_template keeps them covering the registry",
    ("domain/settings.py", ("client", "client_user", "opportunity", "item")):
        "the default Zomentum link templates (see above)",
    ("domain/links.py", ("clients", "opportunities")):
        "the records the push marks in Kaseya (its own writes: accounts and opportunities), not every entity",
    ("pull/extract.py", ("products", "lookups")):
        "the special snapshot readers, named by `KaseyaSource.reader` (hooks, not a list)",
    ("push/resolve.py", ("clients", "client_users", "opportunities", "items")):
        "the push's ledger entities, each handled by its own code, with quotes and quote lines the pull has not",
}


def _entity_names_in_literals() -> dict[tuple[str, tuple[str, ...]], int]:
    """Every tuple, list, set or dict-keys literal of the product (the sandbox's fakes of the remote APIs apart)
    naming two or more of the registry's entities, any of their names: {(file, names): line}."""
    import ast
    from pathlib import Path

    words = {source.name for source in KASEYA_SOURCES}
    words |= {word for target in ZOMENTUM_TARGETS for word in (*target.aliases, target.custom_field_entity)}
    product = Path(__file__).resolve().parents[1] / "zk_pipelines"
    found = {}
    for path in sorted(product.rglob("*.py")):
        relative = path.relative_to(product).as_posix()
        if relative.startswith("sandbox/") or relative == "domain/entities.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                elements = node.elts
            elif isinstance(node, ast.Dict):
                elements = [key for key in node.keys if key is not None]
            else:
                continue
            names = tuple(e.value for e in elements if isinstance(e, ast.Constant) and e.value in words)
            if len(names) >= 2:
                found[(relative, names)] = node.lineno
    return found


def test_no_list_of_entities_is_kept_by_hand_in_the_product():
    found = _entity_names_in_literals()
    kept = [f"zk_pipelines/{file}:{line}: {', '.join(names)}" for (file, names), line in found.items()
            if (file, names) not in NOT_ENTITY_LISTS]
    assert not kept, ("derive these from the registry (domain/entities.py), or say in NOT_ENTITY_LISTS why they "
                      "are not lists of entities:\n" + "\n".join(kept))
    assert set(NOT_ENTITY_LISTS) <= set(found), "NOT_ENTITY_LISTS names a literal that is gone: drop it"


def test_every_link_kind_of_the_registry_has_a_default_template():
    from zk_pipelines.domain.settings import DEFAULT_KASEYA_LINK_TEMPLATES, DEFAULT_ZOMENTUM_LINK_TEMPLATES

    for target in ZOMENTUM_TARGETS:
        assert target.kaseya_link in DEFAULT_KASEYA_LINK_TEMPLATES, target.name
        assert target.zomentum_link in DEFAULT_ZOMENTUM_LINK_TEMPLATES, target.name
