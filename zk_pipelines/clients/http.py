"""The HTTP policy both API clients share; each API instantiates its own `HttpPolicy`.

Reads (idempotent requests) are retried with bounded exponential backoff on 429, 5xx, connection errors
and 2xx answers whose body is not JSON (garbled on the way), honouring `Retry-After`. Writes are never
retried blindly: a write is retried only when the server said it did not process it (429), and a write
whose answer was lost raises `WriteOutcomeUnknown`, so the caller searches for the record before creating
it again.

An answer is untrusted input (docs/security.md): its body is read up to `max_body_bytes`, the whole
attempt (connection to last byte) ends at `deadline_seconds`, and its JSON may nest `MAX_JSON_DEPTH` deep.
Redirects are never followed by requests itself: a GET follows one to its own origin only, a login or a
write none, and a refusal names the target.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

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
    # The read timeout bounds the wait for each byte, not the answer: a server sending a byte every few
    # seconds would hold a request for ever. One attempt, connection to last byte, ends here.
    deadline_seconds: float = 120.0
    # The largest answer body read (after decompression, so a small gzip cannot inflate past it). Kaseya pages
    # are 100 rows and Zomentum pages 1,000 records: a few MB at most; a document PDF stays well below.
    max_body_bytes: int = 50 * 1024 * 1024
    max_redirects: int = 5  # same-origin redirects a GET follows

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, min(self.read_timeout, self.deadline_seconds))

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


class RedirectRefused(ApiError):
    """The server answered a redirect the policy does not follow: a login's or a write's (they carry credentials
    or change data), one to another origin (our credentials go only where they were configured to), or too
    many. The message names the target."""


class AnswerRefused(ApiError):
    """An answer the client stopped reading because it cannot be trusted to end: too large, too slow, nested
    too deep. Not retried: a server that sent one will send it again."""


class AnswerTooLarge(AnswerRefused):
    """The body was larger than `HttpPolicy.max_body_bytes`."""


class AnswerTooSlow(AnswerRefused):
    """The answer had not fully arrived at `HttpPolicy.deadline_seconds`."""


class AnswerTooDeep(AnswerRefused):
    """The JSON nested deeper than `MAX_JSON_DEPTH`."""


class NotAnId(ApiError):
    """A record id that is not of the API's id form, refused before any request (it would become a path)."""


# The deepest JSON an answer may nest. The APIs' records nest 4-5 levels; a deeper answer is an attack or a
# fault, and Python's parser and every recursive walk after it would hit the interpreter's recursion limit.
MAX_JSON_DEPTH = 64


class JsonTooDeep(ValueError):
    """JSON nested deeper than the limit (a `ValueError`, as any unreadable JSON)."""


def parse_json(text: str, *, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
               max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads` with the nesting bounded: raises `JsonTooDeep`, or `ValueError` for text that is not JSON."""
    try:
        value = json.loads(text, object_pairs_hook=object_pairs_hook)
    except RecursionError:
        raise JsonTooDeep(f"the JSON nests deeper than {max_depth} levels") from None
    # The parser stops only at the interpreter's recursion limit (~1000); walk what it built, without
    # recursion, to hold the answer to the limit code after it can afford.
    level: list[Any] = [value]
    for _ in range(max_depth + 1):
        level = [child for node in level if isinstance(node, dict | list)
                 for child in (node.values() if isinstance(node, dict) else node)]
        if not level:
            return value
    raise JsonTooDeep(f"the JSON nests deeper than {max_depth} levels")


_UNPARSED = object()


def answer_json(response: requests.Response, parse: Callable[[str], Any] = parse_json) -> Any:
    """The answer's JSON, parsed once: `send` has already parsed a read's answer when it was asked to tell a
    garbled one (`json_answer`), and keeps what it parsed on the response."""
    parsed = getattr(response, "_zk_json", _UNPARSED)
    if parsed is _UNPARSED:
        parsed = parse(response.text)
        response._zk_json = parsed  # type: ignore[attr-defined]
    return parsed


def _garbled(response: requests.Response, parse: Callable[[str], Any]) -> bool:
    """A 2xx answer to a read whose body is not JSON: a fault between us and the API (a proxy's error page, a
    cut body), so the read is sent again. JSON nested too deep is refused, never retried: it would come again."""
    if not 200 <= response.status_code < 300 or not response.text.strip():
        return False
    try:
        answer_json(response, parse)
    except JsonTooDeep:
        return False
    except ValueError:
        return True
    return False


def unreadable_answer(exc: ValueError, response: requests.Response, api: str, operation: str, *, write: bool,
                      not_json: type[ApiError]) -> ApiError:
    """The error for an answer `parse_json` refused (`exc`). A write was answered, so it happened, but what it
    made cannot be told; a read nested too deep is refused; any other read's answer is the API's `not_json`."""
    unreadable = str(exc) if isinstance(exc, JsonTooDeep) else "the answer was not JSON"
    status = response.status_code
    if write:
        return WriteOutcomeUnknown(api, operation, f"{unreadable}; the write may have happened", status=status)
    if isinstance(exc, JsonTooDeep):
        return AnswerTooDeep(api, operation, unreadable, status=status)
    return not_json(api, operation, f"{unreadable} (HTTP {status})", status=status)


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
    json_answer: Callable[[str], Any] | None = None,
    **kwargs,
) -> requests.Response:
    """Send one request under the policy; return the final response (any status but a redirect) or raise.

    `checkpoint`, called before every attempt, may raise to stop the caller there (a terminated run: the
    caller's `checkpoint` raises the orchestrator's interrupt, so nothing more is sent).

    Statuses are the caller's to interpret except those the policy retries; a retried status that is
    still failing after the last attempt is returned to the caller, which turns it into a typed error.
    The body has been read (within the policy's bounds) when the response is returned. With `json_answer`
    (the API's JSON parser), a read answered 2xx with a body that is not JSON is retried as a 5xx is, and the
    parsed answer is kept for `answer_json`.
    """
    counter = counter or CallCounter()
    attempt = 0
    while attempt < policy.max_attempts:
        if checkpoint is not None:
            checkpoint()
        attempt += 1
        try:
            response = _exchange(session, policy, method, url, operation=operation, secrets=secrets,
                                 counter=counter, **kwargs)
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
        except AnswerRefused as exc:
            if not idempotent:  # the server had the request: what it did is unknown
                raise WriteOutcomeUnknown(policy.api_name, operation, f"{exc.message}; the write may have happened",
                                          status=exc.status) from None
            raise
        else:
            garbled = json_answer is not None and idempotent and _garbled(response, json_answer)
            if response.status_code not in policy.retry_statuses and not garbled:
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


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: what a credential is bound to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


def _exchange(session: requests.Session, policy: HttpPolicy, method: str, url: str, *, operation: str,
              secrets: Iterable[Secret | str | None], counter: CallCounter, **kwargs: Any) -> requests.Response:
    """One attempt: the request, its body read within the policy's bounds, and the redirects the policy
    follows. requests itself would re-send a POST (with its form, the password) to whatever host a 307 or 308
    names, and a GET's bearer token to another port of the same host."""
    target = url
    for hop in range(policy.max_redirects + 1):
        started = time.monotonic()
        counter.sent += 1
        response = session.request(method, target, timeout=policy.timeout, verify=policy.verify_tls,
                                   allow_redirects=False, stream=True, **kwargs)
        read_body(response, policy, operation, started)
        if not response.is_redirect:
            return response
        location = urljoin(target, response.headers.get("Location", ""))
        if method.upper() != "GET":
            why = f"a {method.upper()} is never redirected: it carries credentials or changes data"
        elif origin(location) != origin(url):
            why = "another origin than the configured base URL: credentials go nowhere else"
        elif hop == policy.max_redirects:
            why = f"more than {policy.max_redirects} redirects"
        else:
            target = location
            kwargs.pop("params", None)  # the target carries its own query
            continue
        response.close()
        raise RedirectRefused(policy.api_name, operation,
                              redact(f"answered with a redirect to {location}, not followed ({why})", secrets),
                              status=response.status_code)
    raise AssertionError("unreachable")  # pragma: no cover


def read_body(response: requests.Response, policy: HttpPolicy, operation: str, started: float) -> None:
    """Read a streamed answer's body into the response, stopping at the size cap and at the deadline (counted
    from `started`, the moment the request was sent). The socket's wait is shortened to what is left of the
    deadline before every read, so a trickle is cut when the deadline comes, not a read timeout later."""
    raw = response.raw
    if raw is None or not hasattr(raw, "read1"):
        return  # already in memory (an adapter that builds its responses)
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > policy.max_body_bytes:
        response.close()
        raise AnswerTooLarge(policy.api_name, operation, f"the answer announced {int(declared):,} bytes, more than "
                             f"the {policy.max_body_bytes:,} bytes read at most", status=response.status_code)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            left = started + policy.deadline_seconds - time.monotonic()
            if left <= 0:
                raise _too_slow(response, policy, operation, size)
            connection = getattr(raw, "connection", None)
            if connection is not None and getattr(connection, "sock", None) is not None:
                connection.sock.settimeout(min(policy.read_timeout, left))
            try:
                chunk = raw.read1(64 * 1024, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError:
                if time.monotonic() >= started + policy.deadline_seconds:
                    raise _too_slow(response, policy, operation, size) from None
                response.close()
                raise requests.exceptions.ReadTimeout(f"{operation}: the answer stopped arriving") from None
            if not chunk:
                break
            size += len(chunk)
            if size > policy.max_body_bytes:
                response.close()
                raise AnswerTooLarge(policy.api_name, operation, f"the answer was longer than the "
                                     f"{policy.max_body_bytes:,} bytes read at most", status=response.status_code)
            chunks.append(chunk)
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.SSLError) as exc:
        response.close()
        raise requests.exceptions.ChunkedEncodingError(f"{operation}: {type(exc).__name__}") from None
    except urllib3.exceptions.DecodeError:
        response.close()
        raise requests.exceptions.ContentDecodingError(f"{operation}: the answer could not be decompressed") from None
    # What requests' own `.content` does once the body is read (it has no public setter).
    response._content = b"".join(chunks)
    response._content_consumed = True  # type: ignore[attr-defined]
    raw.release_conn()


def _too_slow(response: requests.Response, policy: HttpPolicy, operation: str, size: int) -> AnswerTooSlow:
    response.close()
    return AnswerTooSlow(policy.api_name, operation, f"the answer was still arriving after "
                         f"{policy.deadline_seconds:g} s ({size:,} bytes so far); gave up on it",
                         status=response.status_code)
