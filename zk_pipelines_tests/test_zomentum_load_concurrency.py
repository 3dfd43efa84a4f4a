"""The load into Zomentum with its writes in flight at once: the same initial sync run one write at a time and
eight at a time, on two identical pairs of sandboxes, ends with the same ledger, id map and Zomentum records.

Both tenants carry the same duplicates by match key (contacts sharing an e-mail, accounts sharing a name, two
contacts with the e-mail of a Zomentum contact that exists already), and every Zomentum write is held for
`WRITE_LATENCY` seconds, so that concurrent writes of one match key would race if they were allowed to."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zk_pipelines.defs.resources import PullTuning
from zk_pipelines.sandbox.kaseya import start_kaseya_sandbox
from zk_pipelines.sandbox.zomentum import start_zomentum_sandbox
from zk_pipelines.sandbox.zomentum.schema import parse_timestamp
from zk_pipelines_tests.pipeline_harness import (
    PipelineHarness,
    materialization_metadata,
    step_errors,
)

WRITE_LATENCY = 0.05
CONCURRENCY = 8
SHARED_EMAIL = "front.desk@shared-inbox.example"
SHARED_NAME = "Twice Named Holdings Ltd"
TARGETS = {"clients": "client/companies", "client_users": "client/users", "opportunities": "opportunities",
           "items": "items"}


@dataclass
class Duplicates:
    """Kaseya ids of the records placed in the tenant, each list in Kaseya id order."""

    same_email: list[str]  # four contacts with SHARED_EMAIL
    same_name: list[str]  # three accounts named SHARED_NAME
    existing_email: str  # the e-mail of a Zomentum contact no Kaseya contact had before
    with_existing_email: list[str]  # two contacts with that e-mail


def place_duplicates(harness: PipelineHarness) -> Duplicates:
    state = harness.kaseya.state
    moment = harness.current_hour - timedelta(hours=8)

    def create(entity: str, fields: dict[str, Any]) -> str:
        nonlocal moment
        made = state.create_record(entity, fields)
        moment += timedelta(seconds=7)
        harness.set_modified_on(entity, made["id"], moment)
        return str(made["id"])

    kaseya_contacts = json.dumps(harness.kaseya_records("contacts")).lower()
    existing_email = next(user["email"] for user in harness.zomentum.state.records("client/users")
                          if user["email"].lower() not in kaseya_contacts)
    home = int(create("accounts", {"accountName": "Shared Inbox Partners Ltd"}))
    same_email = [create("contacts", {"accountId": home, "firstName": first, "lastName": "Desk",
                                      "emailAddress": SHARED_EMAIL}) for first in ("Ann", "Bob", "Cleo", "Dan")]
    same_name = [create("accounts", {"accountName": SHARED_NAME}) for _ in range(3)]
    with_existing = [create("contacts", {"accountId": home, "firstName": first, "lastName": "Known",
                                         "emailAddress": existing_email}) for first in ("Eve", "Finn")]
    return Duplicates(same_email, same_name, existing_email, with_existing)


@dataclass
class LoadRun:
    harness: PipelineHarness
    duplicates: Duplicates
    result: Any


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Iterator[dict[int, LoadRun]]:
    """The initial sync of identical tenants with the writes one at a time (1) and CONCURRENCY at a time.

    Both pairs are seeded at one moment and both runs see one "now": seeded at their own start, a record
    modified close to the backfill's last hour would fall inside one run's window and outside the other's."""
    started = []
    moment = datetime.now(UTC)
    try:
        done: dict[int, LoadRun] = {}
        for concurrency in (1, CONCURRENCY):
            kaseya = start_kaseya_sandbox(scale="small_recent", seeded_at=moment)
            zomentum = start_zomentum_sandbox(scale="small_recent", seeded_at=moment)
            started += [kaseya, zomentum]
            zomentum.state.set_faults(seed=1, rules=[
                {"kind": "latency", "method": method, "seconds": WRITE_LATENCY} for method in ("POST", "PUT")])
            harness = PipelineHarness(kaseya, zomentum, tmp_path_factory.mktemp(f"writes_{concurrency}"),
                                      tuning=PullTuning(zomentum_concurrency=concurrency), now=moment)
            duplicates = place_duplicates(harness)
            done[concurrency] = LoadRun(harness, duplicates, harness.backfill())
        yield done
    finally:
        for sandbox in started:
            sandbox.stop()


def translation(harness: PipelineHarness) -> dict[str, str]:
    """Zomentum ids made by this run -> a name that is the same in both runs (ids of seeded records already are)."""
    names = {zomentum_id: f"<{entity} of Kaseya {kaseya_id}>" for entity, kaseya_id, zomentum_id in harness.sql(
        "SELECT entity, kaseya_id, zomentum_id FROM zomentum.id_map WHERE link_kind = 'created'")}
    names.update({field["id"]: f"<custom field {field['display_name']}>"
                  for field in harness.zomentum.state.records("custom/fields")})
    # The links are made with each pair of sandboxes' own addresses.
    names.update({harness.kaseya.base_url: "<Kaseya>", harness.zomentum.base_url: "<Zomentum>"})
    return names


def translated(value: Any, names: dict[str, str]) -> Any:
    """`value` with the ids of `names` replaced, without its moments (both tenants are seeded relative to
    the moment their sandboxes started, some seconds apart)."""
    if isinstance(value, dict):
        return {key: translated(item, names) for key, item in value.items()
                if not key.endswith(("_at", "_date"))}
    if isinstance(value, list):
        return [translated(item, names) for item in value]
    if isinstance(value, str):
        for zomentum_id, name in names.items():
            value = value.replace(zomentum_id, name)
    return value


def ledger(run: LoadRun) -> Counter:
    names = translation(run.harness)
    rows = run.harness.sql("SELECT entity, kaseya_id, zomentum_id, action, reason, changed_fields, link "
                           "FROM audit.sync_events WHERE direction = 'pull'")
    return Counter(json.dumps(translated(list(row), names)) for row in rows)


def zomentum_records(run: LoadRun) -> dict[str, list[str]]:
    names = translation(run.harness)
    return {resource: sorted(json.dumps(translated(record, names), sort_keys=True)
                             for record in run.harness.zomentum.state.records(resource))
            for resource in TARGETS.values()}


def writes(run: LoadRun) -> list[dict]:
    return run.harness.zomentum_writes()


@pytest.mark.slow
def test_both_runs_succeed_and_the_tenants_start_alike(runs):
    for run in runs.values():
        assert run.result.success, step_errors(run.result)
    assert runs[1].duplicates == runs[CONCURRENCY].duplicates


def test_concurrent_writes_leave_the_same_ledger_and_id_map_as_one_at_a_time(runs):
    sequential, concurrent = runs[1], runs[CONCURRENCY]

    assert ledger(concurrent) == ledger(sequential)
    for entity in TARGETS:
        names_1, names_8 = translation(sequential.harness), translation(concurrent.harness)
        assert ({k: names_8.get(z, z) for k, z in concurrent.harness.id_map(entity).items()}
                == {k: names_1.get(z, z) for k, z in sequential.harness.id_map(entity).items()}), entity


def test_concurrent_writes_leave_the_same_zomentum_records_with_the_same_writes(runs):
    sequential, concurrent = runs[1], runs[CONCURRENCY]

    assert zomentum_records(concurrent) == zomentum_records(sequential)
    assert Counter((w["method"], w["route"]) for w in writes(concurrent)) == Counter(
        (w["method"], w["route"]) for w in writes(sequential))
    for run in runs.values():
        reported = sum(materialization_metadata(run.result, f"zomentum_{target}")["zomentum_writes"]
                       for target in TARGETS)
        record_writes = [w for w in writes(run) if w["route"] != "/v2/custom/fields/"]  # the link field's create
        assert reported == len(record_writes)


def most_writes_within(run: LoadRun, seconds: float) -> int:
    """The most Zomentum writes the sandbox received within `seconds` of one another."""
    moments = sorted(parse_timestamp(w["at"]) for w in writes(run))
    most, first = 0, 0
    for last, moment in enumerate(moments):
        while moment - moments[first] >= timedelta(seconds=seconds):
            first += 1
        most = max(most, last - first + 1)
    return most


def test_writes_overlap_up_to_the_concurrency_and_not_one_at_a_time(runs):
    # Each write's answer is held WRITE_LATENCY after the sandbox logged it, and a thread sends its next write
    # only once it has the answer: writes logged closer together than that were in flight at once.
    window = WRITE_LATENCY * 0.8
    assert most_writes_within(runs[1], window) == 1
    assert 2 <= most_writes_within(runs[CONCURRENCY], window) <= CONCURRENCY


def pull_events(run: LoadRun, entity: str, kaseya_ids: list[str]) -> dict[str, tuple[str, str | None, str | None]]:
    rows = run.harness.sql("SELECT kaseya_id, action, zomentum_id, reason FROM audit.sync_events "
                           "WHERE direction = 'pull' AND entity = ? AND list_contains(?, kaseya_id)",
                           [entity, kaseya_ids])
    return {kaseya_id: (action, zomentum_id, reason) for kaseya_id, action, zomentum_id, reason in rows}


def test_contacts_sharing_an_e_mail_make_one_zomentum_contact_under_concurrency(runs):
    run = runs[CONCURRENCY]
    first, *others = run.duplicates.same_email

    created = [r for r in run.harness.zomentum.state.records("client/users") if r["email"] == SHARED_EMAIL]
    posted = [w for w in writes(run) if w["method"] == "POST" and (w["body"] or {}).get("email") == SHARED_EMAIL]
    assert len(created) == len(posted) == 1
    events = pull_events(run, "client_users", run.duplicates.same_email)
    assert events[first][:2] == ("created", created[0]["id"])
    for other in others:
        action, zomentum_id, reason = events[other]
        assert (action, zomentum_id) == ("failed", None)
        assert f"has the same e-mail as Kaseya contact {first}" in reason
    assert set(run.harness.id_map("client_users")) & set(run.duplicates.same_email) == {first}


def test_accounts_sharing_a_name_make_one_zomentum_client_under_concurrency(runs):
    run = runs[CONCURRENCY]
    first, *others = run.duplicates.same_name

    created = [r for r in run.harness.zomentum.state.records("client/companies") if r["name"] == SHARED_NAME]
    posted = [w for w in writes(run) if w["method"] == "POST" and (w["body"] or {}).get("name") == SHARED_NAME]
    assert len(created) == len(posted) == 1
    events = pull_events(run, "clients", run.duplicates.same_name)
    assert events[first][:2] == ("created", created[0]["id"])
    assert [events[other][0] for other in others] == ["failed", "failed"]
    assert all(f"has the same name as Kaseya account {first}" in events[other][2] for other in others)


def test_two_contacts_with_the_e_mail_of_another_clients_zomentum_contact_are_conflicts_and_write_nothing(runs):
    run = runs[CONCURRENCY]
    first, second = run.duplicates.with_existing_email
    email = run.duplicates.existing_email

    existing = [r for r in run.harness.zomentum.state.records("client/users") if r["email"] == email]
    assert len(existing) == 1
    assert not [w for w in writes(run) if (w["method"] == "POST" and (w["body"] or {}).get("email") == email)
                or existing[0]["id"] in w["path"]]
    events = pull_events(run, "client_users", [first, second])
    for contact in (first, second):
        action, zomentum_id, reason = events[contact]
        assert (action, zomentum_id) == ("conflict", None)
        assert existing[0]["id"] in reason
