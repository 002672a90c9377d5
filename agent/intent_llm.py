"""The LLM intent reader: the model reads the message, the catalog grounds what it read.

The model (the `intent` LoRA adapter, prompt `intent`) writes a compact JSON draft (`IntentDraft`) of the
phrases the user wrote: titles liked, disliked, seen or asked more of ("#2" for the second item shown), the words
for attribute values every item must have, one of which or none of which, the words that set years, and whether
the message corrects earlier wishes. Nothing the model writes is used as it is: each phrase must be in the
message, titles resolve to catalog items (TitleResolver), value words to the catalog's values (CatalogVocabulary,
its moods included: "funnier" is Comedy), year words to bounds (CatalogVocabulary.year_range); what does not
ground is dropped and named in `Intent.dropped`. The residual text is the message without every phrase read.

On vLLM the draft is decoded under its JSON schema (structured outputs); in-process it is validated and, when
broken, read up to its last complete field. A model that is down, slow or writes no usable JSON leaves the
message to the rules reader, and the Intent says why (`fallback_reason`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.intent import CORRECTION, ORDINAL, Intent, ReadContext, RulesReader, _add
from agent.llm.base import LLM, LLMError
from agent.understanding import key, title_key
from prompts.loader import PromptTemplate, load_prompt

MAX_LLM_CHARS = 400  # a longer message is read by the rules (the prompt stays short, the answer fast)
MAX_VALUES_SHOWN = 40  # catalog values listed in the prompt, the most common first
_NEGATION_WORDS = re.compile(r"^(?:(?:no|not|nothing|none|never|without|non|anything but|except|but not|"
                             r"no more|skip|avoid|don'?t|do not)\b\W*)+", re.IGNORECASE)
_SHOWN_REF = re.compile(r"^#\s*([1-9])$")


class IntentDraft(BaseModel):
    """What the model writes: phrases as the user wrote them, by role. Absent keys are empty."""

    model_config = ConfigDict(extra="forbid")

    liked: list[str] = Field(default_factory=list, max_length=8)
    disliked: list[str] = Field(default_factory=list, max_length=8)
    seen: list[str] = Field(default_factory=list, max_length=8)
    like: list[str] = Field(default_factory=list, max_length=8, description="titles to find more like; '#2'")
    want: list[str] = Field(default_factory=list, max_length=8, description="value words every item has")
    either: list[str] = Field(default_factory=list, max_length=8, description="value words of which one")
    avoid: list[str] = Field(default_factory=list, max_length=8, description="value words no item has")
    years: str = Field("", max_length=80, description="the words that set the years ('before 1970')")
    fix: bool = Field(False, description="the message corrects earlier wishes ('actually, ...')")


def draft_target(draft: IntentDraft) -> str:
    """The draft as the model is trained to write it: compact JSON with the non-empty keys only."""
    return json.dumps(draft.model_dump(exclude_defaults=True), ensure_ascii=False)


def parse_draft(text: str) -> IntentDraft | None:
    """The draft in the model's text: the JSON object as written, else its longest prefix that closes into a
    valid one (a draft cut off by the token limit keeps its complete fields); None if nothing validates."""
    start = text.find("{")
    if start < 0:
        return None
    body = text[start:]
    end = body.find("}")
    candidates = [body[:end + 1]] if end >= 0 else []
    # cut after each complete value (a closing bracket, quote, number or boolean followed by a comma)
    candidates += [body[:m.start()] + "}" for m in reversed(list(re.finditer(r'(?<=[\]"\de])\s*,', body)))]
    candidates += [body[:m.end()] + "}" for m in reversed(list(re.finditer(r'[\]"]\s*(?=\s*$)', body)))]
    for candidate in candidates:
        try:
            return IntentDraft.model_validate_json(candidate)
        except (ValidationError, ValueError):
            continue
    return None


def catalog_values(reader: RulesReader, limit: int = MAX_VALUES_SHOWN) -> list[str]:
    """The catalog's constraint values the prompt lists, the most common first."""
    support = reader.vocabulary.support
    return [value for (_, value), _ in sorted(support.items(), key=lambda kv: -kv[1])][:limit]


def intent_prompt(template: PromptTemplate, rules: RulesReader, message: str, shown: Sequence[str],
                  values: str | None = None) -> str:
    """The reader's prompt: the catalog's noun and values, the titles shown last (five at most), the message."""
    entries = rules.entries
    titles = [entries[i].title if i in entries else i for i in shown[:5]]
    return template.render(noun=rules.vocabulary.noun, values=values or ", ".join(catalog_values(rules)),
                           shown=titles, message=message)


class LLMReader:
    """Reads a message with the fine-tuned model; grounds its draft in the catalog; the rules where it cannot."""

    name = "llm"

    def __init__(self, llm: LLM, rules: RulesReader, adapter: str | None = "intent",
                 template: PromptTemplate | None = None, max_tokens: int = 96) -> None:
        self.llm = llm
        self.rules = rules
        self.adapter = adapter
        self.template = template or load_prompt("intent")
        self.max_tokens = max_tokens
        self.values = ", ".join(catalog_values(rules))
        self.structured = bool(getattr(llm, "supports_json_schema", False))

    def prompt(self, message: str, context: ReadContext) -> str:
        return intent_prompt(self.template, self.rules, message, context.shown, self.values)

    def read(self, message: str, context: ReadContext) -> Intent:
        text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", message).strip()
        if len(text) > MAX_LLM_CHARS:
            return self._fallback(message, context, f"message over {MAX_LLM_CHARS} characters")
        try:
            if self.structured:
                out = self.llm.complete_json(self.prompt(text, context), IntentDraft.model_json_schema(),  # type: ignore[attr-defined]
                                             self.max_tokens, self.adapter)
            else:
                out = self.llm.complete([self.prompt(text, context)], self.max_tokens, ("\n",), self.adapter)[0]
        except LLMError as exc:
            return self._fallback(message, context, f"the model could not be asked: {exc}")
        draft = parse_draft(out)
        if draft is None:
            return self._fallback(message, context, "the model wrote no valid intent")
        return self.ground(text, draft, context)

    def _fallback(self, message: str, context: ReadContext, reason: str) -> Intent:
        intent = self.rules.read(message, context)
        return intent.model_copy(update={"fallback_reason": reason})

    def ground(self, text: str, draft: IntentDraft, context: ReadContext) -> Intent:
        """The Intent of a draft: each phrase checked against the message and resolved in the catalog."""
        rules = self.rules
        dropped: list[str] = []
        read: list[str] = []  # phrases read, cut from the residual
        words = set(key(text).split())
        lowered = text.lower()

        def written(phrase: str) -> bool:
            k = key(phrase)
            return bool(k) and (phrase.lower() in lowered or set(k.split()) <= words)

        buckets: dict[str, list[str]] = {"liked": [], "disliked": [], "seen": [], "references": []}
        for bucket, phrases in (("disliked", draft.disliked), ("liked", draft.liked), ("seen", draft.seen),
                                ("references", draft.like)):
            for phrase in phrases:
                item = self._item(phrase, context, written)
                if item is None:
                    dropped.append(f"title:{phrase}"[:120])
                    continue
                read.append(phrase)
                if not any(item in b for b in buckets.values()):
                    buckets[bucket].append(item)
        all_of: dict[str, list[str]] = {}
        any_of: dict[str, list[str]] = {}
        none_of: dict[str, list[str]] = {}
        either: list[tuple[str, str]] = []
        for bucket, phrases in (("want", draft.want), ("either", draft.either), ("avoid", draft.avoid)):
            for phrase in phrases:
                if not written(phrase):
                    dropped.append(f"value:{phrase}"[:120])
                    continue
                bare = _NEGATION_WORDS.sub("", phrase).strip() if bucket == "avoid" else phrase
                found = rules.vocabulary.constraints(bare, read)
                if not found:
                    dropped.append(f"value:{phrase}"[:120])
                    continue
                read.append(phrase)
                for c in found:
                    if bucket == "avoid":
                        if not c.negated:
                            _add(none_of, c.attribute, c.value)
                    elif c.negated:
                        _add(none_of, c.attribute, c.value)
                    elif bucket == "either":
                        either.append((c.attribute, c.value))
                    else:
                        _add(all_of, c.attribute, c.value)
        by_attribute: dict[str, list[str]] = {}
        for attribute, value in either:
            if value not in by_attribute.setdefault(attribute, []):
                by_attribute[attribute].append(value)
        for attribute, values in by_attribute.items():
            for value in values:
                _add(any_of if len(values) > 1 else all_of, attribute, value)
        for attribute, values in list(all_of.items()):
            all_of[attribute] = [v for v in values if v not in none_of.get(attribute, [])]
            if not all_of[attribute]:
                del all_of[attribute]
        year_min = year_max = None
        if draft.years:
            if written(draft.years):
                years = rules.vocabulary.year_range(draft.years)
                year_min, year_max = years.low, years.high
                if years.relative is not None:
                    year_min, year_max = rules._relative(years.relative, buckets["references"] + buckets["liked"],
                                                         context.shown, year_min, year_max, dropped)
                if years.low is None and years.high is None and years.relative is None:
                    dropped.append(f"years:{draft.years}"[:120])
                else:
                    read.append(draft.years)
            else:
                dropped.append(f"years:{draft.years}"[:120])
        cut: list[tuple[int, int]] = []
        for phrase in read:
            if _SHOWN_REF.match(phrase.strip()):
                continue
            for place in re.finditer(re.escape(phrase) + r"(?:\s*\(\d{4}\))?", text, re.IGNORECASE):
                cut.append(place.span())
        cut += [m.span() for m in ORDINAL.finditer(text)]
        cut += [m.span() for m in CORRECTION.finditer(text)]
        cut += rules._negated_clauses(text)
        residual = rules._residual(text, cut)
        residual = " ".join(w for w in residual.split() if not _cue_word(w))
        return Intent(liked=buckets["liked"], disliked=buckets["disliked"], seen=buckets["seen"],
                      references=buckets["references"], all_of=all_of, any_of=any_of, none_of=none_of,
                      year_min=year_min, year_max=year_max, correction=draft.fix or bool(CORRECTION.search(text)),
                      residual=residual, dropped=dropped, reader=self.name)

    def _item(self, phrase: str, context: ReadContext, written: Any) -> str | None:
        pointed = _SHOWN_REF.match(phrase.strip())
        if pointed is not None:
            position = int(pointed.group(1)) - 1
            return context.shown[position] if position < len(context.shown) else None
        ordinal = ORDINAL.fullmatch(phrase.strip())
        if ordinal is not None:
            return self.rules._ordinal(ordinal, context.shown)
        if not written(phrase) or len(title_key(phrase)) < 2:
            return None
        dated = re.match(r"^(.*?)\s*\((\d{4})\)$", phrase.strip())
        if dated is not None and (exact := self.rules._with_year(dated.group(1), int(dated.group(2)))) is not None:
            return exact
        return self.rules._exact(phrase) or self.rules.resolver.resolve(phrase, embed=len(phrase) >= 4)


_CUES = frozenset(["loved", "liked", "enjoyed", "adored", "hated", "disliked", "seen", "watched", "love", "like",
                   "enjoy", "hate"])


def _cue_word(word: str) -> bool:
    return word.lower().strip(",.;:!?") in _CUES

