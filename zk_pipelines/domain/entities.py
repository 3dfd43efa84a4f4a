"""The entity tables of the pull, as data: which Kaseya lists are extracted (and how), and which Zomentum
resources they become. The Dagster asset factories read these rows; a new entity is a row here, a staging
function and schema, and a mapper."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KaseyaSource:
    """One Kaseya list extracted into `raw.kaseya_<name>`."""

    name: str
    endpoint: str  # the client's endpoint name (kaseya_wire.ENDPOINTS)
    key_field: str  # the record's key in the payload
    incremental: bool  # filterable on ModifiedOn; else an hourly snapshot, change-detected by content hash
    description: str

    @property
    def raw_table(self) -> str:
        return f"kaseya_{self.name}"


KASEYA_SOURCES: tuple[KaseyaSource, ...] = (
    KaseyaSource("accounts", "accounts", "id", True,
                 "Kaseya accounts (customers) with their locations and addresses, one row per account."),
    KaseyaSource("contacts", "contacts", "id", True,
                 "Kaseya contacts with their e-mails, phones and POC flag, one row per contact."),
    KaseyaSource("opportunities", "opportunities", "id", True, "Kaseya opportunities, one row per opportunity."),
    KaseyaSource("products", "products", "productIndexId", False,
                 "Kaseya inventory products: the per-warehouse rows of one product together, with the category "
                 "learned from category-filtered scans. Pricing is in raw.kaseya_product_pricing."),
    KaseyaSource("employees", "employees", "id", False,
                 "Kaseya employees (account managers, sales representatives) with their e-mails."),
    KaseyaSource("opportunity_statuses", "opportunity_statuses", "id", False,
                 "Kaseya opportunity statuses (open, won, lost)."),
    KaseyaSource("account_types", "account_types", "id", False, "Kaseya account types."),
    KaseyaSource("product_categories", "product_categories", "id", False, "Kaseya product categories."),
    KaseyaSource("warehouses", "warehouses", "id", False, "Kaseya warehouses."),
    KaseyaSource("lookups", "lookup", "id", False,
                 "Kaseya system lookup tables the settings use (quote statuses, labour periods, opportunity "
                 "types, ratings, lead sources); key `<table>:<id>`."),
)

KASEYA_SOURCE = {source.name: source for source in KASEYA_SOURCES}

# Staged entities: raw.kaseya_<name> -> stg.kaseya_<name>, validated (staging_schemas.STAGED_ENTITIES).
STAGED = ("accounts", "contacts", "opportunities", "products", "employees", "opportunity_statuses")


@dataclass(frozen=True)
class ZomentumTarget:
    """One Zomentum resource the pull upserts, from one staged Kaseya entity."""

    name: str  # mapped.zomentum_<name>, zomentum.<name>
    resource: str  # Zomentum API resource path
    source: str  # the staged Kaseya entity
    family: str  # the settings' sync family that turns it on
    match_field: str | None  # how an existing Zomentum record is recognised on first sight (dotted path)
    label: str  # what a person calls one record ("client")
    parents: tuple[str, ...] = ()  # targets that must be loaded first


ZOMENTUM_TARGETS: tuple[ZomentumTarget, ...] = (
    ZomentumTarget("clients", "client/companies", "accounts", "accounts", "name", "client"),
    ZomentumTarget("client_users", "client/users", "contacts", "contacts", "email", "client user", ("clients",)),
    ZomentumTarget("opportunities", "opportunities", "opportunities", "opportunities", None, "opportunity",
                   ("clients", "client_users")),
    ZomentumTarget("items", "items", "products", "products", "manufacturer_part_number", "item"),
)

ZOMENTUM_TARGET = {target.name: target for target in ZOMENTUM_TARGETS}

# Each target's record kind in the settings' link templates (settings.links.zomentum / .kaseya), by target.
ZOMENTUM_LINK_ENTITY = {"clients": "client", "client_users": "client_user", "opportunities": "opportunity",
                        "items": "item"}
KASEYA_LINK_ENTITY = {"clients": "account", "client_users": "contact", "opportunities": "opportunity",
                      "items": "product"}
