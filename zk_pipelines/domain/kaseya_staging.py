"""Raw Kaseya records -> flat staging rows: `stage_fields` for a flat entity (from its field spec), a function
of its own for an entity with nested or derived parts.

Kaseya's contract spells fields in PascalCase, the wire in camelCase, and our raw tables keep whatever the
server sent, so every field is read with `read_field`, which ignores case and underscores. Nested parts
become their own columns: the main location's billing address is flattened into `billing_*` columns and
the shipping addresses are kept as a JSON list. The columns each function produces are its entity's model's
(`staging_schemas`), from which the storage layer creates `stg.kaseya_<entity>`. A flat entity needs no
function of its own: `stage_fields` stages it from its field spec (wire name -> column), reading each field
with the reader of its column's type.

Contacts, counted in hundreds of thousands, are staged by SQL over the raw JSON (`storage/contacts_store.py`)
with these readers' rules; `unreadable_record_row` words its unreadable records as `_stage` words them.

A record that cannot be read at all (not an object, no usable id, a field of the wrong kind) becomes a row
carrying a `StagingProblem` under `STAGING_PROBLEM`; `staging_schemas.validate_rows` turns it into a
reject. Staging never raises for a bad record.

Choices the spec leaves open (each also in the project report):
- Main location: the location with `IsMain`, preferring an active one; else the first active location;
  else the first. Its billing address: the address with `IsBilling`; else the one whose `AddressType` is
  "Billing"; else the location's main address (`IsMain`), since Kaseya bills a location at its main address
  when none is marked for billing; else its first address.
- Shipping address: an address whose `AddressType` name is "Shipping" (case-insensitive), on any active
  location, main location first. `AddressTypeId` is tenant-specific and is not interpreted; `IsMain` and
  `IsBilling` say nothing about shipping. Identical shipping addresses are listed once.
- Default e-mail / phone: the first one flagged `IsDefault`; when none is flagged, the first one listed
  (Kaseya's UI always flags one, so an unflagged list is drift, and its first entry is what Kaseya shows).
- Owner e-mails: the account manager's and the sales rep's e-mail come from the employees' e-mails by id
  (`employee_emails`, from `hr/employees/searchselect`), else from `AccountManagerUserName` when it is an
  e-mail address. Kaseya user ids and employee ids are assumed to be the same numbers.
- Products: one row per `ProductIndexId` (the first warehouse row wins; the others repeat it). Category,
  product type and manufacturer are not in the published `searchselect` row (only its filters name them):
  category and type come from the caller (`categories`, `product_types`, learned through those filters),
  else from the row when it carries them (`Category`, `ProductType`, `Manufacturer`). The supplier's part
  number and unit cost are not in the published `suppliers/lookup` row either: read when present
  (`PartNumber`, `UnitCost`), else no part number and the product's `defaultcost` as the unit cost.
- Item type: from the product type, else the category: "software" -> software, "hardware" -> hardware,
  "labo(u)r" -> labor, "service" -> service; anything else is hardware, because Kaseya's inventory
  catalogue holds stock items (services and labour live in the services catalogue).
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

Column = tuple[str, str]  # (name, DuckDB type)

ITEM_TYPES = ("hardware", "software", "service", "labor")
STATUS_KINDS = ("open", "won", "lost")

STAGING_PROBLEM = "staging_problem"


@dataclass(frozen=True)
class StagingProblem:
    """Why a record could not be flattened; carried by its row under `STAGING_PROBLEM`."""

    check: str
    column: str | None
    value: str | None
    reason: str


@dataclass(frozen=True)
class ProductPricing:
    """The per-product answers of one product: `pricingLevels`, `suppliers/lookup` (in Kaseya's order,
    the first is the item's first supplier) and `defaultcost` (the DTO `{id, defaultCost}` or a number)."""

    pricing_levels: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    suppliers: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    default_cost: Any = None


# --- reading Kaseya fields ------------------------------------------------------------------------


def _fold(key: str) -> str:
    return key.replace("_", "").lower()


def read_field(record: Mapping[str, Any], *names: str) -> Any:
    """The first non-null value among `names`, matching keys regardless of case and underscores
    (`AccountName`, `accountName`, `account_name` are one field)."""
    for name in names:
        value = record.get(name)
        if value is None:
            value = record.get(_fold(name))
        if value is not None:
            return value
    if all(not isinstance(key, str) or _fold(key) == key for key in record):
        return None
    folded = _folded(record)
    for name in names:
        if folded.get(_fold(name)) is not None:
            return folded[_fold(name)]
    return None


def _folded(record: Mapping[str, Any]) -> dict[str, Any]:
    """One level of `record` keyed by folded names; on a collision the first non-null value wins."""
    folded: dict[str, Any] = {}
    for key, value in record.items():
        name = _fold(key) if isinstance(key, str) else key
        if folded.get(name) is None:
            folded[name] = value
    return folded


def _normalised(value: Any) -> Any:
    """`value` with every object keyed by folded names, so that each field read is one dict lookup."""
    if isinstance(value, Mapping):
        return {key: _normalised(item) for key, item in _folded(value).items()}
    if isinstance(value, list | tuple):
        return [_normalised(item) for item in value]
    return value


class _Unreadable(Exception):
    def __init__(self, check: str, column: str | None, value: Any, problem: str) -> None:
        super().__init__(problem)
        self.check = check
        self.column = column
        self.value = value
        self.problem = problem


def _shown(value: Any) -> str:
    return _truncate(repr(value) if isinstance(value, str) else str(value))


def _truncate(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# What a field that cannot be read "is not", by the DuckDB type of its column (and "LIST" for a list of objects).
NOT_READABLE_AS: dict[str, str] = {"VARCHAR": "is not text", "BIGINT": "is not a whole number",
                                   "DOUBLE": "is not a number", "BOOLEAN": "is not true or false",
                                   "TIMESTAMPTZ": "is not a date-time", "LIST": "is not a list of objects"}


def _not_readable(column: str, field_name: str, value: Any, kind: str) -> _Unreadable:
    return _Unreadable("type", column, value, f"{field_name} {_shown(value)} {NOT_READABLE_AS[kind]}")


def _text(record: Mapping[str, Any], column: str, *names: str) -> str | None:
    value = read_field(record, *names)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _not_readable(column, names[0], value, "VARCHAR")
    text = str(value).strip()
    return text or None


def _integer(record: Mapping[str, Any], column: str, *names: str) -> int | None:
    value = read_field(record, *names)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise _not_readable(column, names[0], value, "BIGINT")


def as_number(value: Any) -> float | None:
    """A number, or text holding one, as a float (NaN kept); None for anything else. A flag is not a
    number, whatever Python thinks of `True`."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _number(record: Mapping[str, Any], column: str, *names: str) -> float | None:
    """A float; NaN is kept so that validation reports it with the record's other problems."""
    value = read_field(record, *names)
    if value is None:
        return None
    number = as_number(value)
    if number is None:
        raise _not_readable(column, names[0], value, "DOUBLE")
    return number


def _flag(record: Mapping[str, Any], column: str, *names: str) -> bool | None:
    value = read_field(record, *names)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _not_readable(column, names[0], value, "BOOLEAN")


_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_kaseya_moment(value: Any) -> datetime | None:
    """A Kaseya date-time as an aware UTC datetime; naive values are UTC (assumed, see kaseya-bms-notes).
    .NET sends up to seven fractional digits, more than `fromisoformat` takes: the seventh is dropped."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        text = _LONG_FRACTION.sub(r"\1", value.strip())
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        moment = datetime.fromisoformat(text)
    else:
        raise ValueError(f"not a date-time: {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _moment(record: Mapping[str, Any], column: str, *names: str) -> datetime | None:
    value = read_field(record, *names)
    try:
        return parse_kaseya_moment(value)
    except (TypeError, ValueError):
        raise _not_readable(column, names[0], value, "TIMESTAMPTZ") from None


def _objects(record: Mapping[str, Any], column: str, *names: str) -> list[Mapping[str, Any]]:
    value = read_field(record, *names)
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(item, Mapping) for item in value):
        raise _not_readable(column, names[0], value, "LIST")
    return list(value)


def _as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# --- one record at a time -----------------------------------------------------------------------


def _problem_row(kaseya_id: int | None, problem: StagingProblem) -> dict[str, Any]:
    return {"kaseya_id": kaseya_id, STAGING_PROBLEM: problem}


def _record_label(entity: str) -> str:
    # The registry (domain/entities.py) imports this module's functions: read it when a batch is staged.
    from zk_pipelines.domain.entities import staged_entity

    return staged_entity(entity).label


def _no_id(field_name: str) -> _Unreadable:
    return _Unreadable("has_id", "kaseya_id", None, f"it has no {field_name}, so it cannot be tracked")


def _not_an_object(record: Any) -> _Unreadable:
    return _Unreadable("is_object", None, record, f"it is not a JSON object but {type(record).__name__}")


def _record_id(record: Mapping[str, Any], *names: str) -> int:
    value = read_field(record, *names)
    if value is None:
        raise _no_id(names[0])
    try:
        kaseya_id = _integer(record, "kaseya_id", *names)
    except _Unreadable as problem:
        raise _Unreadable("has_id", "kaseya_id", value, problem.problem) from None
    assert kaseya_id is not None
    return kaseya_id


_NAME_FIELDS = ("AccountName", "Subject", "ProductName", "Name", "LastName", "FirstName")


def _subject(label: str, kaseya_id: int | None, record: Any, position: int) -> str:
    """How a reject names a record: by id, else by its name (`_NAME_FIELDS`) and place in the batch."""
    return _named(label, kaseya_id, read_field(record, *_NAME_FIELDS) if isinstance(record, Mapping) else None,
                  position)


def _named(label: str, kaseya_id: int | None, name: Any, position: int) -> str:
    if kaseya_id is not None:
        return f"{label} {kaseya_id}"
    named = f" {_shown(name)}" if isinstance(name, str) else ""
    return f"{label}{named} (record {position} of the batch)"


def _unreadable_row(label: str, kaseya_id: int | None, name: Any, position: int, problem: _Unreadable
                    ) -> dict[str, Any]:
    return _problem_row(kaseya_id, StagingProblem(
        check=problem.check, column=problem.column,
        value=None if problem.value is None else _truncate(str(problem.value)),
        reason=f"{_named(label, kaseya_id, name, position)}: {problem.problem}; Kaseya sent a record this "
               "pipeline cannot read, check it in Kaseya",
    ))


def unreadable_record_row(entity: str, *, position: int, kaseya_id: int | None, name: Any, check: str,
                          column: str | None, field_name: str, value: Any, kind: str) -> dict[str, Any]:
    """The row of a record the column-wise staging (in SQL) found unreadable, worded as the per-record staging
    words it. `check` is "is_object" (`value` the record), "has_id" (`value` the id, None when it has none) or
    "type" (`field_name`'s `value` is not of `kind`, a key of `NOT_READABLE_AS`); values as decoded from JSON;
    `name` the record's first `_NAME_FIELDS` value (it names a record without a usable id)."""
    if check == "is_object":
        problem = _not_an_object(value)
    elif check == "has_id" and value is None:
        problem = _no_id(field_name)
    else:
        problem = _not_readable(column or "", field_name, _normalised(value), kind)
        problem = _Unreadable(check, column, problem.value, problem.problem)
    return _unreadable_row(_record_label(entity), kaseya_id, _normalised(name), position, problem)


def _stage(
    entity: str,
    records: Iterable[Any],
    build: Callable[[Mapping[str, Any], int], dict[str, Any]],
    id_names: tuple[str, ...] = ("Id",),
    positions: Iterable[int] | None = None,
) -> list[dict[str, Any]]:
    label = _record_label(entity)
    rows = []
    numbered = zip(positions, records, strict=True) if positions is not None else enumerate(records, start=1)
    for position, record in numbered:
        kaseya_id: int | None = None
        try:
            if not isinstance(record, Mapping):
                raise _not_an_object(record)
            record = _normalised(record)
            kaseya_id = _record_id(record, *id_names)
            rows.append(build(record, kaseya_id))
        except _Unreadable as problem:
            name = read_field(record, *_NAME_FIELDS) if isinstance(record, Mapping) else None
            rows.append(_unreadable_row(label, kaseya_id, name, position, problem))
        except (TypeError, ValueError, AttributeError, KeyError) as error:
            # A shape nobody anticipated: still one reject, never a failed batch.
            rows.append(_problem_row(kaseya_id, StagingProblem(
                check="readable", column=None, value=_truncate(str(record)),
                reason=f"{_subject(label, kaseya_id, record, position)}: could not be read "
                       f"({type(error).__name__}: {error})",
            )))
    return rows


# The reader of a field, by the DuckDB type of the column it goes to.
_READERS: dict[str, Callable[..., Any]] = {"BIGINT": _integer, "VARCHAR": _text, "DOUBLE": _number,
                                           "BOOLEAN": _flag, "TIMESTAMPTZ": _moment}


def stage_fields(entity: str, columns: Sequence[Column], fields: Mapping[str, str], records: Iterable[Any], *,
                 id_field: str = "Id", positions: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Records of a flat entity -> rows of `columns`: each column read from its wire field (`fields`, column ->
    wire name; `kaseya_id` from `id_field`) by the reader of its type. A column without a field is NULL."""

    def build(record: Mapping[str, Any], kaseya_id: int) -> dict[str, Any]:
        row: dict[str, Any] = {"kaseya_id": kaseya_id}
        for name, kind in columns:
            if name != "kaseya_id":
                row[name] = _READERS[kind](record, name, fields[name]) if name in fields else None
        return row

    return _stage(entity, records, build, id_names=(id_field,), positions=positions)


# --- accounts -----------------------------------------------------------------------------------

_ADDRESS_PARTS = ("address1", "address2", "city", "state", "zip_code", "country", "phone")


def _address(address: Mapping[str, Any] | None, column_prefix: str) -> dict[str, str | None]:
    """The address parts; `column_prefix` names the staging column in a problem report."""
    if address is None:
        return {part: None for part in _ADDRESS_PARTS}
    names = {"address1": "Address1", "address2": "Address2", "city": "City", "state": "State",
             "zip_code": "ZipCode", "country": "Country", "phone": "Phone"}
    return {part: _text(address, f"{column_prefix}{part}", names[part]) for part in _ADDRESS_PARTS}


def _address_type(address: Mapping[str, Any]) -> str:
    return (_text(address, "shipping_addresses", "AddressType", "AddressTypeName") or "").lower()


def _main_location(locations: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    def active(location: Mapping[str, Any]) -> bool:
        return _flag(location, "main_location_id", "IsActive") is not False

    mains = [loc for loc in locations if _flag(loc, "main_location_id", "IsMain")]
    for candidates in ([loc for loc in mains if active(loc)], mains, [loc for loc in locations if active(loc)],
                       locations):
        if candidates:
            return candidates[0]
    return None


def _billing_address(addresses: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for chosen in (
        [a for a in addresses if _flag(a, "billing_address1", "IsBilling")],
        [a for a in addresses if _address_type(a) == "billing"],
        [a for a in addresses if _flag(a, "billing_address1", "IsMain")],
        addresses,
    ):
        if chosen:
            return chosen[0]
    return None


def _main_address(addresses: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    mains = [a for a in addresses if _flag(a, "main_phone", "IsMain")]
    chosen = mains or addresses
    return chosen[0] if chosen else None


def _shipping_addresses(locations: list[Mapping[str, Any]], main: Mapping[str, Any] | None) -> list[dict]:
    ordered = ([main] if main is not None else []) + [loc for loc in locations if loc is not main]
    found: list[dict] = []
    for location in ordered:
        if _flag(location, "shipping_addresses", "IsActive") is False:
            continue
        for address in _objects(location, "shipping_addresses", "Addresses"):
            if "ship" in _address_type(address):
                flat = _address(address, "shipping_addresses.")
                if flat not in found:
                    found.append(flat)
    return found


def _owner_email(employee_emails: Mapping[int, str], employee_id: int | None, username: str | None) -> str | None:
    if employee_id is not None and employee_emails.get(employee_id):
        return employee_emails[employee_id]
    if username and "@" in username:
        return username
    return None


def stage_accounts(
    records: Iterable[Any], *, employee_emails: Mapping[int, str] | None = None,
    positions: Iterable[int] | None = None,
) -> list[dict[str, Any]]:
    """`GET /v2/crm/accounts/summary` records -> `AccountModel` rows."""
    emails = employee_emails or {}

    def build(record: Mapping[str, Any], kaseya_id: int) -> dict[str, Any]:
        locations = _objects(record, "main_location_id", "Locations")
        main = _main_location(locations)
        addresses = _objects(main, "billing_address1", "Addresses") if main is not None else []
        billing = _address(_billing_address(addresses), "billing_")
        main_address = _main_address(addresses)
        manager_id = _integer(record, "account_manager_id", "AccountManagerId")
        return {
            "kaseya_id": kaseya_id,
            "account_code": _text(record, "account_code", "AccountCode"),
            "name": _text(record, "name", "AccountName"),
            "account_type_id": _integer(record, "account_type_id", "AccountTypeId"),
            "account_type": _text(record, "account_type", "AccountType", "AccountTypeName"),
            "website": _text(record, "website", "Website"),
            "is_active": _flag(record, "is_active", "IsActive"),
            "account_manager_id": manager_id,
            "account_manager_email": _owner_email(
                emails, manager_id, _text(record, "account_manager_email", "AccountManagerUserName")),
            "main_location_id": _integer(main, "main_location_id", "Id") if main is not None else None,
            "main_location_name": _text(main, "main_location_name", "LocationName") if main is not None else None,
            "main_phone": _text(main_address, "main_phone", "Phone") if main_address is not None else None,
            **{f"billing_{part}": value for part, value in billing.items()},
            "shipping_addresses": _as_json(_shipping_addresses(locations, main)),
            "created_on": _moment(record, "created_on", "CreatedOn"),
            "modified_on": _moment(record, "modified_on", "ModifiedOn"),
        }

    return _stage("accounts", records, build, positions=positions)


# --- contacts (staged in SQL: storage/contacts_store.py) --------------------------------------------

# The characters `str.strip()` removes (`str.isspace`), for the same trimming in SQL.
STRIPPED_CHARACTERS = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                       "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def folded_name(name: str) -> str:
    """A field name as `read_field` matches it: case and underscores ignored."""
    return _fold(name)


# --- opportunities ------------------------------------------------------------------------------


def stage_opportunities(
    records: Iterable[Any], *, employee_emails: Mapping[int, str] | None = None,
    positions: Iterable[int] | None = None,
) -> list[dict[str, Any]]:
    """`GET /v2/crm/opportunities` records -> `OpportunityModel` rows."""
    emails = employee_emails or {}

    def build(record: Mapping[str, Any], kaseya_id: int) -> dict[str, Any]:
        rep_id = _integer(record, "sales_rep_id", "SalesRepresentativeUserId")
        rep_name = " ".join(part for part in (
            _text(record, "sales_rep_name", "SalesRepresentativeFirstName"),
            _text(record, "sales_rep_name", "SalesRepresentativeLastName"),
        ) if part) or None
        return {
            "kaseya_id": kaseya_id,
            "subject": _text(record, "subject", "Subject"),
            "status_id": _integer(record, "status_id", "StatusId"),
            "status": _text(record, "status", "Status"),
            "account_id": _integer(record, "account_id", "AccountId"),
            "account_name": _text(record, "account_name", "AccountName"),
            "account_location_id": _integer(record, "account_location_id", "AccountLocationId"),
            "contact_id": _integer(record, "contact_id", "ContactId"),
            "type_id": _integer(record, "type_id", "TypeId"),
            "type": _text(record, "type", "Type"),
            "rating": _text(record, "rating", "Rating"),
            "lead_source": _text(record, "lead_source", "LeadSource"),
            "probability": _number(record, "probability", "Probability"),
            "amount": _number(record, "amount", "Amount"),
            "sales_rep_id": rep_id,
            "sales_rep_name": rep_name,
            "sales_rep_email": _owner_email(emails, rep_id, None),
            "in_pipeline": _flag(record, "in_pipeline", "InPipeline"),
            "description": _text(record, "description", "Description"),
            "customer_po": _text(record, "customer_po", "CustomerPO"),
            "close_date": _moment(record, "close_date", "CloseDate"),
            "created_on": _moment(record, "created_on", "CreatedOn"),
            "modified_on": _moment(record, "modified_on", "ModifiedOn"),
        }

    return _stage("opportunities", records, build, positions=positions)


# --- products -----------------------------------------------------------------------------------


def item_type(product_type: str | None, category: str | None) -> str:
    """Zomentum's item type of a Kaseya inventory product (see the module docstring)."""
    for text in (product_type, category):
        lowered = (text or "").lower()
        for marker, kind in (("software", "software"), ("hardware", "hardware"), ("labo", "labor"),
                             ("service", "service")):
            if marker in lowered:
                return kind
    return "hardware"


def _pricing_parts(pricing: ProductPricing | Mapping[str, Any]) -> tuple[list, list, Any]:
    if isinstance(pricing, ProductPricing):
        levels, suppliers, default_cost = pricing.pricing_levels, pricing.suppliers, pricing.default_cost
    else:
        levels = read_field(pricing, "pricing_levels") or []
        suppliers = read_field(pricing, "suppliers") or []
        default_cost = read_field(pricing, "default_cost")
    if not isinstance(levels, list | tuple) or not isinstance(suppliers, list | tuple):
        raise _Unreadable("type", "pricing_levels", (levels, suppliers),
                          "its pricing levels or suppliers are not lists")
    return _normalised(list(levels)), _normalised(list(suppliers)), _normalised(default_cost)


def _pricing_columns(pricing: ProductPricing | Mapping[str, Any] | None) -> dict[str, Any]:
    if pricing is None:
        return {"supplier_name": None, "supplier_part_number": None, "unit_cost": None, "pricing_levels": None}
    levels, suppliers, default_cost = _pricing_parts(pricing)
    if not all(isinstance(entry, Mapping) for entry in levels + suppliers):
        raise _Unreadable("type", "pricing_levels", levels + suppliers,
                          "its pricing levels or suppliers are not objects")
    first = suppliers[0] if suppliers else None
    supplier_cost = _number(first, "unit_cost", "UnitCost", "Cost") if first is not None else None
    if isinstance(default_cost, Mapping):
        default_cost = _number(default_cost, "unit_cost", "DefaultCost")
    elif default_cost is not None:
        default_cost = _number({"DefaultCost": default_cost}, "unit_cost", "DefaultCost")
    active = [
        {
            "id": _integer(level, "pricing_levels", "Id"),
            "name": _text(level, "pricing_levels", "Name"),
            "price": _number(level, "pricing_levels", "Price"),
            "is_default": bool(_flag(level, "pricing_levels", "IsDefault")),
        }
        for level in levels
        if _flag(level, "pricing_levels", "IsActive") is not False
    ]
    active.sort(key=lambda level: (not level["is_default"], level["name"] or "", level["id"] or 0))
    return {
        "supplier_name": _text(first, "supplier_name", "Name", "SupplierName") if first is not None else None,
        "supplier_part_number": (
            _text(first, "supplier_part_number", "PartNumber", "SupplierPartNumber", "SKU")
            if first is not None else None
        ),
        "unit_cost": supplier_cost if supplier_cost is not None else default_cost,
        "pricing_levels": _as_json(active),
    }


def stage_products(
    product_rows: Iterable[Any],
    pricing_by_index_id: Mapping[int, ProductPricing | Mapping[str, Any]] | None = None,
    *,
    categories: Mapping[int, str] | None = None,
    product_types: Mapping[int, str] | None = None,
) -> list[dict[str, Any]]:
    """`GET /v2/inventory/products/searchselect` rows (one per product x warehouse) -> one `ProductModel`
    row per `ProductIndexId`, with its pricing when `pricing_by_index_id` has it (else the pricing columns
    are NULL: not read yet, not "no pricing").

    `categories` / `product_types` (ProductIndexId -> name) supply what the published row lacks; the
    extractor learns them from `searchselect`'s own `Filter.Category` / `Filter.ProductTypeIds` scans.
    They win over a `Category` / `ProductType` the row may carry."""
    pricing_by_index_id = pricing_by_index_id or {}
    categories = categories or {}
    product_types = product_types or {}
    seen: set[int] = set()
    first_rows = []
    for row in product_rows:
        index_id = None
        if isinstance(row, Mapping):
            try:
                index_id = _integer(row, "kaseya_id", "ProductIndexId")
            except _Unreadable:
                index_id = None  # the row is rejected by `_stage` with the reason
        if index_id is not None:
            if index_id in seen:
                continue
            seen.add(index_id)
        first_rows.append(row)

    def build(record: Mapping[str, Any], kaseya_id: int) -> dict[str, Any]:
        category = categories.get(kaseya_id) or _text(record, "category", "Category", "CategoryName",
                                                       "ProductCategory")
        product_type = product_types.get(kaseya_id) or _text(record, "product_type", "ProductType",
                                                             "ProductTypeName")
        return {
            "kaseya_id": kaseya_id,
            "product_number": _text(record, "product_number", "ProductNumber"),
            "name": _text(record, "name", "ProductName"),
            "description": _text(record, "description", "ProductDescription"),
            "upc": _text(record, "upc", "UPC"),
            "category": category,
            "product_type": product_type,
            "item_type": item_type(product_type, category),
            "manufacturer": _text(record, "manufacturer", "Manufacturer", "ProductManufacturer"),
            **_pricing_columns(pricing_by_index_id.get(kaseya_id)),
        }

    return _stage("products", first_rows, build, id_names=("ProductIndexId",))


# --- employees (staged from their field spec) and statuses -----------------------------------


def employee_emails(employee_rows: Iterable[Mapping[str, Any]]) -> dict[int, str]:
    """Staged employee rows -> {employee id: e-mail}, the `employee_emails` of the account and opportunity
    staging."""
    emails = {}
    for row in employee_rows:
        email = row.get("email")
        raw_id: Any = row.get("kaseya_id")  # absent or not a number: not an employee to look up
        try:
            kaseya_id = int(raw_id)
        except (TypeError, ValueError):
            continue
        if isinstance(email, str) and email:
            emails[kaseya_id] = email
    return emails


def status_kind(status_action: str | None) -> str:
    """open | won | lost from Kaseya's StatusActionName ("Won", "Lost"; anything else is open)."""
    lowered = (status_action or "").strip().lower()
    return lowered if lowered in ("won", "lost") else "open"


def stage_opportunity_statuses(records: Iterable[Any]) -> list[dict[str, Any]]:
    """`GET /v2/crm/opportunities/statuses/Lookup` records -> `OpportunityStatusModel` rows."""

    def build(record: Mapping[str, Any], kaseya_id: int) -> dict[str, Any]:
        action = _text(record, "status_action", "StatusActionName")
        return {
            "kaseya_id": kaseya_id,
            "name": _text(record, "name", "Name"),
            "probability": _number(record, "probability", "Probability"),
            "is_active": _flag(record, "is_active", "IsActive"),
            "is_pipeline": _flag(record, "is_pipeline", "IsPipeline"),
            "status_action_id": _integer(record, "status_action_id", "StatusActionId"),
            "status_action": action,
            "kind": status_kind(action),
        }

    return _stage("opportunity_statuses", records, build)
