"""Document lines -> planned Kaseya quote lines: equal division to the cent, the three bundle modes,
individual-level pricing, setup fees, keys, and every refusal naming its document and line."""

from __future__ import annotations

from decimal import Decimal

import pytest

from zk_pipelines.clients.zomentum_models import DocumentLineItem, parse_line_items_csv
from zk_pipelines.domain.bundles import (
    SETUP_FEE_ITEM_NAME,
    ItemFacts,
    LineRole,
    PushPlanError,
    divide_equally,
    document_amount,
    is_line_key_of,
    line_identities,
    line_key,
    plan_quote_lines,
    planned_amount,
    split_bundle,
)
from zk_pipelines.domain.settings import BundleMode, KaseyaItemType

D = Decimal
DOC = "doc-1"
SINGLE = BundleMode.SINGLE_SERVICE_ITEM
ZERO_CHILDREN = BundleMode.SERVICE_WITH_ZERO_PRICED_CHILDREN
SPLIT = BundleMode.CHILDREN_WITH_BUNDLE_PRICE_SPLIT


def line(line_id: str, type_: str = "hardware", quantity: str = "1", price: str = "0", *, cost: str = "0",
         discount: str = "0", setup: str = "0", item_id: str | None = None, parent: str | None = None,
         children: tuple[DocumentLineItem, ...] = ()) -> DocumentLineItem:
    return DocumentLineItem(
        line_id=line_id, item_id=item_id if item_id is not None else f"item-{line_id}", name=f"Item {line_id}",
        description=f"About {line_id}", type=type_, quantity=D(quantity), sell_price=D(price), cost_price=D(cost),
        discount=D(discount), setup_price=D(setup), billing_period="one_time", parent_line_id=parent,
        children=children,
    )


def bundle(price: str, *children: DocumentLineItem, quantity: str = "1", line_id: str = "B", cost: str = "0",
           discount: str = "0", setup: str = "0") -> DocumentLineItem:
    return line(line_id, "bundle", quantity, price, cost=cost, discount=discount, setup=setup,
                children=tuple(children))


def child(line_id: str, type_: str = "hardware", quantity: str = "1", price: str = "0", *, cost: str = "0",
          **amounts: str) -> DocumentLineItem:
    return line(line_id, type_, quantity, price, cost=cost, parent="B", **amounts)


def three_children() -> tuple[DocumentLineItem, ...]:
    return (child("C1", "hardware", cost="20"), child("C2", "software", cost="5"), child("C3", "labor", cost="7"))


def split(b: DocumentLineItem, mode: BundleMode = SPLIT, level: str = "bundle", **kwargs):
    return split_bundle(b, mode, document_id=DOC, pricing_level=level, **kwargs)


# --------------------------------------------------------------------------------------------------------
# Equal division


@pytest.mark.parametrize(("total", "parts", "shares"), [
    ("100.00", 3, ("33.34", "33.33", "33.33")),
    ("0.01", 3, ("0.01", "0.00", "0.00")),
    ("0.02", 3, ("0.01", "0.01", "0.00")),
    ("10.00", 4, ("2.50", "2.50", "2.50", "2.50")),
    ("10.03", 4, ("2.51", "2.51", "2.51", "2.50")),
    ("7", 1, ("7.00",)),
    ("99.995", 2, ("50.00", "50.00")),  # rounded half up to 100.00 first
    ("99.994", 2, ("50.00", "49.99")),
])
def test_divide_equally_adds_up_exactly_and_gives_remainder_cents_to_the_first(total, parts, shares):
    result = divide_equally(D(total), parts)
    assert result == tuple(D(s) for s in shares)
    assert sum(result) == sum(D(s) for s in shares)


@pytest.mark.parametrize(("total", "parts"), [("1.00", 0), ("-1.00", 2)])
def test_divide_equally_refuses_what_cannot_be_divided(total, parts):
    with pytest.raises(ValueError):
        divide_equally(D(total), parts)


# --------------------------------------------------------------------------------------------------------
# The three bundle modes, bundle-level pricing


def test_single_service_item_is_one_service_line_at_the_bundle_price():
    planned = split(bundle("100.00", *three_children(), quantity="2", cost="30", discount="5"), SINGLE)
    assert len(planned) == 1
    (service,) = planned
    assert (service.role, service.item_type, service.item_name) == (LineRole.BUNDLE, KaseyaItemType.SERVICE_ITEM,
                                                                     "Item B")
    assert (service.quantity, service.unit_price, service.unit_cost, service.discount) == (D(2), D(100), D(30), D(5))
    assert service.total == D("195.00")
    assert service.line_key == "zk:doc-1:B"
    assert service.bundle_line_id is None


def test_service_with_zero_priced_children_adds_each_child_at_its_own_type_priced_zero():
    planned = split(bundle("100.00", *three_children(), cost="30"), ZERO_CHILDREN)
    assert [(p.role, p.item_type, p.unit_price, p.unit_cost, p.discount) for p in planned] == [
        (LineRole.BUNDLE, KaseyaItemType.SERVICE_ITEM, D(100), D(30), D(0)),
        (LineRole.BUNDLE_CHILD, KaseyaItemType.INVENTORY_PRODUCT, D(0), D(20), D(0)),
        (LineRole.BUNDLE_CHILD, KaseyaItemType.INVENTORY_PRODUCT, D(0), D(5), D(0)),
        (LineRole.BUNDLE_CHILD, KaseyaItemType.LABOUR_LINE, D(0), D(7), D(0)),
    ]
    assert [p.line_key for p in planned] == ["zk:doc-1:B", "zk:doc-1:B/C1", "zk:doc-1:B/C2", "zk:doc-1:B/C3"]
    assert {p.bundle_line_id for p in planned[1:]} == {"B"}
    assert planned_amount(planned) == D("100.00")


def test_children_split_divides_the_bundle_price_with_remainder_cents_first():
    planned = split(bundle("100.00", *three_children()))
    assert [(p.role, p.item_type, p.unit_price, p.discount, p.unit_cost) for p in planned] == [
        (LineRole.BUNDLE_CHILD, KaseyaItemType.INVENTORY_PRODUCT, D("33.34"), D(0), D(20)),
        (LineRole.BUNDLE_CHILD, KaseyaItemType.INVENTORY_PRODUCT, D("33.33"), D(0), D(5)),
        (LineRole.BUNDLE_CHILD, KaseyaItemType.LABOUR_LINE, D("33.33"), D(0), D(7)),
    ]
    assert planned_amount(planned) == D("100.00")


@pytest.mark.parametrize(("bundle_price", "bundle_quantity", "child_quantities", "totals"), [
    # The bundle's line amount counts its quantity: 2 x 50.00 = 100.00 over 2 children.
    ("50.00", "2", ("2", "4"), ("50.00", "50.00")),
    ("0.01", "1", ("1", "1", "1"), ("0.01", "0.00", "0.00")),
    ("10.00", "1", ("1", "1", "1", "1"), ("2.50", "2.50", "2.50", "2.50")),
    # Shares not divisible by the child's quantity: unit price rounded up, the difference as discount.
    ("100.00", "1", ("3", "1", "2"), ("33.34", "33.33", "33.33")),
    ("100.00", "1", ("1.5", "7"), ("50.00", "50.00")),
])
def test_children_split_line_totals_add_up_exactly_to_the_bundle_total(bundle_price, bundle_quantity,
                                                                      child_quantities, totals):
    children = [child(f"C{i}", quantity=q) for i, q in enumerate(child_quantities)]
    planned = split(bundle(bundle_price, *children, quantity=bundle_quantity))
    assert tuple(p.total for p in planned) == tuple(D(t) for t in totals)
    assert [p.quantity for p in planned] == [D(q) for q in child_quantities]  # delivered quantities are kept
    for p in planned:
        assert D(0) <= p.discount < p.quantity * D("0.01")
        assert p.unit_price == p.unit_price.quantize(D("0.01"))


def test_children_split_puts_the_rounding_difference_in_the_discount():
    planned = split(bundle("100.00", child("C1", quantity="3"), child("C2"), child("C3", quantity="2")))
    assert [(p.unit_price, p.discount) for p in planned] == [
        (D("11.12"), D("0.02")),  # 3 x 11.12 - 0.02 = 33.34
        (D("33.33"), D(0)),
        (D("16.67"), D("0.01")),  # 2 x 16.67 - 0.01 = 33.33
    ]


def test_children_split_holds_for_every_amount_and_quantity_mix():
    quantities = ("1", "3", "7", "2.5")
    for cents in list(range(1, 400)) + [9999, 100000, 123457]:
        total = D(cents) / 100
        for count in range(1, len(quantities) + 1):
            children = [child(f"C{i}", quantity=q) for i, q in enumerate(quantities[:count])]
            planned = split(bundle(str(total), *children))
            assert planned_amount(planned) == total, (total, count)
            assert all(p.discount >= 0 and p.unit_price >= 0 for p in planned)


def test_children_split_includes_the_bundle_setup_price_and_discount():
    planned = split(bundle("90.00", child("C1"), child("C2"), setup="20", discount="10"))
    assert [p.total for p in planned] == [D("50.00"), D("50.00")]


@pytest.mark.parametrize(("price", "discount"), [("0", "0"), ("10.00", "10.00")])
def test_children_split_refuses_a_bundle_worth_nothing(price, discount):
    with pytest.raises(PushPlanError, match=r"document doc-1, line B .*amount is 0\.00"):
        split(bundle(price, child("C1"), discount=discount))


# --------------------------------------------------------------------------------------------------------
# Individual-level pricing


@pytest.mark.parametrize("mode", list(BundleMode))
def test_individual_pricing_always_pushes_the_children_at_their_own_prices(mode):
    b = bundle("0", child("C1", "hardware", "2", "40.00", cost="25"), child("C2", "service", "1", "15.50",
                                                                          discount="0.50"))
    planned = split(b, mode, "individual")
    assert [(p.line_key, p.item_type, p.quantity, p.unit_price, p.unit_cost, p.discount) for p in planned] == [
        ("zk:doc-1:B/C1", KaseyaItemType.INVENTORY_PRODUCT, D(2), D(40), D(25), D(0)),
        ("zk:doc-1:B/C2", KaseyaItemType.SERVICE_ITEM, D(1), D("15.50"), D(0), D("0.50")),
    ]
    assert planned_amount(planned) == D("95.00")


def test_individual_pricing_refuses_a_priced_bundle_line():
    with pytest.raises(PushPlanError, match="individual-level pricing"):
        split(bundle("10.00", child("C1", price="5")), SINGLE, "individual")


# --------------------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(("b", "mode", "level", "message"), [
    (bundle("100.00"), SPLIT, "bundle", r"document doc-1, line B \('Item B'\): the bundle has no child lines"),
    (bundle("100.00"), SINGLE, "bundle", "the bundle has no child lines"),
    (bundle("0"), SPLIT, "individual", "the bundle has no child lines"),
    (bundle("-5.00", child("C1")), SINGLE, "bundle", "sell_price -5.00 must not be negative"),
    (bundle("10.00", child("C1"), quantity="0"), SINGLE, "bundle", r"line B .*quantity 0 must be greater than 0"),
    (bundle("10.00", child("C1", quantity="-1")), SPLIT, "bundle", r"line C1 .*quantity -1 must be greater"),
    (bundle("10.00", child("C1", "widget")), SPLIT, "bundle", r"line C1 .*unknown item type 'widget'"),
    (bundle("10.00", line("C1", "bundle", children=(child("G1"),))), SPLIT, "bundle", "a bundle inside bundle B"),
    (bundle("10.00", child("C1", price="2.00")), ZERO_CHILDREN, "bundle", "child line\\(s\\) C1 carry a price"),
    (bundle("10.00", child("C1", setup="2.00")), SPLIT, "bundle", "child line\\(s\\) C1 carry a price"),
    (bundle("10.00", child("C1")), SPLIT, "per_unit", "unknown bundle pricing level 'per_unit'"),
    (bundle("10.00", child("C1"), discount="11.00"), SINGLE, "bundle", "discount 11.00 exceeds"),
])
def test_bundles_that_cannot_be_pushed_are_refused_naming_document_and_line(b, mode, level, message):
    with pytest.raises(PushPlanError, match=message):
        split(b, mode, level)


# --------------------------------------------------------------------------------------------------------
# Whole documents


FACTS = {
    "item-B": ItemFacts("item-B", bundle_pricing_level="bundle"),
    "item-I": ItemFacts("item-I", bundle_pricing_level="individual"),
    "item-H1": ItemFacts("item-H1", manufacturer_part_number="HW-0001"),
    "item-S1": ItemFacts("item-S1", taxable=False),
}


def document() -> tuple[DocumentLineItem, ...]:
    return (
        line("H1", "hardware", "3", "19.99", cost="12.00", discount="1.00"),
        line("S1", "service", "1", "250.00", setup="99.00"),
        bundle("100.00", *three_children(), quantity="2"),
        line("I", "bundle", "1", "0", children=(line("I1", "software", "2", "30.00", parent="I"),
                                                line("I2", "labor", "1.5", "80.00", parent="I"))),
        line("L1", "labor", "2.5", "120.00", cost="60.00"),
    )


@pytest.mark.parametrize("mode", list(BundleMode))
def test_the_quote_lines_add_up_to_the_document_in_every_mode(mode):
    lines = document()
    planned = plan_quote_lines(lines, mode, document_id=DOC, items=FACTS)
    assert planned_amount(planned) == document_amount(lines) == D("1087.97")
    assert len({p.line_key for p in planned}) == len(planned)
    assert all(is_line_key_of(p.line_key, DOC) and not is_line_key_of(p.line_key, "doc-2") for p in planned)


def test_a_document_plans_lines_in_order_with_types_from_the_fixed_table_and_item_facts():
    planned = plan_quote_lines(document(), SPLIT, document_id=DOC, items=FACTS)
    assert [(p.line_key, p.role, p.item_type) for p in planned] == [
        ("zk:doc-1:item-H1#1", LineRole.ITEM, KaseyaItemType.INVENTORY_PRODUCT),
        ("zk:doc-1:item-S1#1", LineRole.ITEM, KaseyaItemType.SERVICE_ITEM),
        ("zk:doc-1:item-S1#1+setup", LineRole.SETUP_FEE, KaseyaItemType.SERVICE_ITEM),
        ("zk:doc-1:item-B#1/item-C1#1", LineRole.BUNDLE_CHILD, KaseyaItemType.INVENTORY_PRODUCT),
        ("zk:doc-1:item-B#1/item-C2#1", LineRole.BUNDLE_CHILD, KaseyaItemType.INVENTORY_PRODUCT),
        ("zk:doc-1:item-B#1/item-C3#1", LineRole.BUNDLE_CHILD, KaseyaItemType.LABOUR_LINE),
        ("zk:doc-1:item-I#1/item-I1#1", LineRole.BUNDLE_CHILD, KaseyaItemType.INVENTORY_PRODUCT),
        ("zk:doc-1:item-I#1/item-I2#1", LineRole.BUNDLE_CHILD, KaseyaItemType.LABOUR_LINE),
        ("zk:doc-1:item-L1#1", LineRole.ITEM, KaseyaItemType.LABOUR_LINE),
    ]
    hardware, service, setup = planned[:3]
    assert (hardware.quantity, hardware.unit_price, hardware.unit_cost, hardware.discount) == (
        D(3), D("19.99"), D(12), D(1))
    assert (hardware.zomentum_item_id, hardware.manufacturer_part_number) == ("item-H1", "HW-0001")
    assert (hardware.item_name, hardware.description, hardware.taxable) == ("Item H1", "About H1", True)
    assert hardware.catalogue_price == D("19.99")
    assert service.taxable is False and setup.taxable is False  # the fee follows its line
    assert (setup.item_name, setup.description, setup.quantity, setup.unit_price) == (
        SETUP_FEE_ITEM_NAME, "Setup fee: Item S1", D(1), D(99))
    assert (setup.zomentum_item_id, setup.catalogue_price) == (None, None)
    assert planned[3].catalogue_price is None  # a share of a bundle is not the item's price


def test_a_discount_larger_than_the_line_moves_its_excess_to_the_setup_fee():
    planned = plan_quote_lines([line("S1", "service", "1", "100.00", setup="50.00", discount="120.00")], SINGLE,
                               document_id=DOC)
    assert [(p.role, p.unit_price, p.discount, p.total) for p in planned] == [
        (LineRole.ITEM, D(100), D(100), D("0.00")),
        (LineRole.SETUP_FEE, D(50), D(20), D("30.00")),
    ]


@pytest.mark.parametrize(("lines", "message"), [
    ([line("H1", quantity="0")], r"document doc-1, line H1 \('Item H1'\): quantity 0 must be greater than 0"),
    ([line("H1", quantity="-2")], r"line H1 .*quantity -2 must be greater than 0"),
    ([line("X1", "consulting")], r"line X1 .*unknown item type 'consulting'; known: hardware, software, service"),
    ([line("H1", cost="-1")], "cost_price -1 must not be negative"),
    ([line("H1", children=(child("C1"),))], "only bundles have child lines, but this hardware line has 1"),
    ([bundle("10.00", child("C1"), line_id="Q")], r"line Q .*pricing level .* of bundle item item-Q is not known"),
    ([line("H1"), line("H1")], "line id H1 appears twice"),
])
def test_a_document_that_cannot_be_planned_is_refused_naming_the_line(lines, message):
    with pytest.raises(PushPlanError, match=message):
        plan_quote_lines(lines, SINGLE, document_id=DOC, items=FACTS)


def test_lines_parsed_from_zomentum_csv_plan_directly():
    csv_text = (
        "line_id,item_id,name,description,type,quantity,sell_price,cost_price,discount,setup_price,"
        "billing_period,parent_line_id\r\n"
        "L1,item-B,Office kit,,bundle,2,150.00,0.00,0.00,0.00,one_time,\r\n"
        "L2,item-H1,Laptop,,hardware,2,0.00,700.00,0.00,0.00,one_time,L1\r\n"
        "L3,item-S9,Setup,,service,2,0.00,0.00,0.00,0.00,one_time,L1\r\n"
        "L4,item-S1,Support,,service,12,45.00,20.00,0.00,0.00,monthly,\r\n"
    )
    lines = parse_line_items_csv(csv_text)
    facts = {"item-B": ItemFacts("item-B", bundle_pricing_level="bundle")}
    planned = plan_quote_lines(lines, SPLIT, document_id="D9", items=facts)
    assert [(p.line_key, p.quantity, p.unit_price) for p in planned] == [
        ("zk:D9:item-B#1/item-H1#1", D(2), D("75.00")),
        ("zk:D9:item-B#1/item-S9#1", D(2), D("75.00")),
        ("zk:D9:item-S1#1", D(12), D("45.00")),
    ]
    assert planned_amount(planned) == document_amount(lines) == D("840.00")


@pytest.mark.parametrize(("item", "expected"), [
    ({"id": "i1", "manufacturer_part_number": " HW-1 ", "bundle": None}, ItemFacts("i1", "HW-1", None)),
    ({"id": "i2", "manufacturer_part_number": "", "bundle": {"pricing_level": "individual", "children": []}},
     ItemFacts("i2", None, "individual")),
    ({"id": "i3"}, ItemFacts("i3")),
])
def test_item_facts_from_a_zomentum_item(item, expected):
    assert ItemFacts.from_item(item) == expected


@pytest.mark.parametrize(("args", "kwargs", "key"), [
    (("D1", "L1"), {}, "zk:D1:L1"),
    (("D1", "C2", "B1"), {}, "zk:D1:B1/C2"),
    (("D1", "L1"), {"setup_fee": True}, "zk:D1:L1+setup"),
])
def test_line_keys(args, kwargs, key):
    assert line_key(*args, **kwargs) == key


def test_line_keys_say_what_a_line_is_so_a_revision_with_new_line_ids_keeps_them():
    """Zomentum gives every line a new id in every revision: the keys follow the item, its occurrence and
    its bundle, so only the lines that changed get new keys."""
    first = (line("L1", item_id="rack"), line("L2", item_id="rack"), bundle("100.00", *three_children()))
    revised = (line("R9", item_id="rack", quantity="5"), line("R8", item_id="rack"),
               line("X", "bundle", "1", "100.00", item_id="item-B",
                    children=(child("X1", "hardware", cost="20", item_id="item-C1"),
                              child("X2", "software", cost="5", item_id="item-C2"),
                              child("X3", "labor", cost="7", item_id="item-C3"))),
               line("R7", item_id="printer"))
    facts = {"item-B": ItemFacts("item-B", bundle_pricing_level="bundle")}
    keys = [p.line_key for p in plan_quote_lines(first, SINGLE, document_id=DOC, items=facts)]
    revised_keys = [p.line_key for p in plan_quote_lines(revised, SINGLE, document_id=DOC, items=facts)]
    assert keys == ["zk:doc-1:rack#1", "zk:doc-1:rack#2", "zk:doc-1:item-B#1"]
    assert revised_keys == [*keys, "zk:doc-1:printer#1"]
    assert line_identities((line("N1", item_id=""), line("N2", item_id=""))) == {"N1": "name:item n1#1",
                                                                                "N2": "name:item n2#1"}
