"""Grounded replies: the LLM writes about already-ranked items, and only grounded sentences survive.

The reply names items only through labels that recagent maps to the ranked items. A sentence is
dropped when it cites no label or an unknown one, names any other catalog title or an invented
"Title (YYYY)", carries instructions, copies the prompt's own instructions or the user's message, repeats
an earlier sentence, or only cites items an earlier sentence already covered. Generation stops early
once the first sentences all fail, instead of running to the end. When nothing grounded remains the
reply is templated from the evidence, which never quotes the user either.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from agent.events import Recommendation
from agent.llm.base import LLM
from core.labels import LABELS
from core.titles import natural_title
from prompts.loader import PromptTemplate

_LABEL = re.compile(r"\[([A-Za-z0-9]{1,3})\]")
_TITLE_WITH_YEAR = re.compile(r"[A-Z][^.!?\[\]]{1,80}?\(\d{4}\)")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")
_INSTRUCTION = re.compile(r"ignore (all |any )?(previous|prior|above)|system prompt|instructions?:|you are now|"
                          r"disregard|<\s*/?\s*(system|start_of_turn|end_of_turn)", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9']+")
RETRY_SUFFIX = "\nUse only the labels above, like [A].\n"


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _titles_in(text: str, titles: Sequence[str]) -> set[str]:
    lowered = text.casefold()
    return {t for t in titles if len(t) >= 5 and t.casefold() in lowered}


@dataclass
class Grounding:
    """What a reply may say, and the state that spots repetition across its sentences."""

    shown: dict[str, str]  # label -> title
    catalog_titles: Sequence[str]
    evidence_titles: Sequence[str] = ()
    instructions: str = ""  # the prompt's own words (never to be parroted)
    user_message: str = ""  # never quoted back
    seen_sentences: set[str] = field(default_factory=set)
    cited: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        allowed = [*self.shown.values(), *self.evidence_titles]
        self._allowed = {t.casefold() for t in allowed}
        strip = sorted(allowed, key=len, reverse=True)
        self._forbidden = [(_ngrams(_words(self._without(self.instructions, strip)), 5), 5),
                           (_ngrams(_words(self._without(self.user_message, strip)), 6), 6)]
        self._strip = strip

    @staticmethod
    def _without(text: str, titles: Sequence[str]) -> str:
        for title in titles:
            text = re.sub(re.escape(title), " ", text, flags=re.IGNORECASE)
        return text

    def problem(self, sentence: str) -> str | None:
        """Why this sentence must be dropped, or None when it is grounded (and new)."""
        labels = _LABEL.findall(sentence)
        if not labels:
            return "cites no item"
        if any(label not in self.shown for label in labels):
            return "cites an unknown label"
        if _INSTRUCTION.search(sentence):
            return "carries instructions"
        without_labels = _LABEL.sub(" ", sentence)
        named = {t.casefold() for t in _titles_in(without_labels, self.catalog_titles)}
        named |= {m.strip().casefold() for m in _TITLE_WITH_YEAR.findall(without_labels)}
        if any(not any(n in a or a in n for a in self._allowed) for n in named):
            return "names an item that was not recommended"
        words = _words(self._without(without_labels, self._strip))
        for grams, n in self._forbidden:
            if grams & _ngrams(words, n):
                return "copies the prompt or the user's message"
        key = " ".join(_words(sentence))
        if key in self.seen_sentences:
            return "repeats a sentence"
        if set(labels) <= self.cited:
            return "repeats items already covered"
        for title in self.shown.values():
            if len(title) >= 4 and sentence.casefold().count(title.casefold()) > 1:
                return "repeats a title"
        return None

    def accept(self, sentence: str) -> bool:
        if self.problem(sentence) is not None:
            return False
        self.seen_sentences.add(" ".join(_words(sentence)))
        self.cited.update(_LABEL.findall(sentence))
        return True

    def render(self, sentence: str) -> str:
        """Labels replaced by the titles they stand for."""
        return _LABEL.sub(lambda m: self.shown[m.group(1)], sentence)


def clean_reply(raw: str, shown: dict[str, str], catalog_titles: Sequence[str],
                evidence_titles: Sequence[str] = (), instructions: str = "", user_message: str = "") -> list[str]:
    """The grounded sentences of a whole reply, labels kept."""
    grounding = Grounding(shown, catalog_titles, evidence_titles, instructions, user_message)
    return [s.strip() for s in _SENTENCE.split(raw.strip()) if s.strip() and grounding.accept(s.strip())]


def template_reply(items: Sequence[Recommendation], noun: str = "item") -> str:
    if not items:
        return f"I found no {noun} that matches; try fewer constraints."
    lines = [f"Here are {len(items)} picks for you:"]
    lines += [f"{n}. {natural_title(item.title)} — {item.reason}" for n, item in enumerate(items, start=1)]
    return "\n".join(lines)


def reply_prompt(template: PromptTemplate, noun: str, request: str, items: Sequence[Recommendation]
                 ) -> tuple[dict[str, str], str]:
    """The reply prompt for these items (labelled A, B, ...) and the label -> title map it shows."""
    shown = {LABELS[i]: item.title for i, item in enumerate(items)}
    prompt = template.render(noun=noun, request=request, items=[
        {"label": LABELS[i], "title": item.title, "reason": item.reason} for i, item in enumerate(items)])
    return shown, prompt


class ReplyWriter:
    """Asks the LLM (with the reply adapter, if any) for one sentence per item, and keeps the grounded ones."""

    def __init__(self, llm: LLM, template: PromptTemplate, catalog_titles: Sequence[str], noun: str = "item",
                 adapter: str | None = None, max_items: int = 5, max_tokens: int = 160, give_up_after: int = 2,
                 attempts: int = 2) -> None:
        self.llm = llm
        self.template = template
        self.catalog_titles = catalog_titles
        self.noun = noun
        self.adapter = adapter
        self.max_items = min(max_items, len(LABELS))
        self.max_tokens = max_tokens
        self.give_up_after = give_up_after
        self.attempts = attempts

    def prompt(self, request: str, items: Sequence[Recommendation]) -> tuple[dict[str, str], str]:
        """The labels shown to the LLM (label -> title) and the rendered prompt, for the first items."""
        return reply_prompt(self.template, self.noun, request, list(items)[: self.max_items])

    def sentences(self, request: str, items: Sequence[Recommendation], evidence_titles: Sequence[str] = (),
                  user_message: str = "") -> Iterator[str]:
        """Grounded sentences (titles in place of labels) as soon as each is written; a second attempt
        with a reminder only if the first gave nothing."""
        shown, prompt = self.prompt(request, items)
        instructions = self.template.render(noun=self.noun, request="", items=[]) + RETRY_SUFFIX
        for attempt in range(self.attempts):
            grounding = Grounding(shown, self.catalog_titles, evidence_titles, instructions, user_message)
            emitted = 0
            for sentence in self._attempt(prompt + ("" if attempt == 0 else RETRY_SUFFIX), grounding):
                emitted += 1
                yield sentence
            if emitted:
                return

    def _attempt(self, prompt: str, grounding: Grounding) -> Iterator[str]:
        buffer, failed, accepted = "", 0, 0
        pieces = self.llm.stream_complete(prompt, max_tokens=self.max_tokens, stop=["\n\n\n"], adapter=self.adapter)
        try:
            for piece in pieces:
                buffer += piece
                while (end := _SENTENCE_END.search(buffer)) is not None:
                    sentence, buffer = buffer[: end.end()].strip(), buffer[end.end():]
                    if not sentence:
                        continue
                    if grounding.accept(sentence):
                        accepted += 1
                        yield grounding.render(sentence)
                    else:
                        failed += 1
                        if not accepted and failed >= self.give_up_after:
                            return  # the first sentences are all ungrounded: stop generating
            rest = buffer.strip()
            if rest and grounding.accept(rest):
                yield grounding.render(rest)
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()  # stops the backend's generation when we stop early
