"""The opportunity's and the quote's request bodies, for a create or a full replace (`PUT`).

Each field takes, in order, an override, our mapped value, Kaseya's existing value, the caller's default. A
mapped value Zomentum does not have (None) keeps Kaseya's, rather than wiping what Kaseya users entered.
Defaults apply on create, and on update only to a required field Kaseya has no value for (the output DTO
allows a null `RatingId`; the input requires one). Each body carries the document's marker (`markers`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from zk_pipelines.domain.bundles import PushPlanError
from zk_pipelines.domain.kaseya_staging import folded_name
from zk_pipelines.domain.push_plan.markers import document_marker, with_marker
from zk_pipelines.domain.push_plan.overrides import (
    OPPORTUNITY_OVERRIDABLE,
    QUOTE_OVERRIDABLE,
    OverridableField,
    override_values,
)
from zk_pipelines.domain.push_plan.requests import KaseyaId, PlannedRequest, planned_request
from zk_pipelines.domain.push_plan.wire import field_of, wire_value

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


@dataclass(frozen=True)
class InputDto:
    """A Kaseya input DTO the push creates or fully replaces: its fields in the contract's order, those it
    requires, the overrides that may set them, and the field that ends with the document's marker."""

    record: str
    fields: tuple[str, ...]
    required: tuple[str, ...]
    overridable: Mapping[str, OverridableField]
    marked_field: str
    marker_separator: str


OPPORTUNITY_DTO = InputDto("opportunity", OPPORTUNITY_FIELDS, OPPORTUNITY_REQUIRED, OPPORTUNITY_OVERRIDABLE,
                           "Description", "\n\n")
# The quote's `Name` carries the marker: the quote DTO has no description.
QUOTE_DTO = InputDto("quote", QUOTE_FIELDS, QUOTE_FIELDS, QUOTE_OVERRIDABLE, "Name", " ")


def _mapped_values(fields: OpportunityFields | QuoteFields, dto: InputDto) -> dict[str, Any]:
    """A `...Fields` instance's values by the DTO field each attribute fills: the field of the same name, case
    and underscores ignored (`customer_po` fills `CustomerPO`)."""
    dto_fields = {folded_name(name): name for name in dto.fields}
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(fields):
        if spec.name == "document_id":
            continue
        if folded_name(spec.name) not in dto_fields:
            raise TypeError(f"{type(fields).__name__}.{spec.name} names no field of the Kaseya {dto.record}")
        values[dto_fields[folded_name(spec.name)]] = getattr(fields, spec.name)
    return values


def _title(text: str | None) -> str | None:
    return text.strip() if text else None


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
        elif existing is not None and field_of(existing, name) is not None:
            value = field_of(existing, name)
        elif existing is None or name in required:
            value = defaults.get(name)
        else:
            value = None
        body[name] = value
    return body


def _check_required(body: Mapping[str, Any], dto: InputDto, document_id: str) -> None:
    missing = [name for name in dto.required if body.get(name) is None or body.get(name) == ""]
    if not missing:
        return
    hints = {spec.kaseya_field: key for key, spec in dto.overridable.items()}
    named = ", ".join(f"{name} (set it with --set {hints[name]}=...)" if name in hints else name for name in missing)
    raise PushPlanError(f"document {document_id}: the Kaseya {dto.record} needs {named}, and nothing supplies it")


def _full_replace(
    dto: InputDto,
    document_id: str,
    ours: Mapping[str, Any],
    existing: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None,
    defaults: Mapping[str, Any],
) -> dict[str, Any]:
    """The DTO's fields (before wire values) for a create (`existing` None) or a full replace of `existing`
    (as Kaseya returns it, any key case): merged, required ones checked, the marker appended."""
    body = _merge(dto.fields, override_values(overrides, dto.overridable, document_id), ours, existing, defaults,
                  dto.required)
    _check_required(body, dto, document_id)
    body[dto.marked_field] = with_marker(body[dto.marked_field], document_marker(document_id), dto.marker_separator)
    return body


def _wired(body: Mapping[str, Any]) -> dict[str, Any]:
    return {name: wire_value(name, value) for name, value in body.items()}


# --------------------------------------------------------------------------------------------------------
# The opportunity


@dataclass(frozen=True)
class OpportunityFields:
    """The opportunity fields the push maps from Zomentum, each named as the DTO field it fills; None means
    "Zomentum has no value"."""

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
    ours = {**_mapped_values(fields, OPPORTUNITY_DTO), "Subject": _title(fields.subject)}
    fallback = {"TypeId": defaults.type_id, "RatingId": defaults.rating_id, "LeadSourceId": defaults.lead_source_id,
                "Probability": defaults.probability}
    body = _full_replace(OPPORTUNITY_DTO, fields.document_id, ours, existing, overrides, fallback)
    if not 0 <= Decimal(str(body["Probability"])) <= 100:
        raise PushPlanError(f"document {fields.document_id}: the opportunity's Probability {body['Probability']} "
                            "is not between 0 and 100")
    return _wired(body)


def opportunity_request(opportunity_id: int | None, body: Mapping[str, Any]) -> PlannedRequest:
    if opportunity_id is None:
        return planned_request("create_opportunity", "create the opportunity", dict(body))
    return planned_request("update_opportunity", f"update opportunity {opportunity_id} (full replace)", dict(body),
                           opportunity_id=opportunity_id)


# --------------------------------------------------------------------------------------------------------
# The quote


@dataclass(frozen=True)
class QuoteFields:
    """The quote fields the push maps from Zomentum, each named as the DTO field it fills."""

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
    ours = {**_mapped_values(fields, QUOTE_DTO), "Name": _title(fields.name)}
    return _wired(_full_replace(QUOTE_DTO, fields.document_id, ours, existing, overrides, {}))


def quote_request(quote_id: KaseyaId | None, body: Mapping[str, Any]) -> PlannedRequest:
    if quote_id is None:
        return planned_request("create_quote", "create the quote (unpublished endpoint)", dict(body))
    return planned_request("update_quote", f"update quote {quote_id} (full replace, unpublished endpoint)",
                           dict(body), quote_id=quote_id)
