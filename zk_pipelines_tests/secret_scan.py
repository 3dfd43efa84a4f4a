"""Searching what a run leaves behind for a secret in every form it can travel in."""

from __future__ import annotations

import base64
import json
import sqlite3
import zlib
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, quote_plus


def secret_forms(secret: str, username: str | None = None) -> set[str]:
    """The secret raw, URL-encoded (path and form style), JSON-escaped (once, and twice as a JSON text inside
    JSON: how Dagster stores config defaults), and base64 (alone, and as a Basic header's `user:secret`)."""
    escaped = json.dumps(secret)[1:-1]
    forms = {secret, quote(secret, safe=""), quote_plus(secret), escaped, json.dumps(escaped)[1:-1],
             base64.b64encode(secret.encode()).decode().rstrip("=")}
    if username is not None:
        forms.add(base64.b64encode(f"{username}:{secret}".encode()).decode().rstrip("="))
    return {form for form in forms if len(form) >= 6}


def _sqlite_values(path: Path) -> bytes:
    """Every value of every table of a SQLite file, blobs decompressed where they are zlib (Dagster stores run
    and job snapshots so)."""
    values = []
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
                        values.append(value)
                    elif value is not None:
                        values.append(str(value).encode())
    return b"\n".join(values)


def files_holding(root: Path, secrets: Iterable[str]) -> list[str]:
    """Every file under `root` (SQLite databases, compute logs, DuckDB files...) holding one of `secrets`, with
    which: read as bytes (a secret inside a database page is found too), and a SQLite file's values also with
    their compressed blobs opened."""
    wanted = [secret.encode() for secret in secrets]
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        content = path.read_bytes()
        if content.startswith(b"SQLite format 3"):
            content += _sqlite_values(path)
        found += [f"{path.relative_to(root)}: {secret[:3].decode()}***" for secret in wanted if secret in content]
    return found
