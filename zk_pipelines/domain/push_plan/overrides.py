"""Overrides of the push's mapped values (`zk push DOCUMENT --set field=value`, or the push job's config):
which fields may be set, and their values parsed and typed, every problem reported at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from zk_pipelines.domain.bundles import CENT, PushPlanError


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


def override_values(
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
