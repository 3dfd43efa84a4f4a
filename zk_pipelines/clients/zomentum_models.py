"""The Zomentum REST API v2 contract the client relies on, known and assumed, in this one module.

Zomentum publishes no schema, so every detail below that `zomentum-api-notes.md` marks "assumed" is a
guess written down once: resource paths, paging and filter syntax, the error body, record shapes, the
line-item CSV and how bundles appear in it. Correcting the contract against a real account is an edit
here (and in the sandbox's `schema.py` / `openapi.yaml`), not a hunt through the client.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypedDict
from urllib.parse import quote, urlsplit, urlunsplit

from zk_pipelines.domain.bundles import DocumentLineItem

# ----- where things are ---------------------------------------------------------------------------

API_PREFIX = "/v2"
REFRESH_PATH = "auth0/access_token"  # GET ?refresh_token=..., no Authorization header
REFRESH_PARAM = "refresh_token"
REFRESH_TOKEN_REJECTED_STATUSES = frozenset({400, 401, 403})  # what the refresh call answers to a bad token
JSON = "application/json"
CSV = "text/csv"
PDF = "application/pdf"
CLIENTS = "client/companies"
CLIENT_USERS = "client/users"
OPPORTUNITIES = "opportunities"
PIPELINES = "pipelines"
ITEMS = "items"
DOCUMENTS = "documents"
DOCUMENTS_ZAPIER = "documents/zapier"
USERS = "users"
CUSTOM_FIELDS = "custom/fields"

# ----- concurrency and rate limits (assumed) ------------------------------------------------------------
# Zomentum publishes no concurrency limit and no rate limit. A load sends up to `PullTuning
# .zomentum_concurrency` requests at once (8, our choice, not Zomentum's); a 429 it answers is honoured by
# the shared HTTP policy (`Retry-After` waited out, the request sent again). A refresh of the access token
# invalidates the previous one, so requests in flight with it answer 401: the client refreshes once for all
# of them and each repeats its request with the new token.


# ----- uniqueness (assumed) -----------------------------------------------------------------------------------
# Zomentum's notes state no uniqueness rule for a client user's e-mail: one e-mail may belong to client users of
# several clients (the sandbox enforces none). The pull therefore matches a contact by e-mail within its own
# client only (`pull/load.py`), and two Kaseya contacts sharing an e-mail in two accounts become two client users.
# No active flag: the notes give clients and client users none (users have `is_active`, items and documents
# nothing of the kind), so the pull marks a Kaseya deactivation in a custom field of its own ("Kaseya status").


def api_root(base_url: str) -> str:
    """`https://api.zomentum.com`, `.../v2` or `.../v2/` all mean the same API root `.../v2`."""
    parts = urlsplit(base_url.strip())
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):
        path = path[: -len(API_PREFIX)]
    return urlunsplit((parts.scheme, parts.netloc, f"{path}{API_PREFIX}", "", ""))


# Assumed: ids are opaque strings (the notes say so; the sandbox's are UUIDs, other Zomentum ids seen are hex).
# An id is taken as 1-128 URL-safe characters starting with a letter or digit: anything else (`../x`, `a/b`,
# a space) would change the request's path, so it is refused before any request (`id_segment`).
ID_FORM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")


class NotAZomentumId(ValueError):
    """A value used as a Zomentum id that is not of the id form (the message names it)."""


def id_segment(value: object, what: str = "id") -> str:
    """`value` as a path segment, when it is a Zomentum id; raises `NotAZomentumId`."""
    if not isinstance(value, str) or not ID_FORM.fullmatch(value):
        raise NotAZomentumId(f"{what} {value!r} is not a Zomentum id (letters, digits, '.', '_', '~' or '-', "
                             "starting with a letter or digit, at most 128)")
    return quote(value, safe="")


def record_path(resource: str, record_id: str) -> str:
    return f"{resource}/{record_id}"


def create_path(resource: str) -> str:
    return f"{resource}/"  # the trailing slash is part of the contract


def line_items_path(document_id: str, revision_id: str) -> str:
    return f"{DOCUMENTS}/{document_id}/revisions/{revision_id}/downloadproducts/"


def download_path(document_id: str) -> str:
    return f"{DOCUMENTS}/download/{document_id}"


# ----- lists: paging and filters --------------------------------------------------------------------

PAGE_LIMIT = 1000  # the largest page the API serves; a larger `limit` is capped
# Paging stops at `filtered_count_map.all` records, and this many pages at most whatever a server says (10
# million records at the largest page): a server that serves full pages for ever cannot hold a read for ever.
MAX_LIST_PAGES = 10_000
OPPORTUNITY_PIPELINE_PARAM = "opportunity_pipeline_id"  # without it, only the default pipeline is listed


@dataclass(frozen=True)
class FilterTerm:
    field: str
    op: str  # eq | gte | lte (gte/lte: timestamps only)
    value: str

    def __str__(self) -> str:
        return f"{self.field}:{self.op}:{self.value};"


def filter_value(value: object) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, datetime):
        text = format_timestamp(value)
    else:
        text = str(value)
    if ";" in text:
        # The filter syntax has no escaping: a `;` would end the term early and match something else.
        raise ValueError(f"a Zomentum filter value cannot contain ';': {text!r}")
    return text


def filters_param(
    equals: Mapping[str, object] | None = None,
    *,
    updated_since: datetime | None = None,
    updated_until: datetime | None = None,
) -> str | None:
    """`field:eq:value;...updated_at:gte:...;`, or None when there is nothing to filter on."""
    terms = [FilterTerm(field, "eq", filter_value(value)) for field, value in (equals or {}).items()]
    if updated_since is not None:
        terms.append(FilterTerm("updated_at", "gte", filter_value(updated_since)))
    if updated_until is not None:
        terms.append(FilterTerm("updated_at", "lte", filter_value(updated_until)))
    return "".join(str(term) for term in terms) or None


def list_params(page: int, limit: int, filters: str | None) -> dict[str, str]:
    params = {"count_query_flag": "true", "page": str(page), "limit": str(limit)}
    if filters:
        params["filters"] = filters
    return params


def page_records(body: Any) -> tuple[list[dict[str, Any]], int | None]:
    """The records of one list page and `filtered_count_map.all` (None if the page did not say)."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("a list answer must be an object with a `data` list")
    counts = body.get("filtered_count_map")
    total = counts.get("all") if isinstance(counts, dict) else None
    records = body["data"]
    if not all(isinstance(record, dict) for record in records):
        raise ValueError("a list answer's `data` must hold objects")
    counted = isinstance(total, int) and not isinstance(total, bool) and total >= 0
    return records, total if counted else None


def pages_needed(total: int | None, limit: int) -> int:
    """How many pages a list of `total` records takes at `limit` a page (the ceiling when the total is unknown):
    one more than the count says is allowed, for a record added while the list is read."""
    if total is None:
        return MAX_LIST_PAGES
    return min(MAX_LIST_PAGES, math.ceil(total / limit) + 1)


def error_message(body: Any, fallback: str) -> str:
    """The API's message from `{"status_code", "message"}`, else `fallback` (the HTTP reason). The raw body of
    an error answer is not shown: a proxy's or a server's error page may quote the request back."""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"][:1000]
    return fallback or "(no message)"


# ----- timestamps --------------------------------------------------------------------------------------

def format_timestamp(moment: datetime) -> str:
    """Requests carry ISO-8601 with an offset; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


# ----- records -------------------------------------------------------------------------------------------

class Address(TypedDict):
    address_line_1: str | None
    address_line_2: str | None
    city: str | None
    state: str | None
    pincode: str | None
    country: str | None
    phone: str | None


class CustomFieldValue(TypedDict):
    id: str
    values: list[str | int | float | bool]


class ClientCompany(TypedDict):
    id: str
    name: str
    company_type: str | None  # customer | prospect | vendor | partner (assumed)
    website: str | None
    phone: str | None
    billing_address: Address | None
    shipping_addresses: list[Address]
    owner_user_id: str | None
    custom_fields: list[CustomFieldValue]
    created_at: str
    updated_at: str


class PersonName(TypedDict):
    first: str
    last: str | None


class ClientUser(TypedDict):
    id: str
    name: PersonName
    email: str | None
    phone: str | None
    job_title: str | None
    client_company_id: str
    contact_type: str  # primary_contact | secondary_contact
    custom_fields: list[CustomFieldValue]
    created_at: str
    updated_at: str


class Opportunity(TypedDict):
    id: str
    name: str
    client_company_id: str
    primary_client_user_id: str | None
    linked_client_user_ids: list[str]
    owner_user_id: str | None
    opportunity_pipeline_id: str
    opportunity_pipeline_stage_id: str
    client_po_number: str | None
    estimated_close_date: str | None
    estimated_value: float | None
    close_probability: int | None
    custom_fields: list[CustomFieldValue]
    created_at: str
    updated_at: str


class PricingOption(TypedDict):
    name: str
    billing_period: str  # one_time | monthly | quarterly | yearly (assumed)
    sell_price: float
    setup_price: float | None
    cost_price: float | None
    supplier_name: str | None
    supplier_sku: str | None


class BundleChild(TypedDict):
    item_id: str
    quantity: float
    sell_price: float


class Bundle(TypedDict):
    pricing_level: str  # bundle | individual
    children: list[BundleChild]


class Item(TypedDict):
    id: str
    name: str
    description: str | None
    type: str  # hardware | software | service | labor | bundle
    manufacturer_part_number: str | None
    category: str | None
    uom: str | None  # each | case | per_hour | per_month (assumed)
    pricing: list[PricingOption]
    bundle: Bundle | None
    custom_fields: list[CustomFieldValue]
    created_at: str
    updated_at: str


DOCUMENT_STATUSES = ("draft", "pending_approval", "approved", "sent", "viewed", "accepted", "won", "lost", "expired")


class Document(TypedDict):
    id: str
    name: str
    status: str  # one of DOCUMENT_STATUSES
    client_company_id: str
    client_user_id: str | None
    opportunity_id: str | None
    owner_user_id: str | None
    current_revision_id: str
    total: float
    expiry_date: str | None
    custom_fields: list[CustomFieldValue]
    created_at: str
    updated_at: str


class User(TypedDict):
    id: str
    first_name: str
    last_name: str
    email: str
    is_active: bool
    created_at: str
    updated_at: str


class RecordShapeError(ValueError):
    """A record lacks a field the client reads, or holds it in another type (the message names which)."""


@contextmanager
def _shape_of(kind: str, record: Any) -> Iterator[None]:
    try:
        yield
    except (KeyError, TypeError, AttributeError) as exc:
        what = f"no field {exc}" if isinstance(exc, KeyError) else f"a field of another type ({exc})"
        raise RecordShapeError(f"a {kind} record has {what}: {str(record)[:200]}") from None


@dataclass(frozen=True)
class PipelineStage:
    id: str
    name: str
    order: int
    probability: int | None
    kind: str  # open | won | lost


@dataclass(frozen=True)
class Pipeline:
    id: str
    name: str
    is_default: bool
    stages: tuple[PipelineStage, ...]

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Pipeline:
        """Raises `RecordShapeError` for a record not of the assumed shape."""
        with _shape_of("pipeline", record):
            stages = sorted(record.get("stages") or [], key=lambda s: s["order"])
            return cls(id=record["id"], name=record["name"], is_default=bool(record.get("is_default")),
                       stages=tuple(PipelineStage(id=s["id"], name=s["name"], order=s["order"],
                                                  probability=s.get("probability"), kind=s["kind"]) for s in stages))


CUSTOM_FIELD_ENTITY_TYPES = ("client_company", "client_user", "opportunity", "item", "document")
CUSTOM_FIELD_TYPES = ("text", "number", "date", "dropdown", "checkbox")  # assumed


@dataclass(frozen=True)
class CustomField:
    id: str
    entity_type: str
    display_name: str
    field_type: str

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> CustomField:
        """Raises `RecordShapeError` for a record not of the assumed shape."""
        with _shape_of("custom field", record):
            return cls(id=record["id"], entity_type=record["entity_type"], display_name=record["display_name"],
                       field_type=record["field_type"])


# ----- document line items (CSV) ------------------------------------------------------------------------

LINE_ITEM_COLUMNS = ("line_id", "item_id", "name", "description", "type", "quantity", "sell_price", "cost_price",
                     "discount", "setup_price", "billing_period", "parent_line_id")


class LineItemsFormatError(ValueError):
    """The line-item CSV does not have the assumed shape; the message says where."""


def _amount(row: Mapping[str, str], column: str, row_number: int, *, required: bool = False) -> Decimal:
    text = (row.get(column) or "").strip()
    if not text:
        if required:
            raise LineItemsFormatError(f"row {row_number}: {column} is empty")
        return Decimal(0)
    try:
        return Decimal(text)
    except InvalidOperation:
        raise LineItemsFormatError(f"row {row_number}: {column} {text!r} is not a number") from None


def parse_line_items_csv(text: str) -> tuple[DocumentLineItem, ...]:
    """The document's top-level lines in CSV order, each bundle with its children attached."""
    text = text.lstrip("\ufeff")
    # Every line of the CSV ends with a line break: an answer that does not was cut short (a partial body
    # would otherwise parse as a document with fewer lines).
    if text and not text.endswith(("\n", "\r")):
        raise LineItemsFormatError("the line-item CSV was cut short (its last line has no line break)")
    try:
        return _parse_line_items(csv.DictReader(io.StringIO(text)))
    except csv.Error as exc:  # a quote or a line break where CSV allows none
        raise LineItemsFormatError(f"the line-item CSV is malformed ({exc})") from None


def _parse_line_items(reader: csv.DictReader) -> tuple[DocumentLineItem, ...]:
    missing = [c for c in LINE_ITEM_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise LineItemsFormatError(f"the line-item CSV lacks the column(s) {', '.join(missing)}")
    flat: list[DocumentLineItem] = []
    for row_number, row in enumerate(reader, start=2):
        if any(row.get(column) is None for column in LINE_ITEM_COLUMNS) or None in row:
            raise LineItemsFormatError(f"row {row_number} does not have exactly the {len(LINE_ITEM_COLUMNS)} "
                                       "columns of the header")
        line_id = (row["line_id"] or "").strip()
        if not line_id:
            raise LineItemsFormatError(f"row {row_number}: line_id is empty")
        flat.append(DocumentLineItem(
            line_id=line_id,
            item_id=row["item_id"] or None,
            name=row["name"] or "",
            description=row["description"] or "",
            type=(row["type"] or "").strip().lower(),
            quantity=_amount(row, "quantity", row_number, required=True),
            sell_price=_amount(row, "sell_price", row_number),
            cost_price=_amount(row, "cost_price", row_number),
            discount=_amount(row, "discount", row_number),
            setup_price=_amount(row, "setup_price", row_number),
            billing_period=row["billing_period"] or None,
            parent_line_id=row["parent_line_id"] or None,
        ))
    return _attach_children(flat)


def _attach_children(flat: Iterable[DocumentLineItem]) -> tuple[DocumentLineItem, ...]:
    lines = list(flat)
    ids = {line.line_id for line in lines}
    children_of: dict[str, list[DocumentLineItem]] = {}
    for line in lines:
        if line.parent_line_id is not None:
            if line.parent_line_id not in ids or line.parent_line_id == line.line_id:
                raise LineItemsFormatError(f"line {line.line_id} points at parent {line.parent_line_id}, "
                                           f"which is not a line of this document")
            children_of.setdefault(line.parent_line_id, []).append(line)

    def build(line: DocumentLineItem) -> DocumentLineItem:
        return replace(line, children=tuple(build(child) for child in children_of.get(line.line_id, ())))

    top = tuple(build(line) for line in lines if line.parent_line_id is None)
    attached = sum(1 + _descendants(line) for line in top)
    if attached != len(lines):  # only a parent cycle leaves lines unreachable from the top level
        raise LineItemsFormatError("the line-item CSV has lines whose parents form a cycle")
    return top


def _descendants(line: DocumentLineItem) -> int:
    return sum(1 + _descendants(child) for child in line.children)
