"""Prompt templates as versioned YAML files in this folder, rendered strictly with Jinja.

A file `NAME.vN.yaml` holds `name`, `version`, `description`, `variables` (the names the template
needs) and `template`. Rendering with a missing or unexpected variable is an error, so a prompt change
cannot silently drop context. Evaluation runs record the name and version.

Every value a template shows passes `prompt_text`: catalog text (titles, tags, attribute values) and the
user's words are data, so they render as one line whose brackets cannot pass for the prompt's own labels
("[A]", "(B)") or turn markers. Serving and training render through here, so they see the same text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from core.errors import RecagentError

PROMPT_DIR = Path(__file__).resolve().parent
_FILE = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>\d+)\.yaml$")
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]+")  # whitespace and control characters, newlines too
_INVISIBLE = re.compile(r"[\u200b\u202a-\u202e\u2066-\u2069\ufeff]")  # zero-width space, bidi overrides, BOM
_LABEL_LIKE = re.compile(r"\(([A-Za-z0-9]{1,3})\)")  # "(A)": how the ranking prompts label candidates
# square and angle brackets as their full-width forms: read the same, never a label "[A]" or "<start_of_turn>"
_FULL_WIDTH = str.maketrans({"[": "\uff3b", "]": "\uff3d", "<": "\uff1c", ">": "\uff1e"})


def prompt_text(value: str) -> str:
    """Text that goes into a prompt as data: one line (newlines and control characters collapsed to a
    space, invisible direction marks dropped), with bracketed labels neutralised: "[REC] (2007)" becomes
    "［REC］ (2007)", a label-like "(A)" becomes "（A）" (a year such as "(2007)" stays as it is)."""
    text = _BREAKS.sub(" ", _INVISIBLE.sub("", value)).strip().translate(_FULL_WIDTH)
    return _LABEL_LIKE.sub(lambda m: m[0] if m[1].isdigit() else f"\uff08{m[1]}\uff09", text)


def _as_data(value: Any) -> Any:
    """Jinja's `finalize`: every value a template prints (not the template's own text) is prompt_text."""
    return prompt_text(value) if isinstance(value, str) else value


class PromptError(RecagentError):
    pass


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    description: str
    variables: tuple[str, ...]
    template: str

    @property
    def id(self) -> str:
        return f"{self.name}.v{self.version}"

    def render(self, **values: Any) -> str:
        import jinja2

        missing = [v for v in self.variables if v not in values]
        extra = [v for v in values if v not in self.variables]
        if missing or extra:
            raise PromptError(f"prompt {self.id}: missing {missing or 'nothing'}, unexpected {extra or 'nothing'}")
        try:
            return _compiled(self.template).render(**values)
        except jinja2.UndefinedError as exc:
            raise PromptError(f"prompt {self.id}: {exc}") from None


@cache
def _compiled(template: str) -> Any:
    """The template compiled once per process: compiling took ~7 ms, rendering takes microseconds, and
    training data and evaluations render the same few templates thousands of times."""
    import jinja2

    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                                     autoescape=False, finalize=_as_data)
    return environment.from_string(template)


def available(folder: Path = PROMPT_DIR) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for path in folder.glob("*.yaml"):
        match = _FILE.match(path.name)
        if match:
            found.setdefault(match["name"], []).append(int(match["version"]))
    return {name: sorted(versions) for name, versions in found.items()}


@cache
def load_prompt(name: str, version: int | None = None, folder: Path = PROMPT_DIR) -> PromptTemplate:
    """The named prompt at `version`, or its newest version."""
    import yaml

    versions = available(folder).get(name)
    if not versions:
        raise PromptError(f"no prompt named {name!r} in {folder} (have: {', '.join(available(folder)) or 'none'})")
    chosen = versions[-1] if version is None else version
    path = folder / f"{name}.v{chosen}.yaml"
    if not path.exists():
        raise PromptError(f"prompt {name!r} has no version {chosen} (have {versions})")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    keys = {"name", "version", "description", "variables", "template"}
    if not isinstance(data, dict) or set(data) != keys:
        raise PromptError(f"{path}: must have exactly the keys {sorted(keys)}")
    if data["name"] != name or data["version"] != chosen:
        raise PromptError(f"{path}: name/version inside the file do not match its file name")
    return PromptTemplate(name, chosen, str(data["description"]), tuple(data["variables"]), str(data["template"]))
