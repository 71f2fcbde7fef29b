"""The layout rules, read from the source with `ast` (imports inside functions count):
`engines/` never imports `edge_agent`, the daemon never imports `edge_agent.tools`, code
modules stay short, and test files share helpers only through the helper modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO

MAX_LINES = 450  # "about 400": past this a module wants splitting by job
# Being split on the issue-10 branches; each must come off this list when it is.
HELPER_MODULES = frozenset({
    "tests.helpers", "tests.conftest", "tests.rtsp", "tests.rtsp_server", "tests.models",
    "tests.engines.fake_tensorrt",
    "tests.model_server",
})
# Modules that are the command line, not the daemon: they may import the tools.
TOOL_SIDE = ("edge_agent.tools", "edge_agent.cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(module: str, source: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, dotted name) for every import in `source`, at any depth, relative ones
    resolved; `from a import b` yields both `a` and `a.b` (b may be a module). String
    constants that name a module (`importlib.import_module("x.y")`, registry import
    paths "x.y:Class") count too, so a lazy import cannot hide."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and node.value.startswith(("edge_agent.", "engines.", "tests."))
              and " " not in node.value):
            yield node.lineno, node.value.split(":")[0]


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def sources(*folders: str) -> Iterator[tuple[Path, str, str]]:
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            if ".venv" not in path.parts:
                yield path, module_name(path), path.read_text()


def engines_offences(module: str, source: str) -> list[str]:
    return [f"{module}:{line} imports {name}" for line, name in imported(module, source)
            if under(name, "edge_agent")]


def daemon_offences(module: str, source: str, is_package: bool = False) -> list[str]:
    if any(under(module, side) for side in TOOL_SIDE):
        return []
    return [f"{module}:{line} imports {name}"
            for line, name in imported(module, source, is_package)
            if under(name, "edge_agent.tools")]


def cross_test_imports(module: str, source: str, is_package: bool = False) -> list[str]:
    """Imports of a test module from another test module (helpers are allowed)."""
    found = []
    for line, name in imported(module, source, is_package):
        if not under(name, "tests") or name == "tests":
            continue
        target = REPO / Path(*name.split("."))
        if target.is_dir():  # `from tests.engines import x`: x is what counts
            continue
        if not target.with_suffix(".py").is_file():  # a function or class in a module
            continue
        if name not in HELPER_MODULES:
            found.append(f"{module}:{line} imports {name}")
    return found


# The checks themselves, on small sources: each rule must be able to fail.
CHECKS = [
    (engines_offences, "engines.base", "import edge_agent", True),
    (engines_offences, "engines.base", "def f():\n    from edge_agent.config import model\n",
     True),
    (engines_offences, "engines.registry", "BACKENDS = {'x': 'edge_agent.x:Engine'}", True),
    (engines_offences, "engines.base", "import numpy\nfrom engines import errors\n", False),
    (daemon_offences, "edge_agent.service.agent", "from edge_agent.tools import doctor", True),
    (daemon_offences, "edge_agent.service.agent", "from ..tools.doctor import run", True),
    (daemon_offences, "edge_agent.pipeline", "def f():\n    import edge_agent.tools.watch\n",
     True),
    (daemon_offences, "edge_agent.cli", "'edge_agent.tools.doctor'", False),
    (daemon_offences, "edge_agent.tools.doctor", "from edge_agent.tools import options",
     False),
    (daemon_offences, "edge_agent.service.agent", "from edge_agent.selection import probe",
     False),
    (cross_test_imports, "tests.edge_agent.test_x",
     "from tests.edge_agent.test_agent import start_agent", True),
    (cross_test_imports, "tests.t", "from tests.engines.test_accuracy import iou", True),
    (cross_test_imports, "tests.t", "from tests.engines import test_openvino", True),
    (cross_test_imports, "tests.t", "import tests.edge_agent.health.test_health", True),
    (cross_test_imports, "tests.t", "from tests.engines import fake_tensorrt", False),
    (cross_test_imports, "tests.t", "from tests.helpers import Broker", False),
    (cross_test_imports, "tests.t", "from tests.models import batch_model", False),
]


@pytest.mark.parametrize(("check", "module", "source", "offends"), CHECKS)
def test_each_rule_catches_what_it_is_for(check, module: str, source: str,
                                          offends: bool) -> None:
    assert bool(check(module, source)) is offends


def test_engines_never_import_edge_agent() -> None:
    found = [o for _, name, text in sources("engines") for o in engines_offences(name, text)]
    assert not found, "engines/ must not know the agent:\n" + "\n".join(found)


def test_the_daemon_never_imports_the_tools() -> None:
    found = [o for path, name, text in sources("edge_agent")
             for o in daemon_offences(name, text, path.name == "__init__.py")]
    assert not found, "only edge_agent/cli.py and tools/ may import tools:\n" + "\n".join(found)


def test_test_files_share_helpers_only_through_helper_modules() -> None:
    found = [o for path, name, text in sources("tests")
             for o in cross_test_imports(name, text, path.name == "__init__.py")]
    assert not found, (
        "move what is shared into tests/helpers.py (fixtures: tests/conftest.py):\n"
        + "\n".join(found)
    )


def long_modules() -> dict[str, int]:
    lengths = {str(path.relative_to(REPO)): len(text.splitlines())
               for path, _, text in sources("edge_agent", "engines")}
    return {path: lines for path, lines in lengths.items() if lines > MAX_LINES}


def test_no_module_grows_past_the_limit() -> None:
    long = long_modules()
    assert not long, f"split these by job (limit {MAX_LINES} lines): {long}"


def test_tests_mirror_the_packages() -> None:
    """tests/edge_agent/<package>/ for each edge_agent/<package>/, and no test folder for
    a package that does not exist (a leftover of a move)."""
    for package in ("edge_agent", "engines"):
        code = {p.name for p in (REPO / package).iterdir() if (p / "__init__.py").is_file()}
        tests = {p.name for p in (REPO / "tests" / package).iterdir()
                 if p.is_dir() and p.name != "__pycache__"}
        assert tests == code, f"tests/{package}/ has {sorted(tests)}, {package}/ {sorted(code)}"


def test_test_file_names_are_unique() -> None:
    """pytest imports test files by base name (no __init__.py below tests/): two files of one
    name make the second an import error, which the suite reports only as it collects."""
    names: dict[str, list[str]] = {}
    for path in (REPO / "tests").rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(REPO)))
    assert not {name: paths for name, paths in names.items() if len(paths) > 1}
