"""The catalogue items the quote lines refer to, found or created by the push.

Inventory products through `POST /v2/inventory/products` (unpublished) with the default warehouse and
category and the item's own type, price and cost (its first pricing option, never a bundle child's 0 or
share), found again by product number (the manufacturer part number, else `ZOM-<item id>`); services, labour,
bundles priced as one service and setup fees through the published `POST /v2/admin/finance/services/services`,
found again by exact name. Kaseya quotes labour lines against service ids (line item type 3), so the default
labour period only applies to a product of type Labour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from zk_pipelines.domain.bundles import LineRole, PlannedLine, PushPlanError
from zk_pipelines.domain.push_plan.requests import PendingId, PlannedRequest, planned_request
from zk_pipelines.domain.push_plan.wire import field_of, wire_number
from zk_pipelines.domain.settings import KaseyaItemType

# Kaseya's ProductType names (a sandbox lookup table, ASSUMED) by Zomentum item type.
KASEYA_PRODUCT_TYPE_BY_PRODUCT_TYPE: Mapping[str, str] = MappingProxyType({
    "hardware": "Hardware", "software": "Software", "service": "Service", "labor": "Labour",
})


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
        if str(field_of(row, "ProductNumber") or "").strip().casefold() == wanted:
            return int(field_of(row, "ProductIndexId"))
    return None


def match_service(line: PlannedLine, rows: Sequence[Mapping[str, Any]]) -> int | None:
    """The id of the service named exactly as the line's item, ignoring case."""
    wanted = line.item_name.strip().casefold()
    for row in rows:
        if str(field_of(row, "Name") or "").strip().casefold() == wanted:
            return int(field_of(row, "Id"))
    return None
