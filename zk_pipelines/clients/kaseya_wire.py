"""What Kaseya BMS puts on the wire, and how we read it: case-insensitive records, the envelope, the
endpoint table, and what our knowledge of Kaseya assumes (kept here, in one place).

ASSUMED (nobody has published the answer; correct here against a real tenant):
- HTTP statuses besides 200: 401 bad/expired token, 403 missing permission, 404 unknown id or route,
  400 malformed body, 429 over the rate limit (with `Retry-After`), 5xx faults.
- The maximum page size is 100; naive date-times are UTC and both `ModifiedOn` bounds are inclusive.
- Endpoints marked `published=False` below are not in Kaseya's published contract: quote header create and
  update, a quote's line-item list, inventory product create. Quoting vendors use unpublished endpoints for
  these; ours follow the contract's own conventions.
- `system/lookup/{tableName}` table names (`OpportunityType`, `QuoteStatus`, `LabourPeriod`, ...).
- Quote line item type ids in `POST .../lineItems/{itemTypeId}/{distributerTypeId}`.
- Concurrency: Kaseya publishes an hourly limit per endpoint (1500 calls), not a limit on requests in flight;
  the pipeline's 8 concurrent reads per step (`PullTuning.kaseya_concurrency`) and a client's 8 requests in
  flight at most, whichever steps send them (`MAX_IN_FLIGHT`), are our choice, not Kaseya's. All threads
  of a run (its Kaseya extractions run side by side) share one client, so one token and one hourly budget
  per endpoint.
- `totalRecords` counts the rows of the whole filtered list; a negative value means "not counted" (paging then
  runs to the first short page). A count the rows contradict fails the read (`KaseyaClient.paginate`).
- Ids in paths are whole numbers (`{..._id}`) and lookup table names are words (`{table_name}`); any other
  value is refused before it becomes part of a path.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from zk_pipelines.clients import http

MAX_PAGE_SIZE = 100
MAX_IN_FLIGHT = 8  # requests one client sends at once (ASSUMED above); within requests' 10 pooled connections


class KaseyaRecord(dict):
    """A JSON object from Kaseya whose keys are matched case-insensitively.

    The contract shows PascalCase, the wire uses camelCase, and requests are accepted in either: reading
    `record["accountName"]` works whatever case the server used. Iteration and `json.dumps` keep the
    server's own keys, so the source payload is stored as received.
    """

    __slots__ = ("_folded",)

    def __init__(self, pairs: Iterable[tuple[str, Any]] | Mapping[str, Any] = ()) -> None:
        super().__init__(pairs)
        self._folded = {key.lower(): key for key in self.keys()}

    def _key(self, key: str) -> str:
        return self._folded.get(key.lower(), key) if isinstance(key, str) else key

    def __getitem__(self, key: str) -> Any:
        return super().__getitem__(self._key(key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._folded

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(self._key(key), default)

    def __setitem__(self, key: str, value: Any) -> None:
        existing = self._key(key)
        self._folded[existing.lower()] = existing
        super().__setitem__(existing, value)


def parse_json(text: str) -> Any:
    """Raises `ValueError` for text that is not JSON, `http.JsonTooDeep` for JSON nested too deep."""
    return http.parse_json(text, object_pairs_hook=KaseyaRecord)


@dataclass(frozen=True)
class Envelope:
    success: bool
    result: Any
    total_records: int | None
    error_code: int | str | None
    error_message: str | None


def read_envelope(payload: Any) -> Envelope:
    """`{success, error, result[, totalRecords]}`; a bare DTO (as `GET .../summary/{id}` is declared) is
    taken as a successful result."""
    if isinstance(payload, KaseyaRecord) and "success" in payload:
        # Any field may hold anything on an answer we did not expect: each is taken only in its own type.
        error = payload.get("error")
        error = error if isinstance(error, Mapping) else {}
        message = error.get("message") if isinstance(error.get("message"), str) else None
        sub_errors = error.get("subErrors")
        if isinstance(sub_errors, list) and sub_errors and not message:
            message = "; ".join(str(s) for s in sub_errors)
        code = error.get("code")
        return Envelope(
            success=bool(payload.get("success")),
            result=payload.get("result"),
            total_records=_count(payload.get("totalRecords")),
            error_code=code if isinstance(code, int | str) and not isinstance(code, bool) else None,
            error_message=message,
        )
    return Envelope(True, payload, None, None, None)


def _count(value: Any) -> int | None:
    """A row count: a whole, finite, non-negative number; anything else is no count."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if value >= 0 else None


def row_identity(row: Any) -> str:
    """What tells one row of a list from another: its `id`, else the whole row."""
    key = row.get("id") if isinstance(row, Mapping) else None
    if key is not None and not isinstance(key, dict | list):
        return f"id {key}"
    return json.dumps(row, sort_keys=True, default=str)


class NotAKaseyaId(ValueError):
    """A path parameter that is not of its form (the message names it)."""


_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def path_segment(name: str, value: Any) -> str:
    """A path parameter as it goes into the path: an id as its digits, a table name as a word. Anything else
    (`../../etc/passwd`, `1/notes`) would change which route the request reaches."""
    if name == "table_name":
        if isinstance(value, str) and _TABLE_NAME.fullmatch(value):
            return quote(value, safe="")
        raise NotAKaseyaId(f"{name} {value!r} is not a lookup table name (letters, digits and _)")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 0:
        return str(int(value))
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return str(int(value))
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return str(int(value))
    raise NotAKaseyaId(f"{name} {value!r} is not a Kaseya id (a whole number)")


def kaseya_datetime(moment: datetime) -> str:
    """Kaseya filters take naive date-times, read as UTC (assumed)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def parse_kaseya_datetime(value: str | None) -> datetime | None:
    """A Kaseya date-time as an aware UTC datetime (naive values are UTC, assumed)."""
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class Endpoint:
    """One Kaseya operation the pipeline uses. `template` is also the rate-limit key (Kaseya counts
    calls per endpoint, i.e. per route template)."""

    name: str
    method: str
    template: str
    published: bool = True

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"

    def path(self, **params: Any) -> str:
        """The path with its parameters in place; raises `NotAKaseyaId` for a value not of its form."""
        return self.template.format(**{name: path_segment(name, value) for name, value in params.items()})


def _endpoints(*rows: Endpoint) -> dict[str, Endpoint]:
    return {row.name: row for row in rows}


ENDPOINTS: dict[str, Endpoint] = _endpoints(
    Endpoint("authenticate", "POST", "/v2/security/authenticate"),
    Endpoint("refresh_token", "POST", "/v2/security/refreshtoken"),
    Endpoint("user_info", "GET", "/v2/security/userinfo"),
    Endpoint("accounts", "GET", "/v2/crm/accounts/summary"),
    Endpoint("account", "GET", "/v2/crm/accounts/summary/{account_id}"),
    Endpoint("account_location", "GET", "/v2/crm/accounts/{account_id}/locations/{location_id}"),
    Endpoint("account_locations", "GET", "/v2/crm/accounts/{account_id}/locations/lookup"),
    Endpoint("account_types", "GET", "/v2/system/accounttypes/lookup"),
    Endpoint("create_account", "POST", "/v2/crm/accounts"),
    Endpoint("update_account", "PUT", "/v2/crm/accounts/{account_id}"),
    Endpoint("contacts", "GET", "/v2/crm/contacts/summary"),
    Endpoint("contact", "GET", "/v2/crm/contacts/summary/{contact_id}"),
    Endpoint("search_contacts", "GET", "/v2/crm/contacts/search"),
    Endpoint("create_contact", "POST", "/v2/crm/contacts/summary"),
    Endpoint("update_contact", "PUT", "/v2/crm/contacts/{contact_id}"),
    Endpoint("opportunities", "GET", "/v2/crm/opportunities"),
    Endpoint("opportunity", "GET", "/v2/crm/opportunities/{opportunity_id}"),
    Endpoint("create_opportunity", "POST", "/v2/crm/opportunities"),
    Endpoint("update_opportunity", "PUT", "/v2/crm/opportunities/{opportunity_id}"),
    Endpoint("add_opportunity_note", "POST", "/v2/crm/opportunities/{opportunity_id}/notes"),
    Endpoint("opportunity_statuses", "GET", "/v2/crm/opportunities/statuses/Lookup"),
    Endpoint("products", "GET", "/v2/inventory/products/searchselect"),
    Endpoint("product_pricing_levels", "GET", "/v2/inventory/products/{product_index_id}/pricingLevels"),
    Endpoint("product_suppliers", "GET", "/v2/inventory/products/{product_index_id}/suppliers/lookup"),
    Endpoint("product_default_cost", "GET", "/v2/inventory/products/{product_index_id}/defaultcost"),
    Endpoint("create_product", "POST", "/v2/inventory/products", published=False),
    Endpoint("product_categories", "GET", "/v2/inventory/products/categories/lookup"),
    Endpoint("create_product_category", "POST", "/v2/inventory/products/categories"),
    Endpoint("warehouses", "GET", "/v2/inventory/warehouses/lookup"),
    Endpoint("employees", "GET", "/v2/hr/employees/searchselect"),
    Endpoint("employees_lookup", "GET", "/v2/hr/employees/lookup"),
    Endpoint("quotes", "GET", "/v2/crm/quotes/summary"),
    Endpoint("quote", "GET", "/v2/crm/quotes/{quote_id}"),
    Endpoint("create_quote", "POST", "/v2/crm/quotes", published=False),
    Endpoint("update_quote", "PUT", "/v2/crm/quotes/{quote_id}", published=False),
    Endpoint("quote_line_items", "GET", "/v2/crm/quotes/{quote_id}/lineItems", published=False),
    Endpoint("quote_line_item", "GET", "/v2/crm/quotes/{quote_id}/lineItems/{line_item_id}"),
    Endpoint("add_quote_line_item", "POST", "/v2/crm/quotes/{quote_id}/lineItems/{item_type_id}/{distributer_type_id}"),
    Endpoint("update_quote_line_item", "PUT", "/v2/crm/quotes/{quote_id}/lineItems/{line_item_id}"),
    Endpoint("create_service", "POST", "/v2/admin/finance/services/services"),
    Endpoint("services_lookup", "GET", "/v2/admin/finance/services/lookup"),
    Endpoint("lookup", "GET", "/v2/system/lookup/{table_name}"),
    Endpoint("contracts", "GET", "/v2/finance/contracts/summary"),
    Endpoint("timelogs", "GET", "/v2/timelogs"),
)

# ASSUMED: the names of the `system/lookup/{tableName}` tables the pipeline reads (the hourly pull extracts
# them all into raw.kaseya_lookups: the settings resolve names in them, and pushes take their ids from there).
LOOKUP_TABLES = {
    "opportunity_types": "OpportunityType",
    "opportunity_ratings": "OpportunityRating",
    "lead_sources": "LeadSource",
    "email_types": "EmailType",
    "phone_types": "PhoneType",
    "quote_statuses": "QuoteStatus",
    "labour_periods": "LabourPeriod",
    "business_types": "BusinessType",
    "product_types": "ProductType",
}

# ASSUMED: `itemTypeId` of a quote line item, by Kaseya item type; no distributor (`distributerTypeId` 0).
QUOTE_LINE_ITEM_TYPE_IDS = {"product": 1, "service": 2, "labour": 3}
NO_DISTRIBUTOR = 0
