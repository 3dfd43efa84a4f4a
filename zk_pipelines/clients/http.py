"""The retry mechanism both API clients share; each API instantiates its own `HttpPolicy`.

Reads (idempotent requests) are retried with bounded exponential backoff on 429, 5xx and connection
errors, honouring `Retry-After`. Writes are never retried blindly: a write is retried only when the server
said it did not process it (429), and a write whose answer was lost raises `WriteOutcomeUnknown`, so the
caller searches for the record before creating it again.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import requests

from zk_pipelines.secrets import Secret, redact


@dataclass(frozen=True)
class HttpPolicy:
    api_name: str
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    # A Retry-After longer than this is not slept through: the caller gets RateLimited instead.
    max_retry_after: float = 120.0
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 500, 502, 503, 504}))
    verify_tls: bool = True

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the given 1-based attempt that just failed."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


class ApiError(Exception):
    """A failed API call: which API, which operation, the HTTP status, the API's own code and message."""

    def __init__(
        self,
        api: str,
        operation: str,
        message: str,
        *,
        status: int | None = None,
        code: str | int | None = None,
    ) -> None:
        self.api = api
        self.operation = operation
        self.status = status
        self.code = code
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"{self.api} {self.operation}"]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code not in (None, "", 0):
            parts.append(f"code {self.code}")
        return f"{': '.join([' '.join(parts), self.message])}"


class AuthenticationError(ApiError):
    """Credentials, tenant or token rejected."""


class PermissionDenied(ApiError):
    """The API user lacks a permission for this operation (HTTP 403)."""


class NotFound(ApiError):
    """Unknown id or route (HTTP 404)."""


class ValidationFailed(ApiError):
    """The API refused the request's content (Kaseya 200 + success:false, Zomentum 400)."""


class RateLimited(ApiError):
    """HTTP 429 that retries could not wait out, or the client-side hourly budget is spent."""

    def __init__(self, *args, retry_after: float | None = None, **kwargs) -> None:
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)


class ApiUnavailable(ApiError):
    """5xx or connection failures on a read, after every retry."""


class WriteOutcomeUnknown(ApiError):
    """A write was sent but its answer was lost (timeout, reset, 5xx): it may or may not have happened."""


def api_session(base_url: str) -> requests.Session:
    """The one session of a client. requests, trusting the environment, looks for a ~/.netrc entry and reads
    the proxy variables again for every request (a file lookup and a scan of the environment each: a fifth of
    an initial sync's CPU): here the proxy and CA settings of the environment are read once, for the API's
    host, and credentials only ever travel in the headers the client sets."""
    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False
    return session


def retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


@dataclass
class CallCounter:
    """How many requests were sent and retried, for metadata and tests that count calls exactly."""

    sent: int = 0
    retries: int = 0
    waited_seconds: float = 0.0


def send(
    session: requests.Session,
    policy: HttpPolicy,
    method: str,
    url: str,
    *,
    operation: str,
    idempotent: bool,
    secrets: Iterable[Secret | str | None] = (),
    sleep: Callable[[float], None] = time.sleep,
    counter: CallCounter | None = None,
    checkpoint: Callable[[], None] | None = None,
    **kwargs,
) -> requests.Response:
    """Send one request under the policy; return the final response (any status) or raise.

    `checkpoint`, called before every attempt, may raise to stop the caller there (a terminated run: the
    caller's `checkpoint` raises the orchestrator's interrupt, so nothing more is sent).

    Statuses are the caller's to interpret except those the policy retries; a retried status that is
    still failing after the last attempt is returned to the caller, which turns it into a typed error.
    """
    counter = counter or CallCounter()
    attempt = 0
    while attempt < policy.max_attempts:
        if checkpoint is not None:
            checkpoint()
        attempt += 1
        try:
            counter.sent += 1
            response = session.request(method, url, timeout=policy.timeout, verify=policy.verify_tls, **kwargs)
        except requests.exceptions.ConnectTimeout as exc:
            # Nothing reached the server: safe to retry even a write.
            failure: Exception = exc
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            # ChunkedEncodingError: the body ended before its declared length (the answer was cut).
            if not idempotent:
                raise WriteOutcomeUnknown(
                    policy.api_name,
                    operation,
                    redact(f"the answer was lost ({type(exc).__name__}); the write may have happened", secrets),
                ) from None
            failure = exc
        else:
            if response.status_code not in policy.retry_statuses:
                return response
            if response.status_code != 429 and not idempotent:
                return response  # the caller raises WriteOutcomeUnknown / a typed error: never retried
            wait = retry_after_seconds(response)
            if wait is not None and wait > policy.max_retry_after:
                return response
            if attempt >= policy.max_attempts:
                return response
            delay = wait if wait is not None else policy.backoff(attempt)
            counter.retries += 1
            counter.waited_seconds += delay
            sleep(delay)
            continue
        if attempt >= policy.max_attempts:
            raise ApiUnavailable(
                policy.api_name,
                operation,
                redact(f"no answer after {attempt} attempts ({type(failure).__name__})", secrets),
            ) from None
        delay = policy.backoff(attempt)
        counter.retries += 1
        counter.waited_seconds += delay
        sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
