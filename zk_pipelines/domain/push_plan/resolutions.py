"""How the push's Zomentum values became Kaseya ids (its step 1: sales representative, opportunity and
quote statuses), each with the reason the dry run shows."""

from __future__ import annotations

from dataclasses import dataclass

from zk_pipelines.domain.settings_check import ResolvedSettings


@dataclass(frozen=True)
class Resolution:
    """How one Zomentum thing became a Kaseya id: `what` (Zomentum side), `result` (Kaseya side), `how`."""

    what: str
    result: str
    how: str


def sales_representative_for(owner_email: str | None, resolved: ResolvedSettings) -> tuple[int, Resolution]:
    """The Kaseya employee with the owner's e-mail (any case), else the fallback sales representative."""
    employees = {email.casefold(): (email, employee_id) for email, employee_id in resolved.kaseya.employees.items()}
    what = f"owner {owner_email}" if owner_email else "owner (none)"
    if owner_email and owner_email.strip().casefold() in employees:
        email, employee_id = employees[owner_email.strip().casefold()]
        return employee_id, Resolution(what, f"sales representative {email} (id {employee_id})", "same e-mail")
    fallback = resolved.fallback_sales_representative
    return int(fallback.id), Resolution(what, f"sales representative {fallback.name} (id {fallback.id})",
                                        "fallback: no Kaseya employee has the owner's e-mail")


def opportunity_status_for(stage_id: str, resolved: ResolvedSettings, *, document_won: bool = False
                           ) -> tuple[int, Resolution]:
    """The Kaseya status for a Zomentum stage by the export mapping, else the default export status.

    A Won document wins its opportunity: when the opportunity still sits in a stage that is not of the won
    kind (nobody moved it yet), the status is exported from its pipeline's first won stage instead, so a Won
    document never reaches Kaseya as an open or lost opportunity."""
    stage = resolved.stage_by_id(stage_id)
    if document_won and stage is not None and stage.kind != "won":
        won = next((s for s in resolved.stages if s.pipeline_id == stage.pipeline_id and s.kind == "won"), None)
        if won is not None:
            status = resolved.export_status(won.stage_id)
            return int(status.id), Resolution(
                f"stage {stage} of a Won document", f"opportunity status {status.name} (id {status.id})",
                f"the document is Won: exported as its pipeline's won stage {won.stage}")
    status = resolved.export_status(stage_id)
    mapped = stage is not None and any(e.stage == stage.ref for e in resolved.settings.opportunity_stages.entries)
    what = f"stage {stage}" if stage is not None else f"stage {stage_id} (unknown)"
    return int(status.id), Resolution(what, f"opportunity status {status.name} (id {status.id})",
                                      "export mapping" if mapped else "default export status")


def quote_status_for(document_status: str, resolved: ResolvedSettings) -> tuple[int, Resolution]:
    status = resolved.quote_status(document_status)
    mapped = any(e.document_status == document_status for e in resolved.settings.document_statuses.entries)
    return int(status.id), Resolution(f"document status {document_status}",
                                      f"quote status {status.name} (id {status.id})",
                                      "document status mapping" if mapped else "default quote status")
