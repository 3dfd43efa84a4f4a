"""The pure parts of the audit views: selections as a person types them, descriptions, the terminal table and
the folding of a record's trail. No DuckDB, no Dagster."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from zk_pipelines.audit.query import (
    SelectionError,
    errors_wanted,
    parse_since,
    resolve_entity,
)
from zk_pipelines.commands.audit import audit_line, describe, render_table
from zk_pipelines.commands.history import RecordTrail, render_trail
from zk_pipelines.domain.settings import Links, SystemLinks
from zk_pipelines.domain.text_table import text_table
from zk_pipelines.storage.audit_store import LedgerEntry, PushRequest, RecordPair

NOW = datetime(2026, 8, 10, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", datetime(2026, 8, 10, 12, 0, tzinfo=UTC)),
    ("2h", datetime(2026, 8, 10, 10, 30, tzinfo=UTC)),
    ("3d", datetime(2026, 8, 7, 12, 30, tzinfo=UTC)),
    ("1w", datetime(2026, 8, 3, 12, 30, tzinfo=UTC)),
    (" 12 hours ", datetime(2026, 8, 10, 0, 30, tzinfo=UTC)),
    ("2026-08-01", datetime(2026, 8, 1, tzinfo=UTC)),
    ("2026-08-01T14:00", datetime(2026, 8, 1, 14, tzinfo=UTC)),
    ("2026-08-01 14:00:00+02:00", datetime(2026, 8, 1, 12, tzinfo=UTC)),
    ("2026-08-01T14:00Z", datetime(2026, 8, 1, 14, tzinfo=UTC)),
])
def test_since_takes_durations_back_from_now_and_iso_moments_in_utc(text, expected):
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-3d", "2026-13-01", ""])
def test_since_refuses_what_it_cannot_read_and_says_what_it_takes(text):
    with pytest.raises(SelectionError, match="30m, 2h, 3d, 1w"):
        parse_since(text, NOW)


@pytest.mark.parametrize(("typed", "expected"), [
    ("clients", "clients"), ("client", "clients"), ("account", "clients"), ("Accounts", "clients"),
    ("contacts", "client_users"), ("contact", "client_users"), ("client_user", "client_users"),
    ("opportunity", "opportunities"), ("product", "items"), ("items", "items"),
    ("documents", "documents"), ("employees", "employees"),
])
def test_entity_names_a_person_uses_resolve_to_the_ledgers(typed, expected):
    assert resolve_entity(typed, ["clients", "documents", "employees"]) == expected


def test_an_unknown_entity_lists_what_the_ledger_has():
    with pytest.raises(SelectionError) as raised:
        resolve_entity("invoices", ["clients", "documents"])
    assert "'invoices'" in str(raised.value)
    assert "documents" in str(raised.value) and "client_users" in str(raised.value)


@pytest.mark.parametrize(("status", "expected"), [(None, None), ("error", True), ("success", False)])
def test_status_selects_errors_or_everything_else(status, expected):
    assert errors_wanted(status) is expected


def entry(action: str, *, reason: str | None = None, fields: tuple[str, ...] | None = None, entity: str = "clients",
          run_id: str = "run-1", at: datetime = NOW, direction: str = "pull", kaseya_id: str | None = "100001",
          zomentum_id: str | None = "z-1", link: str | None = None) -> LedgerEntry:
    return LedgerEntry(at, run_id, "2026-08-10-11:00", direction, entity, kaseya_id, zomentum_id, action, reason,
                       fields, link, "fp")


@pytest.mark.parametrize(("event", "expected"), [
    (entry("created"), "created"),
    (entry("created", reason="Zomentum's answer was lost; adopted"), "created (Zomentum's answer was lost; adopted)"),
    (entry("updated", fields=("name", "website")), "updated: name, website"),
    (entry("updated"), "updated"),
    (entry("updated", direction="push", fields=("StatusId",), reason="document d-1: update opportunity 400001"),
     "updated: StatusId (document d-1: update opportunity 400001)"),
    (entry("matched", reason="matched an existing Zomentum client by name"),
     "matched an existing Zomentum client by name"),
    (entry("matched", reason="matched an existing Zomentum client by name", fields=("phone",)),
     "matched an existing Zomentum client by name; updated: phone"),
    (entry("matched"), "matched an existing Zomentum client"),
    (entry("unchanged"), "unchanged"),
    (entry("failed", reason="Kaseya rejected AccountLocationId 0: required"),
     "Kaseya rejected AccountLocationId 0: required"),
    (entry("rejected", reason="contact 3: account id 9 is not staged [check known_account]"),
     "rejected by validation: contact 3: account id 9 is not staged [check known_account]"),
    (entry("skipped", reason="sync.products is off"), "skipped: sync.products is off"),
    (entry("deferred", reason="contact 3: waits for its Kaseya account 9 to be in Zomentum"),
     "deferred: contact 3: waits for its Kaseya account 9 to be in Zomentum"),
    (entry("retired", entity="quote_lines"), "retired"),
])
def test_each_outcome_is_described_in_words(event, expected):
    assert describe(event) == expected


LINKS = Links(
    kaseya=SystemLinks("https://bms.example", (("account", "{base_url}/crm/accounts/{id}"),
                                                ("contact", "{base_url}/crm/contacts/{id}"),
                                                ("opportunity", "{base_url}/crm/opportunities/{id}"))),
    zomentum=SystemLinks("https://app.zomentum.example", (("client", "{base_url}/clients/{id}"),
                                                          ("opportunity", "{base_url}/opportunities/{id}"))),
)


def test_a_rejected_row_links_to_its_kaseya_record_and_an_error_is_an_error():
    line = audit_line(entry("rejected", entity="client_users", kaseya_id="300004", zomentum_id=None,
                            reason="bad e-mail"), LINKS)
    assert line.status == "error"
    assert line.link == "https://bms.example/crm/contacts/300004"
    assert audit_line(entry("unchanged", link="https://z/1"), LINKS).status == "success"


@pytest.mark.parametrize(("event", "links", "expected"), [
    (entry("created", link="https://stored/1"), LINKS, "https://stored/1"),  # the ledger's own link first
    (entry("unchanged", zomentum_id="z-9"), LINKS, "https://app.zomentum.example/clients/z-9"),
    (entry("failed", zomentum_id=None, kaseya_id="100002"), LINKS, "https://bms.example/crm/accounts/100002"),
    (entry("unchanged", zomentum_id="z-9"), None, None),  # no settings file: only stored links
    (entry("created", entity="quotes", kaseya_id="7", zomentum_id="d-1"), LINKS, None),  # no template for it
])
def test_an_entry_without_a_stored_link_gets_one_from_the_settings_templates(event, links, expected):
    assert audit_line(event, links).link == expected


def test_the_table_cuts_only_the_description_and_fits_the_width():
    long_reason = "client for Kaseya account 100002: Zomentum answered 500 " + "and more detail " * 10
    lines = [audit_line(entry("failed", reason=long_reason, link="https://bms.example/a/100002"), None),
             audit_line(entry("created", zomentum_id="ea5408f4", link="https://z.example/c/ea5408f4"), None)]
    table = render_table(lines, width=160).splitlines()
    assert table[0].split() == ["time", "(UTC)", "direction", "entity", "Kaseya", "id", "Zomentum", "id", "status",
                                "description", "link"]
    assert max(len(row) for row in table) == 160
    assert "client for Kaseya account 100002: Zomentum answered 500" in table[2]
    assert "…  https://bms.example/a/100002" in table[2]
    assert table[3].endswith("https://z.example/c/ea5408f4")
    assert table[3].startswith("2026-08-10 12:30:00")
    status_column = table[0].index("status")
    assert table[2][status_column:].startswith("error  ") and table[3][status_column:].startswith("success")


def test_ids_and_links_are_never_cut_even_when_they_alone_overflow_the_width():
    link = "http://127.0.0.1:8602/clients/ea5408f4-4b5a-496d-9b7e-a99421f113cd"
    lines = [audit_line(entry("failed", reason="x" * 100, zomentum_id="ea5408f4-4b5a-496d-9b7e-a99421f113cd",
                              link=link), None)]
    row = render_table(lines, width=160).splitlines()[2]
    assert row.endswith(link)
    assert "ea5408f4-4b5a-496d-9b7e-a99421f113cd" in row
    assert "x" * 39 + "…" in row and "x" * 40 not in row  # the description keeps its minimum of 40


def test_a_narrow_table_keeps_columns_aligned_and_short_cells_whole():
    table = text_table(("a", "description", "link"), [("x", "short", "L1"), ("yyy", "d" * 80, "L2")], width=40,
                       shrinkable=1, min_shrunk=10).splitlines()
    assert table[0] == "a    " + "description".ljust(29) + "  link"
    assert table[2] == "x    " + "short".ljust(29) + "  L1"
    assert table[3] == "yyy  " + "d" * 28 + "…  L2"
    assert len(table[0]) == 40


def test_a_table_that_fits_is_not_cut():
    table = text_table(("a", "b"), [("one", "two three")], width=160, shrinkable=1)
    assert "…" not in table and "two three" in table


def request(at: datetime, **overrides) -> PushRequest:
    values = dict(intended_at=at, settled_at=at, run_id="push-run", document_id="doc-1", document_version="v2",
                  attempt=1, system="kaseya", method="PUT", path="/v2/crm/opportunities/400001",
                  body={"Subject": "Renewal", "AccountLocationId": 7}, purpose="update opportunity 400001",
                  state="sent", response_status=200, record_id="400001", error=None)
    return PushRequest(**{**values, **overrides})


def test_a_trail_folds_unchanged_runs_and_interleaves_push_requests_by_time():
    at = [datetime(2026, 8, 10, h, 5, tzinfo=UTC) for h in range(1, 8)]
    entries = (
        entry("failed", entity="opportunities", at=at[0], run_id="r1", zomentum_id=None,
              reason="opportunity 400001: its Kaseya account 100036 is not in Zomentum yet"),
        entry("created", entity="opportunities", at=at[1], run_id="r2"),
        entry("unchanged", entity="opportunities", at=at[2], run_id="r3"),
        entry("unchanged", entity="opportunities", at=at[3], run_id="r4"),
        entry("unchanged", entity="opportunities", at=at[4], run_id="r5"),
        entry("updated", entity="opportunities", at=at[6], run_id="r7", fields=("name", "estimated_value")),
    )
    pushed = request(datetime(2026, 8, 10, 6, 30, tzinfo=UTC))
    refused = request(datetime(2026, 8, 10, 7, 30, tzinfo=UTC), state="refused", response_status=None,
                      record_id=None, error="Kaseya rejected AccountLocationId 0: required")
    trail = RecordTrail(RecordPair("opportunities", "400001", "z-1", "created", at[1], at[6]), entries,
                        (pushed, refused))
    text = render_trail("opportunity", trail, LINKS)
    lines = text.splitlines()
    assert lines[0] == "opportunity: Kaseya opportunity 400001 <-> Zomentum opportunity z-1"
    assert "  Kaseya:   https://bms.example/crm/opportunities/400001" in lines
    assert "  Zomentum: https://app.zomentum.example/opportunities/z-1" in lines
    assert "6 ledger entries, 2 push requests, oldest first (times UTC):" in lines
    body = lines[lines.index("6 ledger entries, 2 push requests, oldest first (times UTC):") + 1:]
    heads = [line for line in body if not line.startswith(" ")]
    assert heads == [
        "2026-08-10 01:05:00  pull  failed     run r1",
        "2026-08-10 02:05:00  pull  created    run r2",
        "2026-08-10 03:05:00  pull  unchanged  in 3 runs, until 2026-08-10 05:05:00",
        "2026-08-10 06:30:00  push  sent       run push-run",
        "2026-08-10 07:05:00  pull  updated    run r7",
        "2026-08-10 07:30:00  push  sent       run push-run",
    ]
    assert any("its Kaseya account 100036 is not in Zomentum yet" in line for line in body)
    assert any(line.strip() == "updated: name, estimated_value" for line in body)
    assert any(line.strip() == "PUT /v2/crm/opportunities/400001 (kaseya) -> sent, HTTP 200, Kaseya record 400001"
               for line in body)
    assert any(line.strip() == 'body {"AccountLocationId": 7, "Subject": "Renewal"}' for line in body)
    assert any(line.strip() == "error Kaseya rejected AccountLocationId 0: required" for line in body)
