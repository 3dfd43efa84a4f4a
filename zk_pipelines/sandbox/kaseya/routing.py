"""How a `/v2` request finds its operation, and what an operation gets and gives back.

Routes are matched case-insensitively, as Kaseya's are (`statuses/Lookup` == `statuses/lookup`); a route's
`template` keeps the contract's own spelling, and is what the request log, the rate limiter and the deny
knob key on. Path parameters are integers (a non-integer id matches no route, as with ASP.NET's `{id:int}`)
except the lookup table name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeVar

from zk_pipelines.sandbox.kaseya.dto import parse_datetime

if TYPE_CHECKING:
    from zk_pipelines.sandbox.kaseya.records import Quote, QuoteLineItem, Tenant

MAX_PAGE_SIZE = 100  # ASSUMED: Kaseya's maximum is unpublished; larger requests are capped, not refused.
DEFAULT_PAGE_SIZE = 25  # ASSUMED: the default when PageSize is absent.
_TEXT_PARAMS = {"tablename"}

T = TypeVar("T")


class ApiFailure(Exception):
    """An answer other than 200: the HTTP status and the enveloped error's code and message."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class Invalid(Exception):
    """A request Kaseya refuses with HTTP 200 and `success:false`; every problem names its field."""

    def __init__(self, problems: str | Iterable[str], *, code: int = 400) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.code = code
        super().__init__("; ".join(self.problems))


def not_found(what: str, key: object) -> ApiFailure:
    return ApiFailure(404, f"{what} {key} was not found.")


def by_key(call: Call, records: Mapping[Any, T], what: str, key: str = "id") -> T:
    """The record a path parameter (`key`) names, or the 404 Kaseya answers for it."""
    found = records.get(call.params[key])
    if found is None:
        raise not_found(what, call.params[key])
    return found


def quote_of(call: Call) -> Quote:
    return by_key(call, call.tenant.quotes, "Quotation", "quotationId")


def line_item_of(call: Call) -> tuple[Quote, QuoteLineItem]:
    """The quote and its line item that the path names (`{quotationId}/lineItems/{lineItemId}`)."""
    quote = quote_of(call)
    item = quote.line_item(call.params["lineItemId"])
    if item is None:
        raise not_found(f"Line item of quotation {quote.id}", call.params["lineItemId"])
    return quote, item


class Query:
    """The query string, read case-insensitively (`filter.modifiedonfrom` == `Filter.ModifiedOnFrom`)."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for key, value in items:
            self._values.setdefault(key.lower(), []).append(value)

    def text(self, name: str) -> str | None:
        values = self._values.get(name.lower())
        value = values[-1].strip() if values else ""
        return value or None

    def _parsed(self, name: str, parse: Callable[[str], T], expected: str) -> T | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError:
            raise Invalid(f"The value '{value}' is not valid for {name}: {expected} is expected.") from None

    def int(self, name: str) -> int | None:
        return self._parsed(name, int, "an integer")

    def ints(self, name: str) -> list[int] | None:
        """Repeated (`Filter.Ids=1&Filter.Ids=2`) or comma-separated (`Filter.Ids=1,2`) integers."""
        raw = [part.strip() for value in self._values.get(name.lower(), []) for part in value.split(",")]
        raw = [part for part in raw if part]
        if not raw:
            return None
        try:
            return [int(part) for part in raw]
        except ValueError:
            raise Invalid(f"The value '{','.join(raw)}' is not valid for {name}: integers are expected.") from None

    def bool(self, name: str) -> bool | None:
        value = self.text(name)
        if value is None:
            return None
        if value.lower() not in ("true", "false"):
            raise Invalid(f"The value '{value}' is not valid for {name}: true or false is expected.")
        return value.lower() == "true"

    def datetime(self, name: str) -> datetime | None:
        return self._parsed(name, parse_datetime, "a date-time")

    def window(self, prefix: str) -> DateWindow:
        """`<prefix>From` / `<prefix>To`, both inclusive; naive values are UTC (assumed)."""
        return DateWindow(self.datetime(f"{prefix}From"), self.datetime(f"{prefix}To"))

    def contains(self, name: str) -> Callable[[str | None], bool]:
        """A case-insensitive "contains" test for a text filter (true for every value when absent)."""
        needle = self.text(name)
        if needle is None:
            return lambda _: True
        folded = needle.casefold()
        return lambda value: value is not None and folded in value.casefold()


@dataclass(frozen=True)
class DateWindow:
    start: datetime | None
    end: datetime | None

    def __contains__(self, moment: datetime | None) -> bool:
        if self.start is None and self.end is None:
            return True
        if moment is None:
            return False
        return (self.start is None or moment >= self.start) and (self.end is None or moment <= self.end)


# A list filter's record value: an attribute path (`"stamps.created_on"`) or a function of the record.
RecordValue = str | Callable[[Any], Any]
Getter = Callable[[Any], Any]
Test = Callable[[Any], bool]


def _contains(query: Query, name: str, value: Getter) -> Test | None:
    if query.text(name) is None:
        return None
    contains = query.contains(name)
    return lambda record: contains(value(record))


def _any_contains(query: Query, name: str, value: Getter) -> Test | None:
    if query.text(name) is None:
        return None
    contains = query.contains(name)
    return lambda record: any(contains(item) for item in value(record))


def _equals(read: Callable[[Query, str], Any]) -> Callable[[Query, str, Getter], Test | None]:
    def test(query: Query, name: str, value: Getter) -> Test | None:
        wanted = read(query, name)
        return None if wanted is None else lambda record: value(record) == wanted
    return test


def _int_in(query: Query, name: str, value: Getter) -> Test | None:
    wanted = query.ints(name)
    return None if wanted is None else lambda record: value(record) in wanted


def _within(query: Query, name: str, value: Getter) -> Test | None:
    window = query.window(name)
    if window.start is None and window.end is None:
        return None
    return lambda record: value(record) in window


# How each kind of `Filter.*` parameter is read and compared; a parameter that is absent lets every record through.
_FILTER_KINDS: dict[str, Callable[[Query, str, Getter], Test | None]] = {
    "contains": _contains,  # text, case-insensitive "contains"
    "any_contains": _any_contains,  # text, contained in any of the record's values
    "int_equals": _equals(Query.int),
    "int_in": _int_in,  # repeated or comma-separated integers (`Filter.Ids`)
    "bool_equals": _equals(Query.bool),
    "within": _within,  # `<name>From` / `<name>To`, inclusive
}


def matching(query: Query, records: Iterable[T], **filters: Mapping[str, RecordValue]) -> list[T]:
    """The records that every given `Filter.<name>` parameter lets through. `filters` maps a kind (`contains`,
    `any_contains`, `int_equals`, `int_in`, `bool_equals`, `within`) to `{name: the record's value}`; the
    parameters are read in the order given, so the first invalid one is the one reported."""
    tests = []
    for kind, table in filters.items():
        for name, value in table.items():
            test = _FILTER_KINDS[kind](query, f"Filter.{name}", attrgetter(value) if isinstance(value, str) else value)
            if test is not None:
                tests.append(test)
    return [record for record in records if all(test(record) for test in tests)]


@dataclass(frozen=True)
class Reply:
    """A successful answer: the envelope's `result`, and `totalRecords` for paged lists that carry it."""

    result: Any
    total: int | None = None


@dataclass
class Call:
    """What an operation is given: the tenant, path parameters, query, body and the calling user."""

    tenant: Tenant
    now: datetime
    params: dict[str, Any]
    query: Query
    body: Any
    user_id: int | None
    state: Any  # the KaseyaState, for the security operations that issue tokens


Operation = Callable[[Call], Reply]


def page(call: Call, rows: Sequence[T], render: Callable[[T], Any], *, with_total: bool = True) -> Reply:
    """One page of `rows` (1-based `PageNumber`, `PageSize` capped at 100); only the page is rendered."""
    number = call.query.int("PageNumber")
    size = call.query.int("PageSize")
    if number is not None and number < 1:
        raise Invalid(f"PageNumber must be 1 or greater (pages are 1-based), not {number}.")
    if size is not None and size < 1:
        raise Invalid(f"PageSize must be 1 or greater, not {size}.")
    number, size = number or 1, min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    start = (number - 1) * size
    return Reply([render(row) for row in rows[start:start + size]], len(rows) if with_total else None)


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # the contract's spelling, e.g. /v2/crm/opportunities/statuses/Lookup
    operation: Operation
    published: bool = True  # False: NOT IN KASEYA'S PUBLISHED CONTRACT, modelled by the sandbox
    anonymous: bool = False  # login and token refresh need no bearer token
    form: bool = False  # the body is a form (urlencoded or multipart), not JSON
    _segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        segments = self.template.strip("/").split("/")
        object.__setattr__(self, "_segments", tuple(s if s.startswith("{") else s.lower() for s in segments))

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def shape(self) -> str:
        """The template with parameter names erased: how the deny knob and contract lookups compare routes."""
        return "/".join("{}" if s.startswith("{") else s for s in self._segments)

    @property
    def literal_count(self) -> int:
        return sum(not s.startswith("{") for s in self._segments)

    def match(self, parts: Sequence[str]) -> dict[str, Any] | None:
        if len(parts) != len(self._segments):
            return None
        params: dict[str, Any] = {}
        for segment, part in zip(self._segments, parts, strict=True):
            if segment.startswith("{"):
                name = segment[1:-1]
                if name.lower() in _TEXT_PARAMS:
                    params[name] = part
                elif part.lstrip("-").isdigit():
                    params[name] = int(part)
                else:
                    return None
            elif segment != part.lower():
                return None
        return params


def routes(table: Mapping[str, Operation], *, published: bool = True, anonymous: bool = False, form: bool = False
           ) -> tuple[Route, ...]:
    """Routes from `{"GET /v2/crm/opportunities/{id}": operation}` (the contract's method and path), all with
    the same flags."""
    built = []
    for label, operation in table.items():
        method, template = label.split()
        built.append(Route(method, template, operation, published=published, anonymous=anonymous, form=form))
    return tuple(built)


def route_shape(text: str) -> str:
    """`GET /v2/crm/opportunities/{id}` or a bare template -> the comparable shape of its path."""
    path = text.split()[-1]
    return "/".join("{}" if s.startswith("{") else s.lower() for s in path.strip("/").split("/"))


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        labels = [r.label.lower() for r in self.routes]
        if len(labels) != len(set(labels)):
            raise ValueError("a route is declared twice")

    def match(self, method: str, path: str) -> tuple[Route, dict[str, Any]]:
        parts = path.strip("/").split("/")
        candidates = [(route, params) for route in self.routes if (params := route.match(parts)) is not None]
        if not candidates:
            raise ApiFailure(404, f"No API route matches {path}.")
        for_method = [c for c in candidates if c[0].method == method.upper()]
        if not for_method:
            allowed = ", ".join(sorted({c[0].method for c in candidates}))
            raise ApiFailure(405, f"{method.upper()} is not allowed on {path} (allowed: {allowed}).")
        return max(for_method, key=lambda c: c[0].literal_count)
