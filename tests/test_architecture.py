"""The direction of imports between recagent's packages and the absence of import cycles between modules,
checked on the source (README: Architecture)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

OURS = {"core", "index", "prompts", "agent", "ui", "eval", "train", "bench", "app"}
ALLOWED = {
    "core": set(),  # shared errors and labels: imports nothing of ours
    "index": {"core"},
    "prompts": {"core"},
    "agent": {"core", "index", "prompts"},
    "ui": {"core", "agent"},
    "eval": {"core", "index", "prompts", "agent"},
    "train": {"core", "index", "prompts", "agent", "eval"},
    "bench": {"core", "index", "prompts", "agent", "eval", "ui"},
    "app": OURS,
}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


def test_imports_flow_one_way() -> None:
    broken = []
    for package, allowed in ALLOWED.items():
        for path in sorted((REPO / package).rglob("*.py")):
            wrong = imports_of(path) - allowed - {package}
            if wrong:
                broken.append(f"{path.relative_to(REPO)} imports {sorted(wrong)}")
    assert not broken, "\n".join(broken)


def module_graph(root: Path, packages: set[str] = OURS) -> dict[str, dict[str, int]]:
    """module -> {module it imports: line of the first such import}, read with ast from every file under `packages`.

    Every import counts, those inside functions and under `if TYPE_CHECKING:` too: a lazy import only defers a
    cycle, the two modules still cannot be read, changed or tested apart (agent/store.py reached its stores by
    lazy imports while they imported it back). `from a import b` is an edge to a.b when that is a module, else to
    a; the package __init__ that Python runs on the way to a submodule is not an edge of its own."""
    files = {".".join(_module_parts(path, root)): path
             for package in packages for path in (root / package).rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, one level up per extra dot
                    anchor = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                    base = ".".join(anchor[:len(anchor) - node.level + 1] + ([base] if base else []))
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            else:
                continue
            for name in names:
                target = known(name)
                if target is not None and target != module:
                    edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def _module_parts(path: Path, root: Path) -> list[str]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for start in sorted(graph):
        if start in order:
            continue
        work = [(start, iter(sorted(graph[start])))]
        order[start] = low[start] = len(order)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in order:
                    order[target] = low[target] = len(order)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                elif target in on_stack:
                    low[module] = min(low[module], order[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == order[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_import_cycles_between_modules() -> None:
    graph = module_graph(REPO)
    assert "agent.conversations.sqlite" in graph and graph["app.cli"]  # the graph sees the code
    found = []
    for cycle in import_cycles(graph):
        edges = [f"{a} -> {b} (line {graph[a][b]})" for a in cycle for b in sorted(graph[a]) if b in cycle]
        found.append(f"{' / '.join(cycle)}: " + "; ".join(edges))
    assert not found, "\n".join(found)


def test_the_cycle_check_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """Two cycles of the shapes that were in the code (a lazy import back; a chain of three), one not a cycle."""
    sources = {
        "pkg/__init__.py": "",
        "pkg/store.py": "def open_store():\n    from pkg.sqlite import Store\n    return Store\n",
        "pkg/sqlite.py": "from pkg.sql import Base\n",
        "pkg/sql.py": "from .store import open_store\n",
        "pkg/cli.py": "import pkg.commands\n",
        "pkg/commands.py": "def run():\n    from pkg import evaluation\n",
        "pkg/evaluation.py": "from pkg.commands import run\n",
        "pkg/leaf.py": "import pkg.cli\nfrom pkg import sql\n",
    }
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    graph = module_graph(tmp_path, {"pkg"})
    assert graph["pkg.store"] == {"pkg.sqlite": 2} and graph["pkg.sql"] == {"pkg.store": 1}
    assert import_cycles(graph) == [["pkg.commands", "pkg.evaluation"], ["pkg.sql", "pkg.sqlite", "pkg.store"]]


def test_only_the_index_names_collections() -> None:
    """Collection suffixes are the index's business: nobody else spells them."""
    spelled = []
    for path in sorted(REPO.glob("*/**/*.py")):
        if path.parts[len(REPO.parts)] in {"index", "tests", ".venv"}:
            continue
        text = path.read_text(encoding="utf-8")
        for suffix in ('"-items"', '"-collab"', '"-collabq"', '"-users"', '"_attrs"', '"cooc"', '"next"'):
            if suffix in text:
                spelled.append(f"{path.relative_to(REPO)}: {suffix}")
    assert not spelled, spelled


def test_one_composition_root() -> None:
    """Only agent/assemble.py constructs the runtime's parts."""
    constructors = ("LoadedIndex(", "Recommender(", "TurnPipeline(", "ConversationAgent(", "LLMReranker(",
                    "LikelihoodReranker(", "ReplyWriter(", "make_llm(", "chroma_client(")
    found = []
    for package in ("agent", "ui", "eval", "bench", "app", "train"):
        for path in sorted((REPO / package).rglob("*.py")):
            if path.name == "assemble.py":
                continue
            text = path.read_text(encoding="utf-8")
            for name in constructors:
                for line in text.splitlines():
                    stripped = line.strip()
                    if name in stripped and not stripped.startswith(("class ", "def ", "#", '"')):
                        found.append(f"{path.relative_to(REPO)}: {stripped}")
    assert not found, found
