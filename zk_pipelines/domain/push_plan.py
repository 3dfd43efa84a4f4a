"""The push of a Zomentum document to Kaseya, decided without I/O: request bodies, markers, overrides, the
quote-line reconciliation, read-back comparison and the dry-run rendering.

The orchestration layer reads (the id map, Kaseya's lookups and existing records), calls these functions,
and sends the `PlannedRequest`s they return; `zk push --dry-run` renders the same requests instead. So a dry
run shows exactly what a real push sends.

Decisions the issue leaves open:
- Exactly once: the opportunity's `Description` carries `[zk_pipelines document <id>]` (appended once, kept
  on every update, several documents of one opportunity each add theirs); the quote's `Name` ends with the
  same marker, because the quote DTO has no description and a crash between creating the quote and writing
  anything else must still leave a findable record. Quote lines carry their `line_key` in `ExtDistReference`
  (see `bundles`). An account created by the push carries `[zk_pipelines client <id>]` in its description.
- Full replaces (`PUT`): each field takes, in order, an override, our mapped value, Kaseya's existing value,
  the caller's default. A mapped value Zomentum does not have (None) keeps Kaseya's, rather than wiping what
  Kaseya users entered. Defaults apply on create, and on update only to a required field Kaseya has no value
  for (the output DTO allows a null `RatingId`; the input requires one).
- Wire values: money as JSON numbers rounded to the cent half up (the Kaseya client serialises with
  `json`, which has no Decimal), date-times naive UTC `YYYY-MM-DDTHH:MM:SS` (as `kaseya_wire` assumes), a
  date as its midnight.
- A quote line without a description is described by its item name (Kaseya would otherwise copy in the
  catalogue item's description on create, which then never reads back as sent).
- Quote line margin: percent of the unit price, rounded to 2 decimals, `MarginType` 1 (ASSUMED: 1 means
  percent, as the sandbox seeds it). A PUT must carry it or Kaseya resets it to 0.
- Catalogue items: inventory products through `POST /v2/inventory/products` (unpublished) with the default
  warehouse and category and the item's own type, price and cost (its first pricing option, never a bundle
  child's 0 or share), found again by product number (the manufacturer part number, else `ZOM-<item id>`);
  services, labour, bundles priced as one service and setup fees through the published
  `POST /v2/admin/finance/services/services`, found again by exact name. Kaseya quotes labour lines against
  service ids (line item type 3), so the default labour period only applies to a product of type Labour.
- Quote lines are matched by what they are (item, occurrence, bundle: the key in `ExtDistReference`), not by
  Zomentum's line id, which changes with every revision. Lines that carry one of our keys for this document
  but are no longer planned (the bundle mode changed, a line was removed) cannot be deleted through the API:
  they are "retired" (quantity, prices and discount 0, description prefixed `RETIRED_LINE_NOTE`) once, and
  left alone after that. Lines without our key (added by hand in Kaseya) are never touched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from zk_pipelines.domain.bundles import (
    CENT,
    LineRole,
    PlannedLine,
    PushPlanError,
    is_line_key_of,
    line_key,
    planned_amount,
    to_cents,
)
from zk_pipelines.domain.kaseya_endpoints import ENDPOINTS, NO_DISTRIBUTOR, QUOTE_LINE_ITEM_TYPE_IDS, Endpoint
from zk_pipelines.domain.kaseya_staging import parse_kaseya_moment
from zk_pipelines.domain.settings import KaseyaItemType
from zk_pipelines.domain.settings_check import ResolvedSettings
from zk_pipelines.domain.text_table import aligned_columns

# --------------------------------------------------------------------------------------------------------
# The Kaseya operations a push sends: rows of the client's endpoint table (`domain/kaseya_endpoints.py`).

PUSH_ENDPOINTS = frozenset({
    "create_account", "create_contact", "create_opportunity", "update_opportunity", "create_quote", "update_quote",
    "add_quote_line_item", "update_quote_line_item", "create_service", "create_product",
})

MARGIN_TYPE_PERCENT = 1  # ASSUMED, as the sandbox seeds quote lines and services

# Kaseya's ProductType names (a sandbox lookup table, ASSUMED) by Zomentum item type.
KASEYA_PRODUCT_TYPE_BY_PRODUCT_TYPE: Mapping[str, str] = MappingProxyType({
    "hardware": "Hardware", "software": "Software", "service": "Service", "labor": "Labour",
})

# OpportunityInputDto, in the contract's order, and the fields it requires.
OPPORTUNITY_FIELDS = ("Subject", "StatusId", "AccountId", "AccountLocationId", "ContactId", "TypeId", "Probability",
                      "RatingId", "LeadSourceId", "SalesRepresentativeUserId", "Amount", "Description", "CustomerPO",
                      "CloseDate")
OPPORTUNITY_REQUIRED = ("Subject", "StatusId", "AccountId", "AccountLocationId", "TypeId", "Probability", "RatingId",
                        "SalesRepresentativeUserId", "Amount", "CloseDate")
# QuotationInputDto (unpublished, as the sandbox accepts it). The push always sends every field: a quote
# without an opportunity or location is not one the push makes, and Kaseya would fill a missing location in.
QUOTE_FIELDS = ("Name", "OpportunityId", "AccountId", "LocationId", "StatusId", "ExpiryDate",
                "SalesRepresentativeUserId")

# What is compared after a push (every field sent that Kaseya reads back as sent; Margin is recomputed).
OPPORTUNITY_READBACK_FIELDS = OPPORTUNITY_FIELDS
QUOTE_READBACK_FIELDS = QUOTE_FIELDS
QUOTE_LINE_READBACK_FIELDS = ("Name", "Description", "ExtDistReference", "UnitPrice", "UnitCost", "Quantity",
                              "Discount", "Taxable")

_MONEY_FIELDS = frozenset({"Amount", "UnitPrice", "UnitCost", "Discount"})
_DATETIME_FIELDS = frozenset({"CloseDate", "ExpiryDate"})


# --------------------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class PendingId:
    """The id of a record the same push creates first; known only once it is sent."""

    what: str  # "opportunity", "quote", "account", "product for line zk:D1:L2", ...

    def __str__(self) -> str:
        return f"<id of the new {self.what}>"


KaseyaId = int | PendingId


@dataclass(frozen=True)
class PlannedRequest:
    """One Kaseya request. `endpoint` and `path_params` are what `KaseyaClient.call` takes; `body` is
    JSON-ready once every `PendingId` in it is replaced (`with_ids`)."""

    endpoint: str
    method: str
    path: str
    body: Any
    purpose: str
    path_params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> frozenset[PendingId]:
        return frozenset(_pending_in(self.body)) | frozenset(_pending_in(dict(self.path_params)))

    def with_ids(self, ids: Mapping[PendingId, int]) -> PlannedRequest:
        """The request with the ids of records created earlier in the push filled in."""
        params = {key: _fill(value, ids) for key, value in self.path_params.items()}
        return replace(self, path_params=params, path=_path(self.endpoint, params), body=_fill(self.body, ids))

    def as_record(self) -> dict[str, Any]:
        """For the push ledger: what was sent."""
        return {"endpoint": self.endpoint, "method": self.method, "path": self.path, "body": self.body,
                "purpose": self.purpose}


def _pending_in(value: Any) -> list[PendingId]:
    if isinstance(value, PendingId):
        return [value]
    if isinstance(value, Mapping):
        return [p for item in value.values() for p in _pending_in(item)]
    if isinstance(value, list | tuple):
        return [p for item in value for p in _pending_in(item)]
    return []


def _fill(value: Any, ids: Mapping[PendingId, int]) -> Any:
    if isinstance(value, PendingId):
        return ids.get(value, value)
    if isinstance(value, Mapping):
        return {key: _fill(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    return value


def _push_endpoint(name: str) -> Endpoint:
    if name not in PUSH_ENDPOINTS:
        raise KeyError(name)
    return ENDPOINTS[name]


def _path(endpoint: str, params: Mapping[str, Any]) -> str:
    # Not `Endpoint.path`: a parameter may still be a placeholder (`PendingId`), filled in when it is sent.
    return _push_endpoint(endpoint).template.format(**{key: str(value) for key, value in params.items()})


def planned_request(endpoint: str, purpose: str, body: Any = None, **path_params: Any) -> PlannedRequest:
    method = _push_endpoint(endpoint).method
    return PlannedRequest(endpoint, method, _path(endpoint, path_params), body, purpose, dict(path_params))


# --------------------------------------------------------------------------------------------------------
# Markers

_MARKER = re.compile(r"\[zk_pipelines (document|client) ([^\[\]\s]+)\]")


def _marker(kind: str, record_id: str) -> str:
    if not record_id or re.search(r"[\[\]\s]", record_id):
        raise PushPlanError(f"a Zomentum {kind} id cannot be empty or contain spaces or brackets: {record_id!r}")
    return f"[zk_pipelines {kind} {record_id}]"


def document_marker(document_id: str) -> str:
    """The text that ties a Kaseya record to the Zomentum document it was pushed from."""
    return _marker("document", document_id)


def client_marker(client_id: str) -> str:
    return _marker("client", client_id)


def _marked(text: str | None, kind: str) -> tuple[str, ...]:
    return tuple(m.group(2) for m in _MARKER.finditer(text or "") if m.group(1) == kind)


def document_markers(text: str | None) -> tuple[str, ...]:
    """Every document id marked in `text`, in order."""
    return _marked(text, "document")


def client_markers(text: str | None) -> tuple[str, ...]:
    """Every client id marked in `text` (an account the push created), in order."""
    return _marked(text, "client")


def find_marker(text: str | None) -> str | None:
    """The first document id marked in `text`, or None."""
    found = document_markers(text)
    return found[0] if found else None


def with_marker(text: str | None, marker: str, separator: str = "\n\n") -> str:
    """`text` ending with `marker`, appended only when `text` does not already carry it."""
    text = (text or "").rstrip()
    if marker in text:
        return text
    return f"{text}{separator}{marker}" if text else marker


# --------------------------------------------------------------------------------------------------------
# Overrides (`zk push DOCUMENT --set field=value`, or the push job's config)


class OverrideKind(StrEnum):
    TEXT = "text"
    DATE = "date (YYYY-MM-DD)"
    PERCENT = "percentage (0-100)"
    MONEY = "amount (at most 2 decimals, not negative)"
    ID = "Kaseya id (a positive whole number)"


@dataclass(frozen=True)
class OverridableField:
    kaseya_field: str
    kind: OverrideKind


OPPORTUNITY_OVERRIDABLE: Mapping[str, OverridableField] = MappingProxyType({
    "subject": OverridableField("Subject", OverrideKind.TEXT),
    "close_date": OverridableField("CloseDate", OverrideKind.DATE),
    "probability": OverridableField("Probability", OverrideKind.PERCENT),
    "amount": OverridableField("Amount", OverrideKind.MONEY),
    "customer_po": OverridableField("CustomerPO", OverrideKind.TEXT),
    "description": OverridableField("Description", OverrideKind.TEXT),
    "status_id": OverridableField("StatusId", OverrideKind.ID),
    "type_id": OverridableField("TypeId", OverrideKind.ID),
    "rating_id": OverridableField("RatingId", OverrideKind.ID),
    "lead_source_id": OverridableField("LeadSourceId", OverrideKind.ID),
    "contact_id": OverridableField("ContactId", OverrideKind.ID),
    "sales_representative_user_id": OverridableField("SalesRepresentativeUserId", OverrideKind.ID),
})

QUOTE_OVERRIDABLE: Mapping[str, OverridableField] = MappingProxyType({
    "quote.name": OverridableField("Name", OverrideKind.TEXT),
    "quote.expiry_date": OverridableField("ExpiryDate", OverrideKind.DATE),
    "quote.status_id": OverridableField("StatusId", OverrideKind.ID),
    "quote.sales_representative_user_id": OverridableField("SalesRepresentativeUserId", OverrideKind.ID),
})


class OverrideError(PushPlanError):
    """Some `field=value` overrides are unusable; the message lists each and the allowed keys."""


@dataclass(frozen=True)
class PushOverrides:
    """Parsed overrides by key (`subject`, `quote.name`, ...), values typed by their kind."""

    opportunity: Mapping[str, Any] = field(default_factory=dict)
    quote: Mapping[str, Any] = field(default_factory=dict)


def allowed_override_keys() -> str:
    return ", ".join(f"{key} ({spec.kind})" for key, spec in {**OPPORTUNITY_OVERRIDABLE, **QUOTE_OVERRIDABLE}.items())


def parse_override_value(kind: OverrideKind, raw: object) -> Any:
    """A value of `kind` from text (or an already typed value); raises ValueError saying what was expected."""
    if isinstance(raw, bool) or raw is None:
        raise ValueError(f"expected a {kind}")
    text = raw.isoformat() if isinstance(raw, date) and not isinstance(raw, datetime) else str(raw).strip()
    if kind is OverrideKind.TEXT:
        if not text:
            raise ValueError("expected a non-empty text")
        return text
    if kind is OverrideKind.DATE:
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"expected a {kind}") from None
    if kind is OverrideKind.ID:
        if not text.isdigit() or int(text) == 0:
            raise ValueError(f"expected a {kind}")
        return int(text)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"expected a {kind}") from None
    if not number.is_finite():
        raise ValueError(f"expected a {kind}")
    if kind is OverrideKind.PERCENT:
        if not 0 <= number <= 100:
            raise ValueError(f"expected a {kind}")
        return number
    if number < 0 or number != number.quantize(CENT):
        raise ValueError(f"expected an {kind}")
    return number.quantize(CENT)


def parse_overrides(assignments: Sequence[str] | Mapping[str, object]) -> PushOverrides:
    """`["subject=New title", "quote.name=...", ...]` (or a key -> value mapping) as typed overrides.

    Every problem is reported at once, each naming its key and value, with the allowed keys."""
    pairs: list[tuple[str, object]] = []
    problems: list[str] = []
    if isinstance(assignments, Mapping):
        pairs = [(str(key).strip(), value) for key, value in assignments.items()]
    else:
        for assignment in assignments:
            name, equals, text = assignment.partition("=")
            if not equals:
                problems.append(f"{assignment!r} is not field=value")
                continue
            pairs.append((name.strip(), text))
    opportunity: dict[str, Any] = {}
    quote: dict[str, Any] = {}
    for key, value in pairs:
        spec = OPPORTUNITY_OVERRIDABLE.get(key) or QUOTE_OVERRIDABLE.get(key)
        target = opportunity if key in OPPORTUNITY_OVERRIDABLE else quote
        if spec is None:
            problems.append(f"{key!r} is not a field that can be set")
            continue
        if key in target:
            problems.append(f"{key} is set more than once")
            continue
        try:
            target[key] = parse_override_value(spec.kind, value)
        except ValueError as exc:
            problems.append(f"{key}={value!r}: {exc}")
    if problems:
        raise OverrideError("cannot use the overrides:\n" + "\n".join(f"  - {p}" for p in problems)
                            + f"\nallowed keys: {allowed_override_keys()}")
    return PushOverrides(MappingProxyType(opportunity), MappingProxyType(quote))


def _override_values(
    overrides: Mapping[str, Any] | None, table: Mapping[str, OverridableField], document_id: str
) -> dict[str, Any]:
    """Overrides keyed by the Kaseya field they set; raw text is parsed as `parse_overrides` would."""
    values: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        spec = table.get(key)
        if spec is None:
            raise OverrideError(f"document {document_id}: {key!r} is not a field that can be set here; "
                                f"allowed: {', '.join(table)}")
        try:
            values[spec.kaseya_field] = parse_override_value(spec.kind, value)
        except ValueError as exc:
            raise OverrideError(f"document {document_id}: {key}={value!r}: {exc}") from None
    return values


# --------------------------------------------------------------------------------------------------------
# Wire values


def _get(record: Mapping[str, Any] | None, name: str) -> Any:
    """A field of a Kaseya record by name, whatever the case of its key (None when absent)."""
    if not record:
        return None
    if name in record:
        return record[name]
    folded = name.lower()
    return next((value for key, value in record.items() if isinstance(key, str) and key.lower() == folded), None)


def _has(record: Mapping[str, Any], name: str) -> bool:
    folded = name.lower()
    return any(isinstance(key, str) and key.lower() == folded for key in record)


def _as_datetime(value: Any) -> datetime | None:
    """A date, date-time or date-time text as Kaseya's date-times are read (`parse_kaseya_moment`); None for
    anything else, text included that is not in ISO form."""
    if isinstance(value, str) and not _DATETIME_TEXT.match(value.strip()):
        return None
    try:
        return parse_kaseya_moment(value)
    except ValueError:
        return None


_DATETIME_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def wire_datetime(value: date | datetime | str) -> str:
    """A date-time as Kaseya takes it: naive UTC to the second (a date is its midnight)."""
    moment = _as_datetime(value)
    if moment is None:
        raise PushPlanError(f"{value!r} is not a date or date-time")
    return moment.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S")


def wire_money(amount: Decimal | float | int) -> float:
    return float(to_cents(Decimal(str(amount))))


def wire_number(value: Decimal | float | int) -> float:
    return float(Decimal(str(value)))


def _wire(name: str, value: Any) -> Any:
    if value is None or isinstance(value, PendingId):
        return value
    if name in _DATETIME_FIELDS:
        return wire_datetime(value)
    if name in _MONEY_FIELDS:
        return wire_money(value)
    if isinstance(value, Decimal):
        return wire_number(value)
    return value


def _merge(
    names: Sequence[str],
    overrides: Mapping[str, Any],
    ours: Mapping[str, Any],
    existing: Mapping[str, Any] | None,
    defaults: Mapping[str, Any],
    required: Sequence[str],
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in names:
        if name in overrides:
            value = overrides[name]
        elif ours.get(name) is not None:
            value = ours[name]
        elif existing is not None and _get(existing, name) is not None:
            value = _get(existing, name)
        elif existing is None or name in required:
            value = defaults.get(name)
        else:
            value = None
        body[name] = value
    return body


def _missing(body: Mapping[str, Any], required: Sequence[str], record: str, document_id: str,
             table: Mapping[str, OverridableField]) -> None:
    missing = [name for name in required if body.get(name) is None or body.get(name) == ""]
    if not missing:
        return
    hints = {spec.kaseya_field: key for key, spec in table.items()}
    named = ", ".join(f"{name} (set it with --set {hints[name]}=...)" if name in hints else name for name in missing)
    raise PushPlanError(f"document {document_id}: the Kaseya {record} needs {named}, and nothing supplies it")


# --------------------------------------------------------------------------------------------------------
# The opportunity


@dataclass(frozen=True)
class OpportunityFields:
    """The opportunity fields the push maps from Zomentum; None means "Zomentum has no value"."""

    document_id: str
    subject: str | None
    status_id: int | None
    account_id: KaseyaId | None
    account_location_id: KaseyaId | None
    sales_representative_user_id: int | None
    amount: Decimal | None
    close_date: date | datetime | None
    probability: Decimal | None = None
    contact_id: KaseyaId | None = None
    customer_po: str | None = None


@dataclass(frozen=True)
class OpportunityDefaults:
    """Values for the fields the push does not map, when Kaseya has none (from Kaseya's lookups)."""

    type_id: int | None = None
    rating_id: int | None = None
    lead_source_id: int | None = None
    probability: Decimal | None = None


def opportunity_body(
    existing: Mapping[str, Any] | None,
    fields: OpportunityFields,
    overrides: Mapping[str, Any] | None = None,
    *,
    defaults: OpportunityDefaults | None = None,
) -> dict[str, Any]:
    """The `OpportunityInputDto` for a create (`existing` None) or a full-replace update of `existing`
    (the opportunity as Kaseya returns it, any key case)."""
    defaults = defaults or OpportunityDefaults()
    ours = {
        "Subject": fields.subject.strip() if fields.subject else None,
        "StatusId": fields.status_id,
        "AccountId": fields.account_id,
        "AccountLocationId": fields.account_location_id,
        "ContactId": fields.contact_id,
        "Probability": fields.probability,
        "SalesRepresentativeUserId": fields.sales_representative_user_id,
        "Amount": fields.amount,
        "CustomerPO": fields.customer_po,
        "CloseDate": fields.close_date,
    }
    fallback = {"TypeId": defaults.type_id, "RatingId": defaults.rating_id, "LeadSourceId": defaults.lead_source_id,
                "Probability": defaults.probability}
    body = _merge(OPPORTUNITY_FIELDS, _override_values(overrides, OPPORTUNITY_OVERRIDABLE, fields.document_id),
                  ours, existing, fallback, OPPORTUNITY_REQUIRED)
    body["Description"] = with_marker(body["Description"], document_marker(fields.document_id))
    _missing(body, OPPORTUNITY_REQUIRED, "opportunity", fields.document_id, OPPORTUNITY_OVERRIDABLE)
    if not 0 <= Decimal(str(body["Probability"])) <= 100:
        raise PushPlanError(f"document {fields.document_id}: the opportunity's Probability {body['Probability']} "
                            "is not between 0 and 100")
    return {name: _wire(name, value) for name, value in body.items()}


def opportunity_request(opportunity_id: int | None, body: Mapping[str, Any]) -> PlannedRequest:
    if opportunity_id is None:
        return planned_request("create_opportunity", "create the opportunity", dict(body))
    return planned_request("update_opportunity", f"update opportunity {opportunity_id} (full replace)", dict(body),
                           opportunity_id=opportunity_id)


# --------------------------------------------------------------------------------------------------------
# The quote


@dataclass(frozen=True)
class QuoteFields:
    document_id: str
    name: str | None
    opportunity_id: KaseyaId | None
    account_id: KaseyaId | None
    location_id: KaseyaId | None
    status_id: int | None
    expiry_date: date | datetime | None
    sales_representative_user_id: int | None


def quote_body(
    existing: Mapping[str, Any] | None, fields: QuoteFields, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The (unpublished) `QuotationInputDto` for a create or a full-replace update; `Name` ends with the
    document marker, so the quote is found again if the push dies right after creating it."""
    values = _override_values(overrides, QUOTE_OVERRIDABLE, fields.document_id)
    ours = {
        "Name": fields.name.strip() if fields.name else None,
        "OpportunityId": fields.opportunity_id,
        "AccountId": fields.account_id,
        "LocationId": fields.location_id,
        "StatusId": fields.status_id,
        "ExpiryDate": fields.expiry_date,
        "SalesRepresentativeUserId": fields.sales_representative_user_id,
    }
    body = _merge(QUOTE_FIELDS, values, ours, existing, {}, QUOTE_FIELDS)
    _missing(body, QUOTE_FIELDS, "quote", fields.document_id, QUOTE_OVERRIDABLE)
    body["Name"] = with_marker(body["Name"], document_marker(fields.document_id), " ")
    return {name: _wire(name, value) for name, value in body.items()}


def quote_request(quote_id: KaseyaId | None, body: Mapping[str, Any]) -> PlannedRequest:
    if quote_id is None:
        return planned_request("create_quote", "create the quote (unpublished endpoint)", dict(body))
    return planned_request("update_quote", f"update quote {quote_id} (full replace, unpublished endpoint)",
                           dict(body), quote_id=quote_id)


# --------------------------------------------------------------------------------------------------------
# Quote lines


def _margin(line: PlannedLine) -> float:
    if line.unit_price == 0:
        return 0.0
    margin = (line.unit_price - line.unit_cost) / line.unit_price * 100
    return float(margin.quantize(CENT, rounding=ROUND_HALF_UP))


def quote_line_body(line: PlannedLine, kaseya_item_id: KaseyaId) -> dict[str, Any]:
    """The `QuotationLineItemInputDto` for a planned line; `kaseya_item_id` is the catalogue item (a
    ProductIndexId for a product, a service id for a service or labour line).

    A line without a description is described by its item name: Kaseya fills an empty description in from
    the catalogue item on create (and a PUT would then empty it again), so an empty one never reads back as
    sent."""
    return {
        "Id": kaseya_item_id,
        "Name": line.item_name,
        "Description": line.description.strip() or line.item_name,
        "ExtDistReference": line.line_key,
        "Image": None,
        "UnitPrice": wire_number(line.unit_price),
        "UnitCost": wire_number(line.unit_cost),
        "Quantity": wire_number(line.quantity),
        "Margin": _margin(line),
        "MarginType": MARGIN_TYPE_PERCENT,
        "Discount": wire_number(line.discount),
        "Taxable": line.taxable,
    }


def quote_line_request(
    quote_id: KaseyaId, line: PlannedLine, kaseya_item_id: KaseyaId, existing_line_id: int | None = None
) -> PlannedRequest:
    body = quote_line_body(line, kaseya_item_id)
    if existing_line_id is None:
        return planned_request("add_quote_line_item", f"add quote line {line.line_key} ({line.item_type.label})",
                               body, quote_id=quote_id, item_type_id=QUOTE_LINE_ITEM_TYPE_IDS[line.item_type],
                               distributer_type_id=NO_DISTRIBUTOR)
    return planned_request("update_quote_line_item", f"update quote line {line.line_key}", body,
                           quote_id=quote_id, line_item_id=existing_line_id)


@dataclass(frozen=True)
class LineReconciliation:
    """How the planned lines meet the quote's existing lines on a (re-)push."""

    to_create: tuple[PlannedLine, ...]
    to_update: tuple[tuple[PlannedLine, int], ...]  # (line, Kaseya line item id)
    to_retire: tuple[Mapping[str, Any], ...]  # our lines no longer planned, or a second line with one key


def _is_retired(line: Mapping[str, Any]) -> bool:
    return all(not _get(line, name) for name in ("Quantity", "UnitPrice", "Discount"))


def reconcile_quote_lines(
    document_id: str, planned: Sequence[PlannedLine], existing: Sequence[Mapping[str, Any]]
) -> LineReconciliation:
    """Match planned lines to the quote's existing lines by the key in `ExtDistReference` (what the line is:
    item, occurrence, bundle; `bundles.line_identities`): a match is updated, the rest created, and our lines
    that match nothing are retired (once). A retired line whose item comes back is matched and revived."""
    ours: dict[str, list[Mapping[str, Any]]] = {}
    for line in existing:
        reference = _get(line, "ExtDistReference")
        if is_line_key_of(reference, document_id):
            ours.setdefault(reference, []).append(line)
    to_create: list[PlannedLine] = []
    to_update: list[tuple[PlannedLine, int]] = []
    unplanned: list[Mapping[str, Any]] = []
    for planned_line in planned:
        # A line pushed before keys said what a line is carries its Zomentum line id instead (that revision's).
        legacy = line_key(document_id, planned_line.source_line_id, planned_line.bundle_line_id,
                          setup_fee=planned_line.role is LineRole.SETUP_FEE)
        matches = ours.pop(planned_line.line_key, None) or ours.pop(legacy, None)
        if not matches:
            to_create.append(planned_line)
        else:
            first, *others = matches
            to_update.append((planned_line, int(_get(first, "Id"))))
            unplanned += others
    unplanned += [line for lines in ours.values() for line in lines]
    to_retire = tuple(line for line in unplanned if not _is_retired(line))
    return LineReconciliation(tuple(to_create), tuple(to_update), to_retire)


def quote_line_requests(
    quote_id: KaseyaId,
    document_id: str,
    planned: Sequence[PlannedLine],
    existing: Sequence[Mapping[str, Any]],
    item_ids: Mapping[str, KaseyaId],
) -> tuple[PlannedRequest, ...]:
    """The line requests of a (re-)push, in document order: adds for new lines, updates only for lines that
    differ from what Kaseya has, then the retirements. `item_ids` maps each line key to its catalogue item."""
    missing = [line.line_key for line in planned if line.line_key not in item_ids]
    if missing:
        raise PushPlanError(f"document {document_id}: no Kaseya catalogue item for line(s) {', '.join(missing)}")
    reconciliation = reconcile_quote_lines(document_id, planned, existing)
    existing_ids = {line.line_key: line_id for line, line_id in reconciliation.to_update}
    by_id = {int(_get(line, "Id")): line for line in existing if _get(line, "Id") is not None}
    requests = []
    for line in planned:
        line_id = existing_ids.get(line.line_key)
        body = quote_line_body(line, item_ids[line.line_key])
        if line_id is not None and not line_needs_update(body, by_id[line_id]):
            continue
        requests.append(quote_line_request(quote_id, line, item_ids[line.line_key], line_id))
    requests += [retire_line_request(quote_id, line) for line in reconciliation.to_retire]
    return tuple(requests)


# Kaseya's published contract has no delete for a quote line (only create, read and update): a line the
# document no longer has is retired by a PUT (quantity, prices and discount 0), its description starting with
# this note, its name and key kept, so it stays recognisable, totals 0, and is revived if its item comes back.
RETIRED_LINE_NOTE = "[removed from the Zomentum document]"


def retired_line_body(existing: Mapping[str, Any]) -> dict[str, Any]:
    """A PUT that zeroes one of our lines the document no longer has (`RETIRED_LINE_NOTE`). `Id` 0: the line's
    catalogue item is not in the read DTO (ASSUMED: a PUT ignores it, as the sandbox does)."""
    description = str(_get(existing, "Description") or "")
    if not description.startswith(RETIRED_LINE_NOTE):
        description = f"{RETIRED_LINE_NOTE} {description}".strip()
    return {
        "Id": 0,
        "Name": _get(existing, "Name"),
        "Description": description,
        "ExtDistReference": _get(existing, "ExtDistReference"),
        "Image": _get(existing, "Image"),
        "UnitPrice": 0.0,
        "UnitCost": 0.0,
        "Quantity": 0.0,
        "Margin": 0.0,
        "MarginType": MARGIN_TYPE_PERCENT,
        "Discount": 0.0,
        "Taxable": bool(_get(existing, "Taxable")),
    }


def retire_line_request(quote_id: KaseyaId, existing: Mapping[str, Any]) -> PlannedRequest:
    return planned_request("update_quote_line_item",
                           f"retire quote line {_get(existing, 'ExtDistReference')} (no longer in the document)",
                           retired_line_body(existing), quote_id=quote_id, line_item_id=int(_get(existing, "Id")))


# --------------------------------------------------------------------------------------------------------
# Catalogue items the quote lines refer to


@dataclass(frozen=True)
class CatalogueDefaults:
    """The settings' defaults for created products and services, as Kaseya ids."""

    product_category_id: int
    warehouse_id: int
    labour_period_id: int
    product_type_ids: Mapping[str, int]  # Kaseya ProductType name -> id


def product_number(line: PlannedLine) -> str:
    """The Kaseya product number a product line is found and created by."""
    if line.manufacturer_part_number:
        return line.manufacturer_part_number
    if line.zomentum_item_id:
        return f"ZOM-{line.zomentum_item_id}"
    raise PushPlanError(f"document {line.document_id}, line {line.source_line_id} ({line.item_name!r}): a product "
                        "without a Zomentum item or a manufacturer part number cannot be found or created in Kaseya")


def is_catalogue_product(line: PlannedLine) -> bool:
    """Products live in the inventory catalogue; services, labour, bundles and setup fees in the services one."""
    return line.item_type is KaseyaItemType.INVENTORY_PRODUCT


def _catalogue_amounts(line: PlannedLine) -> dict[str, float]:
    """The created item's own price and cost (the Zomentum item's), never a bundle child's 0 or its share."""
    price = line.catalogue_price if line.catalogue_price is not None else Decimal(0)
    cost = line.catalogue_cost if line.catalogue_cost is not None else line.unit_cost
    return {"UnitPrice": wire_number(price), "UnitCost": wire_number(cost)}


def product_body(line: PlannedLine, defaults: CatalogueDefaults) -> dict[str, Any]:
    """The (unpublished) `ProductInputDto` for a product line's item that Kaseya does not have yet."""
    if not is_catalogue_product(line):
        raise PushPlanError(f"line {line.line_key} is a {line.item_type.label}, not an inventory product")
    type_name = KASEYA_PRODUCT_TYPE_BY_PRODUCT_TYPE.get(line.product_type, "Hardware")
    if type_name not in defaults.product_type_ids:
        raise PushPlanError(f"Kaseya has no product type named {type_name!r} (known: "
                            f"{', '.join(defaults.product_type_ids) or 'none'})")
    return {
        "ProductNumber": product_number(line),
        "ProductName": line.item_name,
        "ProductDescription": line.description or None,
        "CategoryId": defaults.product_category_id,
        "ProductTypeId": defaults.product_type_ids[type_name],
        "WarehouseId": defaults.warehouse_id,
        "LabourPeriodId": defaults.labour_period_id if type_name == "Labour" else None,
        **_catalogue_amounts(line),
    }


def service_body(line: PlannedLine, defaults: CatalogueDefaults) -> dict[str, Any]:
    """The `ServiceInputDto` for a service, labour, bundle or setup-fee line's item."""
    if is_catalogue_product(line):
        raise PushPlanError(f"line {line.line_key} is an inventory product, not a service")
    return {
        "Id": 0,
        "Name": line.item_name,
        "Description": None if line.role is LineRole.SETUP_FEE else (line.description or None),
        **_catalogue_amounts(line),
        "CategoryId": defaults.product_category_id,
        "IsActive": True,
        "IsTaxable": line.taxable,
    }


def catalogue_request(line: PlannedLine, defaults: CatalogueDefaults) -> PlannedRequest:
    if is_catalogue_product(line):
        return planned_request("create_product", f"create product {product_number(line)} for line {line.line_key} "
                               "(unpublished endpoint)", product_body(line, defaults))
    return planned_request("create_service", f"create service {line.item_name!r} for line {line.line_key}",
                           service_body(line, defaults))


def catalogue_pending_id(line: PlannedLine) -> PendingId:
    """The placeholder for the catalogue item a push creates for `line` (one per product number or name)."""
    if is_catalogue_product(line):
        return PendingId(f"product {product_number(line)}")
    return PendingId(f"service {line.item_name}")


def match_product(line: PlannedLine, rows: Sequence[Mapping[str, Any]]) -> int | None:
    """The ProductIndexId among `products/searchselect` rows (a "contains" search) whose product number is
    exactly the line's, ignoring case."""
    wanted = product_number(line).casefold()
    for row in rows:
        if str(_get(row, "ProductNumber") or "").strip().casefold() == wanted:
            return int(_get(row, "ProductIndexId"))
    return None


def match_service(line: PlannedLine, rows: Sequence[Mapping[str, Any]]) -> int | None:
    """The id of the service named exactly as the line's item, ignoring case."""
    wanted = line.item_name.strip().casefold()
    for row in rows:
        if str(_get(row, "Name") or "").strip().casefold() == wanted:
            return int(_get(row, "Id"))
    return None


# --------------------------------------------------------------------------------------------------------
# Accounts and contacts the push creates


@dataclass(frozen=True)
class AccountDefaults:
    account_type_ids: Mapping[str, int]  # Kaseya account type name -> id
    business_type_id: int
    account_manager_id: int  # the resolved sales representative
    account_type: str = "Customer"  # when the client's company type is not a Kaseya account type


MAIN_LOCATION_NAME = "Main"


def _address(address: Mapping[str, Any], *, main: bool, phone: str | None = None) -> dict[str, Any]:
    return {
        "Address1": address.get("address_line_1"),
        "Address2": address.get("address_line_2"),
        "City": address.get("city"),
        "State": address.get("state"),
        "ZipCode": address.get("pincode"),
        "Country": address.get("country"),
        "Phone": address.get("phone") or phone,
        "IsMain": main,
        "IsBilling": main,
        "AddressType": None if main else "Shipping",
    }


def account_body(client: Mapping[str, Any], defaults: AccountDefaults) -> dict[str, Any]:
    """The `AccountPostInputDto` for a Zomentum client Kaseya does not have: one main location holding the
    billing address (main and billing) and the shipping addresses."""
    name = (client.get("name") or "").strip()
    if not name:
        raise PushPlanError(f"Zomentum client {client.get('id')} has no name")
    company_type = (client.get("company_type") or "").strip().title()
    type_name = company_type if company_type in defaults.account_type_ids else defaults.account_type
    if type_name not in defaults.account_type_ids:
        raise PushPlanError(f"Kaseya has no account type named {type_name!r} "
                            f"(known: {', '.join(defaults.account_type_ids) or 'none'})")
    addresses = []
    if client.get("billing_address"):
        addresses.append(_address(client["billing_address"], main=True, phone=client.get("phone")))
    addresses += [_address(a, main=False) for a in client.get("shipping_addresses") or []]
    return {
        "AccountName": name,
        "AccountTypeId": defaults.account_type_ids[type_name],
        "BusinessTypeId": defaults.business_type_id,
        "AccountManagerId": defaults.account_manager_id,
        "Description": client_marker(str(client["id"])),
        "Website": client.get("website") or None,
        "IsActive": True,
        "Locations": [{"LocationName": MAIN_LOCATION_NAME, "IsMain": True, "IsActive": True,
                       "Addresses": addresses}],
        "RouteInvoiceToParent": False,
    }


def contact_body(
    client_user: Mapping[str, Any], *, account_id: KaseyaId, location_id: KaseyaId, email_type_id: int,
    phone_type_id: int,
) -> dict[str, Any]:
    """The `ContactInputDto` for a Zomentum contact Kaseya does not have (Kaseya needs both names)."""
    name = client_user.get("name") or {}
    first, last = (name.get("first") or "").strip(), (name.get("last") or "").strip()
    if not first or not last:
        raise PushPlanError(f"Zomentum contact {client_user.get('id')} ({first} {last}): Kaseya needs a first and "
                            "a last name; add the missing one in Zomentum")
    email, phone = (client_user.get("email") or "").strip(), (client_user.get("phone") or "").strip()
    return {
        "FirstName": first,
        "LastName": last,
        "AccountId": account_id,
        "LocationId": location_id,
        "Emails": [{"EmailAddress": email, "EmailTypeId": email_type_id, "IsDefault": True}] if email else [],
        "Phones": [{"PhoneNumber": phone, "PhoneTypeId": phone_type_id, "IsDefault": True}] if phone else [],
    }


# --------------------------------------------------------------------------------------------------------
# Resolutions (step 1) as the dry run shows them


@dataclass(frozen=True)
class Resolution:
    """How one Zomentum thing became a Kaseya id: `what` (Zomentum side), `result` (Kaseya side), `how`."""

    what: str
    result: str
    how: str


def sales_representative_for(owner_email: str | None, resolved: ResolvedSettings) -> tuple[int, Resolution]:
    """The Kaseya employee with the owner's e-mail (any case), else the fallback sales representative."""
    employees = {email.casefold(): (email, employee_id) for email, employee_id in resolved.kaseya.employees.items()}
    what = f"owner {owner_email}" if owner_email else "owner (none)"
    if owner_email and owner_email.strip().casefold() in employees:
        email, employee_id = employees[owner_email.strip().casefold()]
        return employee_id, Resolution(what, f"sales representative {email} (id {employee_id})", "same e-mail")
    fallback = resolved.fallback_sales_representative
    return int(fallback.id), Resolution(what, f"sales representative {fallback.name} (id {fallback.id})",
                                        "fallback: no Kaseya employee has the owner's e-mail")


def opportunity_status_for(stage_id: str, resolved: ResolvedSettings, *, document_won: bool = False
                           ) -> tuple[int, Resolution]:
    """The Kaseya status for a Zomentum stage by the export mapping, else the default export status.

    A Won document wins its opportunity: when the opportunity still sits in a stage that is not of the won
    kind (nobody moved it yet), the status is exported from its pipeline's first won stage instead, so a Won
    document never reaches Kaseya as an open or lost opportunity."""
    stage = resolved.stage_by_id(stage_id)
    if document_won and stage is not None and stage.kind != "won":
        won = next((s for s in resolved.stages if s.pipeline_id == stage.pipeline_id and s.kind == "won"), None)
        if won is not None:
            status = resolved.export_status(won.stage_id)
            return int(status.id), Resolution(
                f"stage {stage} of a Won document", f"opportunity status {status.name} (id {status.id})",
                f"the document is Won: exported as its pipeline's won stage {won.stage}")
    status = resolved.export_status(stage_id)
    mapped = stage is not None and any(e.stage == stage.ref for e in resolved.settings.opportunity_stages.entries)
    what = f"stage {stage}" if stage is not None else f"stage {stage_id} (unknown)"
    return int(status.id), Resolution(what, f"opportunity status {status.name} (id {status.id})",
                                      "export mapping" if mapped else "default export status")


def quote_status_for(document_status: str, resolved: ResolvedSettings) -> tuple[int, Resolution]:
    status = resolved.quote_status(document_status)
    mapped = any(e.document_status == document_status for e in resolved.settings.document_statuses.entries)
    return int(status.id), Resolution(f"document status {document_status}",
                                      f"quote status {status.name} (id {status.id})",
                                      "document status mapping" if mapped else "default quote status")


# --------------------------------------------------------------------------------------------------------
# Read-back


_NUMBER_TOLERANCE = Decimal("0.005")  # half a cent: floating-point noise, never a real cent


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _same(sent: Any, read: Any) -> bool:
    if sent in (None, "") and read in (None, ""):
        return True
    if isinstance(sent, bool) or isinstance(read, bool):
        return sent is read
    if _is_number(sent) and _is_number(read):
        return abs(Decimal(str(sent)) - Decimal(str(read))) < _NUMBER_TOLERANCE
    sent_moment, read_moment = _as_datetime(sent), _as_datetime(read)
    if sent_moment is not None and read_moment is not None:
        return sent_moment == read_moment
    return sent == read


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def readback_differences(sent: Mapping[str, Any], read_back: Mapping[str, Any], fields: Sequence[str]) -> list[str]:
    """"Field: sent X, Kaseya has Y" for each of `fields` that was sent and reads back differently.

    Keys match in any case; numbers within half a cent are equal; date-times compare as instants (naive
    ones are UTC); null and empty text are equal."""
    differences = []
    for name in fields:
        if not _has(sent, name):
            continue
        mine, theirs = _get(sent, name), _get(read_back, name)
        if not _same(mine, theirs):
            differences.append(f"{name}: sent {_show(mine)}, Kaseya has {_show(theirs)}")
    return differences


def line_needs_update(body: Mapping[str, Any], existing: Mapping[str, Any]) -> bool:
    """Whether an existing quote line differs from what the push would write (a re-push of an unchanged
    document then sends no line updates)."""
    return bool(readback_differences(body, existing, QUOTE_LINE_READBACK_FIELDS))


# --------------------------------------------------------------------------------------------------------
# The plan and the dry run


@dataclass(frozen=True)
class PushPlan:
    document_id: str
    document_version: str
    resolutions: tuple[Resolution, ...]
    requests: tuple[PlannedRequest, ...]
    quote_lines: tuple[PlannedLine, ...] = ()
    document_amount: Decimal | None = None  # what the document's lines add up to, for the dry run's check
    overrides: PushOverrides = field(default_factory=PushOverrides)
    notes: tuple[str, ...] = ()  # e.g. "quotes are not pushed: push_quotes_on_won is off"


def _json_default(value: Any) -> Any:
    if isinstance(value, PendingId):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _plain_number(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")


def render_plan(plan: PushPlan) -> str:
    """The dry run: resolved ids and mapped statuses, overrides, quote lines, then every request in order
    with its method, path, purpose and pretty JSON body, exactly as a push would send it."""
    lines = [f"Push of Zomentum document {plan.document_id} (version {plan.document_version}): "
             f"{len(plan.requests)} request{'s' if len(plan.requests) != 1 else ''}, dry run: nothing is sent"]
    lines += [f"  note: {note}" for note in plan.notes]
    if plan.resolutions:
        lines += ["", "Resolved ids and mapped statuses"]
        lines += aligned_columns([[r.what, "->", r.result, f"({r.how})"] for r in plan.resolutions])
    overrides = {**plan.overrides.opportunity, **plan.overrides.quote}
    if overrides:
        lines += ["", "Overrides"]
        table = {**OPPORTUNITY_OVERRIDABLE, **QUOTE_OVERRIDABLE}
        lines += aligned_columns([[key, "=", str(value), f"(sets {table[key].kaseya_field})"]
                           for key, value in overrides.items()])
    if plan.quote_lines:
        lines += ["", "Quote lines"]
        rows = [["key", "type", "name", "quantity", "unit price", "discount", "total"]]
        rows += [[line.line_key, line.item_type.label, line.item_name, _plain_number(line.quantity),
                  f"{line.unit_price:.2f}", f"{line.discount:.2f}", f"{line.total:.2f}"] for line in plan.quote_lines]
        lines += aligned_columns(rows, right=frozenset({3, 4, 5, 6}))
        total = planned_amount(plan.quote_lines)
        check = "" if plan.document_amount is None else (
            f" (document lines: {plan.document_amount:.2f}"
            f"{'' if plan.document_amount == total else ', DIFFERENT'})")
        lines.append(f"  quote total {total:.2f}{check}")
    lines += ["", "Requests"] if plan.requests else ["", "No requests: Kaseya already matches the document"]
    for number, request in enumerate(plan.requests, start=1):
        lines.append(f"{number}. {request.method} {request.path}")
        lines.append(f"   {request.purpose}")
        if request.body is not None:
            text = json.dumps(request.body, indent=2, ensure_ascii=False, default=_json_default)
            lines += ["   " + row for row in text.splitlines()]
    return "\n".join(lines)
