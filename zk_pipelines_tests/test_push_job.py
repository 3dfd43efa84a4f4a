"""The push in Dagster: the push job with its typed config (Kaseya as CRM, on demand), the Won-document
sensor (Zomentum as CRM) tested with `build_sensor_context`, and the names the code location pins."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg
import pytest

from zk_pipelines.clients.kaseya import KASEYA_POLICY
from zk_pipelines.definitions import build_definitions
from zk_pipelines.defs.push import (
    DOCUMENT_TAG,
    PUSH_JOB,
    PUSH_OP,
    VERSION_TAG,
    WON_DOCUMENT_SENSOR,
    build_push_job,
    build_won_document_sensor,
    push_run_config,
)
from zk_pipelines.defs.resources import tenant_resources
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.ledger_store import IdMapEntry, upsert_id_map
from zk_pipelines.storage.push_store import ensure_push_tables, start_document
from zk_pipelines.storage.schema import create_tables
from zk_pipelines_tests.pipeline_harness import tenant_environment
from zk_pipelines_tests.test_push_document import PushTenant, settings_file


@pytest.fixture
def tenant(kaseya, zomentum, kaseya_credentials, zomentum_credentials, tmp_path) -> PushTenant:
    return PushTenant(kaseya, zomentum, kaseya_credentials, zomentum_credentials, tmp_path)


def variables(tenant: PushTenant, **settings):
    return tenant_environment(tenant.kaseya, tenant.zomentum, settings_file(tenant.directory, **settings),
                              tenant.database)


def resources(tenant: PushTenant, **settings) -> dict:
    """The tenant's resources as the code location binds them (EnvVars)."""
    return tenant_resources(variables(tenant, **settings))


def run_push_job(tenant: PushTenant, document_id: str, overrides=(), *, dry_run=False, tags=None, **settings):
    return build_push_job().execute_in_process(
        run_config=push_run_config(document_id, overrides, dry_run), resources=resources(tenant, **settings),
        tags=tags, raise_on_error=False)


# --------------------------------------------------------------------------------------------------------
# Kaseya as CRM: a person pushes one document on demand, with overrides


def linked_kaseya_opportunity(tenant: PushTenant) -> tuple[dict, dict]:
    """A Kaseya opportunity the pull brought into Zomentum: (Kaseya opportunity, Zomentum opportunity),
    paired in the id map as the pull pairs them."""
    client = tenant.client(in_kaseya=True)
    account = next(a for a in tenant.kaseya_records("accounts") if a["accountName"] == client["name"])
    kaseya_deal = tenant.kaseya.state.create_record("opportunities", {  # as a Kaseya user enters it
        "accountId": account["id"], "subject": "Office move", "status": "Negotiation", "amount": 900.0,
        "description": "Found at the quarterly business review", "leadSource": "Trade Show", "rating": "Warm",
        "type": "Renewal"})
    zomentum_deal = tenant.opportunity(client, name=kaseya_deal["subject"])
    with connect(tenant.database) as connection:
        create_tables(connection)
        upsert_id_map(connection, [IdMapEntry("opportunities", str(kaseya_deal["id"]), zomentum_deal["id"], "created",
                                              "hash-of-what-the-pull-sent", {"name": kaseya_deal["subject"]})],
                      datetime.now(UTC))
    return tenant.kaseya.state.record("opportunities", kaseya_deal["id"]), zomentum_deal


def test_the_push_job_pushes_one_document_on_demand_with_overrides_kaseya_as_crm(tenant):
    kaseya_deal, zomentum_deal = linked_kaseya_opportunity(tenant)
    document_id = tenant.document([tenant.line("Rack Shelf 1U", 2)], opportunity=zomentum_deal,
                                  client=tenant.client(in_kaseya=True))
    version = next(d for d in tenant.zomentum_records("documents") if d["id"] == document_id)["current_revision_id"]
    opportunities_before = len(tenant.kaseya_records("opportunities"))

    result = run_push_job(tenant, document_id, ["subject=Signed: office move", "quote.name=Final offer"],
                          mode="kaseya_as_crm")

    assert result.success
    assert len(tenant.kaseya_records("opportunities")) == opportunities_before  # updated, not created
    after = tenant.kaseya.state.record("opportunities", kaseya_deal["id"])
    assert (after["subject"], after["status"], after["amount"]) == ("Signed: office move", "Closed Won", 1234.5)
    # A full replace that keeps what zk_pipelines does not map.
    assert (after["type"], after["rating"], after["leadSource"]) == ("Renewal", "Warm", "Trade Show")
    assert after["description"] == ("Found at the quarterly business review\n\n"
                                    f"[zk_pipelines document {document_id}]")
    (quote,) = tenant.marked("quotes", document_id, "name")
    assert (quote["name"], quote["opportunityId"]) == (f"Final offer [zk_pipelines document {document_id}]",
                                                       kaseya_deal["id"])
    tags = result.dagster_run.tags
    assert (tags[DOCUMENT_TAG], tags[VERSION_TAG]) == (document_id, version)
    metadata = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT").step_output_data.metadata
    assert metadata["kaseya_opportunity_id"].value == kaseya_deal["id"]
    assert metadata["settings_fingerprint"].value == tenant.sql(
        "SELECT settings_fingerprint FROM push.documents")[0][0]
    # The push is in the lineage: each push materializes push_documents, with the Kaseya opportunity's link.
    (pushed,) = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    assert pushed.asset_key == dg.AssetKey("push_documents")
    assert pushed.metadata["document_id"].value == document_id
    assert pushed.metadata["kaseya_opportunity"] == dg.MetadataValue.url(
        f"{tenant.kaseya.base_url}/crm/opportunities/{kaseya_deal['id']}")


def test_the_dry_run_job_shows_the_writes_and_sends_nothing(tenant):
    document_id = tenant.document([tenant.line("Rack Shelf 1U", 2)])
    tenant.kaseya.state.clear_requests()

    result = run_push_job(tenant, document_id, dry_run=True, mode="kaseya_as_crm")

    assert result.success
    assert tenant.kaseya_writes() == []
    plan = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT").step_output_data.metadata["plan"]
    assert "POST /v2/crm/opportunities" in plan.value and "dry run: nothing is sent" in plan.value


def test_a_failed_push_fails_the_run_with_kaseyas_message_and_the_document(tenant):
    document_id = tenant.document([tenant.line("Rack Shelf 1U")])

    result = run_push_job(tenant, document_id, ["status_id=12345"])

    assert not result.success
    (failure,) = result.get_step_failure_events()
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith(f"push of Zomentum document {document_id} failed: Kaseya refused POST")
    assert "StatusId 12345 is not an opportunity status" in description
    assert result.dagster_run.tags[DOCUMENT_TAG] == document_id
    assert tenant.sql("SELECT action, reason FROM audit.sync_events") == [("failed", description)]
    # A refusal is final: the step is not attempted again.
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def _messages(error) -> str:
    """Every message along an error's chain of causes."""
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause or error.context
    return " <- ".join(messages)


@pytest.mark.slow
def test_a_push_failing_on_passing_faults_is_attempted_again_in_the_same_run_and_writes_once(tenant):
    document_id = tenant.document([tenant.line("Rack Shelf 1U", 2)])
    # The opportunity's create is made but its answer lost; then a catalogue read comes back garbled, on every
    # attempt the client makes.
    garbled = KASEYA_POLICY.max_attempts
    tenant.kaseya.state.set_faults(seed=1, rules=[
        {"kind": "lost_answer", "route": "POST /v2/crm/opportunities", "count": 1},
        {"kind": "malformed_json", "route": "GET /v2/inventory/warehouses/lookup", "count": garbled}])

    result = run_push_job(tenant, document_id)

    assert result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    faults = tenant.kaseya.state.fault_counts()
    assert (sum(faults["lost_answer"].values()), sum(faults["malformed_json"].values())) == (1, garbled)
    assert len(retries) == 2
    reasons = " | ".join(_messages(e.event_specific_data.error) for e in retries)
    assert "the answer was not JSON" in reasons and "the next attempt looks for the record" in reasons
    # The lost create was adopted by the next attempt, not sent again.
    assert len(tenant.marked("opportunities", document_id, "description")) == 1
    assert [e["method"] + " " + e["route"] for e in tenant.kaseya.state.requests()].count(
        "POST /v2/crm/opportunities") == 1


def test_a_document_held_by_a_running_dagster_run_waits_for_it_and_is_pushed_once_that_run_ended(tenant):
    document_id = tenant.document([tenant.line("Rack Shelf 1U")])
    version = next(d for d in tenant.zomentum_records("documents") if d["id"] == document_id)["current_revision_id"]
    instance = dg.DagsterInstance.ephemeral()
    holder = instance.add_run(dg.DagsterRun(job_name=PUSH_JOB, run_id="a5b0c1d2-0000-4000-8000-000000000001",
                                            status=dg.DagsterRunStatus.STARTED))
    with connect(tenant.database) as connection:
        ensure_push_tables(connection)
        start_document(connection, document_id, version, run_id=holder.run_id, fingerprint="f",
                       now=datetime(2020, 1, 1, tzinfo=UTC))  # long silent: a Dagster run's hold does not lapse

    def push() -> dg.ExecuteInProcessResult:
        return build_push_job().execute_in_process(
            run_config=push_run_config(document_id), resources=resources(tenant), instance=instance,
            raise_on_error=False)

    waiting = push()
    assert not waiting.success
    (failure,) = waiting.get_step_failure_events()
    description = failure.step_failure_data.user_failure_data.description
    assert f"run {holder.run_id} has been pushing this document" in description
    assert not [e for e in waiting.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert tenant.kaseya_writes() == []

    instance.report_run_failed(holder)  # it died, and was failed (the UI's Terminate, or run monitoring)
    assert push().success
    assert len(tenant.marked("opportunities", document_id, "description")) == 1


# --------------------------------------------------------------------------------------------------------
# Zomentum as CRM: the Won-document sensor


def tick(tenant: PushTenant, cursor: str | None, **settings):
    sensor = build_won_document_sensor(build_push_job())
    # The tenant resource closes its run-scoped Kaseya client on teardown, so the context is a context manager.
    with dg.build_sensor_context(cursor=cursor, resources=resources(tenant, **settings)) as context:
        return sensor(context)


def test_the_sensor_launches_one_run_per_won_version_and_none_for_other_statuses(tenant):
    won = tenant.document([tenant.line("Rack Shelf 1U")], status="sent", name="Will be won")
    other = tenant.document([tenant.line("Rack Shelf 1U")], status="sent", name="Will be accepted")
    first = tick(tenant, None)
    assert first.run_requests == [] and first.cursor

    tenant.zomentum_client().update("documents", won, {"status": "won"})
    tenant.zomentum_client().update("documents", other, {"status": "accepted"})
    second = tick(tenant, first.cursor)

    version = next(d for d in tenant.zomentum_records("documents") if d["id"] == won)["current_revision_id"]
    (request,) = second.run_requests
    assert request.run_key == f"push:{won}:{version}"
    assert request.tags == {DOCUMENT_TAG: won, VERSION_TAG: version}
    assert request.run_config == push_run_config(won)
    assert json.loads(second.cursor)["since"] > json.loads(first.cursor)["since"]

    assert tick(tenant, second.cursor).run_requests == []  # a repeated tick: nothing launched again

    tenant.zomentum.state.revise_document(won, [tenant.line("Rack Shelf 1U", 4)])  # changed and still Won
    (again,) = tick(tenant, second.cursor).run_requests
    assert again.run_key != request.run_key and again.tags[DOCUMENT_TAG] == won

    # The run the sensor asked for pushes the document.
    result = build_push_job().execute_in_process(run_config=request.run_config, tags=request.tags,
                                                 resources=resources(tenant))
    assert result.success
    assert len(tenant.marked("opportunities", won, "description")) == 1
    assert tenant.marked("opportunities", other, "description") == []


def test_the_sensor_does_nothing_when_kaseya_is_the_crm(tenant):
    tenant.document([tenant.line("Rack Shelf 1U")], status="sent")
    first = tick(tenant, None, mode="kaseya_as_crm")
    assert isinstance(first, dg.SkipReason) and "pushed on demand" in first.skip_message


# --------------------------------------------------------------------------------------------------------
# The code location


def test_the_push_job_and_sensor_are_registered_under_their_pinned_names(tenant):
    repository = build_definitions(variables=variables(tenant)).get_repository_def()
    job = repository.get_job(PUSH_JOB)
    assert [node.name for node in job.nodes] == [PUSH_OP]
    assert job.graph.node_named(PUSH_OP).definition.pool == "kaseya_api"
    sensor = repository.get_sensor_def(WON_DOCUMENT_SENSOR)
    assert sensor.job_name == PUSH_JOB
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
