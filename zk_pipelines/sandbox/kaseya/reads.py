"""The read operations: lists with the contract's filters and 1-based paging, lookups, reads by id.

Lists filter the tenant's records first (no serialisation) and render only the requested page. Text filters
are case-insensitive "contains"; `...From`/`...To` date filters are inclusive, naive values UTC (assumed).
Filters the contract declares but the sandbox does not model are accepted and ignored, as unknown query
parameters are by ASP.NET.
"""

from __future__ import annotations

from zk_pipelines.sandbox.kaseya import dto, render
from zk_pipelines.sandbox.kaseya.records import Account, Contact, Product, Stock, Tenant
from zk_pipelines.sandbox.kaseya.routing import (
    ApiFailure,
    Call,
    Reply,
    by_key,
    line_item_of,
    matching,
    not_found,
    page,
    quote_of,
    routes,
)

# The `Filter.CreatedOnFrom/To` and `Filter.ModifiedOnFrom/To` windows of the lists that carry them.
_STAMPS = {"CreatedOn": "stamps.created_on", "ModifiedOn": "stamps.modified_on"}


def _account(call: Call, key: str) -> Account:
    return by_key(call, call.tenant.accounts, "Account", key)


def _product(call: Call) -> Product:
    return by_key(call, call.tenant.products, "Product", "productIndexId")


# --- accounts -------------------------------------------------------------------------------------------

def accounts_summary(call: Call) -> Reply:
    tenant = call.tenant
    rows = matching(call.query, tenant.accounts.values(),
                    contains={"AccountName": "account_name", "AccountCode": "account_code",
                              "AccountTypeName": lambda a: tenant.account_types[a.account_type_id].name},
                    int_equals={"AccountTypeId": "account_type_id"}, bool_equals={"IsActive": "is_active"},
                    within=_STAMPS)
    return page(call, rows, lambda a: render.account(tenant, a))


def account_by_id(call: Call) -> Reply:
    # `GET .../summary/{id}` is declared as a bare DTO; observed enveloped, and served so.
    return Reply(render.account(call.tenant, _account(call, "id")))


def account_location(call: Call) -> Reply:
    owner = _account(call, "accountId")
    found = owner.location(call.params["locationId"])
    if found is None:
        raise not_found(f"Location of account {owner.id}", call.params["locationId"])
    return Reply(render.location(call.tenant, found))


def account_locations_lookup(call: Call) -> Reply:
    owner = _account(call, "accountId")
    return Reply([render.location_lookup(owner.id, loc) for loc in owner.locations])


def accounts_lookup(call: Call) -> Reply:
    rows = matching(call.query, call.tenant.accounts.values(), int_in={"Ids": "id"}, contains={"Name": "account_name"})
    if not call.query.bool("Filter.WithInactiveAccounts"):
        rows = [a for a in rows if a.is_active]
    return page(call, rows, lambda account: render.account_lookup(call.tenant, account), with_total=False)


def account_types(call: Call) -> Reply:
    return Reply([dto.render("AccountTypeLookupOutputDto", Id=t.id, Name=t.name, IsActive=t.is_active,
                             IsClient=t.is_client, IsVendor=t.is_vendor)
                  for t in call.tenant.account_types.values()])


# --- contacts -------------------------------------------------------------------------------------------

def contacts_summary(call: Call) -> Reply:
    tenant = call.tenant
    rows = matching(call.query, tenant.contacts.values(),
                    int_equals={"AccountId": "account_id"}, bool_equals={"IsActive": "is_active"},
                    contains={"AccountName": lambda c: tenant.accounts[c.account_id].account_name,
                              "FirstName": "first_name", "LastName": "last_name"},
                    any_contains={"Phone": lambda c: [p.phone for p in c.phones],
                                  "Email": lambda c: [e.email_address for e in c.emails]},
                    within=_STAMPS)
    return page(call, rows, lambda c: render.contact_summary(tenant, c))


def contact_by_id(call: Call) -> Reply:
    # Declared as a bare DTO; observed enveloped, and served so.
    return Reply(render.contact_summary(call.tenant, by_key(call, call.tenant.contacts, "Contact")))


def _location_name(tenant: Tenant, contact: Contact) -> str | None:
    found = tenant.find_location(contact.location_id)
    return found[1].location_name if found else None


def contacts_search(call: Call) -> Reply:
    tenant = call.tenant
    rows = matching(call.query, tenant.contacts.values(),
                    int_in={"Ids": "id", "AccountIds": "account_id"}, int_equals={"LocationId": "location_id"},
                    # The sandbox models no client portal: no contact has access.
                    bool_equals={"IsPoc": "is_poc", "IsActive": "is_active", "HasClientPortalAccess": lambda c: False},
                    contains={"AccountName": lambda c: tenant.accounts[c.account_id].account_name,
                              "LocationName": lambda c: _location_name(tenant, c),
                              "FirstName": "first_name", "LastName": "last_name", "JobTitle": "job_title"},
                    any_contains={"EmailAddress": lambda c: [e.email_address for e in c.emails]})
    return page(call, rows, lambda c: render.contact_search(tenant, c), with_total=False)


# --- opportunities --------------------------------------------------------------------------------------

def opportunities(call: Call) -> Reply:
    tenant = call.tenant
    rows = matching(call.query, tenant.opportunities.values(),
                    int_equals={"StatusId": "status_id", "AccountId": "account_id", "TypeId": "type_id",
                                "SalesRepresentativeUserId": "sales_representative_user_id"},
                    bool_equals={"InPipeline": lambda o: tenant.statuses[o.status_id].is_pipeline},
                    within=_STAMPS)
    return page(call, rows, lambda o: render.opportunity(tenant, o))


def opportunity_by_id(call: Call) -> Reply:
    return Reply(render.opportunity(call.tenant, by_key(call, call.tenant.opportunities, "Opportunity")))


def opportunity_notes(call: Call) -> Reply:
    opportunity = by_key(call, call.tenant.opportunities, "Opportunity")
    rows = [n for n in call.tenant.notes.values() if n.opportunity_id == opportunity.id]
    return page(call, rows, lambda n: render.note(call.tenant, n))


def opportunity_statuses(call: Call) -> Reply:
    return Reply(render.status_lookup(call.tenant))


# --- products -------------------------------------------------------------------------------------------

def products_searchselect(call: Call) -> Reply:
    q, tenant = call.query, call.tenant
    number, name = q.contains("Filter.ProductNumber"), q.contains("Filter.ProductName")
    description, upc = q.contains("Filter.ProductDescription"), q.contains("Filter.UPC")
    color, manufacturer = q.contains("Filter.Color"), q.contains("Filter.ProductManufacturer")
    category = q.contains("Filter.Category")
    type_ids, warehouse_ids, excluded = q.ints("Filter.ProductTypeIds"), q.ints("Filter.WarehouseIds"), \
        q.int("Filter.ExcludedId")
    rows: list[tuple[Product, Stock]] = []
    for p in tenant.products.values():
        if (excluded is not None and p.id == excluded) or (type_ids is not None and p.product_type_id not in type_ids):
            continue
        if not (number(p.product_number) and name(p.product_name) and description(p.product_description)
                and upc(p.upc) and color(p.color) and manufacturer(p.manufacturer)
                and category(tenant.categories[p.category_id].name)):
            continue
        rows.extend((p, s) for s in p.stocks if warehouse_ids is None or s.warehouse_id in warehouse_ids)
    return page(call, rows, lambda row: render.product_row(tenant, *row))


def pricing_levels(call: Call) -> Reply:
    return Reply(render.pricing_levels(call.tenant, _product(call)))


def product_suppliers(call: Call) -> Reply:
    return Reply(render.suppliers(call.tenant, _product(call)))


def default_cost(call: Call) -> Reply:
    return Reply(render.default_cost(_product(call)))


def categories_lookup(call: Call) -> Reply:
    rows = matching(call.query, call.tenant.categories.values(), contains={"Name": "name"},
                    bool_equals={"IsActive": "is_active"})
    return page(call, rows, render.category_lookup)


def warehouses(call: Call) -> Reply:
    return Reply([dto.render("WarehouseOutputDto", Id=w.id, Name=w.name) for w in call.tenant.warehouses.values()])


# --- employees ------------------------------------------------------------------------------------------

def employees_lookup(call: Call) -> Reply:
    rows = matching(call.query, call.tenant.employees.values(), int_in={"Ids": "id"}, contains={"Name": "full_name"})
    return page(call, rows, render.employee_lookup, with_total=False)


def employees_searchselect(call: Call) -> Reply:
    q = call.query
    ids, active, text = q.ints("Filter.Ids"), q.bool("Filter.IsActive"), q.contains("Filter.Filter_Text")
    rows = [e for e in call.tenant.employees.values()
            if (ids is None or e.id in ids) and (active is None or e.is_active == active)
            and (text(e.full_name) or text(e.email_address))]
    return page(call, rows, render.employee)


# --- quotes ---------------------------------------------------------------------------------------------

def quotes_summary(call: Call) -> Reply:
    tenant = call.tenant
    rows = matching(call.query, tenant.quotes.values(), int_equals={"AccountId": "account_id"},
                    int_in={"StatusIds": "status_id"}, within={"CreatedOn": "stamps.created_on"})
    return page(call, rows, lambda qt: render.quote_summary(tenant, qt))


def quote_by_id(call: Call) -> Reply:
    return Reply(render.quote(call.tenant, quote_of(call)))


def quote_line_item(call: Call) -> Reply:
    return Reply(render.line_item(line_item_of(call)[1]))


def quote_line_items(call: Call) -> Reply:
    return Reply([render.line_item(item) for item in quote_of(call).line_items])


# --- services and lookups -------------------------------------------------------------------------------

def services_lookup(call: Call) -> Reply:
    rows = matching(call.query, call.tenant.services.values(), int_equals={"Id": "id"}, contains={"Name": "name"})
    return page(call, rows, render.service_lookup)


def service_by_id(call: Call) -> Reply:
    return Reply(render.service(call.tenant, by_key(call, call.tenant.services, "Service", "serviceId")))


def system_lookup(call: Call) -> Reply:
    table = call.tenant.lookups.get(call.params["tableName"].lower())
    if table is None:
        raise ApiFailure(404, f"Lookup table '{call.params['tableName']}' was not found.")
    return Reply([dto.render("LookupOutputDto", Id=r.id, Name=r.name, IsDefault=r.is_default, IsActive=r.is_active)
                  for r in table.rows])


# --- contracts ------------------------------------------------------------------------------------------

def contracts_summary(call: Call) -> Reply:
    tenant = call.tenant
    rows = matching(call.query, tenant.contracts.values(),
                    contains={"ContractType": "contract_type", "ContractName": "contract_name",
                              "BillingCycle": "billing_cycle", "Status": "status",
                              "AccountName": lambda c: tenant.accounts[c.account_id].account_name})
    return page(call, rows, lambda c: render.contract(tenant, c))


# --- time logs ------------------------------------------------------------------------------------------

def timelogs(call: Call) -> Reply:
    tenant = call.tenant
    rows = matching(call.query, tenant.timelogs.values(), within={**_STAMPS, "StartDate": "start"},
                    int_equals={"AccountId": "account_id", "UserId": "user_id"},
                    bool_equals={"IsPosted": "is_posted", "IsApproved": "is_approved", "IsBilled": "is_billed",
                                 "IsBillable": "is_billable"})
    return page(call, rows, lambda t: render.time_log(tenant, t))


ROUTES = routes({
    "GET /v2/crm/accounts/summary": accounts_summary,
    "GET /v2/crm/accounts/summary/{id}": account_by_id,
    "GET /v2/crm/accounts/{accountId}/locations/{locationId}": account_location,
    "GET /v2/crm/accounts/{accountId}/locations/lookup": account_locations_lookup,
    "GET /v2/crm/accounts/lookup": accounts_lookup,
    "GET /v2/system/accounttypes/lookup": account_types,
    "GET /v2/crm/contacts/summary": contacts_summary,
    "GET /v2/crm/contacts/summary/{id}": contact_by_id,
    "GET /v2/crm/contacts/search": contacts_search,
    "GET /v2/crm/opportunities": opportunities,
    "GET /v2/crm/opportunities/{id}": opportunity_by_id,
    "GET /v2/crm/opportunities/{id}/notes": opportunity_notes,
    "GET /v2/crm/opportunities/statuses/Lookup": opportunity_statuses,
    "GET /v2/inventory/products/searchselect": products_searchselect,
    "GET /v2/inventory/products/{productIndexId}/pricingLevels": pricing_levels,
    "GET /v2/inventory/products/{productIndexId}/suppliers/lookup": product_suppliers,
    "GET /v2/inventory/products/{productIndexId}/defaultcost": default_cost,
    "GET /v2/inventory/products/categories/lookup": categories_lookup,
    "GET /v2/inventory/warehouses/lookup": warehouses,
    "GET /v2/hr/employees/lookup": employees_lookup,
    "GET /v2/hr/employees/searchselect": employees_searchselect,
    "GET /v2/crm/quotes/summary": quotes_summary,
    "GET /v2/crm/quotes/{quotationId}": quote_by_id,
    "GET /v2/crm/quotes/{quotationId}/lineItems/{lineItemId}": quote_line_item,
    "GET /v2/admin/finance/services/lookup": services_lookup,
    "GET /v2/admin/finance/services/{serviceId}": service_by_id,
    "GET /v2/system/lookup/{tableName}": system_lookup,
    "GET /v2/finance/contracts/summary": contracts_summary,
    "GET /v2/timelogs": timelogs,
}) + routes({
    # NOT IN KASEYA'S PUBLISHED CONTRACT: a quote's line items (Kaseya publishes only the read by id).
    "GET /v2/crm/quotes/{quotationId}/lineItems": quote_line_items,
}, published=False)
