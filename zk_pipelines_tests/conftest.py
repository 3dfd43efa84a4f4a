"""Shared fixtures: the sandboxes of both systems together here, each system's own in
zk_pipelines_tests/fixtures/."""

import fcntl
import os

import pytest

from zk_pipelines.sandbox.kaseya import start_kaseya_sandbox
from zk_pipelines.sandbox.zomentum import start_zomentum_sandbox
from zk_pipelines_tests.postgres import PostgresUnavailable, find_or_start, fresh_database

pytest_plugins = [
    "zk_pipelines_tests.fixtures.kaseya",
    "zk_pipelines_tests.fixtures.zomentum",
    "zk_pipelines_tests.fixtures.hostile",
]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: an end-to-end test of more than a few seconds (the demo, the benchmark "
                                       "smoke test, the browser, convergence and crash runs); `python3 dev.py test "
                                       "--fast` leaves these out")
    config.addinivalue_line("markers", "browser: drives headless Chromium against a running Dagster UI "
                                       "(runs by default; `-m 'not browser'` leaves it out locally)")
    # pytest resets the warning filters around each test: the ones the code location installs when it loads
    # (the Dagster beta features the project accepts) are installed again here, from the same list.
    from zk_pipelines.defs import ACCEPTED_BETA_FEATURES

    for accepted in ACCEPTED_BETA_FEATURES:
        config.addinivalue_line("filterwarnings", f"ignore:{accepted}")


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`python3 dev.py test` runs `-n auto --dist loadfile --no-loadscope-reorder`) each test
    file is one unit of work, so that its module fixtures (sandboxes, a synced tenant) are set up once. The files
    holding slow tests go first, so that no long file starts last while the other worker has nothing left to do."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the order within a file is kept


@pytest.fixture(autouse=True)
def one_browser_at_a_time(request, tmp_path_factory):
    """The browser tests (two files) never run at once on two workers: two Dagster UIs and two Chromiums on two
    cores would starve each other into timeouts. The lock file is in the run's temp folder, which every worker
    shares."""
    if request.node.get_closest_marker("browser") is None or not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    with open(tmp_path_factory.getbasetemp().parent / "browser.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="module")
def sandboxes():
    """Both sandboxes at scale `small_recent` (their history in the last two days), one pair per test module;
    tests reset them to the seed they need."""
    kaseya = start_kaseya_sandbox(scale="small_recent")
    zomentum = start_zomentum_sandbox(scale="small_recent")
    yield kaseya, zomentum
    kaseya.stop()
    zomentum.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server (zk_pipelines_tests/postgres.py says which); with none to be had, every test
    needing it fails with the one-line reason (never a silent skip)."""
    try:
        server = find_or_start()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is needed for this test: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of an empty database of this test's own on the real server, dropped afterwards."""
    with fresh_database(postgres_server) as url:
        yield url
