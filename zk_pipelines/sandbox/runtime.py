"""What both sandboxes share: a movable clock, a request log, a sliding-window rate limiter, and a
uvicorn server run in a background thread on a chosen or free port."""

from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn


class SandboxClock:
    """Real UTC time plus an offset that tests move forward ("the next hour") without waiting.

    Timestamps, token expiry and rate-limit windows all read this clock.
    """

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()

    def reset(self) -> None:
        with self._lock:
            self._offset = timedelta(0)


@dataclass
class LoggedRequest:
    at: str
    method: str
    path: str
    query: str
    status: int
    body: Any = None
    user: str | None = None
    route: str | None = None


@dataclass
class RequestLog:
    entries: list[LoggedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.entries.append(entry)

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()

    def as_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {k: v for k, v in vars(e).items()}
                for e in self.entries
            ]


class SlidingWindowLimiter:
    """At most `limit` calls per key within any `window_seconds`, on the sandbox clock."""

    def __init__(self, clock: SandboxClock, limit: int, window_seconds: float = 3600.0) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window_seconds
        self._calls: dict[Any, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()

    def hit(self, key: Any) -> float | None:
        """Record a call; return None if allowed, else the seconds until a call would be allowed."""
        now = self.clock.now().timestamp()
        with self._lock:
            calls = self._calls[key]
            while calls and calls[0] <= now - self.window:
                calls.popleft()
            if len(calls) >= self.limit:
                return max(1.0, calls[0] + self.window - now)
            calls.append(now)
            return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class RunningServer:
    """A uvicorn server in a daemon thread. `base_url` is the server root (no `/v2`)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # the caller owns the signals
        self._thread = threading.Thread(target=self._server.run, name=f"sandbox:{self.port}", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> RunningServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox server on {self.base_url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
