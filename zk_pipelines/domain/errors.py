"""The error every layer raises for a setting that is missing or malformed: defined here, in the lowest layer,
so the settings rules (domain/) and the loading of the environment (config.py) raise one type the `zk`
command reports as a one-line message."""

from __future__ import annotations


class ConfigurationError(ValueError):
    """A required setting is missing or malformed; the message names it."""
