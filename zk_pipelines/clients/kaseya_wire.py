"""What Kaseya BMS puts on the wire, and how we read it: case-insensitive records, the envelope, and what our
knowledge of Kaseya assumes (kept here, in one place, but for the endpoint table and the quote line ids, which
the push's plan reads too: `domain/kaseya_endpoints.py`, with their assumptions).

ASSUMED (nobody has published the answer; correct here against a real tenant):
- HTTP statuses besides 200: 401 bad/expired token, 403 missing permission, 404 unknown id or route,
  400 malformed body, 429 over the rate limit (with `Retry-After`), 5xx faults.
- The maximum page size is 100; naive date-times are UTC and both `ModifiedOn` bounds are inclusive.
- `system/lookup/{tableName}` table names (`OpportunityType`, `QuoteStatus`, `LabourPeriod`, ...).
- Concurrency: Kaseya publishes an hourly limit per endpoint (1500 calls), not a limit on requests in flight;
  the pipeline's 8 concurrent reads per step (`PullTuning.kaseya_concurrency`) and a client's 8 requests in
  flight at most, whichever steps send them (`MAX_IN_FLIGHT`), are our choice, not Kaseya's. All threads
  of a run (its Kaseya extractions run side by side) share one client, so one token and one hourly budget
  per endpoint.
- `totalRecords` counts the rows of the whole filtered list; a negative value means "not counted" (paging then
  runs to the first short page). A count the rows contradict fails the read (`KaseyaClient.paginate`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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


def kaseya_datetime(moment: datetime) -> str:
    """Kaseya filters take naive date-times, read as UTC (assumed)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


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
