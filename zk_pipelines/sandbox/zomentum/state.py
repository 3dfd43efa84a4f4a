"""Everything the Zomentum sandbox knows of one account: records, document revisions, tokens, knobs, fault
plan, clock, request log (a sandbox serving several accounts holds one per account: `accounts.py`).

The HTTP app (`app.py`) is a thin layer over this object; tests and the demo call the same methods
directly (`reset`, `set_knobs`, `advance_clock`, `create_document`, `records`, ...), which is what the
`/_sandbox/` control surface does over HTTP. Every method is safe to call while the server runs.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import math
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from zk_pipelines.sandbox.faults import EVERY_KIND, SUCCESS_FALSE, WRITE_ONLY_KINDS, FaultControls, FaultInjector
from zk_pipelines.sandbox.runtime import RequestLog, SandboxClock, SlidingWindowLimiter
from zk_pipelines.sandbox.world import SCALES, build_world
from zk_pipelines.sandbox.zomentum.documents import (
    Revision,
    build_lines,
    document_pdf,
    document_total,
    lines_as_csv,
    lines_as_json,
)
from zk_pipelines.sandbox.zomentum.schema import (
    CUSTOM_FIELD_ENTITY_TYPES,
    DOCUMENT_STATUSES,
    PAGE_LIMIT_DEFAULT,
    PAGE_LIMIT_MAX,
    RANGE_FILTER_FIELDS,
    RESOURCES,
    ApiProblem,
    ResourceSpec,
    bad_request,
    format_timestamp,
    parse_timestamp,
)
from zk_pipelines.sandbox.zomentum.seed import API_USER_EMAIL, IdMaker, seed_account

REFRESH_TOKEN = "zomentum-sandbox-refresh-token-3fd9"  # account 1's, and a single-account sandbox's


def refresh_token_of(number: int) -> str:
    """Account `number`'s refresh token: account 1 keeps the project's fixed one; the others' are derived from
    the number alone, so a sandbox restarted with another seed keeps its accounts' tokens."""
    if number == 1:
        return REFRESH_TOKEN
    digest = hashlib.sha256(f"zomentum-sandbox:{number}".encode()).hexdigest()[:8]
    return f"zomentum-sandbox-refresh-token-{number:02d}-{digest}"


LIST_PARAMS = frozenset({"page", "limit", "count_query_flag", "filters"})
# Query parameters only some lists take.
EXTRA_LIST_PARAMS = {"opportunities": frozenset({"opportunity_pipeline_id"}),
                     "custom/fields": frozenset({"entity_type"})}
ZAPIER_DOCUMENTS = "documents/zapier"  # the documents list Zapier polls: newest `updated_at` first

DOCUMENT_FIELDS = frozenset({"client_company_id", "opportunity_id", "client_user_id", "name", "status",
                             "owner_user_id", "expiry_date", "line_items"})


@dataclass(frozen=True)
class Knobs:
    access_token_lifetime_seconds: float = 86400.0
    rate_limit: int | None = None  # requests per access token per window; None = unlimited
    rate_limit_window_seconds: float = 60.0


@dataclass(frozen=True)
class FilterTerm:
    field: str
    op: str  # eq | gte | lte
    value: str


def parse_filters(raw: str | None) -> list[FilterTerm]:
    """`field:op:value;field:op:value;`: every term ends in `;`; only the first two `:` separate."""
    if raw is None or raw == "":
        return []
    if not raw.endswith(";"):
        raise bad_request("filters", "every term must end with ';' (field:operator:value;)")
    terms = []
    for term in raw[:-1].split(";"):
        parts = term.split(":", 2)
        if len(parts) != 3 or not parts[0]:
            raise bad_request("filters", f"{term!r} is not field:operator:value")
        field, op, value = parts
        if op not in ("eq", "gte", "lte"):
            raise bad_request("filters", f"unknown operator {op!r} in {term!r} (eq, gte, lte)")
        if op != "eq":
            if field not in RANGE_FILTER_FIELDS:
                allowed = ", ".join(sorted(RANGE_FILTER_FIELDS))
                raise bad_request("filters", f"{field} cannot be filtered with {op} (only {allowed})")
            if parse_timestamp(value) is None:
                raise bad_request("filters", f"{value!r} is not an ISO-8601 date-time with an offset")
        terms.append(FilterTerm(field, op, value))
    return terms


def _matches_eq(actual: Any, wanted: str, field: str) -> bool:
    if isinstance(actual, dict | list):
        raise bad_request("filters", f"{field} is not a scalar field and cannot be filtered")
    if actual is None:
        return wanted in ("", "null")
    if isinstance(actual, bool):
        return wanted == ("true" if actual else "false")
    if isinstance(actual, int | float):
        try:
            return float(wanted) == float(actual)
        except ValueError:
            return False
    return actual == wanted


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(name, f"{raw!r} is not a positive integer") from None
    if value < 1:
        raise bad_request(name, f"{raw!r} is not a positive integer")
    return value


class ZomentumState(FaultControls):
    def __init__(
        self,
        seed: int = 7,
        scale: str = "small",
        *,
        access_token_lifetime_seconds: float = 86400.0,
        rate_limit: int | None = None,
        rate_limit_window_seconds: float = 60.0,
        clock: SandboxClock | None = None,
        seeded_at: datetime | None = None,
        number: int = 1,
    ) -> None:
        """`seeded_at`: the moment the account's history is laid out before (default: now); a reset seeds at
        the reset's moment. `number`: the account's number in its sandbox, which picks its refresh token
        (`refresh_token_of`) and marks its clients' names (`world.py`)."""
        self.seed = seed
        self.number = number
        self.refresh_token = refresh_token_of(number)
        self._seeded_at = seeded_at
        self.scale = scale
        self.clock = clock or SandboxClock()
        self.log = RequestLog()
        self._start_knobs = self._checked_knobs(Knobs(), {
            "access_token_lifetime_seconds": access_token_lifetime_seconds,
            "rate_limit": rate_limit,
            "rate_limit_window_seconds": rate_limit_window_seconds,
        })
        self._lock = threading.RLock()
        # No envelope to say false in; a write can be undone after its answer (unpersisted_write).
        self.faults = FaultInjector([*(k for k in EVERY_KIND if k != SUCCESS_FALSE), *WRITE_ONLY_KINDS])
        self.reset()

    # ----- control surface -------------------------------------------------------------------------

    def reset(self, seed: int | None = None, scale: str | None = None) -> None:
        """Back to the seeded account (optionally another seed or scale): records, clock, knobs, no fault plan,
        tokens, log."""
        if scale is not None and scale not in SCALES:
            raise bad_request("scale", f"{scale!r} is not one of {', '.join(SCALES)}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise bad_request("seed", "must be an integer")
        with self._lock:
            if seed is not None:
                self.seed = seed
            if scale is not None:
                self.scale = scale
            self.clock.reset()
            self.log.clear()
            self.faults.clear()
            self._knobs = self._start_knobs
            self._limiter = self._make_limiter(self._knobs)
            self._new_id = IdMaker(self.seed)
            moment, self._seeded_at = self._seeded_at or self.clock.now(), None
            account = seed_account(build_world(self.seed, self.scale, now=moment, msp=self.number), self._new_id)
            self._records = account.records
            self._revisions = account.revisions
            self._creation_order: dict[str, list[str]] = {}
            self.api_user_id = account.api_user_id
            self.default_pipeline_id = account.default_pipeline_id
            self._access_token: str | None = None
            self._access_expires_at: datetime | None = None
            self._retired_tokens: set[str] = set()

    def knobs(self) -> dict[str, Any]:
        return asdict(self._knobs)

    def set_knobs(self, **changes: Any) -> dict[str, Any]:
        with self._lock:
            self._knobs = self._checked_knobs(self._knobs, changes)
            self._limiter = self._make_limiter(self._knobs)
            return self.knobs()

    def set_faults(self, **plan: Any) -> dict[str, Any]:
        """`FaultControls.set_faults`; a plan it refuses is the API's 400."""
        try:
            return super().set_faults(**plan)
        except ValueError as exc:
            raise ApiProblem(400, str(exc)) from None

    def now(self) -> datetime:
        return self.clock.now()

    def advance_clock(self, seconds: float) -> datetime:
        return self.clock.advance(seconds)

    def requests(self) -> list[dict[str, Any]]:
        return self.log.as_json()

    def clear_requests(self) -> None:
        self.log.clear()

    def records(self, resource: str) -> list[dict[str, Any]]:
        """The sandbox's full view of a resource, in list order; documents carry their revisions' lines."""
        with self._lock:
            if resource not in self._records:
                raise ApiProblem(404, f"no resource {resource!r} (one of {', '.join(self._records)})")
            records = [copy.deepcopy(r) for r in self._ordered(resource)]
            if resource == "documents":
                for record in records:
                    record["revisions"] = [
                        {"id": rev.id, "number": rev.number, "created_at": rev.created_at,
                         "line_items": lines_as_json(rev.lines)}
                        for rev in self._revisions[record["id"]]]
            return records

    def delete_record(self, resource: str, record_id: str) -> dict[str, Any]:
        """A user deletes a record in Zomentum's UI (the API has no delete); returns what was deleted."""
        with self._lock:
            if resource not in self._records:
                raise ApiProblem(404, f"no resource {resource!r} (one of {', '.join(self._records)})")
            record = self._existing(resource, record_id)
            del self._records[resource][record_id]
            self._creation_order.pop(resource, None)
            return copy.deepcopy(record)

    def edit_record(self, resource: str, record_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """A user edits a record in Zomentum's UI: the given fields take the given values (no API checks)."""
        with self._lock:
            record = {**self._existing(resource, record_id), **copy.deepcopy(changes)}
            record["updated_at"] = self._stamp(record["updated_at"])
            self._records[resource][record_id] = record
            return copy.deepcopy(record)

    def holding_records(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The records as they are now, to be put back by `restore_records` (a write that does not persist)."""
        with self._lock:
            return {resource: dict(store) for resource, store in self._records.items()}

    def restore_records(self, saved: dict[str, dict[str, dict[str, Any]]]) -> None:
        with self._lock:
            for resource, store in saved.items():
                self._records[resource] = store
            self._creation_order.clear()

    def issue_access_token(self) -> str:
        """What a refresh answers with; also for tests that need a valid token directly."""
        return self.refresh_access_token(self.refresh_token)["access_token"]

    def create_document(
        self,
        client_company_id: str,
        line_items: list[dict[str, Any]],
        *,
        opportunity_id: str | None = None,
        client_user_id: str | None = None,
        name: str | None = None,
        status: str = "draft",
        owner_user_id: str | None = None,
        expiry_date: str | None = None,
    ) -> dict[str, Any]:
        """A new document with line items, as a user builds one in Zomentum's editor."""
        body = {"client_company_id": client_company_id, "line_items": line_items, "opportunity_id": opportunity_id,
                "client_user_id": client_user_id, "name": name, "status": status, "owner_user_id": owner_user_id,
                "expiry_date": expiry_date}
        return self.create_document_from({k: v for k, v in body.items() if v is not None})

    def create_document_from(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("body", "must be a JSON object")
        for key in body:
            if key not in DOCUMENT_FIELDS:
                raise bad_request(key, "unknown field for a sandbox document")
        with self._lock:
            client_id = body.get("client_company_id")
            client = self.find("client/companies", client_id) if isinstance(client_id, str) else None
            if client is None:
                raise bad_request("client_company_id", f"no client company with id {client_id!r}")
            status = body.get("status", "draft")
            if status not in DOCUMENT_STATUSES:
                raise bad_request("status", f"{status!r} is not one of {', '.join(DOCUMENT_STATUSES)}")
            name = body.get("name") or f"Quote for {client['name']}"
            if not isinstance(name, str):
                raise bad_request("name", "must be a string")
            fields = RESOURCES["documents"].validate(
                {k: body[k] for k in ("opportunity_id", "client_user_id", "owner_user_id", "expiry_date") if k in body},
                self, creating=False)
            lines = build_lines(body.get("line_items"), self._records["items"], self._new_id)
            now = self._stamp()
            revision = Revision(id=self._new_id(), number=1, created_at=now, lines=lines)
            record = {
                "id": self._new_id(), "name": name, "status": status, "client_company_id": client_id,
                "client_user_id": fields.get("client_user_id"), "opportunity_id": fields.get("opportunity_id"),
                "owner_user_id": fields.get("owner_user_id") or client.get("owner_user_id") or self.api_user_id,
                "current_revision_id": revision.id, "total": document_total(lines),
                "expiry_date": fields.get("expiry_date") or format_timestamp(self.clock.now() + timedelta(days=30)),
                "custom_fields": [], "created_at": now, "updated_at": now,
            }
            self._check_document(record)
            self._records["documents"][record["id"]] = record
            self._revisions[record["id"]] = [revision]
            self._creation_order.pop("documents", None)
            return copy.deepcopy(record)

    def revise_document(self, document_id: str, line_items: Any) -> dict[str, Any]:
        """A new revision of the document with these lines becomes its current one."""
        with self._lock:
            record = self._existing("documents", document_id)
            lines = build_lines(line_items, self._records["items"], self._new_id)
            revisions = self._revisions[document_id]
            now = self._stamp(record["updated_at"])
            revision = Revision(id=self._new_id(), number=len(revisions) + 1, created_at=now, lines=lines)
            revisions.append(revision)
            record.update(current_revision_id=revision.id, total=document_total(lines), updated_at=now)
            return copy.deepcopy(record)

    # ----- authentication and rate limiting ----------------------------------------------------------

    def refresh_access_token(self, refresh_token: str | None) -> dict[str, Any]:
        """A new access token, which invalidates the previous one."""
        if not refresh_token:
            raise bad_request("refresh_token", "is required")
        if not hmac.compare_digest(refresh_token.encode(), self.refresh_token.encode()):
            raise ApiProblem(401, "the refresh token is invalid or has been revoked")
        with self._lock:
            if self._access_token:
                self._retired_tokens.add(self._access_token)
            self._access_token = f"zat_{secrets.token_urlsafe(32)}"
            lifetime = self._knobs.access_token_lifetime_seconds
            self._access_expires_at = self.clock.now() + timedelta(seconds=lifetime)
            return {"access_token": self._access_token, "token_type": "Bearer", "expires_in": int(lifetime)}

    def authenticate(self, authorization: str | None) -> str:
        """The access token of a `Bearer` header, if it is the current one and unexpired; else 401."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiProblem(401, "missing bearer access token")
        token = token.strip()
        with self._lock:
            if self._access_token and hmac.compare_digest(token.encode(), self._access_token.encode()):
                if self.clock.now() >= self._access_expires_at:
                    raise ApiProblem(401, "the access token has expired")
                return token
            if token in self._retired_tokens:
                raise ApiProblem(401, "the access token was invalidated by a newer one")
        raise ApiProblem(401, "invalid access token")

    def holds(self, token: str | None) -> bool:
        """Whether this account issued the access token (current, expired or retired): how a request finds
        its account."""
        with self._lock:
            current = self._access_token is not None and hmac.compare_digest((token or "").encode(),
                                                                             self._access_token.encode())
            return current or token in self._retired_tokens

    def expire_access_token(self, token: str) -> None:
        """The access token stops working now, as if its lifetime had run out (the refresh token still works)."""
        with self._lock:
            if self._access_token and hmac.compare_digest(token.encode(), self._access_token.encode()):
                self._access_expires_at = self.clock.now()

    def admit(self, token: str) -> None:
        """Count a request against the token's rate limit; 429 with Retry-After past it."""
        limiter, knobs = self._limiter, self._knobs
        if limiter is None:
            return
        wait = limiter.hit(token)
        if wait is not None:
            raise ApiProblem(
                429, f"rate limit of {knobs.rate_limit} requests per {knobs.rate_limit_window_seconds:g} s exceeded",
                headers={"Retry-After": str(math.ceil(wait))})

    # ----- the API -----------------------------------------------------------------------------------

    def find(self, resource: str, record_id: str) -> dict[str, Any] | None:
        return self._records.get(resource, {}).get(record_id)

    def list_records(self, resource: str, query: Mapping[str, str]) -> dict[str, Any]:
        """One page of a list: `{"data": [...], "filtered_count_map": {"all": n}}` (the map if asked for)."""
        store = "documents" if resource == ZAPIER_DOCUMENTS else resource
        allowed = LIST_PARAMS | EXTRA_LIST_PARAMS.get(store, frozenset())
        for name in query:
            if name not in allowed:
                raise bad_request(name, f"unknown query parameter (this list takes {', '.join(sorted(allowed))})")
        page = _int_param(query, "page", 1)
        limit = min(_int_param(query, "limit", PAGE_LIMIT_DEFAULT), PAGE_LIMIT_MAX)
        count_flag = query.get("count_query_flag", "false")
        if count_flag not in ("true", "false"):
            raise bad_request("count_query_flag", "must be true or false")
        terms = parse_filters(query.get("filters"))
        spec = RESOURCES[store]
        for term in terms:
            if term.field not in spec.returned_fields:
                raise bad_request("filters", f"unknown field {term.field!r} for a {spec.label}")
        with self._lock:
            records = self._ordered(store, newest_first=resource == ZAPIER_DOCUMENTS)
            if store == "opportunities":
                pipeline_id = query.get("opportunity_pipeline_id") or self.default_pipeline_id
                if self.find("pipelines", pipeline_id) is None:
                    raise bad_request("opportunity_pipeline_id", f"no pipeline with id {pipeline_id!r}")
                records = [r for r in records if r["opportunity_pipeline_id"] == pipeline_id]
            if store == "custom/fields" and "entity_type" in query:
                if query["entity_type"] not in CUSTOM_FIELD_ENTITY_TYPES:
                    raise bad_request("entity_type", f"{query['entity_type']!r} is not one of "
                                                     f"{', '.join(CUSTOM_FIELD_ENTITY_TYPES)}")
                records = [r for r in records if r["entity_type"] == query["entity_type"]]
            for term in terms:
                if term.op == "eq":
                    records = [r for r in records if _matches_eq(r.get(term.field), term.value, term.field)]
                else:
                    bound = parse_timestamp(term.value)
                    records = [r for r in records
                               if (parse_timestamp(r[term.field]) >= bound if term.op == "gte"
                                   else parse_timestamp(r[term.field]) <= bound)]
            body: dict[str, Any] = {"data": copy.deepcopy(records[(page - 1) * limit: page * limit])}
            if count_flag == "true":
                body["filtered_count_map"] = {"all": len(records)}
            return body

    def get_record(self, resource: str, record_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._existing(resource, record_id))

    def create_record(self, resource: str, body: Any) -> dict[str, Any]:
        spec = self._spec_for(resource, "create")
        with self._lock:
            record = {**copy.deepcopy(dict(spec.defaults)), **spec.validate(body, self, creating=True)}
            if "owner_user_id" in spec.fields and record.get("owner_user_id") is None:
                record["owner_user_id"] = self.api_user_id  # the API user's "default owner"
            self._check(resource, record, changed=record.keys())
            now = self._stamp()
            record = {"id": self._new_id(), **record, "created_at": now, "updated_at": now}
            self._records[resource][record["id"]] = record
            self._creation_order.pop(resource, None)
            return copy.deepcopy(record)

    def update_record(self, resource: str, record_id: str, body: Any) -> dict[str, Any]:
        """A partial update: only the given fields change (custom field values merge by custom field id)."""
        spec = self._spec_for(resource, "update")
        with self._lock:
            existing = self._existing(resource, record_id)
            changes = spec.validate(body, self, creating=False)
            merged = {**existing, **changes}
            if "custom_fields" in changes:
                values = {entry["id"]: entry for entry in existing.get("custom_fields", [])}
                values.update({entry["id"]: entry for entry in changes["custom_fields"]})
                merged["custom_fields"] = list(values.values())
            self._check(resource, merged, changed=changes.keys())
            merged["updated_at"] = self._stamp(existing["updated_at"])
            self._records[resource][record_id] = merged
            return copy.deepcopy(merged)

    def line_items_csv(self, document_id: str, revision_id: str) -> str:
        with self._lock:
            self._existing("documents", document_id)
            for revision in self._revisions[document_id]:
                if revision.id == revision_id:
                    return lines_as_csv(revision.lines)
        raise ApiProblem(404, f"no revision with id {revision_id!r} of document {document_id!r}")

    def document_pdf(self, document_id: str) -> bytes:
        with self._lock:
            self._existing("documents", document_id)
        return document_pdf()

    # ----- internals ---------------------------------------------------------------------------------

    def _spec_for(self, resource: str, operation: str) -> ResourceSpec:
        spec = RESOURCES[resource]
        if operation not in spec.operations:
            raise ApiProblem(405, f"a {spec.label} cannot be {'created' if operation == 'create' else 'updated'} "
                                  f"through the API")
        return spec

    def _existing(self, resource: str, record_id: str) -> dict[str, Any]:
        record = self.find(resource, record_id)
        if record is None:
            raise ApiProblem(404, f"no {RESOURCES[resource].label} with id {record_id!r}")
        return record

    def _ordered(self, resource: str, *, newest_first: bool = False) -> list[dict[str, Any]]:
        store = self._records[resource]
        if newest_first:
            return sorted(store.values(), key=lambda r: (r["updated_at"], r["id"]), reverse=True)
        # Creation order keeps paging stable while records are updated between pages. Cached by id (updates
        # replace record objects but never move `created_at`); a create drops the cache.
        if resource not in self._creation_order:
            self._creation_order[resource] = [r["id"] for r in sorted(store.values(),
                                                                       key=lambda r: (r["created_at"], r["id"]))]
        return [store[record_id] for record_id in self._creation_order[resource]]

    def _stamp(self, previous: str | None = None) -> str:
        """Now, but strictly after `previous`, so every write moves `updated_at`."""
        now = self.clock.now()
        if previous is not None:
            now = max(now, parse_timestamp(previous) + timedelta(milliseconds=1))
        return format_timestamp(now)

    def _check(self, resource: str, record: dict[str, Any], *, changed: Iterable[str]) -> None:
        """Rules across fields and records, on the record as it would be stored."""
        user_id = record.get("owner_user_id") if "owner_user_id" in changed else None
        if user_id is not None and not self._records["users"][user_id]["is_active"]:
            raise bad_request("owner_user_id", f"user {user_id!r} is inactive")
        if resource == "opportunities":
            self._check_opportunity(record)
        elif resource == "items":
            self._check_item(record)
        elif resource == "documents":
            self._check_document(record)
        elif resource == "custom/fields":
            for other in self._records["custom/fields"].values():
                if (other["entity_type"] == record["entity_type"]
                        and other["display_name"].casefold() == record["display_name"].casefold()):
                    raise bad_request("display_name", f"a {record['entity_type']} custom field named "
                                                      f"{record['display_name']!r} already exists")

    def _check_contacts_belong(self, record: dict[str, Any], field: str, ids: list[str | None]) -> None:
        for index, contact_id in enumerate(ids):
            if contact_id is None:
                continue
            if self._records["client/users"][contact_id]["client_company_id"] != record["client_company_id"]:
                at = field if field != "linked_client_user_ids" else f"{field}[{index}]"
                raise bad_request(at, f"client user {contact_id!r} does not belong to client company "
                                      f"{record['client_company_id']!r}")

    def _check_opportunity(self, record: dict[str, Any]) -> None:
        if record.get("opportunity_pipeline_id") is None:
            record["opportunity_pipeline_id"] = self.default_pipeline_id
        pipeline = self._records["pipelines"][record["opportunity_pipeline_id"]]
        stage_ids = [stage["id"] for stage in pipeline["stages"]]
        if record.get("opportunity_pipeline_stage_id") is None:
            record["opportunity_pipeline_stage_id"] = stage_ids[0]
        elif record["opportunity_pipeline_stage_id"] not in stage_ids:
            raise bad_request("opportunity_pipeline_stage_id",
                              f"{record['opportunity_pipeline_stage_id']!r} is not a stage of pipeline "
                              f"{pipeline['name']!r}")
        self._check_contacts_belong(record, "primary_client_user_id", [record.get("primary_client_user_id")])
        self._check_contacts_belong(record, "linked_client_user_ids", record.get("linked_client_user_ids") or [])

    def _check_item(self, record: dict[str, Any]) -> None:
        if record["type"] == "bundle" and not record.get("bundle"):
            raise bad_request("bundle", "is required for an item of type bundle")
        if record["type"] != "bundle" and record.get("bundle"):
            raise bad_request("bundle", f"only items of type bundle have one (this one is {record['type']})")
        for index, child in enumerate((record.get("bundle") or {}).get("children", [])):
            child_item = self._records["items"][child["item_id"]]
            if child_item["type"] == "bundle" or child["item_id"] == record.get("id"):
                raise bad_request(f"bundle.children[{index}].item_id", "a bundle cannot contain a bundle")
            if child.get("sell_price") is None:
                child["sell_price"] = 0.0

    def _check_document(self, record: dict[str, Any]) -> None:
        self._check_contacts_belong(record, "client_user_id", [record.get("client_user_id")])
        opportunity_id = record.get("opportunity_id")
        if opportunity_id is not None:
            opportunity = self._records["opportunities"][opportunity_id]
            if opportunity["client_company_id"] != record["client_company_id"]:
                raise bad_request("opportunity_id", f"opportunity {opportunity_id!r} belongs to another client company")

    @staticmethod
    def _checked_knobs(current: Knobs, changes: Mapping[str, Any]) -> Knobs:
        known = set(asdict(current))
        for name, value in changes.items():
            if name not in known:
                raise bad_request(name, f"unknown knob (one of {', '.join(sorted(known))})")
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if name == "access_token_lifetime_seconds" and not (number and value >= 0):
                raise bad_request(name, "must be a number of seconds, 0 or more (0: tokens are born expired)")
            if name == "rate_limit" and value is not None and not (isinstance(value, int) and number and value >= 1):
                raise bad_request(name, "must be a whole number of requests, 1 or more, or null (unlimited)")
            if name == "rate_limit_window_seconds" and not (number and value > 0):
                raise bad_request(name, "must be a positive number of seconds")
        return replace(current, **changes)

    def _make_limiter(self, knobs: Knobs) -> SlidingWindowLimiter | None:
        if knobs.rate_limit is None:
            return None
        return SlidingWindowLimiter(self.clock, knobs.rate_limit, knobs.rate_limit_window_seconds)


__all__ = ["API_USER_EMAIL", "REFRESH_TOKEN", "Knobs", "ZomentumState", "refresh_token_of"]
