"""Reconciliation: both systems listed whole, compared with the id map and the mapping, differences reported
and (with `--repair`, as the mode allows) settled. The pure rules are in `domain/reconcile.py`."""
