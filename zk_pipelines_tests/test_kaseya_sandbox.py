"""The Kaseya BMS sandbox behaves as `kaseya-bms-notes.md` says Kaseya does: auth, case-insensitivity,
paging, ModifiedOn filters, validation as 200 + success:false, the rate limit, and its control surface."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from zk_pipelines.sandbox.kaseya import PASSWORD, TENANT, USERNAME, KaseyaState
from zk_pipelines.sandbox.kaseya.dto import parse_datetime, wire_datetime
from zk_pipelines.sandbox.world import SCALES

HISTORY_DAYS = SCALES["small"].history_days


def error_of(response: requests.Response) -> str:
    payload = response.json()
    assert payload["success"] is False and payload["result"] is None, payload
    return payload["error"]["message"]


def problems_of(response: requests.Response) -> list[str]:
    error_of(response)
    return response.json()["error"]["subErrors"]


def every_row(http, path: str, params: dict | None = None) -> list[dict]:
    rows, page = [], 1
    while True:
        batch = http.result("GET", path, params={**(params or {}), "PageNumber": page, "PageSize": 100})
        rows += batch
        if len(batch) < 100:
            return rows
        page += 1


def first(mapping):
    return next(iter(mapping.values()))


def opportunity_body(tenant, **changes) -> dict:
    account = first(tenant.accounts)
    body = {
        "Subject": "Firewall refresh", "StatusId": tenant.status_named("Proposal").id, "AccountId": account.id,
        "AccountLocationId": account.main_location.id,
        "ContactId": next(c.id for c in tenant.contacts_of(account.id)),
        "TypeId": tenant.lookup("OpportunityType").rows[0].id, "Probability": 50,
        "RatingId": tenant.lookup("OpportunityRating").rows[0].id,
        "SalesRepresentativeUserId": account.account_manager_id, "Amount": 4200.5,
        "CloseDate": "2030-01-31T00:00:00",
    }
    body.update(changes)
    return body


# --- authentication -------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
@pytest.mark.parametrize("names", [
    ("UserName", "Password", "Tenant", "GrantType"),
    ("username", "password", "tenant", "granttype"),
    ("USERNAME", "PassWord", "TENANT", "grantType"),
])
def test_login_takes_form_fields_in_either_encoding_and_any_case(kaseya, kaseya_http, encoding, names):
    values = (USERNAME, PASSWORD, TENANT, "password")
    form = dict(zip(names, values, strict=True))
    send = {"data": form} if encoding == "urlencoded" else {"files": {k: (None, v) for k, v in form.items()}}
    response = requests.post(f"{kaseya.base_url}/v2/security/authenticate", timeout=10, **send)
    payload = response.json()
    assert response.status_code == 200 and payload["success"] is True, payload
    token = payload["result"]["accessToken"]
    assert set(payload["result"]) == {"accessToken", "refreshToken", "accessTokenExpireOn", "refreshTokenExpireOn"}
    assert kaseya_http.result("GET", "/v2/security/userinfo", token=token)["emailAddress"] == USERNAME


@pytest.mark.parametrize(("override", "expected"), [
    ({"Password": "wrong-password"}, "Invalid username or password."),
    ({"UserName": "someone.else@msp.example"}, "Invalid username or password."),
    ({"Tenant": "Other MSP Inc"}, "Tenant 'Other MSP Inc' was not found"),
    ({"GrantType": ""}, "The GrantType field is required."),
    ({"GrantType": "client_credentials"}, "GrantType 'client_credentials' is not supported"),
])
def test_a_refused_login_is_200_with_success_false_and_a_precise_message(kaseya_http, override, expected):
    response = kaseya_http.call("POST", "/v2/security/authenticate", token=None,
                                data=kaseya_http.login_form(**override))
    assert response.status_code == 200
    assert error_of(response).startswith(expected)


def test_the_tenant_is_the_company_name_in_any_case(kaseya_http):
    assert kaseya_http.login(Tenant=f"  {TENANT.upper()} ")["accessToken"]


def test_a_json_login_is_refused_as_the_wrong_media_type(kaseya_http):
    response = kaseya_http.call("POST", "/v2/security/authenticate", token=None, json=kaseya_http.login_form())
    assert response.status_code == 415


def test_the_access_token_expires_on_the_sandbox_clock(kaseya, kaseya_http):
    issued = kaseya_http.login()
    expires = parse_datetime(issued["accessTokenExpireOn"])
    assert expires - kaseya.state.now() == pytest.approx(timedelta(seconds=1200), abs=timedelta(seconds=5))
    kaseya.state.advance_clock(1190)
    assert kaseya_http.get("/v2/security/userinfo").status_code == 200
    kaseya.state.advance_clock(11)
    response = kaseya_http.get("/v2/security/userinfo")
    assert response.status_code == 401
    assert error_of(response) == "The access token has expired."


def test_the_token_lifetime_is_a_knob(kaseya, kaseya_http):
    assert kaseya_http.control("POST", "knobs", json={"token_lifetime_seconds": 60}).status_code == 200
    kaseya_http.login()
    kaseya.state.advance_clock(61)
    assert kaseya_http.get("/v2/security/userinfo").status_code == 401


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
def test_a_missing_or_unknown_bearer_is_401(kaseya_http, header):
    headers = {"Authorization": header} if header else {}
    response = kaseya_http.call("GET", "/v2/crm/accounts/summary", token=None, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert error_of(response) == "The access token is missing or not valid."


@pytest.mark.parametrize("body", [None, b"", b"{not json"])
def test_a_write_without_a_valid_token_is_401_before_its_body_is_read(kaseya_http, body):
    response = kaseya_http.call("POST", "/v2/crm/opportunities", token=None,
                                headers={"Authorization": "Bearer not-a-token", "Content-Type": "application/json"},
                                data=body)
    assert response.status_code == 401
    assert error_of(response) == "The access token is missing or not valid."


def test_refresh_returns_a_new_pair_and_retires_the_old_access_token(kaseya, kaseya_http):
    old_access, old_refresh = kaseya_http.access_token, kaseya_http.refresh_token
    kaseya.state.advance_clock(1500)  # the access token has expired; the refresh token has not
    response = kaseya_http.call("POST", "/v2/security/refreshtoken", token=None,
                                data={"accesstoken": old_access, "REFRESHTOKEN": old_refresh})
    result = response.json()["result"]
    assert response.status_code == 200 and result["accessToken"] not in (old_access, None)
    assert result["refreshToken"] != old_refresh
    assert kaseya_http.get("/v2/security/userinfo", token=result["accessToken"]).status_code == 200
    assert kaseya_http.get("/v2/security/userinfo", token=old_access).status_code == 401
    again = kaseya_http.call("POST", "/v2/security/refreshtoken", token=None,
                             data={"AccessToken": old_access, "RefreshToken": old_refresh})
    assert "not valid" in error_of(again)


def test_an_expired_refresh_token_is_refused(kaseya, kaseya_http):
    kaseya.state.advance_clock(kaseya.state.knobs.refresh_token_lifetime_seconds + 1)
    response = kaseya_http.call("POST", "/v2/security/refreshtoken", token=None,
                                data={"AccessToken": kaseya_http.access_token,
                                      "RefreshToken": kaseya_http.refresh_token})
    assert response.status_code == 200 and "expired" in error_of(response)


def test_without_has_api_access_login_fails_and_tokens_stop_working(kaseya, kaseya_http):
    kaseya.state.set_knobs(api_access=False)
    response = kaseya_http.call("POST", "/v2/security/authenticate", token=None, data=kaseya_http.login_form())
    assert "Has API Access" in error_of(response)
    refused = kaseya_http.get("/v2/crm/accounts/summary")
    assert refused.status_code == 403 and "Has API Access" in error_of(refused)


def test_secrets_never_reach_the_request_log(kaseya, kaseya_http):
    kaseya_http.call("POST", "/v2/security/refreshtoken", token=None,
                     data={"AccessToken": kaseya_http.access_token, "RefreshToken": kaseya_http.refresh_token})
    logged = kaseya_http.control("GET", "requests").text
    assert PASSWORD not in logged and "***" in logged
    for entry in kaseya.state.requests():
        assert kaseya_http.access_token not in str(entry) and kaseya_http.refresh_token not in str(entry)
    assert PASSWORD not in repr(kaseya) and PASSWORD not in repr(kaseya.state)


# --- routes, case, envelope, errors ---------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/v2/crm/opportunities/statuses/Lookup",
    "/v2/crm/opportunities/statuses/lookup",
    "/V2/CRM/Opportunities/Statuses/LOOKUP",
])
def test_routes_match_in_any_case_and_log_the_contract_template(kaseya, kaseya_http, path):
    names = [s["name"] for s in kaseya_http.result("GET", path)]
    assert names == ["Prospecting", "Qualification", "Proposal", "Negotiation", "On Hold", "Closed Won",
                     "Closed Lost"]
    assert kaseya.state.requests()[-1]["route"] == "/v2/crm/opportunities/statuses/Lookup"


def test_query_names_and_body_properties_are_read_in_any_case(kaseya, kaseya_http):
    account = first(kaseya.state.tenant.accounts)
    rows = kaseya_http.result("GET", "/v2/crm/contacts/summary", params={"filter.accountid": account.id,
                                                                           "pagesize": 2})
    assert len(rows) == 2 and {r["accountId"] for r in rows} == {account.id}
    body = {key.lower(): value for key, value in opportunity_body(kaseya.state.tenant).items()}
    assert kaseya_http.result("POST", "/v2/crm/opportunities", json=body)["subject"] == "Firewall refresh"


def test_the_wire_is_camel_case_in_the_envelope(kaseya_http):
    payload = kaseya_http.get("/v2/crm/accounts/summary", params={"PageSize": 1}).json()
    assert list(payload) == ["success", "error", "result", "totalRecords"]
    assert {"id", "accountName", "locations"} <= set(payload["result"][0])
    assert {"id", "qtyInStock", "upc"} <= set(kaseya_http.result("GET", "/v2/inventory/products/searchselect")[0])


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("GET", "/v2/crm/nothing/here", {}, 404),
    ("GET", "/api/crm/accounts/summary", {}, 404),
    ("GET", "/v2/crm/accounts/summary/1", {}, 404),
    ("GET", "/v2/crm/opportunities/abc", {}, 404),
    ("GET", "/v2/system/lookup/NoSuchTable", {}, 404),
    ("DELETE", "/v2/crm/opportunities", {}, 405),
    ("POST", "/v2/crm/opportunities", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
    ("POST", "/v2/crm/opportunities", {"data": b"", "headers": {"Content-Type": "application/json"}}, 400),
])
def test_http_errors_are_enveloped(kaseya_http, method, path, kwargs, status):
    response = kaseya_http.call(method, path, **kwargs)
    assert response.status_code == status
    assert error_of(response)


def test_reads_by_id_are_enveloped(kaseya, kaseya_http):
    account = first(kaseya.state.tenant.accounts)
    payload = kaseya_http.get(f"/v2/crm/accounts/summary/{account.id}").json()
    assert payload["success"] is True and payload["result"]["id"] == account.id


# --- paging and filters ---------------------------------------------------------------------------------

def test_paging_is_one_based_and_every_row_appears_once(kaseya, kaseya_http):
    expected = sorted(kaseya.state.tenant.contacts)
    seen, page = [], 1
    while True:
        payload = kaseya_http.get("/v2/crm/contacts/summary", params={"PageNumber": page, "PageSize": 7}).json()
        assert payload["totalRecords"] == len(expected)
        seen += [row["id"] for row in payload["result"]]
        if len(payload["result"]) < 7:
            break
        page += 1
    assert sorted(seen) == expected and len(seen) == len(set(seen))


def test_page_size_is_capped_at_100(kaseya, kaseya_http):
    for i in range(70):
        kaseya.state.create_record("accounts", {"accountName": f"Cap Test {i:02d}"})
    payload = kaseya_http.get("/v2/crm/accounts/summary", params={"PageSize": 500}).json()
    assert len(payload["result"]) == 100 and payload["totalRecords"] == 110
    second = kaseya_http.get("/v2/crm/accounts/summary", params={"PageSize": 500, "PageNumber": 2}).json()
    assert len(second["result"]) == 10


@pytest.mark.parametrize(("params", "field"), [
    ({"PageNumber": 0}, "PageNumber"),
    ({"PageSize": 0}, "PageSize"),
    ({"PageNumber": "one"}, "PageNumber"),
    ({"Filter.ModifiedOnFrom": "yesterday"}, "Filter.ModifiedOnFrom"),
    ({"Filter.IsActive": "maybe"}, "Filter.IsActive"),
])
def test_bad_paging_or_filter_values_are_refused_naming_the_parameter(kaseya_http, params, field):
    response = kaseya_http.get("/v2/crm/accounts/summary", params=params)
    assert response.status_code == 200 and field in error_of(response)


def test_lists_documented_without_a_total_carry_none(kaseya_http):
    payload = kaseya_http.get("/v2/crm/contacts/search", params={"PageSize": 5}).json()
    assert "totalRecords" not in payload and len(payload["result"]) == 5


@pytest.mark.parametrize("path", ["/v2/crm/accounts/summary", "/v2/crm/contacts/summary", "/v2/crm/opportunities"])
def test_modified_on_bounds_are_inclusive_and_naive_means_utc(kaseya, kaseya_http, path):
    rows = kaseya_http.result("GET", path, params={"PageSize": 100})
    target = rows[len(rows) // 2]
    moment = parse_datetime(target["modifiedOn"])

    def ids(start: str, end: str) -> set[int]:
        window = {"Filter.ModifiedOnFrom": start, "Filter.ModifiedOnTo": end, "PageSize": 100}
        return {row["id"] for row in kaseya_http.result("GET", path, params=window)}

    exact = wire_datetime(moment)
    assert target["id"] in ids(exact, exact)
    after = wire_datetime(moment + timedelta(milliseconds=1))
    before = wire_datetime(moment - timedelta(milliseconds=1))
    assert target["id"] not in ids(after, after) | ids(before, before)
    zulu = moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
    berlin = (moment + timedelta(hours=2)).replace(tzinfo=None).isoformat() + "+02:00"
    assert target["id"] in ids(zulu, zulu) and target["id"] in ids(berlin, berlin)


def test_modified_on_filter_selects_exactly_the_window(kaseya, kaseya_http):
    now = kaseya.state.now()
    start, end = now - timedelta(days=30), now - timedelta(days=10)
    expected = {a.id for a in kaseya.state.tenant.accounts.values() if start <= a.stamps.modified_on <= end}
    rows = kaseya_http.result("GET", "/v2/crm/accounts/summary", params={
        "Filter.ModifiedOnFrom": wire_datetime(start), "Filter.ModifiedOnTo": wire_datetime(end), "PageSize": 100})
    assert 0 < len(expected) < len(kaseya.state.tenant.accounts)
    assert {row["id"] for row in rows} == expected


@pytest.mark.parametrize(("path", "params", "check"), [
    ("/v2/crm/opportunities", lambda t: {"Filter.StatusId": t.status_named("Closed Won").id},
     lambda t, row: row["status"] == "Closed Won"),
    ("/v2/crm/opportunities", lambda t: {"Filter.InPipeline": "false"},
     lambda t, row: row["status"] in ("Closed Won", "Closed Lost")),
    ("/v2/inventory/products/searchselect", lambda t: {"Filter.WarehouseIds": t.warehouse_named("Drop Ship").id},
     lambda t, row: row["warehouse"] == "Drop Ship"),
    ("/v2/crm/contacts/search", lambda t: {"Filter.IsPoc": "true"}, lambda t, row: row["isPoc"]),
    ("/v2/crm/accounts/summary", lambda t: {"Filter.AccountTypeName": "prospect"},
     lambda t, row: row["accountType"] == "Prospect"),
    ("/v2/crm/quotes/summary", lambda t: {"Filter.StatusIds": ",".join(
        str(r.id) for r in t.lookup("QuoteStatus").rows if r.name in ("Draft", "Sent"))},
     lambda t, row: row["statusName"] in ("Draft", "Sent")),
    ("/v2/crm/contacts/summary", lambda t: {"Filter.Phone": first(t.contacts).phones[0].phone[-4:]},
     lambda t, row: any(first(t.contacts).phones[0].phone[-4:] in p["phone"] for p in row["phones"])),
    ("/v2/crm/contacts/search", lambda t: {"Filter.JobTitle": first(t.contacts).job_title.lower()},
     lambda t, row: row["jobTitle"] == first(t.contacts).job_title),
    ("/v2/crm/contacts/search", lambda t: {"Filter.LocationName": "HEAD"},
     lambda t, row: "head" in row["locationName"].lower()),
    ("/v2/timelogs", lambda t: {"Filter.IsBillable": "false", "Filter.UserId": first(t.timelogs).user_id},
     lambda t, row: row["isBillable"] is False and row["userId"] == first(t.timelogs).user_id),
    ("/v2/finance/contracts/summary", lambda t: {"Filter.BillingCycle": first(t.contracts).billing_cycle.upper()},
     lambda t, row: row["billingCycle"] == first(t.contracts).billing_cycle),
])
def test_list_filters_keep_only_matching_rows(kaseya, kaseya_http, path, params, check):
    tenant = kaseya.state.tenant
    everything = every_row(kaseya_http, path)
    rows = every_row(kaseya_http, path, params(tenant))
    assert rows and len(rows) < len(everything)
    assert all(check(tenant, row) for row in rows)
    assert {r["id"] for r in everything if check(tenant, r)} == {r["id"] for r in rows}


def test_contacts_search_finds_a_contact_by_email(kaseya, kaseya_http):
    contact = first(kaseya.state.tenant.contacts)
    rows = kaseya_http.result("GET", "/v2/crm/contacts/search",
                              params={"Filter.EmailAddress": contact.default_email.upper()})
    assert [row["id"] for row in rows] == [contact.id]


def test_contacts_search_knows_no_client_portal_users(kaseya_http):
    # The sandbox models no client portal: asking for contacts with access finds none, without it finds all.
    path = "/v2/crm/contacts/search"
    assert kaseya_http.result("GET", path, params={"Filter.HasClientPortalAccess": "true"}) == []
    assert every_row(kaseya_http, path, {"Filter.HasClientPortalAccess": "false"}) == every_row(kaseya_http, path)


# --- writes ---------------------------------------------------------------------------------------------

def test_every_write_moves_modified_on_forward(kaseya, kaseya_http):
    account = first(kaseya.state.tenant.accounts)
    view = kaseya.state.record("accounts", account.id)
    body = {"AccountName": view["accountName"], "AccountTypeId": view["accountTypeId"],
            "BusinessTypeId": view["businessTypeId"], "AccountManagerId": view["accountManagerId"],
            "IsActive": True, "Website": "https://renamed.example"}
    stamps = [parse_datetime(view["modifiedOn"])]
    for _ in range(3):  # faster than the clock's millisecond: still strictly later each time
        stamps.append(parse_datetime(kaseya_http.result("PUT", f"/v2/crm/accounts/{account.id}", json=body)
                                     ["modifiedOn"]))
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert kaseya.state.record("accounts", account.id)["website"] == "https://renamed.example"
    window = {"Filter.ModifiedOnFrom": wire_datetime(stamps[-1]), "PageSize": 100}
    assert [row["id"] for row in kaseya_http.result("GET", "/v2/crm/accounts/summary", params=window)] == [account.id]


@pytest.mark.parametrize("field", ["Subject", "StatusId", "AccountId", "AccountLocationId", "TypeId", "Probability",
                                   "RatingId", "SalesRepresentativeUserId", "Amount", "CloseDate"])
def test_an_opportunity_without_a_required_field_is_refused_naming_it(kaseya, kaseya_http, field):
    body = opportunity_body(kaseya.state.tenant)
    del body[field]
    before = len(kaseya.state.tenant.opportunities)
    response = kaseya_http.call("POST", "/v2/crm/opportunities", json=body)
    assert response.status_code == 200
    assert f"The {field} field is required." in response.json()["error"]["subErrors"]
    assert len(kaseya.state.tenant.opportunities) == before


@pytest.mark.parametrize(("changes", "expected"), [
    ({"StatusId": 1}, "StatusId 1 is not an opportunity status"),
    ({"AccountLocationId": 1}, "AccountLocationId 1 is not a location of account"),
    ({"ContactId": 1}, "ContactId 1 is not a contact of account"),
    ({"RatingId": 1}, "RatingId 1 is not a valid OpportunityRating"),
    ({"SalesRepresentativeUserId": 1}, "SalesRepresentativeUserId 1 is not an employee"),
    ({"Probability": 150}, "Probability must be between 0 and 100"),
    ({"Amount": "a lot"}, "The JSON value of Amount could not be converted to a number."),
    ({"CloseDate": "soon"}, "The JSON value of CloseDate could not be converted to a date-time."),
])
def test_an_opportunity_with_a_bad_reference_or_type_is_refused(kaseya, kaseya_http, changes, expected):
    response = kaseya_http.call("POST", "/v2/crm/opportunities", json=opportunity_body(kaseya.state.tenant, **changes))
    assert error_of(response).startswith(expected)


def test_an_opportunity_put_is_a_full_replace(kaseya, kaseya_http):
    tenant = kaseya.state.tenant
    created = kaseya_http.result("POST", "/v2/crm/opportunities", json=opportunity_body(tenant, CustomerPO="PO-1"))
    assert created["contactId"] is not None and created["customerPO"] == "PO-1"
    body = opportunity_body(tenant, StatusId=tenant.status_named("Closed Won").id, Probability=100)
    del body["ContactId"]
    updated = kaseya_http.result("PUT", f"/v2/crm/opportunities/{created['id']}", json=body)
    assert updated["contactId"] is None and updated["customerPO"] is None
    assert updated["status"] == "Closed Won" and updated["inPipeline"] is False
    assert kaseya_http.result("GET", f"/v2/crm/opportunities/{created['id']}") == updated


def test_an_account_post_creates_its_locations_and_addresses_and_names_are_unique(kaseya, kaseya_http):
    tenant = kaseya.state.tenant
    body = {
        "AccountName": "Ærø Fjord Consulting ApS", "AccountTypeId": tenant.account_type_named("Customer").id,
        "BusinessTypeId": tenant.lookup("BusinessType").rows[0].id,
        "AccountManagerId": first(tenant.employees).id, "Website": "https://aero.example",
        "Locations": [
            {"LocationName": "Head Office", "IsMain": True, "IsActive": True, "Addresses": [
                {"Address1": "Strandvej 1", "City": "Ærøskøbing", "Country": "Germany", "IsMain": True,
                 "IsBilling": True},
                {"Address1": "Dock 4", "City": "Marstal", "CountryId": 840, "IsMain": False, "IsBilling": False}]},
            {"LocationName": "Warehouse", "IsMain": False, "IsActive": True, "Addresses": []},
        ],
    }
    created = kaseya_http.result("POST", "/v2/crm/accounts", json=body)
    main, other = created["locations"]
    assert main["isMain"] and not other["isMain"]
    assert [(a["addressType"], a["country"], a["countryId"]) for a in main["addresses"]] == [
        ("Main", "Germany", 276), ("Shipping", "United States", 840)]
    assert kaseya_http.result("GET", f"/v2/crm/accounts/{created['id']}/locations/{other['id']}")["locationName"] \
        == "Warehouse"
    again = kaseya_http.call("POST", "/v2/crm/accounts", json={**body, "AccountName": "ærø fjord consulting aps"})
    assert "already exists" in error_of(again)


def test_a_contact_post_then_put_moves_the_accounts_single_poc(kaseya, kaseya_http):
    tenant = kaseya.state.tenant
    account = first(tenant.accounts)
    email_type = tenant.lookup("EmailType").by_name("Work").id
    created = kaseya_http.result("POST", "/v2/crm/contacts/summary", json={
        "FirstName": "Zoë", "LastName": "Ångström", "AccountId": account.id, "LocationId": account.main_location.id,
        "Emails": [{"EmailAddress": "zoe@acme.example", "EmailTypeId": email_type, "IsDefault": True}],
        "Phones": [{"PhoneNumber": "+1-555-000-1111", "PhoneTypeId": tenant.lookup("PhoneType").rows[0].id,
                    "IsDefault": True}],
    })
    assert created["emailAddress"] == "zoe@acme.example" and created["accountName"] == account.account_name
    updated = kaseya_http.result("PUT", f"/v2/crm/contacts/{created['id']}", json={
        "AccountId": account.id, "LocationId": account.main_location.id, "FirstName": "Zoë", "LastName": "Ångström",
        "JobTitle": "CTO", "Poc": True, "IsActive": True})
    assert updated["poc"] is True and updated["jobTitle"] == "CTO"
    pocs = kaseya_http.result("GET", "/v2/crm/contacts/search",
                              params={"Filter.AccountIds": account.id, "Filter.IsPoc": "true"})
    assert [row["id"] for row in pocs] == [created["id"]]


def test_a_contact_put_is_a_full_replace_so_a_missing_is_active_deactivates(kaseya, kaseya_http):
    contact = next(c for c in kaseya.state.tenant.contacts.values() if c.is_active and c.job_title)
    body = {"AccountId": contact.account_id, "LocationId": contact.location_id, "FirstName": contact.first_name,
            "LastName": contact.last_name}
    updated = kaseya_http.result("PUT", f"/v2/crm/contacts/{contact.id}", json=body)
    assert (updated["isActive"], updated["jobTitle"], updated["poc"]) == (False, None, False)
    assert [e["emailAddress"] for e in updated["emails"]] == [e.email_address for e in contact.emails]


@pytest.mark.parametrize(("changes", "expected"), [
    ({"LastName": None}, "The LastName field is required."),
    ({"AccountId": 1}, "AccountId 1 is not an account."),
    ({"Emails": [{"EmailAddress": "not-an-email", "EmailTypeId": 0, "IsDefault": True}]},
     "Emails[0].EmailAddress 'not-an-email' is not an e-mail address."),
    ({"Phones": [{"PhoneNumber": "+1-555", "PhoneTypeId": 0, "IsDefault": True}]},
     "Phones[0].PhoneTypeId 0 is not a valid PhoneType (see GET /v2/system/lookup/PhoneType)."),
])
def test_a_bad_contact_is_refused_naming_the_field(kaseya, kaseya_http, changes, expected):
    account = first(kaseya.state.tenant.accounts)
    body = {"FirstName": "Ana", "LastName": "Lima", "AccountId": account.id, "LocationId": account.main_location.id}
    response = kaseya_http.call("POST", "/v2/crm/contacts/summary", json={**body, **changes})
    assert expected in problems_of(response)


def test_a_note_is_added_to_an_opportunity(kaseya, kaseya_http):
    opportunity = first(kaseya.state.tenant.opportunities)
    note = kaseya_http.result("POST", f"/v2/crm/opportunities/{opportunity.id}/notes", json={"note": "Won in Zomentum"})
    assert note["note"] == "Won in Zomentum" and note["createdByName"] == "API Employee"
    listed = kaseya_http.result("GET", f"/v2/crm/opportunities/{opportunity.id}/notes")
    assert [n["id"] for n in listed] == [note["id"]]
    assert "The Note field is required." in error_of(
        kaseya_http.call("POST", f"/v2/crm/opportunities/{opportunity.id}/notes", json={"Note": ""}))


def test_a_quote_is_built_through_the_unpublished_header_and_the_published_line_items(kaseya, kaseya_http):
    tenant = kaseya.state.tenant
    opportunity = first(tenant.opportunities)
    product = first(tenant.products)
    sent = tenant.lookup("QuoteStatus").by_name("Sent").id
    header = {"Name": "Proposal 42", "AccountId": opportunity.account_id, "OpportunityId": opportunity.id,
              "StatusId": tenant.lookup("QuoteStatus").by_name("Draft").id, "ExpiryDate": "2030-06-30T00:00:00",
              "SalesRepresentativeUserId": opportunity.sales_representative_user_id}
    quote = kaseya_http.result("POST", "/v2/crm/quotes", json=header)
    assert quote["opportunityTitle"] == opportunity.subject and quote["statusName"] == "Draft"
    line = kaseya_http.result("POST", f"/v2/crm/quotes/{quote['id']}/lineItems/1/0",
                              json={"Id": product.id, "Quantity": 3, "UnitPrice": 99.5, "Taxable": False})
    assert line["name"] == product.product_name and line["total"] == 298.5 and line["isDistributerItem"] is False
    changed = kaseya_http.result("PUT", f"/v2/crm/quotes/{quote['id']}/lineItems/{line['id']}",
                                 json={"Name": "Renamed", "UnitPrice": 10, "UnitCost": 5, "Quantity": 2,
                                       "Discount": 1, "Taxable": True})
    assert (changed["total"], changed["taxRate"]) == (19.0, 8.0)
    assert kaseya_http.result("GET", f"/v2/crm/quotes/{quote['id']}/lineItems") == [changed]
    assert kaseya_http.result("GET", f"/v2/crm/quotes/{quote['id']}/lineItems/{line['id']}") == changed
    kaseya_http.result("PUT", f"/v2/crm/quotes/{quote['id']}", json={**header, "StatusId": sent})
    assert kaseya_http.result("GET", f"/v2/crm/quotes/{quote['id']}")["statusName"] == "Sent"


@pytest.mark.parametrize(("path", "body", "expected"), [
    ("lineItems/9/0", {"Id": 0}, "itemTypeId 9 is not an item type"),
    ("lineItems/1/0", {"Id": 1}, "Id 1 is not a product (ProductIndexId)"),
    ("lineItems/2/0", {"Id": 1}, "Id 1 is not a service"),
])
def test_a_line_item_must_name_a_catalogue_item_of_its_type(kaseya, kaseya_http, path, body, expected):
    quote = first(kaseya.state.tenant.quotes)
    assert error_of(kaseya_http.call("POST", f"/v2/crm/quotes/{quote.id}/{path}", json=body)).startswith(expected)


def test_a_posted_service_is_visible_in_the_catalogue_and_on_quotes(kaseya, kaseya_http):
    service = kaseya_http.result("POST", "/v2/admin/finance/services/services", json={
        "Id": 0, "Name": "Bundle: Secure Desktop", "UnitPrice": 120, "UnitCost": 70, "IsActive": True,
        "IsTaxable": True})
    assert service["margin"] == pytest.approx(41.67)
    lookup = kaseya_http.result("GET", "/v2/admin/finance/services/lookup", params={"Filter.Name": "secure desktop"})
    assert [row["id"] for row in lookup] == [service["id"]]
    assert kaseya_http.result("GET", f"/v2/admin/finance/services/{service['id']}")["name"] == "Bundle: Secure Desktop"
    quote = first(kaseya.state.tenant.quotes)
    line = kaseya_http.result("POST", f"/v2/crm/quotes/{quote.id}/lineItems/2/0", json={"Id": service["id"]})
    assert (line["name"], line["unitPrice"], line["unitCost"]) == ("Bundle: Secure Desktop", 120.0, 70.0)
    duplicate = kaseya_http.call("POST", "/v2/admin/finance/services/services",
                                 json={"Id": 0, "Name": "bundle: secure desktop", "IsActive": True, "IsTaxable": True})
    assert "already exists" in error_of(duplicate)


def test_a_posted_category_is_looked_up_and_duplicates_are_refused(kaseya_http):
    created = kaseya_http.result("POST", "/v2/inventory/products/categories",
                                 json={"Name": "Cloud Licences", "IsActive": True})
    rows = kaseya_http.result("GET", "/v2/inventory/products/categories/lookup", params={"Filter.Name": "cloud"})
    assert [row["id"] for row in rows] == [created["id"]]
    assert "already exists" in error_of(kaseya_http.call("POST", "/v2/inventory/products/categories",
                                                         json={"Name": "hardware", "IsActive": True}))
    assert "The IsActive field is required." in error_of(
        kaseya_http.call("POST", "/v2/inventory/products/categories", json={"Name": "No Flag"}))


def test_a_posted_product_is_searchable_with_its_price_cost_and_supplier(kaseya, kaseya_http):
    tenant = kaseya.state.tenant
    labour = tenant.lookup("ProductType").by_name("Labour").id
    body = {"ProductNumber": "ZM-SVC-001", "ProductName": "Onboarding (hourly)",
            "CategoryId": tenant.category_named("Professional Services").id, "ProductTypeId": labour,
            "WarehouseId": tenant.warehouse_named("Main Warehouse").id, "UnitPrice": 150, "UnitCost": 80,
            "SupplierId": first(tenant.suppliers).id, "SupplierPartNumber": "ONB-1"}
    assert "LabourPeriodId field is required" in error_of(kaseya_http.call("POST", "/v2/inventory/products", json=body))
    body["LabourPeriodId"] = tenant.lookup("LabourPeriod").by_name("Hourly").id
    row = kaseya_http.result("POST", "/v2/inventory/products", json=body)
    found = kaseya_http.result("GET", "/v2/inventory/products/searchselect", params={"Filter.ProductNumber": "zm-svc"})
    assert [r["productIndexId"] for r in found] == [row["productIndexId"]]
    index_id = row["productIndexId"]
    assert kaseya_http.result("GET", f"/v2/inventory/products/{index_id}/pricingLevels")[0]["price"] == 150.0
    assert kaseya_http.result("GET", f"/v2/inventory/products/{index_id}/defaultcost")["defaultCost"] == 80.0
    assert kaseya.state.record("products", index_id)["suppliers"][0]["partNumber"] == "ONB-1"
    assert "already exists" in error_of(kaseya_http.call("POST", "/v2/inventory/products", json=body))


# --- rate limit and permissions -------------------------------------------------------------------------

def test_the_rate_limit_is_per_route_template_and_its_window_follows_the_clock(kaseya, kaseya_http):
    kaseya.state.set_knobs(rate_limit=3)
    ids = list(kaseya.state.tenant.accounts)[:4]
    for account_id in ids[:3]:  # different paths, one route template
        assert kaseya_http.get(f"/v2/crm/accounts/summary/{account_id}").status_code == 200
    limited = kaseya_http.get(f"/v2/crm/accounts/summary/{ids[3]}")
    assert limited.status_code == 429
    assert 3590 <= int(limited.headers["Retry-After"]) <= 3600
    assert "Rate limit exceeded" in error_of(limited)
    assert kaseya_http.get("/v2/crm/accounts/summary").status_code == 200  # another template, another budget
    kaseya.state.advance_clock(1800)
    kaseya_http.login()  # the token has expired meanwhile; logging in is another route
    assert kaseya_http.get(f"/v2/crm/accounts/summary/{ids[3]}").status_code == 429
    kaseya.state.advance_clock(1801)
    kaseya_http.login()
    assert kaseya_http.get(f"/v2/crm/accounts/summary/{ids[3]}").status_code == 200
    statuses = [e["status"] for e in kaseya.state.requests() if e["route"] == "/v2/crm/accounts/summary/{id}"]
    assert statuses == [200, 200, 200, 429, 429, 200]


def test_a_denied_route_is_403_naming_the_missing_permission(kaseya, kaseya_http):
    product = first(kaseya.state.tenant.products)
    kaseya_http.control("POST", "knobs", json={"denied_routes": [
        "GET /v2/inventory/products/{id}/pricingLevels"]})
    response = kaseya_http.get(f"/v2/inventory/products/{product.id}/pricinglevels")
    assert response.status_code == 403
    assert "'Inventory > Products: View'" in error_of(response)
    assert kaseya_http.get(f"/v2/inventory/products/{product.id}/defaultcost").status_code == 200


# --- the control surface --------------------------------------------------------------------------------

def test_reset_restores_the_seeded_tenant_and_clears_log_clock_and_knobs(kaseya, kaseya_http):
    seeded = kaseya.state.records("accounts")
    kaseya.state.create_record("accounts", {"accountName": "Temporary"})
    kaseya.state.set_knobs(rate_limit=5)
    kaseya.state.advance_clock(7200)
    response = kaseya_http.control("POST", "reset", json={})
    assert response.json() == {"seed": 7, "scale": "small"}
    assert [a["id"] for a in kaseya.state.records("accounts")] == [a["id"] for a in seeded]
    assert kaseya.state.requests() == [] and kaseya.state.knobs.rate_limit == 1500
    assert abs((kaseya.state.now() - datetime.now(UTC)).total_seconds()) < 60
    assert kaseya_http.get("/v2/security/userinfo").status_code == 401  # tokens belong to the old tenant


def test_reset_to_another_seed_changes_the_tenant(kaseya, kaseya_http):
    before = {a["accountName"] for a in kaseya.state.records("accounts")}
    kaseya_http.control("POST", "reset", json={"seed": 8})
    assert {a["accountName"] for a in kaseya.state.records("accounts")} != before
    assert kaseya_http.control("POST", "reset", json={"scale": "huge"}).status_code == 400


def test_records_created_and_changed_behind_the_api_show_through_it(kaseya, kaseya_http):
    start = kaseya.state.now()
    created = kaseya_http.control("POST", "records/account", json={"AccountName": "Lumière Dental SARL",
                                                                    "accountType": "Prospect"}).json()
    assert created["accountType"] == "Prospect" and created["locations"][0]["isMain"]
    kaseya.state.advance_clock(60)
    changed = kaseya_http.control("PATCH", f"records/accounts/{created['id']}",
                                  json={"account_name": "Lumière Dental SAS"}).json()
    assert parse_datetime(changed["modifiedOn"]) > parse_datetime(created["modifiedOn"])
    window = {"Filter.ModifiedOnFrom": wire_datetime(start), "PageSize": 100}
    rows = kaseya_http.result("GET", "/v2/crm/accounts/summary", params=window)
    assert rows == [changed]

    opportunity = kaseya_http.control("POST", "records/opportunities", json={
        "accountId": created["id"], "subject": "Dental chairs", "amount": 1000}).json()
    won = kaseya_http.control("PATCH", f"records/opportunities/{opportunity['id']}", json={"status": "Closed Won"})
    assert won.json()["status"] == "Closed Won" and won.json()["probability"] == 100.0
    assert kaseya_http.result("GET", f"/v2/crm/opportunities/{opportunity['id']}")["status"] == "Closed Won"


def test_control_edits_of_contacts_and_products(kaseya, kaseya_http):
    account = first(kaseya.state.tenant.accounts)
    contact = kaseya.state.create_record("contacts", {"accountId": account.id, "firstName": "Siobhán",
                                                      "lastName": "Nguyễn", "emailAddress": "s.n@example.org",
                                                      "isPoc": True})
    assert contact["isPoc"] and contact["emails"][0]["emailAddress"] == "s.n@example.org"
    assert sum(c["isPoc"] for c in kaseya.state.records("contacts") if c["accountId"] == account.id) == 1
    product = kaseya.state.create_record("products", {
        "productNumber": "NEW-1", "productName": "New thing", "category": "Software", "unitPrice": 20,
        "warehouses": [{"warehouse": "West Warehouse", "qtyInStock": 4}],
        "suppliers": [{"name": "Pax8", "partNumber": "P8-1", "unitCost": 12}]})
    kaseya.state.update_record("products", product["id"], {"unitPrice": 25})
    rows = kaseya_http.result("GET", "/v2/inventory/products/searchselect", params={"Filter.ProductNumber": "NEW-1"})
    assert [(r["warehouse"], r["qtyInStock"]) for r in rows] == [("West Warehouse", 4.0)]
    prices = kaseya_http.result("GET", f"/v2/inventory/products/{product['id']}/pricingLevels")
    assert [(p["name"], p["price"]) for p in prices] == [("Retail", 25.0)]


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "records/widgets", None, 404),
    ("GET", "records/accounts/1", None, 404),
    ("POST", "records/accounts", {"accountName": "X", "createdOn": "2020-01-01"}, 400),
    ("POST", "records/accounts", {}, 400),
    ("POST", "records/contacts", {"firstName": "No account"}, 400),
    ("POST", "records/opportunities", {"accountId": 100001, "status": "Maybe"}, 400),
    ("POST", "records/quotes", {"name": "read-only entity"}, 400),
    ("POST", "knobs", {"rate_limit": -1}, 400),
    ("POST", "knobs", {"colour": "blue"}, 400),
    ("POST", "clock/advance", {"seconds": "soon"}, 400),
    ("POST", "clock/advance", {"seconds": -5}, 400),
])
def test_control_surface_refusals_say_why(kaseya_http, method, path, body, status):
    response = kaseya_http.control(method, path, json=body)
    assert response.status_code == status
    assert response.json()["error"]


def test_the_clock_and_the_request_log_over_http(kaseya, kaseya_http):
    before = parse_datetime(kaseya_http.control("GET", "clock").json()["now"])
    after = parse_datetime(kaseya_http.control("POST", "clock/advance", json={"seconds": 600}).json()["now"])
    assert timedelta(seconds=600) <= after - before < timedelta(seconds=660)
    kaseya_http.get("/v2/crm/opportunities", params={"PageSize": 2})
    entry = kaseya_http.control("GET", "requests").json()[-1]
    assert entry["method"] == "GET" and entry["path"] == "/v2/crm/opportunities"
    assert entry["route"] == "/v2/crm/opportunities" and entry["query"] == "PageSize=2"
    assert entry["status"] == 200 and entry["user"] == USERNAME
    assert parse_datetime(entry["at"]) >= after
    assert kaseya_http.control("DELETE", "requests").status_code == 204
    assert kaseya_http.control("GET", "requests").json() == []


def test_the_control_surface_lists_every_served_route(kaseya_http):
    routes = kaseya_http.control("GET", "routes").json()
    unpublished = {f"{r['method']} {r['template']}" for r in routes if not r["published"]}
    assert unpublished == {"POST /v2/crm/quotes", "PUT /v2/crm/quotes/{quotationId}",
                           "GET /v2/crm/quotes/{quotationId}/lineItems", "POST /v2/inventory/products"}


# --- the seeded tenant ----------------------------------------------------------------------------------

def _without_times(rows: list[dict]) -> list[dict]:
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if not k.endswith(("On", "Date"))}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(rows)


@pytest.mark.parametrize("entity", ["accounts", "contacts", "opportunities", "products", "quotes"])
def test_a_seed_gives_the_same_tenant_every_time(entity):
    one, two = KaseyaState(11, "small"), KaseyaState(11, "small")
    assert _without_times(one.records(entity)) == _without_times(two.records(entity))
    assert _without_times(one.records(entity)) != _without_times(KaseyaState(12, "small").records(entity))


def test_lookup_ids_differ_between_tenants_so_they_cannot_be_hard_coded():
    def ids(state: KaseyaState) -> set[int]:
        return set(state.tenant.statuses) | {r.id for r in state.tenant.lookup("OpportunityType").rows}
    assert ids(KaseyaState(7, "small")).isdisjoint(ids(KaseyaState(8, "small")))


def test_the_seeded_tenant_looks_like_an_msp(kaseya):
    state, tenant = kaseya.state, kaseya.state.tenant
    now = state.now()
    accounts = state.records("accounts")
    assert any(len(a["locations"]) > 1 for a in accounts)
    for account in accounts:
        pocs = [c for c in tenant.contacts_of(account["id"]) if c.is_poc]
        assert len(pocs) == 1
        assert sum(loc["isMain"] for loc in account["locations"]) == 1
        for location in account["locations"]:
            addresses = location["addresses"]
            assert any(a["isMain"] for a in addresses) and any(a["isBilling"] for a in addresses)
            assert any(a["addressType"] == "Shipping" for a in location["addresses"])
    assert any(not name.isascii() for name in (a["accountName"] for a in accounts))
    statuses = {o["status"] for o in state.records("opportunities")}
    assert statuses == {s.name for s in tenant.statuses.values()}
    assert len({o["salesRepresentativeUserId"] for o in state.records("opportunities")}) >= 5
    products = state.records("products")
    assert {len(p["warehouses"]) for p in products} >= {1, 2} and max(len(p["warehouses"]) for p in products) <= 3
    assert {len(p["pricingLevels"]) for p in products} == {2, 3}
    assert {len(p["suppliers"]) for p in products} == {1, 2}
    assert all(p["suppliers"][0]["partNumber"] and p["suppliers"][0]["unitCost"] for p in products)
    assert all(quote["lineItems"] for quote in state.records("quotes"))
    created = [parse_datetime(a["createdOn"]) for a in accounts]
    assert min(created) < now - timedelta(days=HISTORY_DAYS * 2 // 3) and max(created) <= now
    assert all(now - timedelta(days=HISTORY_DAYS) <= parse_datetime(a["modifiedOn"]) <= now for a in accounts)


def test_medium_scale_has_the_demo_volumes():
    tenant = KaseyaState(7, "medium").tenant
    assert (len(tenant.accounts), len(tenant.contacts), len(tenant.opportunities), len(tenant.products)) == \
        (2000, 6000, 2000, 1000)
    assert sum(len(p.stocks) for p in tenant.products.values()) > len(tenant.products)
