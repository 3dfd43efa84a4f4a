"""The quote's lines: their request bodies, and how a (re-)push meets the lines the quote already has.

- A line without a description is described by its item name (Kaseya would otherwise copy in the catalogue
  item's description on create, which then never reads back as sent).
- Margin: percent of the unit price, rounded to 2 decimals, `MarginType` 1 (ASSUMED: 1 means percent, as the
  sandbox seeds it). A PUT must carry it or Kaseya resets it to 0.
- Lines are matched by what they are (item, occurrence, bundle: the key in `ExtDistReference`, see
  `bundles`), not by Zomentum's line id, which changes with every revision. Lines that carry one of our keys
  for this document but are no longer planned (the bundle mode changed, a line was removed) cannot be deleted
  through the API: they are "retired" (quantity, prices and discount 0, description prefixed
  `RETIRED_LINE_NOTE`) once, and left alone after that. Lines without our key (added by hand in Kaseya) are
  never touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP
from typing import Any

from zk_pipelines.domain.bundles import CENT, LineRole, PlannedLine, PushPlanError, is_line_key_of, line_key
from zk_pipelines.domain.kaseya_endpoints import NO_DISTRIBUTOR, QUOTE_LINE_ITEM_TYPE_IDS
from zk_pipelines.domain.push_plan.readback import line_needs_update
from zk_pipelines.domain.push_plan.requests import KaseyaId, PlannedRequest, planned_request
from zk_pipelines.domain.push_plan.wire import field_of, wire_number

MARGIN_TYPE_PERCENT = 1  # ASSUMED, as the sandbox seeds quote lines and services


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
    return all(not field_of(line, name) for name in ("Quantity", "UnitPrice", "Discount"))


def reconcile_quote_lines(
    document_id: str, planned: Sequence[PlannedLine], existing: Sequence[Mapping[str, Any]]
) -> LineReconciliation:
    """Match planned lines to the quote's existing lines by the key in `ExtDistReference` (what the line is:
    item, occurrence, bundle; `bundles.line_identities`): a match is updated, the rest created, and our lines
    that match nothing are retired (once). A retired line whose item comes back is matched and revived."""
    ours: dict[str, list[Mapping[str, Any]]] = {}
    for line in existing:
        reference = field_of(line, "ExtDistReference")
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
            to_update.append((planned_line, int(field_of(first, "Id"))))
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
    by_id = {int(field_of(line, "Id")): line for line in existing if field_of(line, "Id") is not None}
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
    description = str(field_of(existing, "Description") or "")
    if not description.startswith(RETIRED_LINE_NOTE):
        description = f"{RETIRED_LINE_NOTE} {description}".strip()
    return {
        "Id": 0,
        "Name": field_of(existing, "Name"),
        "Description": description,
        "ExtDistReference": field_of(existing, "ExtDistReference"),
        "Image": field_of(existing, "Image"),
        "UnitPrice": 0.0,
        "UnitCost": 0.0,
        "Quantity": 0.0,
        "Margin": 0.0,
        "MarginType": MARGIN_TYPE_PERCENT,
        "Discount": 0.0,
        "Taxable": bool(field_of(existing, "Taxable")),
    }


def retire_line_request(quote_id: KaseyaId, existing: Mapping[str, Any]) -> PlannedRequest:
    return planned_request("update_quote_line_item",
                           f"retire quote line {field_of(existing, 'ExtDistReference')} (no longer in the document)",
                           retired_line_body(existing), quote_id=quote_id, line_item_id=int(field_of(existing, "Id")))
