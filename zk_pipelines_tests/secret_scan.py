"""The secret scan: every place a run or a `zk` command writes text, searched for every form a secret travels in.

The search decodes instead of encoding: each text is read as it is, URL-decoded (`%XX`, and `+` as a space),
with JSON and Python escapes resolved (once, and again for JSON stored in JSON), and each base64-looking token
decoded; a secret found in any reading is a leak. So it finds a secret however it was encoded, without
sharing the redaction's own list of forms (`zk_pipelines.secrets.secret_forms`), which it checks.
"""

from __future__ import annotations

import base64
import binascii
import re
import sqlite3
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote, unquote_plus

import dagster as dg

_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})|\\(.)")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def _unescaped(text: str) -> str:
    """JSON's and Python's backslash escapes resolved (`\\"`, `\\\\`, `\\u00e9`, `\\xe9`)."""
    def one(match: re.Match[str]) -> str:
        code = match.group(1) or match.group(2)
        if code:
            return chr(int(code, 16))
        return _SIMPLE_ESCAPES.get(match.group(3), match.group(3))
    return _ESCAPE.sub(one, text)


def _base64_decoded(text: str) -> Iterator[str]:
    for token in _BASE64_TOKEN.findall(text):
        for alphabet in (token, token.replace("-", "+").replace("_", "/")):
            padded = alphabet.rstrip("=") + "=" * (-len(alphabet.rstrip("=")) % 4)
            try:
                yield base64.b64decode(padded, validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                continue


def readings(text: str) -> Iterator[str]:
    """The text, and the text as each encoding a secret travels in would decode it."""
    once = _unescaped(text)
    for reading in (text, unquote(text), unquote_plus(text), once, _unescaped(once), unquote_plus(once)):
        yield reading
        if "Basic" in reading or "=" in reading:
            yield from _base64_decoded(reading)


def leaks(texts: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """Where a secret shows, in any form: one line per (text, secret), the secret itself masked."""
    wanted = [secret for secret in secrets if secret]
    found = []
    for text in texts:
        for reading in readings(text):
            hits = [secret for secret in wanted if secret in reading]
            for secret in hits:
                found.append(f"{secret[:3]}***: {reading.replace(secret, '<SECRET>')[:300]}")
            if hits:
                break
    return found


def dagster_texts(instance: dg.DagsterInstance) -> Iterator[str]:
    """Every run's tags and config, its job and execution plan snapshots, and every event of its log."""
    for run in instance.get_runs():
        yield f"run {run.run_id}: tags {run.tags!r} config {run.run_config!r}"
        if run.job_snapshot_id:
            yield dg.serialize_value(instance.get_job_snapshot(run.job_snapshot_id))
        if run.execution_plan_snapshot_id:
            yield dg.serialize_value(instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id))
        for record in instance.all_logs(run.run_id):
            yield dg.serialize_value(record)


def file_texts(root: Path) -> Iterator[str]:
    """Every file below `root` as text (storage databases, compute logs, anything else written there)."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield f"{path}: {path.read_bytes().decode('utf-8', 'replace')}"


def _sqlite_values(path: Path) -> Iterator[str]:
    """Every value of every table of a SQLite file, blobs decompressed where they are zlib (Dagster stores run
    and job snapshots so)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        try:
                            value = zlib.decompress(value)
                        except zlib.error:
                            pass
                        yield value.decode("utf-8", "replace")
                    elif value is not None:
                        yield str(value)


def files_holding(root: Path, secrets: Iterable[str]) -> list[str]:
    """`leaks` in every file below `root` (SQLite databases with their compressed blobs opened, compute logs,
    DuckDB files...), each finding naming its file."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        texts = [path.read_bytes().decode("utf-8", "replace")]
        if path.read_bytes()[:15] == b"SQLite format 3":
            texts += list(_sqlite_values(path))
        found += [f"{path.relative_to(root)}: {leak[:80]}" for leak in leaks(texts, secrets)]
    return found
