"""What a staged Kaseya row must satisfy before it reaches `stg.*`, and the split of a batch into valid rows
and rejects.

One pandera model per staged entity (types, required fields, e-mail shape, non-negative prices, allowed
values): its fields are the `stg.kaseya_<entity>` columns, declared once (`model_columns`), and each check's
reject reason is declared beside it (`rejected_because`; a foreign key carries its own). Foreign keys are
checked against the ids the caller knows (`known_ids`), since a contact's account may have been staged in an
earlier run. `validate_rows` never raises for bad rows: every failure of every
row becomes one reject line `(entity, kaseya_id, check, column, value, reason)`, and the other rows go on.

Order of work in `validate_rows`: rows the staging could not flatten are rejected as they are; duplicates of
one key keep only the latest `modified_on` (the newest version is the truth, even when it turns out
invalid); values that are not of the column's type are rejected; then the pandera model runs lazily, so
every failing check of every row is collected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from zk_pipelines.domain.kaseya_staging import (
    ITEM_TYPES,
    STAGING_PROBLEM,
    STATUS_KINDS,
    Column,
    StagingProblem,
    as_number,
    parse_kaseya_moment,
)

REJECT_COLUMNS: tuple[Column, ...] = (
    ("entity", "VARCHAR"),
    ("kaseya_id", "BIGINT"),
    ("check", "VARCHAR"),
    ("column", "VARCHAR"),
    ("value", "VARCHAR"),
    ("reason", "VARCHAR"),
)

VALUE_LIMIT = 200  # characters of an offending value kept in a reject

# The same shape Zomentum's API accepts; a stricter rule would reject addresses Zomentum takes.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

Timestamp = Annotated[pd.DatetimeTZDtype, "us", "UTC"]  # DuckDB's TIMESTAMPTZ has microseconds


class StagedModel(pa.DataFrameModel):
    """The columns of a `stg.kaseya_<entity>` table, declared once: the table's DDL and the typing of a batch
    are derived from the model (`model_columns`)."""

    class Config:
        strict = True
        coerce = False  # `validate_rows` has already typed every column and rejected what did not fit


# The DuckDB type of each dtype a model's columns may have.
_DUCKDB_TYPES = {"Int64": "BIGINT", "str": "VARCHAR", "float64": "DOUBLE", "boolean": "BOOLEAN",
                 "datetime64[us, UTC]": "TIMESTAMPTZ"}


def model_columns(model: type[StagedModel]) -> tuple[Column, ...]:
    """The model's columns as (name, DuckDB type), in its order: the staging table's definition."""
    return tuple((name, _DUCKDB_TYPES[str(column.dtype)]) for name, column in model.to_schema().columns.items())


@dataclass(frozen=True)
class Failure:
    """One failed check of one row, as its reason is written: `subject` names the record ("contact 7"),
    `label` the column in words, `shown` the value as quoted in the reason."""

    subject: str
    label: str
    value: Any
    shown: str


Reason = Callable[[Failure], str]


@dataclass(frozen=True)
class RejectReason:
    reason: Reason
    column: str | None = None  # the column a row-level (dataframe) check is reported under


# Each check's reject reason, by check name: declared with `rejected_because` beside the check it explains.
REASONS: dict[str, RejectReason] = {}


def rejected_because(check: str, reason: Reason, *, column: str | None = None) -> None:
    """Declare why a row failing `check` is rejected (and, for a row-level check, the column it is about)."""
    REASONS[check] = RejectReason(reason, column)


# Pandera's built-in checks (named after their arguments: "greater_than_or_equal_to(0)") under our names, each
# with its reason.
_BUILT_IN_CHECKS = {
    "not_nullable": "not_nullable",
    "str_matches": "email_shape",
    "greater_than_or_equal_to": "non_negative",
    "in_range": "percentage",
    "isin": "allowed_value",
    "field_uniqueness": "duplicate_key",
}
rejected_because("not_nullable", lambda f: (
    f"{f.subject}: {f.label} is missing or not a number; set it in Kaseya"
    if isinstance(f.value, float) and math.isnan(f.value) else f"{f.subject}: {f.label} is missing; set it in Kaseya"))
rejected_because("email_shape", lambda f: f"{f.subject}: {f.label} {f.shown} is not an e-mail address; correct it "
                                          "in Kaseya")
rejected_because("non_negative", lambda f: f"{f.subject}: {f.label} {f.shown} is negative; it must be 0 or more, "
                                           "correct it in Kaseya")
rejected_because("percentage", lambda f: f"{f.subject}: {f.label} {f.shown} is not between 0 and 100; correct it "
                                         "in Kaseya")
rejected_because("allowed_value", lambda f: f"{f.subject}: {f.label} {f.shown} is not one of the values the "
                                            "pipeline knows")
rejected_because("duplicate_key", lambda f: f"{f.subject}: appears twice with the same key after de-duplication")


class AccountModel(StagedModel):
    kaseya_id: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    account_code: Series[str] = pa.Field(nullable=True)
    name: Series[str] = pa.Field(nullable=False)
    account_type_id: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    account_type: Series[str] = pa.Field(nullable=True)
    website: Series[str] = pa.Field(nullable=True)
    is_active: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    account_manager_id: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    # Not shape-checked: a manager without a usable e-mail only makes the owner the fallback owner.
    account_manager_email: Series[str] = pa.Field(nullable=True)
    main_location_id: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    main_location_name: Series[str] = pa.Field(nullable=True)
    main_phone: Series[str] = pa.Field(nullable=True)
    billing_address1: Series[str] = pa.Field(nullable=True)
    billing_address2: Series[str] = pa.Field(nullable=True)
    billing_city: Series[str] = pa.Field(nullable=True)
    billing_state: Series[str] = pa.Field(nullable=True)
    billing_zip_code: Series[str] = pa.Field(nullable=True)
    billing_country: Series[str] = pa.Field(nullable=True)
    billing_phone: Series[str] = pa.Field(nullable=True)
    shipping_addresses: Series[str] = pa.Field(nullable=False)
    created_on: Series[Timestamp] = pa.Field(nullable=True)
    modified_on: Series[Timestamp] = pa.Field(nullable=True)

    @pa.check("shipping_addresses", name="address_list", element_wise=True)
    def _shipping_is_a_list(cls, value: str) -> bool:
        return _address_list_problem(value) is None


rejected_because("address_list", lambda f: f"{f.subject}: {f.label} {_address_list_problem(f.value) or 'is invalid'}")


class ContactModel(StagedModel):
    kaseya_id: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    account_id: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    account_name: Series[str] = pa.Field(nullable=True)
    location_id: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    first_name: Series[str] = pa.Field(nullable=False)  # Zomentum requires a first name
    last_name: Series[str] = pa.Field(nullable=True)
    job_title: Series[str] = pa.Field(nullable=True)
    email: Series[str] = pa.Field(nullable=True, str_matches=EMAIL_PATTERN)
    phone: Series[str] = pa.Field(nullable=True)
    is_poc: Series[pd.BooleanDtype] = pa.Field(nullable=False)
    is_active: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    created_on: Series[Timestamp] = pa.Field(nullable=True)
    modified_on: Series[Timestamp] = pa.Field(nullable=True)


class OpportunityModel(StagedModel):
    kaseya_id: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    subject: Series[str] = pa.Field(nullable=False)
    status_id: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    status: Series[str] = pa.Field(nullable=True)
    account_id: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    account_name: Series[str] = pa.Field(nullable=True)
    account_location_id: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    contact_id: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    type_id: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    type: Series[str] = pa.Field(nullable=True)
    rating: Series[str] = pa.Field(nullable=True)
    lead_source: Series[str] = pa.Field(nullable=True)
    probability: Series[float] = pa.Field(nullable=False, in_range={"min_value": 0, "max_value": 100})
    amount: Series[float] = pa.Field(nullable=False, ge=0)
    sales_rep_id: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    sales_rep_name: Series[str] = pa.Field(nullable=True)
    sales_rep_email: Series[str] = pa.Field(nullable=True)
    in_pipeline: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    description: Series[str] = pa.Field(nullable=True)
    customer_po: Series[str] = pa.Field(nullable=True)
    close_date: Series[Timestamp] = pa.Field(nullable=True)
    created_on: Series[Timestamp] = pa.Field(nullable=True)
    modified_on: Series[Timestamp] = pa.Field(nullable=True)


class ProductModel(StagedModel):
    kaseya_id: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    product_number: Series[str] = pa.Field(nullable=True)
    name: Series[str] = pa.Field(nullable=False)
    description: Series[str] = pa.Field(nullable=True)
    upc: Series[str] = pa.Field(nullable=True)
    category: Series[str] = pa.Field(nullable=True)
    product_type: Series[str] = pa.Field(nullable=True)
    item_type: Series[str] = pa.Field(nullable=False, isin=list(ITEM_TYPES))
    manufacturer: Series[str] = pa.Field(nullable=True)
    supplier_name: Series[str] = pa.Field(nullable=True)
    supplier_part_number: Series[str] = pa.Field(nullable=True)
    unit_cost: Series[float] = pa.Field(nullable=True, ge=0)
    pricing_levels: Series[str] = pa.Field(nullable=True)

    @pa.check("pricing_levels", name="pricing_levels", element_wise=True)
    def _levels_are_priced(cls, value: str) -> bool:
        return _pricing_problem(value) is None

    @pa.dataframe_check(name="cost_known")
    def _cost_known_once_priced(cls, frame: pd.DataFrame) -> pd.Series:
        # A NULL pricing column means "not read yet"; once read, Kaseya always answers a default cost, so a
        # missing (or NaN) cost is a broken answer, not a free product.
        return frame["pricing_levels"].isna() | frame["unit_cost"].notna()


rejected_because("pricing_levels", lambda f: (f"{f.subject}: pricing levels "
                                              f"{_pricing_problem(f.value) or 'are invalid'}; correct them in Kaseya"))
rejected_because("cost_known", lambda f: f"{f.subject}: unit cost is missing or not a number although its pricing was "
                                         "read; check the product's first supplier cost and default cost in Kaseya",
                 column="unit_cost")


class EmployeeModel(StagedModel):
    kaseya_id: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    first_name: Series[str] = pa.Field(nullable=True)
    last_name: Series[str] = pa.Field(nullable=True)
    email: Series[str] = pa.Field(nullable=True, str_matches=EMAIL_PATTERN)
    username: Series[str] = pa.Field(nullable=True)
    job_title: Series[str] = pa.Field(nullable=True)
    is_active: Series[pd.BooleanDtype] = pa.Field(nullable=True)


class OpportunityStatusModel(StagedModel):
    kaseya_id: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    name: Series[str] = pa.Field(nullable=False)
    probability: Series[float] = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 100})
    is_active: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    is_pipeline: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    status_action_id: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    status_action: Series[str] = pa.Field(nullable=True)
    kind: Series[str] = pa.Field(nullable=False, isin=list(STATUS_KINDS))


class ContractModel(StagedModel):
    kaseya_id: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    contract_number: Series[str] = pa.Field(nullable=True)
    contract_name: Series[str] = pa.Field(nullable=False)
    account_name: Series[str] = pa.Field(nullable=True)  # the summary names the account, without its id
    contract_type: Series[str] = pa.Field(nullable=True)
    status: Series[str] = pa.Field(nullable=True)
    billing_cycle: Series[str] = pa.Field(nullable=True)
    billing_price: Series[float] = pa.Field(nullable=True, ge=0)
    start_date: Series[Timestamp] = pa.Field(nullable=True)
    end_date: Series[Timestamp] = pa.Field(nullable=True)


class TimeLogModel(StagedModel):
    kaseya_id: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    account_id: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    account_name: Series[str] = pa.Field(nullable=True)
    ticket_id: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    project_id: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    user_id: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    first_name: Series[str] = pa.Field(nullable=True)
    last_name: Series[str] = pa.Field(nullable=True)
    role: Series[str] = pa.Field(nullable=True)
    work_type: Series[str] = pa.Field(nullable=True)
    start_date: Series[Timestamp] = pa.Field(nullable=True)
    hours: Series[float] = pa.Field(nullable=False, ge=0)
    overtime_hours: Series[float] = pa.Field(nullable=True, ge=0)
    is_billable: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    is_billed: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    is_approved: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    notes: Series[str] = pa.Field(nullable=True)
    created_on: Series[Timestamp] = pa.Field(nullable=True)
    modified_on: Series[Timestamp] = pa.Field(nullable=True)


# The reference checks' names start with this: a row rejected only by them is not bad, it waits for the
# record it references (an account, a status), is staged again by every run, and shows as deferred.
REFERENCE_CHECK_PREFIX = "known_"


@dataclass(frozen=True)
class ForeignKey:
    """A column holding the Kaseya id of a record of another staged entity (`target`, a key of `known_ids`);
    a row whose reference is not staged waits for it. `reason` says so in the reject."""

    column: str
    target: str
    kind: str  # what the referenced record is: the check is named REFERENCE_CHECK_PREFIX + kind
    reason: Reason

    @property
    def check(self) -> str:
        return REFERENCE_CHECK_PREFIX + self.kind


def references_account(column: str = "account_id") -> ForeignKey:
    return ForeignKey(column, "accounts", "account", lambda f: (
        f"{f.subject}: {f.label} {f.shown} is not a Kaseya account the pipeline has staged; it waits, staged again "
        "every run, until its account is. If the account was rejected, fix it in Kaseya; if it was last modified "
        "before the first hourly partition (ZK_PARTITIONS_START) and never extracted, a whole-history sync "
        "releases it: `zk sync --whole-history`, or whole_history: true for raw_kaseya_changes in the launchpad"))


@dataclass(frozen=True)
class StagedEntity:
    """What validation needs of a staged entity (the registry's `Staging` row gives it)."""

    name: str
    model: type[StagedModel]
    label: str  # what a reject calls one record: "contact 300017: ..."
    foreign_keys: tuple[ForeignKey, ...] = ()

    @property
    def columns(self) -> tuple[Column, ...]:
        return model_columns(self.model)


# --- JSON columns ---------------------------------------------------------------------------------


def _finite_non_negative(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def _pricing_problem(text: str) -> str | None:
    """What is wrong with a `pricing_levels` JSON value, in words; None when nothing is."""
    try:
        levels = json.loads(text)
    except (TypeError, ValueError):
        return "is not a JSON list"
    if not isinstance(levels, list) or not all(isinstance(level, dict) for level in levels):
        return "is not a list of pricing levels"
    for level in levels:
        name = level.get("name")
        if not isinstance(name, str) or not name.strip():
            return f"has a level without a name (level id {level.get('id')})"
        if not _finite_non_negative(level.get("price")):
            return f"has level {name!r} priced {level.get('price')}, which is not a number of 0 or more"
    return None


def _address_list_problem(text: str) -> str | None:
    try:
        addresses = json.loads(text)
    except (TypeError, ValueError):
        return "is not a JSON list"
    if not isinstance(addresses, list) or not all(isinstance(a, dict) for a in addresses):
        return "is not a list of addresses"
    return None


# --- typing a batch -------------------------------------------------------------------------------


class _Untypable(ValueError):
    pass


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


_BIGINT_RANGE = range(-(2**63), 2**63)  # DuckDB's BIGINT, pandas' Int64


def _as_bigint(value: Any) -> int | None:
    if _missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        raise _Untypable("is not a whole number")
    if isinstance(value, int | np.integer):
        number = int(value)
    elif isinstance(value, float | np.floating) and float(value).is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value)
    else:
        raise _Untypable("is not a whole number")
    if number not in _BIGINT_RANGE:
        raise _Untypable("is too large a number to store")
    return number


def _as_double(value: Any) -> float:
    # NaN stays NaN (read as missing): a required column then rejects it as "missing or not a number".
    if value is None or value is pd.NA:
        return math.nan
    number = as_number(value)
    if number is None:
        raise _Untypable("is not a number")
    return number


def _as_boolean(value: Any) -> bool | None:
    if _missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise _Untypable("is not true or false")


def _as_varchar(value: Any) -> str | None:
    if _missing(value):
        return None
    if isinstance(value, str):
        return value
    raise _Untypable("is not text")


def _as_timestamptz(value: Any) -> datetime | None:
    if _missing(value):
        return None
    try:
        moment = parse_kaseya_moment(value)
    except (TypeError, ValueError):
        raise _Untypable("is not a date-time") from None
    if moment is not None and moment.year < 1:
        raise _Untypable("is not a date-time")
    return moment


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "BIGINT": _as_bigint,
    "INTEGER": _as_bigint,
    "DOUBLE": _as_double,
    "BOOLEAN": _as_boolean,
    "VARCHAR": _as_varchar,
    "TIMESTAMPTZ": _as_timestamptz,
}


def _typed_series(values: list[Any], duckdb_type: str) -> pd.Series:
    if duckdb_type in ("BIGINT", "INTEGER"):
        return pd.Series(pd.array(values, dtype="Int64"))
    if duckdb_type == "DOUBLE":
        return pd.Series(np.array(values, dtype="float64"))
    if duckdb_type == "BOOLEAN":
        return pd.Series(pd.array(values, dtype="boolean"))
    if duckdb_type == "TIMESTAMPTZ":
        return pd.Series(
            [pd.Timestamp(v) if v is not None else pd.NaT for v in values], dtype="datetime64[us, UTC]"
        )
    return pd.Series(values, dtype=object)


def empty_frame(entity_name: str) -> pd.DataFrame:
    """A frame with the entity's columns and dtypes and no rows."""
    return pd.DataFrame({name: _typed_series([], kind) for name, kind in _staged_entity(entity_name).columns})


def as_validated_types(frame: pd.DataFrame, columns: Sequence[Column]) -> pd.DataFrame:
    """The `columns` of a frame read from SQL, typed as `validate_rows` types them: nullable Int64 ids,
    nullable booleans, UTC timestamps (microseconds), text as objects with None for missing."""
    typed: dict[str, pd.Series] = {}
    for name, kind in columns:
        values = frame[name]
        if kind == "BIGINT":
            typed[name] = values.astype("Int64")
        elif kind == "BOOLEAN":
            typed[name] = values.astype("boolean")
        elif kind == "TIMESTAMPTZ":
            typed[name] = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
        else:
            typed[name] = values.astype(object).where(values.notna(), None)
    return pd.DataFrame(typed, index=frame.index)


def empty_rejects() -> pd.DataFrame:
    return _rejects_frame([])


def _staged_entity(name: str) -> StagedEntity:
    # The registry (domain/entities.py) is built from this module's models: read it when a batch is validated.
    from zk_pipelines.domain.entities import staged_entity

    return staged_entity(name)


# --- rejects ----------------------------------------------------------------------------------------


def _value_text(value: Any) -> str | None:
    if isinstance(value, StagingProblem):
        return value.value
    if _missing(value) and not (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value)
    return text if len(text) <= VALUE_LIMIT else text[: VALUE_LIMIT - 1] + "…"


def _subject(entity: StagedEntity, kaseya_id: Any) -> str:
    return f"{entity.label} {kaseya_id}" if not _missing(kaseya_id) else f"{entity.label} without an id"


def _label(column: str) -> str:
    return column.replace("_", " ")


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 80 else value[:79] + "…")
    return str(value)


def _reason(entity: StagedEntity, kaseya_id: Any, check: str, column: str | None, value: Any) -> str:
    failure = Failure(_subject(entity, kaseya_id), _label(column or "record"), value, _shown(value))
    for key in entity.foreign_keys:
        if key.check == check:
            return key.reason(failure)
    declared = REASONS.get(check)
    if declared is not None:
        return declared.reason(failure)
    return f"{failure.subject}: {failure.label} {failure.shown} failed the check {check}"


def _check_name(pandera_check: str) -> str:
    base = pandera_check.split("(", 1)[0]
    return _BUILT_IN_CHECKS.get(base, base)


def _reject(entity: StagedEntity, kaseya_id: Any, check: str, column: str | None, value: Any,
            reason: str | None = None) -> dict[str, Any]:
    return {
        "entity": entity.name,
        "kaseya_id": None if _missing(kaseya_id) else int(kaseya_id),
        "check": check,
        "column": column,
        "value": _value_text(value),
        "reason": reason or _reason(entity, kaseya_id, check, column, value),
    }


def _rejects_frame(rejects: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame({
        name: _typed_series([r[name] for r in rejects], kind) for name, kind in REJECT_COLUMNS
    })


# --- the batch ----------------------------------------------------------------------------------------


def _order_moment(value: Any) -> float:
    try:
        moment = parse_kaseya_moment(value) if not _missing(value) else None
    except (TypeError, ValueError):
        moment = None
    return moment.timestamp() if moment is not None else -math.inf


def _order_key(value: Any) -> int | None:
    try:
        return _as_bigint(value)
    except _Untypable:
        return None


def _latest_per_key(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per kaseya_id: the latest `modified_on`, the last one read on a tie (later pages are later
    reads). Rows without a usable key are all kept; validation rejects them."""
    chosen: dict[int, tuple[float, int]] = {}
    for position, record in enumerate(records):
        key = _order_key(record.get("kaseya_id"))
        if key is None:
            continue
        moment = _order_moment(record.get("modified_on"))
        if key not in chosen or moment >= chosen[key][0]:
            chosen[key] = (moment, position)
    keep = {position for _, position in chosen.values()}
    return [r for i, r in enumerate(records) if i in keep or _order_key(r.get("kaseya_id")) is None]


def _schema(entity: StagedEntity, known_ids: Mapping[str, Any] | None) -> pa.DataFrameSchema:
    schema = entity.model.to_schema()
    for key in entity.foreign_keys:
        if known_ids is None or key.target not in known_ids:
            continue
        known = {_order_key(v) for v in known_ids[key.target]} - {None}
        column = schema.columns[key.column]
        schema = schema.update_column(key.column, checks=[
            *column.checks, pa.Check(lambda s, known=known: s.isin(known), name=key.check),
        ])
    return schema


def _pandera_failures(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame | None:
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return errors.failure_cases
    return None


def _rejects_from_failures(entity: StagedEntity, frame: pd.DataFrame, failures: pd.DataFrame
                           ) -> tuple[list[dict[str, Any]], set[int]]:
    rejects, bad_rows, reported = [], set(), set()
    for failure in failures.itertuples(index=False):
        row = int(failure.index)
        check = _check_name(str(failure.check))
        if failure.schema_context == "DataFrameSchema":
            declared = REASONS.get(check)
            column = declared.column if declared is not None and declared.column else failure.column
            if (row, check) in reported:
                continue  # a row-level check lists every column of the row; report it once
            reported.add((row, check))
            value = frame.at[row, column] if column in frame.columns else None
        else:
            column = failure.column
            # The row's own typed value: pandera's failure_case is typed by the failures of the whole batch
            # (an id reads 999999.0 when another check's failure was missing), so it depends on the batch.
            value = frame.at[row, column] if column in frame.columns else failure.failure_case
            if check == "not_nullable" and dict(entity.columns).get(column) != "DOUBLE":
                value = None  # pandas shows a missing integer or text as NaN; only a float can really be NaN
        bad_rows.add(row)
        rejects.append(_reject(entity, frame.at[row, "kaseya_id"], check, column, value))
    return rejects, bad_rows


def validate_rows(
    entity_name: str, df: pd.DataFrame, known_ids: Mapping[str, Any] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split staged rows of one entity into (valid rows, rejects).

    `df` holds rows from `kaseya_staging.stage_*` (extra columns other than `staging_problem` are ignored;
    missing ones are NULL). `known_ids` maps an entity name to the Kaseya ids that exist in `stg`
    (e.g. {"accounts": {...}, "opportunity_statuses": {...}}); a foreign key whose target is not given is
    not checked. The valid frame has exactly the entity's columns, typed for DuckDB, one row per kaseya_id;
    the rejects frame has REJECT_COLUMNS, one line per failed check.
    """
    entity = _staged_entity(entity_name)
    columns = entity.columns
    records = df.to_dict("records") if len(df) else []
    rejects: list[dict[str, Any]] = []

    readable = []
    for record in records:
        problem = record.get(STAGING_PROBLEM)
        if isinstance(problem, StagingProblem):
            rejects.append(_reject(entity, record.get("kaseya_id"), problem.check, problem.column, problem,
                                   reason=problem.reason))
        else:
            readable.append(record)

    typed_rows = []
    for record in _latest_per_key(readable):
        typed, failed = {}, False
        for name, kind in columns:
            try:
                typed[name] = _CONVERTERS[kind](record.get(name))
            except _Untypable as problem:
                failed = True
                rejects.append(_reject(
                    entity, _order_key(record.get("kaseya_id")), "type", name, record.get(name),
                    reason=f"{_subject(entity, _order_key(record.get('kaseya_id')))}: {_label(name)} "
                           f"{_shown(record.get(name))} {problem}; correct it in Kaseya",
                ))
        if not failed:
            typed_rows.append(typed)

    frame = pd.DataFrame({name: _typed_series([r[name] for r in typed_rows], kind) for name, kind in columns})
    return _checked(entity, frame, known_ids, rejects)


def validate_typed_rows(
    entity_name: str, frame: pd.DataFrame, known_ids: Mapping[str, Any] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`validate_rows` of rows already typed as it types them (`as_validated_types`), one per kaseya_id: the
    same checks and rejects, without reading each row in Python (the column-wise staging of contacts)."""
    entity = _staged_entity(entity_name)
    if frame["kaseya_id"].duplicated().any():
        raise ValueError(f"{entity_name}: typed rows must hold one row per kaseya_id")
    return _checked(entity, frame[[name for name, _ in entity.columns]].reset_index(drop=True), known_ids, [])


def _checked(entity: StagedEntity, frame: pd.DataFrame, known_ids: Mapping[str, Any] | None,
             rejects: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows of the typed `frame` that pass the entity's schema, `rejects` and a line per failed check)."""
    schema = _schema(entity, known_ids)
    failures = _pandera_failures(schema, frame)
    bad_rows: set[int] = set()
    if failures is not None:
        if failures["index"].isna().any():
            # A check failed for the frame as a whole (no row to blame): find the rows one at a time.
            for row in range(len(frame)):
                one = frame.iloc[[row]].reset_index(drop=True)
                row_failures = _pandera_failures(schema, one)
                if row_failures is None:
                    continue
                row_failures = row_failures.assign(index=0)
                row_rejects, _ = _rejects_from_failures(entity, one, row_failures)
                rejects.extend(row_rejects)
                bad_rows.add(row)
        else:
            row_rejects, bad_rows = _rejects_from_failures(entity, frame, failures)
            rejects.extend(row_rejects)

    valid = frame.drop(index=sorted(bad_rows)).reset_index(drop=True)
    return valid, _rejects_frame(rejects)
