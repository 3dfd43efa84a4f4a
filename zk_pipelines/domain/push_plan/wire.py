"""Kaseya records and wire values: a field of a record read whatever the case of its key, and values written
as Kaseya takes them. Money as JSON numbers rounded to the cent half up (the Kaseya client serialises with
`json`, which has no Decimal), date-times naive UTC `YYYY-MM-DDTHH:MM:SS` (as `kaseya_wire` assumes), a date
as its midnight."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from zk_pipelines.domain.bundles import PushPlanError, to_cents
from zk_pipelines.domain.kaseya_staging import parse_kaseya_moment
from zk_pipelines.domain.push_plan.requests import PendingId

_MONEY_FIELDS = frozenset({"Amount", "UnitPrice", "UnitCost", "Discount"})
_DATETIME_FIELDS = frozenset({"CloseDate", "ExpiryDate"})


def field_of(record: Mapping[str, Any] | None, name: str) -> Any:
    """A field of a Kaseya record by name, whatever the case of its key (None when absent)."""
    if not record:
        return None
    if name in record:
        return record[name]
    folded = name.lower()
    return next((value for key, value in record.items() if isinstance(key, str) and key.lower() == folded), None)


def has_field(record: Mapping[str, Any], name: str) -> bool:
    folded = name.lower()
    return any(isinstance(key, str) and key.lower() == folded for key in record)


def as_datetime(value: Any) -> datetime | None:
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
    moment = as_datetime(value)
    if moment is None:
        raise PushPlanError(f"{value!r} is not a date or date-time")
    return moment.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S")


def wire_money(amount: Decimal | float | int) -> float:
    return float(to_cents(Decimal(str(amount))))


def wire_number(value: Decimal | float | int) -> float:
    return float(Decimal(str(value)))


def wire_value(name: str, value: Any) -> Any:
    if value is None or isinstance(value, PendingId):
        return value
    if name in _DATETIME_FIELDS:
        return wire_datetime(value)
    if name in _MONEY_FIELDS:
        return wire_money(value)
    if isinstance(value, Decimal):
        return wire_number(value)
    return value
