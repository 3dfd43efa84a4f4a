"""The Zomentum sandbox as an ASGI app: the API under `/v2`, the control surface under `/_sandbox/`.

Every API request goes through `_dispatch`, the one place that matches the route table, authenticates,
applies the rate limit, consults the fault plan (`sandbox/faults.py`, keyed by `ApiRoute.template`), calls the
handler, renders errors as `{"status_code", "message"}` and logs the request, on the state of the account the
request's token belongs to (`accounts.py`). The control surface takes `?tenant=` (a number or `sandbox_02`;
default account 1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NoReturn
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from zk_pipelines.sandbox.faults import (
    ECHO_REQUEST,
    TOKEN_EXPIRY,
    UNPERSISTED_WRITE,
    ConnectionDroppingStarlette,
    Fault,
    FaultLoggedRequest,
    ServedRoute,
    deliver,
    echo_of,
)
from zk_pipelines.sandbox.record_pages import record_page
from zk_pipelines.sandbox.zomentum.accounts import ZomentumAccounts
from zk_pipelines.sandbox.zomentum.schema import RESOURCES, ApiProblem, bad_request, format_timestamp
from zk_pipelines.sandbox.zomentum.state import API_USER_EMAIL, ZAPIER_DOCUMENTS, ZomentumState

# Query parameters never written to the request log.
_SECRET_PARAMS = frozenset({"refresh_token"})


@dataclass(frozen=True)
class ApiCall:
    params: Mapping[str, str]  # path parameters
    query: Mapping[str, str]
    body: Any


Handler = Callable[[ZomentumState, ApiCall], Response]


@dataclass(frozen=True)
class ApiRoute:
    method: str
    template: str  # e.g. "/v2/client/companies/{id}"; a trailing "/" means the slash is required
    handler: Handler
    authenticated: bool = True
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        body = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template.rstrip("/"))
        # A create needs its trailing slash (POST /v2/<resource>/); elsewhere the slash is optional.
        tail = "/" if self.template.endswith("/") and self.method == "POST" else "/?"
        object.__setattr__(self, "pattern", re.compile(f"^{body}{tail}$"))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        return found.groupdict() if found else None


# The web pages of the records the pipeline links to (the settings' default Zomentum link templates).
RECORD_PAGES = {"clients": ("client/companies", "client"), "client-users": ("client/users", "client user"),
                "opportunities": ("opportunities", "opportunity"), "documents": ("documents", "document"),
                "items": ("items", "item")}


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _problem(problem: ApiProblem) -> JSONResponse:
    return JSONResponse({"status_code": problem.status, "message": problem.message}, status_code=problem.status,
                        headers=problem.headers)


def _refresh(state: ZomentumState, call: ApiCall) -> Response:
    return _json(state.refresh_access_token(call.query.get("refresh_token")))


def _lister(resource: str) -> Handler:
    return lambda state, call: _json(state.list_records(resource, call.query))


def _getter(resource: str) -> Handler:
    return lambda state, call: _json(state.get_record(resource, call.params["id"]))


def _creator(resource: str) -> Handler:
    return lambda state, call: _json(state.create_record(resource, call.body), 201)


def _updater(resource: str) -> Handler:
    return lambda state, call: _json(state.update_record(resource, call.params["id"], call.body))


def _line_items(state: ZomentumState, call: ApiCall) -> Response:
    csv_text = state.line_items_csv(call.params["document_id"], call.params["revision_id"])
    return Response(csv_text.encode("utf-8"), media_type="text/csv; charset=utf-8")


def _download(state: ZomentumState, call: ApiCall) -> Response:
    pdf = state.document_pdf(call.params["document_id"])
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{call.params["document_id"]}.pdf"'})


def api_routes() -> list[ApiRoute]:
    """The `/v2` route table, most specific first."""
    routes = [
        ApiRoute("GET", "/v2/auth0/access_token", _refresh, authenticated=False),
        ApiRoute("GET", f"/v2/{ZAPIER_DOCUMENTS}", _lister(ZAPIER_DOCUMENTS)),
        ApiRoute("GET", "/v2/documents/download/{document_id}", _download),
        ApiRoute("GET", "/v2/documents/{document_id}/revisions/{revision_id}/downloadproducts/", _line_items),
    ]
    for path, spec in RESOURCES.items():
        if "list" in spec.operations:
            routes.append(ApiRoute("GET", f"/v2/{path}", _lister(path)))
        if "create" in spec.operations:
            routes.append(ApiRoute("POST", f"/v2/{path}/", _creator(path)))
        if "get" in spec.operations:
            routes.append(ApiRoute("GET", f"/v2/{path}/{{id}}", _getter(path)))
        if "update" in spec.operations:
            routes.append(ApiRoute("PUT", f"/v2/{path}/{{id}}", _updater(path)))
    return routes


def _inject(state: ZomentumState, fault: Fault, request: Request, token: str | None, raw: bytes) -> NoReturn:
    """Answer as the fault says instead of calling the handler."""
    if fault.kind == ECHO_REQUEST:
        raise ApiProblem(fault.status, echo_of(request.method, str(request.url), request.headers.items(), raw))
    if fault.kind == TOKEN_EXPIRY and token is not None:
        state.expire_access_token(token)
        state.authenticate(request.headers.get("authorization"))  # raises the 401 an expired token gets
    raise ApiProblem(fault.status, fault.message, fault.headers)


def _logged_query(request: Request) -> str:
    pairs = [(k, "***" if k in _SECRET_PARAMS else v) for k, v in request.query_params.multi_items()]
    return urlencode(pairs, safe="*")


def create_zomentum_app(accounts: ZomentumAccounts | ZomentumState) -> ConnectionDroppingStarlette:
    """The app serving `accounts` (or one account's state, as a sandbox of one account)."""
    if isinstance(accounts, ZomentumState):
        accounts = ZomentumAccounts.of_one(accounts)
    routes = api_routes()
    accounts.serve(ServedRoute(r.method, r.template, auth=not r.authenticated) for r in routes)

    def find_route(method: str, path: str) -> tuple[ApiRoute | None, dict[str, str], list[str]]:
        allowed = []
        for route in routes:
            params = route.match(path)
            if params is None:
                continue
            if route.method == method:
                return route, params, allowed
            allowed.append(route.method)
        return None, {}, allowed

    def account_of(route: ApiRoute | None, request: Request) -> ZomentumState:
        """The account whose token the request carries; account 1 when it names none."""
        named = None
        if route is not None and route.authenticated:
            named = accounts.for_authorization(request.headers.get("authorization"))
        elif route is not None:
            named = accounts.for_refresh_token(request.query_params.get("refresh_token"))
        return named or accounts.first

    async def _dispatch(request: Request) -> Response:
        raw = await request.body()
        method, path = request.method, request.url.path
        route, params, allowed = find_route(method, path)
        state = account_of(route, request)
        body: Any = None
        user = None
        token: str | None = None
        fault: Fault | None = None
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise bad_request("body", "is not valid JSON") from None
            if route is None:
                creates_with_slash = method == "POST" and find_route(method, f"{path}/")[0] is not None
                hint = " (creates are POST /v2/<resource>/ with a trailing slash)" if creates_with_slash else ""
                if allowed:
                    raise ApiProblem(405, f"{method} is not allowed on {path} (allowed: {', '.join(allowed)}){hint}")
                raise ApiProblem(404, f"no route {method} {path}{hint}")
            if route.authenticated:
                token = state.authenticate(request.headers.get("authorization"))
                user = API_USER_EMAIL
                state.admit(token)
            fault = state.faults.decide(method, route.template, auth_route=not route.authenticated)
            if fault is not None and fault.before_operation:
                _inject(state, fault, request, token, raw)
            saved = state.holding_records() if fault is not None and fault.kind == UNPERSISTED_WRITE else None
            response = route.handler(state, ApiCall(params, dict(request.query_params), body))
            if saved is not None:
                state.restore_records(saved)  # answered as if done; not kept
        except ApiProblem as problem:
            response = _problem(problem)
        delivery = deliver(response, fault)
        state.log.add(FaultLoggedRequest(
            at=format_timestamp(state.now()), method=method, path=path, query=_logged_query(request),
            status=delivery.status, body=body, user=user, route=route.template if route else None,
            fault=delivery.fault))
        return delivery.response

    def of_tenant(handler: Callable[[Request, ZomentumState], Awaitable[Response]]
                  ) -> Callable[[Request], Awaitable[Response]]:
        """The handler, given the state of the account `?tenant=` names (404 if none)."""
        async def endpoint(request: Request) -> Response:
            try:
                state = accounts.state(request.query_params.get("tenant", 1))
            except KeyError as exc:
                return _problem(ApiProblem(404, str(exc.args[0])))
            return await handler(request, state)
        return endpoint

    async def control(handler: Callable[[Any], Any], request: Request, status: int = 200) -> Response:
        raw = await request.body()
        try:
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                raise bad_request("body", "is not valid JSON") from None
            if not isinstance(body, dict):
                raise bad_request("body", "must be a JSON object")
            return _json(handler(body), status)
        except ApiProblem as problem:
            return _problem(problem)

    async def index(request: Request) -> Response:
        return _json({
            "api": "/v2",
            "openapi": "/_sandbox/openapi.yaml",
            "control": ["GET /_sandbox/tenants", "POST /_sandbox/reset {seed?, scale?}",
                        "GET|DELETE /_sandbox/requests", "GET|POST /_sandbox/knobs",
                        "GET|POST|DELETE /_sandbox/faults {seed?, rules}",
                        "GET /_sandbox/clock", "POST /_sandbox/clock/advance {seconds}",
                        "POST /_sandbox/documents", "POST /_sandbox/documents/{document_id}/revisions",
                        "GET /_sandbox/records/{resource}",
                        "PATCH|DELETE /_sandbox/records/{resource}/{id} (a user's edit or deletion)",
                        "?tenant= on any of these but tenants: an account's number or sandbox_02 (default 1)"],
        })

    async def tenant_list(request: Request) -> Response:
        return _json([{"number": tenant.number, "key": tenant.key, "seed": tenant.seed,
                       "seeded": accounts.is_seeded(tenant)} for tenant in accounts.tenants])

    async def reset(request: Request, state: ZomentumState) -> Response:
        def run(body: Any) -> dict[str, Any]:
            for key in body:
                if key not in ("seed", "scale"):
                    raise bad_request(key, "unknown field (reset takes seed and scale)")
            state.reset(seed=body.get("seed"), scale=body.get("scale"))
            return {"seed": state.seed, "scale": state.scale}
        return await control(run, request)

    async def requests_log(request: Request, state: ZomentumState) -> Response:
        if request.method == "DELETE":
            state.clear_requests()
            return Response(status_code=204)
        return _json(state.requests())

    async def knobs(request: Request, state: ZomentumState) -> Response:
        if request.method == "GET":
            return _json(state.knobs())
        return await control(lambda body: state.set_knobs(**body), request)

    async def faults(request: Request, state: ZomentumState) -> Response:
        if request.method == "DELETE":
            state.clear_faults()
            return Response(status_code=204)
        if request.method == "GET":
            return _json(state.fault_plan())
        return await control(lambda body: state.set_faults(**body), request)

    async def clock(request: Request, state: ZomentumState) -> Response:
        return _json({"now": format_timestamp(state.now())})

    async def clock_advance(request: Request, state: ZomentumState) -> Response:
        def run(body: Any) -> dict[str, Any]:
            seconds = body.get("seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise bad_request("seconds", "must be a number")
            return {"now": format_timestamp(state.advance_clock(seconds))}
        return await control(run, request)

    async def documents(request: Request, state: ZomentumState) -> Response:
        return await control(state.create_document_from, request, 201)

    async def revisions(request: Request, state: ZomentumState) -> Response:
        def run(body: Any) -> dict[str, Any]:
            return state.revise_document(request.path_params["document_id"], body.get("line_items"))
        return await control(run, request, 201)

    async def records(request: Request, state: ZomentumState) -> Response:
        return await control(lambda _: state.records(request.path_params["resource"]), request)

    async def record(request: Request, state: ZomentumState) -> Response:
        resource, record_id = request.path_params["resource"], request.path_params["record_id"]
        if request.method == "DELETE":
            return await control(lambda _: state.delete_record(resource, record_id), request)
        return await control(lambda body: state.edit_record(resource, record_id, body), request)

    def page(resource: str, kind: str) -> Callable[[Request, ZomentumState], Awaitable[Response]]:
        async def endpoint(request: Request, state: ZomentumState) -> Response:
            record_id = request.path_params["record_id"]
            return record_page("Zomentum", kind, record_id, state.find(resource, record_id))
        return endpoint

    async def openapi(request: Request) -> Response:
        text = resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
        return Response(text, media_type="application/yaml")

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal sandbox error"
        return JSONResponse({"status_code": status, "message": detail}, status_code=status)

    return ConnectionDroppingStarlette(
        routes=[
            Route("/_sandbox/", index, methods=["GET"]),
            Route("/_sandbox/tenants", tenant_list, methods=["GET"]),
            Route("/_sandbox/reset", of_tenant(reset), methods=["POST"]),
            Route("/_sandbox/requests", of_tenant(requests_log), methods=["GET", "DELETE"]),
            Route("/_sandbox/knobs", of_tenant(knobs), methods=["GET", "POST"]),
            Route("/_sandbox/faults", of_tenant(faults), methods=["GET", "POST", "DELETE"]),
            Route("/_sandbox/clock", of_tenant(clock), methods=["GET"]),
            Route("/_sandbox/clock/advance", of_tenant(clock_advance), methods=["POST"]),
            Route("/_sandbox/documents", of_tenant(documents), methods=["POST"]),
            Route("/_sandbox/documents/{document_id}/revisions", of_tenant(revisions), methods=["POST"]),
            Route("/_sandbox/records/{resource:path}/{record_id}", of_tenant(record), methods=["PATCH", "DELETE"]),
            Route("/_sandbox/records/{resource:path}", of_tenant(records), methods=["GET"]),
            Route("/_sandbox/openapi.yaml", openapi, methods=["GET"]),
            Route("/v2/{path:path}", _dispatch, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            *(Route(f"/{path}/{{record_id}}", of_tenant(page(resource, kind)), methods=["GET"])
              for path, (resource, kind) in RECORD_PAGES.items()),
        ],
        exception_handlers={HTTPException: http_error},
    )
