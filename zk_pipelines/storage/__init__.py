"""DuckDB storage: explicit SQL with parameters, idempotent DDL, one writer at a time."""
