"""Seed a Kaseya tenant from the shared world: what an MSP's Kaseya BMS looks like after a few years of use.

Accounts have one to three locations, each with main, billing and shipping addresses (billing is often the
main address itself); every account has one POC contact; opportunities sit in every status and belong to every
sales rep; products are stocked in one to three warehouses with two or three pricing levels and one or two
suppliers; some deals have quotes with line items. Deterministic for a (seed, scale): the sandbox's own
choices come from a random stream derived from the seed, apart from the world's.

Lookup ids (statuses, types, warehouses, ...) depend on the seed, as they differ between real tenants, so a
client that hard-codes one fails against another seed.

Tenant n of a sandbox serving several (`sandbox/tenancy.py`) is seeded from its own seed and world, under
its own company name and API user, with its record ids n-1 strides up (`records.TENANT_ID_STRIDE`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from zk_pipelines.sandbox.kaseya.records import (
    ACCOUNT_TYPES,
    LOOKUP_TABLES,
    LOST_STATUS,
    OPEN_STATUSES,
    PRICING_LEVELS,
    PRODUCT_CATEGORIES,
    SUPPLIERS,
    WAREHOUSES,
    WON_STATUS,
    Account,
    AccountType,
    Address,
    Category,
    Contact,
    ContactEmail,
    ContactPhone,
    Contract,
    Employee,
    IdSequences,
    Location,
    LookupRow,
    LookupTable,
    Named,
    Opportunity,
    OpportunityStatus,
    Product,
    ProductPrice,
    ProductSupplier,
    Quote,
    QuoteLineItem,
    Service,
    Stamps,
    Stock,
    Tenant,
    TimeLog,
    login_of,
    week_start,
)
from zk_pipelines.sandbox.world import Address as WorldAddress
from zk_pipelines.sandbox.world import Company, Deal, World, build_world

API_EMPLOYEE = ("API", "Employee")

_STATUS_PROBABILITY = {"Prospecting": 10.0, "Qualification": 25.0, "Proposal": 50.0, "Negotiation": 75.0,
                       "On Hold": 0.0, WON_STATUS: 100.0, LOST_STATUS: 0.0}
_PRODUCT_CATEGORY = {"hardware": "Hardware", "software": "Software", "service": "Managed Services",
                     "labor": "Professional Services"}
_PRODUCT_TYPE = {"hardware": "Hardware", "software": "Software", "service": "Service", "labor": "Labour"}
_CATEGORY_DESCRIPTIONS = {
    "Hardware": "Devices and network equipment", "Software": "Licences and subscriptions",
    "Managed Services": "Recurring managed services", "Professional Services": "Project and labour work",
    "Bundles": "Pre-built packages of hardware and services",
}
_JOB_TITLES = ("Account Manager", "Sales Engineer", "Service Desk Lead", "Technician", "Project Manager")
_SEEDED_SERVICES = (
    ("Remote Support", "Remote support, per hour", 45.0, 95.0),
    ("Onsite Support", "Onsite support, per hour", 60.0, 140.0),
    ("Project Management", "Project management, per hour", 70.0, 150.0),
)


def lookup_id_base(seed: int) -> int:
    """First id of the seed's lookup ids; each lookup table owns a block of 40 from here."""
    return 10_000 + (seed % 50) * 1_000


def _stamps(created: datetime, modified: datetime, by: int | None, modified_by: int | None = None) -> Stamps:
    return Stamps(created, modified, by, modified_by if modified_by is not None else by)


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = max(0, int((end - start).total_seconds()))
    return start + timedelta(seconds=rng.randint(0, span))


def _empty_tenant(world: World) -> Tenant:
    login = login_of(world.msp)
    base = lookup_id_base(world.seed)
    blocks = iter(range(base, base + 40 * 100, 40))

    def block() -> Iterator[int]:
        return iter(range(next(blocks) + 1, 10**9))

    ids = IdSequences(world.msp)
    employees = {}
    for person in world.employees:
        employee_id = ids.next("employee")
        employees[employee_id] = Employee(employee_id, person.first_name, person.last_name, person.email,
                                          _JOB_TITLES[person.index % len(_JOB_TITLES)])
    api_user_id = ids.next("employee")
    employees[api_user_id] = Employee(api_user_id, *API_EMPLOYEE, login.username, "API Integration")

    type_ids = block()
    account_types = {i: AccountType(i, name) for name in ACCOUNT_TYPES for i in [next(type_ids)]}
    status_ids = block()
    statuses = {}
    for name in (*OPEN_STATUSES, WON_STATUS, LOST_STATUS):
        action = "Won" if name == WON_STATUS else "Lost" if name == LOST_STATUS else "Open"
        status_id = next(status_ids)
        statuses[status_id] = OpportunityStatus(status_id, name, _STATUS_PROBABILITY[name], action)
    warehouse_ids = block()
    warehouses = {i: Named(i, name) for name in WAREHOUSES for i in [next(warehouse_ids)]}
    level_ids = block()
    pricing_levels = {i: Named(i, name) for name in PRICING_LEVELS for i in [next(level_ids)]}
    suppliers = {i: Named(i, name) for name in SUPPLIERS for i in [ids.next("supplier")]}
    lookups = {}
    for table, names in LOOKUP_TABLES.items():
        row_ids = block()
        lookups[table.lower()] = LookupTable(table, [LookupRow(next(row_ids), name, is_default=i == 0)
                                                     for i, name in enumerate(names)])
    return Tenant(
        seed=world.seed, scale=world.scale.name, tenant_id=4_000 + world.seed, api_user_id=api_user_id, ids=ids,
        employees=employees, account_types=account_types, statuses=statuses, warehouses=warehouses,
        pricing_levels=pricing_levels, suppliers=suppliers, lookups=lookups, name=login.tenant,
    )


def _account_code(company: Company) -> str:
    letters = "".join(ch for ch in company.name if ch.isascii() and ch.isalpha()).upper()[:6] or "ACCT"
    return f"{letters}{company.index + 1:05d}"


def _address(tenant: Tenant, source: WorldAddress, type_id: int, is_main: bool, is_billing: bool,
             stamps: Stamps) -> Address:
    return Address(
        id=tenant.ids.next("address"), address_type_id=type_id,
        is_main=is_main, is_billing=is_billing, address1=source.address1, address2=source.address2,
        city=source.city, state=source.state, zip_code=source.zip_code, country_code=source.country,
        phone=source.phone, stamps=stamps,
    )


def _phone_number(rng: random.Random) -> str:
    return f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"


def _seed_accounts(tenant: Tenant, world: World, rng: random.Random, employee_ids: list[int]) -> dict[int, int]:
    """Accounts and their contacts; returns world company index -> account id."""
    account_ids = {}
    type_by_name = {t.name: t.id for t in tenant.account_types.values()}
    business_types = tenant.lookup("BusinessType").rows
    address_type = {row.name: row.id for row in tenant.lookup("AddressType").rows}
    email_type = {row.name: row.id for row in tenant.lookup("EmailType").rows}
    phone_type = {row.name: row.id for row in tenant.lookup("PhoneType").rows}
    for company in world.companies:
        manager = employee_ids[company.account_manager]
        stamps = _stamps(company.created_on, company.modified_on, manager)
        account_id = tenant.ids.next("account")
        locations = []
        for world_location in company.locations:
            loc_stamps = _stamps(company.created_on, _between(rng, company.created_on, company.modified_on), manager)
            place = world_location
            same_billing = place.billing_address is place.main_address
            addresses = [_address(tenant, place.main_address, address_type["Main"], True, same_billing, loc_stamps)]
            if not same_billing:
                addresses.append(_address(tenant, place.billing_address, address_type["Billing"], False, True,
                                          loc_stamps))
            addresses.append(_address(tenant, place.shipping_address, address_type["Shipping"], False, False,
                                      loc_stamps))
            location = Location(tenant.ids.next("location"), world_location.name, world_location.is_main, True,
                                addresses, loc_stamps)
            locations.append(location)
            tenant.location_owner[location.id] = account_id
        account_type = rng.choices(ACCOUNT_TYPES, weights=[70, 20, 5, 5])[0]
        tenant.accounts[account_id] = Account(
            id=account_id, account_code=_account_code(company), account_name=company.name,
            account_type_id=type_by_name[account_type], business_type_id=rng.choice(business_types).id,
            account_manager_id=manager, locations=locations, stamps=stamps, website=company.website,
            description=rng.choice([None, None, "Managed services customer", "Break-fix, moving to managed"]),
            credit_limit=rng.choice([None, 5000.0, 10000.0, 25000.0]), net_days=rng.choice([15.0, 30.0, 45.0]),
            is_active=rng.random() >= 0.05 or account_type == "Customer",
            acquired_date=company.created_on.replace(hour=0, minute=0, second=0),
        )
        account_ids[company.index] = account_id

        for k, person in enumerate(company.contacts):
            created = _between(rng, company.created_on, world.now - timedelta(minutes=10))
            modified = _between(rng, created, world.now - timedelta(minutes=5))
            contact_stamps = _stamps(created, modified, manager)
            contact_id = tenant.ids.next("contact")
            emails = [ContactEmail(tenant.ids.next("email"), person.email, email_type["Work"], True,
                                   contact_stamps)]
            if rng.random() < 0.3:
                personal = f"{person.email.split('@')[0]}@mail.example"
                emails.append(ContactEmail(tenant.ids.next("email"), personal, email_type["Personal"],
                                           False, contact_stamps))
            phones = [ContactPhone(tenant.ids.next("phone"), _phone_number(rng), phone_type["Work"], True,
                                   contact_stamps)]
            if rng.random() < 0.4:
                phones.append(ContactPhone(tenant.ids.next("phone"), _phone_number(rng), phone_type["Mobile"], False,
                                           contact_stamps))
            is_poc = k == company.poc
            location = locations[0] if is_poc or rng.random() < 0.7 else rng.choice(locations)
            tenant.contacts[contact_id] = Contact(
                id=contact_id, account_id=account_id, location_id=location.id, first_name=person.first_name,
                last_name=person.last_name, emails=emails, phones=phones, stamps=contact_stamps,
                job_title=company.job_titles[k], is_poc=is_poc, is_active=is_poc or rng.random() >= 0.03,
                is_billable=rng.random() < 0.2, receive_invoices=is_poc,
            )
    return account_ids


def _close_date(deal: Deal, world: World) -> datetime:
    if deal.status_kind == "open":
        moment = world.now + timedelta(days=deal.close_in_days)
    else:
        moment = deal.modified_on
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _seed_opportunities(tenant: Tenant, world: World, rng: random.Random, account_ids: dict[int, int],
                        employee_ids: list[int]) -> None:
    open_statuses = [tenant.status_named(name) for name in OPEN_STATUSES]
    types = tenant.lookup("OpportunityType").rows
    ratings = tenant.lookup("OpportunityRating").rows
    lead_sources = tenant.lookup("LeadSource").rows
    contacts_by_account: dict[int, list[int]] = {}
    for contact in tenant.contacts.values():
        contacts_by_account.setdefault(contact.account_id, []).append(contact.id)
    for deal in world.deals:
        account = tenant.accounts[account_ids[deal.company]]
        if deal.status_kind == "won":
            status, probability = tenant.status_named(WON_STATUS), 100.0
        elif deal.status_kind == "lost":
            status, probability = tenant.status_named(LOST_STATUS), 0.0
        else:
            status, probability = rng.choice(open_statuses), float(deal.probability)
        rep = employee_ids[deal.sales_rep]
        opportunity_id = tenant.ids.next("opportunity")
        tenant.opportunities[opportunity_id] = Opportunity(
            id=opportunity_id, subject=deal.subject, status_id=status.id, account_id=account.id,
            account_location_id=account.main_location.id, type_id=rng.choice(types).id, probability=probability,
            rating_id=rng.choice(ratings).id, sales_representative_user_id=rep, amount=deal.amount,
            close_date=_close_date(deal, world), stamps=_stamps(deal.created_on, deal.modified_on, rep),
            contact_id=contacts_by_account[account.id][deal.contact],
            lead_source_id=rng.choice([None, *[row.id for row in lead_sources]]),
            description=rng.choice([None, "Found during the quarterly business review", "Inbound request"]),
            customer_po=f"PO-{rng.randint(10000, 99999)}" if deal.status_kind == "won" and rng.random() < 0.6 else None,
        )


def _seed_products(tenant: Tenant, world: World, rng: random.Random) -> None:
    categories = {c.name: c.id for c in tenant.categories.values()}
    product_types = tenant.lookup("ProductType")
    hourly = tenant.lookup("LabourPeriod").by_name("Hourly").id
    warehouse_ids = list(tenant.warehouses)
    levels = [tenant.pricing_level_named(name).id for name in ("Retail", "Partner", "Government")]
    supplier_ids = list(tenant.suppliers)
    for item in world.products:
        category = _PRODUCT_CATEGORY[item.type]
        if item.type == "hardware" and rng.random() < 0.1:
            category = "Bundles"
        stocked = item.type == "hardware"
        count = rng.choice([1, 2, 2, 3]) if stocked else rng.choice([1, 1, 2])
        stocks = []
        for warehouse_id in sorted(rng.sample(warehouse_ids, count)):
            in_stock = float(rng.randint(0, 40)) if stocked else 0.0
            stocks.append(Stock(tenant.ids.next("stock"), warehouse_id, qty_in_stock=in_stock,
                                qty_committed=min(in_stock, float(rng.randint(0, 3))) if stocked else 0.0,
                                qty_on_order=float(rng.choice([0, 0, 5, 10])) if stocked else 0.0))
        prices = [ProductPrice(levels[0], item.sell_price, is_default=True),
                  ProductPrice(levels[1], round(item.sell_price * 0.92, 2))]
        if rng.random() < 0.5:
            prices.append(ProductPrice(levels[2], round(item.sell_price * 0.95, 2)))
        chosen = rng.sample(supplier_ids, rng.choice([1, 2]))
        suppliers = [ProductSupplier(chosen[0], f"{item.manufacturer[:3].upper()}-{item.part_number}", item.cost)]
        if len(chosen) > 1:
            suppliers.append(ProductSupplier(chosen[1], f"ALT-{item.part_number}",
                                             round(item.cost * rng.uniform(1.0, 1.08), 2)))
        product_id = tenant.ids.next("product")
        tenant.products[product_id] = Product(
            id=product_id, product_number=item.part_number, product_name=item.name,
            product_description=item.description, category_id=categories[category],
            product_type_id=product_types.by_name(_PRODUCT_TYPE[item.type]).id, stocks=stocks, prices=prices,
            suppliers=suppliers, default_cost=item.cost,
            stamps=_stamps(item.created_on, item.created_on, None),
            manufacturer=item.manufacturer,
            upc=f"{rng.randint(10**11, 10**12 - 1)}" if stocked else None,
            color=rng.choice([None, None, "Black", "Silver"]) if stocked else None,
            is_serialized=stocked and rng.random() < 0.5,
            labour_period_id=hourly if item.type == "labor" else None,
        )


def _seed_quotes(tenant: Tenant, world: World, rng: random.Random) -> None:
    statuses = tenant.lookup("QuoteStatus")
    by_kind = {"won": ["Accepted"], "lost": ["Declined", "Expired"], "open": ["Draft", "Pending Approval", "Sent"]}
    products = list(tenant.products.values())
    opportunities = list(tenant.opportunities.values())
    for deal, opportunity in zip(world.deals, opportunities, strict=True):
        if deal.index % 10 != 3 or not products:
            continue
        created = _between(rng, opportunity.stamps.created_on, world.now - timedelta(minutes=1))
        quote_id = tenant.ids.next("quote")
        stamps = _stamps(created, created, opportunity.sales_representative_user_id)
        quote = Quote(
            id=quote_id, quotation_number=f"Q-{quote_id}", name=f"Quote for {opportunity.subject}",
            status_id=statuses.by_name(rng.choice(by_kind[deal.status_kind])).id,
            expiry_date=(created + timedelta(days=30)).replace(hour=0, minute=0, second=0),
            account_id=opportunity.account_id, location_id=opportunity.account_location_id,
            sales_representative_user_id=opportunity.sales_representative_user_id, stamps=stamps,
            opportunity_id=opportunity.id,
        )
        for product in rng.sample(products, min(len(products), rng.randint(1, 4))):
            price = next(p.price for p in product.prices if p.is_default)
            quote.line_items.append(QuoteLineItem(
                id=tenant.ids.next("line_item"), quotation_id=quote_id, item_type_id=1, item_id=product.id,
                name=product.product_name, description=product.product_description, original_unit_price=price,
                unit_price=price, unit_cost=product.default_cost, quantity=float(rng.randint(1, 10)),
                discount=0.0, taxable=True, margin=round((price - product.default_cost) / price * 100, 2),
                margin_type=1, stamps=stamps,
            ))
        tenant.quotes[quote_id] = quote


_CONTRACT_TYPES = (("Managed Services", "Monthly", 1500.0), ("Block Hours", "Quarterly", 3000.0),
                   ("Backup as a Service", "Monthly", 250.0), ("Support Agreement", "Annually", 9000.0))


def _seed_contracts(tenant: Tenant, world: World) -> None:
    """One or two contracts per active customer; their own random stream, so the records seeded before them
    are those of a tenant without contracts."""
    rng = random.Random(f"kaseya-sandbox:{world.seed}:{world.scale.name}:contracts")
    customer = tenant.account_type_named("Customer").id
    for account in tenant.accounts.values():
        if account.account_type_id != customer or not account.is_active:
            continue
        for kind, cycle, price in rng.sample(_CONTRACT_TYPES, rng.choice([1, 1, 2])):
            contract_id = tenant.ids.next("contract")
            start = account.stamps.created_on.replace(hour=0, minute=0, second=0, microsecond=0)
            tenant.contracts[contract_id] = Contract(
                id=contract_id, account_id=account.id, contract_number=f"C-{contract_id}",
                contract_name=f"{kind} - {account.account_name}", contract_type=kind, billing_cycle=cycle,
                billing_price=round(price * rng.uniform(0.8, 1.5), 2),
                status="Active" if start + timedelta(days=365) > world.now else rng.choice(["Active", "Expired"]),
                start_date=start, end_date=start + timedelta(days=365 * rng.choice([1, 2, 3])))


_WORK = (("Technician", "Remote Support"), ("Technician", "Onsite Support"), ("Engineer", "Project Work"),
         ("Account Manager", "Quarterly Review"))


def _seed_time_logs(tenant: Tenant, world: World, employee_ids: list[int]) -> None:
    """Up to three time logs per active customer, logged since the account was created; their own random
    stream, as contracts have."""
    rng = random.Random(f"kaseya-sandbox:{world.seed}:{world.scale.name}:timelogs")
    customer = tenant.account_type_named("Customer").id
    sheets: dict[tuple[int, datetime], int] = {}  # one time sheet per employee and week
    for account in tenant.accounts.values():
        if account.account_type_id != customer or not account.is_active:
            continue
        for _ in range(rng.randint(0, 3)):
            user = rng.choice(employee_ids)
            logged = _between(rng, account.stamps.created_on, world.now - timedelta(minutes=5))
            start = logged.replace(minute=0, second=0, microsecond=0) - timedelta(hours=rng.randint(1, 6))
            role, work_type = rng.choice(_WORK)
            log_id = tenant.ids.next("timelog")
            if (user, week_start(start)) not in sheets:
                sheets[user, week_start(start)] = tenant.ids.next("timesheet")
            sheet = sheets[user, week_start(start)]
            tenant.timelogs[log_id] = TimeLog(
                id=log_id, account_id=account.id, user_id=user, role=role, work_type=work_type, start=start,
                timespent=rng.choice([0.25, 0.5, 1.0, 1.5, 2.0, 4.0]), stamps=_stamps(logged, logged, user),
                timesheet_id=sheet,
                notes=rng.choice([None, f"{work_type} for {account.account_name}"]),
                is_billable=rng.random() < 0.8, is_approved=rng.random() < 0.5)


def seed_tenant(seed: int, scale: str, now: datetime, number: int = 1) -> Tenant:
    """`number`: the tenant's number in its sandbox (1 for a sandbox serving one)."""
    world = build_world(seed, scale, now=now, msp=number)
    rng = random.Random(f"kaseya-sandbox:{seed}:{scale}")
    tenant = _empty_tenant(world)
    employee_ids = [e.id for e in tenant.employees.values() if e.id != tenant.api_user_id]
    start = world.now - timedelta(days=90)
    for name in PRODUCT_CATEGORIES:
        category_id = tenant.ids.next("category")
        tenant.categories[category_id] = Category(category_id, name, _CATEGORY_DESCRIPTIONS[name], True,
                                                  _stamps(start, start, employee_ids[0]))
    for name, description, cost, price in _SEEDED_SERVICES:
        service_id = tenant.ids.next("service")
        tenant.services[service_id] = Service(
            service_id, name, description, cost, price, True, True, _stamps(start, start, employee_ids[0]),
            category_id=tenant.category_named("Professional Services").id,
            margin=round((price - cost) / price * 100, 2), margin_type=1,
        )
    account_ids = _seed_accounts(tenant, world, rng, employee_ids)
    _seed_opportunities(tenant, world, rng, account_ids, employee_ids)
    _seed_products(tenant, world, rng)
    _seed_quotes(tenant, world, rng)
    _seed_contracts(tenant, world)
    _seed_time_logs(tenant, world, employee_ids)
    return tenant
