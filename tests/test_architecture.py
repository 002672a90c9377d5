"""The direction of imports between recagent's packages, checked on the source (README: Architecture)."""

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
