"""Fault injection shared by both sandboxes: a seeded plan of rules, the decision for each API request, and
the ways an answer goes wrong on the wire (late, truncated, never sent).

A plan is a seed and a list of rules. Each rule names a kind of fault, optionally a route template (with or
without its method) and a method, and when it strikes: `rate` (the share of matching requests, decided by
a generator seeded with the plan's seed, the rule's position and the request's ordinal among the rule's
matches, so the same plan and the same request sequence inject the same faults), `after` (leave the first
N matching requests alone) and `count` (at most N injections; a 429 burst is one injection). The first rule
that strikes a request decides its fault; a request gets at most one.

Where each kind strikes, relative to the sandbox's operation:
- before it, the operation not run: `http_error`, `rate_limit_burst`, `token_expiry`, `success_false`
  (answered), `connection_reset`, `read_timeout` (not answered);
- after it, the operation run: `latency` (the answer is held), `malformed_json` (the answer is cut in half),
  `lost_answer` (the answer is never sent).

`unpersisted_write` (Zomentum only, a write): the operation runs and is answered as usual, then undone: a write
answered 200 that did not persist, which no retry notices (the reconciliation's comparison does). Not among
`FAULT_KINDS`, which re-runs get past.

`echo_request` is a hostile server's answer, not a flaky one's, so it is not among `FAULT_KINDS` (the kinds the
reliability reports inject, which retries and re-runs get past): the operation is refused with `status`
(default 400) and a message that quotes the request back, headers, query and body as sent, as some servers'
and proxies' error pages do. The secret scan uses it to check that no form of a secret survives in an error.

The sandboxes decide after their own checks (token, rate limit, permissions) pass, right before the
operation; requests those checks refuse are not matching requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from zk_pipelines.sandbox.runtime import LoggedRequest

LATENCY = "latency"
HTTP_ERROR = "http_error"
RATE_LIMIT_BURST = "rate_limit_burst"
CONNECTION_RESET = "connection_reset"
READ_TIMEOUT = "read_timeout"
SUCCESS_FALSE = "success_false"  # Kaseya's 200 + success:false; Zomentum has no such envelope
TOKEN_EXPIRY = "token_expiry"
MALFORMED_JSON = "malformed_json"
LOST_ANSWER = "lost_answer"

ECHO_REQUEST = "echo_request"
UNPERSISTED_WRITE = "unpersisted_write"

FAULT_KINDS: tuple[str, ...] = (LATENCY, HTTP_ERROR, RATE_LIMIT_BURST, CONNECTION_RESET, READ_TIMEOUT, SUCCESS_FALSE,
                                TOKEN_EXPIRY, MALFORMED_JSON, LOST_ANSWER)
EVERY_KIND: tuple[str, ...] = (*FAULT_KINDS, ECHO_REQUEST)
WRITE_ONLY_KINDS: tuple[str, ...] = (UNPERSISTED_WRITE,)  # the kinds only a sandbox that can undo a write takes

# The parameters each kind takes besides the common ones.
_PARAMETERS: dict[str, frozenset[str]] = {
    LATENCY: frozenset({"seconds"}),
    HTTP_ERROR: frozenset({"statuses"}),
    RATE_LIMIT_BURST: frozenset({"retry_after", "length"}),
    CONNECTION_RESET: frozenset(),
    READ_TIMEOUT: frozenset({"seconds"}),
    SUCCESS_FALSE: frozenset(),
    TOKEN_EXPIRY: frozenset(),
    MALFORMED_JSON: frozenset(),
    LOST_ANSWER: frozenset({"seconds"}),
    ECHO_REQUEST: frozenset({"status"}),
    UNPERSISTED_WRITE: frozenset(),
}
_COMMON = frozenset({"kind", "route", "method", "rate", "count", "after"})
_BEFORE_OPERATION = frozenset({HTTP_ERROR, RATE_LIMIT_BURST, TOKEN_EXPIRY, SUCCESS_FALSE, CONNECTION_RESET,
                               READ_TIMEOUT, ECHO_REQUEST})
_UNANSWERED = frozenset({CONNECTION_RESET, READ_TIMEOUT, LOST_ANSWER})
# The HTTP status of the answers faults give instead of the operation's (never sent for the unanswered ones).
_STATUS = {RATE_LIMIT_BURST: 429, TOKEN_EXPIRY: 401, SUCCESS_FALSE: 200, CONNECTION_RESET: 503, READ_TIMEOUT: 503}
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
INJECTED = "injected by the sandbox's fault plan"


def _shape(path: str) -> str:
    """A template's comparable form: case and parameter names erased, no trailing slash."""
    return "/".join("{}" if s.startswith("{") else s.lower() for s in path.strip("/").split("/"))


@dataclass(frozen=True)
class ServedRoute:
    """A route a sandbox serves, as the fault plan checks rules against it. `auth` marks the routes that
    hand out tokens (login, refresh): rules without a route leave them alone."""

    method: str
    template: str
    auth: bool = False


@dataclass(frozen=True)
class FaultRule:
    kind: str
    route: str | None = None  # a path template; None: every API route except the auth routes
    method: str | None = None
    rate: float = 1.0
    count: int | None = None
    after: int = 0
    seconds: float | None = None  # latency, read_timeout, lost_answer: how long the answer is held
    statuses: tuple[int, ...] | None = None  # http_error
    retry_after: int | None = None  # rate_limit_burst
    length: int | None = None  # rate_limit_burst: consecutive 429 answers per burst
    status: int | None = None  # echo_request

    @classmethod
    def parse(cls, raw: Any, where: str, kinds: frozenset[str]) -> FaultRule:
        if isinstance(raw, FaultRule):
            raw = raw.as_json()
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: a rule is an object with at least a kind")
        kind = raw.get("kind")
        if kind not in kinds:
            known = ", ".join(k for k in (*EVERY_KIND, *WRITE_ONLY_KINDS) if k in kinds)
            raise ValueError(f"{where}.kind: {kind!r} is not one of {known}")
        allowed = _COMMON | _PARAMETERS[kind]
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ValueError(f"{where}: {', '.join(unknown)} does not apply to {kind} "
                             f"(it takes {', '.join(sorted(allowed))})")
        method, route = _route_and_method(raw.get("route"), raw.get("method"), where)
        values: dict[str, Any] = {
            "kind": kind, "route": route, "method": method,
            "rate": _number(raw, "rate", where, default=1.0, maximum=1.0),
            "count": _whole(raw, "count", where, default=None, minimum=1),
            "after": _whole(raw, "after", where, default=0, minimum=0),
        }
        if kind in (LATENCY, READ_TIMEOUT):
            values["seconds"] = _number(raw, "seconds", where, default=None, positive=True)
        elif kind == LOST_ANSWER:
            values["seconds"] = _number(raw, "seconds", where, default=0.0)
        elif kind == HTTP_ERROR:
            values["statuses"] = _statuses(raw.get("statuses", [500, 502, 503]), where)
        elif kind == RATE_LIMIT_BURST:
            values["retry_after"] = _whole(raw, "retry_after", where, default=1, minimum=0)
            values["length"] = _whole(raw, "length", where, default=3, minimum=1)
        elif kind == ECHO_REQUEST:
            values["status"] = _whole(raw, "status", where, default=400, minimum=400)
            if values["status"] > 599:
                raise ValueError(f"{where}.status: must be a 4xx or 5xx status, not {values['status']!r}")
        return cls(**values)

    @property
    def label(self) -> str:
        if self.route is None:
            return f"every {self.method + ' ' if self.method else ''}API route"
        return f"{self.method} {self.route}" if self.method else self.route

    def matches(self, method: str, template: str, *, auth_route: bool) -> bool:
        if self.method is not None and self.method != method.upper():
            return False
        if self.route is None:
            return not auth_route
        return _shape(self.route) == _shape(template)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "route": self.route, "method": self.method, "rate": self.rate,
                                "count": self.count, "after": self.after}
        for name in sorted(_PARAMETERS[self.kind]):
            value = getattr(self, name)
            data[name] = list(value) if isinstance(value, tuple) else value
        return data


def _route_and_method(route: Any, method: Any, where: str) -> tuple[str | None, str | None]:
    if method is not None:
        if not isinstance(method, str) or method.upper() not in _METHODS:
            raise ValueError(f"{where}.method: {method!r} is not one of {', '.join(sorted(_METHODS))}")
        method = method.upper()
    if route is None:
        return method, None
    parts = route.split() if isinstance(route, str) else []
    if len(parts) == 2:
        named, path = parts[0].upper(), parts[1]
        if named not in _METHODS:
            raise ValueError(f"{where}.route: {parts[0]!r} is not an HTTP method")
        if method is not None and method != named:
            raise ValueError(f"{where}: route says {named} but method says {method}")
        method = named
    elif len(parts) == 1:
        path = parts[0]
    else:
        path = ""
    if not path.startswith("/"):
        raise ValueError(f"{where}.route: give a route template, e.g. \"GET /v2/crm/accounts/summary\" or "
                         f"\"/v2/client/companies/{{id}}\", not {route!r}")
    return method, path


def _number(raw: Mapping[str, Any], name: str, where: str, *, default: float | None, maximum: float | None = None,
            positive: bool = False) -> float:
    value = default if raw.get(name) is None else raw[name]
    if value is None:
        raise ValueError(f"{where}.{name}: required for {raw['kind']} (a number of seconds)")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (positive and value == 0):
        raise ValueError(f"{where}.{name}: must be a {'positive' if positive else 'non-negative'} number, "
                         f"not {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{where}.{name}: must be between 0 and {maximum:g}, not {value!r}")
    return float(value)


def _whole(raw: Mapping[str, Any], name: str, where: str, *, default: int | None, minimum: int) -> Any:
    value = default if raw.get(name) is None else raw[name]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}.{name}: must be a whole number, {minimum} or more, not {value!r}")
    return value


def _statuses(value: Any, where: str) -> tuple[int, ...]:
    if (not isinstance(value, list | tuple) or not value
            or not all(isinstance(s, int) and not isinstance(s, bool) and 500 <= s <= 599 for s in value)):
        raise ValueError(f"{where}.statuses: must be a non-empty list of 5xx statuses, e.g. [500, 502, 503]")
    return tuple(value)


@dataclass(frozen=True)
class FaultPlan:
    seed: int
    rules: tuple[FaultRule, ...]

    @classmethod
    def parse(cls, plan: Mapping[str, Any], kinds: frozenset[str]) -> FaultPlan:
        """`{"seed": 42, "rules": [...]}`; without a seed one is drawn (and shown) so the run can be replayed."""
        unknown = sorted(set(plan) - {"seed", "rules"})
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: unknown (a fault plan has a seed and rules)")
        seed = plan.get("seed")
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed: must be an integer, not {seed!r}")
        rules = plan.get("rules", [])
        if not isinstance(rules, list | tuple):
            raise ValueError("rules: must be a list of rules")
        return cls(seed, tuple(FaultRule.parse(rule, f"rules[{i}]", kinds) for i, rule in enumerate(rules)))


@dataclass(frozen=True)
class Fault:
    """The fault one request gets. `route` is the served route's label (`GET /v2/...`)."""

    kind: str
    rule: int
    route: str
    status: int = 200  # the HTTP status the fault answers with, when it answers instead of the operation
    retry_after: int | None = None
    seconds: float = 0.0

    @property
    def before_operation(self) -> bool:
        """The sandbox answers (or drops the connection) instead of running the operation."""
        return self.kind in _BEFORE_OPERATION

    @property
    def message(self) -> str:
        if self.kind == HTTP_ERROR:
            return f"{_REASONS.get(self.status, 'Server Error')} ({INJECTED})"
        if self.kind == RATE_LIMIT_BURST:
            return f"Too many requests: retry after {self.retry_after} seconds ({INJECTED})"
        if self.kind == SUCCESS_FALSE:
            return f"The operation could not be completed ({INJECTED}: success_false)"
        if self.kind == TOKEN_EXPIRY:
            return f"The access token has expired ({INJECTED})"
        return f"No answer is sent ({INJECTED}: {self.kind})"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.kind == RATE_LIMIT_BURST else {}

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "rule": self.rule}
        if self.kind in (HTTP_ERROR, ECHO_REQUEST):
            data["status"] = self.status
        if self.kind == RATE_LIMIT_BURST:
            data["retry_after"] = self.retry_after
        if self.kind in (LATENCY, READ_TIMEOUT, LOST_ANSWER):
            data["seconds"] = self.seconds
        return data


@dataclass
class _Progress:
    matched: int = 0  # requests the rule matched, including those before `after`
    struck: int = 0  # injections counted against `count` (a burst is one)
    faulted: int = 0  # requests that got this rule's fault
    burst_left: int = 0


class FaultInjector:
    """The fault plan of one sandbox and what it has injected so far. Thread-safe.

    `serve(routes)` (called by the app) lets `configure` refuse rules that match no served route.
    """

    def __init__(self, kinds: Iterable[str] = FAULT_KINDS) -> None:
        self.kinds = frozenset(kinds)
        self._routes: tuple[ServedRoute, ...] = ()
        self._lock = threading.Lock()
        self._plan: FaultPlan | None = None
        self._progress: list[_Progress] = []
        self._counts: dict[str, dict[str, int]] = {}

    def __repr__(self) -> str:
        rules = len(self._plan.rules) if self._plan else 0
        return f"FaultInjector({rules} rules, seed={self._plan.seed if self._plan else None})"

    def serve(self, routes: Iterable[ServedRoute]) -> None:
        self._routes = tuple(routes)

    def configure(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the plan (progress and counters start over); returns the new plan's view."""
        parsed = FaultPlan.parse(plan, self.kinds)
        for index, rule in enumerate(parsed.rules):
            self._check_served(rule, f"rules[{index}]")
        with self._lock:
            self._plan = parsed
            self._progress = [_Progress() for _ in parsed.rules]
            self._counts = {}
        return self.view()

    def _check_served(self, rule: FaultRule, where: str) -> None:
        if not self._routes:
            return
        served = [r for r in self._routes if rule.matches(r.method, r.template, auth_route=r.auth)]
        if not served:
            raise ValueError(f"{where}.route: {rule.label} matches no route this sandbox serves "
                             f"(GET /_sandbox/routes or the README lists them)")
        if rule.kind == TOKEN_EXPIRY and all(r.auth for r in served):
            raise ValueError(f"{where}: token_expiry needs a route called with a bearer token, not {rule.label}")

    def clear(self) -> None:
        with self._lock:
            self._plan = None
            self._progress = []
            self._counts = {}

    def view(self) -> dict[str, Any]:
        with self._lock:
            plan = self._plan
            rules = [{**rule.as_json(), "matched": p.matched, "injected": p.faulted}
                     for rule, p in zip(plan.rules, self._progress, strict=True)] if plan else []
            return {"seed": plan.seed if plan else None, "rules": rules, "injected": self._counts_copy()}

    def counts(self) -> dict[str, dict[str, int]]:
        """Requests that got a fault, by kind and served route (`{"http_error": {"GET /v2/...": 2}}`)."""
        with self._lock:
            return self._counts_copy()

    def _counts_copy(self) -> dict[str, dict[str, int]]:
        return {kind: dict(sorted(routes.items())) for kind, routes in sorted(self._counts.items())}

    def decide(self, method: str, template: str, *, auth_route: bool = False) -> Fault | None:
        """The fault for this request to the served route `method template`, if any (and count it)."""
        with self._lock:
            plan = self._plan
            if plan is None:
                return None
            label = f"{method.upper()} {template}"
            chosen: Fault | None = None
            for index, rule in enumerate(plan.rules):
                if not rule.matches(method, template, auth_route=auth_route):
                    continue
                progress = self._progress[index]
                progress.matched += 1
                if chosen is None:
                    chosen = self._strike(plan.seed, index, rule, progress, label)
            if chosen is not None:
                self._progress[chosen.rule].faulted += 1
                by_route = self._counts.setdefault(chosen.kind, {})
                by_route[label] = by_route.get(label, 0) + 1
            return chosen

    @staticmethod
    def _strike(seed: int, index: int, rule: FaultRule, progress: _Progress, label: str) -> Fault | None:
        fault = Fault(rule.kind, index, label, status=rule.status or _STATUS.get(rule.kind, 200),
                      retry_after=rule.retry_after, seconds=rule.seconds or 0.0)
        if progress.burst_left > 0:
            progress.burst_left -= 1
            return fault
        if progress.matched <= rule.after or (rule.count is not None and progress.struck >= rule.count):
            return None
        # One generator per (seed, rule, ordinal): a decision depends on nothing else, so a replay of the same
        # requests meets the same faults whatever the timing or the other rules did.
        draw = random.Random(f"{seed}:{index}:{progress.matched}")
        if draw.random() >= rule.rate:
            return None
        progress.struck += 1
        if rule.kind == RATE_LIMIT_BURST:
            progress.burst_left = (rule.length or 1) - 1
        if rule.kind == HTTP_ERROR:
            return Fault(rule.kind, index, label, status=draw.choice(rule.statuses or (500,)))
        return fault


class FaultControls:
    """A sandbox state's hold on its fault plan (`faults`), as its control surface and the tests call it."""

    faults: FaultInjector

    def set_faults(self, **plan: Any) -> dict[str, Any]:
        """Replace the fault plan: `set_faults(seed=42, rules=[{"kind": "http_error", "rate": 0.5}])` (see
        `sandbox/faults.py` and the README); returns it as `fault_plan()` shows it."""
        return self.faults.configure(plan)

    def fault_plan(self) -> dict[str, Any]:
        """The plan, each rule's matched and injected requests, and the injections by kind and route."""
        return self.faults.view()

    def fault_counts(self) -> dict[str, dict[str, int]]:
        return self.faults.counts()

    def clear_faults(self) -> None:
        self.faults.clear()


def echo_of(method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes) -> str:
    """The `echo_request` answer's message: the request as it arrived, every header and the body as sent."""
    quoted = "; ".join(f"{name}: {value}" for name, value in headers)
    return (f"The request could not be processed ({INJECTED}: echo_request). It was: {method} {url}; headers: "
            f"{quoted}; body: {body.decode('utf-8', 'replace')}")


# ----- the request log ------------------------------------------------------------------------------------

@dataclass
class FaultLoggedRequest(LoggedRequest):
    """A request log entry that also says which fault the request got (None: none). `status` is what the
    client received: 0 when no HTTP answer was sent."""

    fault: dict[str, Any] | None = None


# ----- on the wire ----------------------------------------------------------------------------------------

_TRANSPORT = "zk_pipelines.sandbox.transport"


class ConnectionDroppingStarlette(Starlette):
    """A Starlette app whose answers can drop the TCP connection without sending anything.

    ASGI has no way to do that (an app that sends nothing gets a 500 from the server), so the server's
    transport is taken from uvicorn's own `send` (a bound method of its request cycle) before Starlette wraps
    it, and kept in the scope for the answer to abort. Needs uvicorn, which `RunningServer` is.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[_TRANSPORT] = getattr(getattr(send, "__self__", None), "transport", None)
        await super().__call__(scope, receive, send)


async def _client_gone_within(receive: Receive, seconds: float) -> bool:
    """Wait up to `seconds` for the client to close the connection (True if it did)."""
    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            await asyncio.sleep(0.01)

    if seconds <= 0:
        return False
    try:
        await asyncio.wait_for(gone(), seconds)
    except TimeoutError:
        return False
    return True


class _Late(Response):
    """The answer, sent after `seconds` (or dropped by the server if the client stopped waiting)."""

    def __init__(self, answer: Response, seconds: float) -> None:
        super().__init__(answer.body, status_code=answer.status_code)
        self.raw_headers = list(answer.raw_headers)
        self._seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _client_gone_within(receive, self._seconds)
        await super().__call__(scope, receive, send)


class _Dropped(Response):
    """No answer: after holding the connection up to `seconds` (the client may time out first), reset it."""

    def __init__(self, seconds: float) -> None:
        super().__init__(b"", status_code=503)
        self._seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _client_gone_within(receive, self._seconds)
        transport = scope.get(_TRANSPORT)
        if transport is None:
            raise RuntimeError("dropping a connection needs the app served by uvicorn as a "
                               "ConnectionDroppingStarlette")
        if not transport.is_closing():
            sock = transport.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                # Linger 0: the close is a reset (RST), as a crashed proxy gives, not an orderly FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        # Return only once uvicorn has seen the disconnect; before that it would answer 500 for us.
        await _client_gone_within(receive, 1.0)


def _truncated(answer: Response) -> Response:
    """The answer with its body cut in half: a strict prefix of a JSON object or array is never JSON."""
    body = answer.body[: len(answer.body) // 2] or b"{"
    cut = Response(body, status_code=answer.status_code)
    cut.raw_headers = [(k, v) for k, v in answer.raw_headers if k != b"content-length"] + [
        (b"content-length", str(len(body)).encode())]
    return cut


@dataclass(frozen=True)
class Delivery:
    """How an answer leaves the sandbox: `response` for Starlette to send, `status` the client receives
    (0: none) and `fault` for the request log."""

    response: Response
    status: int
    fault: dict[str, Any] | None


def deliver(answer: Response, fault: Fault | None) -> Delivery:
    """The sandbox's answer, delivered as the fault says."""
    if fault is None:
        return Delivery(answer, answer.status_code, None)
    logged = fault.as_json()
    if fault.kind in _UNANSWERED:
        if fault.kind == LOST_ANSWER:
            logged["withheld_status"] = answer.status_code
        return Delivery(_Dropped(fault.seconds), 0, logged)
    if fault.kind == MALFORMED_JSON:
        answer = _truncated(answer)
    elif fault.kind == LATENCY:
        answer = _Late(answer, fault.seconds)
    return Delivery(answer, answer.status_code, logged)
