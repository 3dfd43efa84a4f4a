"""Shared fixtures live in zk_pipelines_tests/fixtures/, one module per system."""

pytest_plugins = [
    "zk_pipelines_tests.fixtures.kaseya",
    "zk_pipelines_tests.fixtures.zomentum",
]
