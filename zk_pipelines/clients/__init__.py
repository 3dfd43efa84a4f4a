"""Plain-Python I/O adapters for the Kaseya BMS and Zomentum APIs (no Dagster imports)."""
