"""Pure business rules of the integration: no Dagster, HTTP or DuckDB imports here."""
