"""A real PostgreSQL server for the tests, over a real connection (no mock, no SQLite stand-in).

In order: the server at `ZK_TEST_POSTGRES_URL` when it is set; else the machine's own at
`postgresql://postgres@127.0.0.1:5432/test` when it answers; else a throwaway server started from the
system's PostgreSQL binaries (`initdb`, `pg_ctl`; Debian's `postgresql` package is installed first when the
tests run as root with apt-get) in a temporary folder on a free port, stopped when the tests end. With none to
be had, the tests that need it fail with a one-line reason: they never skip silently.

Each test gets a database of its own (`fresh_database`), dropped afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"
START_WAIT_SECONDS = 30.0


class PostgresUnavailable(Exception):
    """No PostgreSQL server could be found or started; the message says why in one line."""


@dataclass
class PostgresServer:
    url: str  # a database to connect to for administration (CREATE DATABASE ...)
    source: str  # how it was found: "ZK_TEST_POSTGRES_URL", "local", "throwaway"
    _stop: list = field(default_factory=list)

    def stop(self) -> None:
        while self._stop:
            self._stop.pop()()


def _answers(url: str) -> str | None:
    """None when a connection to `url` works; else what went wrong, in a line."""
    try:
        connection = psycopg2.connect(url, connect_timeout=3)
    except psycopg2.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    connection.close()
    return None


def _binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _install_with_apt() -> None:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
             "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    subprocess.run(["apt-get", "update", "-qq"], check=True, **quiet)
    subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, **quiet)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_throwaway(binaries: Path) -> PostgresServer:
    """initdb + pg_ctl start in a temporary folder, trust authentication on 127.0.0.1 only. PostgreSQL refuses
    to run as root: as root the server runs as the `postgres` user (made by Debian's package)."""
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="zk-test-postgres-"))
    data, port = folder / "data", _free_port()
    prefix: list[str] = []
    if as_root:
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root without `runuser`: cannot start PostgreSQL as another user")
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and no `postgres` user exists to run a throwaway "
                                      "PostgreSQL server; set ZK_TEST_POSTGRES_URL") from None
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    run = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    done = subprocess.run([*prefix, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                           "--no-sync"], **run)
    if done.returncode:
        raise PostgresUnavailable(f"initdb failed: {(done.stderr or '').strip().splitlines()[-1:]}")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    done = subprocess.run([*prefix, str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                           str(folder / "server.log"), "-w", "-t", str(int(START_WAIT_SECONDS)), "start"], **run)
    if done.returncode:
        raise PostgresUnavailable(f"pg_ctl start failed (log: {folder / 'server.log'})")
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def stop() -> None:
        subprocess.run([*prefix, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)

    server = PostgresServer(url, "throwaway", [stop])
    deadline = time.monotonic() + START_WAIT_SECONDS
    while (problem := _answers(url)) is not None:
        if time.monotonic() > deadline:
            server.stop()
            raise PostgresUnavailable(f"the throwaway PostgreSQL server did not answer: {problem}")
        time.sleep(0.2)
    return server


def find_or_start() -> PostgresServer:
    """A server the tests may create databases on (see the module's docstring for the order)."""
    given = os.environ.get("ZK_TEST_POSTGRES_URL")
    if given:
        problem = _answers(given)
        if problem is not None:
            raise PostgresUnavailable(f"ZK_TEST_POSTGRES_URL does not answer: {problem}")
        return PostgresServer(given, "ZK_TEST_POSTGRES_URL")
    if _answers(LOCAL_URL) is None:
        return PostgresServer(LOCAL_URL, "local")
    binaries = _binaries()
    if binaries is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        try:
            _install_with_apt()
        except subprocess.CalledProcessError as exc:
            raise PostgresUnavailable(f"apt-get install postgresql failed ({exc.returncode})") from None
        binaries = _binaries()
    if binaries is None:
        raise PostgresUnavailable("no PostgreSQL: set ZK_TEST_POSTGRES_URL, run one at 127.0.0.1:5432, or install "
                                  "the server binaries (Debian: apt-get install postgresql)")
    return _start_throwaway(binaries)


def database_url(server_url: str, database: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@contextlib.contextmanager
def fresh_database(server: PostgresServer, prefix: str = "zk_test") -> Iterator[str]:
    """The URL of a new, empty database on `server`, dropped (its connections ended) after the block."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server.url)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        yield database_url(server.url, name)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
