"""What Kaseya reads back after a push, compared with what was sent: the fields compared and the
differences named, numbers within half a cent and date-times as instants."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from zk_pipelines.domain.push_plan.bodies import OPPORTUNITY_FIELDS, QUOTE_FIELDS
from zk_pipelines.domain.push_plan.wire import as_datetime, field_of, has_field

# What is compared after a push (every field sent that Kaseya reads back as sent; Margin is recomputed).
OPPORTUNITY_READBACK_FIELDS = OPPORTUNITY_FIELDS
QUOTE_READBACK_FIELDS = QUOTE_FIELDS
QUOTE_LINE_READBACK_FIELDS = ("Name", "Description", "ExtDistReference", "UnitPrice", "UnitCost", "Quantity",
                              "Discount", "Taxable")


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
    sent_moment, read_moment = as_datetime(sent), as_datetime(read)
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
        if not has_field(sent, name):
            continue
        mine, theirs = field_of(sent, name), field_of(read_back, name)
        if not _same(mine, theirs):
            differences.append(f"{name}: sent {_show(mine)}, Kaseya has {_show(theirs)}")
    return differences


def line_needs_update(body: Mapping[str, Any], existing: Mapping[str, Any]) -> bool:
    """Whether an existing quote line differs from what the push would write (a re-push of an unchanged
    document then sends no line updates)."""
    return bool(readback_differences(body, existing, QUOTE_LINE_READBACK_FIELDS))
