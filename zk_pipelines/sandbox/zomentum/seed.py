"""The Zomentum account the sandbox starts with, derived from the shared world (`sandbox/world.py`).

It overlaps the Kaseya sandbox the way a real MSP's two systems do, so matching logic has real work:
- users: the first half of the world's employees (same e-mail as in Kaseya), two users who match no
  employee (one of them inactive), and the API user, the default owner of what the API creates;
- clients: every tenth world company under the exact same name, with some of its contacts under the same
  e-mail, plus Zomentum-only clients and contacts;
- items: every tenth world product under the same `manufacturer_part_number` (some under a different name),
  plus a Zomentum-only catalogue with one item per type, items without a part number, and two bundles:
  "New Hire Onboarding Bundle" (bundle-level, 100.00, three children) and "Secure Workstation Bundle"
  (individual-level);
- opportunities in both pipelines and every stage kind; documents in every status, on matched and
  Zomentum-only clients, some without an opportunity, some with two revisions, with lines of every type.

Deterministic for a (seed, scale): ids come from a seeded generator, times are relative to the clock.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from zk_pipelines.sandbox.world import Address, Company, World
from zk_pipelines.sandbox.zomentum.documents import Revision, build_lines, document_total
from zk_pipelines.sandbox.zomentum.schema import DOCUMENT_STATUSES, format_timestamp

API_USER_EMAIL = "api.user@msp.example"

# (name, is_default, stages as (name, kind, probability))
PIPELINES: tuple[tuple[str, bool, tuple[tuple[str, str, int], ...]], ...] = (
    ("Sales Pipeline", True, (("New", "open", 10), ("Qualified", "open", 25), ("Proposal Sent", "open", 50),
                              ("Negotiation", "open", 75), ("Won", "won", 100), ("Lost", "lost", 0))),
    ("Renewals", False, (("Renewal Due", "open", 50), ("Renewal Quoted", "open", 75), ("Renewed", "won", 100),
                         ("Churned", "lost", 0))),
)

# Users who are not Kaseya employees: (first, last, email, is_active).
UNMATCHED_USERS = (
    ("Dana", "Whitfield", "dana.whitfield@msp.example", True),
    ("Marco", "Bellini", "marco.bellini@msp.example", False),
)

_ZOMENTUM_ONLY_CLIENTS = ["Brightline Studio", "Copperleaf Ventures", "Driftwood Yoga", "Emberly Florists",
                          "Foxglove Pediatrics", "Glasshouse Media", "Hollowbrook Farms", "Inkwell Publishing",
                          "Jetstream Couriers", "Kingfisher Marine", "Lantern Labs", "Moonrise Bistro"]
_CLIENT_SUFFIXES = ["LLC", "Inc.", "Ltd", "Co."]

# (key, name, type, part number or None, sell, cost, uom, billing period)
_CATALOGUE = (
    ("rack", "Rack Shelf 1U", "hardware", "ZO-HW-0001", 49.00, 30.00, "each", "one_time"),
    ("printer", "Label Printer", "hardware", None, 129.00, 80.00, "each", "one_time"),
    ("vault", "Password Manager Seat", "software", "ZO-SW-0001", 4.00, 2.00, "each", "monthly"),
    ("signature", "E-mail Signature Tool", "software", None, 3.00, 1.00, "each", "monthly"),
    ("awareness", "Security Awareness Training", "service", "ZO-SV-0001", 3.50, 1.20, "per_month", "monthly"),
    ("darkweb", "Dark Web Monitoring", "service", "ZO-SV-0002", 150.00, 60.00, "per_month", "monthly"),
    ("onboarding_hour", "Onboarding Hour", "labor", "ZO-LB-0001", 95.00, 40.00, "per_hour", "one_time"),
    ("assessment", "Network Assessment", "labor", None, 750.00, 300.00, "each", "one_time"),
)
# (name, pricing level, price of the bundle line, children as (catalogue key, quantity, child sell price))
_BUNDLES = (
    ("New Hire Onboarding Bundle", "bundle", 100.00,
     (("vault", 1, 0.0), ("awareness", 1, 0.0), ("onboarding_hour", 1, 0.0))),
    ("Secure Workstation Bundle", "individual", 0.0,
     (("printer", 1, 129.00), ("signature", 1, 3.00), ("onboarding_hour", 2, 95.00))),
)
_CATEGORY = {"hardware": "Hardware", "software": "Software", "service": "Managed Services",
             "labor": "Professional Services", "bundle": "Bundles"}
_UOM = {"hardware": "each", "software": "each", "service": "per_month", "labor": "per_hour"}
_BILLING = {"hardware": "one_time", "software": "monthly", "service": "monthly", "labor": "one_time"}


class IdMaker:
    """Opaque uuid-like ids, deterministic for a seed (and for the sequence of creates after it)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"zomentum-ids:{seed}")

    def __call__(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


@dataclass
class SeededAccount:
    records: dict[str, dict[str, dict[str, Any]]]  # resource path -> id -> record
    revisions: dict[str, list[Revision]] = field(default_factory=dict)  # document id -> revisions, oldest first
    api_user_id: str = ""
    default_pipeline_id: str = ""


class _Builder:
    def __init__(self, world: World, new_id: IdMaker) -> None:
        self.world = world
        self.now = world.now
        self.new_id = new_id
        self.rng = random.Random(f"zomentum-seed:{world.seed}")
        self.account = SeededAccount(records={path: {} for path in (
            "client/companies", "client/users", "opportunities", "pipelines", "items", "documents", "users",
            "custom/fields")})

    def moment(self, *, max_days: int = 90) -> tuple[str, str]:
        created = self.now - timedelta(seconds=self.rng.randint(3600, max_days * 86400))
        updated = created + timedelta(seconds=self.rng.randint(0, int((self.now - created).total_seconds()) - 60))
        return format_timestamp(created), format_timestamp(updated)

    def add(self, resource: str, fields: dict[str, Any], *, at: tuple[str, str] | None = None) -> dict[str, Any]:
        created, updated = at or self.moment()
        record = {"id": self.new_id(), **fields, "created_at": created, "updated_at": updated}
        self.account.records[resource][record["id"]] = record
        return record


def _address(address: Address) -> dict[str, Any]:
    return {"address_line_1": address.address1, "address_line_2": address.address2, "city": address.city,
            "state": address.state, "pincode": address.zip_code, "country": address.country,
            "phone": address.phone}


def seed_account(world: World, new_id: IdMaker) -> SeededAccount:
    b = _Builder(world, new_id)
    account = b.account
    founding = format_timestamp(world.now - timedelta(days=120))

    # Users: the first half of the employees, the unmatched two, the API user.
    employee_user: dict[int, str] = {}
    for employee in world.employees[: len(world.employees) // 2]:
        user = b.add("users", {"first_name": employee.first_name, "last_name": employee.last_name,
                               "email": employee.email, "is_active": True}, at=(founding, founding))
        employee_user[employee.index] = user["id"]
    for first, last, mail, active in UNMATCHED_USERS:
        b.add("users", {"first_name": first, "last_name": last, "email": mail, "is_active": active},
              at=(founding, founding))
    api_user = b.add("users", {"first_name": "API", "last_name": "User", "email": API_USER_EMAIL,
                               "is_active": True}, at=(founding, founding))
    account.api_user_id = api_user["id"]
    sales_reps = list(employee_user.values()) or [api_user["id"]]

    pipelines = []
    for name, is_default, stages in PIPELINES:
        pipeline = b.add("pipelines", {
            "name": name, "is_default": is_default,
            "stages": [{"id": b.new_id(), "name": s_name, "order": order, "probability": probability, "kind": kind}
                       for order, (s_name, kind, probability) in enumerate(stages, start=1)],
        }, at=(founding, founding))
        pipelines.append(pipeline)
        if is_default:
            account.default_pipeline_id = pipeline["id"]

    region = b.add("custom/fields", {"entity_type": "client_company", "display_name": "Region",
                                     "field_type": "dropdown"}, at=(founding, founding))
    b.add("custom/fields", {"entity_type": "document", "display_name": "PO Reference", "field_type": "text"},
          at=(founding, founding))

    # Clients and contacts.
    clients: list[dict[str, Any]] = []
    contacts_of: dict[str, list[dict[str, Any]]] = {}

    def owner_for(company: Company) -> str:
        return employee_user.get(company.account_manager, api_user["id"])

    for company in world.companies[::10]:
        main = company.locations[0]
        client = b.add("client/companies", {
            "name": company.name, "company_type": "customer", "website": company.website,
            "phone": main.main_address.phone, "billing_address": _address(main.billing_address),
            "shipping_addresses": [_address(loc.shipping_address) for loc in company.locations],
            "owner_user_id": owner_for(company),
            "custom_fields": [{"id": region["id"], "values": ["EMEA" if company.index % 20 else "AMER"]}],
        }, at=(format_timestamp(company.created_on), format_timestamp(company.modified_on)))
        clients.append(client)
        contacts_of[client["id"]] = []
        shared = [company.poc, (company.poc + 1) % len(company.contacts)]
        for position, k in enumerate(dict.fromkeys(shared)):
            person = company.contacts[k]
            contacts_of[client["id"]].append(b.add("client/users", {
                "name": {"first": person.first_name, "last": person.last_name}, "email": person.email,
                "phone": main.main_address.phone if position == 0 else None, "job_title": company.job_titles[k],
                "client_company_id": client["id"],
                "contact_type": "primary_contact" if position == 0 else "secondary_contact", "custom_fields": [],
            }))
    matched_count = len(clients)

    for i in range(max(3, len(world.companies) // 20)):
        base = _ZOMENTUM_ONLY_CLIENTS[i % len(_ZOMENTUM_ONLY_CLIENTS)]
        name = world.customer_name(f"{base} {_CLIENT_SUFFIXES[i % len(_CLIENT_SUFFIXES)]}" + (
            f" {i // len(_ZOMENTUM_ONLY_CLIENTS)}" if i >= len(_ZOMENTUM_ONLY_CLIENTS) else ""))
        domain = f"{base.lower().replace(' ', '')}-zo{i}.example"
        client = b.add("client/companies", {
            "name": name, "company_type": b.rng.choice(["customer", "prospect"]), "website": f"https://{domain}",
            "phone": f"+1-555-{b.rng.randint(100, 999)}-{b.rng.randint(1000, 9999)}", "billing_address": None,
            "shipping_addresses": [], "owner_user_id": b.rng.choice(sales_reps), "custom_fields": [],
        })
        clients.append(client)
        contacts_of[client["id"]] = []
        for k in range(1 + i % 2):
            first, last = b.rng.choice(["Ava", "Caleb", "Dina", "Ezra", "Fatima", "Gus"]), b.rng.choice(
                ["Holloway", "Iqbal", "Jansen", "Kerr", "Lindqvist", "Moreau"])
            contacts_of[client["id"]].append(b.add("client/users", {
                "name": {"first": first, "last": last}, "email": f"{first.lower()}.{last.lower()}@{domain}",
                "phone": None, "job_title": "Owner" if k == 0 else None, "client_company_id": client["id"],
                "contact_type": "primary_contact" if k == 0 else "secondary_contact", "custom_fields": [],
            }))

    # Items.
    def item(name: str, type_: str, part_number: str | None, sell: float, cost: float, uom: str | None,
             billing: str, description: str | None, supplier: str | None = None,
             bundle: dict[str, Any] | None = None) -> dict[str, Any]:
        return b.add("items", {
            "name": name, "description": description, "type": type_, "manufacturer_part_number": part_number,
            "category": _CATEGORY[type_], "uom": uom,
            "pricing": [{"name": "Standard", "billing_period": billing, "sell_price": sell, "setup_price": 0.0,
                         "cost_price": cost, "supplier_name": supplier, "supplier_sku": part_number}],
            "bundle": bundle, "custom_fields": [],
        })

    products = []
    for n, product in enumerate(world.products[5::10]):
        products.append(item(
            product.name if n % 2 == 0 else f"{product.name} (catalogue)", product.type, product.part_number,
            product.sell_price, product.cost, _UOM[product.type], _BILLING[product.type], product.description,
            supplier=product.manufacturer,
        ))
    catalogue = {key: item(name, type_, part, sell, cost, uom, billing, f"{name} (Zomentum catalogue)")
                 for key, name, type_, part, sell, cost, uom, billing in _CATALOGUE}
    bundles = []
    for name, level, price, children in _BUNDLES:
        child_cost = sum(catalogue[key]["pricing"][0]["cost_price"] * quantity for key, quantity, _ in children)
        bundles.append(item(name, "bundle", None, price, round(child_cost, 2), "each", "one_time",
                            f"{name}: {len(children)} items", bundle={
                                "pricing_level": level,
                                "children": [{"item_id": catalogue[key]["id"], "quantity": quantity,
                                              "sell_price": child_price} for key, quantity, child_price in children]}))
    items_by_id = account.records["items"]
    sellable = products + list(catalogue.values())

    # Opportunities and documents.
    def opportunity(client: dict[str, Any], name: str, stage_kind: str) -> dict[str, Any]:
        pipeline = pipelines[1] if b.rng.random() < 0.25 else pipelines[0]
        stages = [s for s in pipeline["stages"] if s["kind"] == stage_kind]
        stage = b.rng.choice(stages)
        contacts = contacts_of[client["id"]]
        return b.add("opportunities", {
            "name": name, "client_company_id": client["id"],
            "primary_client_user_id": contacts[0]["id"] if contacts else None,
            "linked_client_user_ids": [c["id"] for c in contacts], "owner_user_id": client["owner_user_id"],
            "opportunity_pipeline_id": pipeline["id"], "opportunity_pipeline_stage_id": stage["id"],
            "client_po_number": f"PO-{b.rng.randint(1000, 9999)}" if b.rng.random() < 0.3 else None,
            "estimated_close_date": format_timestamp(world.now + timedelta(days=b.rng.randint(-20, 90))),
            "estimated_value": round(b.rng.uniform(500, 25000), 2), "close_probability": stage["probability"],
            "custom_fields": [],
        })

    document_count = max(len(DOCUMENT_STATUSES) + 3, len(world.deals) // 4)
    for i in range(document_count):
        if i == 0:  # the showcase documents: both bundle pricing levels, every line type, marked Won
            status, client = "won", clients[0]
            requested = [{"item_id": bundles[0]["id"], "quantity": 1},
                         {"item_id": catalogue["rack"]["id"], "quantity": 2},
                         {"item_id": catalogue["assessment"]["id"], "quantity": 1, "discount": 50.0}]
        elif i == 1:
            status, client = "won", clients[1 % matched_count]
            requested = [{"item_id": bundles[1]["id"], "quantity": 3},
                         {"item_id": catalogue["vault"]["id"], "quantity": 10},
                         {"item_id": catalogue["darkweb"]["id"], "quantity": 1, "setup_price": 250.0}]
        else:
            status = DOCUMENT_STATUSES[(i - 2) % len(DOCUMENT_STATUSES)]
            zomentum_only = clients[matched_count:]
            client = clients[i % matched_count] if i % 3 else zomentum_only[i % len(zomentum_only)]
            requested = [{"item_id": chosen["id"], "quantity": b.rng.randint(1, 12),
                          **({"discount": 5.0} if b.rng.random() < 0.2 else {})}
                         for chosen in b.rng.sample(sellable, k=b.rng.randint(1, 3))]
            if b.rng.random() < 0.4:
                requested.append({"item_id": bundles[i % 2]["id"], "quantity": b.rng.randint(1, 3)})
        kind = "won" if status == "won" else "lost" if status == "lost" else "open"
        linked = None if i % 5 == 4 else opportunity(client, f"Quote {i + 1:04d} deal for {client['name']}", kind)
        created, updated = b.moment(max_days=60)
        revisions = []
        if i % 4 == 3 and len(requested) > 1:
            revisions.append(Revision(id=b.new_id(), number=1, created_at=created,
                                      lines=build_lines(requested[:-1], items_by_id, b.new_id)))
        revisions.append(Revision(id=b.new_id(), number=len(revisions) + 1, created_at=updated,
                                  lines=build_lines(requested, items_by_id, b.new_id)))
        contacts = contacts_of[client["id"]]
        document = b.add("documents", {
            "name": f"Quote {i + 1:04d} for {client['name']}", "status": status,
            "client_company_id": client["id"], "client_user_id": contacts[0]["id"] if contacts else None,
            "opportunity_id": linked["id"] if linked else None, "owner_user_id": client["owner_user_id"],
            "current_revision_id": revisions[-1].id, "total": document_total(revisions[-1].lines),
            "expiry_date": format_timestamp(datetime.fromisoformat(created) + timedelta(days=30)),
            "custom_fields": [],
        }, at=(created, updated))
        account.revisions[document["id"]] = revisions

    # Opportunities without documents, one per stage of each pipeline.
    for pipeline in pipelines:
        for stage in pipeline["stages"]:
            client = b.rng.choice(clients)
            contacts = contacts_of[client["id"]]
            b.add("opportunities", {
                "name": f"{stage['name']} prospect at {client['name']}", "client_company_id": client["id"],
                "primary_client_user_id": contacts[0]["id"] if contacts else None,
                "linked_client_user_ids": [c["id"] for c in contacts[:1]], "owner_user_id": client["owner_user_id"],
                "opportunity_pipeline_id": pipeline["id"], "opportunity_pipeline_stage_id": stage["id"],
                "client_po_number": None, "estimated_close_date": None,
                "estimated_value": float(Decimal(b.rng.randint(10, 500)) * 100), "close_probability": None,
                "custom_fields": [],
            })
    return account
