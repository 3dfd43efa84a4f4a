"""`zk sandbox` in its own process, as a person runs it: the `export` lines it prints, then a clean stop."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def zk_sandbox(*args: str) -> Iterator[dict[str, str]]:
    """`zk sandbox ARGS` until the block ends; yields the variables its `export` lines set. The process must stop
    cleanly on Ctrl-C."""
    process = subprocess.Popen([sys.executable, "-m", "zk_pipelines.cli", "sandbox", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    exported: dict[str, str] = {}
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("export "):
            name, _, value = line[len("export "):].strip().partition("=")
            exported[name] = shlex.split(value)[0]
        if line.startswith("Ctrl-C"):
            break
    try:
        yield exported
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "sandboxes stopped" in out
