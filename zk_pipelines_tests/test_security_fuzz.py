"""Fuzzing what comes from outside (docs/security.md): the settings loader with arbitrary text and arbitrary
YAML documents, and both clients with arbitrary answers (status and body) to every kind of read, find no
failure other than the typed errors (`SettingsError`; the `ApiError` family). Bounded and deterministic:
`derandomize` replays the same examples every run, a few seconds each."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zk_pipelines.clients.http import ApiError, HttpPolicy
from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.kaseya_wire import parse_json, read_envelope
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.clients.zomentum_models import (
    LineItemsFormatError,
    page_records,
    parse_line_items_csv,
)
from zk_pipelines.config import KaseyaCredentials, ZomentumCredentials
from zk_pipelines.domain.settings import SettingsError
from zk_pipelines.domain.settings_file import settings_from_text
from zk_pipelines.secrets import Secret
from zk_pipelines_tests.pipeline_harness import REPO

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

EXAMPLE = yaml.safe_load((REPO / "settings.example.yaml").read_text())

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
json_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)), max_leaves=25)


def _mutated(document: Any, path: list[str], value: Any) -> Any:
    if not path or not isinstance(document, dict):
        return value
    key, *rest = path
    return {**document, key: _mutated(document.get(key), rest, value)}


keys_of_the_example = st.sampled_from([
    ["mode"], ["sync"], ["sync", "accounts"], ["product_defaults"], ["product_defaults", "warehouse"],
    ["opportunity_stages"], ["opportunity_stages", "mapping"], ["opportunity_stages", "default_import_stage"],
    ["document_statuses", "mapping"], ["bundle_mode"], ["fallbacks", "owner_email"], ["links"],
    ["links", "kaseya"], ["links", "kaseya", "base_url"], ["links", "zomentum", "document"], ["unknown_key"]])


@FUZZ
@given(text=st.text(max_size=300))
def test_the_settings_loader_fails_only_with_settings_errors_on_any_text(text):
    try:
        settings_from_text(text)
    except SettingsError:
        pass


@pytest.mark.slow
@FUZZ
@given(path=keys_of_the_example, value=json_values)
def test_the_settings_loader_fails_only_with_settings_errors_on_any_yaml_document(path, value):
    try:
        settings_from_text(yaml.safe_dump(_mutated(EXAMPLE, path, value)))
    except SettingsError:
        pass


@FUZZ
@given(template=st.text(alphabet="{}:!x.[]0id_base_url/ ", max_size=30))
def test_a_link_template_is_either_refused_at_load_or_renders_every_link(template):
    document = _mutated(EXAMPLE, ["links", "kaseya", "account"], template)
    try:
        loaded = settings_from_text(yaml.safe_dump(document))
    except SettingsError:
        return
    links = loaded.links.for_systems("https://kaseya.example", "https://zomentum.example")
    assert links.kaseya.url("account", "ab-12")  # no KeyError, ValueError, IndexError at use


# ----- the answer parsers --------------------------------------------------------------------------------

# Answers shaped like the APIs' own (an envelope, a list page), with any values in their fields.
envelopes = st.fixed_dictionaries({}, optional={
    "success": json_values, "result": json_values, "totalRecords": json_values,
    "error": json_values | st.fixed_dictionaries({}, optional={"code": json_values, "message": json_values,
                                                               "subErrors": json_values})})
pages = st.fixed_dictionaries({}, optional={
    "data": json_values | st.lists(st.fixed_dictionaries({}, optional={"id": json_values}), max_size=3),
    "filtered_count_map": json_values | st.fixed_dictionaries({}, optional={"all": json_values}),
    "message": json_values, "access_token": json_values})
bodies = st.one_of(json_values.map(json.dumps), envelopes.map(json.dumps), pages.map(json.dumps),
                   st.text(max_size=200), st.integers(0, 3000).map(lambda n: "[" * n + "]" * n),
                   st.integers(0, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n))


@FUZZ
@given(body=bodies)
def test_kaseya_envelopes_read_any_text_or_raise_value_error(body):
    try:
        envelope = read_envelope(parse_json(body))
    except ValueError:
        return
    assert envelope.total_records is None or envelope.total_records >= 0
    assert envelope.error_message is None or isinstance(envelope.error_message, str)


@FUZZ
@given(body=json_values | pages)
def test_zomentum_pages_read_any_json_or_raise_value_error(body):
    try:
        records, total = page_records(body)
    except ValueError:
        return
    assert all(isinstance(record, dict) for record in records)
    assert total is None or total >= 0


@FUZZ
@given(text=st.lists(st.sampled_from(list('ab,"\n\r1.-\ufeff') + ["line_id", "parent_line_id", "bundle", "1e999"]),
                    max_size=80).map("".join))
def test_line_item_csv_parses_or_raises_its_format_error(text):
    header = ("line_id,item_id,name,description,type,quantity,sell_price,cost_price,discount,setup_price,"
              "billing_period,parent_line_id\n")
    for candidate in (text, header + text):
        try:
            parse_line_items_csv(candidate)
        except LineItemsFormatError:
            pass


class ScriptedSession(requests.Session):
    """Answers every request with the status and body under test (a login with a token), without a network."""

    def __init__(self) -> None:
        super().__init__()
        self.status, self.body = 200, b""

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.url, response.reason = url, "Scripted"
        if url.endswith("/authenticate"):
            response.status_code = 200
            response._content = json.dumps({"success": True, "result": {"accessToken": "at-123456",
                                                                         "refreshToken": "rt-123456"}}).encode()
        else:
            response.status_code, response._content = self.status, self.body
        return response


statuses = st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 409, 429, 500, 503])
POLICY = {"max_attempts": 1, "backoff_base": 0.0}


@FUZZ
@given(status=statuses, body=bodies.map(str.encode) | st.binary(max_size=100))
def test_the_kaseya_client_raises_only_api_errors_on_any_answer(status, body):
    session = ScriptedSession()
    client = KaseyaClient(KaseyaCredentials("https://bms.example", "u", Secret("password-1"), "t"),
                          policy=HttpPolicy(api_name="Kaseya", **POLICY), session=session, sleep=lambda s: None)
    client.login()
    session.status, session.body = status, body
    for read in (client.user_info, lambda: list(client.iter_accounts()), lambda: client.account(1),
                 client.account_types, lambda: client.call("create_account", body={"AccountName": "x"})):
        try:
            read()
        except ApiError:
            pass


@FUZZ
@given(status=statuses, body=bodies.map(str.encode) | st.binary(max_size=100))
def test_the_zomentum_client_raises_only_api_errors_on_any_answer(status, body):
    session = ScriptedSession()
    session.status, session.body = status, body
    client = ZomentumClient(ZomentumCredentials("https://z.example", Secret("zrt-1234"), Secret("zat-1234")),
                            policy=HttpPolicy(api_name="zomentum", **POLICY), session=session, sleep=lambda s: None)
    for read in (client.users, client.pipelines, lambda: client.get("documents", "d1"),
                 lambda: client.document_line_items("d1", "r1"), lambda: client.download_document("d1"),
                 lambda: client.create("client/companies", {"name": "x"}), client.refresh_access_token):
        try:
            read()
        except ApiError:
            pass
