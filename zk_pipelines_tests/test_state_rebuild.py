"""A lost ledger, end to end through both sandboxes: the tenant's DuckDB file is deleted after records were
renamed (a client) and re-addressed (a contact's e-mail) in Zomentum. The next run notices that Zomentum holds
records carrying our Kaseya links that the id map does not know and creates nothing for them; `zk state
rebuild` restores the id map from those links; the run after it makes no duplicate and no write."""

from __future__ import annotations

import io

from zk_pipelines.commands.state_rebuild import run_state_rebuild
from zk_pipelines_tests.pipeline_harness import PipelineHarness, step_errors

RESOURCES = ("client/companies", "client/users", "opportunities", "items")


def _counts(harness: PipelineHarness) -> dict[str, int]:
    return {resource: len(harness.zomentum.state.records(resource)) for resource in RESOURCES}


def test_a_lost_id_map_is_noticed_refused_and_rebuilt_with_no_duplicate(sandboxes, tmp_path):
    kaseya, zomentum = sandboxes
    kaseya.state.reset(seed=7, scale="small_recent")
    zomentum.state.reset(seed=7, scale="small_recent")
    harness = PipelineHarness(kaseya, zomentum, tmp_path)
    first = harness.backfill()
    assert first.success, step_errors(first)
    created = dict(harness.sql("SELECT kaseya_id, zomentum_id FROM zomentum.id_map "
                               "WHERE entity = 'clients' AND link_kind = 'created' ORDER BY kaseya_id"))
    account, client_id = next(iter(created.items()))
    zomentum.state.update_record("client/companies", client_id, {"name": "Renamed In Zomentum Ltd"})
    contact, user_id = next((k, z) for k, z in harness.id_map("client_users").items()
                            if zomentum.state.get_record("client/users", z)["client_company_id"] != client_id)
    zomentum.state.update_record("client/users", user_id, {"email": "changed.in.zomentum@example.com"})
    before = _counts(harness)

    harness.database.unlink()  # the tenant's state is gone
    lost = harness.backfill()

    assert lost.success, step_errors(lost)
    assert _counts(harness) == before  # nothing created for what the id map no longer knows
    refused = dict(harness.sql("SELECT kaseya_id, reason FROM audit.sync_events WHERE action = 'failed' "
                               "AND reason LIKE '%zk state rebuild%'"))
    assert {account, contact} <= set(refused)
    assert client_id in refused[account] and user_id in refused[contact]

    out = io.StringIO()
    env = {"KASEYA_BASE_URL": kaseya.base_url, "KASEYA_USERNAME": kaseya.username, "KASEYA_PASSWORD": kaseya.password,
           "KASEYA_TENANT": kaseya.tenant, "ZOMENTUM_BASE_URL": zomentum.base_url,
           "ZOMENTUM_REFRESH_TOKEN": zomentum.refresh_token, "ZK_SETTINGS": str(harness.settings_path),
           "ZK_DUCKDB_PATH": str(harness.database)}
    assert run_state_rebuild(env, out=out, err=io.StringIO()) == 0
    assert harness.id_map("clients")[account] == client_id
    assert harness.id_map("client_users")[contact] == user_id

    zomentum.state.clear_requests()
    after = harness.backfill()

    assert after.success, step_errors(after)
    assert _counts(harness) == before
    assert [w for w in harness.zomentum_writes() if w["method"] == "POST"] == []
    assert zomentum.state.get_record("client/companies", client_id)["name"] == "Renamed In Zomentum Ltd"
    assert harness.sql("SELECT count(*) FROM audit.sync_events WHERE run_id = ? AND action IN ('failed', 'created')",
                       [after.run_id]) == [(0,)]
