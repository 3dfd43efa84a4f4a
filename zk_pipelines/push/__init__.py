"""The push: a Zomentum document -> the Kaseya opportunity, quote and quote lines, exactly once, ledgered.

Plain Python (no Dagster): `orchestration.push_document` is what the push job and `zk push` both run."""
