"""Shared fixtures live in zk_pipelines_tests/fixtures/, one module per system."""

pytest_plugins = [
    "zk_pipelines_tests.fixtures.kaseya",
    "zk_pipelines_tests.fixtures.zomentum",
]


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives headless Chromium against a running Dagster UI "
                                       "(runs by default; `-m 'not browser'` leaves it out locally)")
