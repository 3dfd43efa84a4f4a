"""Contacts (and the client users they map to) staged, validated and mapped a chunk of ids at a time, as typed
columns in SQL rather than one Python dict per record; explicit SQL with parameters. Identifiers come only from
the entity tables in code."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from zk_pipelines.domain.change_detection import canonical_json
from zk_pipelines.domain.entities import STAGED_COLUMNS
from zk_pipelines.domain.kaseya_staging import STRIPPED_CHARACTERS, folded_name, unreadable_record_row
from zk_pipelines.domain.staging_schemas import as_validated_types
from zk_pipelines.storage.database import one_row, registered

# --- contacts, column-wise ---------------------------------------------------------------------------
# A million contacts staged, validated and mapped one Python dict at a time take gigabytes and minutes; these
# reads and writes move them a chunk of ids at a time, as typed columns.


def read_raw_in_order(connection: duckdb.DuckDBPyConnection, table: str, kaseya_ids: np.ndarray) -> list[Any]:
    """The raw payloads of `kaseya_ids`, in that order (ids not in the table are left out)."""
    chunk = pd.DataFrame({"kaseya_id": np.asarray(kaseya_ids, dtype="int64"),
                          "position": np.arange(len(kaseya_ids), dtype="int64")})
    with registered(connection, "incoming_raw_ids", chunk):
        rows = connection.execute(
            f"""SELECT r.payload FROM raw.{table} r JOIN incoming_raw_ids i USING (kaseya_id)
                ORDER BY i.position""").fetchall()
    return [json.loads(payload) for (payload,) in rows]


def staging_order(connection: duckdb.DuckDBPyConnection, table: str, retry_ids: Iterable[int]) -> np.ndarray:
    """The raw records a staging reads, in the order the per-record staging reads them: those pending (new or
    changed since staging last read them) by id, then the `retry_ids` not pending by id."""
    pending = connection.execute(
        f"SELECT kaseya_id FROM raw.{table} WHERE stage_pending ORDER BY kaseya_id").fetchnumpy()["kaseya_id"]
    retry = np.array(sorted(set(int(i) for i in retry_ids)), dtype="int64")
    retry = retry[~np.isin(retry, pending)]
    stored = connection.execute(
        f"SELECT kaseya_id FROM raw.{table} WHERE list_contains($ids, kaseya_id) ORDER BY kaseya_id",
        {"ids": retry.tolist()},
    ).fetchnumpy()["kaseya_id"] if len(retry) else np.array([], dtype="int64")
    return np.concatenate([np.asarray(pending, dtype="int64"), np.asarray(stored, dtype="int64")])


def staged_read(connection: duckdb.DuckDBPyConnection, table: str, kaseya_ids: np.ndarray) -> None:
    """Staging has read these raw records: they are pending no more (until Kaseya sends them changed)."""
    if not len(kaseya_ids):
        return
    ids = pd.DataFrame({"kaseya_id": np.asarray(kaseya_ids, dtype="int64")})
    with registered(connection, "incoming_staged_ids", ids):
        connection.execute(f"""UPDATE raw.{table} SET stage_pending = false
                               WHERE stage_pending AND kaseya_id IN (SELECT kaseya_id FROM incoming_staged_ids)""")


# --- the contact staging rules ----------------------------------------------------------------------------------
# The pipeline's one implementation of the contact staging rules (a per-record copy that the benchmarks measure
# against lives in `benchmarks/contacts_per_record.py`). Each field is read as `kaseya_staging.read_field` reads
# one, whatever the spelling: its name matched regardless of case and underscores, the first non-null value in
# the record's key order (a record spelled as the wire spells it is read straight by path). Each value is read
# as the per-record staging reads it: a whole number from a number or digits in text, text from text or a
# number (trimmed, empty means none), a flag from true/false, 0/1 or their text, a date-time as
# `parse_kaseya_moment` reads one. The default e-mail and phone: the first entry with a value flagged
# `IsDefault`, else the first entry with a value (a blank `Phone` hides `PhoneNumber`). The first field that
# cannot be read makes the record unreadable: its problem is worded by `kaseya_staging.unreadable_record_row`.
# Stricter than `fromisoformat` on malformed date-times only: what it reads through its leniencies (ISO week
# dates, a fraction written without its separator, a character between a six-digit fraction and the offset) and
# digits other than 0-9 are rejected as not a date-time (or not a whole number); Kaseya sends none of them. A
# date-time whose UTC year falls outside 1-9999 is not one either (the per-record readers fail on it).

# The fields read, as the wire spells them, in the order of the values list; the name-giving ones last.
CONTACT_FIELDS = ("id", "accountId", "accountName", "locationId", "firstName", "lastName", "jobTitle", "emails",
                  "phones", "isPoc", "poc", "isActive", "createdOn", "modifiedOn", "subject", "productName", "name")
# A record without a usable id is named by the first of these it has (`kaseya_staging._NAME_FIELDS`).
_NAMING_FIELDS = ("accountName", "subject", "productName", "name", "lastName", "firstName")
_ENTRY_FIELDS = {"email": ("emailAddress", "isDefault"), "phone": ("phone", "phoneNumber", "isDefault")}
_LIST_FIELDS = {"email": "emails", "phone": "phones"}
_INTEGER_FIELDS = {"kaseya_id": "id", "account_id": "accountId", "location_id": "locationId"}
# A time as `datetime.fromisoformat` reads one (after `parse_kaseya_moment` cut the fraction to six digits and
# turned a final Z into +00:00): a date (extended or basic), then any one character and a time (its fraction of a
# second cut to six digits), then an offset (a time too, after at most one character).
_HOURS = r"(?:\d{2}(?::\d{2}(?::\d{2})?)?|\d{2}(?:\d{2}(?:\d{2})?)?)"
_CLOCK = rf"{_HOURS}(?:[.,]\d+)?"
_DATE = r"(\d{4}-\d{2}-\d{2}|\d{8})"
_MOMENT_PARTS = rf"^{_DATE}(?:(?s:.)({_CLOCK})(?:(?s:.)?([+-]{_CLOCK}))?)?$"
# ... where one character may stand before the offset only after a time without a fraction
_MOMENT = rf"^{_DATE}(?:(?s:.)(?:{_HOURS}(?:(?s:.)?[+-]{_CLOCK})?|{_HOURS}[.,]\d+(?:[+-]{_CLOCK})?))?$"


def _contract_name(field_name: str) -> str:
    """A field as the per-record staging names it in a problem (the contract's PascalCase)."""
    return field_name[0].upper() + field_name[1:]


def _value(values: str, field_name: str, fields: tuple[str, ...] = CONTACT_FIELDS) -> str:
    return f"{values}[{fields.index(field_name) + 1}]"


def _absent(value: str) -> str:
    return f"({value} IS NULL OR json_type({value}) = 'NULL')"


def _read_fields(document: str, names: str) -> str:
    """The JSON values of the fields `$<names>` (wire spellings) of the JSON object `document`, in that order."""
    wire = (f"len(list_filter(json_keys({document}), lambda k: list_contains(${names}_folded, "
            f"lower(replace(k, '_', ''))) AND NOT list_contains(${names}, k))) = 0")
    any_spelling = (f"list_transform(${names}_folded, lambda n: list_filter(map_entries(json_transform({document}, "
                    f"'\"MAP(VARCHAR, JSON)\"')), lambda e: lower(replace(e.key, '_', '')) = n "
                    f"AND e.value IS NOT NULL AND json_type(e.value) <> 'NULL')[1].value)")
    return (f"CASE WHEN json_type({document}) <> 'OBJECT' THEN NULL WHEN {wire} "
            f"THEN json_extract({document}, ${names}_paths) ELSE {any_spelling} END")


def _integral(value: str) -> str:
    return (f"(json_type({value}) IN ('BIGINT', 'UBIGINT') "
            f"OR (json_type({value}) = 'DOUBLE' AND NOT regexp_matches({value}::VARCHAR, '[.eE]')))")


def _fractional(value: str) -> str:
    return f"(json_type({value}) = 'DOUBLE' AND regexp_matches({value}::VARCHAR, '[.eE]'))"


def _string(value: str) -> str:
    """A JSON string's text."""
    return f"({value} ->> '$')"


def _trimmed(text: str) -> str:
    return f"regexp_replace({text}, $strip, '', 'g')"


def _digits(value: str) -> str:
    """The digits of a whole number (NULL: absent or not one)."""
    number = f"TRY_CAST({value} AS DOUBLE)"
    return (f"CASE WHEN {_integral(value)} THEN {value}::VARCHAR "
            f"WHEN {_fractional(value)} AND isfinite({number}) AND {number} = floor({number}) "
            f"THEN printf('%.0f', {number}) "
            f"WHEN json_type({value}) = 'VARCHAR' AND regexp_full_match({value} ->> '$', $whole) "
            f"THEN {_trimmed(_string(value))} END")


def _text(value: str) -> str:
    return (f"CASE WHEN json_type({value}) = 'VARCHAR' THEN nullif({_trimmed(_string(value))}, '') "
            f"WHEN {_integral(value)} THEN {value}::VARCHAR "
            f"WHEN {_fractional(value)} THEN TRY_CAST({value} AS DOUBLE)::VARCHAR END")


def _text_unreadable(value: str) -> str:
    return f"(NOT {_absent(value)} AND json_type({value}) NOT IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE'))"


def _flag(value: str) -> str:
    return (f"CASE WHEN json_type({value}) = 'BOOLEAN' THEN ({value} ->> '$') = 'true' "
            f"WHEN json_type({value}) IN ('BIGINT', 'UBIGINT') AND {value}::VARCHAR IN ('0', '1') "
            f"THEN {value}::VARCHAR = '1' "
            f"WHEN json_type({value}) = 'VARCHAR' THEN CASE lower({_trimmed(_string(value))}) "
            f"WHEN 'true' THEN true WHEN 'false' THEN false END END")


def _moment_layers(column: str, value: str) -> list[list[str]]:
    """The layers of SQL that read `value` as `parse_kaseya_moment` reads a date-time, into `column` (NULL: absent
    or not one); each layer reads the columns of the ones before."""
    cut, parts = f"{column}_cut", f"{column}_parts"

    def part(digits: str, start: int) -> str:  # two digits of HHMMSS, 00 when absent
        return f"coalesce(nullif({column}_{digits}[{start}:{start + 1}], ''), '00')"

    def split(name: str, text: str) -> list[str]:  # a time's digits apart from its fraction's (microseconds)
        return [f"replace(regexp_replace({text}, '[.,]\\d+$', ''), ':', '') AS {column}_{name}",
                f"CAST(rpad(left(regexp_extract({text}, '[.,](\\d+)$', 1), 6), 6, '0') AS BIGINT) "
                f"AS {column}_{name}_micros"]

    offset = (f"((CAST({part('zone', 1)} AS BIGINT) * 3600 + CAST({part('zone', 3)} AS BIGINT) * 60 "
              f"+ CAST({part('zone', 5)} AS BIGINT)) * 1000000 + {column}_zone_micros)")
    return [
        [f"CASE WHEN json_type({value}) = 'VARCHAR' THEN regexp_replace("
         f"{_trimmed(_string(value))}, '(\\.\\d{{6}})\\d+', '\\1', 'g') END AS {cut}"],
        [f"CASE WHEN suffix({cut}, 'Z') OR suffix({cut}, 'z') THEN left({cut}, -1) || '+00:00' ELSE {cut} END "
         f"AS {column}_text"],
        [f"CASE WHEN regexp_matches({column}_text, $moment) THEN regexp_extract({column}_text, $moment_parts, "
         f"['date', 'time', 'zone']) END AS {parts}"],
        [f"replace({parts}.date, '-', '') AS {column}_date", f"{parts}.zone[1:1] AS {column}_sign",
         *split("clock", f"{parts}.time"), *split("zone", f"{parts}.zone[2:]")],
        # an offset is any time shorter than a day, as `datetime.timezone` takes one
        [f"CASE WHEN {column}_date[1:4] <> '0000' AND {part('clock', 1)} < '24' AND {part('clock', 3)} < '60' "
         f"AND {part('clock', 5)} < '60' AND {offset} < 86400000000 THEN TRY_CAST({column}_date[1:4] || '-' "
         f"|| {column}_date[5:6] || '-' || {column}_date[7:8] || ' ' || {part('clock', 1)} || ':' "
         f"|| {part('clock', 3)} || ':' || {part('clock', 5)} || '+00:00' AS TIMESTAMPTZ) "
         f"+ to_microseconds({column}_clock_micros "
         f"- CASE WHEN {column}_sign = '-' THEN -{offset} ELSE {offset} END) END AS {column}_utc"],
        # in UTC within Python's years (1-9999), as `validate_rows` takes a date-time
        [f"CASE WHEN {column}_utc BETWEEN '0001-01-01 00:00:00+00'::TIMESTAMPTZ "
         f"AND '9999-12-31 23:59:59.999999+00'::TIMESTAMPTZ THEN {column}_utc END AS {column}"],
    ]


def _unreadable_unless(value: str, read: str) -> str:
    return f"(NOT {_absent(value)} AND ({read}) IS NULL)"


def _problem(check: str, column: str | None, field_name: str | None, value: str, kind: str | None) -> str:
    def text(item: str | None) -> str:
        return "NULL::VARCHAR" if item is None else f"'{item}'"

    return (f"{{'check': '{check}', 'column': {text(column)}, 'field': {text(field_name)}, "
            f"'value': ({value})::VARCHAR, 'kind': {text(kind)}}}")


_COLUMN_FIELDS = {"kaseya_id": "id", "account_id": "accountId", "account_name": "accountName",
                  "location_id": "locationId", "first_name": "firstName", "last_name": "lastName",
                  "job_title": "jobTitle", "email": "emails", "phone": "phones", "is_poc": "isPoc",
                  "is_active": "isActive", "created_on": "createdOn", "modified_on": "modifiedOn"}
_TEXT_COLUMNS = ("account_name", "first_name", "last_name", "job_title")
_MOMENT_COLUMNS = ("created_on", "modified_on")


@functools.cache
def _contacts_chunk_sql() -> str:
    """One parse of each payload (its fields read at once), then small parses of the values, layer by layer
    (each value read once, in the layer after what it reads)."""
    def field(name: str) -> str:
        return _value("v", name)

    poc = f"CASE WHEN {_absent(field('isPoc'))} THEN {field('poc')} ELSE {field('isPoc')} END"
    layers: list[list[str]] = [
        [f"{_digits(field(name))} AS {column}_digits" for column, name in _INTEGER_FIELDS.items()]
        + [f"{_text(field(_COLUMN_FIELDS[column]))} AS {column}" for column in _TEXT_COLUMNS]
        + [f"{_flag(poc)} AS poc_flag", f"{_flag(field('isActive'))} AS is_active"]]
    moments = [_moment_layers(column, field(_COLUMN_FIELDS[column])) for column in _MOMENT_COLUMNS]
    for depth in range(len(moments[0])):
        layers.append([expression for moment in moments for expression in moment[depth]])
    entry_problems = {}
    for column, names in _ENTRY_FIELDS.items():
        listed = field(_LIST_FIELDS[column])
        layers[0].append(
            f"list_transform(CASE WHEN json_type({listed}) = 'ARRAY' THEN json_extract({listed}, '$[*]') ELSE [] END, "
            f"lambda e: {{'kind': json_type(e), 'x': {_read_fields('e', f'{column}_names')}}}) AS {column}_entries")
        first, default = _value("s.x", names[0], names), _value("s.x", "isDefault", names)
        raw = (first if column == "email"
               else f"CASE WHEN {_absent(first)} THEN {_value('s.x', names[1], names)} ELSE {first} END")
        layers[1].append(
            f"list_transform({column}_entries, lambda s: {{'raw': {raw}, 'value': {_text(raw)}, "
            f"'text_unreadable': {_text_unreadable(raw)}, 'flag_raw': {default}, 'is_default': {_flag(default)}}}) "
            f"AS {column}_read")
        with_value = f"list_filter({column}_read, lambda s: s.value IS NOT NULL)"
        layers[2].append(f"coalesce(list_filter({with_value}, lambda s: s.is_default)[1].value, "
                         f"{with_value}[1].value) AS {column}")
        unreadable_text = f"list_filter({column}_read, lambda s: s.text_unreadable)"
        unreadable_flag = (f"list_filter({column}_read, lambda s: s.value IS NOT NULL AND "
                           f"{_unreadable_unless('s.flag_raw', 's.is_default')})")
        entry_problems[column] = [
            (f"(NOT {_absent(listed)} AND (json_type({listed}) <> 'ARRAY' OR NOT coalesce(list_bool_and("
             f"list_transform({column}_entries, lambda s: s.kind = 'OBJECT')), true)))",
             _problem("type", column, _contract_name(_LIST_FIELDS[column]), listed, "LIST")),
            (f"len({unreadable_text}) > 0",
             _problem("type", column, _contract_name(names[0]), f"{unreadable_text}[1].raw", "VARCHAR")),
            (f"len({unreadable_flag}) > 0",
             _problem("type", column, "IsDefault", f"{unreadable_flag}[1].flag_raw", "BOOLEAN")),
        ]
    # the problems in the order the per-record staging meets them: the record, its id, then column by column
    problems = [
        ("kind IS DISTINCT FROM 'OBJECT'", _problem("is_object", None, None, "payload", None)),
        (_absent(field("id")), _problem("has_id", "kaseya_id", "Id", "NULL", None)),
        ("kaseya_id_digits IS NULL", _problem("has_id", "kaseya_id", "Id", field("id"), "BIGINT")),
    ]
    for column, name in list(_COLUMN_FIELDS.items())[1:]:
        if column in entry_problems:
            problems.extend(entry_problems[column])
            continue
        value = poc if column == "is_poc" else field(name)
        read, kind = {"is_poc": ("poc_flag", "BOOLEAN"), "is_active": ("is_active", "BOOLEAN")}.get(
            column, (f"{column}_digits", "BIGINT") if column in _INTEGER_FIELDS else (column, "TIMESTAMPTZ"))
        unreadable = _text_unreadable(value) if column in _TEXT_COLUMNS else _unreadable_unless(value, read)
        problems.append((unreadable, _problem("type", column, _contract_name(name), value,
                                              "VARCHAR" if column in _TEXT_COLUMNS else kind)))
    problem = "CASE " + " ".join(f"WHEN {when} THEN {then}" for when, then in problems) + " END"
    naming = " ".join(f"WHEN NOT {_absent(field(n))} THEN {field(n)}::VARCHAR" for n in _NAMING_FIELDS)
    layers.append([f"{problem} AS problem"])
    ctes = "".join(f", layer_{depth} AS (SELECT *, {', '.join(layer)} FROM layer_{depth - 1})"
                   for depth, layer in enumerate(layers, start=1))
    # a whole number beyond BIGINT's range is left to `validate_rows`, which rejects it as too large to store
    integers = [f"TRY_CAST({column}_digits AS BIGINT) AS {column}, CASE WHEN TRY_CAST({column}_digits AS BIGINT) "
                f"IS NULL THEN {column}_digits END AS {column}_too_large" for column in _INTEGER_FIELDS]
    return f"""
        WITH layer_0 AS (
            SELECT c.position, r.payload, json_type(r.payload) AS kind,
                   {_read_fields('r.payload', 'contact_names')} AS v
            FROM incoming_contacts_chunk c JOIN raw.kaseya_contacts r ON r.kaseya_id = c.kaseya_id
            WHERE r.kaseya_id BETWEEN $lowest AND $highest
        ){ctes}
        SELECT position, problem.check AS problem_check, problem.column AS problem_column,
               problem.field AS problem_field, problem.value AS problem_value, problem.kind AS problem_kind,
               CASE WHEN problem.check = 'has_id' THEN CASE {naming} END END AS problem_name,
               {', '.join(integers)}, {', '.join(_TEXT_COLUMNS)}, email, phone, coalesce(poc_flag, false) AS is_poc,
               is_active, {', '.join(_MOMENT_COLUMNS)}
        FROM layer_{len(layers)} ORDER BY position"""


def read_contacts_chunk(connection: duckdb.DuckDBPyConnection, kaseya_ids: np.ndarray, positions: np.ndarray
                        ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The raw contacts `kaseya_ids` (their places in the batch: `positions`) staged: (the rows typed as
    `validate_rows` types them, with their `position`, for `validate_typed_rows`; the rows it must type itself,
    for `validate_rows`: a row per unreadable record carrying its problem, and the rows holding a whole number
    too large for a BIGINT)."""
    blank = "".join(f"\\x{{{ord(c):x}}}" for c in STRIPPED_CHARACTERS)
    parameters: dict[str, Any] = {
        "lowest": int(kaseya_ids.min()) if len(kaseya_ids) else 0,
        "highest": int(kaseya_ids.max()) if len(kaseya_ids) else -1,
        "strip": f"^[{blank}]+|[{blank}]+$",
        "whole": f"[{blank}]*-?[0-9]+[{blank}]*",
        "moment": _MOMENT,
        "moment_parts": _MOMENT_PARTS,
    }
    for names, fields in (("contact_names", CONTACT_FIELDS), *((f"{c}_names", f) for c, f in _ENTRY_FIELDS.items())):
        parameters[names] = list(fields)
        parameters[f"{names}_folded"] = [folded_name(name) for name in fields]
        parameters[f"{names}_paths"] = [f'$."{name}"' for name in fields]
    chunk = pd.DataFrame({"kaseya_id": kaseya_ids, "position": positions})
    with registered(connection, "incoming_contacts_chunk", chunk):
        frame = connection.execute(_contacts_chunk_sql(), parameters).df()
    untyped = frame["problem_check"].notna()
    for column in _INTEGER_FIELDS:
        untyped |= frame[f"{column}_too_large"].notna()
    typed = frame.loc[~untyped].reset_index(drop=True)
    rows = [_untyped_row(record) for record in frame.loc[untyped].to_dict("records")]
    return pd.concat([typed[["position"]].astype("int64"), as_validated_types(typed, STAGED_COLUMNS["contacts"])],
                     axis=1), rows


def _present(value: Any) -> Any:
    """A value of the frame as Python has it (None for a missing one)."""
    return None if value is None or value is pd.NA or value is pd.NaT or (
        isinstance(value, float) and np.isnan(value)) else value


def _untyped_row(record: dict[str, Any]) -> dict[str, Any]:
    """A record of the chunk that `validate_rows` types: unreadable (a row carrying its problem), or holding a
    whole number too large for a BIGINT."""
    numbers = {column: int(record[f"{column}_too_large"]) if _present(record[f"{column}_too_large"]) is not None
               else _present(record[column]) for column in _INTEGER_FIELDS}
    numbers = {column: None if number is None else int(number) for column, number in numbers.items()}
    if _present(record["problem_check"]) is None:
        return {**{name: _present(record[name]) for name, _ in STAGED_COLUMNS["contacts"]}, **numbers}
    value, name = (_present(record[key]) for key in ("problem_value", "problem_name"))
    return unreadable_record_row(
        "contacts", position=int(record["position"]),
        kaseya_id=None if record["problem_check"] != "type" else numbers["kaseya_id"],
        name=None if name is None else json.loads(name), check=record["problem_check"],
        column=_present(record["problem_column"]), field_name=_present(record["problem_field"]),
        value=None if value is None else json.loads(value), kind=_present(record["problem_kind"]))


def mapping_order(connection: duckdb.DuckDBPyConnection, entity: str, kaseya_ids: Iterable[int]) -> np.ndarray:
    """The ids `read_stg(..., pending_only=True, kaseya_ids=...)` reads, ascending, without the rows."""
    retry = pd.DataFrame({"kaseya_id": np.array(sorted(set(int(i) for i in kaseya_ids)), dtype="int64")})
    with registered(connection, "incoming_retry_ids", retry):
        ids = connection.execute(
            f"""SELECT kaseya_id FROM stg.kaseya_{entity} WHERE map_pending
                UNION SELECT s.kaseya_id FROM stg.kaseya_{entity} s SEMI JOIN incoming_retry_ids r USING (kaseya_id)
                ORDER BY kaseya_id""",
        ).fetchnumpy()["kaseya_id"]
    return np.asarray(ids, dtype="int64")


@dataclass(frozen=True)
class PendingCounts:
    problems: int  # cannot be sent (yet)
    never_sent: int
    changed: int  # sent before with another hash
    unchanged: int


def count_pending(connection: duckdb.DuckDBPyConnection, name: str) -> PendingCounts:
    """What `pending_records` would hand the load, counted in SQL with its conditions: `changed` are pending
    only when linked records are updated (Kaseya as CRM)."""
    row = one_row(connection.execute(
        f"""
        SELECT count(*) FILTER (WHERE m.problem IS NOT NULL),
               count(*) FILTER (WHERE m.problem IS NULL AND i.zomentum_id IS NULL),
               count(*) FILTER (WHERE m.problem IS NULL AND i.zomentum_id IS NOT NULL
                                  AND i.payload_hash IS DISTINCT FROM m.payload_hash),
               count(*) FILTER (WHERE m.problem IS NULL AND i.zomentum_id IS NOT NULL
                                  AND i.payload_hash IS NOT DISTINCT FROM m.payload_hash)
        FROM mapped.zomentum_{name} m
        LEFT JOIN zomentum.id_map i ON i.entity = $entity AND i.kaseya_id = m.kaseya_id
        """,
        {"entity": name},
    ))
    return PendingCounts(*(int(value) for value in row))


# `map_client_user`'s payload as the canonical JSON `payload_hash` hashes, built by DuckDB's `json_object`: no
# spaces, keys written in the sorted order `canonical_json` writes them, text quoted as `json.dumps` quotes it
# but for control characters (DuckDB writes `\u001F` where `json.dumps` writes `\u001f`), so the rows holding one
# are written again by `canonical_json`. Tested equal to `map_client_user` + `canonical_json`.
_CLIENT_USER_TEXT_COLUMNS = ("email", "job_title", "first_name", "last_name", "phone")
_CLIENT_USER_PAYLOAD_SQL = """json_object(
    'client_company_id', c.zomentum_id,
    'contact_type', CASE WHEN coalesce(s.is_poc, false) THEN 'primary_contact' ELSE 'secondary_contact' END,
    'email', s.email,
    'job_title', s.job_title,
    'name', json_object('first', s.first_name, 'last', s.last_name),
    'phone', s.phone)::VARCHAR"""


def upsert_client_users_mapped(connection: duckdb.DuckDBPyConnection, kaseya_ids: np.ndarray, *, run_id: str,
                               now: datetime) -> tuple[int, int]:
    """Map the staged contacts `kaseya_ids` to client-user payloads in SQL and upsert them into
    `mapped.zomentum_client_users`: a contact whose account has a Zomentum client gets its payload and hash,
    the others `map_rows`' waiting problem. Returns (rows written, of them waiting)."""
    if not len(kaseya_ids):
        return 0, 0
    special = " OR ".join(f"regexp_matches(coalesce(s.{name}, ''), '[\\x00-\\x1f]')"
                          for name in _CLIENT_USER_TEXT_COLUMNS)
    ids = pd.DataFrame({"kaseya_id": np.asarray(kaseya_ids, "int64")})
    with registered(connection, "incoming_client_user_ids", ids):
        connection.execute(
            f"""CREATE OR REPLACE TEMP TABLE client_user_chunk AS
                SELECT s.kaseya_id, s.account_id, s.modified_on, c.zomentum_id, ({special}) AS special,
                       CASE WHEN c.zomentum_id IS NOT NULL THEN {_CLIENT_USER_PAYLOAD_SQL} END AS payload
                FROM stg.kaseya_contacts s SEMI JOIN incoming_client_user_ids i USING (kaseya_id)
                LEFT JOIN zomentum.id_map c ON c.entity = 'clients' AND c.kaseya_id = CAST(s.account_id AS VARCHAR)
                WHERE s.kaseya_id BETWEEN $lowest AND $highest""",
            {"lowest": int(np.min(kaseya_ids)), "highest": int(np.max(kaseya_ids))})
    _canonical_control_characters(connection)
    connection.execute(
        """INSERT OR REPLACE INTO mapped.zomentum_client_users
               (kaseya_id, payload, payload_hash, problem, waiting, source_modified_on, mapped_at, run_id)
           SELECT CAST(kaseya_id AS VARCHAR), payload::JSON, sha256(payload),
                  CASE WHEN zomentum_id IS NULL THEN 'contact ' || kaseya_id || ': waits for its Kaseya account '
                       || coalesce(CAST(account_id AS VARCHAR), 'None') || ' to be in Zomentum (that client '
                       || 'failed, or has not been pulled yet); retried every run' END,
                  zomentum_id IS NULL, modified_on, $now, $run_id
           FROM client_user_chunk""",
        {"now": now, "run_id": run_id})
    written, waiting = one_row(connection.execute(
        "SELECT count(*), count(*) FILTER (WHERE zomentum_id IS NULL) FROM client_user_chunk"))
    connection.execute("DROP TABLE client_user_chunk")
    return int(written), int(waiting)


def _canonical_control_characters(connection: duckdb.DuckDBPyConnection) -> None:
    """The chunk's payloads holding a control character, as `canonical_json` writes them."""
    rows = connection.execute(
        "SELECT kaseya_id, payload FROM client_user_chunk WHERE special AND payload IS NOT NULL").fetchall()
    if not rows:
        return
    canonical = pd.DataFrame({"kaseya_id": np.array([kaseya_id for kaseya_id, _ in rows], dtype="int64"),
                              "payload": [canonical_json(json.loads(payload)) for _, payload in rows]})
    with registered(connection, "incoming_canonical_payloads", canonical):
        connection.execute("""UPDATE client_user_chunk SET payload = f.payload FROM incoming_canonical_payloads f
                              WHERE client_user_chunk.kaseya_id = f.kaseya_id""")
