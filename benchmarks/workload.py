"""The parent's side of a benchmark: the sandboxes each contender talks to, the hours each scenario covers,
the edits "made in Kaseya" between runs, the Won documents of the push scenario, and the API calls read
back from the sandboxes' request logs.

Each contender (our pipeline, the naive loop, dlt) gets its own sandboxes seeded alike, so that one's
writes never change what another finds, and the Kaseya hourly quota of one is not spent by another.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import yaml

from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import ZomentumCredentials
from zk_pipelines.sandbox.kaseya import KaseyaSandbox, start_kaseya_sandbox
from zk_pipelines.sandbox.launcher import Sandboxes
from zk_pipelines.sandbox.world import SCALES
from zk_pipelines.sandbox.zomentum import start_zomentum_sandbox
from zk_pipelines.secrets import Secret

REPO = Path(__file__).resolve().parents[1]
HOUR_KEY = "%Y-%m-%d-%H:00"
KASEYA_PAGE_SIZE = 100  # the largest page Kaseya serves; the client always asks for it
OVERLAP = timedelta(minutes=15)  # PullTuning.overlap_minutes: each window starts this much earlier
BACKFILL_HOURS = 720  # scenario 4: 30 days of hourly partitions
# The Zomentum resources the pull writes records to (a custom field or a document is not a record write).
RECORD_RESOURCES = ("client/companies", "client/users", "opportunities", "items")
INCREMENTAL = {"accounts": "/v2/crm/accounts/summary", "contacts": "/v2/crm/contacts/summary",
               "opportunities": "/v2/crm/opportunities"}
KASEYA_AUTH = ("POST /v2/security/authenticate", "POST /v2/security/refreshtoken")
ZOMENTUM_AUTH = "GET /v2/auth0/access_token"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def hour_key(moment: datetime) -> str:
    return moment.strftime(HOUR_KEY)


# ----- the hours ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeline:
    """The hours every scenario of one benchmark covers, fixed when it starts (a benchmark that crosses an
    hour boundary still runs the same windows)."""

    current_hour: datetime
    history_days: int
    backfill_hours: int = BACKFILL_HOURS

    @classmethod
    def starting_now(cls, scale: str, backfill_hours: int = BACKFILL_HOURS) -> Timeline:
        now = datetime.now(UTC)
        return cls(now.replace(minute=0, second=0, microsecond=0), SCALES[scale].history_days, backfill_hours)

    @property
    def last_hour(self) -> datetime:
        """The last complete hour: what the hourly schedule runs."""
        return self.current_hour - timedelta(hours=1)

    @property
    def history_start(self) -> datetime:
        """The first hour of the seeded history (it is spread over `history_days` before now)."""
        return self.current_hour - timedelta(days=self.history_days, hours=2)

    @property
    def backfill_start(self) -> datetime:
        return self.last_hour - timedelta(hours=self.backfill_hours - 1)

    @property
    def partitions_start(self) -> datetime:
        return min(self.history_start, self.backfill_start)

    def window(self, first: datetime, last: datetime) -> tuple[datetime, datetime]:
        """What the pipeline queries for the partitions first..last: [first - overlap, end of last]."""
        return first - OVERLAP, last + timedelta(hours=1)


# ----- the sandboxes ------------------------------------------------------------------------------


@dataclass
class Contenders:
    ours: Sandboxes
    naive: Sandboxes
    dlt_kaseya: KaseyaSandbox

    def kaseya_states(self) -> list[Any]:
        return [self.ours.kaseya.state, self.naive.kaseya.state, self.dlt_kaseya.state]

    def all_states(self) -> list[Any]:
        return [*self.kaseya_states(), self.ours.zomentum.state, self.naive.zomentum.state]


@contextmanager
def running_contenders(seed: int, scale: str, latency_s: float, seeded_at: datetime | None = None
                       ) -> Iterator[Contenders]:
    """Three sets of sandboxes seeded alike (their history laid out before `seeded_at`, default now: sandboxes
    started later with the same moment hold the same records), each adding `latency_s` to every API answer
    (login and token refresh excepted, as the fault plan leaves them alone)."""
    with ExitStack() as stack:
        def kaseya() -> KaseyaSandbox:
            return stack.enter_context(start_kaseya_sandbox(seed=seed, scale=scale, seeded_at=seeded_at))

        def pair() -> Sandboxes:
            k = kaseya()
            return Sandboxes(k, stack.enter_context(start_zomentum_sandbox(seed=seed, scale=scale,
                                                                          seeded_at=seeded_at)))

        contenders = Contenders(ours=pair(), naive=pair(), dlt_kaseya=kaseya())
        if latency_s > 0:
            for state in contenders.all_states():
                state.set_faults(seed=seed, rules=[{"kind": "latency", "rate": 1.0, "seconds": latency_s}])
        yield contenders


def next_hour(contenders: Contenders) -> None:
    """Every sandbox an hour later: each scenario is another hourly run, so Kaseya's per-endpoint hourly
    quota (a sliding hour on the sandbox clock) starts afresh, as it does between real hourly runs."""
    for state in contenders.all_states():
        state.advance_clock(3600)


def clear_logs(states: Iterable[Any]) -> None:
    for state in states:
        state.clear_requests()


# ----- calls ----------------------------------------------------------------------------------------


def _api_requests(state: Any) -> list[dict[str, Any]]:
    return [e for e in state.requests() if e["path"].lower().startswith("/v2/")]


@dataclass(frozen=True)
class KaseyaCalls:
    by_endpoint: dict[str, int]  # "GET /v2/crm/contacts/summary": 3
    delayed: int  # calls the latency rule held

    @classmethod
    def read(cls, state: Any) -> KaseyaCalls:
        entries = _api_requests(state)
        counts = Counter(f"{e['method']} {e.get('route') or e['path']}" for e in entries)
        return cls(dict(sorted(counts.items())), sum(1 for e in entries if (e.get("fault") or {}).get("kind")
                                                     == "latency"))

    @property
    def total(self) -> int:
        return sum(self.by_endpoint.values())

    @property
    def logins(self) -> int:
        return sum(self.by_endpoint.get(route, 0) for route in KASEYA_AUTH)

    @property
    def writes(self) -> int:
        return sum(n for route, n in self.by_endpoint.items()
                   if route.split(" ")[0] in WRITE_METHODS and route not in KASEYA_AUTH)

    @property
    def busiest_endpoint(self) -> int:
        """Calls of the endpoint that made the most: what Kaseya's 1,500 per hour per endpoint limits."""
        return max((n for route, n in self.by_endpoint.items() if route not in KASEYA_AUTH), default=0)

    def as_json(self) -> dict[str, Any]:
        return {"total": self.total, "logins": self.logins, "writes": self.writes,
                "busiest_endpoint": self.busiest_endpoint, "delayed": self.delayed,
                "by_endpoint": self.by_endpoint}


@dataclass(frozen=True)
class ZomentumCalls:
    by_endpoint: dict[str, int]
    delayed: int

    @classmethod
    def read(cls, state: Any) -> ZomentumCalls:
        entries = _api_requests(state)
        counts = Counter(f"{e['method']} {e.get('route') or e['path']}" for e in entries)
        return cls(dict(sorted(counts.items())), sum(1 for e in entries if (e.get("fault") or {}).get("kind")
                                                     == "latency"))

    @property
    def writes(self) -> int:
        return sum(n for route, n in self.by_endpoint.items() if route.split(" ")[0] in WRITE_METHODS)

    @property
    def record_writes(self) -> int:
        """Creates and updates of clients, client users, opportunities and items."""
        def resource(route: str) -> str:
            return route.split(" ", 1)[1].strip("/").removeprefix("v2/").split("/{")[0]

        return sum(n for route, n in self.by_endpoint.items()
                   if route.split(" ")[0] in ("POST", "PUT") and resource(route) in RECORD_RESOURCES)

    @property
    def reads(self) -> int:
        return sum(n for route, n in self.by_endpoint.items()
                   if route.split(" ")[0] not in WRITE_METHODS and route != ZOMENTUM_AUTH)

    @property
    def token_refreshes(self) -> int:
        return self.by_endpoint.get(ZOMENTUM_AUTH, 0)

    def as_json(self) -> dict[str, Any]:
        return {"reads": self.reads, "writes": self.writes, "token_refreshes": self.token_refreshes,
                "delayed": self.delayed, "by_endpoint": self.by_endpoint}


def rows_in_window(state: Any, entity: str, window: tuple[datetime, datetime]) -> int:
    """Kaseya records of `entity` whose ModifiedOn falls in the window (both bounds inclusive, as Kaseya's
    filter is)."""
    start, end = window
    with state.lock:
        return sum(1 for record in getattr(state.tenant, entity).values()
                   if start <= record.stamps.modified_on.astimezone(UTC) <= end)


def expected_incremental_calls(state: Any, window: tuple[datetime, datetime]) -> dict[str, dict[str, int]]:
    """Per incremental endpoint: its rows in the window and the pages they need (one page even when empty)."""
    expected = {}
    for entity, path in INCREMENTAL.items():
        rows = rows_in_window(state, entity, window)
        expected[f"GET {path}"] = {"rows": rows, "pages": max(1, math.ceil(rows / KASEYA_PAGE_SIZE))}
    return expected


# ----- the tenant's settings ----------------------------------------------------------------------


def write_settings(path: Path) -> Path:
    """The shipped example, Kaseya as CRM (the pull updates linked records, so an edit is a write), with
    quotes pushed on Won."""
    settings = yaml.safe_load((REPO / "settings.example.yaml").read_text())
    settings["mode"] = "kaseya_as_crm"
    settings["sync"]["push_quotes_on_won"] = True
    path.write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
    return path


# ----- scenario 3: 1% of the records changed in Kaseya ---------------------------------------------

# Kaseya entity -> the Zomentum entity of the id map, and an edit that changes a mapped field.
EDITS = {
    "accounts": ("clients", lambda n: {"website": f"https://www.edited-{n}.example"}),
    "contacts": ("client_users", lambda n: {"jobTitle": f"Edited title {n}"}),
    "opportunities": ("opportunities", lambda n: {"amount": 10_000.0 + n}),
}


@dataclass(frozen=True)
class KaseyaEdits:
    ids: dict[str, list[int]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(ids) for ids in self.ids.values())


def edit_moment(hour: datetime) -> datetime:
    """When scenario 3's edits are made: late in `hour` (the sandbox clock only moves forward, so the
    moment is set by hand)."""
    return hour + timedelta(minutes=59)


def choose_edits(database: Path, kaseya: Any, hour: datetime, share: float = 0.01) -> KaseyaEdits:
    """`share` of the accounts, contacts and opportunities that are linked in Zomentum (so each edit must
    become exactly one Zomentum write), the lowest ids first. Records last modified after the edit's moment
    are passed over: ModifiedOn only moves forward, and the pipeline rightly keeps the newer version."""
    moment = edit_moment(hour)
    chosen = {}
    with duckdb.connect(str(database), read_only=True) as connection:
        for entity, (target, _) in EDITS.items():
            linked = [int(k) for (k,) in connection.execute(
                "SELECT kaseya_id FROM zomentum.id_map WHERE entity = ? ORDER BY CAST(kaseya_id AS BIGINT)",
                [target]).fetchall()]
            with kaseya.lock:
                table = getattr(kaseya.tenant, entity)
                editable = [k for k in linked if k in table and table[k].stamps.modified_on < moment]
            chosen[entity] = editable[: max(1, round(len(linked) * share))]
    return KaseyaEdits(chosen)


def apply_edits(states: Iterable[Any], edits: KaseyaEdits, hour: datetime) -> None:
    """The same edits in every contender's Kaseya, made at `edit_moment(hour)`."""
    moment = edit_moment(hour)
    for state in states:
        for entity, ids in edits.ids.items():
            change = EDITS[entity][1]
            for n, kaseya_id in enumerate(ids):
                state.update_record(entity, kaseya_id, change(n))
            with state.lock:
                for kaseya_id in ids:
                    getattr(state.tenant, entity)[kaseya_id].stamps.modified_on = moment


# ----- scenario 5: Won documents --------------------------------------------------------------------

# Zomentum-only catalogue items (seeded, unknown to Kaseya: the push creates them) and the two bundles
# (bundle-level and individual-level pricing).
CATALOGUE_ITEMS = ("Rack Shelf 1U", "Password Manager Seat", "Security Awareness Training", "Network Assessment",
                   "Label Printer", "Dark Web Monitoring")
BUNDLES = ("New Hire Onboarding Bundle", "Secure Workstation Bundle")


def _linked(connection: duckdb.DuckDBPyConnection, entity: str) -> list[str]:
    return [z for (z,) in connection.execute(
        "SELECT zomentum_id FROM zomentum.id_map WHERE entity = ? ORDER BY CAST(kaseya_id AS BIGINT)",
        [entity]).fetchall()]


def create_won_documents(boxes: Sandboxes, database: Path, count: int) -> list[str]:
    """`count` documents marked Won as a user does, with mixed lines: an item pulled from Kaseya, a
    Zomentum-only item, a bundle (alternately bundle- and individual-level), and on every third a
    discounted line. Every other one is on an opportunity pulled from Kaseya (the push updates it), the
    others on a new Zomentum opportunity of a pulled client (the push creates it)."""
    state = boxes.zomentum.state
    api = ZomentumClient(ZomentumCredentials(base_url=boxes.zomentum.base_url,
                                             refresh_token=Secret(boxes.zomentum.refresh_token)))
    with duckdb.connect(str(database), read_only=True) as connection:
        pulled_items, pulled_clients = _linked(connection, "items"), _linked(connection, "clients")
        pulled_opportunities = _linked(connection, "opportunities")
    items = {item["name"]: item["id"] for item in state.records("items")}
    opportunities = {o["id"]: o for o in state.records("opportunities")}
    contacts: dict[str, str] = {}
    for user in state.records("client/users"):
        contacts.setdefault(user["client_company_id"], user["id"])
    clients = [c for c in pulled_clients if c in contacts]
    pipeline = next(p for p in state.records("pipelines") if p["name"] == "Sales Pipeline")
    won_stage = next(s["id"] for s in pipeline["stages"] if s["name"] == "Won")
    if not (pulled_items and clients):
        raise RuntimeError("the push scenario needs items and clients pulled from Kaseya first")

    documents = []
    for n in range(count):
        if n % 2 == 0 and n // 2 < len(pulled_opportunities):
            opportunity = opportunities[pulled_opportunities[n // 2]]
        else:
            client_id = clients[n % len(clients)]
            opportunity = api.create("opportunities", {
                "name": f"Benchmark deal {n}", "client_company_id": client_id,
                "primary_client_user_id": contacts[client_id], "linked_client_user_ids": [contacts[client_id]],
                "opportunity_pipeline_id": pipeline["id"], "opportunity_pipeline_stage_id": won_stage,
                "estimated_value": 1000.0 + n, "estimated_close_date": "2026-12-31T00:00:00.000Z",
                "close_probability": 100})
        lines = [{"item_id": pulled_items[n % len(pulled_items)], "quantity": 1 + n % 3},
                 {"item_id": items[CATALOGUE_ITEMS[n % len(CATALOGUE_ITEMS)]], "quantity": 2},
                 {"item_id": items[BUNDLES[n % 2]], "quantity": 1}]
        if n % 3 == 0:
            lines.append({"item_id": pulled_items[(n + 7) % len(pulled_items)], "quantity": 5, "discount": 10.0})
        document = state.create_document(opportunity["client_company_id"], lines, opportunity_id=opportunity["id"],
                                         client_user_id=opportunity.get("primary_client_user_id"),
                                         name=f"Benchmark proposal {n}", status="sent")
        api.update("documents", document["id"], {"status": "won"})
        documents.append(document["id"])
    return documents
