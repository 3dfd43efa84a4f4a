"""The contract's DTOs: what the sandbox puts on the wire and what it reads from request bodies.

Output DTOs list the contract's properties in the contract's order; `Dto.render` emits every one of them
(null where the sandbox has no value) under the camelCase key the wire uses (ASP.NET's camel-casing:
`QTYInStock` -> `qtyInStock`, `CustomerPO` -> `customerPO`). The contract test holds these lists to
`kaseya-bms-openapi.json`, so a property that drifts from the contract fails there.

Input DTOs are read case-insensitively, as Kaseya does. The spec mini-language is `Name:type` with `!` for
the contract's `required` (null, absent or "" is refused) and `?` for nullable; non-nullable properties left
out take .NET's default (0, false). Properties the DTO does not define are ignored, as ASP.NET does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def camel(name: str) -> str:
    """ASP.NET's camel-casing of a PascalCase property name (leading capitals lowered up to the next word)."""
    chars = list(name)
    for i, ch in enumerate(chars):
        if i == 1 and not ch.isupper():
            break
        if i > 0 and i + 1 < len(chars) and not chars[i + 1].isupper():
            break
        chars[i] = ch.lower()
    return "".join(chars)


def wire_datetime(moment: datetime | None) -> str | None:
    """Kaseya's date-times: naive (UTC, assumed), millisecond precision."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


def parse_datetime(text: str) -> datetime:
    """A date-time from a request: ISO 8601, naive values are UTC (assumed). Raises ValueError."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Dto:
    """An output DTO of the contract: its name and its properties, in order."""

    def __init__(self, name: str, properties: str) -> None:
        self.name = name
        self.properties = tuple(properties.split())
        self._keys = {prop: camel(prop) for prop in self.properties}

    def render(self, **values: Any) -> dict[str, Any]:
        unknown = values.keys() - self._keys.keys()
        if unknown:
            raise TypeError(f"{self.name} has no properties {sorted(unknown)}")
        return {key: values.get(prop) for prop, key in self._keys.items()}


# Every output DTO, by its contract name; the contract test compares each property list with the contract's.
OUTPUT_DTOS: dict[str, Dto] = {name: Dto(name, properties) for name, properties in {
    "ErrorInfo": "Code Message Details StackStrace SubErrors",
    "TokenOutputDto": "AccessToken RefreshToken AccessTokenExpireOn RefreshTokenExpireOn",
    "UserInfoOutputDto": "UserId FullName EmailAddress TimeStamp TimeZoneValue TimeZoneName OlsonTimeZoneName "
                         "DateFormat TimeFormat TimeFormatWithSeconds TenantId AccountId LocationId ContactId "
                         "BusinessName UserAccessRights SpecialFeatures ViewsMenus QueuesMenus CurrencyCode "
                         "CultureCode FilesVersionNumber NewTicketingUI IsUserSystemAdmin ProductName PictureUrl "
                         "OpenIdRealmId",
    "AccountSummaryOutputDto": "Id CreatedBy CreatedOn ModifiedBy ModifiedOn ParentId AccountCode AccountTypeId "
                               "AccountType AccountName BusinessTypeId BusinessType ServiceTypeId ServiceType "
                               "AccountManagerId AccountManagerUserName CurrencyId CurrencyName CreditLimit NetDays "
                               "SalesTaxItemId SalesTaxItemName Website Description ClassId ClassName IsActive "
                               "IsBilling AcquiredDate TenantName Locations",
    "AccountLocationOutputDto": "Id CreatedBy CreatedOn ModifiedBy ModifiedOn LocationName IsMain IsActive "
                                "TimeZoneId DateFormatId TimeFormatId Addresses",
    "AccountAddressOutputDto": "Id CreatedBy CreatedOn ModifiedBy ModifiedOn Address1 Address2 City State ZipCode "
                               "CountryId Country Phone Fax Latitude Longitude EmailAddress IsMain IsBilling "
                               "AddressTypeId AddressType",
    "AccountLocationLookupOutputDto": "Id Name AccountId IsMain",
    "AccountLookupOutputDto": "Id Name TenantName IsActive",
    "AccountTypeLookupOutputDto": "Id Name IsActive IsClient IsVendor",
    "ContactsSummaryOutputDto": "Id CreatedBy CreatedOn ModifiedBy ModifiedOn AccountId AccountName LocationId "
                                "LocationName FirstName LastName JobTitle IsPoc IsActive EffectiveDate IsBillable "
                                "Emails Phones CanRecieveInvoices",
    "ContactEmailOutputDto": "Id CreatedBy CreatedOn ModifiedBy ModifiedOn EmailAddress EmailTypeId EmailType "
                             "IsDefault",
    "ContactPhoneOutputDto": "Id CreatedBy CreatedOn ModifiedBy ModifiedOn Phone PhoneTypeId PhoneType IsDefault",
    "ContactSummaryOutputDto": "Id FirstName LastName AccountId AccountName LocationId LocationName PhoneNumber "
                               "EmailAddress CustomFieldsData",
    "ContactOutputDto": "Id CreatedBy CreatedOn ModifiedBy ModifiedOn AccountId AccountName LocationId LocationName "
                        "FirstName MiddleName LastName JobTitle Poc IsActive BillByContact EffectiveDate Phones "
                        "Emails RecieveInvoices CreatedByName ModifiedByName",
    "ContactsSearchSelectOutputDto": "Id AccountId AccountName LocationId LocationName FirstName LastName JobTitle "
                                     "EmailAddress IsPoc IsActive HasClientPortalAccess",
    "OpportunityOutputDto": "Id CreatedBy CreatedOn ModifiedBy ModifiedOn Subject StatusId Status AccountId "
                            "AccountName AccountLocationId AccountLocationName ContactId ContactFirstName "
                            "ContactLastName TypeId Type Probability Rating RatingId LeadSource LeadSourceId "
                            "SalesRepresentativeFirstName SalesRepresentativeLastName SalesRepresentativeUserId "
                            "Amount InPipeline Description CustomerPO CloseDate ProbabilityAdjustedRevenue",
    "OpportunityNoteOutputDto": "Id CreatedBy CreatedOn ModifiedBy ModifiedOn Note CreatedByName ModifiedByName",
    "OpportunityStatusLookupOutputDto": "Id Name Probability IsActive IsPipeline StatusActionId StatusActionName",
    "ProductsListSearchSelectOutputDto": "Id ProductIndexId ProductNumber ProductName ProductDescription UPC "
                                         "Warehouse WarehouseId QTYInStock QTYAvailable QTYCommitted QTYOnOrder "
                                         "Color WeightedLandedCost SerialNumber IsSerialized StockByLocationId",
    "PricingLevelLookupDto": "Id Name Price Margin IsActive IsDefault",
    "SupplierLookupOutputDto": "Id Name",
    "DefaultCostOutputDto": "Id DefaultCost",
    "ProductCategoryLookupOutputDto": "Id Name Description IsActive",
    "ProductCategoriesOutputDto": "Id CreatedBy CreatedOn ModifiedBy ModifiedOn Name Description IsActive",
    "WarehouseOutputDto": "Id Name",
    "EmployeeLookupOutputDto": "Id Name",
    "EmployeesListSearchSelectOutputDto": "Id FirstName LastName EmailAddress Username JobTitle IsActive",
    "QuotationsListSummaryOutputDto": "Id Name QuotationNumber StatusId StatusName ExpiryDate CreatedOn",
    "QuotationOutputDto": "Id QuotationNumber Name StatusId StatusName ExpiryDate CreatedOn CreatedById "
                          "CreatedByName OpportunityId OpportunityTitle AccountId AccountName LocationId "
                          "LocationName SalesRepresentativeFirstName SalesRepresentativeLastName "
                          "SalesRepresentativeUserId",
    "QuotationLineItemOutputDto": "Id CreatedBy CreatedOn ModifiedBy ModifiedOn QuotationId Name Description "
                                  "OriginalUnitPrice UnitPrice UnitCost Quantity Discount TTC Total TaxRate Taxable "
                                  "IsDistributerItem ExtDistReference Margin MarginType DistributorTypeId Image",
    "ServiceOutputDto": "Id Name Description UnitCost UnitPrice CategoryId Category SubCategoryId SubCategory "
                        "UnitOfMeasureId UnitOfMeasure IncomeAccountId IncomeAccountCode IncomeAccountName "
                        "ExpenseAccountId ExpenseAccountCode ExpenseAccountName IsActive IsTaxable CreatedOn "
                        "CreatedBy ModifiedOn ModifiedBy Margin MarginType",
    "ServiceLookupOutputDto": "Id Name Description",
    "LookupOutputDto": "Id Name IsDefault IsActive",
    "ClientContractSummaryOutputDto": "Id ContractName AccountName ContractType ContractBillingPrice Status "
                                      "ContractNumber BillingCycle StartDate EndDate",
    "TimeLogOutputDto": "Id CreatedBy CreatedOn ModifiedBy ModifiedOn Timespent OverTimeSpent TimesheetId WeekStart "
                        "WeekEnd TimeEntrySourceId TicketId ProjectId UserId FirstName LastName RoleId Role "
                        "WorkTypeId WorkType Notes InternalNotes AccountId AccountName IsPosted IsApproved IsBilled "
                        "IsBillable StartDate StartTime EndTime CreatedByName ModifiedByName",
}.items()}


def render(dto_name: str, **values: Any) -> dict[str, Any]:
    """The named output DTO on the wire: every property, null where `values` has none."""
    return OUTPUT_DTOS[dto_name].render(**values)


# --- input DTOs -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InputProperty:
    name: str
    kind: str  # int | number | string | bool | datetime | [ItemDto]
    required: bool
    nullable: bool


class InputDto:
    def __init__(self, name: str, spec: str) -> None:
        self.name = name
        self.properties: tuple[InputProperty, ...] = tuple(self._parse(token) for token in spec.split())

    @staticmethod
    def _parse(token: str) -> InputProperty:
        name, kind = token.split(":")
        required, nullable = kind.endswith("!"), kind.endswith("?")
        return InputProperty(name, kind.rstrip("!?"), required, nullable)


INPUT_DTOS: dict[str, InputDto] = {name: InputDto(name, spec) for name, spec in {
    "AccountPostInputDto": "ParentId:int? AccountCode:string? AccountTypeId:int! AccountName:string! "
                           "Description:string? Website:string? BusinessTypeId:int! ServiceTypeId:int? CurrencyId:int? "
                           "SalesTaxItemId:int? ClassId:int? AccountManagerId:int! IsActive:bool? "
                           "AcquiredDate:datetime? CreditLimit:number? NetDays:number? "
                           "Locations:[AccountLocationInputDto]! RouteInvoiceToParent:bool",
    "AccountLocationInputDto": "LocationName:string! IsMain:bool IsActive:bool "
                               "Addresses:[AccountLocationAddressInputDto]!",
    "AccountLocationAddressInputDto": "Address1:string? Address2:string? City:string? State:string? ZipCode:string? "
                                      "CountryId:int? Country:string? Phone:string? Fax:string? Latitude:number? "
                                      "Longitude:number? EmailAddress:string? IsMain:bool IsBilling:bool "
                                      "AddressTypeId:int? AddressType:string?",
    "AccountPutInputDto": "ParentId:int? AccountCode:string? AccountTypeId:int! AccountName:string! "
                          "Description:string? Website:string? BusinessTypeId:int! ServiceTypeId:int? CurrencyId:int? "
                          "SalesTaxItemId:int? ClassId:int? AccountManagerId:int! IsActive:bool? "
                          "AcquiredDate:datetime? CreditLimit:number? NetDays:number? RouteInvoiceToParent:bool",
    "ContactInputDto": "FirstName:string? LastName:string? AccountId:int LocationId:int Phones:[PhoneInputDto]? "
                       "Emails:[EmailInputDto]? CustomFieldsData:[CustomFieldDataInputDto]?",
    "PhoneInputDto": "PhoneNumber:string? PhoneTypeId:int IsDefault:bool",
    "EmailInputDto": "EmailAddress:string? EmailTypeId:int IsDefault:bool",
    "CustomFieldDataInputDto": "Id:int CustomFieldId:int Data:string? SettingsId:int?",
    "ContactPutInputDto": "AccountId:int LocationId:int FirstName:string? MiddleName:string? LastName:string? "
                          "JobTitle:string? Poc:bool IsActive:bool ReceiveInvoices:bool BillByContact:bool "
                          "EffectiveDate:datetime?",
    "OpportunityInputDto": "Subject:string! StatusId:int! AccountId:int! AccountLocationId:int! ContactId:int? "
                           "TypeId:int! Probability:number! RatingId:int! LeadSourceId:int? "
                           "SalesRepresentativeUserId:int! Amount:number! Description:string? CustomerPO:string? "
                           "CloseDate:datetime!",
    "OpportunityNotePostInputDto": "Note:string!",
    "QuotationLineItemInputDto": "Id:int Name:string? Description:string? ExtDistReference:string? Image:string? "
                                 "UnitPrice:number UnitCost:number Quantity:number? Margin:number MarginType:int "
                                 "Discount:number Taxable:bool",
    "ServiceInputDto": "Id:int Name:string? Description:string? UnitCost:number? UnitPrice:number? CategoryId:int? "
                       "SubCategoryId:int? UnitOfMeasureId:int? IncomeAccountId:int? ExpenseAccountId:int? "
                       "IsActive:bool IsTaxable:bool Margin:number? MarginType:int?",
    "ProductCategoriesInputDto": "Name:string! Description:string? IsActive:bool!",
    # NOT IN KASEYA'S PUBLISHED CONTRACT: the bodies of the sandbox's models of unpublished endpoints,
    # written in the contract's conventions.
    "QuotationInputDto": "Name:string! OpportunityId:int? AccountId:int! LocationId:int? StatusId:int! "
                         "ExpiryDate:datetime! SalesRepresentativeUserId:int!",
    "ProductInputDto": "ProductNumber:string! ProductName:string! ProductDescription:string? CategoryId:int! "
                       "ProductTypeId:int! WarehouseId:int! LabourPeriodId:int? UnitPrice:number? UnitCost:number? "
                       "SupplierId:int? SupplierPartNumber:string? UPC:string? Manufacturer:string?",
}.items()}

_DEFAULTS = {"int": 0, "number": 0.0, "bool": False}


class Body(dict):
    """A request object read through an input DTO: PascalCase property -> value (nested DTOs are Bodies).

    `given` names the properties the request carried, so a partial update can tell "absent" from "null".
    """

    given: frozenset[str] = frozenset()

    def assign(self, record: Any, attributes: Mapping[str, str], *, given_only: bool = False) -> None:
        """Set `record`'s attributes from the properties `attributes` maps to them (property -> attribute);
        with `given_only`, only from the properties the request carried (a partial update)."""
        for prop, attribute in attributes.items():
            if not given_only or prop in self.given:
                setattr(record, attribute, self[prop])


def read_input(dto_name: str, value: Any, path: str = "", registry: Mapping[str, InputDto] = INPUT_DTOS
               ) -> tuple[Body, list[str]]:
    """Read `value` (parsed JSON) as the named input DTO; returns the body and every problem, each naming
    the property by its path (`Locations[0].LocationName`)."""
    dto = registry[dto_name]
    problems: list[str] = []
    body = Body()
    if not isinstance(value, Mapping):
        return body, [f"{path or 'The request body'} must be a JSON object ({dto_name})"]
    folded = {str(k).lower(): v for k, v in value.items()}
    given = set()
    for prop in dto.properties:
        where = f"{path}.{prop.name}" if path else prop.name
        present = prop.name.lower() in folded
        raw = folded.get(prop.name.lower())
        if present:
            given.add(prop.name)
        if raw is None or (prop.required and raw == ""):
            if prop.required:
                problems.append(f"The {where} field is required.")
            body[prop.name] = None if prop.nullable or prop.required or prop.kind.startswith("[") \
                else _DEFAULTS.get(prop.kind)
            continue
        converted, conversion_problems = _convert(prop, raw, where, registry)
        problems += conversion_problems
        body[prop.name] = converted
    body.given = frozenset(given)
    return body, problems


def _convert(prop: InputProperty, raw: Any, where: str, registry: Mapping[str, InputDto]) -> tuple[Any, list[str]]:
    kind = prop.kind
    if kind.startswith("["):
        if not isinstance(raw, list):
            return None, [f"The {where} field must be an array."]
        items, problems = [], []
        for i, element in enumerate(raw):
            item, item_problems = read_input(kind[1:-1], element, f"{where}[{i}]", registry)
            items.append(item)
            problems += item_problems
        return items, problems
    if kind == "int" and isinstance(raw, int) and not isinstance(raw, bool):
        return raw, []
    if kind == "number" and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw), []
    if kind == "bool" and isinstance(raw, bool):
        return raw, []
    if kind == "string" and isinstance(raw, str):
        return raw, []
    if kind == "datetime" and isinstance(raw, str):
        try:
            return parse_datetime(raw), []
        except ValueError:
            pass
    return None, [f"The JSON value of {where} could not be converted to {_KIND_NAMES[kind]}."]


_KIND_NAMES = {"int": "an integer", "number": "a number", "bool": "a boolean", "string": "a string",
               "datetime": "a date-time"}


def undefined_properties(dto_name: str, value: Any, registry: Mapping[str, InputDto], path: str = "") -> list[str]:
    """The properties of `value` (recursively) that the named DTO does not define."""
    if not isinstance(value, Mapping):
        return []
    properties = {prop.name.lower(): prop for prop in registry[dto_name].properties}
    found = []
    for key, element in value.items():
        prop = properties.get(str(key).lower())
        where = f"{path}.{key}" if path else str(key)
        if prop is None:
            found.append(where)
        elif prop.kind.startswith("[") and isinstance(element, list):
            for i, item in enumerate(element):
                found += undefined_properties(prop.kind[1:-1], item, registry, f"{where}[{i}]")
    return found
