"""Grounded replies: the LLM writes about already-ranked items, and only grounded sentences survive.

The reply names items only through labels that recagent maps to the ranked items. A sentence is
dropped when it cites no label or an unknown one, names any other catalog title or an invented
"Title (YYYY)", carries instructions, copies the prompt's own instructions or the user's message, repeats
an earlier sentence, or only cites items an earlier sentence already covered; and, given the items' facts
(agent.claims), when it states something their evidence does not have (a value, a year, a title, a relation
such as "fans of X" for an X the user did not like, a popularity), says nothing about its item, or uses the
sentence frame of another item's sentence. Generation stops after refused sentences in a row, or once
every item has its sentence.
Items left without a sentence get one written from their evidence (agent.compose), and so does the whole
reply when nothing grounded remains; neither ever quotes the user.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from agent.claims import RELATION, ClaimChecker, ItemFacts, content_free, frame, strip_titles
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
_YOU_LIKED = re.compile(r"\byou(?:'ve| have)? (?:liked|loved|enjoyed|watched|seen|rated)\b", re.IGNORECASE)
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
    facts: dict[str, ItemFacts] = field(default_factory=dict)  # label -> what the data holds about it
    checker: ClaimChecker | None = None  # with facts: every claim checked on the cited items
    noun_words: Sequence[str] = ()
    seen_sentences: set[str] = field(default_factory=set)
    cited: set[str] = field(default_factory=set)
    frames: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._frame_titles = [*self.shown.values(), *self.evidence_titles,
                              *(t for f in self.facts.values() for t in f.own_titles)]
        allowed = [*self.shown.values(), *self.evidence_titles]
        self._allowed = {t.casefold() for t in allowed} | {natural_title(t).casefold() for t in allowed}
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
        if self.checker is not None and self.facts:
            return self._claim_problem(sentence, labels, named)
        return None

    def _claim_problem(self, sentence: str, labels: list[str], named: set[str]) -> str | None:
        """What the sentence states that its items' evidence does not have; or that it says nothing."""
        assert self.checker is not None
        cited = [self.facts[label] for label in labels if label in self.facts]
        if len(set(labels)) > 2:
            return "lumps several items into one sentence"
        if len(set(labels)) > 1 and RELATION.search(sentence):  # "fans of [A] will like [B]"
            return "relates an item to another recommendation"
        own = {t.casefold() for f in cited for t in f.own_titles}
        if _YOU_LIKED.search(sentence) and not any(t in sentence.casefold() for t in own):
            return "says you liked something the evidence does not name"
        mine = {natural_title(f.title).casefold() for f in cited} | {f.title.casefold() for f in cited}
        for name in named:
            if not any(name in a or a in name for a in own | mine):
                return "names a title this item's evidence does not have"
        # only the cited items' own titles and theirs come out: another recommendation named without its
        # year ("fans of Aladdin") stays in, as words the evidence does not carry
        titles = [*(f.title for f in cited), *(t for f in cited for t in f.own_titles)]
        text = strip_titles(_LABEL.sub(" ", sentence), titles)
        problem = self.checker.problem(text, cited, self.noun_words)
        if problem is not None:
            return problem
        if content_free(sentence, titles, self.checker, self.noun_words, [t for f in cited for t in f.own_titles]):
            return "says nothing about the item"
        if frame(sentence, self._frame_titles, self.checker) in self.frames:
            return "uses another item's sentence frame"
        return None

    def accept(self, sentence: str) -> bool:
        if self.problem(sentence) is not None:
            return False
        self.seen_sentences.add(" ".join(_words(sentence)))
        self.cited.update(_LABEL.findall(sentence))
        if self.checker is not None:
            self.frames.add(frame(sentence, self._frame_titles, self.checker))
        return True

    def render(self, sentence: str) -> str:
        """Labels replaced by the titles they stand for."""
        return _LABEL.sub(lambda m: self.shown[m.group(1)], sentence)


def clean_reply(raw: str, shown: dict[str, str], catalog_titles: Sequence[str],
                evidence_titles: Sequence[str] = (), instructions: str = "", user_message: str = "") -> list[str]:
    """The grounded sentences of a whole reply, labels kept."""
    grounding = Grounding(shown, catalog_titles, evidence_titles, instructions, user_message)
    return [s.strip() for s in _SENTENCE.split(raw.strip()) if s.strip() and grounding.accept(s.strip())]


def reply_prompt(template: PromptTemplate, noun: str, request: str, items: Sequence[Recommendation]
                 ) -> tuple[dict[str, str], str]:
    """The reply prompt for these items (labelled A, B, ...) and the label -> title map it shows."""
    shown = {LABELS[i]: item.title for i, item in enumerate(items)}
    prompt = template.render(noun=noun, request=request, items=[
        {"label": LABELS[i], "title": item.title, "reason": item.reason} for i, item in enumerate(items)])
    return shown, prompt


class ReplyWriter:
    """Asks the LLM (with the reply adapter, if any) for one sentence per item, and keeps the grounded ones.

    Given the items' facts and a `checker`, each sentence's claims are checked on its items (agent.claims)."""

    def __init__(self, llm: LLM, template: PromptTemplate, catalog_titles: Sequence[str], noun: str = "item",
                 adapter: str | None = None, max_items: int = 5, max_tokens: int = 160, give_up_after: int = 2,
                 attempts: int = 1) -> None:
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

    def grounding(self, shown: dict[str, str], evidence_titles: Sequence[str] = (), user_message: str = "",
                  facts: Sequence[ItemFacts] = (), checker: ClaimChecker | None = None) -> Grounding:
        """The check for one reply (facts in the items' order, one per shown label)."""
        instructions = self.template.render(noun=self.noun, request="", items=[]) + RETRY_SUFFIX
        return Grounding(shown, self.catalog_titles, evidence_titles, instructions, user_message,
                         facts=dict(zip(shown, facts, strict=False)), checker=checker if facts else None,
                         noun_words=(self.noun, self.noun + "s"))

    def sentences(self, request: str, items: Sequence[Recommendation], evidence_titles: Sequence[str] = (),
                  user_message: str = "", facts: Sequence[ItemFacts] = (), checker: ClaimChecker | None = None
                  ) -> Iterator[tuple[list[int], str]]:
        """Grounded sentences (titles in place of labels) as soon as each is written, with the positions of the
        items each cites; a second attempt with a reminder only if the first gave nothing."""
        shown, prompt = self.prompt(request, items)
        for attempt in range(self.attempts):
            grounding = self.grounding(shown, evidence_titles, user_message, facts, checker)
            emitted = 0
            for sentence in self._attempt(prompt + ("" if attempt == 0 else RETRY_SUFFIX), grounding):
                emitted += 1
                yield [LABELS.index(label) for label in dict.fromkeys(_LABEL.findall(sentence))], \
                    grounding.render(sentence)
            if emitted:
                return

    def _attempt(self, prompt: str, grounding: Grounding) -> Iterator[str]:
        """Accepted sentences, labels kept. Generation stops once every shown item has its sentence, or after
        `give_up_after` refused sentences in a row (the items left get theirs from the evidence)."""
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
                        failed = 0
                        yield sentence
                        if set(grounding.shown) <= grounding.cited:
                            return  # every item has its sentence
                    else:
                        failed += 1
                        if failed >= self.give_up_after:
                            return  # refused sentences in a row: stop generating
            rest = buffer.strip()
            if rest and grounding.accept(rest):
                yield rest
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()  # stops the backend's generation when we stop early
