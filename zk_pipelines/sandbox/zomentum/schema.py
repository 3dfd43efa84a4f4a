"""The Zomentum contract the sandbox enforces: resources, their fields and enums, and write validation.

Where `zomentum-api-notes.md` says "assumed", this module is the sandbox's half of that assumption
(the client's half is `zk_pipelines/clients/zomentum_models.py`); `openapi.yaml` beside this file is
the same contract for machines, and `test_zomentum_openapi.py` checks that the three agree.

Writes are validated strictly (unknown fields, read-only fields, bad enum values, unknown reference ids
are all 400 naming the field), so a mapper that drifts from the contract fails in tests, not in a
customer's account.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

PAGE_LIMIT_MAX = 1000  # a larger `limit` is silently capped, like the real API's page cap
PAGE_LIMIT_DEFAULT = 20

DOCUMENT_STATUSES = ("draft", "pending_approval", "approved", "sent", "viewed", "accepted", "won", "lost", "expired")
ITEM_TYPES = ("hardware", "software", "service", "labor", "bundle")
BUNDLE_PRICING_LEVELS = ("bundle", "individual")
BILLING_PERIODS = ("one_time", "monthly", "quarterly", "yearly")
UOMS = ("each", "case", "per_hour", "per_month")
COMPANY_TYPES = ("customer", "prospect", "vendor", "partner")
CONTACT_TYPES = ("primary_contact", "secondary_contact")
STAGE_KINDS = ("open", "won", "lost")
CUSTOM_FIELD_ENTITY_TYPES = ("client_company", "client_user", "opportunity", "item", "document")
CUSTOM_FIELD_TYPES = ("text", "number", "date", "dropdown", "checkbox")
LINE_ITEM_COLUMNS = ("line_id", "item_id", "name", "description", "type", "quantity", "sell_price", "cost_price",
                     "discount", "setup_price", "billing_period", "parent_line_id")

# Fields every record has and no write may set.
SYSTEM_FIELDS = frozenset({"id", "created_at", "updated_at"})


class ApiProblem(Exception):
    """An answer other than success: rendered as `{"status_code": ..., "message": ...}`."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        super().__init__(f"{status}: {message}")


def bad_request(path: str, problem: str) -> ApiProblem:
    """A 400 whose message starts with the offending field, e.g. `pricing[0].sell_price: must be a number`."""
    return ApiProblem(400, f"{path}: {problem}")


class Lookup(Protocol):
    """What validation needs to know about the records already stored."""

    def find(self, resource: str, record_id: str) -> dict[str, Any] | None: ...


Check = Callable[[Any, str, Lookup], Any]


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a `Z`, the way the sandbox writes every timestamp."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(value: str) -> datetime | None:
    """An ISO-8601 date-time *with an offset* (requests must carry one), else None."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


def text(*, required_non_empty: bool = False) -> Check:
    def check(value: Any, path: str, _: Lookup) -> Any:
        if value is None and not required_non_empty:
            return None
        if not isinstance(value, str):
            raise bad_request(path, "must be a string")
        if required_non_empty and not value.strip():
            raise bad_request(path, "must not be empty")
        return value
    return check


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def email() -> Check:
    def check(value: Any, path: str, _: Lookup) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or not _EMAIL.match(value):
            raise bad_request(path, f"{value!r} is not an e-mail address")
        return value
    return check


def number(*, minimum: float | None = None, maximum: float | None = None, integer: bool = False) -> Check:
    def check(value: Any, path: str, _: Lookup) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad_request(path, "must be an integer" if integer else "must be a number")
        if integer and not float(value).is_integer():
            raise bad_request(path, "must be an integer")
        if minimum is not None and value < minimum:
            raise bad_request(path, f"must be at least {minimum:g}")
        if maximum is not None and value > maximum:
            raise bad_request(path, f"must be at most {maximum:g}")
        return int(value) if integer else value
    return check


def timestamp() -> Check:
    def check(value: Any, path: str, _: Lookup) -> Any:
        if value is None:
            return None
        moment = parse_timestamp(value) if isinstance(value, str) else None
        if moment is None:
            raise bad_request(path, f"{value!r} is not an ISO-8601 date-time with an offset")
        return format_timestamp(moment)
    return check


def one_of(values: tuple[str, ...], *, nullable: bool = True) -> Check:
    def check(value: Any, path: str, _: Lookup) -> Any:
        if value is None and nullable:
            return None
        if value not in values:
            raise bad_request(path, f"{value!r} is not one of {', '.join(values)}")
        return value
    return check


def ref(resource: str, label: str) -> Check:
    def check(value: Any, path: str, lookup: Lookup) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or lookup.find(resource, value) is None:
            raise bad_request(path, f"no {label} with id {value!r}")
        return value
    return check


def list_of(item: Check, *, min_items: int = 0) -> Check:
    def check(value: Any, path: str, lookup: Lookup) -> Any:
        if value is None:
            value = []
        if not isinstance(value, list):
            raise bad_request(path, "must be a list")
        if len(value) < min_items:
            raise bad_request(path, f"must have at least {min_items} entr{'y' if min_items == 1 else 'ies'}")
        return [item(v, f"{path}[{i}]", lookup) for i, v in enumerate(value)]
    return check


def obj(fields: Mapping[str, Check], *, required: tuple[str, ...] = (), nullable: bool = True) -> Check:
    def check(value: Any, path: str, lookup: Lookup) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, dict):
            raise bad_request(path, "must be an object")
        for key in value:
            if key not in fields:
                raise bad_request(f"{path}.{key}", "unknown field")
        for key in required:
            if value.get(key) is None:
                raise bad_request(f"{path}.{key}", "is required")
        return {key: check_field(value.get(key), f"{path}.{key}", lookup) for key, check_field in fields.items()}
    return check


def custom_field_values(entity_type: str) -> Check:
    scalar_types = (str, int, float, bool)

    def one(value: Any, path: str, lookup: Lookup) -> Any:
        if not isinstance(value, dict) or set(value) - {"id", "values"} or "id" not in value:
            raise bad_request(path, "must be an object {id, values}")
        definition = lookup.find("custom/fields", value["id"]) if isinstance(value["id"], str) else None
        if definition is None or definition["entity_type"] != entity_type:
            raise bad_request(f"{path}.id", f"no {entity_type} custom field with id {value['id']!r}")
        values = value.get("values", [])
        if not isinstance(values, list) or not all(isinstance(v, scalar_types) for v in values):
            raise bad_request(f"{path}.values", "must be a list of strings, numbers or booleans")
        return {"id": value["id"], "values": list(values)}

    return list_of(one)


_ADDRESS_FIELDS = {
    "address_line_1": text(), "address_line_2": text(), "city": text(), "state": text(),
    "pincode": text(), "country": text(), "phone": text(),
}
ADDRESS = obj(_ADDRESS_FIELDS)
PERSON_NAME = obj({"first": text(required_non_empty=True), "last": text()}, required=("first",), nullable=False)
PRICING = obj({
    "name": text(required_non_empty=True),
    "billing_period": one_of(BILLING_PERIODS, nullable=False),
    "sell_price": number(minimum=0),
    "setup_price": number(minimum=0),
    "cost_price": number(minimum=0),
    "supplier_name": text(),
    "supplier_sku": text(),
}, required=("name", "billing_period", "sell_price"), nullable=False)
BUNDLE = obj({
    "pricing_level": one_of(BUNDLE_PRICING_LEVELS, nullable=False),
    "children": list_of(obj({
        "item_id": ref("items", "item"),
        "quantity": number(minimum=0.0001),
        "sell_price": number(minimum=0),
    }, required=("item_id", "quantity"), nullable=False), min_items=1),
}, required=("pricing_level", "children"))


@dataclass(frozen=True)
class ResourceSpec:
    """One API resource: where it lives, what a write may contain, and which operations exist."""

    path: str
    label: str
    operations: frozenset[str]  # list | get | create | update
    fields: Mapping[str, Check] = field(default_factory=dict)  # writable fields
    required: frozenset[str] = frozenset()  # on create
    read_only: frozenset[str] = frozenset()  # returned but refused in writes (besides SYSTEM_FIELDS)
    defaults: Mapping[str, Any] = field(default_factory=dict)  # stored when a create leaves a field out
    entity_type: str | None = None  # custom field entity type

    @property
    def returned_fields(self) -> frozenset[str]:
        """Every top-level field of this resource's records as the API returns them."""
        return SYSTEM_FIELDS | frozenset(self.fields) | self.read_only

    def validate(self, body: Any, lookup: Lookup, *, creating: bool) -> dict[str, Any]:
        """The given fields, checked and normalized; cross-field rules are the state's to check."""
        if not isinstance(body, dict):
            raise bad_request("body", "must be a JSON object")
        for key in body:
            if key == "id" and creating:
                raise bad_request("id", "must not be sent on create (POST /v2/<resource>/)")
            if key in SYSTEM_FIELDS or key in self.read_only:
                raise bad_request(key, "is read-only")
            if key not in self.fields:
                raise bad_request(key, f"unknown field for a {self.label}")
        if creating:
            for key in sorted(self.required):
                if body.get(key) is None:
                    raise bad_request(key, "is required")
        return {key: self.fields[key](value, key, lookup) for key, value in body.items()}


_CLIENT_COMPANY = ResourceSpec(
    path="client/companies", label="client company", entity_type="client_company",
    operations=frozenset({"list", "get", "create", "update"}),
    fields={
        "name": text(required_non_empty=True),
        "company_type": one_of(COMPANY_TYPES),
        "website": text(),
        "phone": text(),
        "billing_address": ADDRESS,
        "shipping_addresses": list_of(obj(_ADDRESS_FIELDS, nullable=False)),
        "owner_user_id": ref("users", "user"),
        "custom_fields": custom_field_values("client_company"),
    },
    required=frozenset({"name"}),
    defaults={"company_type": None, "website": None, "phone": None, "billing_address": None,
              "shipping_addresses": [], "custom_fields": []},
)

_CLIENT_USER = ResourceSpec(
    path="client/users", label="client user", entity_type="client_user",
    operations=frozenset({"list", "get", "create", "update"}),
    fields={
        "name": PERSON_NAME,
        "email": email(),
        "phone": text(),
        "job_title": text(),
        "client_company_id": ref("client/companies", "client company"),
        "contact_type": one_of(CONTACT_TYPES, nullable=False),
        "custom_fields": custom_field_values("client_user"),
    },
    required=frozenset({"name", "client_company_id"}),
    defaults={"email": None, "phone": None, "job_title": None, "contact_type": "secondary_contact",
              "custom_fields": []},
)

_OPPORTUNITY = ResourceSpec(
    path="opportunities", label="opportunity", entity_type="opportunity",
    operations=frozenset({"list", "get", "create", "update"}),
    fields={
        "name": text(required_non_empty=True),
        "client_company_id": ref("client/companies", "client company"),
        "primary_client_user_id": ref("client/users", "client user"),
        "linked_client_user_ids": list_of(ref("client/users", "client user")),
        "owner_user_id": ref("users", "user"),
        "opportunity_pipeline_id": ref("pipelines", "pipeline"),
        "opportunity_pipeline_stage_id": text(),  # checked against the pipeline by the state
        "client_po_number": text(),
        "estimated_close_date": timestamp(),
        "estimated_value": number(minimum=0),
        "close_probability": number(minimum=0, maximum=100, integer=True),
        "custom_fields": custom_field_values("opportunity"),
    },
    required=frozenset({"name", "client_company_id"}),
    defaults={"primary_client_user_id": None, "linked_client_user_ids": [], "client_po_number": None,
              "estimated_close_date": None, "estimated_value": None, "close_probability": None,
              "custom_fields": []},
)

_PIPELINE = ResourceSpec(path="pipelines", label="pipeline", operations=frozenset({"list", "get"}),
                         read_only=frozenset({"name", "is_default", "stages"}))

_ITEM = ResourceSpec(
    path="items", label="item", entity_type="item",
    operations=frozenset({"list", "get", "create", "update"}),
    fields={
        "name": text(required_non_empty=True),
        "description": text(),
        "type": one_of(ITEM_TYPES, nullable=False),
        "manufacturer_part_number": text(),
        "category": text(),
        "uom": one_of(UOMS),
        "pricing": list_of(PRICING),
        "bundle": BUNDLE,
        "custom_fields": custom_field_values("item"),
    },
    required=frozenset({"name", "type"}),
    defaults={"description": None, "manufacturer_part_number": None, "category": None, "uom": None,
              "pricing": [], "bundle": None, "custom_fields": []},
)

_DOCUMENT = ResourceSpec(
    path="documents", label="document", entity_type="document",
    # Documents are authored in Zomentum's editor (the sandbox's POST /_sandbox/documents), not created
    # through the API; the API lists, reads and partially updates them (e.g. marking one Won).
    operations=frozenset({"list", "get", "update"}),
    fields={
        "name": text(required_non_empty=True),
        "status": one_of(DOCUMENT_STATUSES, nullable=False),
        "client_user_id": ref("client/users", "client user"),
        "opportunity_id": ref("opportunities", "opportunity"),
        "owner_user_id": ref("users", "user"),
        "expiry_date": timestamp(),
        "custom_fields": custom_field_values("document"),
    },
    read_only=frozenset({"client_company_id", "current_revision_id", "total"}),
)

_USER = ResourceSpec(path="users", label="user", operations=frozenset({"list", "get"}),
                     read_only=frozenset({"first_name", "last_name", "email", "is_active"}))

_CUSTOM_FIELD = ResourceSpec(
    path="custom/fields", label="custom field",
    operations=frozenset({"list", "get", "create"}),
    fields={
        "entity_type": one_of(CUSTOM_FIELD_ENTITY_TYPES, nullable=False),
        "display_name": text(required_non_empty=True),
        "field_type": one_of(CUSTOM_FIELD_TYPES, nullable=False),
    },
    required=frozenset({"entity_type", "display_name", "field_type"}),
)

RESOURCES: dict[str, ResourceSpec] = {
    spec.path: spec
    for spec in (_CLIENT_COMPANY, _CLIENT_USER, _OPPORTUNITY, _PIPELINE, _ITEM, _DOCUMENT, _USER, _CUSTOM_FIELD)
}

# Which fields `filters=` accepts, per operator. `eq` works on any scalar field the resource returns;
# `gte` / `lte` only on the timestamps.
RANGE_FILTER_FIELDS = frozenset({"updated_at", "created_at"})
