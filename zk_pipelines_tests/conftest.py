"""Shared fixtures live in zk_pipelines_tests/fixtures/, one module per system."""

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
