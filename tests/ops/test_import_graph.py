"""No import circles inside ``bot/`` or inside ``videobot/``: dependencies point one way
(app → cogs, app → delivery, cogs → ui → core, delivery → ui → core).

The graph is read from the source with ``ast``, so it sees every import a reader sees: module-level
ones, ``if TYPE_CHECKING:`` ones (a type-only import that points back is a circle too: pass a
Protocol instead) and imports inside functions. ``from pkg import name`` counts as an import of
``pkg.name`` when that is a module, else of ``pkg``; importing ``pkg.sub`` also runs ``pkg``'s
``__init__``, which counts as an edge to ``pkg`` (except from inside ``pkg`` itself).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """``package.sub.mod`` → its file, for every module below ``root / package``."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name a ``from … import`` names (relative imports resolved against ``module``)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module → the modules of ``package`` it imports (anywhere in its source)."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}

    def add(src: str, target: str) -> None:
        # The longest prefix that is one of the package's modules (``pkg.mod.Class`` → ``pkg.mod``).
        parts = target.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        if not parts:
            return
        name = ".".join(parts)
        if name != src:
            graph[src].add(name)
        # Importing ``a.b.c`` runs ``a.b``'s ``__init__`` first (not a circle from inside ``a.b``).
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in modules and not src.startswith(parent + ".") and parent != src:
                graph[src].add(parent)

    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(name, alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    add(name, target if target in modules else base)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (``[a, b, …, a]``), or None: a depth-first search for a back edge."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt, BLACK) == GREY:
                return [*stack[stack.index(nxt) :], nxt]
            if colour.get(nxt) == WHITE and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        colour[node] = BLACK
        return None

    for start in sorted(graph):
        if colour[start] == WHITE and (cycle := visit(start)) is not None:
            return cycle
    return None


@pytest.mark.parametrize("package", ["bot", "videobot"])
def test_no_import_circle(package: str) -> None:
    graph = import_graph(ROOT, package)
    assert len(graph) > 10 and sum(map(len, graph.values())) > 10  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, f"import circle in {package}/: " + " → ".join(cycle or [])


#: What each part of ``bot/`` must not import: the app wires cogs and delivery together; both use the
#: ui and ask the app through ``bot.ports``; neither imports the other.
FORBIDDEN = {
    "bot.ui": ("bot.app", "bot.cogs", "bot.delivery"),
    "bot.ports": ("bot.app", "bot.cogs", "bot.delivery", "bot.ui"),
    "bot.cogs": ("bot.app", "bot.delivery"),
    "bot.delivery": ("bot.app", "bot.cogs"),
}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_bot_dependencies_point_one_way() -> None:
    graph = import_graph(ROOT, "bot")
    wrong = sorted(
        f"{src} → {dst}"
        for src, targets in graph.items()
        for dst in targets
        for part, banned in FORBIDDEN.items()
        if _within(src, part) and any(_within(dst, b) for b in banned)
    )
    assert wrong == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("back_edge", "edge"),
    [
        # A TYPE_CHECKING import that points back.
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.app import App\n",
            ("pkg.cogs.verb", "pkg.app"),
        ),
        # A function-level relative import of a module.
        ("def f():\n    from .. import app\n", ("pkg.cogs.verb", "pkg.app")),
        # A sibling imported by name from its package (``from pkg.cogs import other``).
        ("from pkg.cogs import other\n", ("pkg.cogs.verb", "pkg.cogs.other")),
        # Through a package's ``__init__``: importing ``pkg.cogs.other`` runs ``pkg.cogs`` first.
        ("import pkg.other\n", ("pkg.other", "pkg.cogs")),
    ],
)
def test_the_cycle_finder_sees_every_kind_of_import(
    tmp_path: Path, back_edge: str, edge: tuple[str, str]
) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/app.py": "import pkg.cogs.verb\nfrom pkg import ui\n",
            "pkg/ui.py": "import json\n",
            "pkg/cogs/__init__.py": "from .verb import run\n",
            "pkg/cogs/other.py": "from pkg.cogs import verb\n",
            "pkg/other.py": "import pkg.cogs.other\n",
            "pkg/cogs/verb.py": "from pkg.ui import thing\n",
        },
    )
    assert find_cycle(import_graph(tmp_path, "pkg")) is None
    (tmp_path / "pkg/cogs/verb.py").write_text("from pkg.ui import thing\n" + back_edge, encoding="utf-8")
    cycle = find_cycle(import_graph(tmp_path, "pkg"))
    assert cycle is not None and cycle[0] == cycle[-1]
    # The circle goes through the edge just added.
    assert edge in set(zip(cycle, cycle[1:], strict=False)), cycle


def test_a_package_without_circles_passes(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/app.py": "from pkg.cogs import verb\nfrom pkg import delivery\n",
            "pkg/delivery.py": "from pkg.ui import text\n",
            "pkg/cogs/__init__.py": "",
            "pkg/cogs/verb.py": "from ..ui import text\nfrom . import helper\n",
            "pkg/cogs/helper.py": "from pkg.ui.text import x\n",
            "pkg/ui/__init__.py": "",
            "pkg/ui/text.py": "import pkg.core\n",
            "pkg/core.py": "",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.cogs.verb"] == {"pkg.ui.text", "pkg.cogs.helper", "pkg.ui"}
    assert find_cycle(graph) is None
