"""Records as the contract's DTOs: names resolved through the tenant's lookups at render time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from zk_pipelines.sandbox.kaseya import dto
from zk_pipelines.sandbox.kaseya.dto import wire_datetime
from zk_pipelines.sandbox.kaseya.records import (
    COUNTRIES,
    CURRENCY,
    STATUS_ACTIONS,
    Account,
    Address,
    Category,
    Contact,
    Contract,
    Employee,
    Location,
    Opportunity,
    OpportunityNote,
    Product,
    Quote,
    QuoteLineItem,
    Service,
    Stamps,
    Stock,
    Tenant,
    TimeLog,
    week_start,
)


def _stamps(stamps: Stamps) -> dict[str, Any]:
    return dict(CreatedBy=stamps.created_by, CreatedOn=wire_datetime(stamps.created_on),
                ModifiedBy=stamps.modified_by, ModifiedOn=wire_datetime(stamps.modified_on))


def address(tenant: Tenant, record: Address) -> dict[str, Any]:
    country_id, country = COUNTRIES.get(record.country_code or "", (None, record.country_code))
    return dto.render("AccountAddressOutputDto",
        Id=record.id, **_stamps(record.stamps), Address1=record.address1, Address2=record.address2,
        City=record.city, State=record.state, ZipCode=record.zip_code, CountryId=country_id, Country=country,
        Phone=record.phone, Fax=record.fax, Latitude=record.latitude, Longitude=record.longitude,
        EmailAddress=record.email_address, IsMain=record.is_main, IsBilling=record.is_billing,
        AddressTypeId=record.address_type_id, AddressType=tenant.lookup_name("AddressType", record.address_type_id),
    )


def location(tenant: Tenant, record: Location) -> dict[str, Any]:
    return dto.render("AccountLocationOutputDto",
        Id=record.id, **_stamps(record.stamps), LocationName=record.location_name, IsMain=record.is_main,
        IsActive=record.is_active, Addresses=[address(tenant, a) for a in record.addresses],
    )


def account(tenant: Tenant, record: Account) -> dict[str, Any]:
    account_type = tenant.account_types.get(record.account_type_id)
    return dto.render("AccountSummaryOutputDto",
        Id=record.id, **_stamps(record.stamps), ParentId=record.parent_id, AccountCode=record.account_code,
        AccountTypeId=record.account_type_id, AccountType=account_type.name if account_type else None,
        AccountName=record.account_name, BusinessTypeId=record.business_type_id,
        BusinessType=tenant.lookup_name("BusinessType", record.business_type_id),
        AccountManagerId=record.account_manager_id,
        AccountManagerUserName=tenant.employee_name(record.account_manager_id),
        CurrencyId=CURRENCY[0], CurrencyName=CURRENCY[1], CreditLimit=record.credit_limit, NetDays=record.net_days,
        Website=record.website, Description=record.description, IsActive=record.is_active, IsBilling=True,
        AcquiredDate=wire_datetime(record.acquired_date), TenantName=tenant.name,
        Locations=[location(tenant, loc) for loc in record.locations],
    )


def account_lookup(tenant: Tenant, record: Account) -> dict[str, Any]:
    return dto.render("AccountLookupOutputDto", Id=record.id, Name=record.account_name, TenantName=tenant.name,
                      IsActive=record.is_active)


def location_lookup(account_id: int, record: Location) -> dict[str, Any]:
    return dto.render("AccountLocationLookupOutputDto", Id=record.id, Name=record.location_name, AccountId=account_id,
                      IsMain=record.is_main)


def _emails(tenant: Tenant, record: Contact) -> list[dict[str, Any]]:
    return [dto.render("ContactEmailOutputDto", Id=e.id, **_stamps(e.stamps), EmailAddress=e.email_address,
                       EmailTypeId=e.email_type_id,
                       EmailType=tenant.lookup_name("EmailType", e.email_type_id), IsDefault=e.is_default)
            for e in record.emails]


def _phones(tenant: Tenant, record: Contact) -> list[dict[str, Any]]:
    return [dto.render("ContactPhoneOutputDto", Id=p.id, **_stamps(p.stamps), Phone=p.phone,
                       PhoneTypeId=p.phone_type_id, PhoneType=tenant.lookup_name("PhoneType", p.phone_type_id),
                       IsDefault=p.is_default)
            for p in record.phones]


def _contact_place(tenant: Tenant, record: Contact) -> dict[str, Any]:
    found = tenant.find_location(record.location_id)
    owner = tenant.accounts.get(record.account_id)
    return dict(AccountId=record.account_id, AccountName=owner.account_name if owner else None,
                LocationId=record.location_id, LocationName=found[1].location_name if found else None)


def contact_summary(tenant: Tenant, record: Contact) -> dict[str, Any]:
    return dto.render("ContactsSummaryOutputDto",
        Id=record.id, **_stamps(record.stamps), **_contact_place(tenant, record), FirstName=record.first_name,
        LastName=record.last_name, JobTitle=record.job_title, IsPoc=record.is_poc, IsActive=record.is_active,
        EffectiveDate=wire_datetime(record.effective_date), IsBillable=record.is_billable,
        Emails=_emails(tenant, record), Phones=_phones(tenant, record), CanRecieveInvoices=record.receive_invoices,
    )


def contact_created(tenant: Tenant, record: Contact) -> dict[str, Any]:
    return dto.render("ContactSummaryOutputDto",
        Id=record.id, FirstName=record.first_name, LastName=record.last_name, **_contact_place(tenant, record),
        PhoneNumber=record.default_phone, EmailAddress=record.default_email, CustomFieldsData=[],
    )


def contact(tenant: Tenant, record: Contact) -> dict[str, Any]:
    return dto.render("ContactOutputDto",
        Id=record.id, **_stamps(record.stamps), **_contact_place(tenant, record), FirstName=record.first_name,
        MiddleName=record.middle_name, LastName=record.last_name, JobTitle=record.job_title, Poc=record.is_poc,
        IsActive=record.is_active, BillByContact=record.bill_by_contact,
        EffectiveDate=wire_datetime(record.effective_date), Phones=_phones(tenant, record),
        Emails=_emails(tenant, record), RecieveInvoices=record.receive_invoices,
        CreatedByName=tenant.employee_name(record.stamps.created_by),
        ModifiedByName=tenant.employee_name(record.stamps.modified_by),
    )


def contact_search(tenant: Tenant, record: Contact) -> dict[str, Any]:
    return dto.render("ContactsSearchSelectOutputDto",
        Id=record.id, **_contact_place(tenant, record), FirstName=record.first_name, LastName=record.last_name,
        JobTitle=record.job_title, EmailAddress=record.default_email, IsPoc=record.is_poc, IsActive=record.is_active,
        HasClientPortalAccess=False,
    )


def opportunity(tenant: Tenant, record: Opportunity) -> dict[str, Any]:
    status = tenant.statuses.get(record.status_id)
    owner = tenant.accounts.get(record.account_id)
    place = owner.location(record.account_location_id) if owner else None
    person = tenant.contacts.get(record.contact_id) if record.contact_id is not None else None
    rep = tenant.employees.get(record.sales_representative_user_id)
    return dto.render("OpportunityOutputDto",
        Id=record.id, **_stamps(record.stamps), Subject=record.subject, StatusId=record.status_id,
        Status=status.name if status else None, AccountId=record.account_id,
        AccountName=owner.account_name if owner else None, AccountLocationId=record.account_location_id,
        AccountLocationName=place.location_name if place else None, ContactId=record.contact_id,
        ContactFirstName=person.first_name if person else None, ContactLastName=person.last_name if person else None,
        TypeId=record.type_id, Type=tenant.lookup_name("OpportunityType", record.type_id),
        Probability=record.probability, Rating=tenant.lookup_name("OpportunityRating", record.rating_id),
        RatingId=record.rating_id, LeadSource=tenant.lookup_name("LeadSource", record.lead_source_id),
        LeadSourceId=record.lead_source_id, SalesRepresentativeFirstName=rep.first_name if rep else None,
        SalesRepresentativeLastName=rep.last_name if rep else None,
        SalesRepresentativeUserId=record.sales_representative_user_id, Amount=record.amount,
        InPipeline=bool(status and status.is_pipeline), Description=record.description,
        CustomerPO=record.customer_po, CloseDate=wire_datetime(record.close_date),
        ProbabilityAdjustedRevenue=round(record.amount * record.probability / 100, 2),
    )


def note(tenant: Tenant, record: OpportunityNote) -> dict[str, Any]:
    return dto.render("OpportunityNoteOutputDto",
        Id=record.id, **_stamps(record.stamps), Note=record.note,
        CreatedByName=tenant.employee_name(record.stamps.created_by),
        ModifiedByName=tenant.employee_name(record.stamps.modified_by),
    )


def status_lookup(tenant: Tenant) -> list[dict[str, Any]]:
    return [dto.render("OpportunityStatusLookupOutputDto", Id=s.id, Name=s.name, Probability=s.probability,
                       IsActive=s.is_active, IsPipeline=s.is_pipeline, StatusActionId=STATUS_ACTIONS[s.action],
                       StatusActionName=s.action)
            for s in tenant.statuses.values()]


def product_row(tenant: Tenant, record: Product, stock: Stock) -> dict[str, Any]:
    warehouse = tenant.warehouses.get(stock.warehouse_id)
    return dto.render("ProductsListSearchSelectOutputDto",
        # ASSUMED: the row id joins the product and its stock row; Kaseya does not document its format.
        Id=f"{record.id}_{stock.id}", ProductIndexId=record.id, ProductNumber=record.product_number,
        ProductName=record.product_name, ProductDescription=record.product_description, UPC=record.upc,
        Warehouse=warehouse.name if warehouse else None, WarehouseId=stock.warehouse_id,
        QTYInStock=stock.qty_in_stock, QTYAvailable=stock.qty_in_stock - stock.qty_committed,
        QTYCommitted=stock.qty_committed, QTYOnOrder=stock.qty_on_order, Color=record.color,
        WeightedLandedCost=record.default_cost, SerialNumber=None, IsSerialized=record.is_serialized,
        StockByLocationId=stock.id,
    )


def pricing_levels(tenant: Tenant, record: Product) -> list[dict[str, Any]]:
    rows = []
    for price in record.prices:
        margin = round((price.price - record.default_cost) / price.price * 100, 2) if price.price else 0.0
        rows.append(dto.render("PricingLevelLookupDto",
            Id=price.pricing_level_id, Name=tenant.pricing_levels[price.pricing_level_id].name, Price=price.price,
            Margin=margin, IsActive=price.is_active, IsDefault=price.is_default,
        ))
    return rows


def suppliers(tenant: Tenant, record: Product) -> list[dict[str, Any]]:
    return [dto.render("SupplierLookupOutputDto", Id=s.supplier_id, Name=tenant.suppliers[s.supplier_id].name)
            for s in record.suppliers]


def default_cost(record: Product) -> dict[str, Any]:
    return dto.render("DefaultCostOutputDto", Id=record.id, DefaultCost=record.default_cost)


def category_lookup(record: Category) -> dict[str, Any]:
    return dto.render("ProductCategoryLookupOutputDto", Id=record.id, Name=record.name, Description=record.description,
                      IsActive=record.is_active)


def category(record: Category) -> dict[str, Any]:
    return dto.render("ProductCategoriesOutputDto", Id=record.id, **_stamps(record.stamps), Name=record.name,
                      Description=record.description, IsActive=record.is_active)


def employee(record: Employee) -> dict[str, Any]:
    return dto.render("EmployeesListSearchSelectOutputDto", Id=record.id, FirstName=record.first_name,
                      LastName=record.last_name, EmailAddress=record.email_address, Username=record.email_address,
                      JobTitle=record.job_title, IsActive=record.is_active)


def employee_lookup(record: Employee) -> dict[str, Any]:
    return dto.render("EmployeeLookupOutputDto", Id=record.id, Name=record.full_name)


def quote_summary(tenant: Tenant, record: Quote) -> dict[str, Any]:
    return dto.render("QuotationsListSummaryOutputDto",
        Id=record.id, Name=record.name, QuotationNumber=record.quotation_number, StatusId=record.status_id,
        StatusName=tenant.lookup_name("QuoteStatus", record.status_id), ExpiryDate=wire_datetime(record.expiry_date),
        CreatedOn=wire_datetime(record.stamps.created_on),
    )


def quote(tenant: Tenant, record: Quote) -> dict[str, Any]:
    owner = tenant.accounts.get(record.account_id)
    place = owner.location(record.location_id) if owner and record.location_id is not None else None
    deal = tenant.opportunities.get(record.opportunity_id) if record.opportunity_id is not None else None
    rep = tenant.employees.get(record.sales_representative_user_id)
    return dto.render("QuotationOutputDto",
        Id=record.id, QuotationNumber=record.quotation_number, Name=record.name, StatusId=record.status_id,
        StatusName=tenant.lookup_name("QuoteStatus", record.status_id), ExpiryDate=wire_datetime(record.expiry_date),
        CreatedOn=wire_datetime(record.stamps.created_on), CreatedById=record.stamps.created_by or 0,
        CreatedByName=tenant.employee_name(record.stamps.created_by), OpportunityId=record.opportunity_id,
        OpportunityTitle=deal.subject if deal else None, AccountId=record.account_id,
        AccountName=owner.account_name if owner else None, LocationId=record.location_id,
        LocationName=place.location_name if place else None,
        SalesRepresentativeFirstName=rep.first_name if rep else None,
        SalesRepresentativeLastName=rep.last_name if rep else None,
        SalesRepresentativeUserId=record.sales_representative_user_id,
    )


def line_item(record: QuoteLineItem) -> dict[str, Any]:
    return dto.render("QuotationLineItemOutputDto",
        Id=record.id, **_stamps(record.stamps), QuotationId=record.quotation_id, Name=record.name,
        Description=record.description, OriginalUnitPrice=record.original_unit_price, UnitPrice=record.unit_price,
        UnitCost=record.unit_cost, Quantity=record.quantity, Discount=record.discount, TTC=record.total_with_tax,
        Total=record.total, TaxRate=record.tax_rate, Taxable=record.taxable,
        IsDistributerItem=record.distributor_type_id is not None, ExtDistReference=record.ext_dist_reference,
        Margin=record.margin, MarginType=record.margin_type, DistributorTypeId=record.distributor_type_id,
        Image=record.image,
    )


def service(tenant: Tenant, record: Service) -> dict[str, Any]:
    group = tenant.categories.get(record.category_id) if record.category_id is not None else None
    return dto.render("ServiceOutputDto",
        Id=record.id, Name=record.name, Description=record.description, UnitCost=record.unit_cost,
        UnitPrice=record.unit_price, CategoryId=record.category_id, Category=group.name if group else None,
        SubCategoryId=record.sub_category_id, UnitOfMeasureId=record.unit_of_measure_id,
        IncomeAccountId=record.income_account_id, ExpenseAccountId=record.expense_account_id,
        IsActive=record.is_active, IsTaxable=record.is_taxable, CreatedOn=wire_datetime(record.stamps.created_on),
        CreatedBy=record.stamps.created_by or 0, ModifiedOn=wire_datetime(record.stamps.modified_on),
        ModifiedBy=record.stamps.modified_by or 0, Margin=record.margin, MarginType=record.margin_type,
    )


def service_lookup(record: Service) -> dict[str, Any]:
    return dto.render("ServiceLookupOutputDto", Id=record.id, Name=record.name, Description=record.description)


def contract(tenant: Tenant, record: Contract) -> dict[str, Any]:
    return dto.render("ClientContractSummaryOutputDto",
        Id=record.id, ContractName=record.contract_name, AccountName=tenant.accounts[record.account_id].account_name,
        ContractType=record.contract_type, ContractBillingPrice=record.billing_price, Status=record.status,
        ContractNumber=record.contract_number, BillingCycle=record.billing_cycle,
        StartDate=wire_datetime(record.start_date), EndDate=wire_datetime(record.end_date))


# The time entry source of a log typed in the time sheet (ASSUMED: Kaseya does not publish the ids).
TIME_SHEET_ENTRY = 1


def time_log(tenant: Tenant, record: TimeLog) -> dict[str, Any]:
    user = tenant.employees.get(record.user_id)
    week = week_start(record.start)
    end = record.start + timedelta(hours=record.timespent)
    return dto.render("TimeLogOutputDto",
        Id=record.id, **_stamps(record.stamps), Timespent=record.timespent, OverTimeSpent=record.overtime_spent,
        TimesheetId=record.timesheet_id, WeekStart=wire_datetime(week), WeekEnd=wire_datetime(week + timedelta(days=6)),
        TimeEntrySourceId=TIME_SHEET_ENTRY, UserId=record.user_id,
        FirstName=user.first_name if user else None, LastName=user.last_name if user else None,
        Role=record.role, WorkType=record.work_type, Notes=record.notes, AccountId=record.account_id,
        AccountName=tenant.accounts[record.account_id].account_name, IsPosted=record.is_posted,
        IsApproved=record.is_approved, IsBilled=record.is_billed, IsBillable=record.is_billable,
        StartDate=wire_datetime(record.start.replace(hour=0, minute=0, second=0, microsecond=0)),
        StartTime=record.start.strftime("%H:%M:%S"), EndTime=end.strftime("%H:%M:%S"),
        CreatedByName=tenant.employee_name(record.stamps.created_by),
        ModifiedByName=tenant.employee_name(record.stamps.modified_by))
