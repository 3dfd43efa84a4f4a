"""The code's shape, checked rather than hoped for (README's Layout and Development): ruff over the code, an
import contract over every module's syntax tree, and mypy over the layers that must type-check.

The import contract reads each module's imports with `ast`, wherever they stand (top level or inside a function), so
a rule cannot be dodged by moving an import into a function, except where a rule says lazily is allowed."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "zk_pipelines"


@dataclass(frozen=True)
class Import:
    module: str  # the module that imports, dotted (zk_pipelines.pull.load)
    target: str  # what it imports, dotted and absolute (zk_pipelines.storage.pull_store, dagster)
    line: int
    lazy: bool  # inside a function body rather than at module level

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}{' (lazily)' if self.lazy else ''}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    # `from zk_pipelines.storage import pull_store` imports the module zk_pipelines.storage.pull_store.
    return [f"{base}.{alias.name}" for alias in node.names]


def _imports_of(path: Path) -> list[Import]:
    module = _module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend(Import(module, alias.name, child.lineno, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                found.extend(Import(module, target, child.lineno, lazy)
                             for target in _absolute(module, path.name == "__init__.py", child))
            visit(child, inner)

    visit(tree, False)
    return found


def _product_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


ALL_IMPORTS = [imp for path in _product_files() for imp in _imports_of(path)]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@dataclass(frozen=True)
class Rule:
    """Modules under `layer` import nothing under any of `forbidden`."""

    layer: str
    forbidden: tuple[str, ...]
    why: str

    def broken_by(self, imp: Import) -> bool:
        return _under(imp.module, self.layer) and any(_under(imp.target, f) for f in self.forbidden)


RULES = [
    Rule("zk_pipelines.domain",
         ("dagster", "dagster_pandera", "requests", "duckdb", "psycopg2", "zk_pipelines.config",
          "zk_pipelines.clients", "zk_pipelines.storage", "zk_pipelines.defs", "zk_pipelines.pull",
          "zk_pipelines.push"),
         "domain/ is pure Python: no Dagster, HTTP, database, configuration loading or the layers above it"),
    Rule("zk_pipelines.clients", ("dagster", "zk_pipelines.defs"), "clients/ are plain-Python I/O adapters"),
    Rule("zk_pipelines.storage", ("dagster", "zk_pipelines.defs"), "storage/ is a plain-Python I/O adapter"),
    Rule("zk_pipelines.push", ("zk_pipelines.pull",), "push/ and pull/ share through a lower module"),
    Rule("zk_pipelines.pull", ("zk_pipelines.push",), "push/ and pull/ share through a lower module"),
]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.layer.removeprefix("zk_pipelines."))
def test_layers_import_only_downwards(rule):
    broken = [str(imp) for imp in ALL_IMPORTS if rule.broken_by(imp)]
    assert not broken, f"{rule.why}:\n" + "\n".join(broken)


# The sandboxes (and their web stack, the optional extra `sandbox`) are not part of the product: the `zk demo`
# command's module uses them, and cli.py imports them and that module lazily, when `zk sandbox` or `zk demo` runs.
SANDBOX_SIDE = ("zk_pipelines.sandbox", "zk_pipelines.commands.demo", "starlette", "uvicorn", "multipart",
                "python_multipart")
LAZY_STARTER = "zk_pipelines.cli"


def _sandbox_side(name: str) -> bool:
    return any(_under(name, side) for side in SANDBOX_SIDE)


def test_the_product_does_not_import_the_sandboxes():
    broken = [str(imp) for imp in ALL_IMPORTS
              if not _sandbox_side(imp.module) and _sandbox_side(imp.target)
              and not (imp.module == LAZY_STARTER and imp.lazy)]
    assert not broken, "only `zk sandbox` and `zk demo` may import the sandboxes, lazily:\n" + "\n".join(broken)


def test_loading_the_product_loads_neither_the_sandboxes_nor_their_web_stack():
    """What a production install runs (the `zk` command's parser and Dagster's definitions) never needs the
    optional extra `sandbox`."""
    probe = ("import sys, zk_pipelines.cli, zk_pipelines.definitions\n"
             "zk_pipelines.cli.build_parser()\n"
             f"print(sorted(m for m in sys.modules if m.startswith({SANDBOX_SIDE!r})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_zk_subcommand_lives_in_commands():
    """cli.py parses the arguments; what each subcommand does is a module of zk_pipelines/commands/ (the sandboxes
    are started by their own launcher)."""
    called = {imp.target.rsplit(".", 1)[0] for imp in ALL_IMPORTS if imp.module == LAZY_STARTER and imp.lazy}
    elsewhere = sorted(m for m in called
                       if not _under(m, "zk_pipelines.commands") and not _under(m, "zk_pipelines.sandbox"))
    assert called and not elsewhere, f"zk subcommands outside commands/: {elsewhere}"


SQL_CALLS = {"execute", "executemany", "sql"}


def test_sql_lives_in_storage():
    """Every statement the product runs is in a storage/ module, as a function with parameters."""
    broken = []
    for path in _product_files():
        module = _module_name(path)
        if _under(module, "zk_pipelines.storage") or _under(module, "zk_pipelines.sandbox"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in SQL_CALLS and node.args
                    and isinstance(node.args[0], ast.Constant | ast.JoinedStr | ast.BinOp | ast.Name)):
                broken.append(f"{module}:{node.lineno} calls .{node.func.attr}(...)")
    assert not broken, "SQL belongs in storage/:\n" + "\n".join(broken)


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_ruff_finds_nothing():
    """Lint and import order (pyproject.toml's [tool.ruff]) over the product, the tests and the benchmarks."""
    result = _tool("ruff", "check", "--no-cache", "zk_pipelines", "zk_pipelines_tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_in_the_lower_layers():
    """domain/, clients/ and storage/ type-check with strict optional (pyproject.toml's [tool.mypy])."""
    result = _tool("mypy", "zk_pipelines/domain", "zk_pipelines/clients", "zk_pipelines/storage")
    assert result.returncode == 0, result.stdout + result.stderr
