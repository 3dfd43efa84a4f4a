"""The accounts and contacts the push creates in Kaseya for a document's client and contact."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zk_pipelines.domain.bundles import PushPlanError
from zk_pipelines.domain.push_plan.markers import client_marker
from zk_pipelines.domain.push_plan.requests import KaseyaId


@dataclass(frozen=True)
class AccountDefaults:
    account_type_ids: Mapping[str, int]  # Kaseya account type name -> id
    business_type_id: int
    account_manager_id: int  # the resolved sales representative
    account_type: str = "Customer"  # when the client's company type is not a Kaseya account type


MAIN_LOCATION_NAME = "Main"


def _address(address: Mapping[str, Any], *, main: bool, phone: str | None = None) -> dict[str, Any]:
    return {
        "Address1": address.get("address_line_1"),
        "Address2": address.get("address_line_2"),
        "City": address.get("city"),
        "State": address.get("state"),
        "ZipCode": address.get("pincode"),
        "Country": address.get("country"),
        "Phone": address.get("phone") or phone,
        "IsMain": main,
        "IsBilling": main,
        "AddressType": None if main else "Shipping",
    }


def account_body(client: Mapping[str, Any], defaults: AccountDefaults) -> dict[str, Any]:
    """The `AccountPostInputDto` for a Zomentum client Kaseya does not have: one main location holding the
    billing address (main and billing) and the shipping addresses."""
    name = (client.get("name") or "").strip()
    if not name:
        raise PushPlanError(f"Zomentum client {client.get('id')} has no name")
    company_type = (client.get("company_type") or "").strip().title()
    type_name = company_type if company_type in defaults.account_type_ids else defaults.account_type
    if type_name not in defaults.account_type_ids:
        raise PushPlanError(f"Kaseya has no account type named {type_name!r} "
                            f"(known: {', '.join(defaults.account_type_ids) or 'none'})")
    addresses = []
    if client.get("billing_address"):
        addresses.append(_address(client["billing_address"], main=True, phone=client.get("phone")))
    addresses += [_address(a, main=False) for a in client.get("shipping_addresses") or []]
    return {
        "AccountName": name,
        "AccountTypeId": defaults.account_type_ids[type_name],
        "BusinessTypeId": defaults.business_type_id,
        "AccountManagerId": defaults.account_manager_id,
        "Description": client_marker(str(client["id"])),
        "Website": client.get("website") or None,
        "IsActive": True,
        "Locations": [{"LocationName": MAIN_LOCATION_NAME, "IsMain": True, "IsActive": True,
                       "Addresses": addresses}],
        "RouteInvoiceToParent": False,
    }


def contact_body(
    client_user: Mapping[str, Any], *, account_id: KaseyaId, location_id: KaseyaId, email_type_id: int,
    phone_type_id: int,
) -> dict[str, Any]:
    """The `ContactInputDto` for a Zomentum contact Kaseya does not have (Kaseya needs both names)."""
    name = client_user.get("name") or {}
    first, last = (name.get("first") or "").strip(), (name.get("last") or "").strip()
    if not first or not last:
        raise PushPlanError(f"Zomentum contact {client_user.get('id')} ({first} {last}): Kaseya needs a first and "
                            "a last name; add the missing one in Zomentum")
    email, phone = (client_user.get("email") or "").strip(), (client_user.get("phone") or "").strip()
    return {
        "FirstName": first,
        "LastName": last,
        "AccountId": account_id,
        "LocationId": location_id,
        "Emails": [{"EmailAddress": email, "EmailTypeId": email_type_id, "IsDefault": True}] if email else [],
        "Phones": [{"PhoneNumber": phone, "PhoneTypeId": phone_type_id, "IsDefault": True}] if phone else [],
    }
