"""Edits made "in Kaseya's own UI": how tests and the demo create and change records behind the API's back.

The vocabulary is the sandbox's view of each record, which is the API's own DTO (camelCase, any case
accepted, snake_case too) with a few additions: products are one record each (not one row per warehouse) with their
warehouses, pricing levels and suppliers (part number and unit cost included); reference fields accept a
name instead of an id (`{"status": "Closed Won"}`); contacts accept `emailAddress` / `phoneNumber` for the
default e-mail and phone. Only the fields given are set; everything else takes a realistic default on create
and is left alone on update. Timestamps come from the sandbox clock, so an update moves ModifiedOn; the
editor is a Kaseya employee, not the API user.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from zk_pipelines.sandbox.kaseya import render
from zk_pipelines.sandbox.kaseya.dto import INPUT_DTOS, Body, InputDto, read_input, undefined_properties, wire_datetime
from zk_pipelines.sandbox.kaseya.records import (
    Account,
    Address,
    Contact,
    ContactEmail,
    ContactPhone,
    Location,
    Opportunity,
    Product,
    ProductPrice,
    ProductSupplier,
    Stamps,
    Stock,
    Tenant,
    later_than,
    to_millis,
)
from zk_pipelines.sandbox.kaseya.writes import build_locations


class EditRefused(ValueError):
    """A control-surface edit the sandbox cannot make; the message names the field."""


_EDIT_DTOS: dict[str, InputDto] = {**INPUT_DTOS, **{name: InputDto(name, spec) for name, spec in {
    "Account": "AccountName:string AccountCode:string? AccountTypeId:int AccountType:string BusinessTypeId:int "
               "BusinessType:string AccountManagerId:int ParentId:int? Website:string? Description:string? "
               "CreditLimit:number? NetDays:number? IsActive:bool AcquiredDate:datetime? Locations:[Location]",
    "Location": "LocationName:string! IsMain:bool IsActive:bool? Addresses:[AccountLocationAddressInputDto]?",
    "Contact": "AccountId:int LocationId:int FirstName:string? MiddleName:string? LastName:string? JobTitle:string? "
               "IsPoc:bool IsActive:bool IsBillable:bool CanRecieveInvoices:bool EffectiveDate:datetime? "
               "EmailAddress:string? PhoneNumber:string? Emails:[Email] Phones:[Phone]",
    "Email": "EmailAddress:string! EmailTypeId:int? EmailType:string? IsDefault:bool",
    "Phone": "Phone:string! PhoneTypeId:int? PhoneType:string? IsDefault:bool",
    "Opportunity": "Subject:string StatusId:int Status:string AccountId:int AccountLocationId:int ContactId:int? "
                   "TypeId:int Type:string Probability:number RatingId:int? Rating:string? LeadSourceId:int? "
                   "LeadSource:string? SalesRepresentativeUserId:int Amount:number Description:string? "
                   "CustomerPO:string? CloseDate:datetime",
    "Product": "ProductNumber:string ProductName:string ProductDescription:string? CategoryId:int Category:string "
               "ProductTypeId:int ProductType:string Manufacturer:string? UPC:string? Color:string? IsSerialized:bool "
               "LabourPeriodId:int? DefaultCost:number UnitPrice:number Warehouses:[Stock] PricingLevels:[Price] "
               "Suppliers:[Supplier]",
    "Stock": "WarehouseId:int? Warehouse:string? QtyInStock:number QtyCommitted:number QtyOnOrder:number",
    "Price": "Id:int? Name:string? Price:number! IsDefault:bool IsActive:bool?",
    "Supplier": "Id:int? Name:string? PartNumber:string? UnitCost:number?",
}.items()}}


def _unsnaked(value: Any) -> Any:
    """`account_name` -> `accountname`: Python callers may use snake_case; names match case-insensitively."""
    if isinstance(value, Mapping):
        return {str(k).replace("_", ""): _unsnaked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsnaked(v) for v in value]
    return value


def _read(dto_name: str, fields: Any) -> Body:
    if not isinstance(fields, Mapping):
        raise EditRefused("the fields must be a JSON object")
    fields = _unsnaked(fields)
    undefined = undefined_properties(dto_name, fields, _EDIT_DTOS)
    if undefined:
        raise EditRefused(f"cannot set {', '.join(undefined)} on {dto_name.lower()} records")
    body, problems = read_input(dto_name, fields, registry=_EDIT_DTOS)
    if problems:
        raise EditRefused("; ".join(problems))
    return body


def _resolve(body: Body, id_field: str, name_field: str | None, rows: Mapping[int, str], what: str,
             current: int | None) -> int | None:
    """An id given directly or by name (`status` for `statusId`), checked against `rows` (id -> name)."""
    if name_field and body.get(name_field) is not None and name_field in body.given:
        wanted = body[name_field].casefold()
        found = next((i for i, name in rows.items() if name.casefold() == wanted), None)
        if found is None:
            raise EditRefused(f"{name_field} '{body[name_field]}' is not a {what} ({', '.join(rows.values())})")
        return found
    if id_field in body.given:
        value = body[id_field]
        if value is not None and value not in rows:
            raise EditRefused(f"{id_field} {value} is not a {what}")
        return value
    return current


def _lookup_rows(tenant: Tenant, table: str) -> dict[int, str]:
    return {row.id: row.name for row in tenant.lookup(table).rows}


def _editor(tenant: Tenant) -> int:
    return min(e for e in tenant.employees if e != tenant.api_user_id)


def _stamps(tenant: Tenant, now: datetime) -> Stamps:
    now = to_millis(now)
    return Stamps(now, now, _editor(tenant), _editor(tenant))


# --- accounts -------------------------------------------------------------------------------------------

_ACCOUNT_FIELDS = {"AccountName": "account_name", "AccountCode": "account_code", "Website": "website",
                   "Description": "description", "CreditLimit": "credit_limit", "NetDays": "net_days",
                   "IsActive": "is_active", "AcquiredDate": "acquired_date"}


def _edit_account(tenant: Tenant, account: Account, body: Body, now: datetime) -> None:
    if "AccountName" in body.given and not (body["AccountName"] or "").strip():
        raise EditRefused("accountName must not be empty")
    account.account_type_id = _resolve(body, "AccountTypeId", "AccountType",
                                       {t.id: t.name for t in tenant.account_types.values()}, "account type",
                                       account.account_type_id)
    account.business_type_id = _resolve(body, "BusinessTypeId", "BusinessType", _lookup_rows(tenant, "BusinessType"),
                                        "business type", account.business_type_id)
    account.account_manager_id = _resolve(body, "AccountManagerId", None,
                                          {e.id: e.full_name for e in tenant.employees.values()}, "employee",
                                          account.account_manager_id)
    account.parent_id = _resolve(body, "ParentId", None, {a.id: a.account_name for a in tenant.accounts.values()},
                                 "account", account.parent_id)
    body.assign(account, _ACCOUNT_FIELDS, given_only=True)
    if "Locations" in body.given:
        bodies = body["Locations"] or []
        if not bodies:
            raise EditRefused("an account needs at least one location")
        for location in bodies:
            location["Addresses"] = location["Addresses"] or []
            location["IsActive"] = True if location["IsActive"] is None else location["IsActive"]
        for old in account.locations:
            tenant.location_owner.pop(old.id, None)
        account.locations = build_locations(tenant, account.id, bodies, _stamps(tenant, now))


def _new_account(tenant: Tenant, body: Body, now: datetime) -> Account:
    if not (body.get("AccountName") or "").strip():
        raise EditRefused("accountName is required")
    stamps = _stamps(tenant, now)
    account_id = tenant.ids.next("account")
    main = tenant.lookup("AddressType").by_name("Main").id
    location = Location(tenant.ids.next("location"), "Headquarters", True, True,
                        [Address(tenant.ids.next("address"), main, True, True, None, None, None, None, None, "US", None,
                                 Stamps(**vars(stamps)))], Stamps(**vars(stamps)))
    tenant.location_owner[location.id] = account_id
    return Account(
        id=account_id, account_code=f"ACCT{account_id}", account_name="",
        account_type_id=tenant.account_type_named("Customer").id,
        business_type_id=tenant.lookup("BusinessType").rows[0].id, account_manager_id=_editor(tenant),
        locations=[location], stamps=stamps,
    )


# --- contacts -------------------------------------------------------------------------------------------

_CONTACT_FIELDS = {"FirstName": "first_name", "MiddleName": "middle_name", "LastName": "last_name",
                   "JobTitle": "job_title", "IsActive": "is_active", "IsBillable": "is_billable",
                   "CanRecieveInvoices": "receive_invoices", "EffectiveDate": "effective_date"}


@dataclass(frozen=True)
class _Channel:
    """A contact's e-mail addresses or its phone numbers: the same editing rules under other names."""

    items: str  # the edit's list (`Emails`); the contact's attribute is its lower case
    value: str  # an item's value property (`EmailAddress`)
    attribute: str  # ... and the record's attribute for it (`email_address`)
    default: str  # the edit's property that sets the default item's value (`EmailAddress`)
    type_table: str  # the lookup table of the item's type (`EmailType`); the item gives `<table>Id` or `<table>`
    what: str  # the type, as an error names it
    record: type[ContactEmail] | type[ContactPhone]
    id_kind: str  # the id sequence of the items


_CHANNELS = (
    _Channel("Emails", "EmailAddress", "email_address", "EmailAddress", "EmailType", "e-mail type", ContactEmail,
             "email"),
    _Channel("Phones", "Phone", "phone", "PhoneNumber", "PhoneType", "phone type", ContactPhone, "phone"),
)


def _replace_channel(tenant: Tenant, contact: Contact, body: Body, channel: _Channel, stamps: Stamps) -> None:
    """The edit's list replaces the contact's; an item's type defaults to Work, and with no default item the
    first one is the default."""
    if channel.items not in body.given:
        return
    items = body[channel.items] or []
    types = _lookup_rows(tenant, channel.type_table)
    work = tenant.lookup(channel.type_table).by_name("Work").id
    none_default = not any(item["IsDefault"] for item in items)
    setattr(contact, channel.items.lower(), [
        channel.record(tenant.ids.next(channel.id_kind), item[channel.value],
                       _resolve(item, f"{channel.type_table}Id", channel.type_table, types, channel.what, work) or work,
                       item["IsDefault"] or i == 0 and none_default, Stamps(**vars(stamps)))
        for i, item in enumerate(items)])


def _set_default_of_channel(tenant: Tenant, contact: Contact, body: Body, channel: _Channel, stamps: Stamps) -> None:
    """`emailAddress` / `phoneNumber` change the default item's value, or add a default Work item."""
    if body.get(channel.default) is None:
        return
    items = getattr(contact, channel.items.lower())
    default = next((item for item in items if item.is_default), None)
    if default:
        setattr(default, channel.attribute, body[channel.default])
    else:
        work = tenant.lookup(channel.type_table).by_name("Work").id
        items.insert(0, channel.record(tenant.ids.next(channel.id_kind), body[channel.default], work, True,
                                       Stamps(**vars(stamps))))


def _edit_contact(tenant: Tenant, contact: Contact, body: Body, now: datetime) -> None:
    if "AccountId" in body.given:
        if body["AccountId"] not in tenant.accounts:
            raise EditRefused(f"accountId {body['AccountId']} is not an account")
        contact.account_id = body["AccountId"]
        if "LocationId" not in body.given:
            contact.location_id = tenant.accounts[contact.account_id].main_location.id
    if "LocationId" in body.given:
        contact.location_id = body["LocationId"]
    if tenant.accounts[contact.account_id].location(contact.location_id) is None:
        raise EditRefused(f"locationId {contact.location_id} is not a location of account {contact.account_id}")
    body.assign(contact, _CONTACT_FIELDS, given_only=True)
    stamps = _stamps(tenant, now)
    for channel in _CHANNELS:
        _replace_channel(tenant, contact, body, channel, stamps)
    for channel in _CHANNELS:
        _set_default_of_channel(tenant, contact, body, channel, stamps)
    if "IsPoc" in body.given:
        if body["IsPoc"]:
            for other in tenant.contacts_of(contact.account_id):
                if other.is_poc and other.id != contact.id:
                    other.is_poc = False
                    other.stamps.modified_on = later_than(other.stamps.modified_on, now)
        contact.is_poc = body["IsPoc"]


def _new_contact(tenant: Tenant, body: Body, now: datetime) -> Contact:
    account = tenant.accounts.get(body.get("AccountId")) if "AccountId" in body.given else None
    if account is None:
        raise EditRefused("accountId is required and must be an account")
    return Contact(id=tenant.ids.next("contact"), account_id=account.id, location_id=account.main_location.id,
                   first_name=None, last_name=None, emails=[], phones=[], stamps=_stamps(tenant, now))


# --- opportunities --------------------------------------------------------------------------------------

_OPPORTUNITY_FIELDS = {"Subject": "subject", "Probability": "probability", "Amount": "amount",
                       "Description": "description", "CustomerPO": "customer_po", "CloseDate": "close_date"}


def _edit_opportunity(tenant: Tenant, opportunity: Opportunity, body: Body, now: datetime) -> None:
    if "AccountId" in body.given:
        if body["AccountId"] not in tenant.accounts:
            raise EditRefused(f"accountId {body['AccountId']} is not an account")
        opportunity.account_id = body["AccountId"]
    account = tenant.accounts[opportunity.account_id]
    opportunity.account_location_id = body["AccountLocationId"] if "AccountLocationId" in body.given \
        else opportunity.account_location_id if account.location(opportunity.account_location_id) \
        else account.main_location.id
    if account.location(opportunity.account_location_id) is None:
        raise EditRefused(f"accountLocationId {opportunity.account_location_id} is not a location of account "
                          f"{account.id}")
    if "ContactId" in body.given:
        contact = tenant.contacts.get(body["ContactId"]) if body["ContactId"] is not None else None
        if body["ContactId"] is not None and (contact is None or contact.account_id != account.id):
            raise EditRefused(f"contactId {body['ContactId']} is not a contact of account {account.id}")
        opportunity.contact_id = body["ContactId"]
    statuses = {s.id: s.name for s in tenant.statuses.values()}
    status_before = opportunity.status_id
    opportunity.status_id = _resolve(body, "StatusId", "Status", statuses, "status", opportunity.status_id)
    if opportunity.status_id != status_before and "Probability" not in body.given:
        opportunity.probability = tenant.statuses[opportunity.status_id].probability
    opportunity.type_id = _resolve(body, "TypeId", "Type", _lookup_rows(tenant, "OpportunityType"),
                                   "opportunity type", opportunity.type_id)
    opportunity.rating_id = _resolve(body, "RatingId", "Rating", _lookup_rows(tenant, "OpportunityRating"),
                                     "rating", opportunity.rating_id)
    opportunity.lead_source_id = _resolve(body, "LeadSourceId", "LeadSource", _lookup_rows(tenant, "LeadSource"),
                                          "lead source", opportunity.lead_source_id)
    opportunity.sales_representative_user_id = _resolve(
        body, "SalesRepresentativeUserId", None, {e.id: e.full_name for e in tenant.employees.values()}, "employee",
        opportunity.sales_representative_user_id)
    body.assign(opportunity, _OPPORTUNITY_FIELDS, given_only=True)


def _new_opportunity(tenant: Tenant, body: Body, now: datetime) -> Opportunity:
    account = tenant.accounts.get(body.get("AccountId")) if "AccountId" in body.given else None
    if account is None:
        raise EditRefused("accountId is required and must be an account")
    status = tenant.status_named("Prospecting")
    poc = next((c.id for c in tenant.contacts_of(account.id) if c.is_poc), None)
    return Opportunity(
        id=tenant.ids.next("opportunity"), subject="New opportunity", status_id=status.id, account_id=account.id,
        account_location_id=account.main_location.id, type_id=tenant.lookup("OpportunityType").rows[0].id,
        probability=status.probability, rating_id=tenant.lookup("OpportunityRating").rows[0].id,
        sales_representative_user_id=account.account_manager_id, amount=0.0,
        close_date=(to_millis(now) + timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0),
        stamps=_stamps(tenant, now), contact_id=poc,
    )


# --- products -------------------------------------------------------------------------------------------

_PRODUCT_FIELDS = {"ProductNumber": "product_number", "ProductName": "product_name",
                   "ProductDescription": "product_description", "Manufacturer": "manufacturer", "UPC": "upc",
                   "Color": "color", "IsSerialized": "is_serialized", "DefaultCost": "default_cost"}


def _edit_product(tenant: Tenant, product: Product, body: Body, now: datetime) -> None:
    product.category_id = _resolve(body, "CategoryId", "Category",
                                   {c.id: c.name for c in tenant.categories.values()}, "category", product.category_id)
    product.product_type_id = _resolve(body, "ProductTypeId", "ProductType", _lookup_rows(tenant, "ProductType"),
                                       "product type", product.product_type_id)
    product.labour_period_id = _resolve(body, "LabourPeriodId", None, _lookup_rows(tenant, "LabourPeriod"),
                                        "labour period", product.labour_period_id)
    body.assign(product, _PRODUCT_FIELDS, given_only=True)
    if "Warehouses" in body.given:
        names = {w.id: w.name for w in tenant.warehouses.values()}
        main = tenant.warehouse_named("Main Warehouse").id
        product.stocks = [Stock(tenant.ids.next("stock"),
                                _resolve(s, "WarehouseId", "Warehouse", names, "warehouse", main) or main,
                                s["QtyInStock"], s["QtyCommitted"], s["QtyOnOrder"])
                          for s in body["Warehouses"] or []]
        if not product.stocks:
            raise EditRefused("a product needs at least one warehouse")
    levels = {p.id: p.name for p in tenant.pricing_levels.values()}
    if "PricingLevels" in body.given:
        retail = tenant.pricing_level_named("Retail").id
        product.prices = [ProductPrice(_resolve(p, "Id", "Name", levels, "pricing level", retail) or retail, p["Price"],
                                       p["IsDefault"], True if p["IsActive"] is None else p["IsActive"])
                          for p in body["PricingLevels"] or []]
    if "UnitPrice" in body.given:
        retail = tenant.pricing_level_named("Retail").id
        existing = next((p for p in product.prices if p.pricing_level_id == retail), None)
        if existing:
            existing.price = body["UnitPrice"]
        else:
            product.prices.insert(0, ProductPrice(retail, body["UnitPrice"], is_default=not product.prices))
    if "Suppliers" in body.given:
        names = {s.id: s.name for s in tenant.suppliers.values()}
        product.suppliers = [ProductSupplier(_resolve(s, "Id", "Name", names, "supplier", None) or 0, s["PartNumber"],
                                             s["UnitCost"])
                             for s in body["Suppliers"] or []]
        if any(s.supplier_id == 0 for s in product.suppliers):
            raise EditRefused("each supplier needs an id or a name")


def _new_product(tenant: Tenant, body: Body, now: datetime) -> Product:
    missing = [f for f in ("ProductNumber", "ProductName") if not (body.get(f) or "").strip()]
    if missing:
        raise EditRefused(f"{', '.join(missing)} required")
    category = tenant.category_named("Hardware")
    return Product(
        id=tenant.ids.next("product"), product_number="", product_name="", product_description=None,
        category_id=category.id if category else next(iter(tenant.categories)),
        product_type_id=tenant.lookup("ProductType").by_name("Hardware").id,
        stocks=[Stock(tenant.ids.next("stock"), tenant.warehouse_named("Main Warehouse").id)],
        prices=[ProductPrice(tenant.pricing_level_named("Retail").id, 0.0, is_default=True)], suppliers=[],
        default_cost=0.0, stamps=_stamps(tenant, now),
    )


def product_view(tenant: Tenant, product: Product) -> dict[str, Any]:
    category = tenant.categories.get(product.category_id)
    return {
        "id": product.id, "productIndexId": product.id, "productNumber": product.product_number,
        "productName": product.product_name, "productDescription": product.product_description,
        "categoryId": product.category_id, "category": category.name if category else None,
        "productTypeId": product.product_type_id,
        "productType": tenant.lookup_name("ProductType", product.product_type_id),
        "manufacturer": product.manufacturer, "upc": product.upc, "color": product.color,
        "isSerialized": product.is_serialized, "labourPeriodId": product.labour_period_id,
        "labourPeriod": tenant.lookup_name("LabourPeriod", product.labour_period_id),
        "defaultCost": product.default_cost,
        "warehouses": [{"stockByLocationId": s.id, "warehouseId": s.warehouse_id,
                        "warehouse": tenant.warehouses[s.warehouse_id].name, "qtyInStock": s.qty_in_stock,
                        "qtyCommitted": s.qty_committed, "qtyOnOrder": s.qty_on_order} for s in product.stocks],
        "pricingLevels": render.pricing_levels(tenant, product),
        "suppliers": [{"id": s.supplier_id, "name": tenant.suppliers[s.supplier_id].name,
                       "partNumber": s.part_number, "unitCost": s.unit_cost} for s in product.suppliers],
        "createdOn": wire_datetime(product.stamps.created_on), "modifiedOn": wire_datetime(product.stamps.modified_on),
    }


# --- the entity table -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entity:
    name: str
    table: Callable[[Tenant], dict[int, Any]]
    view: Callable[[Tenant, Any], dict[str, Any]]
    dto: str | None = None  # the edit vocabulary; None: read-only through the control surface
    new: Callable[[Tenant, Body, datetime], Any] | None = None
    edit: Callable[[Tenant, Any, Body, datetime], None] | None = None


ENTITIES: dict[str, Entity] = {e.name: e for e in (
    Entity("accounts", lambda t: t.accounts, render.account, "Account", _new_account, _edit_account),
    Entity("contacts", lambda t: t.contacts, render.contact_summary, "Contact", _new_contact, _edit_contact),
    Entity("opportunities", lambda t: t.opportunities, render.opportunity, "Opportunity", _new_opportunity,
           _edit_opportunity),
    Entity("products", lambda t: t.products, product_view, "Product", _new_product, _edit_product),
    Entity("quotes", lambda t: t.quotes,
           lambda t, q: {**render.quote(t, q), "lineItems": [render.line_item(i) for i in q.line_items]}),
    Entity("services", lambda t: t.services, render.service),
    Entity("categories", lambda t: t.categories, lambda t, c: render.category(c)),
    Entity("notes", lambda t: t.notes, lambda t, n: {**render.note(t, n), "opportunityId": n.opportunity_id}),
    Entity("employees", lambda t: t.employees, lambda t, e: render.employee(e)),
    Entity("contracts", lambda t: t.contracts, render.contract),
    Entity("timelogs", lambda t: t.timelogs, render.time_log),
)}
_SINGULAR = {"account": "accounts", "contact": "contacts", "opportunity": "opportunities", "product": "products",
             "quote": "quotes", "service": "services", "category": "categories", "note": "notes",
             "employee": "employees", "contract": "contracts",
             "timelog": "timelogs"}


def entity(name: str) -> Entity:
    key = name.lower()
    found = ENTITIES.get(_SINGULAR.get(key, key))
    if found is None:
        raise KeyError(f"unknown entity '{name}' (known: {', '.join(ENTITIES)})")
    return found


def create(tenant: Tenant, kind: Entity, fields: Any, now: datetime) -> Any:
    if kind.dto is None or kind.new is None or kind.edit is None:
        raise EditRefused(f"{kind.name} cannot be created through the control surface")
    body = _read(kind.dto, fields)
    record = kind.new(tenant, body, now)
    kind.edit(tenant, record, body, now)
    kind.table(tenant)[record.id] = record
    return record


def update(tenant: Tenant, kind: Entity, record_id: int, fields: Any, now: datetime) -> Any:
    if kind.dto is None or kind.edit is None:
        raise EditRefused(f"{kind.name} cannot be changed through the control surface")
    record = kind.table(tenant).get(record_id)
    if record is None:
        raise KeyError(f"{kind.name} {record_id} does not exist")
    body = _read(kind.dto, fields)
    kind.edit(tenant, record, body, now)
    record.stamps.modified_on = later_than(record.stamps.modified_on, now)
    record.stamps.modified_by = _editor(tenant)
    return record
