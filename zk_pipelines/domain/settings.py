"""The integration settings: one validated YAML file (path in `ZK_SETTINGS`) that the pull and the push read.

It carries the "Settings" and "Field Mapping" sections of Zomentum's Kaseya BMS integration: the integration
mode, what to sync, the defaults for products created in Kaseya, the opportunity stage <-> Kaseya status
mapping, the document status -> Kaseya quote status mapping, the bundle mode, the fallback owner and sales
representative, and the addresses used to link to records in each system. The product type -> Kaseya item
type table is not a setting (Zomentum does not let users edit it either); it is defined once here.

This module is the model and its rules; reading and validating the file is `settings_file`'s job. Both work
on names as the file spells them. Whether those names exist in the live systems, and which ids they have
there, is `settings_check`'s job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

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
    # Each sync family of the registry (`entities.SYNC_FAMILIES`, in its order) -> whether the pull covers it.
    pulled: Mapping[str, bool]
    push_quotes_on_won: bool

    def covers(self, family: str) -> bool:
        return self.pulled[family]

    def families(self) -> tuple[str, ...]:
        """The entity families the pull covers, in `SYNC_FAMILIES` order."""
        return tuple(name for name, on in self.pulled.items() if on)


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
        "sync": {**settings.sync.pulled, "push_quotes_on_won": settings.sync.push_quotes_on_won},
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
