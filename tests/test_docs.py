"""The README and the docs site stay true to the code: the configuration page is the generated one, the
README stays a short manual, and every repository path they name exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from conftest import REPO

README = REPO / "README.md"
MAX_README_LINES = 250
# folders that hold what commands write (indexes, runs, the site), not repository files
GENERATED = {"var", "runs", "build", "site", ".venv", "recagent.egg-info"}
INLINE_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
PATH = re.compile(r"^[\w.-]+(/[\w.-]*)+$")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")  # DATASET, NAME, TASK: a part the reader fills in
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def settings_doc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_doc", REPO / "scripts" / "settings_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documents() -> list[Path]:
    return [README, *sorted((REPO / "docs").rglob("*.md"))]


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    kept, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(line)
    return "\n".join(kept)


def repository_paths(text: str) -> set[str]:
    """Inline code spans that name a file or folder of the repository, e.g. `agent/turn.py` or
    `eval/harness.py::retriever_for` (the part before '::')."""
    found = set()
    for span in INLINE_CODE.findall(prose(text)):
        candidate = span.strip().split("::")[0].rstrip(".,:;")
        if not PATH.match(candidate):
            continue
        parts = [p for p in candidate.split("/") if p]
        if parts[0] in GENERATED or parts[0] in {".", ".."} or not (REPO / parts[0]).is_dir():
            continue
        if any(PLACEHOLDER.match(p) for p in parts):
            continue
        found.add(candidate)
    return found


def test_configuration_page_is_generated_from_the_settings() -> None:
    page = REPO / "docs" / "configuration.md"
    assert page.read_text(encoding="utf-8") == settings_doc().render(), (
        "docs/configuration.md differs from agent.settings.Settings: run python scripts/settings_doc.py")


def test_configuration_page_names_every_setting() -> None:
    from agent.settings import Settings

    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    for section, info in Settings.model_fields.items():
        annotation = info.annotation
        fields = getattr(annotation, "model_fields", None)
        if fields is None:
            assert f"`RECAGENT_{section.upper()}`" in page
            continue
        for key, child in fields.items():
            if getattr(child.annotation, "model_fields", None) is None:
                assert f"`RECAGENT_{section.upper()}__{key.upper()}`" in page, f"{section}.{key} is missing"


def test_readme_is_a_short_manual() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; the rest belongs in docs/"


def test_paths_named_in_the_docs_exist() -> None:
    missing = [f"{doc.relative_to(REPO)}: `{path}`"
               for doc in documents() for path in sorted(repository_paths(doc.read_text(encoding="utf-8")))
               if not (REPO / path).exists()]
    assert not missing, "paths named in backticks that do not exist:\n" + "\n".join(missing)


def test_readme_links_to_files_that_exist() -> None:
    links = MARKDOWN_LINK.findall(prose(README.read_text(encoding="utf-8")))
    local = [link.split("#")[0] for link in links if "://" not in link and not link.startswith(("#", "mailto:"))]
    assert local, "the README links to no page of the docs"
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_the_path_check_reads_what_it_should() -> None:
    """The checker itself: repository paths are found, commands' outputs and placeholders are not."""
    text = ("See `agent/turn.py` and `eval/harness.py::prepare`, not `var/tuned/` or `models/DATASET/TASK`;\n"
            "```\n`agent/nothing_here.py`\n```\n`../shared/data` `sqlite:///var/x.sqlite3` `/v1/recommend`")
    assert repository_paths(text) == {"agent/turn.py", "eval/harness.py"}
    assert not (REPO / "agent" / "nothing_here.py").exists()
