"""What the chat page shows, as pure functions of the agent's data: item cards, the "what I understood"
panel in plain words, and the note on a turn that fell back. No agent logic: the page calls these."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.titles import natural_title

# What each kind of state entry is called on the panel, in the order it shows them.
PANEL_LABELS: dict[str, str] = {"liked": "liked", "disliked": "not", "seen": "seen", "mentioned": "more like",
                                "include": "wanting", "exclude": "not wanting", "years": "years"}
_MARKDOWN_MARKS = re.compile(r"([\\`*_\[\]#|~])")
SLOW_WORDS = ("slow", "wait", "timed out", "timeout", "busy", "queue")


@dataclass(frozen=True)
class PanelEntry:
    """One removable entry of the panel: what `ConversationAgent.forget(kind, value)` takes out, and its words."""

    kind: str
    value: str
    text: str


def markdown_text(text: str) -> str:
    """Catalog text shown literally inside Markdown: HTML's <, > and & escaped, Markdown's marks backslashed."""
    return _MARKDOWN_MARKS.sub(r"\\\1", html.escape(text, quote=False))


def card_markdown(item: dict[str, Any], year_attribute: str | None = "year",
                  main_attributes: Sequence[str] = ("genres",), per_attribute: int = 3) -> str:
    """One item card: the title in natural order, its year and main attribute values, the reason."""
    attributes = item.get("attributes", {})
    facts: list[str] = []
    year = attributes.get(year_attribute) if year_attribute else None
    if year:
        facts.append(str(year))
    for name in main_attributes:
        value = attributes.get(name)
        values = value if isinstance(value, list) else [value] if value else []
        if values:
            facts.append(", ".join(str(v) for v in values[:per_attribute]))
    title = natural_title(item["title"], year=not year)
    lines = [f"**{markdown_text(title)}**", markdown_text(" · ".join(facts)), f"_{markdown_text(item['reason'])}_"]
    return "  \n".join(line for line in lines if line)


def year_words(low: int | None, high: int | None) -> str | None:
    """'1990–1999', 'from 2011 on', 'up to 1999', or None without bounds."""
    if low is not None and high is not None:
        return str(low) if low == high else f"{low}–{high}"
    if low is not None:
        return f"from {low} on"
    if high is not None:
        return f"up to {high}"
    return None


def panel_entries(state: dict[str, Any], title_of: Callable[[str], str]) -> list[PanelEntry]:
    """The state's removable entries in plain words: items by natural title (never ids), values, years."""
    entries: list[PanelEntry] = []
    for kind in ("liked", "disliked", "seen", "mentioned"):
        entries.extend(PanelEntry(kind, item, natural_title(title_of(item))) for item in state.get(kind, []))
    wanted = [v for group in ("include", "include_any") for vs in state.get(group, {}).values() for v in vs]
    entries.extend(PanelEntry("include", v, v) for v in dict.fromkeys(wanted))
    ruled_out = [v for vs in state.get("exclude", {}).values() for v in vs]
    entries.extend(PanelEntry("exclude", v, v) for v in dict.fromkeys(ruled_out))
    years = year_words(state.get("year_min"), state.get("year_max"))
    if years:
        entries.append(PanelEntry("years", "all", years))
    return entries


def panel_text(entries: Sequence[PanelEntry]) -> str:
    """One line: 'liked: Inception, Interstellar · not: The Matrix · years: 1990–1999 · wanting: Comedy'."""
    groups: dict[str, list[str]] = {}
    for entry in entries:
        groups.setdefault(entry.kind, []).append(entry.text)
    return " · ".join(f"{PANEL_LABELS[kind]}: {', '.join(texts)}" for kind, texts in groups.items())


def fallback_note(response: dict[str, Any]) -> str | None:
    """A sentence for a turn that fell back (the LLM down, slow or unusable), or None for one that did not."""
    if not response.get("fallback"):
        return None
    reason = str(response.get("fallback_reason") or "")
    if "could not be grounded" in reason:  # the model answered; none of its sentences passed the fact check
        return "None of the model's sentences passed the fact check, so the reply was written from the evidence."
    cause = "The model was slow" if any(w in reason.lower() for w in SLOW_WORDS) else "The model could not be used"
    what = ("these come straight from the retriever" if response.get("reranked_by") == "retriever"
            else "this reply was written from a template")
    return f"{cause}, so {what}" + (f" ({reason})." if reason else ".")
