"""Validated staging rows -> Zomentum payloads: the spec's entity mapping tables, field by field.

Rows may be plain dicts from `kaseya_staging` or rows read back from DuckDB through pandas (numpy scalars,
NaN, NaT, pandas Timestamps): every value is normalised before use, so both give the same payload and the
same hash.

None is kept, never dropped: Zomentum updates are partial PUTs, and the mapper's output is also what is
diffed against the last payload sent. A field Kaseya has emptied must reach Zomentum as an explicit null to
be cleared there; dropping it would leave the old value behind forever. A key is left out only where our
value is *unknown* rather than empty: an item's `pricing` before the product's pricing has been read (its
per-product calls are budgeted), or when Kaseya has no active pricing level (sending [] would wipe the
prices in Zomentum).

Choices the spec leaves open:
- Client `phone`: the main location's main address phone (the spec maps no client phone).
- `company_type`: Kaseya's account type name lower-cased when it is one of Zomentum's company types
  (customer, prospect, vendor, partner), else null.
- An address with no part at all is null (a client without locations has no billing address).
- `linked_client_user_ids`: the primary contact alone, or [] without one.
- `close_probability`: Kaseya's percentage rounded half up to a whole number (Zomentum takes integers).
- Pricing: one entry per active Kaseya pricing level, default first; `billing_period` "one_time" (Kaseya
  inventory prices are per unit, not recurring); `setup_price` 0 (Kaseya products have none);
  `cost_price`, `supplier_name`, `supplier_sku` from the first supplier, the same on every level.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd

OwnerFor = Callable[[str | None], str]
StageFor = Callable[[int, str | None], tuple[str, str]]

ZOMENTUM_COMPANY_TYPES = ("customer", "prospect", "vendor", "partner")
ITEM_BILLING_PERIOD = "one_time"


def _plain(value: Any) -> Any:
    """A row value as plain Python: None for every kind of missing, numpy scalars unwrapped."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _text(row: Mapping[str, Any], column: str) -> str | None:
    value = _plain(row.get(column))
    return str(value) if value is not None else None


def _number(row: Mapping[str, Any], column: str) -> float | None:
    value = _plain(row.get(column))
    return float(value) if value is not None else None


def _iso(value: Any) -> str | None:
    """ISO-8601 with an offset, in UTC, to the second (naive values are UTC)."""
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return moment.isoformat(timespec="seconds")


def _json_list(row: Mapping[str, Any], column: str) -> list[Any] | None:
    text = _text(row, column)
    return json.loads(text) if text is not None else None


def company_type(account_type: str | None) -> str | None:
    lowered = (account_type or "").strip().lower()
    return lowered if lowered in ZOMENTUM_COMPANY_TYPES else None


def _address(parts: Mapping[str, Any]) -> dict[str, str | None] | None:
    address = {
        "address_line_1": _text(parts, "address1"),
        "address_line_2": _text(parts, "address2"),
        "city": _text(parts, "city"),
        "state": _text(parts, "state"),
        "pincode": _text(parts, "zip_code"),
        "country": _text(parts, "country"),
        "phone": _text(parts, "phone"),
    }
    return address if any(value is not None for value in address.values()) else None


def map_client(account_row: Mapping[str, Any], owner_for: OwnerFor) -> dict[str, Any]:
    """A staged account -> a Zomentum client company. `owner_for(email)` gives the Zomentum user id of the
    account manager, or the settings' fallback owner."""
    billing = {part: account_row.get(f"billing_{part}") for part in
               ("address1", "address2", "city", "state", "zip_code", "country", "phone")}
    shipping = [_address(parts) for parts in _json_list(account_row, "shipping_addresses") or []]
    return {
        "name": _text(account_row, "name"),
        "company_type": company_type(_text(account_row, "account_type")),
        "website": _text(account_row, "website"),
        "phone": _text(account_row, "main_phone"),
        "billing_address": _address(billing),
        "shipping_addresses": [address for address in shipping if address is not None],
        "owner_user_id": owner_for(_text(account_row, "account_manager_email")),
    }


def map_client_user(contact_row: Mapping[str, Any], client_id: str) -> dict[str, Any]:
    """A staged contact -> a Zomentum client user of the client `client_id`."""
    return {
        "name": {"first": _text(contact_row, "first_name"), "last": _text(contact_row, "last_name")},
        "email": _text(contact_row, "email"),
        "phone": _text(contact_row, "phone"),
        "job_title": _text(contact_row, "job_title"),
        "client_company_id": client_id,
        "contact_type": "primary_contact" if _plain(contact_row.get("is_poc")) else "secondary_contact",
    }


def _whole_percent(value: float | None) -> int | None:
    return None if value is None else math.floor(value + 0.5)


def map_opportunity(
    opp_row: Mapping[str, Any],
    *,
    client_id: str,
    contact_id: str | None,
    owner_for: OwnerFor,
    stage_for: StageFor,
    current_stage_id: str | None = None,
) -> dict[str, Any]:
    """A staged opportunity -> a Zomentum opportunity. `client_id` / `contact_id` are the Zomentum ids of
    its account and contact; `stage_for(status_id, current_stage_id)` gives (pipeline id, stage id) from the
    settings' mapping, keeping `current_stage_id` (the opportunity's stage in Zomentum) when it is one of
    the stages the status maps to."""
    pipeline_id, stage_id = stage_for(int(_plain(opp_row.get("status_id"))), current_stage_id)
    return {
        "name": _text(opp_row, "subject"),
        "client_company_id": client_id,
        "primary_client_user_id": contact_id,
        "linked_client_user_ids": [contact_id] if contact_id else [],
        "owner_user_id": owner_for(_text(opp_row, "sales_rep_email")),
        "opportunity_pipeline_id": pipeline_id,
        "opportunity_pipeline_stage_id": stage_id,
        "client_po_number": _text(opp_row, "customer_po"),
        "estimated_close_date": _iso(opp_row.get("close_date")),
        "estimated_value": _number(opp_row, "amount"),
        "close_probability": _whole_percent(_number(opp_row, "probability")),
    }


def map_item(product_row: Mapping[str, Any]) -> dict[str, Any]:
    """A staged product -> a Zomentum item, with one pricing entry per active Kaseya pricing level."""
    item: dict[str, Any] = {
        "name": _text(product_row, "name"),
        "description": _text(product_row, "description"),
        "type": _text(product_row, "item_type"),
        "manufacturer_part_number": _text(product_row, "product_number"),
        "category": _text(product_row, "category"),
    }
    levels = _json_list(product_row, "pricing_levels")
    if levels:
        cost = _number(product_row, "unit_cost")
        supplier_name = _text(product_row, "supplier_name")
        supplier_sku = _text(product_row, "supplier_part_number")
        item["pricing"] = [
            {
                "name": level["name"],
                "billing_period": ITEM_BILLING_PERIOD,
                "sell_price": float(level["price"]),
                "setup_price": 0.0,
                "cost_price": cost,
                "supplier_name": supplier_name,
                "supplier_sku": supplier_sku,
            }
            for level in levels
        ]
    return item


# --- one staged row -> its Zomentum payload, or what it waits for ------------------------------------


class MappingContext(Protocol):
    """What a row mapper may read besides its row: owners and stages from the settings, the Zomentum ids of
    the records already loaded (`id_maps[target][kaseya id]`), and the payloads last sent for the target."""

    owner_for: OwnerFor
    stage_for: StageFor

    @property
    def id_maps(self) -> Mapping[str, Mapping[str, str]]: ...

    @property
    def sent(self) -> Mapping[str, Mapping[str, Any]]: ...


# (payload, None), or (None, why the row waits: its parent is not in Zomentum yet)
Mapped = tuple[dict[str, Any] | None, str | None]


def _parent_id(context: MappingContext, target: str, kaseya_id: Any) -> str | None:
    return context.id_maps[target].get(str(int(kaseya_id))) if kaseya_id is not None else None


def mapped_client(row: Mapping[str, Any], context: MappingContext) -> Mapped:
    return map_client(row, context.owner_for), None


def mapped_client_user(row: Mapping[str, Any], context: MappingContext) -> Mapped:
    account_id = _plain(row.get("account_id"))
    client_id = _parent_id(context, "clients", account_id)
    if client_id is None:
        return None, (f"contact {int(row['kaseya_id'])}: waits for its Kaseya account {account_id} to be in Zomentum "
                      "(that client failed, or has not been pulled yet); retried every run")
    return map_client_user(row, client_id), None


def mapped_opportunity(row: Mapping[str, Any], context: MappingContext) -> Mapped:
    kaseya_id = str(int(row["kaseya_id"]))
    account_id, contact = _plain(row.get("account_id")), _plain(row.get("contact_id"))
    client_id = _parent_id(context, "clients", account_id)
    contact_id = _parent_id(context, "client_users", contact)
    if client_id is None:
        return None, (f"opportunity {kaseya_id}: waits for its Kaseya account {account_id} to be in Zomentum "
                      "(that client failed, or has not been pulled yet); retried every run")
    if contact is not None and contact_id is None:
        return None, (f"opportunity {kaseya_id}: waits for its Kaseya contact {int(contact)} to be in Zomentum "
                      "(that client user failed, or has not been pulled yet); retried every run")
    current = (context.sent.get(kaseya_id) or {}).get("opportunity_pipeline_stage_id")
    return map_opportunity(row, client_id=client_id, contact_id=contact_id, owner_for=context.owner_for,
                           stage_for=context.stage_for, current_stage_id=current), None


def mapped_item(row: Mapping[str, Any], context: MappingContext) -> Mapped:
    if row.get("pricing_levels") is None:
        return None, (f"item {int(row['kaseya_id'])}: waits for its Kaseya pricing to be read (per-product pricing "
                      "calls are budgeted, new products first); created once it is")
    return map_item(row), None
