"""The write operations. Bodies are read through the contract's input DTOs (any case); a body Kaseya would
refuse is answered HTTP 200 with `success:false` and every problem, each naming its field. Every write stamps
`ModifiedOn` from the sandbox clock, always later than before, and `ModifiedBy` with the API user.

PUTs are full replaces, as in Kaseya: a property left out takes its .NET default (null, 0, false), so a
client that omits `IsActive` from a contact PUT deactivates the contact.

Sandbox rules the contract does not state (ASSUMED, as Kaseya's UI enforces them): account names, product
numbers, service names and product category names are unique; a contact needs a first and a last name; a
location id must belong to the account it is given with; a Labour product needs a labour period.
"""

from __future__ import annotations

from datetime import datetime

from zk_pipelines.sandbox.kaseya import render
from zk_pipelines.sandbox.kaseya.dto import Body, read_input
from zk_pipelines.sandbox.kaseya.records import (
    COUNTRIES,
    NO_DISTRIBUTOR,
    QUOTE_ITEM_TYPES,
    Account,
    Address,
    Category,
    Contact,
    ContactEmail,
    ContactPhone,
    Location,
    Opportunity,
    OpportunityNote,
    Product,
    ProductPrice,
    ProductSupplier,
    Quote,
    QuoteLineItem,
    Service,
    Stamps,
    Stock,
    Tenant,
    later_than,
    to_millis,
)
from zk_pipelines.sandbox.kaseya.routing import Call, Invalid, Reply, by_key, line_item_of, quote_of, routes


def _read(call: Call, dto_name: str) -> Body:
    body, problems = read_input(dto_name, call.body)
    if problems:
        raise Invalid(problems)
    return body


def _new_stamps(call: Call) -> Stamps:
    now = to_millis(call.now)
    return Stamps(now, now, call.user_id, call.user_id)


def touch(stamps: Stamps, now: datetime, by: int | None) -> None:
    """A write happened: ModifiedOn moves forward (strictly), ModifiedBy is the writer."""
    stamps.modified_on = later_than(stamps.modified_on, now)
    stamps.modified_by = by


def _check(problems: list[str]) -> None:
    if problems:
        raise Invalid(problems)


def _lookup_problem(tenant: Tenant, table: str, field: str, row_id: int | None) -> list[str]:
    if row_id is None or tenant.lookup(table).get(row_id) is not None:
        return []
    return [f"{field} {row_id} is not a valid {table} (see GET /v2/system/lookup/{table})."]


def _employee_problem(tenant: Tenant, field: str, employee_id: int | None) -> list[str]:
    return [] if employee_id in tenant.employees else [f"{field} {employee_id} is not an employee."]


# --- accounts -------------------------------------------------------------------------------------------

def country_code(country_id: int | None, country: str | None) -> str | None:
    """The world's country code for a CountryId or a country code/name; an unknown name is kept as given."""
    for code, (numeric, name) in COUNTRIES.items():
        if country_id == numeric or (country and country.strip().casefold() in (code.casefold(), name.casefold())):
            return code
    return country


def _account_header_problems(tenant: Tenant, body: Body, account_id: int | None) -> list[str]:
    problems = []
    if body["AccountTypeId"] not in tenant.account_types:
        problems.append(f"AccountTypeId {body['AccountTypeId']} is not an account type "
                        "(see GET /v2/system/accounttypes/lookup).")
    problems += _lookup_problem(tenant, "BusinessType", "BusinessTypeId", body["BusinessTypeId"])
    problems += _employee_problem(tenant, "AccountManagerId", body["AccountManagerId"])
    if body["ParentId"] is not None and (body["ParentId"] not in tenant.accounts or body["ParentId"] == account_id):
        problems.append(f"ParentId {body['ParentId']} is not another account.")
    name = (body["AccountName"] or "").strip().casefold()
    if any(a.account_name.casefold() == name and a.id != account_id for a in tenant.accounts.values()):
        problems.append(f"An account named '{body['AccountName']}' already exists.")
    return problems


_ACCOUNT_HEADER_FIELDS = {"AccountTypeId": "account_type_id", "BusinessTypeId": "business_type_id",
                          "AccountManagerId": "account_manager_id", "ParentId": "parent_id",
                          "Description": "description", "Website": "website", "CreditLimit": "credit_limit",
                          "NetDays": "net_days", "AcquiredDate": "acquired_date",
                          "RouteInvoiceToParent": "route_invoice_to_parent"}


def _apply_account_header(account: Account, body: Body) -> None:
    account.account_name = body["AccountName"].strip()
    account.account_code = body["AccountCode"] or account.account_code
    body.assign(account, _ACCOUNT_HEADER_FIELDS)
    if body["IsActive"] is not None:
        account.is_active = body["IsActive"]


def _location_problems(tenant: Tenant, locations: list[Body]) -> list[str]:
    problems = []
    if not locations:
        problems.append("Locations must hold at least one location.")
    if sum(1 for loc in locations if loc["IsMain"]) > 1:
        problems.append("Only one location can be the main location (IsMain).")
    seen: set[str] = set()
    for i, loc in enumerate(locations):
        name = loc["LocationName"].strip().casefold()
        if name in seen:
            problems.append(f"Locations[{i}].LocationName '{loc['LocationName']}' is used twice in this account.")
        seen.add(name)
        for j, addr in enumerate(loc["Addresses"]):
            problems += _lookup_problem(tenant, "AddressType", f"Locations[{i}].Addresses[{j}].AddressTypeId",
                                        addr["AddressTypeId"])
            if addr["AddressType"] and not any(r.name.casefold() == addr["AddressType"].casefold()
                                               for r in tenant.lookup("AddressType").rows):
                problems.append(f"Locations[{i}].Addresses[{j}].AddressType '{addr['AddressType']}' is not an "
                                "address type.")
    return problems


def _address(tenant: Tenant, body: Body, stamps: Stamps) -> Address:
    types = tenant.lookup("AddressType")
    if body["AddressTypeId"] is not None:
        type_id = body["AddressTypeId"]
    elif body["AddressType"]:
        type_id = next(r.id for r in types.rows if r.name.casefold() == body["AddressType"].casefold())
    else:
        type_id = types.by_name("Main" if body["IsMain"] else "Billing" if body["IsBilling"] else "Shipping").id
    return Address(
        id=tenant.ids.next("address"), address_type_id=type_id, is_main=body["IsMain"], is_billing=body["IsBilling"],
        address1=body["Address1"], address2=body["Address2"], city=body["City"], state=body["State"],
        zip_code=body["ZipCode"], country_code=country_code(body["CountryId"], body["Country"]), phone=body["Phone"],
        stamps=Stamps(**vars(stamps)), fax=body["Fax"], email_address=body["EmailAddress"], latitude=body["Latitude"],
        longitude=body["Longitude"],
    )


def build_locations(tenant: Tenant, account_id: int, bodies: list[Body], stamps: Stamps) -> list[Location]:
    has_main = any(b["IsMain"] for b in bodies)
    locations = []
    for i, body in enumerate(bodies):
        location = Location(tenant.ids.next("location"), body["LocationName"].strip(),
                            body["IsMain"] or (not has_main and i == 0), body["IsActive"] or body["IsMain"],
                            [_address(tenant, a, stamps) for a in body["Addresses"]], Stamps(**vars(stamps)))
        tenant.location_owner[location.id] = account_id
        locations.append(location)
    return locations


def create_account(call: Call) -> Reply:
    body, tenant = _read(call, "AccountPostInputDto"), call.tenant
    _check(_account_header_problems(tenant, body, None) + _location_problems(tenant, body["Locations"]))
    stamps = _new_stamps(call)
    account_id = tenant.ids.next("account")
    account = Account(id=account_id, account_code=f"ACCT{account_id}", account_name="", account_type_id=0,
                      business_type_id=0, account_manager_id=0,
                      locations=build_locations(tenant, account_id, body["Locations"], stamps), stamps=stamps)
    _apply_account_header(account, body)
    tenant.accounts[account_id] = account
    return Reply(render.account(tenant, account))


def update_account(call: Call) -> Reply:
    tenant = call.tenant
    account = by_key(call, tenant.accounts, "Account")
    body = _read(call, "AccountPutInputDto")
    _check(_account_header_problems(tenant, body, account.id))
    _apply_account_header(account, body)
    touch(account.stamps, call.now, call.user_id)
    return Reply(render.account(tenant, account))


# --- contacts -------------------------------------------------------------------------------------------

def _place_problems(tenant: Tenant, account_id: int, location_id: int, location_field: str = "LocationId"
                    ) -> list[str]:
    if account_id not in tenant.accounts:
        return [f"AccountId {account_id} is not an account."]
    if tenant.accounts[account_id].location(location_id) is None:
        return [f"{location_field} {location_id} is not a location of account {account_id}."]
    return []


def _name_problems(body: Body) -> list[str]:
    return [f"The {field} field is required." for field in ("FirstName", "LastName") if not (body[field] or "").strip()]


def _make_poc(tenant: Tenant, contact: Contact, now: datetime, by: int | None) -> None:
    """One POC per account: the contact becomes it, the previous one stops being it."""
    for other in tenant.contacts_of(contact.account_id):
        if other.is_poc and other.id != contact.id:
            other.is_poc = False
            touch(other.stamps, now, by)
    contact.is_poc = True


def create_contact(call: Call) -> Reply:
    body, tenant = _read(call, "ContactInputDto"), call.tenant
    problems = _name_problems(body) + _place_problems(tenant, body["AccountId"], body["LocationId"])
    emails, phones = body["Emails"] or [], body["Phones"] or []
    for i, email in enumerate(emails):
        if "@" not in (email["EmailAddress"] or ""):
            problems.append(f"Emails[{i}].EmailAddress '{email['EmailAddress'] or ''}' is not an e-mail address.")
        problems += _lookup_problem(tenant, "EmailType", f"Emails[{i}].EmailTypeId", email["EmailTypeId"])
    for i, phone in enumerate(phones):
        if not (phone["PhoneNumber"] or "").strip():
            problems.append(f"The Phones[{i}].PhoneNumber field is required.")
        problems += _lookup_problem(tenant, "PhoneType", f"Phones[{i}].PhoneTypeId", phone["PhoneTypeId"])
    if sum(1 for e in emails if e["IsDefault"]) > 1 or sum(1 for p in phones if p["IsDefault"]) > 1:
        problems.append("Only one e-mail address and one phone number can be the default (IsDefault).")
    _check(problems)
    stamps = _new_stamps(call)
    email_default = not any(e["IsDefault"] for e in emails)
    phone_default = not any(p["IsDefault"] for p in phones)
    contact = Contact(
        id=tenant.ids.next("contact"), account_id=body["AccountId"], location_id=body["LocationId"],
        first_name=body["FirstName"].strip(), last_name=body["LastName"].strip(),
        emails=[ContactEmail(tenant.ids.next("email"), e["EmailAddress"].strip(), e["EmailTypeId"],
                             e["IsDefault"] or (email_default and i == 0), Stamps(**vars(stamps)))
                for i, e in enumerate(emails)],
        phones=[ContactPhone(tenant.ids.next("phone"), p["PhoneNumber"].strip(), p["PhoneTypeId"],
                             p["IsDefault"] or (phone_default and i == 0), Stamps(**vars(stamps)))
                for i, p in enumerate(phones)],
        stamps=stamps,
    )
    tenant.contacts[contact.id] = contact
    return Reply(render.contact_created(tenant, contact))


_CONTACT_FIELDS = {"AccountId": "account_id", "LocationId": "location_id", "MiddleName": "middle_name",
                   "JobTitle": "job_title", "IsActive": "is_active", "ReceiveInvoices": "receive_invoices",
                   "BillByContact": "bill_by_contact", "EffectiveDate": "effective_date"}


def update_contact(call: Call) -> Reply:
    tenant = call.tenant
    contact = by_key(call, tenant.contacts, "Contact")
    body = _read(call, "ContactPutInputDto")
    _check(_name_problems(body) + _place_problems(tenant, body["AccountId"], body["LocationId"]))
    contact.first_name, contact.last_name = body["FirstName"].strip(), body["LastName"].strip()
    body.assign(contact, _CONTACT_FIELDS)
    if body["Poc"]:
        _make_poc(tenant, contact, call.now, call.user_id)
    else:
        contact.is_poc = False
    touch(contact.stamps, call.now, call.user_id)
    return Reply(render.contact(tenant, contact))


# --- opportunities --------------------------------------------------------------------------------------

def _opportunity_problems(tenant: Tenant, body: Body) -> list[str]:
    problems = []
    if body["StatusId"] not in tenant.statuses:
        problems.append(f"StatusId {body['StatusId']} is not an opportunity status "
                        "(see GET /v2/crm/opportunities/statuses/Lookup).")
    problems += _place_problems(tenant, body["AccountId"], body["AccountLocationId"], "AccountLocationId")
    contact = tenant.contacts.get(body["ContactId"]) if body["ContactId"] is not None else None
    if body["ContactId"] is not None and (contact is None or contact.account_id != body["AccountId"]):
        problems.append(f"ContactId {body['ContactId']} is not a contact of account {body['AccountId']}.")
    problems += _lookup_problem(tenant, "OpportunityType", "TypeId", body["TypeId"])
    problems += _lookup_problem(tenant, "OpportunityRating", "RatingId", body["RatingId"])
    problems += _lookup_problem(tenant, "LeadSource", "LeadSourceId", body["LeadSourceId"])
    problems += _employee_problem(tenant, "SalesRepresentativeUserId", body["SalesRepresentativeUserId"])
    if not 0 <= body["Probability"] <= 100:
        problems.append(f"Probability must be between 0 and 100, not {body['Probability']}.")
    return problems


_OPPORTUNITY_FIELDS = {"StatusId": "status_id", "AccountId": "account_id", "AccountLocationId": "account_location_id",
                       "ContactId": "contact_id", "TypeId": "type_id", "Probability": "probability",
                       "RatingId": "rating_id", "LeadSourceId": "lead_source_id",
                       "SalesRepresentativeUserId": "sales_representative_user_id", "Amount": "amount",
                       "Description": "description", "CustomerPO": "customer_po", "CloseDate": "close_date"}


def _apply_opportunity(opportunity: Opportunity, body: Body) -> None:
    opportunity.subject = body["Subject"].strip()
    body.assign(opportunity, _OPPORTUNITY_FIELDS)


def create_opportunity(call: Call) -> Reply:
    body, tenant = _read(call, "OpportunityInputDto"), call.tenant
    _check(_opportunity_problems(tenant, body))
    opportunity = Opportunity(id=tenant.ids.next("opportunity"), subject="", status_id=0, account_id=0,
                              account_location_id=0, type_id=0, probability=0.0, rating_id=None,
                              sales_representative_user_id=0, amount=0.0, close_date=call.now,
                              stamps=_new_stamps(call))
    _apply_opportunity(opportunity, body)
    tenant.opportunities[opportunity.id] = opportunity
    return Reply(render.opportunity(tenant, opportunity))


def update_opportunity(call: Call) -> Reply:
    tenant = call.tenant
    opportunity = by_key(call, tenant.opportunities, "Opportunity")
    body = _read(call, "OpportunityInputDto")
    _check(_opportunity_problems(tenant, body))
    _apply_opportunity(opportunity, body)
    touch(opportunity.stamps, call.now, call.user_id)
    return Reply(render.opportunity(tenant, opportunity))


def add_opportunity_note(call: Call) -> Reply:
    tenant = call.tenant
    opportunity = by_key(call, tenant.opportunities, "Opportunity")
    body = _read(call, "OpportunityNotePostInputDto")
    note = OpportunityNote(tenant.ids.next("note"), opportunity.id, body["Note"], _new_stamps(call))
    tenant.notes[note.id] = note
    return Reply(render.note(tenant, note))


# --- quotes ---------------------------------------------------------------------------------------------

def _catalogue_item(tenant: Tenant, item_type_id: int, item_id: int) -> tuple[str | None, str | None, float, float]:
    """(name, description, price, cost) of the catalogue item a line refers to, or the problem."""
    if QUOTE_ITEM_TYPES[item_type_id] == "Product":
        product = tenant.products.get(item_id)
        if product is None:
            raise Invalid(f"Id {item_id} is not a product (ProductIndexId) for item type {item_type_id} (Product).")
        price = next((p.price for p in product.prices if p.is_default), 0.0)
        return product.product_name, product.product_description, price, product.default_cost
    if QUOTE_ITEM_TYPES[item_type_id] in ("Service", "Labour"):
        service = tenant.services.get(item_id)
        if service is None:
            raise Invalid(f"Id {item_id} is not a service for item type {item_type_id} "
                          f"({QUOTE_ITEM_TYPES[item_type_id]}).")
        return service.name, service.description, service.unit_price, service.unit_cost
    return None, None, 0.0, 0.0


def _line_problems(body: Body) -> list[str]:
    problems = []
    if body["Quantity"] is not None and body["Quantity"] < 0:
        problems.append(f"Quantity must not be negative, not {body['Quantity']}.")
    if body["Discount"] < 0:
        problems.append(f"Discount must not be negative, not {body['Discount']}.")
    return problems


def add_quote_line_item(call: Call) -> Reply:
    tenant, quote = call.tenant, quote_of(call)
    item_type_id, distributer = call.params["itemTypeId"], call.params["distributerTypeId"]
    body = _read(call, "QuotationLineItemInputDto")
    problems = _line_problems(body)
    if item_type_id not in QUOTE_ITEM_TYPES:
        problems.append(f"itemTypeId {item_type_id} is not an item type "
                        f"({', '.join(f'{k} {v}' for k, v in QUOTE_ITEM_TYPES.items())}).")
    if distributer < 0:
        problems.append(f"distributerTypeId {distributer} is not valid (0 for none).")
    _check(problems)
    name, description, price, cost = _catalogue_item(tenant, item_type_id, body["Id"])
    given = body.given
    unit_price = body["UnitPrice"] if "UnitPrice" in given else price
    unit_cost = body["UnitCost"] if "UnitCost" in given else cost
    item = QuoteLineItem(
        id=tenant.ids.next("line_item"), quotation_id=quote.id, item_type_id=item_type_id, item_id=body["Id"],
        name=body["Name"] or name, description=body["Description"] or description, original_unit_price=price,
        unit_price=unit_price, unit_cost=unit_cost,
        quantity=body["Quantity"] if body["Quantity"] is not None else 1.0, discount=body["Discount"],
        taxable=body["Taxable"],
        margin=body["Margin"] if "Margin" in given else _margin(unit_price, unit_cost),
        margin_type=body["MarginType"], stamps=_new_stamps(call),
        distributor_type_id=None if distributer == NO_DISTRIBUTOR else distributer,
        ext_dist_reference=body["ExtDistReference"], image=body["Image"],
    )
    quote.line_items.append(item)
    touch(quote.stamps, call.now, call.user_id)
    return Reply(render.line_item(item))


def _margin(price: float, cost: float) -> float:
    return round((price - cost) / price * 100, 2) if price else 0.0


_LINE_ITEM_FIELDS = {"Name": "name", "Description": "description", "ExtDistReference": "ext_dist_reference",
                     "Image": "image", "UnitPrice": "unit_price", "UnitCost": "unit_cost", "Quantity": "quantity",
                     "Margin": "margin", "MarginType": "margin_type", "Discount": "discount", "Taxable": "taxable"}


def update_quote_line_item(call: Call) -> Reply:
    quote, item = line_item_of(call)
    body = _read(call, "QuotationLineItemInputDto")
    _check(_line_problems(body))
    body.assign(item, _LINE_ITEM_FIELDS)
    touch(item.stamps, call.now, call.user_id)
    touch(quote.stamps, call.now, call.user_id)
    return Reply(render.line_item(item))


def _quote_problems(tenant: Tenant, body: Body) -> list[str]:
    problems = _lookup_problem(tenant, "QuoteStatus", "StatusId", body["StatusId"])
    problems += _employee_problem(tenant, "SalesRepresentativeUserId", body["SalesRepresentativeUserId"])
    if body["AccountId"] not in tenant.accounts:
        return problems + [f"AccountId {body['AccountId']} is not an account."]
    if body["LocationId"] is not None:
        problems += _place_problems(tenant, body["AccountId"], body["LocationId"])
    deal = tenant.opportunities.get(body["OpportunityId"]) if body["OpportunityId"] is not None else None
    if body["OpportunityId"] is not None and (deal is None or deal.account_id != body["AccountId"]):
        problems.append(f"OpportunityId {body['OpportunityId']} is not an opportunity of account {body['AccountId']}.")
    return problems


_QUOTE_FIELDS = {"StatusId": "status_id", "ExpiryDate": "expiry_date", "AccountId": "account_id",
                 "OpportunityId": "opportunity_id", "SalesRepresentativeUserId": "sales_representative_user_id"}


def _apply_quote(tenant: Tenant, quote: Quote, body: Body) -> None:
    quote.name = body["Name"].strip()
    body.assign(quote, _QUOTE_FIELDS)
    quote.location_id = body["LocationId"] or tenant.accounts[body["AccountId"]].main_location.id


def create_quote(call: Call) -> Reply:
    body, tenant = _read(call, "QuotationInputDto"), call.tenant
    _check(_quote_problems(tenant, body))
    quote_id = tenant.ids.next("quote")
    quote = Quote(id=quote_id, quotation_number=f"Q-{quote_id}", name="", status_id=0, expiry_date=call.now,
                  account_id=0, location_id=None, sales_representative_user_id=0, stamps=_new_stamps(call))
    _apply_quote(tenant, quote, body)
    tenant.quotes[quote_id] = quote
    return Reply(render.quote(tenant, quote))


def update_quote(call: Call) -> Reply:
    tenant, quote = call.tenant, quote_of(call)
    body = _read(call, "QuotationInputDto")
    _check(_quote_problems(tenant, body))
    _apply_quote(tenant, quote, body)
    touch(quote.stamps, call.now, call.user_id)
    return Reply(render.quote(tenant, quote))


# --- catalogue ------------------------------------------------------------------------------------------

def create_service(call: Call) -> Reply:
    body, tenant = _read(call, "ServiceInputDto"), call.tenant
    problems = [] if (body["Name"] or "").strip() else ["The Name field is required."]
    if body["Id"]:
        problems.append(f"Id must be 0 when creating a service, not {body['Id']}.")
    if body["CategoryId"] is not None and body["CategoryId"] not in tenant.categories:
        problems.append(f"CategoryId {body['CategoryId']} is not a category "
                        "(see GET /v2/inventory/products/categories/lookup).")
    name = (body["Name"] or "").strip()
    if name and any(s.name.casefold() == name.casefold() for s in tenant.services.values()):
        problems.append(f"A service named '{name}' already exists.")
    _check(problems)
    price, cost = body["UnitPrice"] or 0.0, body["UnitCost"] or 0.0
    service = Service(
        id=tenant.ids.next("service"), name=name, description=body["Description"], unit_cost=cost, unit_price=price,
        is_active=body["IsActive"], is_taxable=body["IsTaxable"], stamps=_new_stamps(call),
        category_id=body["CategoryId"], sub_category_id=body["SubCategoryId"],
        unit_of_measure_id=body["UnitOfMeasureId"], income_account_id=body["IncomeAccountId"],
        expense_account_id=body["ExpenseAccountId"],
        margin=body["Margin"] if body["Margin"] is not None else _margin(price, cost), margin_type=body["MarginType"],
    )
    tenant.services[service.id] = service
    return Reply(render.service(tenant, service))


def create_product_category(call: Call) -> Reply:
    body, tenant = _read(call, "ProductCategoriesInputDto"), call.tenant
    name = body["Name"].strip()
    if tenant.category_named(name) is not None:
        raise Invalid(f"A product category named '{name}' already exists.")
    category = Category(tenant.ids.next("category"), name, body["Description"], body["IsActive"], _new_stamps(call))
    tenant.categories[category.id] = category
    return Reply(render.category(category))


def _product_problems(tenant: Tenant, body: Body) -> list[str]:
    problems = []
    number = body["ProductNumber"].strip()
    if any(p.product_number.casefold() == number.casefold() for p in tenant.products.values()):
        problems.append(f"A product with ProductNumber '{number}' already exists.")
    if body["CategoryId"] not in tenant.categories:
        problems.append(f"CategoryId {body['CategoryId']} is not a category "
                        "(see GET /v2/inventory/products/categories/lookup).")
    problems += _lookup_problem(tenant, "ProductType", "ProductTypeId", body["ProductTypeId"])
    if body["WarehouseId"] not in tenant.warehouses:
        problems.append(f"WarehouseId {body['WarehouseId']} is not a warehouse "
                        "(see GET /v2/inventory/warehouses/lookup).")
    problems += _lookup_problem(tenant, "LabourPeriod", "LabourPeriodId", body["LabourPeriodId"])
    if tenant.lookup_name("ProductType", body["ProductTypeId"]) == "Labour" and body["LabourPeriodId"] is None:
        problems.append("The LabourPeriodId field is required for a Labour product.")
    if body["SupplierId"] is not None and body["SupplierId"] not in tenant.suppliers:
        problems.append(f"SupplierId {body['SupplierId']} is not a supplier.")
    return problems


def create_product(call: Call) -> Reply:
    body, tenant = _read(call, "ProductInputDto"), call.tenant
    _check(_product_problems(tenant, body))
    cost, price = body["UnitCost"] or 0.0, body["UnitPrice"] or 0.0
    retail = tenant.pricing_level_named("Retail").id
    suppliers = [ProductSupplier(body["SupplierId"], body["SupplierPartNumber"], cost)] if body["SupplierId"] else []
    product = Product(
        id=tenant.ids.next("product"), product_number=body["ProductNumber"].strip(),
        product_name=body["ProductName"].strip(), product_description=body["ProductDescription"],
        category_id=body["CategoryId"], product_type_id=body["ProductTypeId"],
        stocks=[Stock(tenant.ids.next("stock"), body["WarehouseId"])],
        prices=[ProductPrice(retail, price, is_default=True)], suppliers=suppliers, default_cost=cost,
        stamps=_new_stamps(call), manufacturer=body["Manufacturer"], upc=body["UPC"],
        labour_period_id=body["LabourPeriodId"],
    )
    tenant.products[product.id] = product
    return Reply(render.product_row(tenant, product, product.stocks[0]))


ROUTES = routes({
    "POST /v2/crm/accounts": create_account,
    "PUT /v2/crm/accounts/{id}": update_account,
    "POST /v2/crm/contacts/summary": create_contact,
    "PUT /v2/crm/contacts/{id}": update_contact,
    "POST /v2/crm/opportunities": create_opportunity,
    "PUT /v2/crm/opportunities/{id}": update_opportunity,
    "POST /v2/crm/opportunities/{id}/notes": add_opportunity_note,
    "POST /v2/crm/quotes/{quotationId}/lineItems/{itemTypeId}/{distributerTypeId}": add_quote_line_item,
    "PUT /v2/crm/quotes/{quotationId}/lineItems/{lineItemId}": update_quote_line_item,
    "POST /v2/admin/finance/services/services": create_service,
    "POST /v2/inventory/products/categories": create_product_category,
}) + routes({
    # NOT IN KASEYA'S PUBLISHED CONTRACT: quote header create/update and inventory product create. Quoting
    # vendors use unpublished endpoints for these; the sandbox models them in the contract's conventions.
    "POST /v2/crm/quotes": create_quote,
    "PUT /v2/crm/quotes/{quotationId}": update_quote,
    "POST /v2/inventory/products": create_product,
}, published=False)
