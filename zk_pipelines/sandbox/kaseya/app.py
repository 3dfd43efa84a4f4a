"""The Starlette app: Kaseya's API under `/v2`, the sandbox's control surface under `/_sandbox/`.

Every `/v2` request goes through `Gateway.handle`, one pipeline in one place: match the route -> read the
body (400 if malformed) -> resolve the bearer token (401) and the user's API access (403) -> rate limit per
(user, method, route template) (429 + Retry-After) -> denied-route knob (403) -> the operation -> the
envelope -> the request log. The fault plan (`sandbox/faults.py`) is consulted between the deny check and the
operation: a fault that strikes before the operation answers instead of it; the others change how the answer
is delivered (late, truncated, never). Each step runs on the state of the company the request belongs to
(`tenants.py`); the control surface takes `?tenant=` (a number, `sandbox_02` or the company name; default 1).
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from zk_pipelines.sandbox.faults import (
    ECHO_REQUEST,
    SUCCESS_FALSE,
    TOKEN_EXPIRY,
    ConnectionDroppingStarlette,
    Fault,
    FaultLoggedRequest,
    ServedRoute,
    deliver,
    echo_of,
)
from zk_pipelines.sandbox.kaseya import auth, dto, reads, writes
from zk_pipelines.sandbox.kaseya.editing import EditRefused
from zk_pipelines.sandbox.kaseya.records import login_of
from zk_pipelines.sandbox.kaseya.routing import ApiFailure, Call, Invalid, Query, Reply, Route, Router, route_shape
from zk_pipelines.sandbox.kaseya.state import KaseyaState
from zk_pipelines.sandbox.kaseya.tenants import KaseyaTenants
from zk_pipelines.sandbox.record_pages import record_page

ROUTES: tuple[Route, ...] = auth.ROUTES + reads.ROUTES + writes.ROUTES

_SECRET_FIELDS = {"password", "accesstoken", "refreshtoken", "mfacode", "clientsecret", "itctoken", "code"}
_MODULES = {"crm": "CRM", "inventory": "Inventory", "hr": "HR", "system": "System", "admin": "Admin",
            "security": "Security"}
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, separators=(",", ":")), status_code=status,
                    headers=headers, media_type="application/json; charset=utf-8")


def success(reply: Reply) -> dict[str, Any]:
    payload = {"success": True, "error": None, "result": reply.result}
    if reply.total is not None:
        payload["totalRecords"] = reply.total
    return payload


def failure(code: int, problems: list[str], details: str | None = None) -> dict[str, Any]:
    message = problems[0] if len(problems) == 1 else f"{len(problems)} problems: {'; '.join(problems)}"
    return {"success": False, "result": None,
            "error": dto.render("ErrorInfo", Code=code, Message=message, StackStrace=details, SubErrors=problems)}


def permission_name(route: Route) -> str:
    """The role permission a route needs, named as Kaseya's role editor groups them (module > area)."""
    literals = [s for s in route.template.strip("/").split("/")[1:] if not s.startswith("{")]
    module = _MODULES.get(literals[0].lower(), literals[0].title())
    area = literals[1].title() if len(literals) > 1 else module
    return f"{module} > {area}: {'View' if route.method == 'GET' else 'Add/Edit'}"


def _denied(entries: tuple[str, ...], route: Route) -> bool:
    for entry in entries:
        parts = entry.split()
        method = parts[0].upper() if len(parts) > 1 else None
        if route_shape(entry) == route.shape and method in (None, route.method):
            return True
    return False


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def _redacted(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: ("***" if str(k).lower() in _SECRET_FIELDS else v) for k, v in body.items()}
    return body


class Gateway:
    def __init__(self, tenants: KaseyaTenants, router: Router) -> None:
        self.tenants = tenants
        self.router = router

    async def _body(self, request: Request, route: Route, raw: bytes) -> Any:
        if route.form:
            content_type = request.headers.get("content-type", "").lower()
            if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
                raise ApiFailure(415, "Send the fields as a form (application/x-www-form-urlencoded or "
                                      "multipart/form-data).")
            form = await request.form()
            return {key: value for key, value in form.items() if isinstance(value, str)}
        if route.method in ("GET", "DELETE"):
            return None
        if not raw.strip():
            raise ApiFailure(400, "A non-empty request body is required.")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiFailure(400, f"The request body is not valid JSON: {exc}.") from None

    @staticmethod
    def _authorise(state: KaseyaState, request: Request, route: Route, body: Any) -> tuple[int | None, str]:
        """(user id, user name) of the caller; raises 401/403."""
        if route.anonymous:
            named = next((v for k, v in (body or {}).items() if str(k).lower() == "username"), None)
            return None, (named or "anonymous").strip().lower()
        grant = state.tokens.resolve(_bearer_token(request), state.clock.now())
        if not state.knobs.api_access:
            raise ApiFailure(403, auth.no_api_access(state.login.username))
        return grant.user_id, state.tenant.employees[grant.user_id].email_address

    @staticmethod
    def _rate_limit(state: KaseyaState, user: str, route: Route) -> None:
        wait = state.limiter.hit((user, route.method, route.template.lower()))
        if wait is not None:
            seconds = math.ceil(wait)
            raise ApiFailure(429, f"Rate limit exceeded: {state.knobs.rate_limit} calls per hour for "
                                  f"{route.label}; retry after {seconds} seconds.",
                             headers={"Retry-After": str(seconds)})

    @staticmethod
    def _check_permission(state: KaseyaState, route: Route) -> None:
        if _denied(state.knobs.denied_routes, route):
            raise ApiFailure(403, f"Access denied: the API user's role lacks the permission "
                                  f"'{permission_name(route)}' needed for {route.label}.")

    def _inject(self, state: KaseyaState, fault: Fault, request: Request, route: Route, body: Any, raw: bytes
                ) -> NoReturn:
        """Answer as the fault says instead of running the operation."""
        if fault.kind == ECHO_REQUEST:
            raise ApiFailure(fault.status, echo_of(request.method, str(request.url), request.headers.items(), raw))
        if fault.kind == TOKEN_EXPIRY:
            state.expire_access_token(_bearer_token(request) or "")
            self._authorise(state, request, route, body)  # raises the 401 an expired token gets
        if fault.kind == SUCCESS_FALSE:
            raise Invalid(fault.message, code=500)
        raise ApiFailure(fault.status, fault.message, headers=fault.headers)

    async def handle(self, request: Request) -> Response:
        state = self.tenants.first  # until the request names its company
        raw = await request.body()
        route: Route | None = None
        logged_body: Any = None
        user: str | None = None
        fault: Fault | None = None
        try:
            if not request.url.path.lower().startswith("/v2/"):
                raise ApiFailure(404, f"No API route matches {request.url.path}; the API is under /v2.")
            route, params = self.router.match(request.method, request.url.path)
            if not route.anonymous:  # Kaseya (ASP.NET) authenticates before it reads a body
                state = self.tenants.for_token(_bearer_token(request)) or state
                with state.lock:
                    state.tokens.resolve(_bearer_token(request), state.clock.now())
            body = await self._body(request, route, raw)
            logged_body = _redacted(body)
            if route.anonymous:
                state = self.tenants.for_form(body) or state
            with state.lock:
                user_id, user = self._authorise(state, request, route, body)
                self._rate_limit(state, user, route)
                self._check_permission(state, route)
                fault = state.faults.decide(route.method, route.template, auth_route=route.anonymous)
                if fault is not None and fault.before_operation:
                    self._inject(state, fault, request, route, body, raw)
                call = Call(tenant=state.tenant, now=state.clock.now(), params=params,
                            query=Query(request.query_params.multi_items()), body=body, user_id=user_id,
                            state=state)
                response = _json(success(route.operation(call)))
        except Invalid as exc:
            response = _json(failure(exc.code, exc.problems))
        except ApiFailure as exc:
            response = _json(failure(exc.status, [exc.message]), exc.status, exc.headers)
        except Exception as exc:  # a sandbox bug: answer like a server fault, with the trace for whoever debugs
            response = _json(failure(500, [f"Internal server error: {exc!r}"], traceback.format_exc()), 500)
        delivery = deliver(response, fault)
        state.log.add(FaultLoggedRequest(
            at=state.clock.now().isoformat().replace("+00:00", "Z"), method=request.method, path=request.url.path,
            query=request.url.query, status=delivery.status, body=logged_body, user=user,
            route=route.template if route else None, fault=delivery.fault,
        ))
        return delivery.response


# The web pages of the records the pipeline links to (the settings' default Kaseya link templates).
RECORD_PAGES = {"crm/accounts": ("accounts", "account"), "crm/contacts": ("contacts", "contact"),
                "crm/opportunities": ("opportunities", "opportunity"), "crm/quotes": ("quotes", "quote"),
                "inventory/products": ("products", "product")}


class ControlSurface:
    """`/_sandbox/...`: reset, request log, knobs, faults, clock and records of one company (`?tenant=`, default
    tenant 1), and the list of companies. Never under `/v2`."""

    def __init__(self, tenants: KaseyaTenants) -> None:
        self.tenants = tenants

    def routes(self) -> list[HttpRoute]:
        one = self._of_tenant
        return [
            HttpRoute("/_sandbox/", one(self.index), methods=["GET"]),
            HttpRoute("/_sandbox/routes", self.served_routes, methods=["GET"]),
            HttpRoute("/_sandbox/tenants", self.tenant_list, methods=["GET"]),
            HttpRoute("/_sandbox/reset", one(self.reset), methods=["POST"]),
            HttpRoute("/_sandbox/requests", one(self.requests), methods=["GET", "DELETE"]),
            HttpRoute("/_sandbox/knobs", one(self.knobs), methods=["GET", "POST"]),
            HttpRoute("/_sandbox/faults", one(self.faults), methods=["GET", "POST", "DELETE"]),
            HttpRoute("/_sandbox/clock", one(self.clock), methods=["GET"]),
            HttpRoute("/_sandbox/clock/advance", one(self.advance), methods=["POST"]),
            HttpRoute("/_sandbox/records/{entity}", one(self.records), methods=["GET", "POST"]),
            HttpRoute("/_sandbox/records/{entity}/{record_id:int}", one(self.record),
                      methods=["GET", "PATCH", "DELETE"]),
            *(HttpRoute(f"/{path}/{{record_id:int}}", one(self._page(entity, kind)), methods=["GET"])
              for path, (entity, kind) in RECORD_PAGES.items()),
        ]

    @staticmethod
    def _page(entity: str, kind: str) -> Callable[[Request, KaseyaState], Awaitable[Response]]:
        async def page(request: Request, state: KaseyaState) -> Response:
            record_id = request.path_params["record_id"]
            try:
                record = state.record(entity, record_id)
            except KeyError:
                record = None
            return record_page("Kaseya BMS", kind, record_id, record)
        return page

    def _of_tenant(self, handler: Callable[[Request, KaseyaState], Awaitable[Response]]
                   ) -> Callable[[Request], Awaitable[Response]]:
        """The handler, given the state of the company `?tenant=` names (404 if none)."""
        async def endpoint(request: Request) -> Response:
            try:
                state = self.tenants.state(request.query_params.get("tenant", 1))
            except KeyError as exc:
                return _json({"error": str(exc.args[0])}, 404)
            return await handler(request, state)
        return endpoint

    @staticmethod
    async def _payload(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise ValueError("the body must be a JSON object")
        return payload

    async def _guarded(self, request: Request, action) -> Response:
        try:
            return await action(await self._payload(request))
        except KeyError as exc:
            return _json({"error": str(exc.args[0])}, 404)
        except (ValueError, EditRefused) as exc:
            return _json({"error": str(exc)}, 400)

    async def index(self, request: Request, state: KaseyaState) -> Response:
        return _json({"seed": state.seed, "scale": state.scale, "api": "/v2", "control": [
            "GET /_sandbox/routes", "GET /_sandbox/tenants", "POST /_sandbox/reset {seed?, scale?}",
            "GET|DELETE /_sandbox/requests", "GET|POST /_sandbox/knobs",
            "GET|POST|DELETE /_sandbox/faults {seed?, rules}", "GET /_sandbox/clock",
            "POST /_sandbox/clock/advance {seconds}",
            "GET|POST /_sandbox/records/{entity}", "GET|PATCH|DELETE /_sandbox/records/{entity}/{id}",
            "?tenant= on any of these but routes and tenants: a number, sandbox_02 or the company name",
        ]})

    async def served_routes(self, request: Request) -> Response:
        return _json([{"method": r.method, "template": r.template, "published": r.published} for r in ROUTES])

    async def tenant_list(self, request: Request) -> Response:
        return _json([{"number": tenant.number, "key": tenant.key, "tenant": login.tenant, "username": login.username,
                       "seed": tenant.seed, "seeded": self.tenants.is_seeded(tenant)}
                      for tenant in self.tenants.tenants for login in [login_of(tenant.number)]])

    async def reset(self, request: Request, state: KaseyaState) -> Response:
        async def act(payload: dict[str, Any]) -> Response:
            state.reset(seed=payload.get("seed"), scale=payload.get("scale"))
            return _json({"seed": state.seed, "scale": state.scale})
        return await self._guarded(request, act)

    async def requests(self, request: Request, state: KaseyaState) -> Response:
        if request.method == "DELETE":
            state.clear_requests()
            return Response(status_code=204)
        return _json(state.requests())

    async def knobs(self, request: Request, state: KaseyaState) -> Response:
        async def act(payload: dict[str, Any]) -> Response:
            if request.method == "POST":
                state.set_knobs(**payload)
            return _json(state.knobs.as_json())
        return await self._guarded(request, act)

    async def faults(self, request: Request, state: KaseyaState) -> Response:
        if request.method == "DELETE":
            state.clear_faults()
            return Response(status_code=204)

        async def act(payload: dict[str, Any]) -> Response:
            if request.method == "POST":
                return _json(state.set_faults(**payload))
            return _json(state.fault_plan())
        return await self._guarded(request, act)

    async def clock(self, request: Request, state: KaseyaState) -> Response:
        return _json(state.clock_json())

    async def advance(self, request: Request, state: KaseyaState) -> Response:
        async def act(payload: dict[str, Any]) -> Response:
            seconds = payload.get("seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                raise ValueError("give the seconds to advance as a number: {\"seconds\": 3600}")
            state.advance_clock(seconds)
            return _json(state.clock_json())
        return await self._guarded(request, act)

    async def records(self, request: Request, state: KaseyaState) -> Response:
        entity = request.path_params["entity"]

        async def act(payload: dict[str, Any]) -> Response:
            if request.method == "POST":
                return _json(state.create_record(entity, payload), 201)
            return _json(state.records(entity))
        return await self._guarded(request, act)

    async def record(self, request: Request, state: KaseyaState) -> Response:
        entity, record_id = request.path_params["entity"], request.path_params["record_id"]

        async def act(payload: dict[str, Any]) -> Response:
            if request.method == "PATCH":
                return _json(state.update_record(entity, record_id, payload))
            if request.method == "DELETE":
                return _json(state.delete_record(entity, record_id))
            return _json(state.record(entity, record_id))
        return await self._guarded(request, act)


def create_kaseya_app(tenants: KaseyaTenants | KaseyaState) -> ConnectionDroppingStarlette:
    """The app serving `tenants` (or one company's state, as a sandbox of one tenant)."""
    if isinstance(tenants, KaseyaState):
        tenants = KaseyaTenants.of_one(tenants)
    gateway = Gateway(tenants, Router(ROUTES))
    tenants.serve(ServedRoute(r.method, r.template, auth=r.anonymous) for r in ROUTES)
    return ConnectionDroppingStarlette(routes=[
        *ControlSurface(tenants).routes(),
        HttpRoute("/{path:path}", gateway.handle, methods=_ALL_METHODS),
    ])
