"""Zomentum REST API v2 client: bearer tokens from a refresh token, paging, typed errors, line items.

The HTTP policy is the shared one (`clients/http.py`): timeouts, bounded retries of reads on 429/5xx
and garbled answers, honouring `Retry-After`, writes never retried blindly. On top of it: a 401 refreshes
the access token once and repeats the request (a 401 means the server did nothing, so even a write may be
repeated);
a refresh token Zomentum rejects is an `AuthenticationError` with one sentence a person can act on.

One client may be shared by threads (a load sends its writes concurrently). A refresh invalidates the
previous access token, so the requests in flight with it all answer 401: the first to get the lock
refreshes, the others find the token already replaced and repeat with the new one.

What the API looks like (paths, paging, filters, record shapes, the line-item CSV) lives in
`zomentum_models.py`, the one module to correct against a real account.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any, cast

import requests

from zk_pipelines.clients import zomentum_models as contract
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
    parse_json,
    retry_after_seconds,
    send,
    unreadable_answer,
)
from zk_pipelines.clients.probe import EndpointCheck
from zk_pipelines.clients.zomentum_models import (
    ClientCompany,
    ClientUser,
    CustomField,
    Document,
    DocumentLineItem,
    Item,
    LineItemsFormatError,
    NotAZomentumId,
    Opportunity,
    Pipeline,
    RecordShapeError,
    User,
)
from zk_pipelines.config import ZomentumCredentials
from zk_pipelines.secrets import Secret, redact

API = "zomentum"
REFRESH_REJECTED = (
    "Zomentum rejected the refresh token; create a new one for the API user (Settings > Users, permission "
    "level API User) and set {origin}"
)
ACCESS_REJECTED_AFTER_REFRESH = (
    "Zomentum rejected a freshly issued access token; check that the API user is active and still has the "
    "API User permission level"
)
FORBIDDEN_HINT = "the API user lacks a permission for this; check its permission level in Settings > Users"
# Sends of one request with a token another thread replaced meanwhile, before giving up (each replacement
# is a refresh by another request; more than this in the time of one request means something is wrong).
TOKEN_ATTEMPTS = 4

log = logging.getLogger(__name__)


class _RefreshTokenFilter(logging.Filter):
    """urllib3 logs request URLs at DEBUG; the refresh call carries the refresh token in its query."""

    _pattern = re.compile(r"(refresh_token=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "refresh_token=" in message:
            record.msg, record.args = self._pattern.sub(r"\1***", message), None
        return True


def _install_log_redaction() -> None:
    urllib3_log = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RefreshTokenFilter) for f in urllib3_log.filters):
        urllib3_log.addFilter(_RefreshTokenFilter())


class ListingInconsistent(ApiError):
    """A paged list that does not end: more pages than its `filtered_count_map` allows, or than any list has
    (`MAX_LIST_PAGES`), or a page that repeats records already received (a server ignoring `page`)."""


@dataclass
class ZomentumCallCounter(CallCounter):
    """Requests sent, by kind; every attempt counts, so a retried read counts twice in `reads`."""

    reads: int = 0
    writes: int = 0
    refreshes: int = 0

    def since(self, earlier: ZomentumCallCounter) -> ZomentumCallCounter:
        """What was sent between `earlier` and now: one step's share of a client the run's steps share."""
        return ZomentumCallCounter(sent=self.sent - earlier.sent, retries=self.retries - earlier.retries,
                                   waited_seconds=self.waited_seconds - earlier.waited_seconds,
                                   reads=self.reads - earlier.reads, writes=self.writes - earlier.writes,
                                   refreshes=self.refreshes - earlier.refreshes)


class ZomentumClient:
    """One tenant's Zomentum API user.

        client = ZomentumClient(config.zomentum)
        for company in client.clients(updated_since=window_start): ...
        lines = client.document_line_items(document["id"], document["current_revision_id"])

    `counter` counts every request sent (reads, writes, refreshes, retries) for metadata and tests. Safe to
    share between threads.
    """

    def __init__(
        self,
        credentials: ZomentumCredentials,
        policy: HttpPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        checkpoint: Callable[[], None] | None = None,
    ) -> None:
        self.base_url = credentials.base_url.rstrip("/")  # the web app's too: the links' default base (settings.links)
        self.root = contract.api_root(credentials.base_url)
        self._checkpoint = checkpoint  # called before every request; raises to stop (see `http.send`)
        self.policy = policy or HttpPolicy(api_name=API)
        self.session = session or api_session(credentials.base_url)
        self.counter = ZomentumCallCounter()
        self._refresh_token = credentials.refresh_token
        self._origin = credentials.origin
        self._access_token: Secret | None = credentials.access_token
        self._replaced_token: Secret | None = None  # still in the requests sent just before the refresh
        self._sleep = sleep
        self._counter_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        _install_log_redaction()

    def __repr__(self) -> str:
        return f"ZomentumClient({self.root})"

    def close(self) -> None:
        """Close the session's pooled connections (a load keeps up to 10 open)."""
        self.session.close()

    # ----- authentication ----------------------------------------------------------------------------

    def refresh_access_token(self) -> None:
        """Exchange the refresh token for a new access token (which invalidates the previous one)."""
        with self._refresh_lock:
            self._refresh()

    def _renew(self, rejected: Secret | None) -> None:
        """Replace the access token a request was refused with (or the missing one), unless another thread
        already did: a second refresh would invalidate the token that thread is now using."""
        with self._refresh_lock:
            if self._access_token is rejected:
                self._refresh()

    def _refresh(self) -> None:
        operation = f"GET {contract.API_PREFIX}/{contract.REFRESH_PATH}"
        sent = CallCounter()
        try:
            response = send(
                self.session, self.policy, "GET", f"{self.root}/{contract.REFRESH_PATH}",
                operation=operation, idempotent=True, secrets=self._secrets(), sleep=self._sleep, counter=sent,
                checkpoint=self._checkpoint, params={contract.REFRESH_PARAM: self._refresh_token.reveal()},
                headers={"Accept": contract.JSON},
            )
        finally:
            self._count(sent, "refreshes")
        if response.status_code in contract.REFRESH_TOKEN_REJECTED_STATUSES:
            raise AuthenticationError(API, operation, REFRESH_REJECTED.format(origin=self._origin),
                                      status=response.status_code)
        if response.status_code != 200:
            raise self._error(response, operation, idempotent=True)
        try:
            token = parse_json(response.text)["access_token"]
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise ApiError(API, operation, "the refresh answer had no access_token", status=response.status_code)
        self._replaced_token, self._access_token = self._access_token, Secret(token)
        log.debug("zomentum: access token refreshed")

    def _secrets(self) -> tuple[Secret | None, ...]:
        return (self._refresh_token, self._access_token, self._replaced_token)

    def usage(self) -> ZomentumCallCounter:
        """A reading of `counter`; `usage().since(<reading at a step's start>)` is that step's share."""
        with self._counter_lock:
            return replace(self.counter)  # a copy: the client keeps counting in `counter`

    def _count(self, sent: CallCounter, kind: str) -> None:
        with self._counter_lock:
            self.counter.sent += sent.sent
            self.counter.retries += sent.retries
            self.counter.waited_seconds += sent.waited_seconds
            setattr(self.counter, kind, getattr(self.counter, kind) + sent.sent)

    # ----- requests ----------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, idempotent: bool, params: Mapping[str, str] | None = None,
        json: Any = None, accept: str = contract.JSON,
    ) -> requests.Response:
        """Send one API request; 2xx comes back, anything else is raised as a typed error."""
        operation = f"{method} {contract.API_PREFIX}/{path}"
        request = {"params": params, "json": json, "accept": accept}
        renewed = False
        for _ in range(TOKEN_ATTEMPTS):
            token = self._access_token
            if token is None:
                self._renew(None)
                token = cast(Secret, self._access_token)  # _renew sets it, or raises
            response = self._send(method, path, operation, token, idempotent=idempotent, **request)
            if response.status_code != 401:
                break
            if renewed and self._access_token is token:
                break  # the token issued after the first 401 was refused too
            self._renew(token)
            renewed = True
        if response.status_code == 401:
            raise AuthenticationError(API, operation, ACCESS_REJECTED_AFTER_REFRESH, status=401)
        if 200 <= response.status_code < 300:
            return response
        raise self._error(response, operation, idempotent=idempotent)

    def _send(
        self, method: str, path: str, operation: str, token: Secret, *, idempotent: bool, accept: str,
        **kwargs: Any,
    ) -> requests.Response:
        sent = CallCounter()
        try:
            return send(
                self.session, self.policy, method, f"{self.root}/{path}", operation=operation,
                idempotent=idempotent, secrets=(*self._secrets(), token), sleep=self._sleep, counter=sent,
                checkpoint=self._checkpoint, headers={"Authorization": f"Bearer {token.reveal()}", "Accept": accept},
                json_answer=parse_json if accept == contract.JSON else None,
                **kwargs,
            )
        finally:
            self._count(sent, "reads" if idempotent else "writes")

    def _error(self, response: requests.Response, operation: str, *, idempotent: bool) -> ApiError:
        try:
            body = parse_json(response.text)
        except ValueError:
            body = None
        message = redact(contract.error_message(body, response.reason), self._secrets())
        status = response.status_code
        if status == 400:
            return ValidationFailed(API, operation, message, status=status)
        if status == 403:
            return PermissionDenied(API, operation, f"{message} ({FORBIDDEN_HINT})", status=status)
        if status == 404:
            return NotFound(API, operation, message, status=status)
        if status == 429:
            return RateLimited(API, operation, message, status=status, retry_after=retry_after_seconds(response))
        if status >= 500 and not idempotent:
            return WriteOutcomeUnknown(
                API, operation, f"{message}; the write may or may not have happened: search before repeating it",
                status=status)
        if status >= 500:
            return ApiUnavailable(API, operation, message, status=status)
        return ApiError(API, operation, message, status=status)

    @staticmethod
    def _json_of(response: requests.Response, operation: str, *, write: bool = False) -> Any:
        try:
            return answer_json(response)
        except ValueError as exc:
            raise unreadable_answer(exc, response, API, operation, write=write, not_json=ApiError) from None

    @staticmethod
    @contextmanager
    def _readable(path: str, method: str = "GET") -> Iterator[None]:
        """A record of a shape the client cannot read is the API's error, as an unreadable answer is."""
        try:
            yield
        except RecordShapeError as exc:
            raise ApiError(API, f"{method} {contract.API_PREFIX}/{path}", str(exc)) from None

    @staticmethod
    def _id(operation: str, value: object, what: str = "id") -> str:
        """`value` as a path segment; refused before any request when it is not a Zomentum id."""
        try:
            return contract.id_segment(value, what)
        except NotAZomentumId as exc:
            raise NotAnId(API, operation, str(exc)) from None

    def _get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        response = self._request("GET", path, idempotent=True, params=params)
        return self._json_of(response, f"GET {contract.API_PREFIX}/{path}")

    def _page(self, resource: str, query: Mapping[str, str]) -> tuple[list[dict[str, Any]], int | None]:
        body = self._get_json(resource, query)
        try:
            return contract.page_records(body)
        except ValueError as exc:
            raise ApiError(API, f"GET {contract.API_PREFIX}/{resource}", str(exc)) from None

    # ----- generic record access ---------------------------------------------------------------------

    def iter_records(
        self,
        resource: str,
        *,
        filters: Mapping[str, object] | None = None,
        updated_since: datetime | None = None,
        updated_until: datetime | None = None,
        params: Mapping[str, str] | None = None,
        limit: int = contract.PAGE_LIMIT,
    ) -> Iterator[dict[str, Any]]:
        """Every record of a list, page by page (`filters` are `eq` terms; `updated_*` are inclusive).

        Stops on a short page or once `filtered_count_map.all` records have arrived, so a list whose size
        is a multiple of `limit` costs no extra empty page. Raises `ListingInconsistent` (before yielding its
        records) on a page that repeats records already received, and on a page past what the first page's
        count allows (`contract.pages_needed`).
        """
        if not 1 <= limit <= contract.PAGE_LIMIT:
            raise ValueError(f"limit must be between 1 and {contract.PAGE_LIMIT}")
        filter_text = contract.filters_param(filters, updated_since=updated_since, updated_until=updated_until)
        operation = f"GET {contract.API_PREFIX}/{resource}"
        received, ceiling = 0, contract.MAX_LIST_PAGES
        seen: set[str] = set()
        for page in itertools.count(1):
            if page > ceiling:
                raise ListingInconsistent(API, operation, f"page {page} would be past the {ceiling} pages the list "
                                          f"can take ({received} records so far): the server serves full pages "
                                          "without end; nothing of the list is kept")
            records, total = self._page(resource, {**contract.list_params(page, limit, filter_text), **(params or {})})
            if page == 1:
                ceiling = contract.pages_needed(total, limit)
            ids = [json.dumps(record, sort_keys=True, default=str) if record.get("id") is None else str(record["id"])
                   for record in records]
            again = sorted(seen.intersection(ids)) or sorted(i for i, n in Counter(ids).items() if n > 1)
            if again:
                raise ListingInconsistent(API, operation, f"page {page} repeats record {again[0]} (of "
                                          f"{len(again)} repeated): the server ignores `page` or the list moved; "
                                          "nothing of the list is kept")
            seen.update(ids)
            yield from records
            received += len(records)
            if len(records) < limit or (total is not None and received >= total):
                return

    def get(self, resource: str, record_id: str) -> dict[str, Any]:
        segment = self._id(f"GET {contract.API_PREFIX}/{resource}/{{id}}", record_id)
        return self._get_json(contract.record_path(resource, segment))

    def create(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a new record. Never retried blindly: on `WriteOutcomeUnknown`, `find_by` before re-creating."""
        if "id" in body:
            raise ValueError("a create must not carry an id")
        path = contract.create_path(resource)
        response = self._request("POST", path, idempotent=False, json=dict(body))
        return self._json_of(response, f"POST {contract.API_PREFIX}/{path}", write=True)

    def update(self, resource: str, record_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """PUT only the changed fields (Zomentum merges them into the record)."""
        path = contract.record_path(resource, self._id(f"PUT {contract.API_PREFIX}/{resource}/{{id}}", record_id))
        response = self._request("PUT", path, idempotent=False, json=dict(changes))
        return self._json_of(response, f"PUT {contract.API_PREFIX}/{path}", write=True)

    def find_by(self, resource: str, field: str, value: object, **params: str) -> list[dict[str, Any]]:
        """The records whose `field` equals `value` (exact match), e.g. before repeating a lost create."""
        return list(self.iter_records(resource, filters={field: value}, params=params or None))

    # ----- the resources the pipeline uses -----------------------------------------------------------

    def clients(self, *, updated_since: datetime | None = None) -> Iterator[ClientCompany]:
        return cast(Iterator[ClientCompany], self.iter_records(contract.CLIENTS, updated_since=updated_since))

    def client_users(
        self, *, updated_since: datetime | None = None, client_company_id: str | None = None,
    ) -> Iterator[ClientUser]:
        filters = {"client_company_id": client_company_id} if client_company_id else None
        return cast(Iterator[ClientUser],
                    self.iter_records(contract.CLIENT_USERS, filters=filters, updated_since=updated_since))

    def opportunities(
        self, *, pipeline_id: str | None = None, updated_since: datetime | None = None,
    ) -> Iterator[Opportunity]:
        """One pipeline's opportunities; without `pipeline_id` Zomentum lists only the default pipeline."""
        params = {contract.OPPORTUNITY_PIPELINE_PARAM: pipeline_id} if pipeline_id else None
        return cast(Iterator[Opportunity],
                    self.iter_records(contract.OPPORTUNITIES, updated_since=updated_since, params=params))

    def all_opportunities(self, *, updated_since: datetime | None = None) -> Iterator[Opportunity]:
        """Every pipeline's opportunities, one pipeline after another."""
        for pipeline in self.pipelines():
            yield from self.opportunities(pipeline_id=pipeline.id, updated_since=updated_since)

    def pipelines(self) -> list[Pipeline]:
        records = list(self.iter_records(contract.PIPELINES))
        with self._readable(contract.PIPELINES):
            return [Pipeline.from_record(record) for record in records]

    def items(self, *, updated_since: datetime | None = None) -> Iterator[Item]:
        return cast(Iterator[Item], self.iter_records(contract.ITEMS, updated_since=updated_since))

    def documents(self, *, updated_since: datetime | None = None, status: str | None = None) -> Iterator[Document]:
        filters = {"status": status} if status else None
        return cast(Iterator[Document],
                    self.iter_records(contract.DOCUMENTS, filters=filters, updated_since=updated_since))

    def users(self) -> list[User]:
        return cast(list[User], list(self.iter_records(contract.USERS)))

    def custom_fields(self, entity_type: str) -> list[CustomField]:
        if entity_type not in contract.CUSTOM_FIELD_ENTITY_TYPES:
            raise ValueError(f"entity_type must be one of {', '.join(contract.CUSTOM_FIELD_ENTITY_TYPES)}")
        records = list(self.iter_records(contract.CUSTOM_FIELDS, params={"entity_type": entity_type}))
        with self._readable(contract.CUSTOM_FIELDS):
            return [CustomField.from_record(record) for record in records]

    def create_custom_field(self, entity_type: str, display_name: str, field_type: str = "text") -> CustomField:
        record = self.create(contract.CUSTOM_FIELDS, {"entity_type": entity_type, "display_name": display_name,
                                                      "field_type": field_type})
        with self._readable(contract.create_path(contract.CUSTOM_FIELDS), method="POST"):
            return CustomField.from_record(record)

    def document_line_items(self, document_id: str, revision_id: str) -> tuple[DocumentLineItem, ...]:
        """The revision's lines from the CSV endpoint: top-level lines, bundle children attached."""
        operation = f"GET {contract.API_PREFIX}/{contract.line_items_path('{id}', '{revision_id}')}"
        path = contract.line_items_path(self._id(operation, document_id, "document id"),
                                        self._id(operation, revision_id, "revision id"))
        response = self._request("GET", path, idempotent=True, accept=contract.CSV)
        try:
            return contract.parse_line_items_csv(response.content.decode("utf-8-sig"))
        except (LineItemsFormatError, UnicodeDecodeError) as exc:
            raise ApiError(API, f"GET {contract.API_PREFIX}/{path}", f"unreadable line items: {exc}") from None

    def download_document(self, document_id: str) -> bytes:
        """The document as Zomentum renders it (PDF bytes)."""
        operation = f"GET {contract.API_PREFIX}/{contract.download_path('{id}')}"
        path = contract.download_path(self._id(operation, document_id, "document id"))
        content = self._request("GET", path, idempotent=True, accept=contract.PDF).content
        if not content.startswith(b"%PDF-"):
            raise ApiError(API, f"GET {contract.API_PREFIX}/{path}", "the download is not a PDF")
        if b"%%EOF" not in content[-1024:]:
            raise ApiError(API, f"GET {contract.API_PREFIX}/{path}", "the PDF was cut short (no %%EOF at its end)")
        return content

    # ----- zk check ----------------------------------------------------------------------------------

    def probe_endpoints(self) -> list[EndpointCheck]:
        """Refresh the access token, then one small read per endpoint the pipeline uses."""
        refresh = f"GET {contract.API_PREFIX}/{contract.REFRESH_PATH}"
        try:
            self.refresh_access_token()
        except ApiError as exc:
            return [EndpointCheck(API, refresh, False, str(exc))]
        checks = [EndpointCheck(API, refresh, True, "ok")]

        def probe(endpoint: str, read: Callable[[], Any]) -> Any:
            try:
                result = read()
            except ApiError as exc:
                checks.append(EndpointCheck(API, f"GET {contract.API_PREFIX}/{endpoint}", False, str(exc)))
                return None
            checks.append(EndpointCheck(API, f"GET {contract.API_PREFIX}/{endpoint}", True, "ok"))
            return result

        def first_page(resource: str, **params: str) -> list[dict[str, Any]]:
            return self._page(resource, {**contract.list_params(1, 1, None), **params})[0]

        for resource in (contract.CLIENTS, contract.CLIENT_USERS, contract.OPPORTUNITIES, contract.PIPELINES,
                         contract.ITEMS, contract.USERS):
            probe(resource, partial(first_page, resource))
        probe(f"{contract.CUSTOM_FIELDS}?entity_type=client_company",
              lambda: first_page(contract.CUSTOM_FIELDS, entity_type="client_company"))
        documents = probe(contract.DOCUMENTS, lambda: first_page(contract.DOCUMENTS))
        line_items = contract.line_items_path("{id}", "{revision_id}")
        if documents:
            document = documents[0]
            probe(line_items, lambda: self.document_line_items(document["id"], document["current_revision_id"]))
        elif documents is not None:
            checks.append(EndpointCheck(API, f"GET {contract.API_PREFIX}/{line_items}", True,
                                        "skipped: the account has no document to read line items from"))
        return checks
