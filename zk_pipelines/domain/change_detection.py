"""Has a Zomentum payload changed since it was last sent, and where?

`payload_hash` is what the ledger stores per record: an unchanged hash means no Zomentum call.
`changed_fields` names what changed for the per-entity history, and `partial_update` is the body of the
partial PUT. All three see a payload through the same canonical form, so that 1 and 1.0, key order, tuples
versus lists, or a price that went through a DOUBLE column and back, never count as a change.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

# Floats are rounded to this many decimals before comparing: far below a cent or a percent, far above the
# noise a float picks up through arithmetic or a storage round trip.
FLOAT_DECIMALS = 9


def canonical(value: Any) -> Any:
    """`value` as JSON-ready plain data: string keys, lists for tuples, integral floats as ints, rounded
    floats, UTC ISO-8601 for date-times. NaN and infinities become strings, so they hash but never equal
    a number."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        rounded = round(value, FLOAT_DECIMALS)
        return int(rounded) if rounded.is_integer() else rounded
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.isoformat()
    if isinstance(value, Mapping):
        return {str(key): canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    raise TypeError(f"a payload holds only JSON data, not {type(value).__name__}")


def canonical_json(payload: Any) -> str:
    return json.dumps(canonical(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload_hash(payload: Any) -> str:
    """sha256 (hex) of the payload's canonical JSON."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def _changes(old: Any, new: Any, path: str, found: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            child = f"{path}.{key}" if path else key
            if key not in old or key not in new:
                found.append(child)
            else:
                _changes(old[key], new[key], child, found)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (before, after) in enumerate(zip(old, new, strict=True)):
            _changes(before, after, f"{path}.{index}" if path else str(index), found)
    elif old != new or type(old) is not type(new):
        found.append(path)


def changed_fields(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """Dotted paths where `new` differs from `old` (`billing_address.city`, `pricing.0.sell_price`); a list
    that changed length is reported as a whole. No `old` (never sent) means every top-level field."""
    if old is None:
        return sorted(str(key) for key in new)
    found: list[str] = []
    _changes(canonical(old), canonical(new), "", found)
    return found


def partial_update(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The body of a partial PUT: each top-level field with a change, at its new value. A field the new
    payload no longer has is left out (the mapper omits only what it does not know, see zomentum_mapping)."""
    top = {path.split(".", 1)[0] for path in changed_fields(old, new)}
    return {key: value for key, value in new.items() if str(key) in top}
