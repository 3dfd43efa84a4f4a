"""A Zomentum document's line items -> the Kaseya quote lines a push writes, bundles split by the bundle mode.

The lines come in as Zomentum gives them (`DocumentLineItem`, read by `clients.zomentum_models`):
a line is worth `quantity * sell_price + setup_price - discount`, a bundle's lines are its `children`, a
child's quantity is absolute (already multiplied by the bundle's quantity), bundle-level pricing puts the
price on the bundle line (children at 0.00) and individual-level pricing on the children (bundle at 0.00).

Every planned line's total (`unit_price * quantity - discount`, which is how Kaseya totals a line) adds up,
over the plan, to the document's lines exactly, to the cent. The rules that keep it so:

- An ordinary line carries quantity, unit price, unit cost and discount over unchanged (no rounding: Kaseya
  stores doubles). A setup price has no place on a Kaseya line, so it becomes a line of its own: the
  "Setup fee" service, quantity 1, priced at the setup price. The discount stays on the main line up to the
  main line's own value; only what exceeds it moves to the setup-fee line.
- Bundles with bundle-level pricing, by bundle mode:
  - single service item: one service line named after the bundle, at the bundle's quantity, sell price,
    cost and discount; the children are not pushed.
  - service with zero-priced children: that service line, plus each child at its own item type, its own
    quantity and unit cost, unit price and discount 0.
  - children with the bundle price split: no line for the bundle. The bundle's *line amount* (quantity x
    sell price + setup price - discount, rounded to the cent half up) is divided equally over the children
    as line totals, the remainder cents one at a time to the first children (100.00 over 3 children:
    33.34, 33.33, 33.33). A child's quantity is kept (it is what is delivered); its unit price is its
    share divided by its quantity, rounded *up* to the cent, and the difference (less than one cent per
    unit) is that line's discount, so the line totals exactly its share. Rounding up keeps the discount
    non-negative, which Kaseya requires. A bundle line amount of 0.00 or less is refused: there is no price
    to divide.
- Bundles with individual-level pricing always push their children at their own prices, whatever the mode;
  the bundle has no line.
- Bundle-level pricing with priced children, or individual-level pricing with a priced bundle line, would
  drop money silently, so both are refused, as are nested bundles, bundles without children and child
  lines under anything but a bundle.

Each planned line has a stable `line_key` that the push writes into the Kaseya line's `ExtDistReference`, so
that a second push finds its lines and updates them instead of adding new ones. The key says what the line
is, not which Zomentum line it came from (Zomentum gives every line a new id in every document revision):
`zk:{document}:{item}#{n}` for the n-th top-level line of that item, `zk:{document}:{bundle item}#{n}/{child
item}#{m}` for a bundle's child, `+setup` for a setup fee (a line without an item is named by its name). A
revision that changes one quantity, adds a line and removes one thus updates, adds and retires exactly those.
`ExtDistReference` is chosen over a description marker because it is not shown to the customer and is a plain
field Kaseya reads back; it is meant for distributor references, which our lines (distributor type 0) never have.

Zomentum's assumed contract carries no tax flag on lines or items: a line is taxable unless the caller's
`ItemFacts` for its item says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from zk_pipelines.domain.settings import KASEYA_ITEM_TYPE_BY_PRODUCT_TYPE, BundleMode, KaseyaItemType, kaseya_item_type

CENT = Decimal("0.01")
ZERO = Decimal(0)
LINE_KEY_PREFIX = "zk:"
SETUP_FEE_ITEM_NAME = "Setup fee"  # the one Kaseya service every setup-fee line refers to
PRICING_LEVELS = ("bundle", "individual")


class PushPlanError(ValueError):
    """A push cannot be planned; the message names the document and the line or field at fault."""


def to_cents(amount: Decimal) -> Decimal:
    """Money rounded to the cent, half up."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def divide_equally(total: Decimal, parts: int) -> tuple[Decimal, ...]:
    """`total` (rounded to the cent) in `parts` shares that differ by at most a cent and add up to it exactly;
    the remainder cents go one at a time to the first shares."""
    if parts < 1:
        raise ValueError(f"cannot divide into {parts} parts")
    cents = int(to_cents(total) / CENT)
    if cents < 0:
        raise ValueError(f"cannot divide a negative amount ({total})")
    base, remainder = divmod(cents, parts)
    return tuple((base + (1 if index < remainder else 0)) * CENT for index in range(parts))


# --------------------------------------------------------------------------------------------------------
# What comes in


@dataclass(frozen=True)
class DocumentLineItem:
    """One line of a document revision; a bundle's lines are its `children`.

    Assumed pricing: a line is worth `quantity * sell_price + setup_price - discount` (`discount` is an
    amount). A child's `quantity` is absolute, not per bundle. Bundle-level pricing puts the price on the
    bundle line (children at 0.00); individual-level pricing puts it on the children (bundle line at
    0.00). The pricing level itself is the bundle item's `bundle.pricing_level`.
    """

    line_id: str
    item_id: str | None
    name: str
    description: str
    type: str  # hardware | software | service | labor | bundle
    quantity: Decimal
    sell_price: Decimal
    cost_price: Decimal
    discount: Decimal
    setup_price: Decimal
    billing_period: str | None
    parent_line_id: str | None
    children: tuple[DocumentLineItem, ...] = ()

    @property
    def is_bundle(self) -> bool:
        return self.type == "bundle"

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.sell_price + self.setup_price - self.discount


@dataclass(frozen=True)
class ItemFacts:
    """What the plan needs from a Zomentum item record beyond the line: the part number Kaseya products are
    found and created by, and a bundle's pricing level."""

    item_id: str
    manufacturer_part_number: str | None = None
    bundle_pricing_level: str | None = None  # bundle | individual; bundles only
    taxable: bool = True
    # The item's own first pricing option: what a Kaseya product created for it is priced at, whatever the
    # line's price (a bundle child at 0 or at its share of the bundle, a price agreed for this deal).
    sell_price: Decimal | None = None
    cost_price: Decimal | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ItemFacts:
        """From a Zomentum item record (`clients.zomentum_models.Item`)."""
        bundle = item.get("bundle") or {}
        part_number = (item.get("manufacturer_part_number") or "").strip() or None
        pricing = (item.get("pricing") or [{}])[0] or {}
        return cls(item_id=str(item["id"]), manufacturer_part_number=part_number,
                   bundle_pricing_level=bundle.get("pricing_level"),
                   sell_price=_amount(pricing.get("sell_price")), cost_price=_amount(pricing.get("cost_price")))


def _amount(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        return None
    return amount if amount.is_finite() and amount >= 0 else None


# --------------------------------------------------------------------------------------------------------
# What goes out


class LineRole(StrEnum):
    ITEM = "item"  # an ordinary line
    BUNDLE = "bundle"  # the service line standing for a bundle
    BUNDLE_CHILD = "bundle_child"
    SETUP_FEE = "setup_fee"


@dataclass(frozen=True)
class PlannedLine:
    """One Kaseya quote line to create or update."""

    line_key: str  # goes into ExtDistReference; matches the line on a re-push
    document_id: str
    source_line_id: str
    bundle_line_id: str | None  # the bundle's line id, for a bundle's children
    role: LineRole
    item_type: KaseyaItemType
    product_type: str  # the Zomentum item type the Kaseya catalogue item is created as
    item_name: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    unit_cost: Decimal
    discount: Decimal
    taxable: bool
    zomentum_item_id: str | None
    manufacturer_part_number: str | None
    # The item's own price and cost, for a catalogue item created from this line (the Zomentum item's first
    # pricing option; the line's own price where the item is unknown and the line's price is the item's).
    catalogue_price: Decimal | None = None
    catalogue_cost: Decimal | None = None

    @property
    def total(self) -> Decimal:
        """What Kaseya will total the line at."""
        return to_cents(self.unit_price * self.quantity - self.discount)


def line_identities(lines: Sequence[DocumentLineItem]) -> dict[str, str]:
    """Line id -> what the line is, stable across document revisions: its item and its occurrence among the
    lines of that item at its level (`{item}#{n}`); a bundle's child is qualified by its bundle's identity in
    `line_key`. A line without an item is known by its name."""
    identities: dict[str, str] = {}

    def walk(level: Sequence[DocumentLineItem]) -> None:
        seen: dict[str, int] = {}
        for line in level:
            what = line.item_id or f"name:{line.name.strip().casefold()}"
            seen[what] = seen.get(what, 0) + 1
            identities[line.line_id] = f"{what}#{seen[what]}"
            walk(line.children)

    walk(lines)
    return identities


def line_key(document_id: str, line_id: str, bundle_line_id: str | None = None, *, setup_fee: bool = False) -> str:
    """The key of a line whose identity (or, before identities, whose Zomentum line id) is `line_id`."""
    path = f"{bundle_line_id}/{line_id}" if bundle_line_id is not None else line_id
    return f"{LINE_KEY_PREFIX}{document_id}:{path}{'+setup' if setup_fee else ''}"


def is_line_key_of(reference: str | None, document_id: str) -> bool:
    """Whether an `ExtDistReference` is one of our line keys for this document."""
    return bool(reference and reference.startswith(f"{LINE_KEY_PREFIX}{document_id}:"))


# --------------------------------------------------------------------------------------------------------
# Planning


def _where(document_id: str, line: DocumentLineItem) -> str:
    return f"document {document_id}, line {line.line_id} ({line.name!r})"


def _check_amounts(document_id: str, line: DocumentLineItem) -> None:
    if line.quantity <= 0:
        raise PushPlanError(f"{_where(document_id, line)}: quantity {line.quantity} must be greater than 0")
    for field in ("sell_price", "cost_price", "discount", "setup_price"):
        value = getattr(line, field)
        if value < 0:
            raise PushPlanError(f"{_where(document_id, line)}: {field} {value} must not be negative")
    if line.quantity * line.sell_price + line.setup_price - line.discount < 0:
        raise PushPlanError(f"{_where(document_id, line)}: the discount {line.discount} exceeds the line's value")


def _facts(items: Mapping[str, ItemFacts], line: DocumentLineItem) -> ItemFacts:
    if line.item_id is not None and line.item_id in items:
        return items[line.item_id]
    return ItemFacts(item_id=line.item_id or "")


def _fixed_item_type(document_id: str, line: DocumentLineItem) -> KaseyaItemType:
    try:
        return KASEYA_ITEM_TYPE_BY_PRODUCT_TYPE[line.type]
    except KeyError:
        known = ", ".join([*KASEYA_ITEM_TYPE_BY_PRODUCT_TYPE, "bundle"])
        raise PushPlanError(f"{_where(document_id, line)}: unknown item type {line.type!r}; known: {known}") from None


def _planned(
    document_id: str, line: DocumentLineItem, facts: ItemFacts, *, role: LineRole, item_type: KaseyaItemType,
    bundle_line_id: str | None = None, unit_price: Decimal | None = None, discount: Decimal | None = None,
    identities: Mapping[str, str] | None = None,
) -> PlannedLine:
    known = identities or {}
    return PlannedLine(
        line_key=line_key(document_id, known.get(line.line_id, line.line_id),
                          known.get(bundle_line_id, bundle_line_id) if bundle_line_id is not None else None),
        document_id=document_id,
        source_line_id=line.line_id,
        bundle_line_id=bundle_line_id,
        role=role,
        item_type=item_type,
        product_type="service" if role is LineRole.BUNDLE else line.type,
        item_name=line.name,
        description=line.description,
        quantity=line.quantity,
        unit_price=line.sell_price if unit_price is None else unit_price,
        unit_cost=line.cost_price,
        discount=line.discount if discount is None else discount,
        taxable=facts.taxable,
        zomentum_item_id=line.item_id,
        manufacturer_part_number=facts.manufacturer_part_number,
        catalogue_price=facts.sell_price if facts.sell_price is not None else (
            line.sell_price if unit_price is None else None),
        catalogue_cost=facts.cost_price,
    )


def _with_setup_fee(planned: PlannedLine, line: DocumentLineItem) -> tuple[PlannedLine, ...]:
    """The line as pushed at its own price, plus its setup fee as a line of its own when it has one."""
    if line.setup_price == 0:
        return (planned,)
    gross = planned.unit_price * planned.quantity
    main_discount = min(planned.discount, gross)
    setup = PlannedLine(
        line_key=f"{planned.line_key}+setup",
        document_id=planned.document_id,
        source_line_id=line.line_id,
        bundle_line_id=planned.bundle_line_id,
        role=LineRole.SETUP_FEE,
        item_type=KaseyaItemType.SERVICE_ITEM,
        product_type="service",
        item_name=SETUP_FEE_ITEM_NAME,
        description=f"Setup fee: {line.name}",
        quantity=Decimal(1),
        unit_price=line.setup_price,
        unit_cost=ZERO,
        discount=planned.discount - main_discount,
        taxable=planned.taxable,
        zomentum_item_id=None,
        manufacturer_part_number=None,
    )
    return replace(planned, discount=main_discount), setup


def _share_as_line(share: Decimal, quantity: Decimal) -> tuple[Decimal, Decimal]:
    """(unit price, discount) for a line of `quantity` that must total exactly `share`."""
    if quantity == 1:
        return share, ZERO
    unit_price = (share / quantity).quantize(CENT, rounding=ROUND_CEILING)
    return unit_price, unit_price * quantity - share


def split_bundle(
    bundle: DocumentLineItem,
    bundle_mode: BundleMode,
    *,
    document_id: str,
    pricing_level: str,
    items: Mapping[str, ItemFacts] | None = None,
    identities: Mapping[str, str] | None = None,
) -> tuple[PlannedLine, ...]:
    """The Kaseya quote lines for one bundle line (see the module docstring for the rules); `identities`
    from `line_identities` of the document's lines (default: keyed by line id)."""
    items = items or {}
    ids = identities or {}
    where = _where(document_id, bundle)
    if pricing_level not in PRICING_LEVELS:
        raise PushPlanError(f"{where}: unknown bundle pricing level {pricing_level!r}; "
                            f"expected {' or '.join(PRICING_LEVELS)}")
    _check_amounts(document_id, bundle)
    if not bundle.children:
        raise PushPlanError(f"{where}: the bundle has no child lines; a bundle is pushed through its children "
                            "(re-add the bundle to the document in Zomentum)")
    for child in bundle.children:
        if child.type == "bundle":
            raise PushPlanError(f"{_where(document_id, child)}: a bundle inside bundle {bundle.line_id} is not "
                                "supported")
        if child.children:
            raise PushPlanError(f"{_where(document_id, child)}: only bundles have child lines")
        _fixed_item_type(document_id, child)
        _check_amounts(document_id, child)

    if pricing_level == "individual":
        if bundle.sell_price or bundle.setup_price or bundle.discount:
            raise PushPlanError(f"{where}: the bundle is priced per child (individual-level pricing) but its own "
                                "line carries a price, setup price or discount, which Kaseya would not get")
        return tuple(
            planned
            for child in bundle.children
            for planned in _with_setup_fee(
                _planned(document_id, child, _facts(items, child), role=LineRole.BUNDLE_CHILD,
                         item_type=_fixed_item_type(document_id, child), bundle_line_id=bundle.line_id,
                         identities=ids),
                child,
            )
        )

    priced = [child.line_id for child in bundle.children if child.sell_price or child.setup_price or child.discount]
    if priced:
        raise PushPlanError(f"{where}: the bundle is priced at bundle level but its child line(s) "
                            f"{', '.join(priced)} carry a price, setup price or discount, which the bundle mode "
                            f"{bundle_mode} would drop")

    children = bundle.children
    if bundle_mode is BundleMode.CHILDREN_WITH_BUNDLE_PRICE_SPLIT:
        total = to_cents(bundle.quantity * bundle.sell_price + bundle.setup_price - bundle.discount)
        if total <= 0:
            raise PushPlanError(f"{where}: the bundle's amount is {total}; the bundle mode {bundle_mode} divides "
                                "the bundle price among the children, so it must be greater than 0")
        planned = []
        for child, share in zip(children, divide_equally(total, len(children)), strict=True):
            unit_price, discount = _share_as_line(share, child.quantity)
            planned.append(_planned(document_id, child, _facts(items, child), role=LineRole.BUNDLE_CHILD,
                                    item_type=_fixed_item_type(document_id, child), bundle_line_id=bundle.line_id,
                                    unit_price=unit_price, discount=discount, identities=ids))
        return tuple(planned)

    bundle_type = kaseya_item_type("bundle", bundle_mode, pricing_level)
    assert bundle_type is not None  # only the split mode has no bundle line
    lines = list(_with_setup_fee(
        _planned(document_id, bundle, _facts(items, bundle), role=LineRole.BUNDLE, item_type=bundle_type,
                 identities=ids), bundle))
    if bundle_mode is BundleMode.SERVICE_WITH_ZERO_PRICED_CHILDREN:
        lines += [
            _planned(document_id, child, _facts(items, child), role=LineRole.BUNDLE_CHILD,
                     item_type=_fixed_item_type(document_id, child), bundle_line_id=bundle.line_id,
                     unit_price=ZERO, discount=ZERO, identities=ids)
            for child in children
        ]
    return tuple(lines)


def plan_quote_lines(
    lines: Sequence[DocumentLineItem],
    bundle_mode: BundleMode,
    *,
    document_id: str,
    items: Mapping[str, ItemFacts] | None = None,
) -> tuple[PlannedLine, ...]:
    """Every Kaseya quote line for a document's top-level lines, in document order.

    `items` (Zomentum item id -> facts) gives part numbers and each bundle's pricing level; a bundle whose
    pricing level is not known is refused rather than guessed.
    """
    items = items or {}
    identities = line_identities(lines)
    planned: list[PlannedLine] = []
    for line in lines:
        if line.type == "bundle":
            level = _facts(items, line).bundle_pricing_level
            if level is None:
                raise PushPlanError(f"{_where(document_id, line)}: the pricing level (bundle or individual) of "
                                    f"bundle item {line.item_id} is not known; read the item from Zomentum")
            planned += split_bundle(line, bundle_mode, document_id=document_id, pricing_level=level, items=items,
                                    identities=identities)
            continue
        if line.children:
            raise PushPlanError(f"{_where(document_id, line)}: only bundles have child lines, but this "
                                f"{line.type} line has {len(line.children)}")
        item_type = _fixed_item_type(document_id, line)
        _check_amounts(document_id, line)
        planned += _with_setup_fee(_planned(document_id, line, _facts(items, line), role=LineRole.ITEM,
                                            item_type=item_type, identities=identities), line)
    seen: set[tuple[str | None, str]] = set()
    for entry in planned:
        if (entry.bundle_line_id, entry.source_line_id) in seen and entry.role is not LineRole.SETUP_FEE:
            raise PushPlanError(f"document {document_id}: line id {entry.source_line_id} appears twice")
        seen.add((entry.bundle_line_id, entry.source_line_id))
    return tuple(planned)


def document_amount(lines: Sequence[DocumentLineItem]) -> Decimal:
    """What the document's lines are worth together, to the cent (every line and child counted once)."""
    def amount(line: DocumentLineItem) -> Decimal:
        own = line.quantity * line.sell_price + line.setup_price - line.discount
        return own + sum((amount(child) for child in line.children), ZERO)

    return to_cents(sum((amount(line) for line in lines), ZERO))


def planned_amount(lines: Sequence[PlannedLine]) -> Decimal:
    """What Kaseya will total the planned lines at."""
    return sum((line.total for line in lines), ZERO)
