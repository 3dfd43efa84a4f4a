"""The `zk` subcommands, one module each; `zk_pipelines/cli.py` parses the arguments and calls them."""
