"""The package's layout rules, read from the code itself: which room may import which, and no circles.

`serve` runs no browser: the service must load without Playwright, aiortc or PulseAudio's client. The
outcome words sit below everything. The bridge sees audio only as frames. Imports are read with `ast`
(every import, also those inside functions; only `if TYPE_CHECKING:` blocks are left out, since they never
run), so a lazy import cannot hide a circle.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bot"

BROWSER_SIDE = ("bot.browser", "bot.platforms", "bot.audio", "bot.bridge", "bot.agent", "bot.call")
# Pure data the settings loader reads the parts' defaults from: the settings build these options, so they
# load with the settings (nothing in them runs a browser, a platform or a connection).
OPTION_MODULES = frozenset({"bot.agent", "bot.agent.options", "bot.platforms", "bot.platforms.policies"})


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str:
    """The project module an imported name lives in (`bot.outcome.ExitCode` -> `bot.outcome`)."""
    modules = _modules()
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(sub) for sub in ast.walk(node))
    return inside


def _imports(module: str) -> Iterator[str]:
    tree = ast.parse(_modules()[module].read_text())
    skip = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bot":
            for alias in node.names:
                yield _resolve(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "bot":
                    yield _resolve(alias.name)


@cache
def _graph() -> dict[str, frozenset[str]]:
    return {m: frozenset(_imports(m)) - {m} for m in _modules()}


def _circles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_another_in_a_circle() -> None:
    assert _circles(_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert _circles(graph) == [["a", "b", "c"]]


def test_the_outcome_words_import_nothing_of_the_project() -> None:
    assert _graph()["bot.outcome"] == frozenset()


@pytest.mark.parametrize("room", ["bot.service", "bot.cluster"])
def test_the_service_imports_nothing_of_the_browser_or_the_audio_path(room: str) -> None:
    reaches = {
        (module, imported)
        for module, imports in _graph().items()
        if module.startswith(room)
        for imported in imports
        if imported.startswith(BROWSER_SIDE)
    }
    assert reaches == set()


def test_the_bridge_sees_audio_only_as_frames() -> None:
    audio = {
        (module, imported)
        for module, imports in _graph().items()
        if module.startswith("bot.bridge")
        for imported in imports
        if imported.startswith("bot.audio")
    }
    assert {imported for _, imported in audio} <= {"bot.audio.frames"}, audio


def test_importing_the_service_loads_no_browser_and_no_audio_path() -> None:
    """In a fresh interpreter, as `serve` starts: the API, the scheduler and the serve command."""
    probe = (
        "import json, sys\n"
        "import bot.service.api, bot.service.scheduler, bot.commands.serve, bot.events\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "bot.service.api" in loaded  # the probe really imported the service
    heavy = {m for m in loaded if m.split(".")[0] in {"playwright", "aiortc", "av", "pulsectl", "Xlib"}}
    assert heavy == set(), sorted(heavy)[:10]
    browser_side = {m for m in loaded if m.startswith(BROWSER_SIDE)} - OPTION_MODULES
    assert browser_side == set(), sorted(browser_side)
