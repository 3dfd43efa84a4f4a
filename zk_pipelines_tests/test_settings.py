"""The settings file: loading, validation messages, the mapping rules, the fixed item-type table, the fingerprint."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from zk_pipelines.config import ConfigurationError
from zk_pipelines.domain.settings import (
    KASEYA_ITEM_TYPE_BY_PRODUCT_TYPE,
    PRODUCT_TYPES,
    BundleMode,
    IntegrationMode,
    KaseyaItemType,
    SettingsError,
    StageRef,
    kaseya_item_type,
    product_type_table,
    resolve_export_status,
    resolve_import_stage,
    resolve_quote_status,
    settings_fingerprint,
)
from zk_pipelines.domain.settings_file import load_settings, parse_settings

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "settings.example.yaml"
DATA = Path(__file__).resolve().parent / "data" / "settings"

SALES = "Sales Pipeline"
RENEWALS = "Renewals"
# Zomentum's pipelines in their order (common.md): the "pipeline order" of the import tie-break.
PIPELINE_ORDER = tuple(
    [StageRef(SALES, s) for s in ("New", "Qualified", "Proposal Sent", "Negotiation", "Won", "Lost")]
    + [StageRef(RENEWALS, s) for s in ("Renewal Due", "Renewal Quoted", "Renewed", "Churned")]
)

# A small valid settings mapping, mutated by the tests below.
VALID = {
    "mode": "zomentum_as_crm",
    "sync": {"accounts": True, "contacts": True, "opportunities": False, "products": True,
             "push_quotes_on_won": True},
    "product_defaults": {"warehouse": "Main Warehouse", "labour_period": "Hourly",
                         "product_category": "Professional Services"},
    "opportunity_stages": {
        "mapping": [
            {"pipeline": SALES, "stage": "New", "kaseya_status": "Prospecting"},
            {"pipeline": SALES, "stage": "Won", "kaseya_status": "Closed Won"},
            {"pipeline": RENEWALS, "stage": "Renewed", "kaseya_status": "Closed Won"},
            {"pipeline": SALES, "stage": "Lost", "kaseya_status": "Closed Lost"},
        ],
        "default_import_stage": {"pipeline": SALES, "stage": "Qualified"},
        "default_export_status": "Qualification",
    },
    "document_statuses": {
        "mapping": [
            {"document_status": "won", "quote_status": "Accepted"},
            {"document_status": "accepted", "quote_status": "Accepted"},
            {"document_status": "lost", "quote_status": "Declined"},
        ],
        "default_quote_status": "Draft",
    },
    "bundle_mode": "single_service_item",
    "fallbacks": {"owner_email": "api.user@msp.example", "sales_representative_email": "anna.adams0@msp.example"},
}

_DELETE = object()


def _with(changes: dict[str, object]) -> dict:
    """VALID with `changes` applied; keys are dotted paths ("sync.accounts", "opportunity_stages.mapping.1")."""
    data = copy.deepcopy(VALID)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        key = int(last) if isinstance(node, list) else last
        if value is _DELETE:
            del node[key]
        else:
            node[key] = value
    return data


def _problems(data: object, source: str = "t.yaml") -> list[str]:
    with pytest.raises(SettingsError) as caught:
        parse_settings(data, source=source)
    return [problem.line() for problem in caught.value.problems]


# --------------------------------------------------------------------------------------------------------
# The example file


def test_example_file_loads_with_every_section():
    settings = load_settings(EXAMPLE)

    assert settings.mode is IntegrationMode.ZOMENTUM_AS_CRM
    assert settings.sync.families() == ("accounts", "contacts", "opportunities", "products")
    assert settings.sync.push_quotes_on_won is True
    assert (settings.product_defaults.warehouse, settings.product_defaults.labour_period,
            settings.product_defaults.product_category) == ("Main Warehouse", "Hourly", "Professional Services")
    assert settings.opportunity_stages.default_import_stage == StageRef(SALES, "New")
    assert settings.opportunity_stages.default_export_status == "Prospecting"
    assert settings.document_statuses.default_quote_status == "Draft"
    assert settings.bundle_mode is BundleMode.SERVICE_WITH_ZERO_PRICED_CHILDREN
    assert settings.fallbacks.owner_email == "api.user@msp.example"
    assert settings.fallbacks.sales_representative_email == "anna.adams0@msp.example"
    assert settings.links.kaseya.base_url is None and settings.links.zomentum.base_url is None  # the systems'
    assert settings.source == str(EXAMPLE)


def test_example_file_maps_one_kaseya_status_from_two_stages():
    # The example exercises the import tie-break: "Closed Won" comes from both pipelines' won stages.
    settings = load_settings(EXAMPLE)
    won = [e.stage for e in settings.opportunity_stages.entries if e.kaseya_status == "Closed Won"]
    assert won == [StageRef(SALES, "Won"), StageRef(RENEWALS, "Renewed")]


def test_example_file_spells_out_the_default_links():
    # The example documents the defaults; removing its `links` section must not change what it means.
    with_links = load_settings(EXAMPLE)
    text = EXAMPLE.read_text(encoding="utf-8")
    without_links = parse_settings(yaml.safe_load(text.split("\nlinks:")[0]))
    assert without_links == with_links


# --------------------------------------------------------------------------------------------------------
# Import: Kaseya status -> Zomentum stage, with the tie-break


@pytest.mark.parametrize(
    ("kaseya_status", "current", "order", "expected"),
    [
        pytest.param("Prospecting", None, PIPELINE_ORDER, StageRef(SALES, "New"), id="one stage mapped"),
        pytest.param("Prospecting", StageRef(RENEWALS, "Renewed"), PIPELINE_ORDER, StageRef(SALES, "New"),
                     id="one stage mapped, even across pipelines"),
        pytest.param("On Hold", None, PIPELINE_ORDER, StageRef(SALES, "Qualified"), id="unmapped: default"),
        pytest.param("On Hold", StageRef(SALES, "Won"), PIPELINE_ORDER, StageRef(SALES, "Qualified"),
                     id="unmapped: default even for an existing opportunity"),
        pytest.param("closed won", StageRef(SALES, "Won"), PIPELINE_ORDER, StageRef(SALES, "Qualified"),
                     id="names match exactly: other case is unmapped"),
        pytest.param("Closed Won", StageRef(RENEWALS, "Renewed"), PIPELINE_ORDER, StageRef(RENEWALS, "Renewed"),
                     id="tie: current stage kept although not first"),
        pytest.param("Closed Won", StageRef(SALES, "Won"), PIPELINE_ORDER, StageRef(SALES, "Won"),
                     id="tie: current stage kept"),
        pytest.param("Closed Won", None, PIPELINE_ORDER, StageRef(SALES, "Won"),
                     id="tie, new opportunity: first in pipeline order"),
        pytest.param("Closed Won", None, tuple(reversed(PIPELINE_ORDER)), StageRef(RENEWALS, "Renewed"),
                     id="tie: pipeline order decides, not file order"),
        pytest.param("Closed Won", StageRef(SALES, "Negotiation"), PIPELINE_ORDER, StageRef(SALES, "Won"),
                     id="tie, current stage not among them: first"),
        pytest.param("Closed Won", StageRef(RENEWALS, "Renewal Quoted"), PIPELINE_ORDER,
                     StageRef(RENEWALS, "Renewed"), id="tie: stays in the opportunity's own pipeline"),
        pytest.param("Closed Won", StageRef("Projects", "Kick-off"), PIPELINE_ORDER, StageRef(SALES, "Won"),
                     id="tie, own pipeline has none of them: first in pipeline order"),
        pytest.param("Closed Won", None, (), StageRef(SALES, "Won"),
                     id="tie, stages missing from the order: file order"),
    ],
)
def test_import_stage(kaseya_status, current, order, expected):
    settings = parse_settings(VALID)
    assert resolve_import_stage(settings, kaseya_status, current, order) == expected


def test_import_never_flips_between_equivalent_stages():
    # Pulling the same status again and again leaves the stage where the first pull put it.
    settings = parse_settings(VALID)
    for start in (StageRef(SALES, "Won"), StageRef(RENEWALS, "Renewed")):
        stage = start
        for _ in range(3):
            stage = resolve_import_stage(settings, "Closed Won", stage, PIPELINE_ORDER)
        assert stage == start


# --------------------------------------------------------------------------------------------------------
# Export: stage -> Kaseya status, and document status -> quote status


@pytest.mark.parametrize(
    ("pipeline", "stage", "expected"),
    [
        (SALES, "New", "Prospecting"),
        (SALES, "Won", "Closed Won"),
        (RENEWALS, "Renewed", "Closed Won"),
        (SALES, "Negotiation", "Qualification"),  # unmapped: default export status
        (RENEWALS, "Won", "Qualification"),  # a stage name mapped only in another pipeline is unmapped here
        (SALES, "won", "Qualification"),  # names match exactly
    ],
)
def test_export_status(pipeline, stage, expected):
    assert resolve_export_status(parse_settings(VALID), pipeline, stage) == expected


@pytest.mark.parametrize(
    ("document_status", "expected"),
    [
        ("won", "Accepted"),
        ("accepted", "Accepted"),  # several document statuses -> one quote status
        ("lost", "Declined"),
        ("draft", "Draft"),  # unmapped: default
        ("expired", "Draft"),
    ],
)
def test_quote_status(document_status, expected):
    assert resolve_quote_status(parse_settings(VALID), document_status) == expected


def test_empty_mappings_send_everything_to_the_defaults():
    settings = parse_settings(_with({"opportunity_stages.mapping": [], "document_statuses.mapping": []}))
    assert resolve_export_status(settings, SALES, "Won") == "Qualification"
    assert resolve_import_stage(settings, "Closed Won", StageRef(SALES, "Won"), PIPELINE_ORDER) == StageRef(
        SALES, "Qualified")
    assert resolve_quote_status(settings, "won") == "Draft"


# --------------------------------------------------------------------------------------------------------
# One stage -> one status; one document status -> one quote status


def test_stage_mapped_to_two_statuses_names_the_stage_and_both_statuses():
    data = _with({"opportunity_stages.mapping.3": {"pipeline": SALES, "stage": "Won", "kaseya_status": "Closed Lost"}})
    assert _problems(data) == [
        "t.yaml: opportunity_stages.mapping[3]: stage 'Sales Pipeline / Won' is mapped to Kaseya status "
        "'Closed Won' by opportunity_stages.mapping[1] and to 'Closed Lost' here; expected one Kaseya status "
        "per Zomentum stage (one Kaseya status may be mapped from several stages, not the reverse)"
    ]


def test_same_stage_name_in_two_pipelines_is_two_stages():
    data = _with({"opportunity_stages.mapping.3": {"pipeline": RENEWALS, "stage": "Won",
                                                   "kaseya_status": "Closed Lost"}})
    settings = parse_settings(data)
    assert resolve_export_status(settings, RENEWALS, "Won") == "Closed Lost"
    assert resolve_export_status(settings, SALES, "Won") == "Closed Won"


def test_document_status_mapped_to_two_quote_statuses_names_both():
    data = _with({"document_statuses.mapping.2": {"document_status": "won", "quote_status": "Sent"}})
    assert _problems(data) == [
        "t.yaml: document_statuses.mapping[2]: document status 'won' is mapped to Kaseya quote status "
        "'Accepted' by document_statuses.mapping[0] and to 'Sent' here; expected one Kaseya quote status per "
        "document status (one quote status may be mapped from several document statuses, not the reverse)"
    ]


def test_stage_mapped_twice_file_fails_to_load():
    with pytest.raises(SettingsError) as caught:
        load_settings(DATA / "stage_mapped_twice.yaml")
    [problem] = caught.value.problems
    assert problem.path == "opportunity_stages.mapping[3]"
    assert "'Sales Pipeline / Won'" in problem.message
    assert "'Closed Won'" in problem.message and "'Closed Lost'" in problem.message
    assert str(caught.value).startswith(f"{DATA / 'stage_mapped_twice.yaml'}: opportunity_stages.mapping[3]: ")


# --------------------------------------------------------------------------------------------------------
# Keys, types and required values


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"modes": "kaseya_as_crm"},
                     "t.yaml: modes: unknown key (did you mean 'mode'?); expected one of mode, sync, "
                     "product_defaults, opportunity_stages, document_statuses, bundle_mode, fallbacks, links",
                     id="unknown top-level key"),
        pytest.param({"sync.acounts": True},
                     "t.yaml: sync.acounts: unknown key (did you mean 'accounts'?); expected one of accounts, "
                     "contacts, opportunities, products, push_quotes_on_won", id="unknown nested key"),
        pytest.param({"opportunity_stages.mapping.0.status": "Prospecting"},
                     "t.yaml: opportunity_stages.mapping[0].status: unknown key (did you mean 'kaseya_status'?); "
                     "expected one of pipeline, stage, kaseya_status", id="unknown key in a list entry"),
        pytest.param({"fallbacks.manager": "x@msp.example"},
                     "t.yaml: fallbacks.manager: unknown key; expected one of owner_email, "
                     "sales_representative_email", id="unknown key, nothing close"),
        pytest.param({"mode": _DELETE},
                     "t.yaml: mode: missing; expected an integration mode: one of kaseya_as_crm, zomentum_as_crm",
                     id="missing top-level value"),
        pytest.param({"mode": "kaseya_crm"},
                     "t.yaml: mode: 'kaseya_crm' is not an integration mode (closest: 'kaseya_as_crm', "
                     "'zomentum_as_crm'); expected an integration mode: one of kaseya_as_crm, zomentum_as_crm",
                     id="unknown mode"),
        pytest.param({"bundle_mode": "single"},
                     "t.yaml: bundle_mode: 'single' is not a bundle mode (closest: 'single_service_item', "
                     "'children_with_bundle_price_split', 'service_with_zero_priced_children'); expected a bundle "
                     "mode: one of single_service_item, service_with_zero_priced_children, "
                     "children_with_bundle_price_split", id="unknown bundle mode"),
        pytest.param({"sync": _DELETE},
                     "t.yaml: sync: missing; expected a mapping with keys accounts, contacts, opportunities, "
                     "products, push_quotes_on_won", id="missing section"),
        pytest.param({"sync": ["accounts"]},
                     "t.yaml: sync: is a list; expected a mapping with keys accounts, contacts, opportunities, "
                     "products, push_quotes_on_won", id="section of the wrong type"),
        pytest.param({"sync.products": "yes please"},
                     "t.yaml: sync.products: is text ('yes please'); expected true or false", id="not a boolean"),
        pytest.param({"sync.products": _DELETE},
                     "t.yaml: sync.products: missing; expected true or false", id="missing boolean"),
        pytest.param({"product_defaults.warehouse": 12},
                     "t.yaml: product_defaults.warehouse: is a number (12); expected the name of a Kaseya warehouse "
                     "(quote it if YAML reads it as a number or true/false)", id="number where a name belongs"),
        pytest.param({"product_defaults.labour_period": "  "},
                     "t.yaml: product_defaults.labour_period: is empty; expected the name of a Kaseya labour period",
                     id="empty name"),
        pytest.param({"product_defaults.product_category": None},
                     "t.yaml: product_defaults.product_category: missing; expected the name of a Kaseya product "
                     "category", id="null is missing"),
        pytest.param({"opportunity_stages.mapping": {"Sales Pipeline": "Won"}},
                     "t.yaml: opportunity_stages.mapping: is a mapping; expected a list of {pipeline, stage, "
                     "kaseya_status}", id="mapping not a list"),
        pytest.param({"opportunity_stages.mapping": _DELETE},
                     "t.yaml: opportunity_stages.mapping: missing; expected a list of {pipeline, stage, "
                     "kaseya_status} (an empty list [] is allowed)", id="missing mapping"),
        pytest.param({"opportunity_stages.mapping.1": "Won -> Closed Won"},
                     "t.yaml: opportunity_stages.mapping[1]: is text ('Won -> Closed Won'); expected a mapping with "
                     "keys pipeline, stage, kaseya_status", id="entry not a mapping"),
        pytest.param({"opportunity_stages.mapping.2.pipeline": _DELETE},
                     "t.yaml: opportunity_stages.mapping[2].pipeline: missing; expected the name of a Zomentum "
                     "pipeline", id="entry without pipeline"),
        pytest.param({"opportunity_stages.default_import_stage": _DELETE},
                     "t.yaml: opportunity_stages.default_import_stage: missing; expected a mapping with keys "
                     "pipeline, stage", id="missing default import stage"),
        pytest.param({"opportunity_stages.default_import_stage": "New"},
                     "t.yaml: opportunity_stages.default_import_stage: is text ('New'); expected a mapping with "
                     "keys pipeline, stage", id="default import stage without its pipeline"),
        pytest.param({"opportunity_stages.default_import_stage.stage": _DELETE},
                     "t.yaml: opportunity_stages.default_import_stage.stage: missing; expected the name of a stage "
                     "of that pipeline", id="default import stage without stage"),
        pytest.param({"opportunity_stages.default_export_status": _DELETE},
                     "t.yaml: opportunity_stages.default_export_status: missing; expected the name of a Kaseya "
                     "opportunity status", id="missing default export status"),
        pytest.param({"document_statuses.mapping.0.document_status": "Won"},
                     "t.yaml: document_statuses.mapping[0].document_status: 'Won' is not a Zomentum document status "
                     "(closest: 'won', 'lost', 'sent'); expected a Zomentum document status: one of draft, "
                     "pending_approval, approved, sent, viewed, accepted, won, lost, expired",
                     id="document status in the wrong case"),
        pytest.param({"document_statuses.default_quote_status": True},
                     "t.yaml: document_statuses.default_quote_status: is true/false (true); expected the name of a "
                     "Kaseya quote status (quote it if YAML reads it as a number or true/false)",
                     id="boolean where a name belongs"),
        pytest.param({"fallbacks.owner_email": "API User"},
                     "t.yaml: fallbacks.owner_email: 'API User' is not an e-mail address; expected the e-mail "
                     "address of a Zomentum user", id="owner is not an e-mail"),
        pytest.param({"fallbacks.sales_representative_email": _DELETE},
                     "t.yaml: fallbacks.sales_representative_email: missing; expected the e-mail address of a "
                     "Kaseya employee", id="missing sales rep"),
        pytest.param({"links.kaseya.base_url": "127.0.0.1:8601"},
                     "t.yaml: links.kaseya.base_url: '127.0.0.1:8601' is not an http(s) address; expected an "
                     "address such as https://example.com", id="base url without scheme"),
        pytest.param({"links.zomentum.client": "{base_url}/clients"},
                     "t.yaml: links.zomentum.client: '{base_url}/clients' has no {id}; expected a link template "
                     "using only {base_url} and {id}, with {id}, e.g. {base_url}/crm/accounts/{id}",
                     id="link template without id"),
        pytest.param({"links.kaseya.quote": "{base_url}/quotes/{quote_id}"},
                     "t.yaml: links.kaseya.quote: '{base_url}/quotes/{quote_id}' uses unknown placeholder "
                     "{quote_id}; expected a link template using only {base_url} and {id}, with {id}, "
                     "e.g. {base_url}/crm/accounts/{id}", id="link template with unknown placeholder"),
        pytest.param({"links.kaseya.invoice": "{base_url}/invoices/{id}"},
                     "t.yaml: links.kaseya.invoice: unknown key; expected one of base_url, account, contact, "
                     "opportunity, quote, product", id="link for an unknown entity"),
    ],
)
def test_invalid_settings_name_file_key_path_and_expected_form(changes, expected):
    assert _problems(_with(changes)) == [expected]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (["mode: zomentum_as_crm"], "t.yaml: (top level): is a list; expected a mapping with keys mode, sync, "),
        ("mode", "t.yaml: (top level): is text ('mode'); expected a mapping with keys mode, sync, "),
    ],
)
def test_top_level_must_be_a_mapping(data, expected):
    [problem] = _problems(data)
    assert problem.startswith(expected)


def test_every_problem_is_reported_at_once():
    problems = _problems(_with({
        "mode": "crm", "sync.products": 1, "product_defaults.warehouse": _DELETE, "bundle_mode": _DELETE,
    }))
    assert [line.split(":")[1].strip() for line in problems] == [
        "mode", "sync.products", "product_defaults.warehouse", "bundle_mode",
    ]


def test_an_empty_file_lists_every_required_section():
    problems = _problems(None)
    assert [line.split(":")[1].strip() for line in problems] == [
        "mode", "sync", "product_defaults", "opportunity_stages", "document_statuses", "bundle_mode", "fallbacks",
    ]


def test_malformed_file_reports_file_key_path_and_expected_form():
    path = DATA / "malformed.yaml"
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    assert str(caught.value).splitlines() == [
        f"{path}: bundel_mode: unknown key (did you mean 'bundle_mode'?); expected one of mode, sync, "
        "product_defaults, opportunity_stages, document_statuses, bundle_mode, fallbacks, links",
        f"{path}: bundle_mode: missing; expected a bundle mode: one of single_service_item, "
        "service_with_zero_priced_children, children_with_bundle_price_split",
        f"{path}: fallbacks.sales_representative_email: is a number (42); expected the e-mail address of a "
        "Kaseya employee (quote it if YAML reads it as a number or true/false)",
    ]


def test_a_key_given_twice_is_an_error_not_silently_the_last(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "  warehouse: Main Warehouse", "  warehouse: Main Warehouse\n  warehouse: West Warehouse", 1)
    path = tmp_path / "twice.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    [problem] = caught.value.problems
    assert problem.path == "product_defaults.warehouse"
    assert problem.message.startswith("is given twice (lines ")


def test_a_key_overriding_a_yaml_merge_is_not_a_repeat(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "product_defaults:\n",
        "shared: &shared {warehouse: West Warehouse, labour_period: Hourly}\nproduct_defaults:\n  <<: *shared\n", 1)
    path = tmp_path / "merged.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    # Only the helper key is wrong; `warehouse` written after the merge simply wins.
    assert [p.path for p in caught.value.problems] == ["shared"]


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("mode: zomentum_as_crm\nsync: {accounts: true\n", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    [problem] = caught.value.problems
    assert problem.source == str(path)
    assert problem.path.startswith("line 3")
    assert problem.message.startswith("is not valid YAML")


def test_missing_file_says_where_the_path_comes_from(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    assert str(caught.value) == f"{path}: (file): does not exist; expected a YAML settings file (ZK_SETTINGS names it)"


def test_settings_error_is_a_configuration_error():
    # The command line prints ConfigurationError as one message without a traceback.
    with pytest.raises(ConfigurationError):
        parse_settings({})


def test_links_default_to_the_configured_systems_unless_the_settings_set_a_base_url():
    settings = parse_settings(_with({"links.zomentum.base_url": "https://app.zomentum.com/"}))
    with pytest.raises(ValueError, match="base_url is not known"):
        settings.links.kaseya.url("opportunity", 42)
    settings = settings.for_systems("http://127.0.0.1:5001/", "http://127.0.0.1:5002")
    assert settings.links.kaseya.url("opportunity", 42) == "http://127.0.0.1:5001/crm/opportunities/42"
    assert settings.links.zomentum.url("document", "d-1") == "https://app.zomentum.com/documents/d-1"
    with pytest.raises(KeyError):
        settings.links.kaseya.url("invoice", 1)


@pytest.mark.parametrize(
    ("mode", "updates_linked", "pushes_won"),
    [("kaseya_as_crm", True, False), ("zomentum_as_crm", False, True)],
)
def test_integration_modes(mode, updates_linked, pushes_won):
    settings = parse_settings(_with({"mode": mode, "sync.push_quotes_on_won": False}))
    assert settings.mode.pull_updates_linked_entities is updates_linked
    assert settings.mode.pushes_won_opportunity is pushes_won


# --------------------------------------------------------------------------------------------------------
# The fixed product type -> Kaseya item type table


@pytest.mark.parametrize(
    ("product_type", "bundle_mode", "pricing_level", "expected"),
    [
        ("hardware", BundleMode.SINGLE_SERVICE_ITEM, "bundle", KaseyaItemType.INVENTORY_PRODUCT),
        ("software", BundleMode.SINGLE_SERVICE_ITEM, "bundle", KaseyaItemType.INVENTORY_PRODUCT),
        ("service", BundleMode.CHILDREN_WITH_BUNDLE_PRICE_SPLIT, "bundle", KaseyaItemType.SERVICE_ITEM),
        ("labor", BundleMode.SERVICE_WITH_ZERO_PRICED_CHILDREN, "bundle", KaseyaItemType.LABOUR_LINE),
        ("bundle", BundleMode.SINGLE_SERVICE_ITEM, "bundle", KaseyaItemType.SERVICE_ITEM),
        ("bundle", BundleMode.SERVICE_WITH_ZERO_PRICED_CHILDREN, "bundle", KaseyaItemType.SERVICE_ITEM),
        ("bundle", BundleMode.CHILDREN_WITH_BUNDLE_PRICE_SPLIT, "bundle", None),
        ("bundle", BundleMode.SINGLE_SERVICE_ITEM, "individual", None),
        ("bundle", BundleMode.SERVICE_WITH_ZERO_PRICED_CHILDREN, "individual", None),
    ],
)
def test_kaseya_item_type(product_type, bundle_mode, pricing_level, expected):
    assert kaseya_item_type(product_type, bundle_mode, pricing_level) is expected


@pytest.mark.parametrize(("product_type", "pricing_level"), [("Hardware", "bundle"), ("bundle", "tiered")])
def test_kaseya_item_type_rejects_unknown_inputs(product_type, pricing_level):
    with pytest.raises(ValueError):
        kaseya_item_type(product_type, BundleMode.SINGLE_SERVICE_ITEM, pricing_level)


def test_product_type_table_covers_every_zomentum_product_type():
    assert set(KASEYA_ITEM_TYPE_BY_PRODUCT_TYPE) | {"bundle"} == set(PRODUCT_TYPES)
    for mode in BundleMode:
        rows = dict(product_type_table(mode))
        assert tuple(rows) == PRODUCT_TYPES
        assert mode.value in rows["bundle"]


# --------------------------------------------------------------------------------------------------------
# The fingerprint

_EXAMPLE_REWRITTEN = """
bundle_mode: "service_with_zero_priced_children"
fallbacks:
    sales_representative_email: 'anna.adams0@msp.example'
    owner_email: api.user@msp.example
document_statuses:
    default_quote_status: Draft
    mapping:
    -   {quote_status: Declined, document_status: lost}
    -   {quote_status: Expired, document_status: expired}
    -   {quote_status: Draft, document_status: draft}
    -   {quote_status: Pending Approval, document_status: pending_approval}
    -   {quote_status: Sent, document_status: sent}
    -   {quote_status: Sent, document_status: viewed}
    -   {quote_status: Accepted, document_status: accepted}
    -   {quote_status: Accepted, document_status: won}
opportunity_stages:
    default_export_status: Prospecting
    default_import_stage: {stage: New, pipeline: Sales Pipeline}
    mapping:
    -   {pipeline: Renewals, stage: Churned, kaseya_status: Closed Lost}
    -   {pipeline: Renewals, stage: Renewed, kaseya_status: Closed Won}
    -   {pipeline: Renewals, stage: Renewal Quoted, kaseya_status: Proposal}
    -   {pipeline: Renewals, stage: Renewal Due, kaseya_status: Prospecting}
    -   {pipeline: Sales Pipeline, stage: Lost, kaseya_status: Closed Lost}
    -   {pipeline: Sales Pipeline, stage: Won, kaseya_status: Closed Won}
    -   {pipeline: Sales Pipeline, stage: Negotiation, kaseya_status: Negotiation}
    -   {pipeline: Sales Pipeline, stage: Proposal Sent, kaseya_status: Proposal}
    -   {pipeline: Sales Pipeline, stage: Qualified, kaseya_status: Qualification}
    -   {pipeline: Sales Pipeline, stage: New, kaseya_status: Prospecting}
product_defaults: {product_category: Professional Services, labour_period: Hourly, warehouse: Main Warehouse}
sync: {push_quotes_on_won: yes, products: true, opportunities: true, contacts: true, accounts: true}
mode: zomentum_as_crm
"""


def test_fingerprint_ignores_order_comments_quoting_whitespace_and_spelt_out_defaults(tmp_path):
    rewritten = tmp_path / "rewritten.yaml"
    rewritten.write_text(_EXAMPLE_REWRITTEN, encoding="utf-8")
    assert settings_fingerprint(load_settings(rewritten)) == settings_fingerprint(load_settings(EXAMPLE))


def test_fingerprint_is_a_stable_value():
    # Pinned: a change here means every recorded run now points at a different fingerprint for the same
    # settings; change it only together with a deliberate change of the fingerprint's definition.
    fingerprint = settings_fingerprint(parse_settings(VALID, source="a.yaml"))
    assert fingerprint == "1a30b2d83825db4ac6255256da3acf0af369954f0a9a3399491a45ac50bc213b"
    # Where the settings came from is not part of what they mean.
    assert settings_fingerprint(parse_settings(copy.deepcopy(VALID), source="b.yaml")) == fingerprint


@pytest.mark.parametrize(
    "changes",
    [
        {"mode": "kaseya_as_crm", "sync.push_quotes_on_won": False},
        {"sync.accounts": False},
        {"product_defaults.warehouse": "West Warehouse"},
        {"opportunity_stages.mapping.1.kaseya_status": "Closed Lost"},
        {"opportunity_stages.mapping.3": _DELETE},
        {"opportunity_stages.default_import_stage.stage": "New"},
        {"opportunity_stages.default_export_status": "Prospecting"},
        {"document_statuses.mapping.0.quote_status": "Sent"},
        {"document_statuses.default_quote_status": "Sent"},
        {"bundle_mode": "children_with_bundle_price_split"},
        {"fallbacks.owner_email": "someone@msp.example"},
        {"links.kaseya.base_url": "https://bms.kaseya.com"},
        {"links.zomentum.item": "{base_url}/products/{id}"},
    ],
)
def test_fingerprint_changes_with_every_setting(changes):
    assert settings_fingerprint(parse_settings(_with(changes))) != settings_fingerprint(parse_settings(VALID))
