"""The integration settings: one validated YAML file (path in `ZK_SETTINGS`) that the pull and the push read.

It carries the "Settings" and "Field Mapping" sections of Zomentum's Kaseya BMS integration: the integration
mode, what to sync, the defaults for products created in Kaseya, the opportunity stage <-> Kaseya status
mapping, the document status -> Kaseya quote status mapping, the bundle mode, the fallback owner and sales
representative, and the addresses used to link to records in each system. The product type -> Kaseya item
type table is not a setting (Zomentum does not let users edit it either); it is defined once here.

Everything in this module works on names as the file spells them. Whether those names exist in the live
systems, and which ids they have there, is `settings_check`'s job.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from zk_pipelines.domain.errors import ConfigurationError

# --------------------------------------------------------------------------------------------------------
# Problems and the error that carries them


@dataclass(frozen=True)
class SettingsProblem:
    """One thing wrong with a settings file, located by key path (`opportunity_stages.mapping[2].stage`)."""

    source: str
    path: str
    message: str
    expected: str

    def line(self) -> str:
        return f"{self.source}: {self.path}: {self.message}; expected {self.expected}"

    def __str__(self) -> str:
        return self.line()


class SettingsError(ConfigurationError):
    """The settings cannot be used; `problems` lists every problem found, not only the first."""

    def __init__(self, problems: Sequence[SettingsProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(problem.line() for problem in self.problems))


# --------------------------------------------------------------------------------------------------------
# The vocabulary of the settings


class IntegrationMode(StrEnum):
    KASEYA_AS_CRM = "kaseya_as_crm"
    ZOMENTUM_AS_CRM = "zomentum_as_crm"

    @property
    def pull_updates_linked_entities(self) -> bool:
        """Whether the pull overwrites Zomentum records already linked to Kaseya records.

        Kaseya as CRM: pulled records are read-only in Zomentum and Kaseya wins every field it maps.
        Zomentum as CRM: the pull only creates what is new in Kaseya.
        """
        return self is IntegrationMode.KASEYA_AS_CRM

    @property
    def pushes_won_opportunity(self) -> bool:
        """Whether a Won opportunity is pushed as soon as it is Won (otherwise only on demand)."""
        return self is IntegrationMode.ZOMENTUM_AS_CRM

    @property
    def description(self) -> str:
        if self is IntegrationMode.KASEYA_AS_CRM:
            return ("Kaseya is the CRM: pulled records are read-only in Zomentum (Kaseya wins every field it "
                    "maps); documents are pushed only on demand")
        return ("Zomentum is the CRM: the pull creates records that are new in Kaseya and does not overwrite "
                "linked ones; the Won opportunity is pushed automatically")


class BundleMode(StrEnum):
    """How a bundle with bundle-level pricing becomes Kaseya quote lines."""

    SINGLE_SERVICE_ITEM = "single_service_item"
    SERVICE_WITH_ZERO_PRICED_CHILDREN = "service_with_zero_priced_children"
    CHILDREN_WITH_BUNDLE_PRICE_SPLIT = "children_with_bundle_price_split"

    @property
    def description(self) -> str:
        return _BUNDLE_MODE_DESCRIPTIONS[self]


_BUNDLE_MODE_DESCRIPTIONS = {
    BundleMode.SINGLE_SERVICE_ITEM: "one service item at the bundle price",
    BundleMode.SERVICE_WITH_ZERO_PRICED_CHILDREN:
        "one service item at the bundle price, plus each child at its own item type priced 0",
    BundleMode.CHILDREN_WITH_BUNDLE_PRICE_SPLIT:
        "no line of its own: each child at its own item type, the bundle price divided equally among them",
}


class KaseyaItemType(StrEnum):
    INVENTORY_PRODUCT = "inventory_product"
    SERVICE_ITEM = "service_item"
    LABOUR_LINE = "labour_line"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


# Zomentum item `type` values (zomentum-api-notes.md).
PRODUCT_TYPES = ("hardware", "software", "service", "labor", "bundle")

# The fixed product type -> Kaseya item type table. A bundle has no fixed type: `kaseya_item_type` decides
# it from the bundle mode and the bundle's pricing level.
KASEYA_ITEM_TYPE_BY_PRODUCT_TYPE: Mapping[str, KaseyaItemType] = MappingProxyType({
    "hardware": KaseyaItemType.INVENTORY_PRODUCT,
    "software": KaseyaItemType.INVENTORY_PRODUCT,
    "service": KaseyaItemType.SERVICE_ITEM,
    "labor": KaseyaItemType.LABOUR_LINE,
})

_BUNDLE_LINE_ITEM_TYPE: Mapping[BundleMode, KaseyaItemType | None] = MappingProxyType({
    BundleMode.SINGLE_SERVICE_ITEM: KaseyaItemType.SERVICE_ITEM,
    BundleMode.SERVICE_WITH_ZERO_PRICED_CHILDREN: KaseyaItemType.SERVICE_ITEM,
    BundleMode.CHILDREN_WITH_BUNDLE_PRICE_SPLIT: None,
})

# Zomentum document `status` values. Zomentum publishes no schema for them: this is the assumed contract of
# zomentum-api-notes.md, and there is no lookup to check them against, so they are checked here.
DOCUMENT_STATUSES = ("draft", "pending_approval", "approved", "sent", "viewed", "accepted", "won", "lost",
                     "expired")

SYNC_FAMILIES = ("accounts", "contacts", "opportunities", "products")

# Link templates per entity; `{base_url}` and `{id}` are filled in. The paths are assumptions about each
# product's web address layout (neither vendor documents deep links); a tenant overrides them in `links`.
DEFAULT_KASEYA_LINK_TEMPLATES: Mapping[str, str] = MappingProxyType({
    "account": "{base_url}/crm/accounts/{id}",
    "contact": "{base_url}/crm/contacts/{id}",
    "opportunity": "{base_url}/crm/opportunities/{id}",
    "quote": "{base_url}/crm/quotes/{id}",
    "product": "{base_url}/inventory/products/{id}",
})
DEFAULT_ZOMENTUM_LINK_TEMPLATES: Mapping[str, str] = MappingProxyType({
    "client": "{base_url}/clients/{id}",
    "client_user": "{base_url}/client-users/{id}",
    "opportunity": "{base_url}/opportunities/{id}",
    "document": "{base_url}/documents/{id}",
    "item": "{base_url}/items/{id}",
})


# --------------------------------------------------------------------------------------------------------
# The settings model


@dataclass(frozen=True)
class StageRef:
    """A Zomentum opportunity stage, named by its pipeline (stage names repeat across pipelines)."""

    pipeline: str
    stage: str

    def __str__(self) -> str:
        return f"{self.pipeline} / {self.stage}"


@dataclass(frozen=True)
class SyncSelection:
    accounts: bool
    contacts: bool
    opportunities: bool
    products: bool
    push_quotes_on_won: bool

    def families(self) -> tuple[str, ...]:
        """The entity families the pull covers, in `SYNC_FAMILIES` order."""
        return tuple(name for name in SYNC_FAMILIES if getattr(self, name))


@dataclass(frozen=True)
class ProductDefaults:
    """Defaults for products created in Kaseya, by Kaseya name."""

    warehouse: str
    labour_period: str
    product_category: str


@dataclass(frozen=True)
class StageStatus:
    stage: StageRef
    kaseya_status: str


@dataclass(frozen=True)
class OpportunityStageMapping:
    entries: tuple[StageStatus, ...]  # in file order
    default_import_stage: StageRef
    default_export_status: str


@dataclass(frozen=True)
class DocumentQuoteStatus:
    document_status: str
    quote_status: str


@dataclass(frozen=True)
class DocumentStatusMapping:
    entries: tuple[DocumentQuoteStatus, ...]  # in file order
    default_quote_status: str


@dataclass(frozen=True)
class Fallbacks:
    """Used when no user matches by e-mail between the systems."""

    owner_email: str  # a Zomentum user
    sales_representative_email: str  # a Kaseya employee


@dataclass(frozen=True)
class SystemLinks:
    # Without a trailing slash; None (not set in the file): the configured system's address (KASEYA_BASE_URL,
    # ZOMENTUM_BASE_URL), filled in by `Links.for_systems` where the configuration is known.
    base_url: str | None
    templates: tuple[tuple[str, str], ...]  # (entity, template with {base_url} and {id})

    def url(self, entity: str, record_id: object) -> str:
        if self.base_url is None:
            raise ValueError("the links' base_url is not known: Links.for_systems fills in the configured one")
        for name, template in self.templates:
            if name == entity:
                return template.format(base_url=self.base_url, id=record_id)
        raise KeyError(f"no link template for {entity!r}; known: {', '.join(n for n, _ in self.templates)}")


@dataclass(frozen=True)
class Links:
    kaseya: SystemLinks
    zomentum: SystemLinks

    def for_systems(self, kaseya_base_url: str | None, zomentum_base_url: str | None) -> Links:
        """The links with each base_url the file leaves unset taken from the configured system's address."""
        kaseya = self.kaseya if self.kaseya.base_url or not kaseya_base_url else SystemLinks(
            kaseya_base_url.rstrip("/"), self.kaseya.templates)
        zomentum = self.zomentum if self.zomentum.base_url or not zomentum_base_url else SystemLinks(
            zomentum_base_url.rstrip("/"), self.zomentum.templates)
        return Links(kaseya, zomentum)


@dataclass(frozen=True)
class IntegrationSettings:
    mode: IntegrationMode
    sync: SyncSelection
    product_defaults: ProductDefaults
    opportunity_stages: OpportunityStageMapping
    document_statuses: DocumentStatusMapping
    bundle_mode: BundleMode
    fallbacks: Fallbacks
    links: Links
    # Where the settings came from; used in messages, not part of the settings' identity or fingerprint.
    source: str = field(default="<settings>", compare=False)

    def for_systems(self, kaseya_base_url: str | None, zomentum_base_url: str | None) -> IntegrationSettings:
        """These settings with the links' unset base URLs taken from the configured systems' addresses."""
        return replace(self, links=self.links.for_systems(kaseya_base_url, zomentum_base_url))


# --------------------------------------------------------------------------------------------------------
# The rules


def resolve_export_status(settings: IntegrationSettings, pipeline: str, stage: str) -> str:
    """The Kaseya opportunity status for a Zomentum stage; the default export status when it is unmapped."""
    wanted = StageRef(pipeline, stage)
    for entry in settings.opportunity_stages.entries:
        if entry.stage == wanted:
            return entry.kaseya_status
    return settings.opportunity_stages.default_export_status


def stages_mapped_from(settings: IntegrationSettings, kaseya_status: str) -> tuple[StageRef, ...]:
    """Every Zomentum stage mapped to this Kaseya status, in file order."""
    return tuple(e.stage for e in settings.opportunity_stages.entries if e.kaseya_status == kaseya_status)


def resolve_import_stage(
    settings: IntegrationSettings,
    kaseya_status: str,
    current_stage: StageRef | None,
    pipelines_order: Sequence[StageRef],
) -> StageRef:
    """The Zomentum stage for an opportunity pulled with this Kaseya status (matched by exact name).

    An unmapped status gives the default import stage. A status mapped from several stages keeps the
    opportunity's current stage when it is one of them, so a sync never flips an opportunity between
    equivalent stages; otherwise the first of them in pipeline order (`pipelines_order`: every stage of
    every pipeline, pipelines in Zomentum's order, stages in their order), preferring the opportunity's own
    pipeline so that an equivalent stage never moves it to another pipeline.
    """
    candidates = stages_mapped_from(settings, kaseya_status)
    if not candidates:
        return settings.opportunity_stages.default_import_stage
    if current_stage in candidates:
        return current_stage
    position = {stage: index for index, stage in enumerate(pipelines_order)}
    # Stages missing from the order (only possible before the live check) go last, in file order.
    ordered = sorted(candidates, key=lambda stage: position.get(stage, len(position)))
    if current_stage is not None:
        in_own_pipeline = [stage for stage in ordered if stage.pipeline == current_stage.pipeline]
        if in_own_pipeline:
            return in_own_pipeline[0]
    return ordered[0]


def resolve_quote_status(settings: IntegrationSettings, document_status: str) -> str:
    """The Kaseya quote status for a Zomentum document status; the default when it is unmapped."""
    for entry in settings.document_statuses.entries:
        if entry.document_status == document_status:
            return entry.quote_status
    return settings.document_statuses.default_quote_status


def kaseya_item_type(
    product_type: str, bundle_mode: BundleMode, bundle_pricing_level: str = "bundle"
) -> KaseyaItemType | None:
    """The Kaseya item type a Zomentum product line becomes; None when a bundle has no line of its own.

    A bundle priced at bundle level follows the bundle mode; one priced at individual level always pushes
    its children at their own prices, so the bundle itself has no line.
    """
    if product_type == "bundle":
        if bundle_pricing_level == "individual":
            return None
        if bundle_pricing_level != "bundle":
            raise ValueError(f"unknown bundle pricing level {bundle_pricing_level!r}; expected bundle or individual")
        return _BUNDLE_LINE_ITEM_TYPE[bundle_mode]
    try:
        return KASEYA_ITEM_TYPE_BY_PRODUCT_TYPE[product_type]
    except KeyError:
        raise ValueError(
            f"unknown Zomentum product type {product_type!r}; expected one of {', '.join(PRODUCT_TYPES)}"
        ) from None


def product_type_table(bundle_mode: BundleMode) -> tuple[tuple[str, str], ...]:
    """The fixed product type -> Kaseya item type table as (product type, what it becomes) rows."""
    rows = [(product_type, item_type.label) for product_type, item_type in KASEYA_ITEM_TYPE_BY_PRODUCT_TYPE.items()]
    rows.append(("bundle", f"bundle-level pricing: {bundle_mode.description} (bundle mode {bundle_mode}); "
                           "individual-level pricing: each child at its own item type and price"))
    return tuple(rows)


def effective_settings(settings: IntegrationSettings) -> dict[str, Any]:
    """The settings as plain data, defaults filled in, mapping entries sorted (their order is not meaningful:
    import ties are broken by pipeline order, never by file order)."""
    stages = settings.opportunity_stages
    documents = settings.document_statuses
    return {
        "mode": settings.mode.value,
        "sync": {name: getattr(settings.sync, name) for name in (*SYNC_FAMILIES, "push_quotes_on_won")},
        "product_defaults": {
            "warehouse": settings.product_defaults.warehouse,
            "labour_period": settings.product_defaults.labour_period,
            "product_category": settings.product_defaults.product_category,
        },
        "opportunity_stages": {
            "mapping": sorted(
                ({"pipeline": e.stage.pipeline, "stage": e.stage.stage, "kaseya_status": e.kaseya_status}
                 for e in stages.entries),
                key=lambda row: (row["pipeline"], row["stage"], row["kaseya_status"]),
            ),
            "default_import_stage": {"pipeline": stages.default_import_stage.pipeline,
                                     "stage": stages.default_import_stage.stage},
            "default_export_status": stages.default_export_status,
        },
        "document_statuses": {
            "mapping": sorted(
                ({"document_status": e.document_status, "quote_status": e.quote_status} for e in documents.entries),
                key=lambda row: (row["document_status"], row["quote_status"]),
            ),
            "default_quote_status": documents.default_quote_status,
        },
        "bundle_mode": settings.bundle_mode.value,
        "fallbacks": {
            "owner_email": settings.fallbacks.owner_email,
            "sales_representative_email": settings.fallbacks.sales_representative_email,
        },
        "links": {
            system: {"base_url": links.base_url, **dict(links.templates)}
            for system, links in (("kaseya", settings.links.kaseya), ("zomentum", settings.links.zomentum))
        },
    }


def settings_fingerprint(settings: IntegrationSettings) -> str:
    """A stable SHA-256 of the effective settings: the same for any file that means the same thing,
    whatever its key order, comments, quoting or whitespace, or whether defaults are spelt out."""
    canonical = json.dumps(effective_settings(settings), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------------
# Loading and validation


def load_settings(path: str | PathLike[str]) -> IntegrationSettings:
    """Read and validate a settings file; raises `SettingsError` listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError([SettingsProblem(source, "(file)", "does not exist",
                                             "a YAML settings file (ZK_SETTINGS names it)")]) from None
    except UnicodeDecodeError:
        raise SettingsError([SettingsProblem(source, "(file)", "is not UTF-8 text", "a YAML settings file")]) from None
    except OSError as exc:
        raise SettingsError([SettingsProblem(source, "(file)", f"cannot be read ({exc.strerror})",
                                             "a readable YAML settings file")]) from None
    return settings_from_text(text, source)


def settings_from_text(text: str, source: str = "<settings>") -> IntegrationSettings:
    """Validate the text of a settings file (`source` names it in the problems); raises `SettingsError`."""
    try:
        data = yaml.load(text, Loader=_SettingsLoader)  # a SafeLoader that also reports repeated keys
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SettingsError([SettingsProblem(source, where, f"is not valid YAML ({problem})",
                                             "a YAML mapping")]) from None
    except RecursionError:
        # PyYAML builds nested values recursively; settings nest a few levels, a file nested thousands deep is
        # not settings (and would otherwise end in Python's recursion limit).
        raise SettingsError([SettingsProblem(source, "(file)", "nests too deep to be read",
                                             "a YAML mapping a few levels deep")]) from None
    except (ValueError, OverflowError) as exc:
        # A plain scalar YAML reads as a date or a number that does not exist (`2026-13-45`, `1e999999`...).
        raise SettingsError([SettingsProblem(source, "(file)", f"has a value YAML cannot read ({exc})",
                                             "valid YAML; quote a value that is text")]) from None
    return parse_settings(data, source=source)


def parse_settings(data: object, source: str = "<settings>") -> IntegrationSettings:
    """Validate already-parsed YAML (a mapping) into settings; raises `SettingsError` listing every problem."""
    reader = _Reader(source)
    settings = reader.settings(data)
    if reader.problems or settings is None:
        raise SettingsError(reader.problems)
    return settings


class _YamlMapping(dict):
    """A YAML mapping that remembers keys given twice (plain YAML keeps the last one silently)."""

    def __init__(self) -> None:
        super().__init__()
        self.repeated: list[tuple[object, int, int]] = []  # (key, first line, repeated line)


class _SettingsLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _SettingsLoader, node: yaml.MappingNode) -> _YamlMapping:
    # Keys a YAML merge (`<<: *anchor`) brings in may be overridden; only keys written twice are mistakes.
    written = {id(key_node) for key_node, _ in node.value}
    loader.flatten_mapping(node)
    result = _YamlMapping()
    first_line: dict[object, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found an unhashable key", key_node.start_mark
            ) from None
        line = key_node.start_mark.line + 1
        if key in first_line:
            result.repeated.append((key, first_line[key], line))
        elif id(key_node) in written:
            first_line[key] = line
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_SettingsLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# For the project's other YAML files (the tenant registry): a SafeLoader whose mappings list keys written twice.
RepeatedKeysLoader = _SettingsLoader
YamlMapping = _YamlMapping

_TOP_LEVEL = "(top level)"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_BASE_URL = re.compile(r"https?://[^/\s]+(/\S*)?")
_QUOTE_HINT = " (quote it if YAML reads it as a number or true/false)"


def _child(path: str, key: str) -> str:
    return key if path == _TOP_LEVEL else f"{path}.{key}"


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"true/false ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"text ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} ({value!r})"


def closest_names(name: str, candidates: Sequence[str], limit: int = 3, cutoff: float = 0.0) -> list[str]:
    """Up to `limit` candidates closest to `name`, a case-insensitive match first. Used to suggest what a
    misspelt key or name was meant to be."""
    folded = name.casefold()
    exact_but_case = [c for c in candidates if c.casefold() == folded and c != name]
    scored = sorted(
        ((difflib.SequenceMatcher(None, folded, c.casefold()).ratio(), c) for c in candidates
         if c not in exact_but_case and c != name),
        key=lambda pair: (-pair[0], pair[1]),
    )
    ranked = exact_but_case + [c for score, c in scored if score >= cutoff]
    return ranked[:limit]


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


class _Reader:
    """Walks the parsed YAML, collecting every problem instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[SettingsProblem] = []

    def fail(self, path: str, message: str, expected: str) -> None:
        self.problems.append(SettingsProblem(self.source, path, message, expected))

    def section(self, parent: Mapping[Any, Any], key: str, path: str, keys: Sequence[str],
                *, required: bool = True) -> Mapping[Any, Any] | None:
        """The mapping under `key`, checked for unknown and repeated keys; None when absent or malformed."""
        here = _child(path, key)
        value = parent.get(key)
        if value is None:
            if required:
                self.fail(here, "missing", f"a mapping with keys {', '.join(keys)}")
            return None
        return self.mapping(value, here, keys)

    def mapping(self, value: object, path: str, keys: Sequence[str]) -> Mapping[Any, Any] | None:
        if not isinstance(value, dict):
            self.fail(path, f"is {_describe(value)}", f"a mapping with keys {', '.join(keys)}")
            return None
        for key, first, again in getattr(value, "repeated", ()):
            self.fail(_child(path, str(key)), f"is given twice (lines {first} and {again})", "each key once")
        for key in value:
            if key not in keys:
                suggestion = closest_names(str(key), keys, limit=1, cutoff=0.6)
                hint = f" (did you mean '{suggestion[0]}'?)" if suggestion else ""
                self.fail(_child(path, str(key)), f"unknown key{hint}", f"one of {', '.join(keys)}")
        return value

    def text(self, parent: Mapping[Any, Any], key: str, path: str, expected: str,
             *, default: str | None = None) -> str | None:
        here = _child(path, key)
        value = parent.get(key)
        if value is None:
            if default is None:
                self.fail(here, "missing", expected)
            return default
        if not isinstance(value, str):
            self.fail(here, f"is {_describe(value)}", expected + _QUOTE_HINT)
            return None
        if not value.strip():
            self.fail(here, "is empty", expected)
            return None
        return value

    def boolean(self, parent: Mapping[Any, Any], key: str, path: str, expected: str) -> bool | None:
        here = _child(path, key)
        value = parent.get(key)
        if value is None:
            self.fail(here, "missing", expected)
            return None
        if not isinstance(value, bool):
            self.fail(here, f"is {_describe(value)}", expected)
            return None
        return value

    def choice(self, parent: Mapping[Any, Any], key: str, path: str, choices: Sequence[str],
               what: str) -> str | None:
        expected = f"{what}: one of {', '.join(choices)}"
        value = self.text(parent, key, path, expected)
        if value is None:
            return None
        if value not in choices:
            self.fail(_child(path, key), f"'{value}' is not {what} (closest: {_quoted(closest_names(value, choices))})",
                      expected)
            return None
        return value

    def email(self, parent: Mapping[Any, Any], key: str, path: str, expected: str) -> str | None:
        value = self.text(parent, key, path, expected)
        if value is not None and not _EMAIL.fullmatch(value):
            self.fail(_child(path, key), f"'{value}' is not an e-mail address", expected)
            return None
        return value

    def entries(self, parent: Mapping[Any, Any], key: str, path: str, expected: str) -> list[tuple[str, Any]]:
        """(key path, item) for each item of the list under `key`; an empty list is allowed."""
        here = _child(path, key)
        value = parent.get(key)
        if value is None:
            self.fail(here, "missing", expected + " (an empty list [] is allowed)")
            return []
        if not isinstance(value, list):
            self.fail(here, f"is {_describe(value)}", expected)
            return []
        return [(f"{here}[{index}]", item) for index, item in enumerate(value)]

    # -- the sections, in file order --------------------------------------------------------------------

    def settings(self, data: object) -> IntegrationSettings | None:
        top = self.mapping(data if data is not None else {}, _TOP_LEVEL, _TOP_LEVEL_KEYS)
        if top is None:
            return None
        mode_name = self.choice(top, "mode", _TOP_LEVEL, [m.value for m in IntegrationMode], "an integration mode")
        mode = IntegrationMode(mode_name) if mode_name else None
        sync = self.sync(top, mode)
        product_defaults = self.product_defaults(top)
        opportunity_stages = self.opportunity_stages(top)
        document_statuses = self.document_statuses(top)
        bundle_name = self.choice(top, "bundle_mode", _TOP_LEVEL, [m.value for m in BundleMode], "a bundle mode")
        fallbacks = self.fallbacks(top)
        links = self.links(top)
        if (mode is None or sync is None or product_defaults is None or opportunity_stages is None
                or document_statuses is None or bundle_name is None or fallbacks is None or links is None):
            return None
        return IntegrationSettings(
            mode=mode, sync=sync, product_defaults=product_defaults, opportunity_stages=opportunity_stages,
            document_statuses=document_statuses, bundle_mode=BundleMode(bundle_name), fallbacks=fallbacks,
            links=links, source=self.source,
        )

    def sync(self, top: Mapping[Any, Any], mode: IntegrationMode | None) -> SyncSelection | None:
        keys = (*SYNC_FAMILIES, "push_quotes_on_won")
        section = self.section(top, "sync", _TOP_LEVEL, keys)
        if section is None:
            return None
        values = {key: self.boolean(section, key, "sync", "true or false") for key in keys}
        given = {key: value for key, value in values.items() if value is not None}
        if len(given) < len(values):
            return None
        return SyncSelection(**given)

    def product_defaults(self, top: Mapping[Any, Any]) -> ProductDefaults | None:
        expected = {
            "warehouse": "the name of a Kaseya warehouse",
            "labour_period": "the name of a Kaseya labour period",
            "product_category": "the name of a Kaseya product category",
        }
        section = self.section(top, "product_defaults", _TOP_LEVEL, tuple(expected))
        if section is None:
            return None
        values = {key: self.text(section, key, "product_defaults", form) for key, form in expected.items()}
        given = {key: value for key, value in values.items() if value is not None}
        if len(given) < len(values):
            return None
        return ProductDefaults(**given)

    def stage_ref(self, value: object, path: str) -> StageRef | None:
        entry = self.mapping(value, path, ("pipeline", "stage"))
        if entry is None:
            return None
        pipeline = self.text(entry, "pipeline", path, "the name of a Zomentum pipeline")
        stage = self.text(entry, "stage", path, "the name of a stage of that pipeline")
        return StageRef(pipeline, stage) if pipeline is not None and stage is not None else None

    def opportunity_stages(self, top: Mapping[Any, Any]) -> OpportunityStageMapping | None:
        path = "opportunity_stages"
        section = self.section(top, path, _TOP_LEVEL, ("mapping", "default_import_stage", "default_export_status"))
        if section is None:
            return None
        entries: list[StageStatus] = []
        first_mapping: dict[StageRef, tuple[str, str]] = {}  # stage -> (key path, Kaseya status)
        broken = False
        for entry_path, item in self.entries(section, "mapping", path,
                                             "a list of {pipeline, stage, kaseya_status}"):
            entry = self.mapping(item, entry_path, ("pipeline", "stage", "kaseya_status"))
            if entry is None:
                broken = True
                continue
            pipeline = self.text(entry, "pipeline", entry_path, "the name of a Zomentum pipeline")
            stage = self.text(entry, "stage", entry_path, "the name of a stage of that pipeline")
            status = self.text(entry, "kaseya_status", entry_path, "the name of a Kaseya opportunity status")
            if pipeline is None or stage is None or status is None:
                broken = True
                continue
            ref = StageRef(pipeline, stage)
            if ref in first_mapping:
                earlier_path, earlier_status = first_mapping[ref]
                self.fail(entry_path,
                          f"stage '{ref}' is mapped to Kaseya status '{earlier_status}' by {earlier_path} "
                          f"and to '{status}' here",
                          "one Kaseya status per Zomentum stage (one Kaseya status may be mapped from "
                          "several stages, not the reverse)")
                broken = True
                continue
            first_mapping[ref] = (entry_path, status)
            entries.append(StageStatus(ref, status))
        default_stage = None
        if section.get("default_import_stage") is None:
            self.fail(f"{path}.default_import_stage", "missing", "a mapping with keys pipeline, stage")
        else:
            default_stage = self.stage_ref(section["default_import_stage"], f"{path}.default_import_stage")
        default_status = self.text(section, "default_export_status", path, "the name of a Kaseya opportunity status")
        if broken or default_stage is None or default_status is None:
            return None
        return OpportunityStageMapping(tuple(entries), default_stage, default_status)

    def document_statuses(self, top: Mapping[Any, Any]) -> DocumentStatusMapping | None:
        path = "document_statuses"
        section = self.section(top, path, _TOP_LEVEL, ("mapping", "default_quote_status"))
        if section is None:
            return None
        entries: list[DocumentQuoteStatus] = []
        first_mapping: dict[str, tuple[str, str]] = {}
        broken = False
        for entry_path, item in self.entries(section, "mapping", path, "a list of {document_status, quote_status}"):
            entry = self.mapping(item, entry_path, ("document_status", "quote_status"))
            if entry is None:
                broken = True
                continue
            document_status = self.choice(entry, "document_status", entry_path, DOCUMENT_STATUSES,
                                          "a Zomentum document status")
            quote_status = self.text(entry, "quote_status", entry_path, "the name of a Kaseya quote status")
            if document_status is None or quote_status is None:
                broken = True
                continue
            if document_status in first_mapping:
                earlier_path, earlier_status = first_mapping[document_status]
                self.fail(entry_path,
                          f"document status '{document_status}' is mapped to Kaseya quote status "
                          f"'{earlier_status}' by {earlier_path} and to '{quote_status}' here",
                          "one Kaseya quote status per document status (one quote status may be mapped from "
                          "several document statuses, not the reverse)")
                broken = True
                continue
            first_mapping[document_status] = (entry_path, quote_status)
            entries.append(DocumentQuoteStatus(document_status, quote_status))
        default_status = self.text(section, "default_quote_status", path, "the name of a Kaseya quote status")
        if broken or default_status is None:
            return None
        return DocumentStatusMapping(tuple(entries), default_status)

    def fallbacks(self, top: Mapping[Any, Any]) -> Fallbacks | None:
        section = self.section(top, "fallbacks", _TOP_LEVEL, ("owner_email", "sales_representative_email"))
        if section is None:
            return None
        owner = self.email(section, "owner_email", "fallbacks", "the e-mail address of a Zomentum user")
        sales_rep = self.email(section, "sales_representative_email", "fallbacks",
                               "the e-mail address of a Kaseya employee")
        if owner is None or sales_rep is None:
            return None
        return Fallbacks(owner, sales_rep)

    def links(self, top: Mapping[Any, Any]) -> Links | None:
        systems = {
            "kaseya": (None, DEFAULT_KASEYA_LINK_TEMPLATES),
            "zomentum": (None, DEFAULT_ZOMENTUM_LINK_TEMPLATES),
        }
        section = self.section(top, "links", _TOP_LEVEL, tuple(systems), required=False) or {}
        built: dict[str, SystemLinks | None] = {}
        for system, (default_base, default_templates) in systems.items():
            path = f"links.{system}"
            keys = ("base_url", *default_templates)
            part = self.section(section, system, "links", keys, required=False) or {}
            given = part.get("base_url") is not None
            base_url = self.text(part, "base_url", path, "an http(s) address") if given else default_base
            if base_url is not None and not _BASE_URL.fullmatch(base_url):
                self.fail(f"{path}.base_url", f"'{base_url}' is not an http(s) address",
                          "an address such as https://example.com")
                base_url = None
            templates = []
            for entity, default_template in default_templates.items():
                template = self.text(part, entity, path, "a link template containing {id}", default=default_template)
                if template is not None and self.link_template(template, f"{path}.{entity}"):
                    templates.append((entity, template))
            valid_base = base_url is not None or not given
            complete = valid_base and len(templates) == len(default_templates)
            built[system] = (SystemLinks(base_url.rstrip("/") if base_url else None, tuple(templates))
                             if complete else None)
        if built["kaseya"] is None or built["zomentum"] is None:
            return None
        return Links(kaseya=built["kaseya"], zomentum=built["zomentum"])

    def link_template(self, template: str, path: str) -> bool:
        expected = "a link template using only {base_url} and {id}, with {id}, e.g. {base_url}/crm/accounts/{id}"
        try:
            parsed = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                      if name is not None]
        except ValueError as exc:
            self.fail(path, f"'{template}' is not a valid template ({exc})", expected)
            return False
        fields = {name for name, _, _ in parsed}
        # `{id:x}` or `{id!r}` passes the check of names and then fails on every link it makes (an `x` format
        # of a text id): only the placeholders themselves are filled in.
        formatted = [name for name, spec, conversion in parsed if spec or conversion]
        if formatted:
            self.fail(path, f"'{template}' formats {{{formatted[0]}}} (a format spec or conversion)", expected)
            return False
        unknown = sorted(fields - {"base_url", "id"})
        if unknown or "id" not in fields:
            what = f"uses unknown placeholder {{{unknown[0]}}}" if unknown else "has no {id}"
            self.fail(path, f"'{template}' {what}", expected)
            return False
        return True


_TOP_LEVEL_KEYS = ("mode", "sync", "product_defaults", "opportunity_stages", "document_statuses", "bundle_mode",
                   "fallbacks", "links")
