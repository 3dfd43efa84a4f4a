"""The one fictional MSP tenant both sandboxes are seeded from, so that their data overlaps the way a
real tenant's does: Zomentum users who are Kaseya employees (same e-mail), Zomentum clients, contacts and
items that already exist in Kaseya (same name, e-mail or part number).

Deterministic: the same (seed, scale) gives the same world. Names include accents, CJK and RTL text.

A sandbox serving several MSPs builds one world per tenant (`tenancy.py`): tenant n > 1 has its own seed, and
its customers' names carry its number, so two tenants' records differ at a glance. Its employees keep the
first tenant's names and e-mails: the shared settings example names one of them (`fallbacks`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Scale:
    name: str
    accounts: int
    contacts_per_account: int
    opportunities: int
    products: int
    employees: int
    history_days: int = 90  # CreatedOn/ModifiedOn are spread over this many days before "now", for backfills


SCALES: dict[str, Scale] = {
    "small": Scale("small", accounts=40, contacts_per_account=3, opportunities=50, products=30, employees=8),
    # small, with its history in the last 2 days: pipeline tests backfill 48 hourly partitions, not 2,160.
    "small_recent": Scale("small_recent", accounts=40, contacts_per_account=3, opportunities=50, products=30,
                          employees=8, history_days=2),
    "medium": Scale("medium", accounts=2000, contacts_per_account=3, opportunities=2000, products=1000, employees=25),
    # medium, with its history in the last 7 days.
    "medium_recent": Scale("medium_recent", accounts=2000, contacts_per_account=3, opportunities=2000,
                           products=1000, employees=25, history_days=7),
    "large": Scale("large", accounts=20000, contacts_per_account=3, opportunities=20000, products=10000, employees=60),
    # A realistic MSP's history: five years of records (the demo's default; the benchmarks compare it with 90
    # days, since a tenant's initial sync must cost the same whatever the length of its history).
    "small_5y": Scale("small_5y", accounts=40, contacts_per_account=3, opportunities=50, products=30, employees=8,
                      history_days=5 * 365),
    "medium_5y": Scale("medium_5y", accounts=2000, contacts_per_account=3, opportunities=2000, products=1000,
                       employees=25, history_days=5 * 365),
}


_FIRST = ["Anna", "Ben", "Chloé", "Dmitri", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kavya", "Liam",
          "María", "Noah", "Olga", "Pedro", "Quinn", "Rania", "Søren", "Tomás", "Uma", "Viktor", "Wen", "Yusuf",
          "Zoë", "Łukasz", "Ngozi", "Aiko", "Bartholomew", "Siobhán"]
_LAST = ["Adams", "Becker", "Çelik", "Dubois", "Evans", "Fischer", "García", "Haddad", "Ivanova", "Jensen",
         "Kowalski", "López", "Müller", "Nakamura", "O'Brien", "Patel", "Quiroga", "Rossi", "Schmidt", "Tanaka",
         "Underwood", "Virtanen", "Wójcik", "Xu", "Yamada", "Zimmermann", "Åberg", "Nguyễn", "Okafor", "Smith"]
_COMPANY_A = ["Acme", "Bluefin", "Cedar", "Delta", "Evergreen", "Falcon", "Granite", "Harbor", "Iris", "Juniper",
              "Keystone", "Lighthouse", "Maple", "Northwind", "Orion", "Pioneer", "Quantum", "Redwood", "Summit",
              "Tidewater", "Umbra", "Vertex", "Willow", "Zenith", "Müller & Söhne", "Société Lumière", "東京テック",
              "Øresund", "שחר", "Ñandú"]
_COMPANY_B = ["Dental", "Logistics", "Law Group", "Architects", "Bakery", "Clinic", "Consulting", "Engineering",
              "Foods", "Holdings", "Insurance", "Manufacturing", "Partners", "Realty", "Systems", "Veterinary"]
_COMPANY_SUFFIX = ["LLC", "Inc.", "Ltd", "GmbH", "S.A.", "Pty Ltd", "Co.", "KK"]
_CITIES = [("Austin", "TX", "US", "787"), ("Denver", "CO", "US", "802"), ("Berlin", "BE", "DE", "101"),
           ("Lyon", "ARA", "FR", "690"), ("Tokyo", "13", "JP", "100"), ("Toronto", "ON", "CA", "M5V"),
           ("Sydney", "NSW", "AU", "200"), ("Leeds", "ENG", "GB", "LS1"), ("Tel Aviv", "TA", "IL", "611"),
           ("São Paulo", "SP", "BR", "010")]
_STREETS = ["Main St", "Oak Avenue", "Hauptstraße", "Rue de la Paix", "Market Street", "King St W", "Elm Road"]
PRODUCT_TYPES = ["hardware", "software", "service", "labor"]
_PRODUCT_NOUNS = {
    "hardware": ["Laptop", "Firewall", "Switch 24p", "Access Point", "Monitor 27\"", "NAS 4-bay", "UPS 1500VA"],
    "software": ["Office Suite", "Endpoint AV", "Backup Agent", "PDF Editor", "Password Vault", "CAD Seat"],
    "service": ["Managed Desktop", "Managed Server", "Cloud Backup", "M365 Management", "SOC Monitoring"],
    "labor": ["Onsite Hour", "Remote Hour", "Project Engineering", "After-hours Call-out"],
}
MANUFACTURERS = ["Dell", "HP", "Lenovo", "Cisco", "Ubiquiti", "Fortinet", "Microsoft", "Sophos", "Synology", "APC"]


@dataclass(frozen=True)
class Person:
    first_name: str
    last_name: str
    email: str


@dataclass(frozen=True)
class Employee(Person):
    index: int


@dataclass(frozen=True)
class Address:
    address1: str
    address2: str | None
    city: str
    state: str
    zip_code: str
    country: str
    phone: str


@dataclass(frozen=True)
class Location:
    name: str
    is_main: bool
    main_address: Address
    billing_address: Address
    shipping_address: Address


@dataclass(frozen=True)
class Company:
    index: int
    name: str
    website: str | None
    account_manager: int  # employee index
    locations: tuple[Location, ...]
    contacts: tuple[Person, ...]
    job_titles: tuple[str | None, ...]
    poc: int  # index into contacts
    created_on: datetime
    modified_on: datetime


@dataclass(frozen=True)
class Product:
    index: int
    part_number: str
    name: str
    description: str
    type: str  # hardware | software | service | labor
    manufacturer: str
    sell_price: float
    cost: float
    created_on: datetime


@dataclass(frozen=True)
class Deal:
    index: int
    company: int
    contact: int  # index into the company's contacts
    sales_rep: int  # employee index
    subject: str
    amount: float
    probability: int
    status_kind: str  # open | won | lost
    close_in_days: int
    created_on: datetime
    modified_on: datetime


@dataclass(frozen=True)
class World:
    seed: int
    scale: Scale
    now: datetime
    employees: tuple[Employee, ...]
    companies: tuple[Company, ...]
    products: tuple[Product, ...]
    deals: tuple[Deal, ...]
    msp: int = 1  # the MSP's tenant number in its sandbox

    def customer_name(self, name: str) -> str:
        return customer_name(name, self.msp)


def customer_name(name: str, msp: int) -> str:
    """A customer's name as MSP `msp`'s: past tenant 1 it carries the tenant's number."""
    return name if msp == 1 else f"{name} ({msp:02d})"


def _slug(text: str) -> str:
    ascii_part = "".join(ch.lower() for ch in text if ch.isascii() and ch.isalnum())
    return ascii_part or "x"


def _address(rng: random.Random, label: str) -> Address:
    city, state, country, zip_prefix = rng.choice(_CITIES)
    return Address(
        address1=f"{rng.randint(1, 9999)} {rng.choice(_STREETS)}",
        address2=rng.choice([None, f"Suite {rng.randint(100, 999)}", f"{label} entrance"]),
        city=city,
        state=state,
        zip_code=f"{zip_prefix}{rng.randint(10, 99)}",
        country=country,
        phone=f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
    )


def _moment(rng: random.Random, now: datetime, history_days: int) -> tuple[datetime, datetime]:
    created = now - timedelta(seconds=rng.randint(3600, history_days * 86400))
    modified = created + timedelta(seconds=rng.randint(0, int((now - created).total_seconds()) - 60))
    return created.replace(microsecond=0), modified.replace(microsecond=0)


def build_world(seed: int, scale: str | Scale, now: datetime | None = None, msp: int = 1) -> World:
    """`msp`: the tenant number of the MSP this world is (1 for a single-tenant sandbox)."""
    scale = SCALES[scale] if isinstance(scale, str) else scale
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    rng = random.Random(seed)

    employees = tuple(
        Employee(first_name=(f := _FIRST[(i * 7) % len(_FIRST)]), last_name=(s := _LAST[(i * 11) % len(_LAST)]),
                 email=f"{_slug(f)}.{_slug(s)}{i}@msp.example", index=i)
        for i in range(scale.employees)
    )

    used_names: set[str] = set()
    companies = []
    for i in range(scale.accounts):
        while True:
            name = f"{rng.choice(_COMPANY_A)} {rng.choice(_COMPANY_B)} {rng.choice(_COMPANY_SUFFIX)}"
            if name in used_names:
                name = f"{name} {i}"
            if name not in used_names:
                used_names.add(name)
                break
        name = customer_name(name, msp)
        domain = f"{_slug(name)[:20]}{i}.example"
        locations = []
        for j in range(rng.randint(1, 3)):
            main = _address(rng, "main")
            locations.append(Location(
                name="Headquarters" if j == 0 else f"Branch {j}",
                is_main=j == 0,
                main_address=main,
                billing_address=_address(rng, "billing") if rng.random() < 0.5 else main,
                shipping_address=_address(rng, "shipping"),
            ))
        contacts = []
        titles = []
        for k in range(scale.contacts_per_account):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            contacts.append(Person(first, last, f"{_slug(first)}.{_slug(last)}.{k}@{domain}"))
            titles.append(rng.choice([None, "Office Manager", "CEO", "IT Lead", "Controller", "Owner"]))
        created, modified = _moment(rng, now, scale.history_days)
        companies.append(Company(
            index=i, name=name, website=rng.choice([None, f"https://www.{domain}"]),
            account_manager=rng.randrange(scale.employees), locations=tuple(locations),
            contacts=tuple(contacts), job_titles=tuple(titles), poc=rng.randrange(len(contacts)),
            created_on=created, modified_on=modified,
        ))

    products = []
    for i in range(scale.products):
        ptype = PRODUCT_TYPES[i % len(PRODUCT_TYPES)]
        noun = rng.choice(_PRODUCT_NOUNS[ptype])
        manufacturer = rng.choice(MANUFACTURERS)
        cost = round(rng.uniform(5, 1500), 2)
        created, _ = _moment(rng, now, scale.history_days)
        products.append(Product(
            index=i, part_number=f"{ptype[:2].upper()}-{seed % 100:02d}{i:05d}", name=f"{manufacturer} {noun} #{i}",
            description=f"{noun} by {manufacturer}", type=ptype, manufacturer=manufacturer,
            sell_price=round(cost * rng.uniform(1.1, 1.6), 2), cost=cost, created_on=created,
        ))

    deals = []
    for i in range(scale.opportunities):
        company = rng.randrange(scale.accounts)
        created, modified = _moment(rng, now, scale.history_days)
        deals.append(Deal(
            index=i, company=company, contact=rng.randrange(scale.contacts_per_account),
            sales_rep=rng.randrange(scale.employees),
            subject=f"{rng.choice(['Refresh', 'Renewal', 'New office', 'Security', 'Backup', 'Cloud move'])} "
                    f"#{i} for {companies[company].name}",
            amount=round(rng.uniform(500, 60000), 2), probability=rng.choice([10, 25, 50, 75, 90]),
            status_kind=rng.choices(["open", "won", "lost"], weights=[6, 2, 2])[0],
            close_in_days=rng.randint(-30, 120), created_on=created, modified_on=modified,
        ))

    return World(seed=seed, scale=scale, now=now, employees=employees, companies=tuple(companies),
                 products=tuple(products), deals=tuple(deals), msp=msp)
