"""A push's plan: what it resolved and every request it will send, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from zk_pipelines.domain.bundles import PlannedLine
from zk_pipelines.domain.push_plan.overrides import PushOverrides
from zk_pipelines.domain.push_plan.requests import PlannedRequest
from zk_pipelines.domain.push_plan.resolutions import Resolution


@dataclass(frozen=True)
class PushPlan:
    document_id: str
    document_version: str
    resolutions: tuple[Resolution, ...]
    requests: tuple[PlannedRequest, ...]
    quote_lines: tuple[PlannedLine, ...] = ()
    document_amount: Decimal | None = None  # what the document's lines add up to, for the dry run's check
    overrides: PushOverrides = field(default_factory=PushOverrides)
    notes: tuple[str, ...] = ()  # e.g. "quotes are not pushed: push_quotes_on_won is off"
