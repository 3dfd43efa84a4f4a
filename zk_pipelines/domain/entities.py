"""The entities of the pull, as data: one row per Kaseya list (how it is read, incremental or a snapshot, how
it is staged and validated) and one per Zomentum resource the pull fills (endpoint, match rule, mapper).

Every other list is derived from these rows: the raw and staging tables (`storage/schema.py`,
`storage/pull_store.py`, `storage/raw_store.py`), the raw and staged assets and their checks (`defs/`), the
readers of the extraction (`pull/extract.py`), the endpoints `zk check` probes; and on the Zomentum side the
settings' sync families, the link fields and kinds, the names `zk history`, `zk reconcile` and `zk audit` accept,
the push's reads (test_entity_registry.py finds no list kept by hand). A new Kaseya entity is a
`KaseyaSource` row with a `Staging` (its model in `staging_schemas.py`, its field spec here), the endpoint in
`domain/kaseya_endpoints.ENDPOINTS`, and the sandbox's support for it (README, Adding an entity).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from zk_pipelines.domain.kaseya_staging import (
    Column,
    ProductPricing,
    stage_accounts,
    stage_fields,
    stage_opportunities,
    stage_opportunity_statuses,
    stage_products,
)
from zk_pipelines.domain.staging_schemas import (
    AccountModel,
    ContactModel,
    ContractModel,
    EmployeeModel,
    ForeignKey,
    OpportunityModel,
    OpportunityStatusModel,
    ProductModel,
    StagedEntity,
    StagedModel,
    TimeLogModel,
    model_columns,
    references_account,
)
from zk_pipelines.domain.zomentum_mapping import (
    Mapped,
    MappingContext,
    mapped_client,
    mapped_client_user,
    mapped_item,
    mapped_opportunity,
)


class StagingInputs(Protocol):
    """What some entities' staging reads besides their own records, read only when asked for."""

    @property
    def employee_emails(self) -> Mapping[int, str]: ...

    @property
    def product_pricing(self) -> Mapping[int, ProductPricing]: ...


# A stager for an entity with nested or derived parts: (records, inputs, positions) -> rows of its model.
Stager = Callable[[Iterable[Any], StagingInputs, Iterable[int] | None], list[dict[str, Any]]]


@dataclass(frozen=True)
class Staging:
    """How `raw.kaseya_<name>` becomes `stg.kaseya_<name>`."""

    model: type[StagedModel]  # the columns, declared once (the table's DDL is derived from it) and the checks
    label: str  # what a person calls one record: "contact 300017: ..."
    description: str  # what the staged table holds (the asset's description)
    fields: Mapping[str, str] = field(default_factory=dict)  # column -> wire field, for a flat entity
    stager: Stager | None = None  # instead of `fields`: the function of an entity with nested or derived parts
    # instead of both: staged column-wise by SQL over the raw JSON (`storage/contacts_store.py`, run by
    # `pull/stage.py`), the one implementation of its rules, for an entity counted in hundreds of thousands
    staged_in_sql: bool = False
    upstream: tuple[str, ...] = ()  # staged entities read first (references, e-mails)
    foreign_keys: tuple[ForeignKey, ...] = ()
    checked: bool = False  # a blocking check stops the load when too many of a run's rows are rejected
    also_reads: tuple[str, ...] = ()  # raw tables besides its own whose change stages a snapshot entity again

    @property
    def columns(self) -> tuple[Column, ...]:
        return model_columns(self.model)


@dataclass(frozen=True)
class KaseyaSource:
    """One Kaseya list extracted into `raw.kaseya_<name>`, and staged when it has a `staging`."""

    name: str
    endpoint: str  # the endpoint read (kaseya_endpoints.ENDPOINTS)
    key_field: str  # the record's key in the payload
    incremental: bool  # filterable on ModifiedOn; else an hourly snapshot, change-detected by content hash
    description: str
    paged: bool = True  # a paged list (PageNumber, PageSize); else one call answers the whole list
    reader: str | None = None  # a snapshot whose reading is special (pull/extract.SNAPSHOT_READERS)
    resolves_settings: bool = False  # the settings resolve names in it: settings_resolved reads it
    staging: Staging | None = None
    # The endpoint answering one record by its id, in the list's shape: staging reads the records it rejected
    # or holds back again through it, so that a fix made in Kaseya after their hour is read by the hour's re-run.
    by_id_endpoint: str | None = None

    @property
    def raw_table(self) -> str:
        return f"kaseya_{self.name}"

    def stage(self, records: Iterable[Any], inputs: StagingInputs, positions: Iterable[int] | None = None
              ) -> list[dict[str, Any]]:
        """Raw payloads -> rows of the model (a row per unreadable record carries its problem)."""
        assert self.staging is not None, self.name
        if self.staging.staged_in_sql:
            raise ValueError(f"{self.name} are staged in SQL, a chunk of raw records at a time (pull/stage.py)")
        if self.staging.stager is not None:
            return self.staging.stager(records, inputs, positions)
        return stage_fields(self.name, self.staging.columns, self.staging.fields, records, id_field=self.key_field,
                            positions=positions)


def _with_owner_emails(stage: Callable[..., list[dict[str, Any]]]) -> Stager:
    """A stager whose owners' e-mails come from the staged employees (accounts' managers, opportunities' reps)."""
    return lambda records, inputs, positions: stage(records, employee_emails=inputs.employee_emails,
                                                    positions=positions)


def _products(products: Iterable[Any], inputs: StagingInputs, positions: Iterable[int] | None) -> list[dict]:
    """The raw snapshot holds one payload per product: its warehouse rows and the category learned for it."""
    products = list(products)
    # A payload that is not an object goes on as a row, for the staging to reject it with its reason.
    rows = [row for product in products
            for row in ((product.get("warehouseRows") or []) if isinstance(product, Mapping) else [product])]
    categories = {int(p["productIndexId"]): p["category"] for p in products
                  if isinstance(p, Mapping) and p.get("category")}
    return stage_products(rows, inputs.product_pricing, categories=categories)


KASEYA_SOURCES: tuple[KaseyaSource, ...] = (
    KaseyaSource(
        "accounts", "accounts", "id", True,
        "Kaseya accounts (customers) with their locations and addresses, one row per account.",
        staging=Staging(
            AccountModel, "account",
            "Kaseya accounts flattened: the main location's billing address as columns, shipping addresses as a "
            "JSON list, the account manager's e-mail from the employees.",
            stager=_with_owner_emails(stage_accounts),
            upstream=("employees",), checked=True),
        by_id_endpoint="account"),
    KaseyaSource(
        "contacts", "contacts", "id", True,
        "Kaseya contacts with their e-mails, phones and POC flag, one row per contact.",
        staging=Staging(
            ContactModel, "contact",
            "Kaseya contacts with their default e-mail and phone and the POC flag; the account must be a known "
            "(staged) account.",
            staged_in_sql=True,
            upstream=("accounts",), foreign_keys=(references_account(),), checked=True),
        by_id_endpoint="contact"),
    KaseyaSource(
        "opportunities", "opportunities", "id", True, "Kaseya opportunities, one row per opportunity.",
        staging=Staging(
            OpportunityModel, "opportunity",
            "Kaseya opportunities; the account and status must be known, the sales rep's e-mail comes from the "
            "employees.",
            stager=_with_owner_emails(stage_opportunities),
            upstream=("accounts", "opportunity_statuses", "employees"),
            foreign_keys=(references_account(), ForeignKey(
                "status_id", "opportunity_statuses", "status", lambda f: (
                    f"{f.subject}: {f.label} {f.shown} is not a known Kaseya opportunity status; refresh the status "
                    "lookup or fix the opportunity in Kaseya; it is staged again every run"))),
            checked=True),
        by_id_endpoint="opportunity"),
    KaseyaSource(
        "products", "products", "productIndexId", False,
        "Kaseya inventory products: the per-warehouse rows of one product together, with the category learned "
        "from category-filtered scans. Pricing is in raw.kaseya_product_pricing.",
        reader="products",
        staging=Staging(
            ProductModel, "product",
            "Kaseya products, one row per product (warehouse rows de-duplicated), with the category, the pricing "
            "levels, the first supplier and the default cost.",
            stager=_products, checked=True, also_reads=("kaseya_product_pricing",))),
    KaseyaSource(
        "employees", "employees", "id", False,
        "Kaseya employees (account managers, sales representatives) with their e-mails.", resolves_settings=True,
        staging=Staging(
            EmployeeModel, "employee", "Kaseya employees, typed and validated (e-mail shape).",
            fields={"first_name": "FirstName", "last_name": "LastName", "email": "EmailAddress",
                    "username": "Username", "job_title": "JobTitle", "is_active": "IsActive"})),
    KaseyaSource(
        "opportunity_statuses", "opportunity_statuses", "id", False, "Kaseya opportunity statuses (open, won, lost).",
        paged=False, resolves_settings=True,
        staging=Staging(
            OpportunityStatusModel, "opportunity status",
            "Kaseya opportunity statuses with their kind (open, won, lost).",
            stager=lambda records, inputs, positions: stage_opportunity_statuses(records))),
    KaseyaSource("account_types", "account_types", "id", False, "Kaseya account types.", paged=False),
    KaseyaSource("product_categories", "product_categories", "id", False, "Kaseya product categories.",
                 resolves_settings=True),
    KaseyaSource("warehouses", "warehouses", "id", False, "Kaseya warehouses.", paged=False, resolves_settings=True),
    KaseyaSource("lookups", "lookup", "id", False,
                 "Kaseya system lookup tables the settings use (quote statuses, labour periods, opportunity types, "
                 "ratings, lead sources); key `<table>:<id>`.", reader="lookups", resolves_settings=True),
    KaseyaSource(
        "contracts", "contracts", "id", False, "Kaseya client contracts (recurring services, support blocks).",
        staging=Staging(
            ContractModel, "contract", "Kaseya client contracts with their type, status, billing and dates.",
            fields={"contract_number": "ContractNumber", "contract_name": "ContractName", "status": "Status",
                    "account_name": "AccountName", "contract_type": "ContractType", "billing_cycle": "BillingCycle",
                    "billing_price": "ContractBillingPrice", "start_date": "StartDate", "end_date": "EndDate"})),
    KaseyaSource(
        "timelogs", "timelogs", "id", True, "Kaseya time logs: the hours employees logged against accounts.",
        staging=Staging(
            TimeLogModel, "time log",
            "Kaseya time logs with their hours, work type and flags; the account must be a known (staged) account.",
            fields={"account_id": "AccountId", "account_name": "AccountName", "ticket_id": "TicketId",
                    "project_id": "ProjectId", "user_id": "UserId", "first_name": "FirstName", "last_name": "LastName",
                    "role": "Role", "work_type": "WorkType", "start_date": "StartDate", "hours": "Timespent",
                    "overtime_hours": "OverTimeSpent", "is_billable": "IsBillable", "is_billed": "IsBilled",
                    "is_approved": "IsApproved", "notes": "Notes", "created_on": "CreatedOn",
                    "modified_on": "ModifiedOn"},
            upstream=("accounts",), foreign_keys=(references_account(),))),
)

KASEYA_SOURCE = {source.name: source for source in KASEYA_SOURCES}
INCREMENTAL_SOURCES = tuple(source for source in KASEYA_SOURCES if source.incremental)
SNAPSHOT_SOURCES = tuple(source for source in KASEYA_SOURCES if not source.incremental)
# Staged entities: raw.kaseya_<name> -> stg.kaseya_<name>, validated.
STAGED_SOURCES = tuple(source for source in KASEYA_SOURCES if source.staging is not None)
STAGED_COLUMNS: dict[str, tuple[Column, ...]] = {
    source.name: source.staging.columns for source in STAGED_SOURCES if source.staging is not None}


def staged_entity(name: str) -> StagedEntity:
    """What validation needs of a staged entity."""
    staging = KASEYA_SOURCE[name].staging
    if staging is None:
        raise KeyError(f"Kaseya {name} are not staged")
    return StagedEntity(name, staging.model, staging.label, staging.foreign_keys)


RowMapper = Callable[[Mapping[str, Any], MappingContext], Mapped]


@dataclass(frozen=True)
class ZomentumTarget:
    """One Zomentum resource the pull upserts, from one staged Kaseya entity."""

    name: str  # mapped.zomentum_<name>, zomentum.<name>
    resource: str  # Zomentum API resource path (its endpoint)
    source: str  # the staged Kaseya entity
    family: str  # the settings' sync family that turns it on (settings: sync.<family>)
    # The match rule: how an existing Zomentum record is recognised on first sight, by this payload field
    # (dotted path); or, with `match_field` None and `matched_by_link` set, by the target's "Kaseya <kind>" link
    # custom field, which the load also writes into every payload it sends.
    match_field: str | None
    label: str  # what a person calls one record ("client")
    mapper: RowMapper  # a staged row -> its payload, or what it waits for
    kaseya_link: str  # the record kinds in the settings' link templates (settings.links.kaseya / .zomentum)
    zomentum_link: str
    custom_field_entity: str  # Zomentum's custom-field entity type of its records (link, status, deletion marks)
    kind: str  # one record's word in `zk history KIND ID` and `zk reconcile --entity`
    synonyms: tuple[str, ...] = ()  # more words `zk audit --entity` accepts for it, besides its other names
    parents: tuple[str, ...] = ()  # targets that must be loaded first
    # Parents that records only wait for (deferred until the parent is in Zomentum): loaded first by step
    # priority, not by an asset edge, so a parent's blocking check does not stop this target.
    ordering_only_parents: tuple[str, ...] = ()
    matched_by_link: bool = False

    @property
    def link_field(self) -> str:
        """The custom field (of `custom_field_entity`) every record carries its Kaseya link in."""
        return f"Kaseya {self.kaseya_link}"

    @property
    def aliases(self) -> tuple[str, ...]:
        """Every name a person may use for it: its own, its Kaseya source's, its record kinds, its synonyms."""
        return tuple(dict.fromkeys((self.name, self.source, self.kind, self.kaseya_link, self.zomentum_link,
                                    *self.synonyms)))


ZOMENTUM_TARGETS: tuple[ZomentumTarget, ...] = (
    ZomentumTarget("clients", "client/companies", "accounts", "accounts", "name", "client", mapped_client,
                   "account", "client", custom_field_entity="client_company", kind="client",
                   synonyms=("companies", "company")),
    ZomentumTarget("client_users", "client/users", "contacts", "contacts", "email", "client user", mapped_client_user,
                   "contact", "client_user", custom_field_entity="client_user", kind="contact",
                   synonyms=("client-users", "users"), parents=("clients",)),
    ZomentumTarget("opportunities", "opportunities", "opportunities", "opportunities", None, "opportunity",
                   mapped_opportunity, "opportunity", "opportunity", custom_field_entity="opportunity",
                   kind="opportunity", synonyms=("deals",), parents=("clients", "client_users"),
                   ordering_only_parents=("client_users",), matched_by_link=True),
    ZomentumTarget("items", "items", "products", "products", "manufacturer_part_number", "item", mapped_item,
                   "product", "item", custom_field_entity="item", kind="item"),
)

ZOMENTUM_TARGET = {target.name: target for target in ZOMENTUM_TARGETS}

# Each target's record kind in the settings' link templates, by target (the ledger's entity names).
ZOMENTUM_LINK_ENTITY = {target.name: target.zomentum_link for target in ZOMENTUM_TARGETS}
KASEYA_LINK_ENTITY = {target.name: target.kaseya_link for target in ZOMENTUM_TARGETS}
# The settings' sync families (`sync.<family>: true|false`), in load order.
SYNC_FAMILIES = tuple(dict.fromkeys(target.family for target in ZOMENTUM_TARGETS))
# Kaseya sources whose staged rows carry Kaseya's active flag (their model has `is_active`): a target of one
# tells Zomentum when a record is deactivated or reactivated, and creates none that is inactive.
ACTIVE_FLAG_SOURCES = tuple(source.name for source in STAGED_SOURCES
                            if source.staging is not None and "is_active" in dict(source.staging.columns))
