"""The dry run (`zk push --dry-run`): a plan rendered as text, every request with its JSON body exactly as a
push would send it."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from zk_pipelines.domain.bundles import planned_amount
from zk_pipelines.domain.push_plan.overrides import OPPORTUNITY_OVERRIDABLE, QUOTE_OVERRIDABLE
from zk_pipelines.domain.push_plan.plan import PushPlan
from zk_pipelines.domain.push_plan.requests import PendingId
from zk_pipelines.domain.text_table import aligned_columns


def _json_default(value: Any) -> Any:
    if isinstance(value, PendingId):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _plain_number(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")


def render_plan(plan: PushPlan) -> str:
    """The dry run: resolved ids and mapped statuses, overrides, quote lines, then every request in order
    with its method, path, purpose and pretty JSON body, exactly as a push would send it."""
    lines = [f"Push of Zomentum document {plan.document_id} (version {plan.document_version}): "
             f"{len(plan.requests)} request{'s' if len(plan.requests) != 1 else ''}, dry run: nothing is sent"]
    lines += [f"  note: {note}" for note in plan.notes]
    if plan.resolutions:
        lines += ["", "Resolved ids and mapped statuses"]
        lines += aligned_columns([[r.what, "->", r.result, f"({r.how})"] for r in plan.resolutions])
    overrides = {**plan.overrides.opportunity, **plan.overrides.quote}
    if overrides:
        lines += ["", "Overrides"]
        table = {**OPPORTUNITY_OVERRIDABLE, **QUOTE_OVERRIDABLE}
        lines += aligned_columns([[key, "=", str(value), f"(sets {table[key].kaseya_field})"]
                           for key, value in overrides.items()])
    if plan.quote_lines:
        lines += ["", "Quote lines"]
        rows = [["key", "type", "name", "quantity", "unit price", "discount", "total"]]
        rows += [[line.line_key, line.item_type.label, line.item_name, _plain_number(line.quantity),
                  f"{line.unit_price:.2f}", f"{line.discount:.2f}", f"{line.total:.2f}"] for line in plan.quote_lines]
        lines += aligned_columns(rows, right=frozenset({3, 4, 5, 6}))
        total = planned_amount(plan.quote_lines)
        check = "" if plan.document_amount is None else (
            f" (document lines: {plan.document_amount:.2f}"
            f"{'' if plan.document_amount == total else ', DIFFERENT'})")
        lines.append(f"  quote total {total:.2f}{check}")
    lines += ["", "Requests"] if plan.requests else ["", "No requests: Kaseya already matches the document"]
    for number, request in enumerate(plan.requests, start=1):
        lines.append(f"{number}. {request.method} {request.path}")
        lines.append(f"   {request.purpose}")
        if request.body is not None:
            text = json.dumps(request.body, indent=2, ensure_ascii=False, default=_json_default)
            lines += ["   " + row for row in text.splitlines()]
    return "\n".join(lines)
