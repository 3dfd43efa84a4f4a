#!/usr/bin/env python3
"""Set up the project's virtual environment at .venv (created or reused) and run the demo or the tests.

    python3 dev.py demo [args for `zk demo`]
    python3 dev.py test [args for pytest]           the whole suite (what CI runs)
    python3 dev.py test --fast [args for pytest]    the fast lane: every test not marked `slow` (under 3 minutes)

Both lanes run on every core (pytest-xdist: `-n auto --dist loadfile --no-loadscope-reorder`, each test file
on one worker, see zk_pipelines_tests/conftest.py); `-n 0` runs them in this one process, `-n N` on N workers.

Needs only Python 3.11 and pip (plus, for the browser test, Debian's chromium, which `test` installs with
apt-get when run as root). The environment is reinstalled only when pyproject.toml or
constraints.txt changed since the last install (a stamp file in .venv records their hash).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "zk-install.stamp"


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _wanted_stamp() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_environment() -> Path:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"zk_pipelines needs Python 3.11; this is {sys.version.split()[0]} ({sys.executable})")
    python = _venv_python()
    if not python.exists():
        print(f"creating virtual environment at {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    wanted = _wanted_stamp()
    if not STAMP.exists() or STAMP.read_text() != wanted:
        print("installing zk_pipelines and its pinned dependencies into .venv", flush=True)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
        subprocess.run([*pip, "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run(
            [*pip, "install", "--quiet", "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[dev]"],
            check=True,
        )
        STAMP.write_text(wanted)
    return python


CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> None:
    """The browser test drives Debian's Chromium headless. Install it when this user can (root with apt);
    otherwise say what to do, and the browser test fails with the same message."""
    if CHROMIUM.exists():
        return
    if os.name != "nt" and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing Debian's chromium for the browser test", flush=True)
        quiet = {"stdout": subprocess.DEVNULL, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
        subprocess.run(["apt-get", "update", "-qq"], check=True, **quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, **quiet)
    else:
        print(f"note: {CHROMIUM} is missing and cannot be installed as this user; the browser test will fail "
              "until `sudo apt-get install chromium` is run", flush=True)


def _workers(pytest_args: list[str]) -> list[str]:
    """Run the tests on every core (one worker per core, each test file on one worker) unless the arguments
    choose the workers themselves (`-n 0`: in this process)."""
    chosen = any(arg.startswith(("-n", "--numprocesses", "--dist")) or arg.endswith("no:xdist") for arg in pytest_args)
    return [] if chosen else ["-n", "auto", "--dist", "loadfile", "--no-loadscope-reorder"]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test"}:
        print(__doc__.strip())
        return 2
    python = ensure_environment()
    command, rest = argv[0], argv[1:]
    if command == "demo":
        cmd = [str(python), "-m", "zk_pipelines.cli", "demo", *rest]
    else:
        fast = "--fast" in rest
        rest = [arg for arg in rest if arg != "--fast"]
        if not fast:
            ensure_chromium()
        cmd = [str(python), "-m", "pytest", *(["-m", "not slow"] if fast else []), *_workers(rest), *rest]
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
