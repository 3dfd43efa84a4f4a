"""The code location loads, and its names are pinned: renaming an asset, job or sensor is a visible change."""

from __future__ import annotations

import dagster as dg

from zk_pipelines.definitions import defs


def test_definitions_load():
    assert isinstance(defs, dg.Definitions)
    repository = defs.get_repository_def()
    assert repository.name


def test_dagster_yaml_limits_every_pool_to_one():
    import yaml
    from pathlib import Path

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "dagster.yaml").read_text())
    assert config["telemetry"] == {"enabled": False}
    assert config["concurrency"]["pools"]["default_limit"] == 1
