"""The Kaseya BMS REST API v2 client: login and token refresh for the caller, the HTTP policy, envelope
errors as typed exceptions, pagination as generators; the hourly budget per endpoint is `kaseya_budget.py`, what
the client spent (per endpoint, per step) `kaseya_usage.py`.

Plain Python (no Dagster). Secrets never reach a log line, a repr or an exception.
"""

from __future__ import annotations

import logging
import string
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import requests

from zk_pipelines.clients.http import (
    ApiError,
    ApiUnavailable,
    AuthenticationError,
    CallCounter,
    HttpPolicy,
    NotAnId,
    NotFound,
    PermissionDenied,
    RateLimited,
    ValidationFailed,
    WriteOutcomeUnknown,
    answer_json,
    api_session,
    retry_after_seconds,
    send,
    unreadable_answer,
)
from zk_pipelines.clients.kaseya_budget import BudgetExhausted, BudgetStore, RouteBudget
from zk_pipelines.clients.kaseya_usage import KaseyaStats, KaseyaUsage, step_tally
from zk_pipelines.clients.kaseya_wire import (
    LOOKUP_TABLES,
    MAX_IN_FLIGHT,
    MAX_PAGE_SIZE,
    KaseyaRecord,
    kaseya_datetime,
    parse_json,
    read_envelope,
    row_identity,
)
from zk_pipelines.clients.probe import EndpointCheck
from zk_pipelines.config import KaseyaCredentials
from zk_pipelines.domain.entities import KASEYA_SOURCES
from zk_pipelines.domain.kaseya_endpoints import ENDPOINTS, Endpoint, NotAKaseyaId
from zk_pipelines.domain.kaseya_staging import parse_kaseya_moment
from zk_pipelines.secrets import redact

__all__ = ["BudgetExhausted", "KaseyaClient", "KaseyaUsage", "ListingChanged", "RouteBudget"]

log = logging.getLogger(__name__)

KASEYA_POLICY = HttpPolicy(api_name="Kaseya")

# What `zk check` reads, (endpoint, paged): every list of the entity registry, and the quotes the push reads.
PROBED_READS: tuple[tuple[str, bool], ...] = (*((source.endpoint, source.paged) for source in KASEYA_SOURCES),
                                               ("quotes", True))

# Refresh this long before the access token's announced expiry (tokens live ~20 minutes).
REFRESH_MARGIN_SECONDS = 60.0
DEFAULT_TOKEN_LIFETIME_SECONDS = 1200.0


class ListingChanged(ApiUnavailable):
    """A paged list changed while it was read (its `totalRecords` moved between pages), so offset paging may
    have skipped or repeated a record: every row was yielded, but the list must be read again to be whole."""


class ListingInconsistent(ApiError):
    """A paged list whose pages contradict themselves: more rows than `totalRecords` said, fewer at its end,
    or a page that repeats an earlier one (a server ignoring `PageNumber`). Loading it would load a wrong set."""


@dataclass
class _Token:
    access: str
    refresh: str
    expires_at: float  # local epoch seconds

    def __repr__(self) -> str:
        return "_Token(***)"


class KaseyaClient:
    def __init__(
        self,
        credentials: KaseyaCredentials,
        *,
        policy: HttpPolicy = KASEYA_POLICY,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        budget: RouteBudget | None = None,
        budget_store: BudgetStore | None = None,
        checkpoint: Callable[[], None] | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._credentials = credentials
        # Requests in flight at once, whichever threads (and steps) send them: the run's steps share the client.
        self._in_flight = threading.BoundedSemaphore(max_in_flight)
        self._checkpoint = checkpoint  # called before every request; raises to stop (see `http.send`)
        self.base_url = credentials.base_url.rstrip("/")
        self.policy = policy
        self._session = session or api_session(credentials.base_url)
        self._session.headers.update({"Accept": "application/json", "User-Agent": "zk_pipelines"})
        self._sleep = sleep
        self._clock = clock
        # The tenant's hourly budget per endpoint, counted in `budget_store` (shared with the tenant's other runs
        # and pushes) or, without one, in this client alone.
        self.budget = budget or RouteBudget(credentials.hourly_call_budget, clock, store=budget_store)
        self.stats = KaseyaStats()
        self._token: _Token | None = None
        # Reentrant: renewing under the lock logs in, and `login` takes the lock for callers outside it.
        self._token_lock = threading.RLock()

    def __repr__(self) -> str:
        return f"KaseyaClient({self.base_url!r}, user={self._credentials.username!r})"

    def close(self) -> None:
        self.budget.settle()
        self._session.close()

    @contextmanager
    def step_usage(self) -> Iterator[KaseyaStats]:
        """Counts apart the requests sent within the block by this thread and by the worker threads it starts
        with a copy of its context: one step's calls, while other steps send theirs through the same client.
        The client's own `stats` still count everything."""
        with step_tally() as tally:
            yield tally

    # --- authentication -------------------------------------------------------------------------

    def _secrets(self) -> list[Any]:
        secrets: list[Any] = list(self._credentials.secrets())
        if self._token:
            secrets += [self._token.access, self._token.refresh]
        return secrets

    def _store_token(self, result: Mapping[str, Any]) -> None:
        expires = parse_kaseya_moment(result.get("accessTokenExpireOn") or None)
        # The server's clock may differ from ours, so its instant is only an upper bound on the lifetime;
        # Kaseya's tokens are short (~20 min, unpublished), and a 401 renews the token anyway.
        lifetime = DEFAULT_TOKEN_LIFETIME_SECONDS
        if expires is not None:
            announced = (expires - datetime.now(expires.tzinfo)).total_seconds()
            lifetime = max(2 * REFRESH_MARGIN_SECONDS, min(announced, lifetime))
        self._token = _Token(
            access=result.get("accessToken") or "",
            refresh=result.get("refreshToken") or "",
            expires_at=self._clock() + lifetime,
        )

    def _send(self, endpoint: Endpoint, method: str, url: str, *, idempotent: bool, secrets: list[Any],
              **kwargs: Any) -> requests.Response:
        """One request under the policy, counted per endpoint (retries included) once it is over."""
        sent = CallCounter()
        try:
            # A place among the requests in flight, held only while sending: never while waiting for the token's
            # lock, and given up while the policy sleeps before a retry (a Retry-After of up to two minutes).
            with self._in_flight:
                return send(self._session, self.policy, method, url, operation=endpoint.label,
                            idempotent=idempotent, secrets=secrets, sleep=self._sleep_out_of_flight,
                            counter=sent, checkpoint=self._checkpoint, json_answer=parse_json, **kwargs)
        finally:
            self.stats.record_request(endpoint.label, sent)

    def _sleep_out_of_flight(self, seconds: float) -> None:
        self._in_flight.release()
        try:
            self._sleep(seconds)
        finally:
            self._in_flight.acquire()

    def _auth_post(self, endpoint: Endpoint, form: dict[str, str]) -> Mapping[str, Any]:
        self.budget.take(endpoint)
        # The form's other fields (user name, tenant, `GrantType=password`) are not secrets: masking them would
        # garble every message that says "password". Its secrets are the client's own (`_secrets`).
        response = self._send(endpoint, "POST", self.base_url + endpoint.template, idempotent=True,
                              secrets=self._secrets(), data=form)
        if response.status_code != 200:
            raise self._http_error(endpoint, response, idempotent=True)
        envelope = read_envelope(self._parse(endpoint, response))
        if not envelope.success or not isinstance(envelope.result, Mapping):
            message = redact(envelope.error_message or "authentication failed", self._secrets())
            raise AuthenticationError("Kaseya", endpoint.label, message, status=200, code=envelope.error_code)
        return envelope.result

    def login(self) -> None:
        """`POST /v2/security/authenticate` with the API user's credentials (form-urlencoded)."""
        creds = self._credentials
        form = {
            "UserName": creds.username,
            "Password": creds.password.reveal(),
            "Tenant": creds.tenant,
            "GrantType": "password",
        }
        if creds.mfa_code:
            form["MFACode"] = creds.mfa_code.reveal()
        with self._token_lock:
            try:
                result = self._auth_post(ENDPOINTS["authenticate"], form)
            except AuthenticationError as exc:
                raise AuthenticationError(
                    "Kaseya", "login",
                    f"Kaseya rejected the login of {creds.username!r} for tenant {creds.tenant!r}: {exc.message}. "
                    f"Check {creds.origin}, and that the user's role has 'Has API Access'.",
                    status=exc.status, code=exc.code,
                ) from None
            self.stats.record_login()
            self._store_token(result)

    def _refresh(self) -> bool:
        """Exchange the refresh token; False when Kaseya refuses it (the caller logs in again)."""
        if not self._token or not self._token.refresh:
            return False
        form = {"AccessToken": self._token.access, "RefreshToken": self._token.refresh}
        try:
            result = self._auth_post(ENDPOINTS["refresh_token"], form)
        except (AuthenticationError, NotFound):
            return False
        self.stats.record_refresh()
        self._store_token(result)
        return True

    def _access_token(self, *, rejected: str | None = None) -> str:
        """The token to send. `rejected` is a token Kaseya just answered 401 to: it is renewed (refresh, else
        login) unless another thread already replaced it, so threads sharing the client that all hold the
        expired token renew it once between them."""
        with self._token_lock:
            stale = self._token is None or self._clock() >= self._token.expires_at - REFRESH_MARGIN_SECONDS
            if stale or (rejected is not None and self._token is not None and self._token.access == rejected):
                if self._token is None or not self._refresh():
                    self.login()
            assert self._token is not None
            return self._token.access

    # --- one request ----------------------------------------------------------------------------

    def _parse(self, endpoint: Endpoint, response: requests.Response) -> Any:
        try:
            return answer_json(response, parse_json) if response.text.strip() else KaseyaRecord()
        except ValueError as exc:
            write = endpoint.method != "GET" and endpoint.name not in ("authenticate", "refresh_token")
            raise unreadable_answer(exc, response, "Kaseya", endpoint.label, write=write,
                                    not_json=ApiUnavailable) from None

    def _http_error(self, endpoint: Endpoint, response: requests.Response, *, idempotent: bool) -> ApiError:
        status = response.status_code
        try:
            envelope = read_envelope(parse_json(response.text))
            message, code = envelope.error_message, envelope.error_code
        except ValueError:
            message, code = None, None
        message = redact(message or response.reason or "no message", self._secrets())
        args = ("Kaseya", endpoint.label)
        if status == 401:
            return AuthenticationError(*args, f"access token rejected: {message}", status=status, code=code)
        if status == 403:
            return PermissionDenied(
                *args,
                f"the API user has no permission for {endpoint.label} ({message}); grant it to the user's "
                "role in Kaseya (Admin > Roles) or turn off the entity that needs it",
                status=status, code=code,
            )
        if status == 404:
            return NotFound(*args, message, status=status, code=code)
        if status == 429:
            wait = retry_after_seconds(response)
            if wait is not None and wait > self.policy.max_retry_after:
                # Kaseya's quota is per endpoint per sliding hour: calling again before the wait is over only
                # collects more 429s, so the work stops here and the next hourly run picks it up.
                return BudgetExhausted(*args, f"rate budget exhausted for {endpoint.label} (Kaseya answered 429: "
                                              f"{message}), resumes next hour (in {wait / 60:.0f} min)",
                                       status=status, code=code, retry_after=wait)
            return RateLimited(*args, f"Kaseya rate limit: {message}", status=status, code=code, retry_after=wait)
        if status >= 500:
            if idempotent:
                return ApiUnavailable(*args, message, status=status, code=code)
            return WriteOutcomeUnknown(*args, f"{message}; the write may have happened", status=status, code=code)
        return ValidationFailed(*args, message, status=status, code=code)

    def call(
        self,
        name: str,
        *,
        path_params: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> tuple[Any, int | None]:
        """Call one endpoint of the table; return (result, totalRecords) or raise a typed error."""
        endpoint = ENDPOINTS[name]
        idempotent = endpoint.method == "GET"
        try:
            url = self.base_url + endpoint.path(**(path_params or {}))
        except NotAKaseyaId as exc:
            raise NotAnId("Kaseya", endpoint.label, str(exc)) from None
        rejected: str | None = None
        for attempt in (1, 2):
            token = self._access_token(rejected=rejected)
            self.budget.take(endpoint)
            response = self._send(endpoint, endpoint.method, url, idempotent=idempotent, secrets=self._secrets(),
                                  params=params, json=body, headers={"Authorization": f"Bearer {token}"})
            if response.status_code == 401 and attempt == 1:
                rejected = token
                log.info("Kaseya answered 401 on %s; renewing the token once", endpoint.label)
                continue
            break
        if response.status_code != 200:
            error = self._http_error(endpoint, response, idempotent=idempotent)
            if isinstance(error, BudgetExhausted):
                self.budget.spent_by_kaseya(endpoint, error)
            raise error
        envelope = read_envelope(self._parse(endpoint, response))
        if not envelope.success:
            raise ValidationFailed(
                "Kaseya", endpoint.label, redact(envelope.error_message or "success:false", self._secrets()),
                status=200, code=envelope.error_code,
            )
        return envelope.result, envelope.total_records

    def paginate(
        self, name: str, params: Mapping[str, Any] | None = None, *, page_size: int = MAX_PAGE_SIZE,
        path_params: Mapping[str, Any] | None = None,
    ) -> Iterator[KaseyaRecord]:
        """Every row of a paged list, page by page (1-based `PageNumber`); stops on `totalRecords` or on a
        short page, whichever comes first (some lists carry no total).

        A server's pages are checked against each other before their rows are yielded: more rows than
        `totalRecords`, or a page that is an earlier page again (a server ignoring `PageNumber`), raise
        `ListingInconsistent`; so do fewer rows than `totalRecords` at the end. Raises `ListingChanged` after
        the last row when `totalRecords` moved between pages or a row came twice (offset paging over a list
        that changed)."""
        page_size = min(page_size, MAX_PAGE_SIZE)
        label = ENDPOINTS[name].label
        page, received, totals = 1, 0, []
        seen: dict[str, int] = {}  # row identity -> the page it came on
        repeated: list[str] = []
        while True:
            query = {**(params or {}), "PageNumber": page, "PageSize": page_size}
            rows, total = self.call(name, params=query, path_params=path_params)
            rows = rows if isinstance(rows, list) else []
            identities = [row_identity(row) for row in rows]
            earlier = [identity for identity in identities if identity in seen]
            if rows and len(earlier) == len(rows):
                raise ListingInconsistent("Kaseya", label, f"page {page} repeats rows of page {seen[earlier[0]]} "
                                          f"({earlier[0]}): the server ignores PageNumber; nothing of the list is kept")
            received += len(rows)
            if total is not None and total not in totals:
                totals.append(total)
            if total is not None and received > total:
                raise ListingInconsistent("Kaseya", label, f"{received} rows arrived by page {page}, more than "
                                          f"totalRecords {total}: the list cannot be trusted")
            for row, identity in zip(rows, identities, strict=True):
                if identity in seen:
                    repeated.append(identity)
                    continue
                seen[identity] = page
                yield row
            if len(rows) < page_size or (total is not None and received >= total):
                break
            page += 1
        if len(totals) > 1 or repeated:
            # Offset paging over a list that changed between two pages: a record that left (or joined) the
            # filtered list moved every later record, so one was skipped (or repeated) at a page boundary.
            moved = f"totalRecords {' -> '.join(map(str, totals))}" if len(totals) > 1 else f"{repeated[0]} came twice"
            raise ListingChanged("Kaseya", label, f"the list changed while it was paged ({moved}); a record may have "
                                 "been skipped at a page boundary: read it again")
        if totals and received < totals[0]:
            raise ListingInconsistent("Kaseya", label, f"the list ended after {received} rows, fewer than "
                                      f"totalRecords {totals[0]}: some rows were not served")

    # --- reads ----------------------------------------------------------------------------------

    @staticmethod
    def _window(modified_from: datetime | None, modified_to: datetime | None) -> dict[str, str]:
        window = {}
        if modified_from is not None:
            window["Filter.ModifiedOnFrom"] = kaseya_datetime(modified_from)
        if modified_to is not None:
            window["Filter.ModifiedOnTo"] = kaseya_datetime(modified_to)
        return window

    def read_list(self, name: str, *, paged: bool = True, modified_from: datetime | None = None,
                  modified_to: datetime | None = None) -> Iterator[KaseyaRecord]:
        """Every record of a list endpoint (`name` in ENDPOINTS): paged, or answered whole by one call; only
        those modified between the bounds given (a paged list's `Filter.ModifiedOn*`)."""
        if paged:
            return self.paginate(name, self._window(modified_from, modified_to))
        return iter(self.call(name)[0] or [])

    def read_one(self, name: str, kaseya_id: int) -> KaseyaRecord:
        """One record by its id from a by-id endpoint (`name` in ENDPOINTS, whose one path parameter is the id)."""
        (parameter,) = [field for _, field, _, _ in string.Formatter().parse(ENDPOINTS[name].template) if field]
        return self.call(name, path_params={parameter: kaseya_id})[0]

    def user_info(self) -> KaseyaRecord:
        return self.call("user_info")[0]

    def iter_accounts(self, modified_from: datetime | None = None, modified_to: datetime | None = None
                      ) -> Iterator[KaseyaRecord]:
        return self.paginate("accounts", self._window(modified_from, modified_to))

    def account(self, account_id: int) -> KaseyaRecord:
        return self.call("account", path_params={"account_id": account_id})[0]

    def account_location(self, account_id: int, location_id: int) -> KaseyaRecord:
        return self.call("account_location", path_params={"account_id": account_id, "location_id": location_id})[0]

    def account_locations(self, account_id: int) -> list[KaseyaRecord]:
        return self.call("account_locations", path_params={"account_id": account_id})[0] or []

    def account_types(self) -> list[KaseyaRecord]:
        return self.call("account_types")[0] or []

    def iter_contacts(self, modified_from: datetime | None = None, modified_to: datetime | None = None
                      ) -> Iterator[KaseyaRecord]:
        return self.paginate("contacts", self._window(modified_from, modified_to))

    def contact(self, contact_id: int) -> KaseyaRecord:
        return self.call("contact", path_params={"contact_id": contact_id})[0]

    def search_contacts(self, **filters: Any) -> list[KaseyaRecord]:
        """`contacts/search` with `Filter.<Name>` filters (e.g. EmailAddress=..., AccountIds=[...])."""
        return list(self.paginate("search_contacts", {f"Filter.{k}": v for k, v in filters.items()}))

    def iter_opportunities(self, modified_from: datetime | None = None, modified_to: datetime | None = None
                           ) -> Iterator[KaseyaRecord]:
        return self.paginate("opportunities", self._window(modified_from, modified_to))

    def opportunity(self, opportunity_id: int) -> KaseyaRecord:
        return self.call("opportunity", path_params={"opportunity_id": opportunity_id})[0]

    def opportunity_statuses(self) -> list[KaseyaRecord]:
        return self.call("opportunity_statuses")[0] or []

    def iter_products(self, **filters: Any) -> Iterator[KaseyaRecord]:
        """One row per product x warehouse; callers de-duplicate on `productIndexId`."""
        return self.paginate("products", {f"Filter.{k}": v for k, v in filters.items()})

    def product_pricing_levels(self, product_index_id: int) -> list[KaseyaRecord]:
        return self.call("product_pricing_levels", path_params={"product_index_id": product_index_id})[0] or []

    def product_suppliers(self, product_index_id: int) -> list[KaseyaRecord]:
        return self.call("product_suppliers", path_params={"product_index_id": product_index_id})[0] or []

    def product_default_cost(self, product_index_id: int) -> Any:
        return self.call("product_default_cost", path_params={"product_index_id": product_index_id})[0]

    def product_categories(self) -> list[KaseyaRecord]:
        return list(self.paginate("product_categories"))

    def warehouses(self) -> list[KaseyaRecord]:
        return self.call("warehouses")[0] or []

    def employees(self) -> list[KaseyaRecord]:
        return list(self.paginate("employees"))

    def iter_quotes(self, created_from: datetime | None = None, created_to: datetime | None = None,
                    **filters: Any) -> Iterator[KaseyaRecord]:
        params = {f"Filter.{k}": v for k, v in filters.items()}
        if created_from is not None:
            params["Filter.CreatedOnFrom"] = kaseya_datetime(created_from)
        if created_to is not None:
            params["Filter.CreatedOnTo"] = kaseya_datetime(created_to)
        return self.paginate("quotes", params)

    def quote(self, quote_id: int) -> KaseyaRecord:
        return self.call("quote", path_params={"quote_id": quote_id})[0]

    def quote_line_items(self, quote_id: int) -> list[KaseyaRecord]:
        """Not in Kaseya's published contract (see kaseya_wire)."""
        return self.call("quote_line_items", path_params={"quote_id": quote_id})[0] or []

    def quote_line_item(self, quote_id: int, line_item_id: int) -> KaseyaRecord:
        return self.call("quote_line_item", path_params={"quote_id": quote_id, "line_item_id": line_item_id})[0]

    def lookup(self, table: str) -> list[KaseyaRecord]:
        """`system/lookup/{tableName}`; `table` is a key of LOOKUP_TABLES or a raw table name."""
        return self.call("lookup", path_params={"table_name": LOOKUP_TABLES.get(table, table)})[0] or []

    # Writes have no method of their own: the push sends each planned request through `call` by its endpoint's
    # name (push/execute.py), and `call` never sends a write twice (callers search before re-creating).

    # --- zk check -------------------------------------------------------------------------------

    def probe_endpoints(self, reads: Sequence[tuple[str, bool]] = PROBED_READS) -> list[EndpointCheck]:
        """Log in, then make one read per endpoint of `reads` ((endpoint, paged)): by default every list the
        entity registry reads, and the push's; each answer is ok or the reason."""
        checks: list[EndpointCheck] = []
        try:
            self.login()
        except ApiError as exc:
            return [EndpointCheck("kaseya", ENDPOINTS["authenticate"].label, False, exc.message)]
        checks.append(EndpointCheck("kaseya", ENDPOINTS["authenticate"].label, True, "ok"))

        def first_row(name: str, paged: bool) -> Any:
            rows, _ = self.call(name, params={"PageNumber": 1, "PageSize": 1} if paged else None)
            return rows[0] if isinstance(rows, list) and rows else None

        product = None
        probes: list[tuple[str, Callable[[], Any]]] = [("user_info", self.user_info)]
        for endpoint, paged in reads:
            if endpoint == "lookup":  # one table per call
                probes += [(f"lookup:{table}", partial(self.lookup, table)) for table in LOOKUP_TABLES]
            else:
                probes.append((endpoint, partial(first_row, endpoint, paged)))
        for name, probe in probes:
            label = (f"GET /v2/system/lookup/{LOOKUP_TABLES[name.split(':')[1]]}" if name.startswith("lookup:")
                     else ENDPOINTS[name].label)
            try:
                result = probe()
            except ApiError as exc:
                checks.append(EndpointCheck("kaseya", label, False, exc.message))
                continue
            if name == "products":
                product = result
            checks.append(EndpointCheck("kaseya", label, True, "ok"))
        if product is not None:
            index_id = product.get("productIndexId")
            for name in ("product_pricing_levels", "product_suppliers", "product_default_cost"):
                try:
                    self.call(name, path_params={"product_index_id": index_id})
                    checks.append(EndpointCheck("kaseya", ENDPOINTS[name].label, True, "ok"))
                except ApiError as exc:
                    checks.append(EndpointCheck("kaseya", ENDPOINTS[name].label, False, exc.message))
        return checks
