"""A value that must never be printed: passwords, access tokens, refresh tokens.

`Secret` hides its value from repr/str/format, so it cannot leak through a log line, an exception
message or Dagster metadata by accident. Code that must send it calls `reveal()` at the last moment.
`redact` scrubs known secret values out of text that came from elsewhere (an HTTP error body, say), in every
form a secret travels in: a server that quotes our request back quotes it as it was sent (a form field is
URL-encoded, a JSON body escapes quotes and non-ASCII, a Basic header is base64), not as we hold it.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
# Shorter values are not searched for: masking every "1234" of a text would garble it and hide nothing.
MIN_SECRET_LENGTH = 4
# A base64 fragment shorter than this could match ordinary text by chance.
MIN_BASE64_FRAGMENT = 6
# `Basic <base64 of user:password>`: the whole credential goes, whoever's it is.
_BASIC_CREDENTIALS = re.compile(r"(?i)\b(basic\s+)[A-Za-z0-9+/_-]{6,}={0,2}")


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self):  # never pickled into run storage
        raise TypeError("a Secret cannot be pickled")


def base64_fragments(value: str) -> set[str]:
    """The part of the base64 text that is the same wherever `value` sits inside a longer encoded text (a
    password inside `user:password`): base64 works on groups of 3 bytes, so there is one fragment per
    offset of the value in its group, without the characters its neighbours change."""
    data = value.encode("utf-8", "surrogateescape")  # an environment value that is not UTF-8 is still a secret
    fragments = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode("ascii")
        start, end = math.ceil(offset * 8 / 6), (offset + len(data)) * 8 // 6
        fragment = encoded[start:end]
        if len(fragment) >= MIN_BASE64_FRAGMENT:
            fragments |= {fragment, fragment.replace("+", "-").replace("/", "_")}
    return fragments


def secret_forms(value: str) -> set[str]:
    """Every form `value` travels in: as it is, URL- and form-encoded, JSON-escaped (once, and again when
    JSON is stored inside JSON), as Python's repr writes it, and base64 (inside a Basic header)."""
    if len(value) < MIN_SECRET_LENGTH:
        return set()
    json_once = json.dumps(value)[1:-1]
    data = value.encode("utf-8", "surrogateescape")
    forms = {
        value,
        quote(data, safe=""),
        quote(data),
        quote_plus(data),
        json_once,
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(json_once)[1:-1],
        repr(value)[1:-1],
        *base64_fragments(value),
    }
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _revealed(secrets: Iterable[Secret | str | None]) -> Iterable[str]:
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            yield value


def redact(text: str, secrets: Iterable[Secret | str | None]) -> str:
    """Replace every occurrence of each secret value, in each of its forms, with the mask; and any Basic
    credentials (they carry a password whatever user they name)."""
    text = _BASIC_CREDENTIALS.sub(rf"\g<1>{MASK}", text)
    forms = set()
    for value in _revealed(secrets):
        forms |= secret_forms(value)
    # Longest first: a form that contains another (`a%2Fb` and `a`) goes whole.
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text
