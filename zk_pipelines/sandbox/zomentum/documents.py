"""Document line items as Zomentum's editor builds them, and how the sandbox renders them (CSV, PDF).

Assumed pricing rules (the notes only fix the CSV columns):
- A line's value is `quantity * sell_price + setup_price - discount`; `discount` is an amount, not a
  percentage. A document's `total` is the sum over all its lines.
- A bundle line is followed by one line per child, whose `parent_line_id` is the bundle's `line_id`. A
  child's `quantity` is absolute (the bundle's quantity times the child's quantity per bundle).
- Bundle-level pricing: the bundle line carries the price; its children have `sell_price` 0.00.
  Individual-level pricing: the children carry their prices; the bundle line has `sell_price` 0.00.
  Either way each unit of value is counted once when all lines are summed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any

from zk_pipelines.sandbox.zomentum.schema import LINE_ITEM_COLUMNS, bad_request

CENT = Decimal("0.01")
LINE_REQUEST_FIELDS = frozenset({"item_id", "quantity", "sell_price", "discount", "setup_price", "description"})


@dataclass
class Revision:
    id: str
    number: int
    created_at: str
    lines: list[dict[str, Any]]


def _decimal(value: Any, path: str, *, positive: bool = False) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise bad_request(path, "must be a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise bad_request(path, "must be a number") from None
    if not amount.is_finite() or amount < 0 or (positive and amount == 0):
        raise bad_request(path, "must be greater than 0" if positive else "must not be negative")
    return amount


def _price_of(item: Mapping[str, Any]) -> Mapping[str, Any]:
    return item["pricing"][0] if item.get("pricing") else {}


def build_lines(
    requested: Any,
    items: Mapping[str, Mapping[str, Any]],
    new_id: Callable[[], str],
    path: str = "line_items",
) -> list[dict[str, Any]]:
    """Expand `[{item_id, quantity, sell_price?, discount?, setup_price?, description?}]` into document lines.

    Prices default to the item's first pricing option; a bundle brings its children from the item's
    definition, the way the editor does when a bundle is dropped onto a quote.
    """
    if not isinstance(requested, list) or not requested:
        raise bad_request(path, "must be a non-empty list")
    lines: list[dict[str, Any]] = []
    for index, request in enumerate(requested):
        at = f"{path}[{index}]"
        if not isinstance(request, dict):
            raise bad_request(at, "must be an object")
        for key in request:
            if key not in LINE_REQUEST_FIELDS:
                raise bad_request(f"{at}.{key}", "unknown field")
        item = items.get(request.get("item_id")) if isinstance(request.get("item_id"), str) else None
        if item is None:
            raise bad_request(f"{at}.item_id", f"no item with id {request.get('item_id')!r}")
        pricing = _price_of(item)
        quantity = _decimal(request.get("quantity", 1), f"{at}.quantity", positive=True)
        bundle = item.get("bundle") if item["type"] == "bundle" else None
        if bundle and bundle["pricing_level"] == "individual":
            sell_price = Decimal(0)
        else:
            sell_price = _decimal(request.get("sell_price", pricing.get("sell_price", 0)), f"{at}.sell_price")
        line = {
            "line_id": new_id(),
            "item_id": item["id"],
            "name": item["name"],
            "description": request.get("description", item.get("description")) or "",
            "type": item["type"],
            "quantity": quantity,
            "sell_price": sell_price,
            "cost_price": Decimal(str(pricing.get("cost_price") or 0)),
            "discount": _decimal(request.get("discount", 0), f"{at}.discount"),
            "setup_price": _decimal(request.get("setup_price", pricing.get("setup_price") or 0), f"{at}.setup_price"),
            "billing_period": pricing.get("billing_period") or "one_time",
            "parent_line_id": None,
        }
        lines.append(line)
        for child in bundle["children"] if bundle else ():
            child_item = items[child["item_id"]]
            child_pricing = _price_of(child_item)
            child_price = (Decimal(0) if bundle["pricing_level"] == "bundle"
                           else Decimal(str(child.get("sell_price", child_pricing.get("sell_price", 0)) or 0)))
            lines.append({
                "line_id": new_id(),
                "item_id": child_item["id"],
                "name": child_item["name"],
                "description": child_item.get("description") or "",
                "type": child_item["type"],
                "quantity": quantity * Decimal(str(child["quantity"])),
                "sell_price": child_price,
                "cost_price": Decimal(str(child_pricing.get("cost_price") or 0)),
                "discount": Decimal(0),
                "setup_price": Decimal(0),
                "billing_period": child_pricing.get("billing_period") or "one_time",
                "parent_line_id": line["line_id"],
            })
    return lines


def document_total(lines: list[dict[str, Any]]) -> float:
    total = sum((line["quantity"] * line["sell_price"] + line["setup_price"] - line["discount"] for line in lines),
                Decimal(0))
    return float(total.quantize(CENT))


def _quantity_text(quantity: Decimal) -> str:
    return format(quantity.normalize(), "f")


def lines_as_csv(lines: list[dict[str, Any]]) -> str:
    """The `downloadproducts` CSV: a header row, then one row per line, bundles followed by their children."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(LINE_ITEM_COLUMNS)
    for line in lines:
        writer.writerow([
            line["line_id"], line["item_id"] or "", line["name"], line["description"], line["type"],
            _quantity_text(line["quantity"]), f"{line['sell_price']:.2f}", f"{line['cost_price']:.2f}",
            f"{line['discount']:.2f}", f"{line['setup_price']:.2f}", line["billing_period"] or "",
            line["parent_line_id"] or "",
        ])
    return out.getvalue()


def lines_as_json(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sandbox-only JSON view of the lines (numbers as strings, exactly as the CSV has them)."""
    rows = list(csv.reader(io.StringIO(lines_as_csv(lines))))
    return [dict(zip(LINE_ITEM_COLUMNS, row, strict=True)) for row in rows[1:]]


def document_pdf() -> bytes:
    """The PDF every document downloads as: one real, small page."""
    return resources.files(__package__).joinpath("quote.pdf").read_bytes()
