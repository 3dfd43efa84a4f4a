"""The Dockerfile's install steps, run as written in a plain virtual environment (no Docker here): its COPY lines
into an empty folder, its ENV, its `pip install` lines; the result is the production install (no test tools, the
Dagster family, dagster-postgres and dagster-k8s at the pinned versions) and loads our code location as the
image's command serves it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(instruction, arguments), continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            instructions.append((word.upper(), rest.strip()))
            pending = ""
    return instructions


def pinned(name: str) -> str:
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("==", 1)[1]
    raise AssertionError(f"{name} is not pinned in constraints.txt")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_images_install_steps_give_the_production_install_that_serves_the_code_location(tmp_path):
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    workdir = tmp_path / "image"
    workdir.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    bin_dir = tmp_path / "venv" / "bin"
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("VIRTUAL_ENV", "PYTHON", "KASEYA_", "ZOMENTUM_", "ZK_", "DAGSTER_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    installs = 0
    for instruction, arguments in instructions:
        if instruction == "ENV":
            for assignment in shlex.split(arguments):
                name, _, value = assignment.partition("=")
                env[name] = str(tmp_path / "dagster_home") if name == "DAGSTER_HOME" else value
        elif instruction == "COPY":
            *sources, target = shlex.split(arguments)
            for source in sources:
                destination = workdir / target / (Path(source).name if len(sources) > 1 else "")
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copyfile(REPO / source, destination)
        elif instruction == "RUN" and arguments.startswith("pip install"):
            result = subprocess.run([str(bin_dir / "pip"), *shlex.split(arguments)[1:]], cwd=workdir, env=env,
                                    capture_output=True, text=True, timeout=840)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            installs += 1
    assert installs == 1
    (tmp_path / "dagster_home").mkdir()  # the image's DAGSTER_HOME, made by its last RUN (the chart mounts into it)

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(bin_dir / command[0]), *command[1:]], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)

    versions = run("python", "-c", "import importlib.metadata as m; print(*(m.version(p) for p in ('dagster', "
                                   "'dagster-postgres', 'dagster-k8s', 'kubernetes')))")
    assert versions.stdout.split() == [pinned(p) for p in ("dagster", "dagster-postgres", "dagster-k8s",
                                                           "kubernetes")], versions.stderr
    tools = run("python", "-c", "import pytest")  # the test tools are not part of the image
    assert tools.returncode == 1 and "No module named 'pytest'" in tools.stderr
    loaded = run("dagster", "definitions", "validate", "--module-name", "zk_pipelines.definitions")
    assert loaded.returncode == 0, loaded.stdout[-3000:] + loaded.stderr[-3000:]
    listed = run("zk", "tenants")  # no registry: the environment's one tenant
    assert listed.returncode == 0 and listed.stdout.startswith("default: onboarded "), listed.stderr
    command = next(arguments for instruction, arguments in instructions if instruction == "CMD")
    assert run("dagster", "api", "grpc", "--help").returncode == 0 and '"--module-name", "zk_pipelines.definitions"' \
        in command
