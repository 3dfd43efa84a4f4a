"""Reading and validating the settings file (`ZK_SETTINGS`) into `IntegrationSettings` (`settings.py`, the model
and its rules): YAML read safely (repeated keys reported), every problem found at once, each naming its key
path, what it is and what was expected, with the closest known names for a misspelt one."""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import yaml

from zk_pipelines.domain.entities import SYNC_FAMILIES
from zk_pipelines.domain.settings import (
    DEFAULT_KASEYA_LINK_TEMPLATES,
    DEFAULT_ZOMENTUM_LINK_TEMPLATES,
    DOCUMENT_STATUSES,
    BundleMode,
    DocumentQuoteStatus,
    DocumentStatusMapping,
    Fallbacks,
    IntegrationMode,
    IntegrationSettings,
    Links,
    OpportunityStageMapping,
    ProductDefaults,
    SettingsError,
    SettingsProblem,
    StageRef,
    StageStatus,
    SyncSelection,
    SystemLinks,
)


def load_settings(path: str | PathLike[str]) -> IntegrationSettings:
    """Read and validate a settings file; raises `SettingsError` listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError([SettingsProblem(source, "(file)", "does not exist",
                                             "a YAML settings file (ZK_SETTINGS names it)")]) from None
    except UnicodeDecodeError:
        raise SettingsError([SettingsProblem(source, "(file)", "is not UTF-8 text", "a YAML settings file")]) from None
    except OSError as exc:
        raise SettingsError([SettingsProblem(source, "(file)", f"cannot be read ({exc.strerror})",
                                             "a readable YAML settings file")]) from None
    return settings_from_text(text, source)


def settings_from_text(text: str, source: str = "<settings>") -> IntegrationSettings:
    """Validate the text of a settings file (`source` names it in the problems); raises `SettingsError`."""
    too_deep = SettingsError([SettingsProblem(source, "(file)", "nests too deep to be read",
                                              "a YAML mapping a few levels deep")])
    try:
        data = yaml.load(text, Loader=_SettingsLoader)  # a SafeLoader that also reports repeated keys
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        if problem == LIBYAML_TOO_DEEP:
            raise too_deep from None
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise SettingsError([SettingsProblem(source, where, f"is not valid YAML ({problem})",
                                             "a YAML mapping")]) from None
    except RecursionError:
        # PyYAML builds nested values recursively; settings nest a few levels, a file nested thousands deep is
        # not settings (and would otherwise end in Python's recursion limit).
        raise too_deep from None
    except (ValueError, OverflowError) as exc:
        # A plain scalar YAML reads as a date or a number that does not exist (`2026-13-45`, `1e999999`...).
        raise SettingsError([SettingsProblem(source, "(file)", f"has a value YAML cannot read ({exc})",
                                             "valid YAML; quote a value that is text")]) from None
    return parse_settings(data, source=source)


def parse_settings(data: object, source: str = "<settings>") -> IntegrationSettings:
    """Validate already-parsed YAML (a mapping) into settings; raises `SettingsError` listing every problem."""
    reader = _Reader(source)
    settings = reader.settings(data)
    if reader.problems or settings is None:
        raise SettingsError(reader.problems)
    return settings


class _YamlMapping(dict):
    """A YAML mapping that remembers keys given twice (plain YAML keeps the last one silently)."""

    def __init__(self) -> None:
        super().__init__()
        self.repeated: list[tuple[object, int, int]] = []  # (key, first line, repeated line)


# libyaml's parser where PyYAML was built with it (the wheels are): the same safe constructors, ~10x less CPU to
# read a file, which every run reads (its settings, and a deployment's registry at each run's start).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# libyaml stops at its own depth limit (1,000) with this problem, where the pure-Python parser hits Python's
# recursion limit: both are "nests too deep".
LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"


class _SettingsLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    pass


def _construct_mapping(loader: _SettingsLoader, node: yaml.MappingNode) -> _YamlMapping:
    # Keys a YAML merge (`<<: *anchor`) brings in may be overridden; only keys written twice are mistakes.
    written = {id(key_node) for key_node, _ in node.value}
    loader.flatten_mapping(node)
    result = _YamlMapping()
    first_line: dict[object, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found an unhashable key", key_node.start_mark
            ) from None
        line = key_node.start_mark.line + 1
        if key in first_line:
            result.repeated.append((key, first_line[key], line))
        elif id(key_node) in written:
            first_line[key] = line
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_SettingsLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# For the project's other YAML files (the tenant registry): a SafeLoader whose mappings list keys written twice.
RepeatedKeysLoader = _SettingsLoader
YamlMapping = _YamlMapping

_TOP_LEVEL = "(top level)"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_BASE_URL = re.compile(r"https?://[^/\s]+(/\S*)?")
_QUOTE_HINT = " (quote it if YAML reads it as a number or true/false)"


def _child(path: str, key: str) -> str:
    return key if path == _TOP_LEVEL else f"{path}.{key}"


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"true/false ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"text ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} ({value!r})"


def closest_names(name: str, candidates: Sequence[str], limit: int = 3, cutoff: float = 0.0) -> list[str]:
    """Up to `limit` candidates closest to `name`, a case-insensitive match first. Used to suggest what a
    misspelt key or name was meant to be."""
    folded = name.casefold()
    exact_but_case = [c for c in candidates if c.casefold() == folded and c != name]
    scored = sorted(
        ((difflib.SequenceMatcher(None, folded, c.casefold()).ratio(), c) for c in candidates
         if c not in exact_but_case and c != name),
        key=lambda pair: (-pair[0], pair[1]),
    )
    ranked = exact_but_case + [c for score, c in scored if score >= cutoff]
    return ranked[:limit]


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


class _Reader:
    """Walks the parsed YAML, collecting every problem instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[SettingsProblem] = []

    def fail(self, path: str, message: str, expected: str) -> None:
        self.problems.append(SettingsProblem(self.source, path, message, expected))

    def section(self, parent: Mapping[Any, Any], key: str, path: str, keys: Sequence[str],
                *, required: bool = True) -> Mapping[Any, Any] | None:
        """The mapping under `key`, checked for unknown and repeated keys; None when absent or malformed."""
        here = _child(path, key)
        value = parent.get(key)
        if value is None:
            if required:
                self.fail(here, "missing", f"a mapping with keys {', '.join(keys)}")
            return None
        return self.mapping(value, here, keys)

    def mapping(self, value: object, path: str, keys: Sequence[str]) -> Mapping[Any, Any] | None:
        if not isinstance(value, dict):
            self.fail(path, f"is {_describe(value)}", f"a mapping with keys {', '.join(keys)}")
            return None
        for key, first, again in getattr(value, "repeated", ()):
            self.fail(_child(path, str(key)), f"is given twice (lines {first} and {again})", "each key once")
        for key in value:
            if key not in keys:
                suggestion = closest_names(str(key), keys, limit=1, cutoff=0.6)
                hint = f" (did you mean '{suggestion[0]}'?)" if suggestion else ""
                self.fail(_child(path, str(key)), f"unknown key{hint}", f"one of {', '.join(keys)}")
        return value

    def text(self, parent: Mapping[Any, Any], key: str, path: str, expected: str,
             *, default: str | None = None) -> str | None:
        here = _child(path, key)
        value = parent.get(key)
        if value is None:
            if default is None:
                self.fail(here, "missing", expected)
            return default
        if not isinstance(value, str):
            self.fail(here, f"is {_describe(value)}", expected + _QUOTE_HINT)
            return None
        if not value.strip():
            self.fail(here, "is empty", expected)
            return None
        return value

    def boolean(self, parent: Mapping[Any, Any], key: str, path: str, expected: str) -> bool | None:
        here = _child(path, key)
        value = parent.get(key)
        if value is None:
            self.fail(here, "missing", expected)
            return None
        if not isinstance(value, bool):
            self.fail(here, f"is {_describe(value)}", expected)
            return None
        return value

    def choice(self, parent: Mapping[Any, Any], key: str, path: str, choices: Sequence[str],
               what: str) -> str | None:
        expected = f"{what}: one of {', '.join(choices)}"
        value = self.text(parent, key, path, expected)
        if value is None:
            return None
        if value not in choices:
            self.fail(_child(path, key), f"'{value}' is not {what} (closest: {_quoted(closest_names(value, choices))})",
                      expected)
            return None
        return value

    def email(self, parent: Mapping[Any, Any], key: str, path: str, expected: str) -> str | None:
        value = self.text(parent, key, path, expected)
        if value is not None and not _EMAIL.fullmatch(value):
            self.fail(_child(path, key), f"'{value}' is not an e-mail address", expected)
            return None
        return value

    def first_mapping(self, first: dict[Any, tuple[str, str]], key: Any, value: str, path: str,
                      names: tuple[str, str], expected: str) -> bool:
        """Whether this is `key`'s only mapping so far (recorded in `first`: key -> (key path, value)); a
        second one fails, naming both (`names`: what the key and the value are)."""
        if key in first:
            earlier_path, earlier_value = first[key]
            self.fail(path, f"{names[0]} '{key}' is mapped to {names[1]} '{earlier_value}' by {earlier_path} "
                            f"and to '{value}' here", expected)
            return False
        first[key] = (path, value)
        return True

    def entries(self, parent: Mapping[Any, Any], key: str, path: str, expected: str) -> list[tuple[str, Any]]:
        """(key path, item) for each item of the list under `key`; an empty list is allowed."""
        here = _child(path, key)
        value = parent.get(key)
        if value is None:
            self.fail(here, "missing", expected + " (an empty list [] is allowed)")
            return []
        if not isinstance(value, list):
            self.fail(here, f"is {_describe(value)}", expected)
            return []
        return [(f"{here}[{index}]", item) for index, item in enumerate(value)]

    # -- the sections, in file order --------------------------------------------------------------------

    def settings(self, data: object) -> IntegrationSettings | None:
        top = self.mapping(data if data is not None else {}, _TOP_LEVEL, _TOP_LEVEL_KEYS)
        if top is None:
            return None
        mode_name = self.choice(top, "mode", _TOP_LEVEL, [m.value for m in IntegrationMode], "an integration mode")
        mode = IntegrationMode(mode_name) if mode_name else None
        sync = self.sync(top, mode)
        product_defaults = self.product_defaults(top)
        opportunity_stages = self.opportunity_stages(top)
        document_statuses = self.document_statuses(top)
        bundle_name = self.choice(top, "bundle_mode", _TOP_LEVEL, [m.value for m in BundleMode], "a bundle mode")
        fallbacks = self.fallbacks(top)
        links = self.links(top)
        if (mode is None or sync is None or product_defaults is None or opportunity_stages is None
                or document_statuses is None or bundle_name is None or fallbacks is None or links is None):
            return None
        return IntegrationSettings(
            mode=mode, sync=sync, product_defaults=product_defaults, opportunity_stages=opportunity_stages,
            document_statuses=document_statuses, bundle_mode=BundleMode(bundle_name), fallbacks=fallbacks,
            links=links, source=self.source,
        )

    def sync(self, top: Mapping[Any, Any], mode: IntegrationMode | None) -> SyncSelection | None:
        keys = (*SYNC_FAMILIES, "push_quotes_on_won")
        section = self.section(top, "sync", _TOP_LEVEL, keys)
        if section is None:
            return None
        values = {key: self.boolean(section, key, "sync", "true or false") for key in keys}
        given = {key: value for key, value in values.items() if value is not None}
        if len(given) < len(values):
            return None
        return SyncSelection({family: given[family] for family in SYNC_FAMILIES}, given["push_quotes_on_won"])

    def product_defaults(self, top: Mapping[Any, Any]) -> ProductDefaults | None:
        expected = {
            "warehouse": "the name of a Kaseya warehouse",
            "labour_period": "the name of a Kaseya labour period",
            "product_category": "the name of a Kaseya product category",
        }
        section = self.section(top, "product_defaults", _TOP_LEVEL, tuple(expected))
        if section is None:
            return None
        values = {key: self.text(section, key, "product_defaults", form) for key, form in expected.items()}
        given = {key: value for key, value in values.items() if value is not None}
        if len(given) < len(values):
            return None
        return ProductDefaults(**given)

    def stage_ref(self, value: object, path: str) -> StageRef | None:
        entry = self.mapping(value, path, ("pipeline", "stage"))
        if entry is None:
            return None
        pipeline = self.text(entry, "pipeline", path, "the name of a Zomentum pipeline")
        stage = self.text(entry, "stage", path, "the name of a stage of that pipeline")
        return StageRef(pipeline, stage) if pipeline is not None and stage is not None else None

    def opportunity_stages(self, top: Mapping[Any, Any]) -> OpportunityStageMapping | None:
        path = "opportunity_stages"
        section = self.section(top, path, _TOP_LEVEL, ("mapping", "default_import_stage", "default_export_status"))
        if section is None:
            return None
        entries: list[StageStatus] = []
        first_mapping: dict[StageRef, tuple[str, str]] = {}  # stage -> (key path, Kaseya status)
        broken = False
        for entry_path, item in self.entries(section, "mapping", path,
                                             "a list of {pipeline, stage, kaseya_status}"):
            entry = self.mapping(item, entry_path, ("pipeline", "stage", "kaseya_status"))
            if entry is None:
                broken = True
                continue
            pipeline = self.text(entry, "pipeline", entry_path, "the name of a Zomentum pipeline")
            stage = self.text(entry, "stage", entry_path, "the name of a stage of that pipeline")
            status = self.text(entry, "kaseya_status", entry_path, "the name of a Kaseya opportunity status")
            if pipeline is None or stage is None or status is None:
                broken = True
                continue
            ref = StageRef(pipeline, stage)
            if not self.first_mapping(first_mapping, ref, status, entry_path, ("stage", "Kaseya status"),
                                      "one Kaseya status per Zomentum stage (one Kaseya status may be mapped from "
                                      "several stages, not the reverse)"):
                broken = True
                continue
            entries.append(StageStatus(ref, status))
        default_stage = None
        if section.get("default_import_stage") is None:
            self.fail(f"{path}.default_import_stage", "missing", "a mapping with keys pipeline, stage")
        else:
            default_stage = self.stage_ref(section["default_import_stage"], f"{path}.default_import_stage")
        default_status = self.text(section, "default_export_status", path, "the name of a Kaseya opportunity status")
        if broken or default_stage is None or default_status is None:
            return None
        return OpportunityStageMapping(tuple(entries), default_stage, default_status)

    def document_statuses(self, top: Mapping[Any, Any]) -> DocumentStatusMapping | None:
        path = "document_statuses"
        section = self.section(top, path, _TOP_LEVEL, ("mapping", "default_quote_status"))
        if section is None:
            return None
        entries: list[DocumentQuoteStatus] = []
        first_mapping: dict[str, tuple[str, str]] = {}
        broken = False
        for entry_path, item in self.entries(section, "mapping", path, "a list of {document_status, quote_status}"):
            entry = self.mapping(item, entry_path, ("document_status", "quote_status"))
            if entry is None:
                broken = True
                continue
            document_status = self.choice(entry, "document_status", entry_path, DOCUMENT_STATUSES,
                                          "a Zomentum document status")
            quote_status = self.text(entry, "quote_status", entry_path, "the name of a Kaseya quote status")
            if document_status is None or quote_status is None:
                broken = True
                continue
            if not self.first_mapping(first_mapping, document_status, quote_status, entry_path,
                                      ("document status", "Kaseya quote status"),
                                      "one Kaseya quote status per document status (one quote status may be "
                                      "mapped from several document statuses, not the reverse)"):
                broken = True
                continue
            entries.append(DocumentQuoteStatus(document_status, quote_status))
        default_status = self.text(section, "default_quote_status", path, "the name of a Kaseya quote status")
        if broken or default_status is None:
            return None
        return DocumentStatusMapping(tuple(entries), default_status)

    def fallbacks(self, top: Mapping[Any, Any]) -> Fallbacks | None:
        section = self.section(top, "fallbacks", _TOP_LEVEL, ("owner_email", "sales_representative_email"))
        if section is None:
            return None
        owner = self.email(section, "owner_email", "fallbacks", "the e-mail address of a Zomentum user")
        sales_rep = self.email(section, "sales_representative_email", "fallbacks",
                               "the e-mail address of a Kaseya employee")
        if owner is None or sales_rep is None:
            return None
        return Fallbacks(owner, sales_rep)

    def links(self, top: Mapping[Any, Any]) -> Links | None:
        systems = {
            "kaseya": (None, DEFAULT_KASEYA_LINK_TEMPLATES),
            "zomentum": (None, DEFAULT_ZOMENTUM_LINK_TEMPLATES),
        }
        section = self.section(top, "links", _TOP_LEVEL, tuple(systems), required=False) or {}
        built: dict[str, SystemLinks | None] = {}
        for system, (default_base, default_templates) in systems.items():
            path = f"links.{system}"
            keys = ("base_url", *default_templates)
            part = self.section(section, system, "links", keys, required=False) or {}
            given = part.get("base_url") is not None
            base_url = self.text(part, "base_url", path, "an http(s) address") if given else default_base
            if base_url is not None and not _BASE_URL.fullmatch(base_url):
                self.fail(f"{path}.base_url", f"'{base_url}' is not an http(s) address",
                          "an address such as https://example.com")
                base_url = None
            templates = []
            for entity, default_template in default_templates.items():
                template = self.text(part, entity, path, "a link template containing {id}", default=default_template)
                if template is not None and self.link_template(template, f"{path}.{entity}"):
                    templates.append((entity, template))
            valid_base = base_url is not None or not given
            complete = valid_base and len(templates) == len(default_templates)
            built[system] = (SystemLinks(base_url.rstrip("/") if base_url else None, tuple(templates))
                             if complete else None)
        if built["kaseya"] is None or built["zomentum"] is None:
            return None
        return Links(kaseya=built["kaseya"], zomentum=built["zomentum"])

    def link_template(self, template: str, path: str) -> bool:
        expected = "a link template using only {base_url} and {id}, with {id}, e.g. {base_url}/crm/accounts/{id}"
        try:
            parsed = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                      if name is not None]
        except ValueError as exc:
            self.fail(path, f"'{template}' is not a valid template ({exc})", expected)
            return False
        fields = {name for name, _, _ in parsed}
        # `{id:x}` or `{id!r}` passes the check of names and then fails on every link it makes (an `x` format
        # of a text id): only the placeholders themselves are filled in.
        formatted = [name for name, spec, conversion in parsed if spec or conversion]
        if formatted:
            self.fail(path, f"'{template}' formats {{{formatted[0]}}} (a format spec or conversion)", expected)
            return False
        unknown = sorted(fields - {"base_url", "id"})
        if unknown or "id" not in fields:
            what = f"uses unknown placeholder {{{unknown[0]}}}" if unknown else "has no {id}"
            self.fail(path, f"'{template}' {what}", expected)
            return False
        return True


_TOP_LEVEL_KEYS = ("mode", "sync", "product_defaults", "opportunity_stages", "document_statuses", "bundle_mode",
                   "fallbacks", "links")
