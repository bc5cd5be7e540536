"""The package's floors and wings (docs/package.md): imports go down, never up, never in a circle.

Read from the source with ``ast``, imports inside functions included, so a tie kept alive by a
late import is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "splitmatch"


def module_imports() -> dict[str, set[str]]:
    """Every splitmatch module -> the splitmatch modules it imports (anywhere in its file)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("splitmatch"):
                for alias in node.names:  # `from splitmatch.train import state` imports a module
                    found.add(
                        f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                    )
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name.startswith("splitmatch"))
        graph[name] = {module for module in found if module in modules and module != name}
    return graph


GRAPH = module_imports()


def reachable(start: str, graph: dict[str, set[str]] = GRAPH) -> set[str]:
    """Every node ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for node in graph[todo.pop()]:
            if node not in seen:
                seen.add(node)
                todo.append(node)
    return seen


def test_no_module_imports_itself_through_others():
    circles = sorted(module for module in GRAPH if module in reachable(module))
    assert circles == [], f"import circles through {circles}"


def _under(modules: set[str], prefix: str) -> list[str]:
    return sorted(m for m in modules if m == prefix or m.startswith(prefix + "."))


@pytest.mark.parametrize(
    "wing", ["splitmatch.predict", "splitmatch.app", "splitmatch.inference", "splitmatch.evaluation"]
)
def test_user_facing_parts_never_reach_the_training_wing(wing):
    for module in _under(set(GRAPH), wing):
        assert _under(reachable(module), "splitmatch.train") == [], module


def test_the_config_floor_imports_no_model_code():
    for module in _under(set(GRAPH), "splitmatch.config"):
        below = reachable(module)
        assert set(below) <= {"splitmatch.errors", "splitmatch.packaged", "splitmatch.storage.files"} | set(
            _under(set(GRAPH), "splitmatch.config")
        ), (module, sorted(below))


def test_the_ground_floor_imports_nothing_above_it():
    ground = {"splitmatch.errors", "splitmatch.packaged", *_under(set(GRAPH), "splitmatch.storage")}
    for module in ground:
        assert reachable(module) <= ground, (module, sorted(reachable(module) - ground))
    assert GRAPH["splitmatch.errors"] == set() and GRAPH["splitmatch.packaged"] == set()


def part_of(module: str) -> str:
    """The folder (``splitmatch.train``) or top-level module (``splitmatch.cli``) a module is in."""
    return ".".join(module.split(".")[:2])


PARTS = {part_of(module) for module in GRAPH}
PART_GRAPH = {part: {part_of(d) for m in GRAPH if part_of(m) == part for d in GRAPH[m]} - {part} for part in PARTS}


def test_no_folder_imports_itself_through_other_folders():
    circles = {part: sorted(p for p in PART_GRAPH[part] if part in reachable(p, PART_GRAPH)) for part in sorted(PARTS)}
    assert {part: via for part, via in circles.items() if via} == {}


def test_floors_never_import_wings():
    wings = (
        "splitmatch.train",
        "splitmatch.predict",
        "splitmatch.app",
        "splitmatch.commands",
        "splitmatch.world",
        "splitmatch.cli",
    )
    floors = (
        "splitmatch.storage",
        "splitmatch.config",
        "splitmatch.data",
        "splitmatch.clip",
        "splitmatch.model",
        "splitmatch.matching",
        "splitmatch.losses",
        "splitmatch.pseudo",
        "splitmatch.inference",
        "splitmatch.evaluation",
    )
    for floor in floors:
        for module in _under(set(GRAPH), floor):
            up = [m for wing in wings for m in _under(GRAPH[module], wing)]
            assert up == [], f"{module} imports {up}"


def test_the_testing_tools_stand_apart():
    """``splitmatch.testing`` (an emulated device for tests and benchmarks) uses nothing of the library,
    and the library does not use it."""
    testing = set(_under(set(GRAPH), "splitmatch.testing"))
    assert testing, "splitmatch.testing is missing"
    for module in sorted(GRAPH):
        if module in testing:
            assert GRAPH[module] == set(), f"{module} imports {sorted(GRAPH[module])}"
        else:
            assert not GRAPH[module] & testing, f"{module} imports {sorted(GRAPH[module] & testing)}"
