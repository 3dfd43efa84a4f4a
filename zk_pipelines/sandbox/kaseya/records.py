"""The Kaseya tenant as the sandbox holds it: one mutable record per entity, kept in dicts keyed by id.

Records store ids, never denormalised names: names (account type, status, sales rep, ...) are looked up when
a response is rendered, so an edit of a lookup or an account shows everywhere at once, as in Kaseya.
Every timestamp is an aware UTC datetime with millisecond precision (the sandbox clock's).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# The tenant's API user (an "API Employee" whose role has "Has API Access") and company name: tenant 1's,
# and the single tenant's of a sandbox that serves one.
USERNAME = "api.employee@msp.example"
PASSWORD = "kaseya-sandbox-pass-7Q!"
TENANT = "Sandbox MSP Ltd"

# Fixed names shared by both sandboxes and the settings example (see the project's common ground).
OPEN_STATUSES = ("Prospecting", "Qualification", "Proposal", "Negotiation", "On Hold")
WON_STATUS = "Closed Won"
LOST_STATUS = "Closed Lost"
ACCOUNT_TYPES = ("Customer", "Prospect", "Vendor", "Partner")
WAREHOUSES = ("Main Warehouse", "West Warehouse", "Drop Ship")
PRODUCT_CATEGORIES = ("Hardware", "Software", "Managed Services", "Professional Services", "Bundles")
PRICING_LEVELS = ("Retail", "Partner", "Government")
SUPPLIERS = ("Ingram Micro", "TD SYNNEX", "D&H Distributing", "Pax8", "Amazon Business")

# ASSUMED: `GET /v2/system/lookup/{tableName}` table names are unpublished. The first seven are the
# project's; BusinessType (required by AccountPostInputDto), AddressType and ProductType are the sandbox's.
LOOKUP_TABLES: dict[str, tuple[str, ...]] = {
    "OpportunityType": ("New Business", "Existing Business", "Renewal"),
    "OpportunityRating": ("Hot", "Warm", "Cold"),
    "LeadSource": ("Referral", "Website", "Trade Show", "Cold Call"),
    "EmailType": ("Work", "Personal"),
    "PhoneType": ("Work", "Mobile", "Fax"),
    "QuoteStatus": ("Draft", "Pending Approval", "Sent", "Accepted", "Declined", "Expired"),
    "LabourPeriod": ("Hourly", "Daily", "Weekly", "Monthly"),
    "BusinessType": ("Small Business", "Mid-Market", "Enterprise", "Non-Profit"),
    "AddressType": ("Main", "Billing", "Shipping"),
    "ProductType": ("Hardware", "Software", "Service", "Labour"),
}

# ASSUMED: `itemTypeId` of `POST /v2/crm/quotes/{quotationId}/lineItems/{itemTypeId}/{distributerTypeId}` is a
# small fixed enum (the body's `Id` is then the catalogue item: a ProductIndexId or a service id), and
# `distributerTypeId` 0 means "our own catalogue, no distributor".
QUOTE_ITEM_TYPES = {1: "Product", 2: "Service", 3: "Labour", 4: "Expense"}
NO_DISTRIBUTOR = 0

STATUS_ACTIONS = {"Open": 1, "Won": 2, "Lost": 3}

# ISO 3166 numeric codes as Kaseya-style CountryIds for the countries the world uses.
COUNTRIES = {
    "US": (840, "United States"), "DE": (276, "Germany"), "FR": (250, "France"), "JP": (392, "Japan"),
    "CA": (124, "Canada"), "AU": (36, "Australia"), "GB": (826, "United Kingdom"), "IL": (376, "Israel"),
    "BR": (76, "Brazil"),
}
CURRENCY = (1, "USD")
TAX_RATE_PERCENT = 8.0  # applied to taxable quote lines


@dataclass(frozen=True)
class Login:
    """What a Kaseya login form names for one tenant: the company (`Tenant`), the API user, its password."""

    tenant: str
    username: str
    password: str = field(repr=False)


def login_of(number: int) -> Login:
    """Tenant `number`'s login: tenant 1 keeps the project's fixed one; the others' are derived from the
    number alone, so a sandbox restarted with another seed keeps its tenants' credentials."""
    if number == 1:
        return Login(TENANT, USERNAME, PASSWORD)
    digest = hashlib.sha256(f"kaseya-sandbox:{number}".encode()).hexdigest()[:8]
    return Login(f"Sandbox MSP {number:02d}", f"api.employee{number:02d}@msp.example",
                 f"kaseya-sandbox-pass-{number:02d}-{digest}")


def to_millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass
class Stamps:
    """CreatedOn/ModifiedOn (+ by whom) of a record."""

    created_on: datetime
    modified_on: datetime
    created_by: int | None
    modified_by: int | None


@dataclass
class Employee:
    id: int
    first_name: str
    last_name: str
    email_address: str
    job_title: str | None
    is_active: bool = True

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass
class LookupRow:
    id: int
    name: str
    is_default: bool = False
    is_active: bool = True


@dataclass
class OpportunityStatus:
    id: int
    name: str
    probability: float
    action: str  # Open | Won | Lost
    is_active: bool = True

    @property
    def is_pipeline(self) -> bool:
        return self.action == "Open"


@dataclass
class AccountType:
    id: int
    name: str
    is_active: bool = True

    @property
    def is_client(self) -> bool:
        return self.name in ("Customer", "Prospect")

    @property
    def is_vendor(self) -> bool:
        return self.name == "Vendor"


@dataclass
class Named:
    """Warehouses, pricing levels and suppliers: an id and a name."""

    id: int
    name: str


@dataclass
class Category:
    id: int
    name: str
    description: str | None
    is_active: bool
    stamps: Stamps


@dataclass
class Address:
    id: int
    address_type_id: int | None
    is_main: bool
    is_billing: bool
    address1: str | None
    address2: str | None
    city: str | None
    state: str | None
    zip_code: str | None
    country_code: str | None
    phone: str | None
    stamps: Stamps
    fax: str | None = None
    email_address: str | None = None
    latitude: float | None = None
    longitude: float | None = None


@dataclass
class Location:
    id: int
    location_name: str
    is_main: bool
    is_active: bool
    addresses: list[Address]
    stamps: Stamps


@dataclass
class Account:
    id: int
    account_code: str
    account_name: str
    account_type_id: int
    business_type_id: int
    account_manager_id: int
    locations: list[Location]
    stamps: Stamps
    parent_id: int | None = None
    website: str | None = None
    description: str | None = None
    credit_limit: float | None = None
    net_days: float | None = 30.0
    is_active: bool = True
    acquired_date: datetime | None = None
    route_invoice_to_parent: bool = False

    def location(self, location_id: int) -> Location | None:
        return next((loc for loc in self.locations if loc.id == location_id), None)

    @property
    def main_location(self) -> Location:
        return next((loc for loc in self.locations if loc.is_main), self.locations[0])


@dataclass
class ContactEmail:
    id: int
    email_address: str
    email_type_id: int
    is_default: bool
    stamps: Stamps


@dataclass
class ContactPhone:
    id: int
    phone: str
    phone_type_id: int
    is_default: bool
    stamps: Stamps


@dataclass
class Contact:
    id: int
    account_id: int
    location_id: int
    first_name: str | None
    last_name: str | None
    emails: list[ContactEmail]
    phones: list[ContactPhone]
    stamps: Stamps
    middle_name: str | None = None
    job_title: str | None = None
    is_poc: bool = False
    is_active: bool = True
    effective_date: datetime | None = None
    is_billable: bool = False
    receive_invoices: bool = False
    bill_by_contact: bool = False

    @property
    def default_email(self) -> str | None:
        chosen = next((e for e in self.emails if e.is_default), self.emails[0] if self.emails else None)
        return chosen.email_address if chosen else None

    @property
    def default_phone(self) -> str | None:
        chosen = next((p for p in self.phones if p.is_default), self.phones[0] if self.phones else None)
        return chosen.phone if chosen else None


@dataclass
class Opportunity:
    id: int
    subject: str
    status_id: int
    account_id: int
    account_location_id: int
    type_id: int
    probability: float
    rating_id: int | None
    sales_representative_user_id: int
    amount: float
    close_date: datetime
    stamps: Stamps
    contact_id: int | None = None
    lead_source_id: int | None = None
    description: str | None = None
    customer_po: str | None = None


@dataclass
class OpportunityNote:
    id: int
    opportunity_id: int
    note: str
    stamps: Stamps


@dataclass
class Stock:
    """A product's presence in one warehouse: one `products/searchselect` row."""

    id: int  # StockByLocationId
    warehouse_id: int
    qty_in_stock: float = 0.0
    qty_committed: float = 0.0
    qty_on_order: float = 0.0


@dataclass
class ProductPrice:
    pricing_level_id: int
    price: float
    is_default: bool = False
    is_active: bool = True


@dataclass
class ProductSupplier:
    supplier_id: int
    part_number: str | None
    unit_cost: float | None


@dataclass
class Product:
    id: int  # ProductIndexId
    product_number: str
    product_name: str
    product_description: str | None
    category_id: int
    product_type_id: int
    stocks: list[Stock]
    prices: list[ProductPrice]
    suppliers: list[ProductSupplier]
    default_cost: float
    stamps: Stamps
    manufacturer: str | None = None
    upc: str | None = None
    color: str | None = None
    is_serialized: bool = False
    labour_period_id: int | None = None


@dataclass
class QuoteLineItem:
    id: int
    quotation_id: int
    item_type_id: int
    item_id: int  # the catalogue item: ProductIndexId or service id (0 for an expense)
    name: str | None
    description: str | None
    original_unit_price: float | None
    unit_price: float
    unit_cost: float
    quantity: float | None
    discount: float
    taxable: bool
    margin: float
    margin_type: int
    stamps: Stamps
    distributor_type_id: int | None = None
    ext_dist_reference: str | None = None
    image: str | None = None

    @property
    def total(self) -> float:
        return round(self.unit_price * (self.quantity or 0.0) - self.discount, 2)

    @property
    def tax_rate(self) -> float:
        return TAX_RATE_PERCENT if self.taxable else 0.0

    @property
    def total_with_tax(self) -> float:
        return round(self.total * (1 + self.tax_rate / 100), 2)


@dataclass
class Quote:
    id: int
    quotation_number: str
    name: str
    status_id: int
    expiry_date: datetime
    account_id: int
    location_id: int | None
    sales_representative_user_id: int
    stamps: Stamps
    opportunity_id: int | None = None
    line_items: list[QuoteLineItem] = field(default_factory=list)

    def line_item(self, line_item_id: int) -> QuoteLineItem | None:
        return next((item for item in self.line_items if item.id == line_item_id), None)


@dataclass
class Service:
    id: int
    name: str
    description: str | None
    unit_cost: float
    unit_price: float
    is_active: bool
    is_taxable: bool
    stamps: Stamps
    category_id: int | None = None
    sub_category_id: int | None = None
    unit_of_measure_id: int | None = None
    income_account_id: int | None = None
    expense_account_id: int | None = None
    margin: float | None = None
    margin_type: int | None = None


@dataclass
class Contract:
    """A client contract (recurring services, a support block): one `finance/contracts/summary` row."""

    id: int
    account_id: int
    contract_number: str
    contract_name: str
    contract_type: str
    billing_cycle: str
    billing_price: float
    status: str
    start_date: datetime
    end_date: datetime


def week_start(moment: datetime) -> datetime:
    """Monday 00:00 of the moment's week: a time sheet's first day."""
    return (moment - timedelta(days=moment.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class TimeLog:
    """Time an employee logged against an account (a ticket's, a project's, or the account's own work): one
    `GET /v2/timelogs` row."""

    id: int
    account_id: int
    user_id: int
    role: str
    work_type: str
    start: datetime  # when the work started; `Timespent` hours from there
    timespent: float
    stamps: Stamps
    timesheet_id: int  # the employee's time sheet of the week
    overtime_spent: float = 0.0
    notes: str | None = None
    is_billable: bool = True
    is_billed: bool = False
    is_approved: bool = False
    is_posted: bool = False


# Where each kind of id starts: large, tenant-looking integers, one range per kind.
ID_STARTS = {
    "account": 100_001, "location": 200_001, "contact": 300_001, "opportunity": 400_001,
    "product": 500_001, "quote": 600_001, "line_item": 650_001, "note": 700_001, "service": 800_001,
    "supplier": 850_001, "employee": 900_001, "category": 60_001, "address": 1_000_001,
    "email": 2_000_001, "phone": 3_000_001, "stock": 4_000_001, "contract": 5_000_001,
    "timelog": 6_000_001, "timesheet": 7_000_001,
}


# Tenant n's record ids start n-1 of these above ID_STARTS, so no two tenants of a sandbox share an id (a
# record that reached the wrong tenant shows) and tenant 200's largest id still fits Kaseya's int32 ids.
TENANT_ID_STRIDE = 10_000_000


class IdSequences:
    def __init__(self, tenant_number: int = 1) -> None:
        offset = (tenant_number - 1) * TENANT_ID_STRIDE
        self._next = {kind: start + offset for kind, start in ID_STARTS.items()}

    def next(self, kind: str) -> int:
        value = self._next[kind]
        self._next[kind] = value + 1
        return value


@dataclass
class LookupTable:
    name: str
    rows: list[LookupRow]

    def by_name(self, name: str) -> LookupRow:
        return next(row for row in self.rows if row.name == name)

    def get(self, row_id: int | None) -> LookupRow | None:
        return next((row for row in self.rows if row.id == row_id), None)


@dataclass
class Tenant:
    """Everything one Kaseya tenant holds, as of the sandbox's clock."""

    seed: int
    scale: str
    tenant_id: int
    api_user_id: int
    ids: IdSequences
    employees: dict[int, Employee]
    account_types: dict[int, AccountType]
    statuses: dict[int, OpportunityStatus]
    warehouses: dict[int, Named]
    pricing_levels: dict[int, Named]
    suppliers: dict[int, Named]
    lookups: dict[str, LookupTable]  # keyed by lower-cased table name
    categories: dict[int, Category] = field(default_factory=dict)
    accounts: dict[int, Account] = field(default_factory=dict)
    contacts: dict[int, Contact] = field(default_factory=dict)
    opportunities: dict[int, Opportunity] = field(default_factory=dict)
    notes: dict[int, OpportunityNote] = field(default_factory=dict)
    products: dict[int, Product] = field(default_factory=dict)
    quotes: dict[int, Quote] = field(default_factory=dict)
    services: dict[int, Service] = field(default_factory=dict)
    contracts: dict[int, Contract] = field(default_factory=dict)
    timelogs: dict[int, TimeLog] = field(default_factory=dict)
    # location id -> account id, so a location is found without scanning every account
    location_owner: dict[int, int] = field(default_factory=dict)
    name: str = TENANT  # the company name, the login's `Tenant`

    def lookup(self, table: str) -> LookupTable:
        return self.lookups[table.lower()]

    def lookup_name(self, table: str, row_id: int | None) -> str | None:
        row = self.lookup(table).get(row_id)
        return row.name if row else None

    def employee_name(self, employee_id: int | None) -> str | None:
        employee = self.employees.get(employee_id) if employee_id is not None else None
        return employee.full_name if employee else None

    def find_location(self, location_id: int | None) -> tuple[Account, Location] | None:
        account = self.accounts.get(self.location_owner.get(location_id, -1))
        location = account.location(location_id) if account and location_id is not None else None
        return (account, location) if account and location else None

    def status_named(self, name: str) -> OpportunityStatus:
        return next(s for s in self.statuses.values() if s.name == name)

    def account_type_named(self, name: str) -> AccountType:
        return next(t for t in self.account_types.values() if t.name == name)

    def category_named(self, name: str) -> Category | None:
        return next((c for c in self.categories.values() if c.name.lower() == name.lower()), None)

    def warehouse_named(self, name: str) -> Named:
        return next(w for w in self.warehouses.values() if w.name == name)

    def pricing_level_named(self, name: str) -> Named:
        return next(p for p in self.pricing_levels.values() if p.name == name)

    def contacts_of(self, account_id: int) -> Iterator[Contact]:
        return (c for c in self.contacts.values() if c.account_id == account_id)


def later_than(previous: datetime, now: datetime) -> datetime:
    """A new ModifiedOn: the clock's time, but always after the previous one, so every write moves it."""
    now = to_millis(now)
    return now if now > previous else previous + timedelta(milliseconds=1)
