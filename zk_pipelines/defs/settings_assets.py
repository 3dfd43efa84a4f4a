"""Group `settings`: the run's settings, resolved against the live names before anything is mapped."""



import dagster as dg

from zk_pipelines.config import ConfigurationError
from zk_pipelines.defs.asset_keys import asset_key
from zk_pipelines.defs.kaseya_extract import API_STEP_RETRIES, NOT_RETRIED, final_failure, raw_key
from zk_pipelines.defs.partitions import now
from zk_pipelines.defs.resources import StateStoreResource, ZomentumResource
from zk_pipelines.domain.entities import KASEYA_SOURCES
from zk_pipelines.domain.settings_check import render_settings
from zk_pipelines.pull.run_settings import resolve_for_run

RESOLVED_SETTINGS_KEY = asset_key("settings", "resolved")


def settings_asset(partitions: dg.PartitionsDefinition | None = None) -> dg.AssetsDefinition:
    @dg.asset(
        key=RESOLVED_SETTINGS_KEY, group_name="settings", pool="zomentum_api", kinds={"duckdb"},
        partitions_def=partitions,
        retry_policy=API_STEP_RETRIES,
        deps=[raw_key(source) for source in KASEYA_SOURCES if source.resolves_settings],
        description="The settings file (ZK_SETTINGS) with every name resolved against the Kaseya lookups this "
                    "run extracted and Zomentum's pipelines and users. Table settings.resolved, keyed by the "
                    "settings fingerprint. An unknown name fails the run here, before anything is mapped.",
    )
    def resolved_settings(context: dg.AssetExecutionContext, state: StateStoreResource,
                          zomentum: ZomentumResource) -> dg.MaterializeResult:
        try:
            client = zomentum.client()
            at_start = client.usage()
            resolved = resolve_for_run(state.database(), state.settings_file(), client, run_id=context.run.run_id,
                                       now=now())
        except NOT_RETRIED as exc:
            raise final_failure(exc) from None
        except ConfigurationError as exc:  # a wrong name in the settings: a repeat would find it wrong again
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        return dg.MaterializeResult(metadata={
            "settings_fingerprint": resolved.fingerprint,
            "mode": resolved.settings.mode.value,
            "settings": dg.MetadataValue.md(f"```\n{render_settings(resolved)}\n```"),
            "zomentum_calls": client.usage().since(at_start).sent,
        })

    return resolved_settings
