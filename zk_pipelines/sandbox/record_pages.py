"""The minimal web page each sandbox serves for a record the pipeline links to (the audit's "Go to ..." links,
per the default link templates of the settings): the record's fields as the sandbox holds them, so that every
link in the run metadata opens something, as it would in the real product's web app."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import HTMLResponse


def record_page(system: str, kind: str, record_id: object, record: Mapping[str, Any] | None) -> HTMLResponse:
    title = f"{system} {kind} {record_id}"
    if record is None:
        return HTMLResponse(f"<!doctype html><title>{html.escape(title)}: not found</title>"
                            f"<h1>{html.escape(title)}</h1><p>No such record.</p>", status_code=404)
    rows = "".join(f"<tr><th>{html.escape(str(name))}</th><td>{html.escape(_shown(value))}</td></tr>"
                   for name, value in record.items())
    return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
                        f"<h1>{html.escape(title)}</h1><table>{rows}</table>")


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
