"""The read operations: lists with the contract's filters and 1-based paging, lookups, reads by id.

Lists filter the tenant's records first (no serialisation) and render only the requested page. Text filters
are case-insensitive "contains"; `...From`/`...To` date filters are inclusive, naive values UTC (assumed).
Filters the contract declares but the sandbox does not model are accepted and ignored, as unknown query
parameters are by ASP.NET.
"""

from __future__ import annotations

from zk_pipelines.sandbox.kaseya import dto, render
from zk_pipelines.sandbox.kaseya.records import Account, Product, Stock
from zk_pipelines.sandbox.kaseya.routing import (
    ApiFailure,
    Call,
    Reply,
    Route,
    by_key,
    line_item_of,
    not_found,
    page,
    quote_of,
)


def _account(call: Call, key: str) -> Account:
    return by_key(call, call.tenant.accounts, "Account", key)


def _product(call: Call) -> Product:
    return by_key(call, call.tenant.products, "Product", "productIndexId")


# --- accounts -------------------------------------------------------------------------------------------

def accounts_summary(call: Call) -> Reply:
    q, tenant = call.query, call.tenant
    name, code, type_name = q.contains("Filter.AccountName"), q.contains("Filter.AccountCode"), \
        q.contains("Filter.AccountTypeName")
    type_id, active = q.int("Filter.AccountTypeId"), q.bool("Filter.IsActive")
    created, modified = q.window("Filter.CreatedOn"), q.window("Filter.ModifiedOn")
    rows = [
        a for a in tenant.accounts.values()
        if a.stamps.modified_on in modified and a.stamps.created_on in created
        and (type_id is None or a.account_type_id == type_id) and (active is None or a.is_active == active)
        and name(a.account_name) and code(a.account_code)
        and type_name(tenant.account_types[a.account_type_id].name)
    ]
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
    q = call.query
    ids, name = q.ints("Filter.Ids"), q.contains("Filter.Name")
    with_inactive = bool(q.bool("Filter.WithInactiveAccounts"))
    rows = [a for a in call.tenant.accounts.values()
            if (ids is None or a.id in ids) and name(a.account_name) and (with_inactive or a.is_active)]
    return page(call, rows, lambda account: render.account_lookup(call.tenant, account), with_total=False)


def account_types(call: Call) -> Reply:
    return Reply([dto.render("AccountTypeLookupOutputDto", Id=t.id, Name=t.name, IsActive=t.is_active,
                             IsClient=t.is_client, IsVendor=t.is_vendor)
                  for t in call.tenant.account_types.values()])


# --- contacts -------------------------------------------------------------------------------------------

def contacts_summary(call: Call) -> Reply:
    q, tenant = call.query, call.tenant
    account_id, active = q.int("Filter.AccountId"), q.bool("Filter.IsActive")
    account_name, first, last = q.contains("Filter.AccountName"), q.contains("Filter.FirstName"), \
        q.contains("Filter.LastName")
    phone, email = q.contains("Filter.Phone"), q.contains("Filter.Email")
    created, modified = q.window("Filter.CreatedOn"), q.window("Filter.ModifiedOn")
    rows = [
        c for c in tenant.contacts.values()
        if c.stamps.modified_on in modified and c.stamps.created_on in created
        and (account_id is None or c.account_id == account_id) and (active is None or c.is_active == active)
        and first(c.first_name) and last(c.last_name)
        and account_name(tenant.accounts[c.account_id].account_name)
        and (q.text("Filter.Phone") is None or any(phone(p.phone) for p in c.phones))
        and (q.text("Filter.Email") is None or any(email(e.email_address) for e in c.emails))
    ]
    return page(call, rows, lambda c: render.contact_summary(tenant, c))


def contact_by_id(call: Call) -> Reply:
    # Declared as a bare DTO; observed enveloped, and served so.
    return Reply(render.contact_summary(call.tenant, by_key(call, call.tenant.contacts, "Contact")))


def contacts_search(call: Call) -> Reply:
    q, tenant = call.query, call.tenant
    ids, account_ids, location_id = q.ints("Filter.Ids"), q.ints("Filter.AccountIds"), q.int("Filter.LocationId")
    is_poc, active = q.bool("Filter.IsPoc"), q.bool("Filter.IsActive")
    portal = q.bool("Filter.HasClientPortalAccess")
    account_name, location_name = q.contains("Filter.AccountName"), q.contains("Filter.LocationName")
    first, last, title = q.contains("Filter.FirstName"), q.contains("Filter.LastName"), q.contains("Filter.JobTitle")
    email = q.contains("Filter.EmailAddress")
    rows = []
    for c in tenant.contacts.values():
        if ((ids is not None and c.id not in ids) or (account_ids is not None and c.account_id not in account_ids)
                or (location_id is not None and c.location_id != location_id)
                or (is_poc is not None and c.is_poc != is_poc) or (active is not None and c.is_active != active)
                or portal is True):
            continue
        if not (first(c.first_name) and last(c.last_name) and title(c.job_title)
                and account_name(tenant.accounts[c.account_id].account_name)):
            continue
        if q.text("Filter.EmailAddress") is not None and not any(email(e.email_address) for e in c.emails):
            continue
        if q.text("Filter.LocationName") is not None:
            found = tenant.find_location(c.location_id)
            if not found or not location_name(found[1].location_name):
                continue
        rows.append(c)
    return page(call, rows, lambda c: render.contact_search(tenant, c), with_total=False)


# --- opportunities --------------------------------------------------------------------------------------

def opportunities(call: Call) -> Reply:
    q, tenant = call.query, call.tenant
    status_id, account_id, type_id = q.int("Filter.StatusId"), q.int("Filter.AccountId"), q.int("Filter.TypeId")
    rep, in_pipeline = q.int("Filter.SalesRepresentativeUserId"), q.bool("Filter.InPipeline")
    created, modified = q.window("Filter.CreatedOn"), q.window("Filter.ModifiedOn")
    rows = [
        o for o in tenant.opportunities.values()
        if o.stamps.modified_on in modified and o.stamps.created_on in created
        and (status_id is None or o.status_id == status_id) and (account_id is None or o.account_id == account_id)
        and (type_id is None or o.type_id == type_id) and (rep is None or o.sales_representative_user_id == rep)
        and (in_pipeline is None or tenant.statuses[o.status_id].is_pipeline == in_pipeline)
    ]
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
    q = call.query
    name, active = q.contains("Filter.Name"), q.bool("Filter.IsActive")
    rows = [c for c in call.tenant.categories.values() if name(c.name) and (active is None or c.is_active == active)]
    return page(call, rows, render.category_lookup)


def warehouses(call: Call) -> Reply:
    return Reply([dto.render("WarehouseOutputDto", Id=w.id, Name=w.name) for w in call.tenant.warehouses.values()])


# --- employees ------------------------------------------------------------------------------------------

def employees_lookup(call: Call) -> Reply:
    ids, name = call.query.ints("Filter.Ids"), call.query.contains("Filter.Name")
    rows = [e for e in call.tenant.employees.values() if (ids is None or e.id in ids) and name(e.full_name)]
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
    q, tenant = call.query, call.tenant
    account_id, status_ids = q.int("Filter.AccountId"), q.ints("Filter.StatusIds")
    created = q.window("Filter.CreatedOn")
    rows = [qt for qt in tenant.quotes.values()
            if qt.stamps.created_on in created and (account_id is None or qt.account_id == account_id)
            and (status_ids is None or qt.status_id in status_ids)]
    return page(call, rows, lambda qt: render.quote_summary(tenant, qt))


def quote_by_id(call: Call) -> Reply:
    return Reply(render.quote(call.tenant, quote_of(call)))


def quote_line_item(call: Call) -> Reply:
    return Reply(render.line_item(line_item_of(call)[1]))


def quote_line_items(call: Call) -> Reply:
    return Reply([render.line_item(item) for item in quote_of(call).line_items])


# --- services and lookups -------------------------------------------------------------------------------

def services_lookup(call: Call) -> Reply:
    service_id, name = call.query.int("Filter.Id"), call.query.contains("Filter.Name")
    rows = [s for s in call.tenant.services.values() if (service_id is None or s.id == service_id) and name(s.name)]
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
    q, tenant = call.query, call.tenant
    filters = [(q.contains("Filter.ContractType"), lambda c: c.contract_type),
               (q.contains("Filter.ContractName"), lambda c: c.contract_name),
               (q.contains("Filter.BillingCycle"), lambda c: c.billing_cycle),
               (q.contains("Filter.AccountName"), lambda c: tenant.accounts[c.account_id].account_name),
               (q.contains("Filter.Status"), lambda c: c.status)]
    rows = [c for c in tenant.contracts.values() if all(test(value(c)) for test, value in filters)]
    return page(call, rows, lambda c: render.contract(tenant, c))


# --- time logs ------------------------------------------------------------------------------------------

def timelogs(call: Call) -> Reply:
    q, tenant = call.query, call.tenant
    created, modified, started = q.window("Filter.CreatedOn"), q.window("Filter.ModifiedOn"), \
        q.window("Filter.StartDate")
    account, user = q.int("Filter.AccountId"), q.int("Filter.UserId")
    flags = [(q.bool(f"Filter.{name}"), name) for name in ("IsPosted", "IsApproved", "IsBilled", "IsBillable")]
    attribute = {"IsPosted": "is_posted", "IsApproved": "is_approved", "IsBilled": "is_billed",
                 "IsBillable": "is_billable"}
    rows = [
        t for t in tenant.timelogs.values()
        if t.stamps.modified_on in modified and t.stamps.created_on in created and t.start in started
        and (account is None or t.account_id == account) and (user is None or t.user_id == user)
        and all(wanted is None or getattr(t, attribute[name]) == wanted for wanted, name in flags)
    ]
    return page(call, rows, lambda t: render.time_log(tenant, t))


ROUTES = (
    Route("GET", "/v2/crm/accounts/summary", accounts_summary),
    Route("GET", "/v2/crm/accounts/summary/{id}", account_by_id),
    Route("GET", "/v2/crm/accounts/{accountId}/locations/{locationId}", account_location),
    Route("GET", "/v2/crm/accounts/{accountId}/locations/lookup", account_locations_lookup),
    Route("GET", "/v2/crm/accounts/lookup", accounts_lookup),
    Route("GET", "/v2/system/accounttypes/lookup", account_types),
    Route("GET", "/v2/crm/contacts/summary", contacts_summary),
    Route("GET", "/v2/crm/contacts/summary/{id}", contact_by_id),
    Route("GET", "/v2/crm/contacts/search", contacts_search),
    Route("GET", "/v2/crm/opportunities", opportunities),
    Route("GET", "/v2/crm/opportunities/{id}", opportunity_by_id),
    Route("GET", "/v2/crm/opportunities/{id}/notes", opportunity_notes),
    Route("GET", "/v2/crm/opportunities/statuses/Lookup", opportunity_statuses),
    Route("GET", "/v2/inventory/products/searchselect", products_searchselect),
    Route("GET", "/v2/inventory/products/{productIndexId}/pricingLevels", pricing_levels),
    Route("GET", "/v2/inventory/products/{productIndexId}/suppliers/lookup", product_suppliers),
    Route("GET", "/v2/inventory/products/{productIndexId}/defaultcost", default_cost),
    Route("GET", "/v2/inventory/products/categories/lookup", categories_lookup),
    Route("GET", "/v2/inventory/warehouses/lookup", warehouses),
    Route("GET", "/v2/hr/employees/lookup", employees_lookup),
    Route("GET", "/v2/hr/employees/searchselect", employees_searchselect),
    Route("GET", "/v2/crm/quotes/summary", quotes_summary),
    Route("GET", "/v2/crm/quotes/{quotationId}", quote_by_id),
    Route("GET", "/v2/crm/quotes/{quotationId}/lineItems/{lineItemId}", quote_line_item),
    # NOT IN KASEYA'S PUBLISHED CONTRACT: a quote's line items (Kaseya publishes only the read by id).
    Route("GET", "/v2/crm/quotes/{quotationId}/lineItems", quote_line_items, published=False),
    Route("GET", "/v2/admin/finance/services/lookup", services_lookup),
    Route("GET", "/v2/admin/finance/services/{serviceId}", service_by_id),
    Route("GET", "/v2/system/lookup/{tableName}", system_lookup),
    Route("GET", "/v2/finance/contracts/summary", contracts_summary),
    Route("GET", "/v2/timelogs", timelogs),
)
