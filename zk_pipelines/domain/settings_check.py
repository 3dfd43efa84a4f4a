"""Resolving every name in the settings against the names that exist in Kaseya and Zomentum.

The catalogs are plain data the caller fills from Kaseya's lookups and Zomentum's pipelines and users, so
`zk settings check`, `zk settings show` and the start of every run share one check with one wording.

Names match exactly, case and spacing included: the pipeline compares them exactly when it meets a status
or stage on a record, so a near match accepted here would fail later, record by record. A name that differs
only in case is offered as the first suggestion. E-mail addresses match case-insensitively, as mail systems
treat them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from zk_pipelines.domain.settings import (
    DOCUMENT_STATUSES,
    IntegrationSettings,
    SettingsError,
    SettingsProblem,
    StageRef,
    product_type_table,
    resolve_export_status,
    resolve_import_stage,
    resolve_quote_status,
    settings_fingerprint,
    stages_mapped_from,
)
from zk_pipelines.domain.settings_file import closest_names
from zk_pipelines.domain.text_table import aligned_columns

# --------------------------------------------------------------------------------------------------------
# What exists in the live systems


@dataclass(frozen=True)
class KaseyaCatalog:
    """Active Kaseya names -> ids, as the lookups return them."""

    opportunity_statuses: Mapping[str, int]  # GET /v2/crm/opportunities/statuses/Lookup
    quote_statuses: Mapping[str, int]  # GET /v2/system/lookup/QuoteStatus
    warehouses: Mapping[str, int]  # GET /v2/inventory/warehouses/lookup
    product_categories: Mapping[str, int]  # GET /v2/inventory/products/categories/lookup
    labour_periods: Mapping[str, int]  # GET /v2/system/lookup/LabourPeriod
    employees: Mapping[str, int]  # e-mail -> employee id, GET /v2/hr/employees/searchselect


@dataclass(frozen=True)
class ZomentumStage:
    id: str
    name: str
    kind: str  # open | won | lost


@dataclass(frozen=True)
class ZomentumPipeline:
    id: str
    name: str
    stages: tuple[ZomentumStage, ...]  # in the pipeline's order
    is_default: bool = False


@dataclass(frozen=True)
class ZomentumCatalog:
    pipelines: tuple[ZomentumPipeline, ...]  # in Zomentum's order: this is the "pipeline order" of ties
    users: Mapping[str, str]  # e-mail -> user id (active users only)

    def stage_order(self) -> tuple[StageRef, ...]:
        return tuple(StageRef(p.name, s.name) for p in self.pipelines for s in p.stages)


# --------------------------------------------------------------------------------------------------------
# The check


def check_settings(
    settings: IntegrationSettings, kaseya: KaseyaCatalog, zomentum: ZomentumCatalog
) -> list[SettingsProblem]:
    """Every name in the settings that does not exist in the live systems, with the closest existing ones."""
    check = _NameCheck(settings.source)
    defaults = settings.product_defaults
    check.name("product_defaults.warehouse", defaults.warehouse, kaseya.warehouses, "Kaseya warehouse")
    check.name("product_defaults.labour_period", defaults.labour_period, kaseya.labour_periods,
               "Kaseya labour period")
    check.name("product_defaults.product_category", defaults.product_category, kaseya.product_categories,
               "Kaseya product category")

    stages = settings.opportunity_stages
    for index, entry in enumerate(stages.entries):
        path = f"opportunity_stages.mapping[{index}]"
        check.stage(path, entry.stage, zomentum)
        check.name(f"{path}.kaseya_status", entry.kaseya_status, kaseya.opportunity_statuses,
                   "Kaseya opportunity status")
    check.stage("opportunity_stages.default_import_stage", stages.default_import_stage, zomentum)
    check.name("opportunity_stages.default_export_status", stages.default_export_status,
               kaseya.opportunity_statuses, "Kaseya opportunity status")

    documents = settings.document_statuses
    for index, status_entry in enumerate(documents.entries):
        check.name(f"document_statuses.mapping[{index}].quote_status", status_entry.quote_status, kaseya.quote_statuses,
                   "Kaseya quote status")
    check.name("document_statuses.default_quote_status", documents.default_quote_status, kaseya.quote_statuses,
               "Kaseya quote status")

    check.email("fallbacks.owner_email", settings.fallbacks.owner_email, zomentum.users, "Zomentum user")
    check.email("fallbacks.sales_representative_email", settings.fallbacks.sales_representative_email,
                kaseya.employees, "Kaseya employee")
    return check.problems


class _NameCheck:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[SettingsProblem] = []

    def unknown(self, path: str, name: str, existing: Sequence[str], what: str, expected: str,
                note: str = "") -> None:
        suggestions = closest_names(name, existing)
        if not suggestions:
            hint = f"no {what} exists at all"
        elif suggestions[0].casefold() == name.casefold():
            hint = f"'{suggestions[0]}' differs only in case; names must match exactly"
        else:
            hint = "closest: " + _quoted(suggestions)
        hint += note
        self.problems.append(SettingsProblem(self.source, path, f"no {what} is named '{name}' ({hint})", expected))

    def name(self, path: str, name: str, existing: Mapping[str, object], what: str) -> None:
        if name not in existing:
            self.unknown(path, name, list(existing), what, f"the exact name of a {what}")

    def email(self, path: str, email: str, existing: Mapping[str, object], what: str) -> None:
        if email.casefold() in {known.casefold() for known in existing}:
            return
        suggestions = closest_names(email, list(existing))
        hint = f"closest: {_quoted(suggestions)}" if suggestions else f"no {what} exists at all"
        self.problems.append(SettingsProblem(self.source, path, f"no {what} has the e-mail '{email}' ({hint})",
                                             f"the e-mail address of an active {what}"))

    def stage(self, path: str, ref: StageRef, zomentum: ZomentumCatalog) -> None:
        pipelines = [p for p in zomentum.pipelines if p.name == ref.pipeline]
        if not pipelines:
            self.unknown(f"{path}.pipeline", ref.pipeline, [p.name for p in zomentum.pipelines],
                         "Zomentum pipeline", "the exact name of a Zomentum pipeline")
            return
        if len(pipelines) > 1:
            ids = ", ".join(p.id for p in pipelines)
            self.problems.append(SettingsProblem(
                self.source, f"{path}.pipeline", f"{len(pipelines)} Zomentum pipelines are named '{ref.pipeline}' "
                f"(ids {ids})", "a pipeline name that is unique in Zomentum (rename the others there)"))
            return
        stages = [s for s in pipelines[0].stages if s.name == ref.stage]
        if not stages:
            elsewhere = [p.name for p in zomentum.pipelines if any(s.name == ref.stage for s in p.stages)]
            note = f"; pipeline {_quoted(elsewhere)} has a stage '{ref.stage}'" if elsewhere else ""
            self.unknown(f"{path}.stage", ref.stage, [s.name for s in pipelines[0].stages],
                         f"stage of pipeline '{ref.pipeline}'",
                         f"the exact name of a stage of Zomentum pipeline '{ref.pipeline}'", note)
        elif len(stages) > 1:
            self.problems.append(SettingsProblem(
                self.source, f"{path}.stage", f"{len(stages)} stages of pipeline '{ref.pipeline}' are named "
                f"'{ref.stage}' (ids {', '.join(s.id for s in stages)})",
                "a stage name that is unique within its pipeline (rename the others in Zomentum)"))


# --------------------------------------------------------------------------------------------------------
# The settings with ids


@dataclass(frozen=True)
class NamedId:
    name: str  # or e-mail address, for users and employees
    id: int | str


@dataclass(frozen=True)
class ResolvedStage:
    pipeline_id: str
    pipeline: str
    stage_id: str
    stage: str
    kind: str

    @property
    def ref(self) -> StageRef:
        return StageRef(self.pipeline, self.stage)

    def __str__(self) -> str:
        return str(self.ref)


@dataclass(frozen=True)
class ResolvedSettings:
    """The settings with every name resolved to its id in the live systems, checked clean."""

    settings: IntegrationSettings
    fingerprint: str
    kaseya: KaseyaCatalog
    zomentum: ZomentumCatalog
    warehouse: NamedId
    labour_period: NamedId
    product_category: NamedId
    default_import_stage: ResolvedStage
    default_export_status: NamedId
    default_quote_status: NamedId
    fallback_owner: NamedId  # Zomentum user
    fallback_sales_representative: NamedId  # Kaseya employee
    stages: tuple[ResolvedStage, ...]  # every stage of every pipeline, in pipeline order

    def stage_by_id(self, stage_id: str) -> ResolvedStage | None:
        return next((stage for stage in self.stages if stage.stage_id == stage_id), None)

    def stage_by_ref(self, ref: StageRef) -> ResolvedStage:
        return next(stage for stage in self.stages if stage.ref == ref)

    def opportunity_status(self, name: str) -> NamedId:
        return NamedId(name, self.kaseya.opportunity_statuses[name])

    def import_stage(self, kaseya_status_id: int, current_stage_id: str | None = None) -> ResolvedStage:
        """The Zomentum stage for a pulled opportunity: `resolve_import_stage` by id. A status id that is not
        in the catalog (created in Kaseya since the check) counts as unmapped."""
        status_name = next((n for n, i in self.kaseya.opportunity_statuses.items() if i == kaseya_status_id), None)
        if status_name is None:
            return self.default_import_stage
        current = self.stage_by_id(current_stage_id) if current_stage_id is not None else None
        ref = resolve_import_stage(self.settings, status_name, current.ref if current else None,
                                   [stage.ref for stage in self.stages])
        return self.stage_by_ref(ref)

    def export_status(self, stage_id: str) -> NamedId:
        """The Kaseya status for a Zomentum stage id; the default export status for an unknown stage."""
        stage = self.stage_by_id(stage_id)
        if stage is None:
            return self.default_export_status
        return self.opportunity_status(resolve_export_status(self.settings, stage.pipeline, stage.stage))

    def quote_status(self, document_status: str) -> NamedId:
        name = resolve_quote_status(self.settings, document_status)
        return NamedId(name, self.kaseya.quote_statuses[name])


def resolve_settings(
    settings: IntegrationSettings, kaseya: KaseyaCatalog, zomentum: ZomentumCatalog
) -> ResolvedSettings:
    """Resolve every name to its id; raises `SettingsError` with the problems of `check_settings`."""
    problems = check_settings(settings, kaseya, zomentum)
    if problems:
        raise SettingsError(problems)
    stages = tuple(
        ResolvedStage(p.id, p.name, s.id, s.name, s.kind) for p in zomentum.pipelines for s in p.stages
    )
    defaults = settings.product_defaults
    users = {email.casefold(): (email, user_id) for email, user_id in zomentum.users.items()}
    employees = {email.casefold(): (email, employee_id) for email, employee_id in kaseya.employees.items()}
    return ResolvedSettings(
        settings=settings,
        fingerprint=settings_fingerprint(settings),
        kaseya=kaseya,
        zomentum=zomentum,
        warehouse=NamedId(defaults.warehouse, kaseya.warehouses[defaults.warehouse]),
        labour_period=NamedId(defaults.labour_period, kaseya.labour_periods[defaults.labour_period]),
        product_category=NamedId(defaults.product_category, kaseya.product_categories[defaults.product_category]),
        default_import_stage=next(s for s in stages if s.ref == settings.opportunity_stages.default_import_stage),
        default_export_status=NamedId(
            settings.opportunity_stages.default_export_status,
            kaseya.opportunity_statuses[settings.opportunity_stages.default_export_status],
        ),
        default_quote_status=NamedId(
            settings.document_statuses.default_quote_status,
            kaseya.quote_statuses[settings.document_statuses.default_quote_status],
        ),
        fallback_owner=NamedId(*users[settings.fallbacks.owner_email.casefold()]),
        fallback_sales_representative=NamedId(*employees[settings.fallbacks.sales_representative_email.casefold()]),
        stages=stages,
    )


# --------------------------------------------------------------------------------------------------------
# Rendering for `zk settings check` / `zk settings show`


def render_problems(problems: Sequence[SettingsProblem]) -> str:
    if not problems:
        return "settings check passed: every name exists in Kaseya and Zomentum"
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return "\n".join([*(problem.line() for problem in problems), f"{count} in {problems[0].source}"])


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def render_settings(resolved: ResolvedSettings) -> str:
    """The effective settings with the ids they resolve to, every default spelt out, and the fixed
    product type table."""
    settings = resolved.settings
    sync = settings.sync
    lines = [
        *aligned_columns([
            ["settings file", settings.source],
            ["fingerprint", resolved.fingerprint],
            ["mode", f"{settings.mode}: {settings.mode.description}"],
            ["pull covers", ", ".join(sync.families()) or "nothing"],
            ["push quotations to Kaseya on document Won", "yes" if sync.push_quotes_on_won else "no"],
            ["bundle mode", f"{settings.bundle_mode}: {settings.bundle_mode.description}"],
        ], indent=""),
        "",
        "Defaults for products created in Kaseya",
        *aligned_columns([
            [label, named.name, f"Kaseya id {named.id}"]
            for label, named in (("warehouse", resolved.warehouse), ("labour period", resolved.labour_period),
                                 ("product category", resolved.product_category))
        ]),
        "",
        "Opportunity stage -> Kaseya opportunity status (export)",
    ]
    export_rows = []
    mapped = {entry.stage for entry in settings.opportunity_stages.entries}
    for stage in resolved.stages:
        status = resolved.export_status(stage.stage_id)
        export_rows.append([str(stage), f"[{stage.kind}]", f"id {stage.stage_id}", "->", status.name,
                            f"id {status.id}", "" if stage.ref in mapped else "(default)"])
    lines += aligned_columns(export_rows) if export_rows else ["  (Zomentum has no pipelines)"]

    lines += ["", "Kaseya opportunity status -> opportunity stage (import)"]
    order = {stage.ref: index for index, stage in enumerate(resolved.stages)}
    import_rows = []
    for name, status_id in resolved.kaseya.opportunity_statuses.items():
        candidates = sorted(stages_mapped_from(settings, name), key=lambda ref: order[ref])
        if not candidates:
            default = resolved.default_import_stage
            import_rows.append([name, f"id {status_id}", "->", f"{default} (id {default.stage_id}) (default)"])
            continue
        targets = ", ".join(f"{ref} (id {resolved.stage_by_ref(ref).stage_id})" for ref in candidates)
        import_rows.append([name, f"id {status_id}", "->", targets + (" *" if len(candidates) > 1 else "")])
    lines += aligned_columns(import_rows) if import_rows else ["  (Kaseya has no opportunity statuses)"]
    if any(row[-1].endswith(" *") for row in import_rows):
        lines.append("  * mapped from several stages: an opportunity keeps its current stage if it is one of them, "
                     "else takes the first of them in its own pipeline, else the first listed")

    lines += ["", "Document status -> Kaseya quote status"]
    mapped_documents = {entry.document_status for entry in settings.document_statuses.entries}
    lines += aligned_columns([
        [status, "->", (quote := resolved.quote_status(status)).name, f"id {quote.id}",
         "" if status in mapped_documents else "(default)"]
        for status in DOCUMENT_STATUSES
    ])

    lines += ["", "Zomentum product type -> Kaseya item type (fixed)"]
    lines += aligned_columns([[product_type, becomes]
                              for product_type, becomes in product_type_table(settings.bundle_mode)])

    lines += ["", "When no user matches by e-mail"]
    lines += aligned_columns([
        ["owner (Zomentum user)", resolved.fallback_owner.name, f"id {resolved.fallback_owner.id}"],
        ["sales representative (Kaseya employee)", resolved.fallback_sales_representative.name,
         f"id {resolved.fallback_sales_representative.id}"],
    ])

    lines += ["", "Links"]
    for label, links in (("Kaseya", settings.links.kaseya), ("Zomentum", settings.links.zomentum)):
        base = links.base_url or f"{{{label.upper()}_BASE_URL}}"
        lines.append(f"  {label} at {links.base_url or 'the configured address (' + label.upper() + '_BASE_URL)'}")
        lines += aligned_columns([[entity, template.replace("{base_url}", base)]
                                  for entity, template in links.templates], indent="    ")
    return "\n".join(lines)
