"""Step 2-4 of a push, writing: the planned Kaseya writes sent in order, each recorded in the push ledger
before it is sent (intent) and after (outcome); Kaseya read back and compared with what was sent; the
Kaseya opportunity's link written onto the Zomentum opportunity.

A write Kaseya refused (`success:false`, 4xx) stops the push with Kaseya's message: nothing later is sent,
and a re-run after the cause is fixed continues from what Kaseya then holds. A write whose answer was lost
(5xx, timeout, reset) stays in doubt in the ledger: the next attempt looks for the record by its marker and
adopts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zk_pipelines.clients.http import ApiError, ApiUnavailable, WriteOutcomeUnknown
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.clients.zomentum_links import ensure_link_field
from zk_pipelines.clients.zomentum_models import OPPORTUNITIES
from zk_pipelines.domain.push_plan.quote_lines import quote_line_body
from zk_pipelines.domain.push_plan.readback import (
    OPPORTUNITY_READBACK_FIELDS,
    QUOTE_LINE_READBACK_FIELDS,
    QUOTE_READBACK_FIELDS,
    readback_differences,
)
from zk_pipelines.domain.push_plan.requests import KaseyaId, PendingId, PlannedRequest
from zk_pipelines.push.failures import PushFailed, passing
from zk_pipelines.push.ledger import PushLedger
from zk_pipelines.push.resolve import OPPORTUNITIES as OPPORTUNITY_ENTITY
from zk_pipelines.push.resolve import QUOTES, PreparedPush, PushStep
from zk_pipelines.storage.push_store import KASEYA, REFUSED, SENT, UNKNOWN, ZOMENTUM


@dataclass(frozen=True)
class SentWrite:
    step: PushStep
    request: PlannedRequest  # as sent: every placeholder filled
    record_id: int | None  # the id of the record written (a create's new id)


@dataclass
class Execution:
    """What the writes of one attempt did: the ids that filled the plan's placeholders and each write sent."""

    ids: dict[PendingId, int] = field(default_factory=dict)
    sent: list[SentWrite] = field(default_factory=list)

    def id_of(self, ref: KaseyaId | None) -> int | None:
        if isinstance(ref, PendingId):
            return self.ids.get(ref)
        return ref


def _answer_id(step: PushStep, answer: Mapping[str, Any]) -> int | None:
    key = "productIndexId" if step.request.endpoint == "create_product" else "id"
    value = answer.get(key) if isinstance(answer, Mapping) else None
    return int(value) if value is not None else None


def _main_location_id(answer: Mapping[str, Any]) -> int:
    locations = list(answer.get("locations") or [])
    return int(next((loc for loc in locations if loc.get("isMain")), locations[0])["id"])


# The path parameter naming the record an update writes.
_UPDATED_RECORD = {"update_opportunity": "opportunity_id", "update_quote": "quote_id",
                   "update_quote_line_item": "line_item_id"}


def _written_id(step: PushStep, request: PlannedRequest, answer: Any) -> int | None:
    if request.endpoint in _UPDATED_RECORD:
        return int(request.path_params[_UPDATED_RECORD[request.endpoint]])
    return _answer_id(step, answer)


def send_writes(prepared: PreparedPush, kaseya: KaseyaClient, ledger: PushLedger) -> Execution:
    """Send every planned write in order; raises PushFailed at the first one that fails."""
    execution = Execution()
    document_id = prepared.source.id
    for number, step in enumerate(prepared.steps, start=1):
        request = step.request.with_ids(execution.ids)
        if request.pending:
            raise PushFailed(document_id, f"{request.purpose}: no id yet for {', '.join(map(str, request.pending))}",
                             entity=step.entity)
        request_id = ledger.intend(number, KASEYA, request, step.record_key)
        try:
            answer, _ = kaseya.call(request.endpoint, path_params=request.path_params, body=request.body)
        except (WriteOutcomeUnknown, ApiUnavailable) as exc:
            ledger.settle(request_id, UNKNOWN, response_status=exc.status, error=str(exc))
            raise PushFailed(document_id, f"{request.method} {request.path} ({request.purpose}): {exc}; the next "
                                          "attempt looks for the record and adopts it if it was written",
                             entity=step.entity, retryable=True) from exc
        except ApiError as exc:
            ledger.settle(request_id, REFUSED, response_status=exc.status, error=str(exc))
            raise PushFailed(document_id, f"Kaseya refused {request.method} {request.path} ({request.purpose}): "
                                          f"{exc.message}", entity=step.entity, retryable=passing(exc)) from exc
        record_id = _written_id(step, request, answer)
        pairs = []
        if step.creates is not None:
            if record_id is None:
                ledger.settle(request_id, UNKNOWN, response_status=200, error="the answer carried no id")
                raise PushFailed(document_id, f"{request.method} {request.path}: Kaseya's answer carried no id",
                                 entity=step.entity)
            execution.ids[step.creates] = record_id
            if step.main_location is not None:
                execution.ids[step.main_location] = _main_location_id(answer)
            if step.id_map_entity and step.zomentum_id:
                pairs.append((step.id_map_entity, record_id, step.zomentum_id))
        ledger.settle(request_id, SENT, response_status=200, record_id=record_id, pairs=pairs)
        execution.sent.append(SentWrite(step, request, record_id))
    return execution


def read_back(prepared: PreparedPush, execution: Execution, kaseya: KaseyaClient) -> None:
    """Read the opportunity, the quote and its lines back from Kaseya and compare them with what was sent
    (or, for what needed no write, with what the plan expected); raises PushFailed naming each difference."""
    document_id = prepared.source.id
    sent_bodies = {write.step.record_key: write.request.body for write in execution.sent}
    problems: list[str] = []
    entity = OPPORTUNITY_ENTITY

    opportunity_id = execution.id_of(prepared.opportunity)
    expected = sent_bodies.get("opportunity", prepared.opportunity_body)
    read = kaseya.opportunity(opportunity_id)
    problems += [f"opportunity {opportunity_id}: {d}"
                 for d in readback_differences(expected, read, OPPORTUNITY_READBACK_FIELDS)]

    if prepared.quote is not None and prepared.quote_body is not None:
        quote_id = execution.id_of(prepared.quote)
        expected = sent_bodies.get("quote", prepared.quote_body)
        differences = [f"quote {quote_id}: {d}"
                       for d in readback_differences(expected, kaseya.quote(quote_id), QUOTE_READBACK_FIELDS)]
        by_key: dict[str, list[Any]] = {}
        for line in kaseya.quote_line_items(quote_id):
            if line.get("quantity"):
                by_key.setdefault(str(line.get("extDistReference")), []).append(line)
        for line in prepared.quote_lines:
            item_id = execution.id_of(prepared.item_ids[line.line_key])
            matches = by_key.get(line.line_key, [])
            if len(matches) != 1:
                differences.append(f"quote {quote_id} line {line.line_key}: Kaseya has {len(matches)} such lines, "
                                   "expected 1")
                continue
            body = quote_line_body(line, item_id)
            differences += [f"quote {quote_id} line {line.line_key}: {d}"
                            for d in readback_differences(body, matches[0], QUOTE_LINE_READBACK_FIELDS)]
        if differences and not problems:
            entity = QUOTES
        problems += differences
    if problems:
        raise PushFailed(document_id, "Kaseya does not hold what was sent: " + "; ".join(problems), entity=entity)


@dataclass(frozen=True)
class ZomentumWrite:
    """A Zomentum write, in the shape the ledger records a Kaseya one."""

    path: str
    body: Any
    endpoint: str = "zomentum_update_opportunity"
    method: str = "PUT"
    purpose: str = "write the Kaseya opportunity link onto the Zomentum opportunity"


def link_value(record: Mapping[str, Any], field_id: str) -> str | None:
    for value in record.get("custom_fields") or []:
        if value.get("id") == field_id and value.get("values"):
            return str(value["values"][0])
    return None


def write_opportunity_link(zomentum: ZomentumClient, prepared: PreparedPush, link: str, ledger: PushLedger,
                           step: int) -> bool:
    """Put the Kaseya opportunity's address into the Zomentum opportunity's "Kaseya opportunity" custom field
    (created if missing), unless it already holds it; True when it was written."""
    field_id = ensure_link_field(zomentum)
    opportunity = prepared.source.opportunity
    if link_value(opportunity, field_id) == link:
        return False
    body = {"custom_fields": [{"id": field_id, "values": [link]}]}
    write = ZomentumWrite(f"/v2/{OPPORTUNITIES}/{opportunity['id']}", body)
    request_id = ledger.intend(step, ZOMENTUM, write, None)
    try:
        zomentum.update(OPPORTUNITIES, str(opportunity["id"]), body)
    except ApiError as exc:
        ledger.settle(request_id, UNKNOWN if isinstance(exc, WriteOutcomeUnknown) else REFUSED,
                      response_status=exc.status, error=str(exc))
        raise PushFailed(prepared.source.id, f"the Kaseya link could not be written onto Zomentum opportunity "
                                             f"{opportunity['id']}: {exc}", entity=OPPORTUNITY_ENTITY) from exc
    ledger.settle(request_id, SENT, response_status=200, record_id=opportunity["id"])
    return True


