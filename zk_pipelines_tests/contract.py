"""Kaseya's published contract (`kaseya-bms-openapi.json`) as a test oracle for payloads on the wire.

`validate_response` and `validate_request_body` check a payload against the schema the contract declares for
an operation and raise one AssertionError listing every problem with its JSON path:
- property names match case-insensitively (the wire is camelCase, the contract PascalCase), and a property
  the contract does not define is a problem (so is one given twice in different cases);
- types are checked strictly: null only where `nullable`, integer vs number (a bool is neither), int32/int64
  ranges, date-time/date/uuid/date-span strings, arrays and objects, `enum`, `minLength`, `minimum`/`maximum`;
- `required` properties must be present (and, in request bodies, `readOnly` ones absent); with
  `complete=True` every property the schema defines must be present, as Kaseya emits every property.

Two readings of the contract, both documented where the contract is generated (Swashbuckle):
- a property whose schema is a bare `$ref` accepts null: OpenAPI 3.0 cannot mark a `$ref` nullable, and the
  envelope's `error` is null on success;
- date-times may be naive (`2025-01-31T10:15:00`): .NET emits naive DateTimes; naive means UTC (assumed).
- an operation declared as returning a bare DTO (`GET .../summary/{id}`) may answer enveloped, as observed
  on the wire: the envelope is then checked, with the declared DTO as its `result`.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

# Kaseya's published OpenAPI contract, copied into the repository (see zk_pipelines_tests/data/README.md).
CONTRACT_PATH = Path(__file__).resolve().parent / "data" / "kaseya-bms-openapi.json"

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE_SPAN = re.compile(r"^-?(\d+\.)?\d{1,2}:\d{2}(:\d{2}(\.\d{1,7})?)?$")
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_JSON_TYPES = ("application/json", "text/plain", "text/json")


@cache
def contract() -> dict[str, Any]:
    return json.loads(CONTRACT_PATH.read_text(encoding="utf-8"))


def _shape(path_template: str) -> str:
    return "/".join("{}" if s.startswith("{") else s.lower() for s in path_template.strip("/").split("/"))


@cache
def _paths_by_shape() -> dict[str, list[str]]:
    # The contract spells one path two ways (`/v2/crm/contacts/{Id}` for DELETE, `{id}` for PUT).
    shapes: dict[str, list[str]] = {}
    for path in contract()["paths"]:
        shapes.setdefault(_shape(path), []).append(path)
    return shapes


def find_operation(method: str, path_template: str) -> dict[str, Any] | None:
    """The contract's operation for a method and a path template (case and parameter names do not matter)."""
    for path in _paths_by_shape().get(_shape(path_template), []):
        operation = contract()["paths"][path].get(method.lower())
        if operation is not None:
            return operation
    return None


def has_operation(method: str, path_template: str) -> bool:
    return find_operation(method, path_template) is not None


def _operation(method: str, path_template: str) -> dict[str, Any]:
    operation = find_operation(method, path_template)
    if operation is None:
        raise AssertionError(f"{method.upper()} {path_template} is not in Kaseya's published contract")
    return operation


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = contract()["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return schema


def _pick(content: dict[str, Any], preferred: tuple[str, ...]) -> dict[str, Any]:
    for media_type in preferred:
        if media_type in content:
            return content[media_type]["schema"]
    return next(iter(content.values()))["schema"]


def _is_envelope(schema: dict[str, Any]) -> bool:
    return {"success", "result"} <= {name.lower() for name in _resolve(schema).get("properties", {})}


def _looks_enveloped(payload: Any) -> bool:
    return isinstance(payload, dict) and {"success", "result"} <= {str(k).lower() for k in payload}


def _envelope_of(result_schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": {
        "Success": {"type": "boolean"}, "Error": {"$ref": "#/components/schemas/ErrorInfo"}, "Result": result_schema,
    }}


def _problems(schema: dict[str, Any], value: Any, path: str, complete: bool, request: bool) -> list[str]:
    if "$ref" in schema:
        if value is None:
            return []
        return _problems(_resolve(schema), value, path, complete, request)
    if value is None:
        return [] if schema.get("nullable") else [f"{path}: null where the contract does not allow null"]
    problems: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']}")
    kind = schema.get("type") or ("object" if "properties" in schema else None)
    if kind == "object":
        return problems + _object_problems(schema, value, path, complete, request)
    if kind == "array":
        if not isinstance(value, list):
            return problems + [f"{path}: expected an array, got {type(value).__name__}"]
        for i, item in enumerate(value):
            problems += _problems(schema.get("items", {}), item, f"{path}[{i}]", complete, request)
        return problems
    if kind == "boolean" and not isinstance(value, bool):
        problems.append(f"{path}: expected a boolean, got {value!r}")
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer, got {value!r}")
        else:
            low, high = _INT_RANGES.get(schema.get("format", ""), (None, None))
            if low is not None and not low <= value <= high:
                problems.append(f"{path}: {value} is outside {schema['format']}")
            problems += _bounds(schema, value, path)
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{path}: expected a number, got {value!r}")
        else:
            problems += _bounds(schema, value, path)
    elif kind == "string":
        problems += _string_problems(schema, value, path)
    return problems


def _bounds(schema: dict[str, Any], value: float, path: str) -> list[str]:
    problems = []
    if "minimum" in schema and value < schema["minimum"]:
        problems.append(f"{path}: {value} is below the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        problems.append(f"{path}: {value} is above the maximum {schema['maximum']}")
    return problems


def _string_problems(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    if not isinstance(value, str):
        return [f"{path}: expected a string, got {value!r}"]
    problems = []
    pattern = {"date-time": _DATE_TIME, "date": _DATE, "uuid": _UUID, "date-span": _DATE_SPAN}.get(
        schema.get("format", ""))
    if pattern is not None and not pattern.match(value):
        problems.append(f"{path}: {value!r} is not a {schema['format']} string")
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append(f"{path}: shorter than the minimum length {schema['minLength']}")
    return problems


def _object_problems(schema: dict[str, Any], value: Any, path: str, complete: bool, request: bool) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object, got {type(value).__name__}"]
    properties: dict[str, Any] = schema.get("properties", {})
    by_folded = {name.lower(): name for name in properties}
    extra = schema.get("additionalProperties")
    problems: list[str] = []
    present: set[str] = set()
    for key, item in value.items():
        name = by_folded.get(str(key).lower())
        where = f"{path}.{key}"
        if name is None:
            if isinstance(extra, dict):
                problems += _problems(extra, item, where, complete, request)
            elif not properties and extra is True:
                continue
            else:
                problems.append(f"{where}: property not defined by the contract"
                                f"{' (' + _schema_name(schema) + ')' if _schema_name(schema) else ''}")
            continue
        if name in present:
            problems.append(f"{where}: property {name} given twice (names differing only in case)")
        present.add(name)
        if request and properties[name].get("readOnly"):
            problems.append(f"{where}: read-only property sent in a request")
        problems += _problems(properties[name], item, where, complete, request)
    for name in schema.get("required", []):
        if name not in present:
            problems.append(f"{path}.{name}: required property missing")
    if complete:
        for name in properties:
            if name not in present and name not in schema.get("required", []):
                problems.append(f"{path}.{name}: property missing (Kaseya emits every property)")
    return problems


def _schema_name(schema: dict[str, Any]) -> str | None:
    schemas = contract()["components"]["schemas"]
    return next((name for name, candidate in schemas.items() if candidate is schema), None)


def _raise(label: str, problems: list[str]) -> None:
    if problems:
        listing = "\n  ".join(problems)
        raise AssertionError(f"{label}: {len(problems)} contract problem(s):\n  {listing}")


def validate_response(method: str, path_template: str, payload: Any, *, complete: bool = False) -> None:
    """Check a response body against the operation's declared 200 response; raise listing every problem."""
    operation = _operation(method, path_template)
    schema = _pick(operation["responses"]["200"]["content"], _JSON_TYPES)
    if not _is_envelope(schema) and _looks_enveloped(payload):
        schema = _envelope_of(schema)
    _raise(f"response of {method.upper()} {path_template}", _problems(schema, payload, "$", complete, False))


def validate_request_body(method: str, path_template: str, body: Any) -> None:
    """Check a request body (parsed JSON, or form fields as a dict) against the operation's declared body."""
    operation = _operation(method, path_template)
    if "requestBody" not in operation:
        raise AssertionError(f"{method.upper()} {path_template} takes no request body in the contract")
    schema = _pick(operation["requestBody"]["content"], ("application/json", "multipart/form-data"))
    _raise(f"request body of {method.upper()} {path_template}", _problems(schema, body, "$", False, True))


def validate_schema(schema_name: str, payload: Any, *, complete: bool = False, request: bool = False) -> None:
    """Check a payload against one of the contract's component schemas (for endpoints the contract lacks,
    modelled with the contract's own DTOs)."""
    schema = {"$ref": f"#/components/schemas/{schema_name}"}
    _raise(schema_name, _problems(_resolve(schema), payload, "$", complete, request))


def schema_properties(schema_name: str) -> tuple[str, ...]:
    """The property names of a component schema, in the contract's order."""
    return tuple(contract()["components"]["schemas"][schema_name].get("properties", {}))
