"""Sandboxes: real HTTP servers that behave like the Kaseya BMS and Zomentum APIs.

They are for the demo, the tests and the benchmarks; the pipeline never imports them. Each serves its
API under `/v2` and a sandbox-only control surface under `/_sandbox/` (reset, request log, knobs, clock).
"""
