"""Dependencies point down: the unit's runtime (agent/, drivers/, models/, common/) never imports the station tools
(station/). The commissioning page (web/) and the evaluation (evaluation/) are imported only lazily, from inside
agent/cli.py's functions: `run` starts the page when commissioning is enabled and `commission` serves it; `eval` and
`make-demo` (the demo `make run` replays) stay pid-agent commands. drivers/, models/ and common/ know nothing of
agent/.

Read from the source's syntax tree (every import statement, and __import__ / importlib.import_module of a literal
name), so an import in a function or behind an `if` counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ("agent", "drivers", "models", "common")
NEVER = {"station"}
LAZY = {"web", "evaluation"}  # only inside a function of LAZY_ALLOWED
LAZY_ALLOWED = {Path("agent/cli.py")}
BELOW_AGENT = ("drivers", "models", "common")


def imports(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(top-level package imported, line, whether inside a function) for every import in the tree."""
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name.split(".")[0], child.lineno, inside) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module.split(".")[0], child.lineno, inside))
            elif isinstance(child, ast.Call) and _dynamic_name(child) is not None:
                found.append((_dynamic_name(child).split(".")[0], child.lineno, inside))
            visit(child, inside)

    visit(tree, False)
    return found


def _dynamic_name(call: ast.Call) -> str | None:
    function = call.func
    name = function.id if isinstance(function, ast.Name) else function.attr if isinstance(function, ast.Attribute) \
        else None
    if name in ("__import__", "import_module") and call.args and isinstance(call.args[0], ast.Constant) \
            and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def violations(relative: Path, source: str) -> list[str]:
    problems = []
    for package, line, in_function in imports(ast.parse(source, str(relative))):
        where = f"{relative}:{line} imports {package}"
        if package in NEVER:
            problems.append(where)
        elif package in LAZY and not (relative in LAZY_ALLOWED and in_function):
            problems.append(where + (" at module level" if relative in LAZY_ALLOWED else ""))
        elif package == "agent" and relative.parts[0] in BELOW_AGENT:
            problems.append(where + " (below agent/)")
    return problems


def test_the_units_runtime_imports_no_station_module_and_web_or_evaluation_only_lazily_from_its_cli():
    files = sorted(path for folder in RUNTIME for path in (ROOT / folder).rglob("*.py"))
    assert len(files) > 50  # the walk found the runtime, not an empty folder
    problems = [problem for path in files
                for problem in violations(path.relative_to(ROOT), path.read_text(encoding="utf-8"))]
    assert problems == []


def test_the_check_sees_each_kind_of_forbidden_import():
    source = ("import station.monitor\nfrom evaluation import evaluate\nfrom web.commission import serving\n"
              "def late():\n    from web.commission import serving\n    import importlib\n"
              "    importlib.import_module('station.verify')\n    return __import__('evaluation.demo')\n")
    assert violations(Path("agent/cli.py"), source) == [
        "agent/cli.py:1 imports station", "agent/cli.py:2 imports evaluation at module level",
        "agent/cli.py:3 imports web at module level", "agent/cli.py:7 imports station"]
    assert violations(Path("agent/pipeline.py"), "def f():\n    import web\n    from evaluation import demo\n") == [
        "agent/pipeline.py:2 imports web", "agent/pipeline.py:3 imports evaluation"]
    assert violations(Path("models/motion.py"), "from agent.config import X\n") == [
        "models/motion.py:1 imports agent (below agent/)"]
