"""`zk demo`: both sandboxes, the tenant's initial sync (its whole history, in one run), then a live hour with
edits made "in Kaseya", and a summary of what happened and where to look.

The runs are recorded in a real Dagster instance (`$DAGSTER_HOME`, default `.dagster_home/`), so
`dagster dev` shows them afterwards, and the data is in a real DuckDB file. The tenant is configured as a
deployment is, through its environment variables (the sandboxes' credentials), which the resources bind by
name: the instance stores the variables' names, never a secret.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import dagster as dg

from zk_pipelines.commands.run_summary import print_run_summary
from zk_pipelines.config import TENANT_VARIABLES
from zk_pipelines.definitions import build_definitions
from zk_pipelines.defs.local_runs import hour_key, prepare_dagster_home, run_hourly_job
from zk_pipelines.domain.settings import IntegrationMode
from zk_pipelines.domain.settings_file import load_settings
from zk_pipelines.sandbox.launcher import Sandboxes, running_sandboxes
from zk_pipelines.sandbox.world import SCALES
from zk_pipelines.storage.audit_store import pull_record_outcomes
from zk_pipelines.storage.database import connect

REPO = Path(__file__).resolve().parents[2]


def _configure_tenant(boxes: Sandboxes, settings: Path, database: Path) -> None:
    """The demo tenant's environment, as a deployment sets it."""
    os.environ.update(boxes.environment())
    os.environ[TENANT_VARIABLES.settings_path] = str(settings)
    os.environ[TENANT_VARIABLES.duckdb_path] = str(database)


@dataclass(frozen=True)
class KaseyaEdit:
    """An edit a Kaseya user made during the live hour, and the Zomentum entity it reaches."""

    entity: str  # the Zomentum entity in the ledger
    kaseya_id: int
    what: str

    def describe(self, outcomes: dict[tuple[str, str], tuple[str, str | None]], mode: IntegrationMode) -> str:
        action, reason = outcomes.get((self.entity, str(self.kaseya_id)), ("not synced", None))
        if action == "unchanged" and not mode.pull_updates_linked_entities:
            reason = f"linked: {mode.value} leaves it as Zomentum has it"
        return f"    {self.what} -> {self.entity}: {action}" + (f" ({reason})" if reason else "")


def _edit_in_kaseya(boxes: Sandboxes, hour: datetime) -> list[KaseyaEdit]:
    """What a Kaseya user does during the live hour: change a synced account's website and a synced
    opportunity's status, add an account with a contact. Which of these reach Zomentum is the mode's choice:
    Zomentum as CRM creates what is new and leaves linked records as Zomentum has them; Kaseya as CRM also
    updates the linked ones."""
    state = boxes.kaseya.state
    moment = hour + timedelta(minutes=30)
    with state.lock:  # records last modified before the edits' moment, so that the edit is their newest version
        tenant = state.tenant
        # Active ones, with an active account and contact: what is inactive in Kaseya is not in Zomentum.
        active = {i for i, r in tenant.accounts.items() if r.is_active}
        active_contacts = {i for i, r in tenant.contacts.items() if r.is_active and r.account_id in active}
        account_id = min(i for i in active if tenant.accounts[i].stamps.modified_on < moment)
        opportunity_id = min(i for i, r in tenant.opportunities.items() if r.stamps.modified_on < moment
                             and r.account_id in active and (r.contact_id is None or r.contact_id in active_contacts))
    state.update_record("accounts", account_id, {"website": "https://www.renamed-in-kaseya.example"})
    state.update_record("opportunities", opportunity_id, {"status": "Closed Won"})
    new_account = state.create_record("accounts", {"accountName": "Demo Newaccount Ltd",
                                                   "website": "https://demo-newaccount.example"})
    contact = state.create_record("contacts", {"accountId": new_account["id"], "firstName": "Demo",
                                               "lastName": "Newcontact", "emailAddress": "demo.new@example.com"})
    edits = [KaseyaEdit("clients", account_id, f"account {account_id}: website changed"),
             KaseyaEdit("opportunities", opportunity_id, f"opportunity {opportunity_id}: status -> Closed Won"),
             KaseyaEdit("clients", new_account["id"], f"account {new_account['id']}: created"),
             KaseyaEdit("client_users", contact["id"], f"contact {contact['id']}: created")]
    with state.lock:  # the edits happened during the live hour (the sandbox clock only moves forward)
        for table, kaseya_id in (("accounts", account_id), ("opportunities", opportunity_id),
                                 ("accounts", new_account["id"]), ("contacts", contact["id"])):
            getattr(state.tenant, table)[kaseya_id].stamps.modified_on = moment
    return edits


def _outcomes(database: Path, run_id: str) -> dict[tuple[str, str], tuple[str, str | None]]:
    with connect(database, read_only=True) as connection:
        return pull_record_outcomes(connection, run_id)


def _run_and_summarise(definitions: dg.Definitions, instance: dg.DagsterInstance, hour: datetime, event_log: Path,
                       database: Path, out: TextIO) -> dg.ExecuteInProcessResult:
    """One run of the hourly job for `hour`: its outcome, how long it took and what it did per entity."""
    started = time.monotonic()
    result = run_hourly_job(definitions, instance, hour, event_log=event_log)
    print(f"  run {result.run_id}: {'success' if result.success else 'FAILED'} "
          f"in {time.monotonic() - started:.0f} s", file=out)
    print_run_summary(out, database, result.run_id)
    return result


def run_demo(seed: int, scale: str, out: TextIO, workdir: Path | None = None) -> int:
    """`workdir` holds the demo's DuckDB file and Dagster's event log (default `.demo/`); `$DAGSTER_HOME`
    (default `.dagster_home/`) the Dagster instance."""
    workdir = workdir or REPO / ".demo"
    workdir.mkdir(parents=True, exist_ok=True)
    home = prepare_dagster_home(Path(os.environ.get("DAGSTER_HOME") or REPO / ".dagster_home"))
    os.environ["DAGSTER_HOME"] = str(home)
    database = workdir / "demo.duckdb"
    event_log = workdir / "dagster-events.log"
    for stale in (database, database.with_suffix(".duckdb.wal"), event_log):
        stale.unlink(missing_ok=True)
    settings = REPO / "settings.example.yaml"
    now = datetime.now(UTC)
    current_hour = now.replace(minute=0, second=0, microsecond=0)
    onboarding = current_hour - timedelta(hours=2)
    history = SCALES[scale].history_days
    print(f"starting the Kaseya BMS and Zomentum sandboxes (seed {seed}, scale {scale}, {history} days of "
          f"history); Dagster's event log goes to {event_log}", file=out, flush=True)
    with running_sandboxes(seed=seed, scale=scale) as boxes:
        _configure_tenant(boxes, settings, database)
        definitions = build_definitions(partitions_start=hour_key(onboarding))
        instance = dg.DagsterInstance.get()
        print(f"\ninitial sync: the tenant's first run, for the onboarding hour {onboarding:%Y-%m-%d %H:00} UTC, "
              f"extracts its whole history ({history} days)", file=out, flush=True)
        initial = _run_and_summarise(definitions, instance, onboarding, event_log, database, out)

        live_hour = current_hour - timedelta(hours=1)
        edits = _edit_in_kaseya(boxes, live_hour)
        mode = load_settings(settings).mode
        print(f"\nlive hour {live_hour:%Y-%m-%d %H:00} UTC, after {len(edits)} edits in Kaseya; mode {mode.value}: "
              f"{mode.description}", file=out, flush=True)
        live = _run_and_summarise(definitions, instance, live_hour, event_log, database, out)
        print("  the edits:", file=out)
        outcomes = _outcomes(database, live.run_id)
        for edit in edits:
            print(edit.describe(outcomes, mode), file=out)
        kaseya_calls = sum(1 for e in boxes.kaseya.state.requests() if e["path"].lower().startswith("/v2/"))
        zomentum_writes = sum(1 for e in boxes.zomentum.state.requests()
                              if e["method"] in ("POST", "PUT") and e["path"].startswith("/v2/"))
        print(f"API calls: Kaseya {kaseya_calls}, Zomentum writes {zomentum_writes}", file=out)

    print("\nWhere to look:", file=out)
    print(f"  Dagster UI:  DAGSTER_HOME={home} ZK_PARTITIONS_START={hour_key(onboarding)} "
          ".venv/bin/dagster dev -w workspace.yaml   (runs, asset metadata, checks)", file=out)
    print(f"  Event log:   {event_log}", file=out)
    print(f"  DuckDB file: {database}", file=out)
    print(f"  The ledger:  ZK_DUCKDB_PATH={database} .venv/bin/zk audit", file=out)
    return 0 if initial.success and live.success else 1
