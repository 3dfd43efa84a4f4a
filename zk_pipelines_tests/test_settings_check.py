"""Resolving the settings' names against Kaseya's and Zomentum's names: problems, suggestions, ids, rendering."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from zk_pipelines.domain.settings import SettingsError
from zk_pipelines.domain.settings_check import (
    KaseyaCatalog,
    NamedId,
    ZomentumCatalog,
    ZomentumPipeline,
    ZomentumStage,
    check_settings,
    render_problems,
    render_settings,
    resolve_settings,
)
from zk_pipelines.domain.settings_file import load_settings
from zk_pipelines.sandbox.world import build_world

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "settings.example.yaml"
DATA = Path(__file__).resolve().parent / "data" / "settings"


def _ids(names: list[str], start: int) -> dict[str, int]:
    # Tenant ids are large, tenant-specific integers; these differ per table so a mix-up shows.
    return {name: start + index for index, name in enumerate(names)}


def _kaseya_catalog() -> KaseyaCatalog:
    """The sandbox's fixed Kaseya names (common.md) with made-up ids."""
    employees = build_world(7, "small").employees
    return KaseyaCatalog(
        opportunity_statuses=_ids(["Prospecting", "Qualification", "Proposal", "Negotiation", "On Hold",
                                   "Closed Won", "Closed Lost"], 101),
        quote_statuses=_ids(["Draft", "Pending Approval", "Sent", "Accepted", "Declined", "Expired"], 201),
        warehouses=_ids(["Main Warehouse", "West Warehouse", "Drop Ship"], 301),
        product_categories=_ids(["Hardware", "Software", "Managed Services", "Professional Services", "Bundles"],
                                401),
        labour_periods=_ids(["Hourly", "Daily", "Weekly", "Monthly"], 501),
        employees={employee.email: 9000 + employee.index for employee in employees},
    )


def _pipeline(pipeline_id: str, name: str, stages: list[tuple[str, str]], is_default: bool = False):
    return ZomentumPipeline(
        pipeline_id, name, tuple(ZomentumStage(f"{pipeline_id}-{i}", n, kind) for i, (n, kind) in enumerate(stages)),
        is_default,
    )


SALES_PIPELINE = _pipeline("sales", "Sales Pipeline", [
    ("New", "open"), ("Qualified", "open"), ("Proposal Sent", "open"), ("Negotiation", "open"), ("Won", "won"),
    ("Lost", "lost")], is_default=True)
RENEWALS_PIPELINE = _pipeline("renewals", "Renewals", [
    ("Renewal Due", "open"), ("Renewal Quoted", "open"), ("Renewed", "won"), ("Churned", "lost")])


def _zomentum_catalog() -> ZomentumCatalog:
    """The sandbox's fixed Zomentum pipelines and users (common.md) with made-up ids."""
    employees = build_world(7, "small").employees
    users = {employee.email: f"user-{employee.index}" for employee in employees[: len(employees) // 2]}
    users |= {"nomatch.one@msp.example": "user-x1", "nomatch.two@msp.example": "user-x2",
              "api.user@msp.example": "user-api"}
    return ZomentumCatalog(pipelines=(SALES_PIPELINE, RENEWALS_PIPELINE), users=users)


def _check(settings) -> list[str]:
    return [problem.line() for problem in check_settings(settings, _kaseya_catalog(), _zomentum_catalog())]


# --------------------------------------------------------------------------------------------------------
# The shipped example and the three bad files of the issue


def test_example_checks_clean_against_the_sandbox_names():
    assert check_settings(load_settings(EXAMPLE), _kaseya_catalog(), _zomentum_catalog()) == []


def test_unknown_status_is_named_with_the_closest_statuses():
    path = DATA / "unknown_status.yaml"
    assert _check(load_settings(path)) == [
        f"{path}: opportunity_stages.mapping[1].kaseya_status: no Kaseya opportunity status is named "
        "'Negotiating' (closest: 'Negotiation', 'Prospecting', 'Qualification'); expected the exact name of a "
        "Kaseya opportunity status"
    ]


def test_misspelt_warehouse_is_named_with_the_real_one_first():
    path = DATA / "misspelt_warehouse.yaml"
    assert _check(load_settings(path)) == [
        f"{path}: product_defaults.warehouse: no Kaseya warehouse is named 'Main Warehose' (closest: "
        "'Main Warehouse', 'West Warehouse', 'Drop Ship'); expected the exact name of a Kaseya warehouse"
    ]


def test_stage_mapped_twice_never_reaches_the_check():
    with pytest.raises(SettingsError, match=r"'Sales Pipeline / Won' is mapped to Kaseya status 'Closed Won'.*"
                                            r"and to 'Closed Lost' here"):
        load_settings(DATA / "stage_mapped_twice.yaml")


# --------------------------------------------------------------------------------------------------------
# Every kind of name


def _example_with(**changes):
    """The example settings with sections replaced: changes are {section: {field: value}} or a value."""
    settings = load_settings(EXAMPLE)
    for section, value in changes.items():
        if isinstance(value, dict):
            value = dataclasses.replace(getattr(settings, section), **value)
        settings = dataclasses.replace(settings, **{section: value})
    return settings


def _stage_entry(settings, index: int, **fields):
    entries = list(settings.opportunity_stages.entries)
    entry = entries[index]
    stage = dataclasses.replace(entry.stage, **{k: v for k, v in fields.items() if k in ("pipeline", "stage")})
    entries[index] = dataclasses.replace(entry, stage=stage,
                                         **{k: v for k, v in fields.items() if k == "kaseya_status"})
    return dataclasses.replace(settings, opportunity_stages=dataclasses.replace(
        settings.opportunity_stages, entries=tuple(entries)))


@pytest.mark.parametrize(
    ("changes", "path", "message"),
    [
        ({"product_defaults": {"labour_period": "Hours"}}, "product_defaults.labour_period",
         "no Kaseya labour period is named 'Hours' (closest: 'Hourly', 'Monthly', 'Daily')"),
        ({"product_defaults": {"product_category": "Services"}}, "product_defaults.product_category",
         "no Kaseya product category is named 'Services' (closest: 'Managed Services', 'Professional Services', "
         "'Bundles')"),
        ({"product_defaults": {"warehouse": "main warehouse"}}, "product_defaults.warehouse",
         "no Kaseya warehouse is named 'main warehouse' ('Main Warehouse' differs only in case; names must match "
         "exactly)"),
        ({"opportunity_stages": {"default_export_status": "Open"}}, "opportunity_stages.default_export_status",
         "no Kaseya opportunity status is named 'Open' (closest: 'Prospecting', 'Closed Won', 'On Hold')"),
        ({"document_statuses": {"default_quote_status": "Rejected"}}, "document_statuses.default_quote_status",
         "no Kaseya quote status is named 'Rejected' (closest: 'Accepted', 'Declined', 'Expired')"),
        ({"fallbacks": {"owner_email": "api.usr@msp.example"}}, "fallbacks.owner_email",
         "no Zomentum user has the e-mail 'api.usr@msp.example' (closest: 'api.user@msp.example', "
         "'anna.adams0@msp.example', 'viktor.dubois3@msp.example')"),
        ({"fallbacks": {"sales_representative_email": "toms.rossi7@msp.example"}},
         "fallbacks.sales_representative_email", None),
        ({"fallbacks": {"sales_representative_email": "tomas.rossi@msp.example"}},
         "fallbacks.sales_representative_email",
         "no Kaseya employee has the e-mail 'tomas.rossi@msp.example' (closest: 'toms.rossi7@msp.example', "
         "'mara.garca6@msp.example', 'olga.wjcik2@msp.example')"),
        ({"fallbacks": {"owner_email": "API.User@MSP.example"}}, "fallbacks.owner_email", None),
    ],
)
def test_unknown_names_are_reported_with_closest_matches(changes, path, message):
    problems = check_settings(_example_with(**changes), _kaseya_catalog(), _zomentum_catalog())
    if message is None:
        assert problems == []
        return
    [problem] = problems
    assert (problem.source, problem.path, problem.message) == (str(EXAMPLE), path, message)


@pytest.mark.parametrize(
    ("index", "fields", "expected"),
    [
        (0, {"pipeline": "Sales"}, "opportunity_stages.mapping[0].pipeline: no Zomentum pipeline is named 'Sales' "
         "(closest: 'Sales Pipeline', 'Renewals'); expected the exact name of a Zomentum pipeline"),
        # Stage suggestions come from the named pipeline; a pipeline that has the stage is pointed out.
        (8, {"stage": "Won"}, "opportunity_stages.mapping[8].stage: no stage of pipeline 'Renewals' is named 'Won' "
         "(closest: 'Renewal Quoted', 'Churned', 'Renewed'; pipeline 'Sales Pipeline' has a stage 'Won'); "
         "expected the exact name of a stage of Zomentum pipeline 'Renewals'"),
        (2, {"stage": "proposal sent"}, "opportunity_stages.mapping[2].stage: no stage of pipeline 'Sales Pipeline' "
         "is named 'proposal sent' ('Proposal Sent' differs only in case; names must match exactly); expected the "
         "exact name of a stage of Zomentum pipeline 'Sales Pipeline'"),
    ],
)
def test_unknown_pipelines_and_stages(index, fields, expected):
    settings = _stage_entry(load_settings(EXAMPLE), index, **fields)
    assert _check(settings) == [f"{EXAMPLE}: {expected}"]


def test_unknown_default_import_stage():
    settings = _example_with(opportunity_stages={"default_import_stage": dataclasses.replace(
        load_settings(EXAMPLE).opportunity_stages.default_import_stage, stage="Open")})
    [line] = _check(settings)
    assert line.startswith(f"{EXAMPLE}: opportunity_stages.default_import_stage.stage: no stage of pipeline "
                           "'Sales Pipeline' is named 'Open' (closest: ")


def test_every_unknown_name_is_reported_in_file_order():
    settings = _stage_entry(_example_with(product_defaults={"warehouse": "Main"},
                                          fallbacks={"owner_email": "nobody@msp.example"}),
                            4, kaseya_status="Won")
    paths = [problem.path for problem in check_settings(settings, _kaseya_catalog(), _zomentum_catalog())]
    assert paths == ["product_defaults.warehouse", "opportunity_stages.mapping[4].kaseya_status",
                     "fallbacks.owner_email"]


def test_pipelines_with_the_same_name_are_ambiguous():
    twin = _pipeline("sales-2", "Sales Pipeline", [("New", "open")])
    zomentum = dataclasses.replace(_zomentum_catalog(), pipelines=(SALES_PIPELINE, RENEWALS_PIPELINE, twin))
    problems = check_settings(load_settings(EXAMPLE), _kaseya_catalog(), zomentum)
    assert problems and all(p.path.endswith(".pipeline") for p in problems)
    assert problems[0].message == "2 Zomentum pipelines are named 'Sales Pipeline' (ids sales, sales-2)"


def test_an_empty_catalog_says_there_is_nothing_to_choose_from():
    kaseya = dataclasses.replace(_kaseya_catalog(), warehouses={})
    [problem] = check_settings(load_settings(EXAMPLE), kaseya, _zomentum_catalog())
    assert problem.message == "no Kaseya warehouse is named 'Main Warehouse' (no Kaseya warehouse exists at all)"


# --------------------------------------------------------------------------------------------------------
# Resolving to ids


def test_resolve_gives_the_ids_of_every_name():
    resolved = resolve_settings(load_settings(EXAMPLE), _kaseya_catalog(), _zomentum_catalog())
    assert resolved.warehouse == NamedId("Main Warehouse", 301)
    assert resolved.labour_period == NamedId("Hourly", 501)
    assert resolved.product_category == NamedId("Professional Services", 404)
    assert resolved.default_import_stage.stage_id == "sales-0"
    assert resolved.default_export_status == NamedId("Prospecting", 101)
    assert resolved.default_quote_status == NamedId("Draft", 201)
    assert resolved.fallback_owner == NamedId("api.user@msp.example", "user-api")
    assert resolved.fallback_sales_representative == NamedId("anna.adams0@msp.example", 9000)
    assert resolved.fingerprint and resolved.fingerprint in render_settings(resolved)


def test_resolve_keeps_the_catalog_spelling_of_an_e_mail():
    settings = _example_with(fallbacks={"owner_email": "API.User@msp.example"})
    resolved = resolve_settings(settings, _kaseya_catalog(), _zomentum_catalog())
    assert resolved.fallback_owner == NamedId("api.user@msp.example", "user-api")


def test_resolve_refuses_unknown_names_with_the_check_messages():
    settings = load_settings(DATA / "misspelt_warehouse.yaml")
    with pytest.raises(SettingsError) as caught:
        resolve_settings(settings, _kaseya_catalog(), _zomentum_catalog())
    assert list(caught.value.problems) == check_settings(settings, _kaseya_catalog(), _zomentum_catalog())


STATUS = _kaseya_catalog().opportunity_statuses


@pytest.mark.parametrize(
    ("status_id", "current_stage_id", "expected_stage_id"),
    [
        (STATUS["Qualification"], None, "sales-1"),
        (STATUS["On Hold"], "sales-3", "sales-0"),  # unmapped: default import stage
        (999_999, "sales-3", "sales-0"),  # a status created since the check: unmapped
        (STATUS["Closed Won"], None, "sales-4"),  # tie, new: first in pipeline order
        (STATUS["Closed Won"], "renewals-2", "renewals-2"),  # tie: current kept
        (STATUS["Closed Won"], "renewals-1", "renewals-2"),  # tie: own pipeline
        (STATUS["Closed Won"], "sales-3", "sales-4"),
        (STATUS["Closed Won"], "deleted-stage", "sales-4"),  # unknown current stage: as if new
    ],
)
def test_import_stage_by_id(status_id, current_stage_id, expected_stage_id):
    resolved = resolve_settings(load_settings(EXAMPLE), _kaseya_catalog(), _zomentum_catalog())
    assert resolved.import_stage(status_id, current_stage_id).stage_id == expected_stage_id


@pytest.mark.parametrize(
    ("stage_id", "expected"),
    [
        ("sales-4", NamedId("Closed Won", STATUS["Closed Won"])),
        ("renewals-2", NamedId("Closed Won", STATUS["Closed Won"])),
        ("renewals-0", NamedId("Prospecting", STATUS["Prospecting"])),
        ("unknown-stage", NamedId("Prospecting", STATUS["Prospecting"])),  # default export status
    ],
)
def test_export_status_by_stage_id(stage_id, expected):
    resolved = resolve_settings(load_settings(EXAMPLE), _kaseya_catalog(), _zomentum_catalog())
    assert resolved.export_status(stage_id) == expected


def test_export_status_of_an_unmapped_stage_is_the_default():
    settings = load_settings(EXAMPLE)
    unmapped = dataclasses.replace(settings.opportunity_stages, entries=settings.opportunity_stages.entries[:-1])
    resolved = resolve_settings(dataclasses.replace(settings, opportunity_stages=unmapped), _kaseya_catalog(),
                                _zomentum_catalog())
    assert resolved.export_status("renewals-3") == NamedId("Prospecting", STATUS["Prospecting"])


@pytest.mark.parametrize(
    ("document_status", "expected"),
    [("won", NamedId("Accepted", 204)), ("viewed", NamedId("Sent", 203)), ("approved", NamedId("Draft", 201))],
)
def test_quote_status_by_document_status(document_status, expected):
    resolved = resolve_settings(load_settings(EXAMPLE), _kaseya_catalog(), _zomentum_catalog())
    assert resolved.quote_status(document_status) == expected


# --------------------------------------------------------------------------------------------------------
# What `zk settings check` and `zk settings show` print


def test_render_problems_lists_each_problem_and_the_count():
    path = DATA / "misspelt_warehouse.yaml"
    problems = check_settings(load_settings(path), _kaseya_catalog(), _zomentum_catalog())
    assert render_problems(problems).splitlines() == [problems[0].line(), f"1 problem in {path}"]
    assert render_problems([]).startswith("settings check passed")


def test_render_settings_shows_resolved_ids_defaults_and_the_fixed_table():
    resolved = resolve_settings(load_settings(EXAMPLE), _kaseya_catalog(), _zomentum_catalog())
    lines = [" ".join(line.split()) for line in render_settings(resolved).splitlines()]
    expected = [
        "warehouse Main Warehouse Kaseya id 301",
        "Sales Pipeline / Won [won] id sales-4 -> Closed Won id 106",
        "Renewals / Renewed [won] id renewals-2 -> Closed Won id 106",
        "Closed Won id 106 -> Sales Pipeline / Won (id sales-4), Renewals / Renewed (id renewals-2) *",
        "On Hold id 105 -> Sales Pipeline / New (id sales-0) (default)",
        "approved -> Draft id 201 (default)",
        "viewed -> Sent id 203",
        "hardware inventory product",
        "software inventory product",
        "service service item",
        "labor labour line",
        "owner (Zomentum user) api.user@msp.example id user-api",
        "sales representative (Kaseya employee) anna.adams0@msp.example id 9000",
        "opportunity {KASEYA_BASE_URL}/crm/opportunities/{id}",
    ]
    for line in expected:
        assert line in lines
    assert any(line.startswith("bundle bundle-level pricing: one service item at the bundle price, plus each child")
               for line in lines)
