"""The stage tie-break holds on first sight, end to end through both sandboxes: when the pull first pairs a
Kaseya opportunity with an existing Zomentum opportunity (by its "Kaseya opportunity" link field), a status
mapped from several stages keeps the Zomentum opportunity's current stage if it is one of them."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from zk_pipelines_tests.pipeline_harness import PipelineHarness, reset_sandboxes, step_errors

PROPOSAL = "Proposal"


def _stage(zomentum, pipeline: str, stage: str) -> tuple[str, str]:
    found = next(p for p in zomentum.records("pipelines") if p["name"] == pipeline)
    return found["id"], next(s["id"] for s in found["stages"] if s["name"] == stage)


@pytest.mark.slow
def test_first_sight_keeps_the_current_zomentum_stage_among_equivalent_stages(sandboxes, tmp_path):
    kaseya, zomentum = reset_sandboxes(sandboxes)
    harness = PipelineHarness(kaseya, zomentum, tmp_path)
    # Kaseya's "Proposal" is mapped from both "Proposal Sent" and "Negotiation" (first in pipeline order:
    # "Proposal Sent").
    settings = yaml.safe_load(harness.settings_path.read_text())
    for entry in settings["opportunity_stages"]["mapping"]:
        if entry["stage"] == "Negotiation":
            entry["kaseya_status"] = PROPOSAL
    harness.settings_path.write_text(yaml.safe_dump(settings, sort_keys=False))

    active = {a["id"] for a in harness.kaseya_records("accounts") if a["isActive"] is not False}
    inactive_contacts = {c["id"] for c in harness.kaseya_records("contacts") if c["isActive"] is False}
    opportunity = next(o for o in harness.kaseya_records("opportunities") if o["accountId"] in active
                       and o["contactId"] not in inactive_contacts)
    status_id = next(o["statusId"] for o in harness.kaseya_records("opportunities") if o["status"] == PROPOSAL)
    kaseya.state.update_record("opportunities", opportunity["id"], {"statusId": status_id})
    harness.set_modified_on("opportunities", opportunity["id"], harness.current_hour - timedelta(hours=6))
    link_field = zomentum.state.create_record("custom/fields", {
        "entity_type": "opportunity", "display_name": "Kaseya opportunity", "field_type": "text"})
    pipeline_id, negotiation = _stage(zomentum.state, "Sales Pipeline", "Negotiation")
    link = settings["links"]["kaseya"]["opportunity"].format(
        base_url=settings["links"]["kaseya"].get("base_url") or kaseya.base_url, id=opportunity["id"])
    existing = zomentum.state.create_record("opportunities", {
        "name": "Pushed earlier", "client_company_id": zomentum.state.records("client/companies")[0]["id"],
        "opportunity_pipeline_id": pipeline_id, "opportunity_pipeline_stage_id": negotiation,
        "custom_fields": [{"id": link_field["id"], "values": [link]}]})

    result = harness.backfill()

    assert result.success, step_errors(result)
    assert harness.id_map("opportunities")[str(opportunity["id"])] == existing["id"]
    assert zomentum.state.get_record("opportunities", existing["id"])["opportunity_pipeline_stage_id"] == negotiation
    assert not [w for w in harness.zomentum_writes() if existing["id"] in w["path"]
                and "opportunity_pipeline_stage_id" in (w["body"] or {})]

    # A later Kaseya edit of that opportunity keeps the stage as well.
    kaseya.state.update_record("opportunities", opportunity["id"], {"amount": 1234.5})
    next_hour = harness.current_hour - timedelta(hours=1)
    harness.set_modified_on("opportunities", opportunity["id"], next_hour + timedelta(minutes=10))
    assert harness.run_hour(next_hour).success
    after = zomentum.state.get_record("opportunities", existing["id"])
    assert after["estimated_value"] == 1234.5
    assert after["opportunity_pipeline_stage_id"] == negotiation
