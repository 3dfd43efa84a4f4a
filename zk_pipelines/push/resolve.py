"""Step 1-3 of a push, decided before anything is written: the document's client, contact, owner,
opportunity, quote and catalogue items resolved to Kaseya records (found, or to be created), and the
ordered writes that make Kaseya match the document.

Every record is looked for before it is planned as a create, so that a push interrupted between a Kaseya
create and the ledger write, or whose answer was lost, finds what it created and adopts it:
- account: the id map, else an account with the client's exact name;
- contact: the id map, else a contact of the account with the same e-mail (else the same first and last
  name, for a contact without an e-mail);
- opportunity: the id map, else an opportunity of the account whose description carries the document
  marker;
- quote: the quote an earlier push of the document wrote (the push ledger), else a quote of the account
  whose name carries the document marker;
- catalogue item: a product with the line's product number (the id map first, for items the pull paired),
  a service with the line's item name;
- quote lines: by the line key each carries in `ExtDistReference`
  (`domain.push_plan.quote_lines.reconcile_quote_lines`).

Reads only: the dry run is this module plus `render_plan`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from zk_pipelines.clients.http import NotFound
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum_models import parse_timestamp
from zk_pipelines.domain.bundles import PlannedLine, PushPlanError, document_amount, plan_quote_lines, to_cents
from zk_pipelines.domain.push_plan.accounts import AccountDefaults, account_body, contact_body
from zk_pipelines.domain.push_plan.bodies import (
    OPPORTUNITY_FIELDS,
    QUOTE_FIELDS,
    OpportunityDefaults,
    OpportunityFields,
    QuoteFields,
    opportunity_body,
    opportunity_request,
    quote_body,
    quote_request,
)
from zk_pipelines.domain.push_plan.catalogue import (
    CatalogueDefaults,
    catalogue_pending_id,
    catalogue_request,
    is_catalogue_product,
    match_product,
    match_service,
    product_number,
)
from zk_pipelines.domain.push_plan.markers import document_markers
from zk_pipelines.domain.push_plan.overrides import PushOverrides
from zk_pipelines.domain.push_plan.plan import PushPlan
from zk_pipelines.domain.push_plan.quote_lines import quote_line_requests, reconcile_quote_lines
from zk_pipelines.domain.push_plan.readback import readback_differences
from zk_pipelines.domain.push_plan.requests import KaseyaId, PendingId, PlannedRequest, planned_request
from zk_pipelines.domain.push_plan.resolutions import (
    Resolution,
    opportunity_status_for,
    quote_status_for,
    sales_representative_for,
)
from zk_pipelines.domain.settings_check import ResolvedSettings
from zk_pipelines.push.catalogue import KaseyaCatalogue
from zk_pipelines.push.document import ZomentumDocument
from zk_pipelines.push.failures import PushFailed

# Audit-log entities of the push (the pull's names where the pull has the entity).
CLIENTS, CLIENT_USERS, OPPORTUNITIES, QUOTES, ITEMS, QUOTE_LINES = (
    "clients", "client_users", "opportunities", "quotes", "items", "quote_lines")
CREATED, UPDATED, RETIRED = "created", "updated", "retired"

NEW_ACCOUNT = PendingId("account")
NEW_MAIN_LOCATION = PendingId("main location of the new account")
NEW_CONTACT = PendingId("contact")
NEW_OPPORTUNITY = PendingId("opportunity")
NEW_QUOTE = PendingId("quote")


@dataclass(frozen=True)
class PushStep:
    """One planned Kaseya write and what it means: the record it writes (`record_key`: "account",
    "opportunity", "product HW-1", "line zk:D:L1", ...), the placeholder its answer fills, and the id-map
    pair it makes."""

    request: PlannedRequest
    entity: str
    record_key: str
    action: str  # created | updated | retired
    creates: PendingId | None = None
    main_location: PendingId | None = None  # an account create: its main location's id comes back too
    zomentum_id: str | None = None
    id_map_entity: str | None = None
    changed_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class FoundRecord:
    """A Kaseya record the push uses as it is found (and may update)."""

    record_key: str
    entity: str
    kaseya_id: int
    how: str
    zomentum_id: str | None = None
    id_map_entity: str | None = None
    searched: bool = False  # found by a search (name, marker, number), not through the id map or the ledger


@dataclass(frozen=True)
class KnownIds:
    """What the tenant's DuckDB already knows: Kaseya ids paired (by the pull or an earlier push) with the
    document's Zomentum records, and the quote an earlier push of the document wrote."""

    account: int | None = None
    contact: int | None = None
    opportunity: int | None = None
    products: Mapping[str, int] = field(default_factory=dict)  # Zomentum item id -> ProductIndexId
    quote: int | None = None


@dataclass(frozen=True)
class PreparedPush:
    source: ZomentumDocument
    resolved: ResolvedSettings
    plan: PushPlan
    steps: tuple[PushStep, ...]
    found: tuple[FoundRecord, ...]
    account: KaseyaId
    contact: KaseyaId | None
    opportunity: KaseyaId
    opportunity_body: Mapping[str, Any]
    quote: KaseyaId | None = None
    quote_body: Mapping[str, Any] | None = None
    quote_lines: tuple[PlannedLine, ...] = ()
    item_ids: Mapping[str, KaseyaId] = field(default_factory=dict)  # line key -> catalogue item


def _rows_by_name(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    return {str(row["name"]): int(row["id"]) for row in rows if row.get("isActive", True) is not False}


class KaseyaLookups:
    """The Kaseya lookup tables a push needs, by name, from the push's catalogue (each read at most once)."""

    def __init__(self, catalogue: KaseyaCatalogue) -> None:
        self._catalogue = catalogue

    def rows(self, table: str) -> list[Any]:
        return self._catalogue.rows(table)

    def ids(self, table: str) -> dict[str, int]:
        return _rows_by_name(self.rows(table))

    def default_id(self, table: str) -> int:
        """The row Kaseya marks as the default, else the first active one."""
        active = [row for row in self.rows(table) if row.get("isActive", True) is not False]
        if not active:
            raise PushPlanError(f"Kaseya's lookup table {table} has no active row")
        return int(next((row for row in active if row.get("isDefault")), active[0])["id"])


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _moment(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None


def _main_location(account: Mapping[str, Any]) -> int:
    locations = list(account.get("locations") or [])
    if not locations:
        raise PushPlanError(f"Kaseya account {account['id']} ({account.get('accountName')}) has no location; "
                            "add one in Kaseya")
    return int(next((loc for loc in locations if loc.get("isMain")), locations[0])["id"])


def _known_record(read: Callable[[int], Any], kaseya_id: int | None) -> Any:
    """The Kaseya record an earlier pull or push paired with the document's, or None (none paired, or gone)."""
    if kaseya_id is None:
        return None
    try:
        return read(kaseya_id)
    except NotFound:
        return None


@dataclass(frozen=True)
class _DocumentRecord:
    """A Kaseya record written for the document itself (its opportunity, its quote): where the pairing with the
    document is kept, how it is found again through the document marker, and how it is written."""

    key: str  # the step's record key, and the word for the record in resolutions
    entity: str  # the audit-log entity
    pending: PendingId  # the placeholder a create fills
    request: Callable[[int | None, Mapping[str, Any]], PlannedRequest]  # (None: a create; an id: an update)
    readback_fields: Sequence[str]  # compared with what Kaseya holds to decide an update
    paired_by: str  # where the pairing with the document is kept
    pairs_in_id_map: bool
    read: Callable[[KaseyaClient, int], Any]
    account_rows: Callable[[KaseyaClient, int], Iterable[Mapping[str, Any]]]
    marked_in: str  # the field of the account's records that carries the document marker
    rows_are_summaries: bool = False  # a matched row is read again whole before it is compared


OPPORTUNITY = _DocumentRecord(
    "opportunity", OPPORTUNITIES, NEW_OPPORTUNITY, opportunity_request, OPPORTUNITY_FIELDS, "id map", True,
    read=lambda kaseya, kaseya_id: kaseya.opportunity(kaseya_id),
    account_rows=lambda kaseya, account: kaseya.paginate("opportunities", {"Filter.AccountId": account}),
    marked_in="description")
QUOTE = _DocumentRecord(
    "quote", QUOTES, NEW_QUOTE, quote_request, QUOTE_FIELDS, "push ledger", False,
    read=lambda kaseya, kaseya_id: kaseya.quote(kaseya_id),
    account_rows=lambda kaseya, account: kaseya.iter_quotes(AccountId=account),
    marked_in="name", rows_are_summaries=True)


class _Planner:
    def __init__(self, kaseya: KaseyaClient, source: ZomentumDocument, resolved: ResolvedSettings,
                 overrides: PushOverrides, known: KnownIds, status_probabilities: Mapping[int, float],
                 catalogue: KaseyaCatalogue) -> None:
        self.kaseya = kaseya
        self.source = source
        self.resolved = resolved
        self.overrides = overrides
        self.known = known
        self.status_probabilities = status_probabilities
        self.lookups = KaseyaLookups(catalogue)
        self.steps: list[PushStep] = []
        self.found: list[FoundRecord] = []
        self.resolutions: list[Resolution] = []
        self.notes: list[str] = []

    def step(self, step: PushStep) -> None:
        self.steps.append(step)

    def use(self, record: FoundRecord) -> None:
        self.found.append(record)

    # --- the account and its contact ----------------------------------------------------------------

    def account(self) -> tuple[KaseyaId, KaseyaId]:
        """(account, main location) of the document's client; a new account is managed by the Kaseya
        employee with the client owner's e-mail, else the fallback sales representative."""
        client = self.source.client
        name = (client.get("name") or "").strip()
        client_id = str(client["id"])
        what = f"client {name}"
        record, how, searched = _known_record(self.kaseya.account, self.known.account), "id map", False
        if record is None and name:
            rows = self.kaseya.paginate("accounts", {"Filter.AccountName": name})
            record = next((row for row in rows if str(row.get("accountName") or "").strip().casefold()
                           == name.casefold()), None)
            how, searched = "same name", True
        if record is not None:
            account_id = int(record["id"])
            self.use(FoundRecord("account", CLIENTS, account_id, how, client_id, CLIENTS, searched))
            self.resolutions.append(Resolution(what, f"account {record.get('accountName')} (id {account_id})", how))
            return account_id, _main_location(record)
        owner_id, _ = sales_representative_for(self.source.client_owner_email, self.resolved)
        defaults = AccountDefaults(account_type_ids=self.lookups.ids("account_types"),
                                   business_type_id=self.lookups.default_id("BusinessType"),
                                   account_manager_id=owner_id)
        self.step(PushStep(planned_request("create_account", f"create account {name!r} with its main location",
                                           account_body(client, defaults)),
                           CLIENTS, "account", CREATED, NEW_ACCOUNT, NEW_MAIN_LOCATION, client_id, CLIENTS))
        self.resolutions.append(Resolution(what, "a new account with its main location",
                                           "Kaseya has no account of that name"))
        return NEW_ACCOUNT, NEW_MAIN_LOCATION

    def contact(self, account: KaseyaId, location: KaseyaId) -> KaseyaId | None:
        person = self.source.contact
        if person is None:
            self.resolutions.append(Resolution("contact (none)", "no contact", "the document and its opportunity "
                                                                                "name no contact"))
            return None
        person_id = str(person["id"])
        names = person.get("name") or {}
        first, last = (names.get("first") or "").strip(), (names.get("last") or "").strip()
        email = (person.get("email") or "").strip()
        what = f"contact {first} {last}".strip() + (f" <{email}>" if email else "")
        record, how, searched = _known_record(self.kaseya.contact, self.known.contact), "id map", False
        if record is not None and account != int(record["accountId"]):
            record = None  # paired with a contact of another account: this account needs its own
        if record is None and isinstance(account, int):
            if email:
                rows = self.kaseya.search_contacts(AccountIds=account, EmailAddress=email)
                record = next((row for row in rows
                               if str(row.get("emailAddress") or "").casefold() == email.casefold()), None)
                how = "same e-mail"
            else:
                rows = self.kaseya.search_contacts(AccountIds=account, FirstName=first, LastName=last)
                record = next((row for row in rows if (str(row.get("firstName")).casefold(),
                                                       str(row.get("lastName")).casefold())
                               == (first.casefold(), last.casefold())), None)
                how = "same first and last name"
            searched = True
        if record is not None:
            contact_id = int(record["id"])
            self.use(FoundRecord("contact", CLIENT_USERS, contact_id, how, person_id, CLIENT_USERS, searched))
            self.resolutions.append(Resolution(what, f"contact id {contact_id}", how))
            return contact_id
        body = contact_body(person, account_id=account, location_id=location,
                            email_type_id=self.lookups.default_id("EmailType"),
                            phone_type_id=self.lookups.default_id("PhoneType"))
        self.step(PushStep(planned_request("create_contact", f"create contact {first} {last}", body),
                           CLIENT_USERS, "contact", CREATED, NEW_CONTACT, None, person_id, CLIENT_USERS))
        self.resolutions.append(Resolution(what, "a new contact of the account", "the account has no such contact"))
        return NEW_CONTACT

    # --- the document's own records (its opportunity, its quote): found and written alike -------------

    def _existing(self, record: _DocumentRecord, paired_id: int | None, account: KaseyaId) -> tuple[Any, str, bool]:
        """(the Kaseya record that stands for the document, how it was found, whether by a search): the one
        paired with it, else the first of the account's records whose `record.marked_in` carries the document
        marker; (None, "", False) when there is none."""
        found = _known_record(partial(record.read, self.kaseya), paired_id)
        if found is not None:
            return found, record.paired_by, False
        if isinstance(account, int):
            for row in record.account_rows(self.kaseya, account):
                if self.source.id in document_markers(row.get(record.marked_in)):
                    whole = record.read(self.kaseya, int(row["id"])) if record.rows_are_summaries else row
                    return whole, f"the document marker in its {record.marked_in}", True
        return None, "", False

    def _write(self, record: _DocumentRecord, existing: Any, how: str, searched: bool, body: Mapping[str, Any], *,
               what: str, zomentum_id: str, none_found: str) -> KaseyaId:
        """The document's opportunity or quote: created when none was found (`none_found` says why), else used
        as found and updated when what Kaseya holds differs from `body`."""
        id_map_entity = record.entity if record.pairs_in_id_map else None
        if existing is None:
            self.step(PushStep(record.request(None, body), record.entity, record.key, CREATED, record.pending,
                               zomentum_id=zomentum_id, id_map_entity=id_map_entity))
            self.resolutions.append(Resolution(what, f"a new {record.key}", none_found))
            return record.pending
        kaseya_id = int(existing["id"])
        self.use(FoundRecord(record.key, record.entity, kaseya_id, how, zomentum_id, id_map_entity, searched))
        self.resolutions.append(Resolution(what, f"{record.key} id {kaseya_id}", how))
        changed = readback_differences(body, existing, record.readback_fields)
        if changed:
            self.step(PushStep(record.request(kaseya_id, body), record.entity, record.key, UPDATED,
                               zomentum_id=zomentum_id, changed_fields=tuple(d.split(":", 1)[0] for d in changed)))
        return kaseya_id

    # --- the opportunity --------------------------------------------------------------------------

    def opportunity(self, account: KaseyaId, location: KaseyaId, contact: KaseyaId | None,
                    sales_representative_id: int) -> tuple[KaseyaId, dict[str, Any], KaseyaId]:
        """(opportunity, the body Kaseya should hold, its location)."""
        deal = self.source.opportunity
        deal_id = str(deal["id"])
        existing, how, searched = self._existing(OPPORTUNITY, self.known.opportunity, account)
        status_id, status = opportunity_status_for(str(deal["opportunity_pipeline_stage_id"]), self.resolved,
                                                   document_won=self.source.status == "won")
        self.resolutions.append(status)
        amount = _decimal(deal.get("estimated_value"))
        if amount is None:
            amount = _decimal(self.source.document.get("total"))
        close = _moment(deal.get("estimated_close_date"))
        if close is None and self.source.status == "won":
            close = _moment(self.source.document.get("updated_at"))  # a Won deal closes when it is Won
        same_account = existing is not None and existing.get("accountId") == account
        fields = OpportunityFields(
            document_id=self.source.id, subject=deal.get("name"), status_id=status_id, account_id=account,
            account_location_id=None if same_account else location,
            sales_representative_user_id=sales_representative_id, amount=amount, close_date=close,
            probability=_decimal(deal.get("close_probability")), contact_id=contact,
            customer_po=deal.get("client_po_number"),
        )
        defaults = OpportunityDefaults(
            type_id=self.lookups.default_id("OpportunityType"), rating_id=self.lookups.default_id("OpportunityRating"),
            probability=_decimal(self.status_probabilities.get(status_id)))
        body = opportunity_body(existing, fields, self.overrides.opportunity, defaults=defaults)
        opportunity_id = self._write(OPPORTUNITY, existing, how, searched, body, what=f"opportunity {deal.get('name')}",
                                     zomentum_id=deal_id, none_found="no Kaseya opportunity is paired with it or "
                                                                     "carries the document marker")
        return opportunity_id, body, body["AccountLocationId"]

    # --- catalogue items, the quote and its lines ---------------------------------------------------

    def catalogue(self, lines: Sequence[PlannedLine]) -> dict[str, KaseyaId]:
        """The Kaseya catalogue item of every planned line (line key -> id), creating what Kaseya lacks."""
        resolved = self.resolved
        item_ids: dict[str, KaseyaId] = {}
        by_record: dict[str, KaseyaId] = {}
        for line in lines:
            product = is_catalogue_product(line)
            record_key = f"product {product_number(line)}" if product else f"service {line.item_name}"
            if record_key not in by_record:
                by_record[record_key] = self._catalogue_item(line, record_key)
            item_ids[line.line_key] = by_record[record_key]
        if any(step.entity == ITEMS for step in self.steps):
            self.resolutions.append(Resolution(
                "new catalogue items", f"warehouse {resolved.warehouse.name}, category "
                f"{resolved.product_category.name}, labour period {resolved.labour_period.name}", "settings defaults"))
        return item_ids

    def _catalogue_item(self, line: PlannedLine, record_key: str) -> KaseyaId:
        what = f"item {line.item_name}"
        if is_catalogue_product(line):
            number = product_number(line)
            known = self.known.products.get(line.zomentum_item_id or "")
            if known is not None:
                self.use(FoundRecord(record_key, ITEMS, known, "id map", line.zomentum_item_id, ITEMS))
                self.resolutions.append(Resolution(f"{what} ({number})", f"product id {known}", "id map"))
                return known
            found = match_product(line, list(self.kaseya.iter_products(ProductNumber=number)))
            how = "same product number"
            result = f"product id {found}"
        else:
            rows = list(self.kaseya.paginate("services_lookup", {"Filter.Name": line.item_name}))
            found = match_service(line, rows)
            how = "same service name"
            result = f"service id {found}"
        # A product (never a service: the pull reads only inventory products) is paired with its Zomentum
        # item, so the pull does not bring it back into Zomentum as a new item.
        pairs_with = ITEMS if is_catalogue_product(line) and line.zomentum_item_id else None
        if found is not None:
            self.use(FoundRecord(record_key, ITEMS, found, how, line.zomentum_item_id, pairs_with, searched=True))
            self.resolutions.append(Resolution(what, result, how))
            return found
        defaults = CatalogueDefaults(
            product_category_id=int(self.resolved.product_category.id), warehouse_id=int(self.resolved.warehouse.id),
            labour_period_id=int(self.resolved.labour_period.id),
            product_type_ids=self.lookups.ids("ProductType") if is_catalogue_product(line) else {})
        pending = catalogue_pending_id(line)
        self.step(PushStep(catalogue_request(line, defaults), ITEMS, record_key, CREATED, pending,
                           zomentum_id=line.zomentum_item_id, id_map_entity=pairs_with))
        self.resolutions.append(Resolution(what, f"a new {'product' if is_catalogue_product(line) else 'service'}",
                                           "Kaseya has none of that " + ("number" if is_catalogue_product(line)
                                                                         else "name")))
        return pending

    def quote(self, account: KaseyaId, location: KaseyaId, opportunity: KaseyaId,
              sales_representative_id: int) -> tuple[KaseyaId, dict[str, Any]]:
        existing, how, searched = self._existing(QUOTE, self.known.quote, account)
        document = self.source.document
        status_id, status = quote_status_for(self.source.status, self.resolved)
        self.resolutions.append(status)
        same_account = existing is not None and existing.get("accountId") == account
        fields = QuoteFields(
            document_id=self.source.id, name=document.get("name"), opportunity_id=opportunity, account_id=account,
            location_id=None if same_account else location, status_id=status_id,
            expiry_date=_moment(document.get("expiry_date")), sales_representative_user_id=sales_representative_id)
        body = quote_body(existing, fields, self.overrides.quote)
        quote_id = self._write(QUOTE, existing, how, searched, body, what=f"document {document.get('name')}",
                               zomentum_id=self.source.id,
                               none_found="no quote of the account carries the document marker")
        return quote_id, body

    def quote_lines(self, quote: KaseyaId, lines: Sequence[PlannedLine], item_ids: Mapping[str, KaseyaId]) -> None:
        existing = self.kaseya.quote_line_items(quote) if isinstance(quote, int) else []
        for line in existing:
            key = line.get("extDistReference")
            if key:
                self.use(FoundRecord(f"line {key}", QUOTE_LINES, int(line["id"]), "line key", self.source.id))
        by_key = {line.line_key: line for line in lines}
        retired = {int(line["id"]) for line in reconcile_quote_lines(self.source.id, lines, existing).to_retire}
        for request in quote_line_requests(quote, self.source.id, lines, existing, item_ids):
            key = request.body["ExtDistReference"]
            if request.endpoint == "add_quote_line_item":
                action = CREATED
            else:
                action = RETIRED if request.path_params["line_item_id"] in retired else UPDATED
            source_line = by_key.get(key) if action != RETIRED else None
            self.step(PushStep(request, QUOTE_LINES, f"line {key}", action,
                               zomentum_id=source_line.source_line_id if source_line else None))


def _check_lines_add_up(source: ZomentumDocument) -> None:
    """The line items (a CSV download) must add up to the document's total: an answer cut short at a row
    boundary still parses, and would push a quote with lines missing."""
    stated = source.document.get("total")
    if stated is None:
        return
    lines = document_amount(source.lines)
    if lines != to_cents(Decimal(str(stated))):
        raise PushFailed(source.id, f"the line items read from Zomentum add up to {lines}, but the document's total "
                                    f"is {to_cents(Decimal(str(stated)))}; they may have been cut short on the way: "
                                    "push again", document_version=source.version, entity=QUOTES)


def prepare_push(kaseya: KaseyaClient, source: ZomentumDocument, resolved: ResolvedSettings,
                 overrides: PushOverrides, known: KnownIds, *,
                 status_probabilities: Mapping[int, float] | None = None,
                 catalogue: KaseyaCatalogue | None = None) -> PreparedPush:
    """Resolve the document against Kaseya and plan every write, in the order they are sent: account,
    contact, opportunity, catalogue items, quote, quote lines. `status_probabilities` (opportunity status
    id -> Kaseya's probability) gives a new opportunity without a close probability its status's; `catalogue`
    the lookup lists (default: read from Kaseya)."""
    catalogue = catalogue or KaseyaCatalogue(kaseya, None, datetime.now(UTC))
    planner = _Planner(kaseya, source, resolved, overrides, known, status_probabilities or {}, catalogue)
    sales_representative_id, owner = sales_representative_for(source.owner_email, resolved)
    planner.resolutions.append(owner)
    account, location = planner.account()
    contact = planner.contact(account, location)
    opportunity, opportunity_fields, opportunity_location = planner.opportunity(
        account, location, contact, sales_representative_id)

    quote: KaseyaId | None = None
    quote_fields: dict[str, Any] | None = None
    lines: tuple[PlannedLine, ...] = ()
    item_ids: dict[str, KaseyaId] = {}
    if resolved.settings.sync.push_quotes_on_won:
        _check_lines_add_up(source)
        lines = plan_quote_lines(source.lines, resolved.settings.bundle_mode, document_id=source.id,
                                 items=source.items)
        item_ids = planner.catalogue(lines)
        quote, quote_fields = planner.quote(account, opportunity_location, opportunity, sales_representative_id)
        planner.quote_lines(quote, lines, item_ids)
    else:
        planner.notes.append("the quote is not pushed: push_quotes_on_won is off in the settings")
        if overrides.quote:
            planner.notes.append(f"ignored: {', '.join(overrides.quote)} (the quote is not pushed)")

    plan = PushPlan(
        document_id=source.id, document_version=source.version, resolutions=tuple(planner.resolutions),
        requests=tuple(step.request for step in planner.steps), quote_lines=lines,
        document_amount=document_amount(source.lines) if lines else None, overrides=overrides,
        notes=tuple(planner.notes),
    )
    return PreparedPush(
        source=source, resolved=resolved, plan=plan, steps=tuple(planner.steps), found=tuple(planner.found),
        account=account, contact=contact, opportunity=opportunity, opportunity_body=opportunity_fields,
        quote=quote, quote_body=quote_fields, quote_lines=lines, item_ids=item_ids,
    )
